"""Re-indexing the results store from its run folders (``cals-bench runs rebuild``).

The SQLite index is a cache of what each run folder holds: ``run.json`` (the run record: protocol, model,
summary, failures, status) and, for a finished run, ``records.parquet`` (every score with the sample's
attributes and timing). A lost index is rebuilt from them on first use; a damaged one is moved aside
(``index.sqlite.damaged-<time>``) and rebuilt by ``cals-bench runs rebuild``.

What the folders do not hold comes back empty: the GPI feature vectors (the audit then uses the 1-D GPI
metric and says so) and the per-sample notes on undefined values. A run that had not finished comes back
with its status and no samples: running the same command again scores it from the start. A run that a
finished ``--force`` rerun superseded (its id is the new run's ``replaces``) is not re-indexed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from cals_bench.errors import CalsBenchError
from cals_bench.run_record import RunRecord, RunRecordError, read_run_json


def _read_run_json(path: Path) -> RunRecord | None:
    """The run record of one folder (older schema versions migrated), or None with a line on stderr when
    it cannot be read."""
    try:
        return read_run_json(path)
    except RunRecordError as exc:
        print(f"[cals-bench] {exc}; not re-indexed", file=sys.stderr)
        return None


def rebuild(store) -> int:
    """Index every run folder that the index lacks; returns how many runs were added."""
    records = []
    for path in sorted(store.runs_dir.glob("*/run.json")):
        record = _read_run_json(path)
        if record is not None and record.run_id == path.parent.name:
            records.append(record)
    superseded = {r.replaces for r in records if r.replaces and str(r.status or "").startswith("finished")}
    with store._connect() as con:
        known = {r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()}
    added = 0
    for record in records:
        run_id = record.run_id
        if run_id in known or run_id in superseded:
            continue
        status = str(record.status or "running")
        created = _epoch(record.created) or _epoch_text(record.started) or time.time()
        finished = _epoch(record.finished) or _epoch_text(record.finished_at)
        indexed = dataclasses.replace(record, status=None, created=None, finished=None)  # index columns
        samples, scores = (
            _records(store.run_dir(run_id), record) if status.startswith("finished") else ([], [])
        )
        store._insert_run(run_id, record.run_key, indexed, status, created, finished)
        if samples:
            store.write_batch(run_id, samples, scores)
        added += 1
    return added


def rebuild_index(root: str | Path | None) -> tuple[int, Path | None]:
    """Open the store at ``root`` (moving a damaged index aside first) and re-index its run folders.

    Returns (runs added, where the damaged index was moved or None)."""
    from cals_bench.store import Store, default_root

    root_path = Path(root) if root else default_root()
    db = root_path / "index.sqlite"
    moved = None
    try:
        store = Store(root_path)
        with store._connect() as con:
            con.execute("PRAGMA quick_check").fetchall()
            con.execute("SELECT COUNT(*) FROM runs").fetchone()
    except CalsBenchError:
        moved = db.with_name(f"index.sqlite.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        db.rename(moved)
        for suffix in ("-wal", "-shm"):
            side = Path(str(db) + suffix)
            if side.exists():
                side.rename(Path(str(moved) + suffix))
        store = Store(root_path, reindex=False)  # a fresh index; the folders are re-indexed below
    return rebuild(store), moved


def _records(run_dir: Path, record: RunRecord) -> tuple[list[dict[str, Any]], list[tuple[str, str, float]]]:
    parquet = run_dir / "records.parquet"
    samples: list[dict[str, Any]] = []
    scores: list[tuple[str, str, float]] = []
    if parquet.is_file():
        df = pd.read_parquet(parquet)
        attr_cols = [c for c in df.columns if c.startswith("attr.")]
        for sid, g in df.groupby("sample_id", sort=False):
            first = g.iloc[0]
            attrs = {c[len("attr.") :]: first[c] for c in attr_cols if isinstance(first[c], str)}
            samples.append(
                {
                    "sample_id": sid,
                    "status": "ok",
                    "time_ms": _float(first.get("time_ms")),
                    "height": _int(first.get("height")),
                    "width": _int(first.get("width")),
                    "attributes": attrs,
                }
            )
        scores = [(r.sample_id, r.metric, float(r.value)) for r in df.itertuples(index=False)]
    for sid, error in record.failures or []:
        samples.append({"sample_id": sid, "status": "failed", "error": error, "attributes": {}})
    return samples, scores


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _int(v: Any) -> int | None:
    f = _float(v)
    return None if f is None else int(f)


def _epoch(v: Any) -> float | None:
    return _float(v)


def _epoch_text(v: Any) -> float | None:
    if not isinstance(v, str):
        return None
    try:
        return time.mktime(time.strptime(v, "%Y-%m-%dT%H:%M:%S%z"))
    except ValueError:
        return None
