"""The results store: a SQLite index of runs and per-sample records, plus one folder per run.

Layout under the results root (``--results``, ``$CALS_BENCH_RESULTS``, default ``./results``)::

    index.sqlite            runs, samples, scores, features (WAL mode; one transaction per scored batch;
                            ``PRAGMA user_version`` = ``run_record.INDEX_VERSION``, migrated on open)
    runs/<run_id>/run.json  the run record (:mod:`cals_bench.run_record`: typed, with ``schema_version``):
                            protocol name/version/hash, model name/args/weight sha256, packages, device,
                            git revision, seed, timings, summary (written atomically)
    runs/<run_id>/records.parquet   per-sample long records, written when the run finishes
    runs/<run_id>/outputs/<sample>.png   the model's outputs as scored (8-bit)
    cache/                  the reference-feature cache shared by all runs

A batch's scores, features and sample rows are committed in one transaction, so a run killed at any point
(SIGKILL included) resumes with every sample scored exactly once. The index can be rebuilt from the run
folders (``cals-bench runs rebuild``, :func:`cals_bench.store_rebuild.rebuild`); a lost index is rebuilt
on first use, a damaged one is a one-line error naming that command. A run in progress holds a lock
(``locks/<run_id>.lock``), so a second identical command says so instead of scoring the same samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cals_bench import numbers, run_record
from cals_bench.errors import CalsBenchError

if TYPE_CHECKING:  # pandas is imported where a table is built (a run starts without it)
    import pandas as pd

ENV_RESULTS = "CALS_BENCH_RESULTS"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    run_key TEXT NOT NULL,
    protocol TEXT NOT NULL,
    protocol_version INTEGER NOT NULL,
    protocol_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    model_args TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    n_samples INTEGER,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs(run_key);
CREATE INDEX IF NOT EXISTS runs_by_protocol ON runs(protocol, protocol_version);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    time_ms REAL,
    height INTEGER,
    width INTEGER,
    attributes TEXT NOT NULL,
    notes TEXT,
    PRIMARY KEY (run_id, sample_id)
);
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, sample_id, metric)
);
CREATE TABLE IF NOT EXISTS features (
    run_id TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    extractor TEXT NOT NULL,
    role TEXT NOT NULL,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, sample_id, extractor, role)
);
"""


def default_root() -> Path:
    """The results folder: ``$CALS_BENCH_RESULTS`` or ``./results``."""
    return Path(os.environ.get(ENV_RESULTS) or "results")


def slug(text: str, max_len: int = 48) -> str:
    """A file-system-safe fragment of a model or protocol name."""
    s = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return (s or "x")[:max_len]


def output_name(sample_id: str) -> str:
    """The output file stem of a sample: injective. An id that the file-name rule keeps as it is (after
    ``/`` -> ``__``, which must decode back) is its own name; any other gets ``~`` and a hash of the id,
    and ``~`` never appears in a kept name."""
    plain = sample_id.replace("/", "__")
    name = slug(plain, max_len=120)
    if name == plain and plain.replace("__", "/") == sample_id:
        return name
    return f"{slug(plain, max_len=100)}~{hashlib.sha256(sample_id.encode()).hexdigest()[:12]}"


class Store:
    """A results root: run folders with their records and outputs, the SQLite index and the feature cache."""

    def __init__(self, root: str | Path | None = None, *, reindex: bool = True) -> None:
        self.root = Path(root) if root else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.root / "runs"
        self.cache_dir = self.root / "cache"
        self.db_path = self.root / "index.sqlite"
        self._feature_cache: Any = None
        fresh = not self.db_path.exists()
        with self._connect() as con:
            con.executescript(_SCHEMA)
            run_record.migrate_index(con, str(self.db_path))  # PRAGMA user_version, one step per version
        if reindex and fresh and self.runs_dir.is_dir() and any(self.runs_dir.glob("*/run.json")):
            # the index was deleted while the run folders are intact: re-index them
            from cals_bench.store_rebuild import rebuild

            n = rebuild(self)
            print(
                f"[cals-bench] {self.db_path} was missing: re-indexed {n} run(s) from {self.runs_dir}",
                file=sys.stderr,
            )

    def feature_cache(self) -> Any:
        """This store's reference-feature cache (``cache/``; :class:`cals_bench.cache.FeatureCache`), one
        per store so that its in-memory part serves every run scored through this store; None where the
        cache module cannot be imported."""
        if self._feature_cache is None:
            try:
                from cals_bench.cache import FeatureCache
            except ImportError:
                return None
            self._feature_cache = FeatureCache(self.cache_dir)
        return self._feature_cache

    # -- connections ----------------------------------------------------------------------------------
    @contextmanager
    def _connect(self):
        try:
            con = sqlite3.connect(self.db_path, timeout=60)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=60000")
            yield con
            con.commit()
        except sqlite3.DatabaseError as exc:
            con.rollback()
            if isinstance(exc, sqlite3.IntegrityError) or "locked" in str(exc):
                raise
            raise self._damaged(exc) from exc
        except BaseException:
            con.rollback()
            raise
        finally:
            con.close()

    def _damaged(self, exc: Exception) -> CalsBenchError:
        return CalsBenchError(
            f"results index {self.db_path} is damaged ({exc}); the run folders are intact: "
            f"`cals-bench runs rebuild --results {self.root}` re-indexes them"
        )

    # -- runs -----------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def runs_with_key(self, run_key: str) -> list[tuple[str, str]]:
        """(run_id, status) of every run with this key, newest first."""
        with self._connect() as con:
            return [
                (r[0], r[1])
                for r in con.execute(
                    "SELECT run_id, status FROM runs WHERE run_key=? ORDER BY created DESC", (run_key,)
                ).fetchall()
            ]

    @contextmanager
    def run_lock(self, lock_name: str, run_id: str):
        """Hold a lock (one per run key) while scoring; a second process gets a one-line error naming
        ``run_id`` (the lock is released when the holder exits, SIGKILL included, so a killed run resumes)."""
        from cals_bench.locking import exclusive

        with exclusive(self.root / "locks" / f"{lock_name}.lock") as held:
            if not held:
                raise CalsBenchError(
                    f"run {run_id} is in progress in another process; wait for it to finish, then run the "
                    "same command again to reuse its results"
                )
            yield

    def replace_run(self, old_id: str, new_id: str) -> None:
        """``new_id`` (finished) supersedes ``old_id``: the old rows go in one transaction, then its folder."""
        import shutil

        with self._connect() as con:
            for table in ("runs", "samples", "scores", "features"):
                con.execute(f"DELETE FROM {table} WHERE run_id=?", (old_id,))
        shutil.rmtree(self.run_dir(old_id), ignore_errors=True)

    def create_run(self, run_id: str, run_key: str, meta: run_record.RunRecord | dict[str, Any]) -> Path:
        """Index a new run (status ``running``) and make its folder with its run.json; the folder."""
        record = run_record.as_record(meta)
        try:
            self._insert_run(run_id, run_key, record, "running", time.time(), None)
        except sqlite3.IntegrityError as exc:
            raise CalsBenchError(
                f"run {run_id} is in progress in another process (it was created a moment ago); wait for it "
                "to finish, then run the same command again to reuse its results"
            ) from exc
        d = self.run_dir(run_id)
        (d / "outputs").mkdir(parents=True, exist_ok=True)
        run_record.write_run_json(d / run_record.RUN_FILE, dataclasses.replace(record, status="running"))
        return d

    def _insert_run(
        self,
        run_id: str,
        run_key: str,
        record: run_record.RunRecord,
        status: str,
        created: float,
        finished: Any,
    ) -> None:
        proto = record.protocol
        model = record.model
        with self._connect() as con:
            con.execute(
                "INSERT INTO runs (run_id, run_key, protocol, protocol_version, protocol_hash, model, model_args,"
                " status, created, finished, n_samples, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    run_key,
                    proto.name,
                    proto.version,
                    proto.hash,
                    model["name"],
                    json.dumps(model.get("args", {}), sort_keys=True),
                    status,
                    created,
                    finished,
                    record.n_samples,
                    run_record.dumps(record),
                ),
            )

    def delete_run(self, run_id: str) -> None:
        import shutil

        with self._connect() as con:
            for table in ("runs", "samples", "scores", "features"):
                con.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def update_meta(
        self, run_id: str, meta: run_record.RunRecord | dict[str, Any], *, status: str | None = None
    ) -> None:
        """Write a run's record to the index and its run.json (``status`` also sets the index's status and
        finish time)."""
        record = run_record.as_record(meta)
        with self._connect() as con:
            if status:
                con.execute(
                    "UPDATE runs SET meta=?, status=?, finished=? WHERE run_id=?",
                    (run_record.dumps(record), status, time.time(), run_id),
                )
            else:
                con.execute("UPDATE runs SET meta=? WHERE run_id=?", (run_record.dumps(record), run_id))
        run_record.write_run_json(
            self.run_dir(run_id) / run_record.RUN_FILE,
            dataclasses.replace(record, status=status or record.status),
        )

    def resolve_run_id(self, ref: str) -> str:
        """A full run id from an id, a unique prefix, or ``latest``."""
        with self._connect() as con:
            if ref == "latest":
                row = con.execute("SELECT run_id FROM runs ORDER BY created DESC LIMIT 1").fetchone()
                if not row:
                    raise CalsBenchError(f"no runs in {self.root}")
                return row[0]
            rows = con.execute(
                "SELECT run_id FROM runs WHERE run_id LIKE ?", (ref.replace("%", "") + "%",)
            ).fetchall()
        exact = [r[0] for r in rows if r[0] == ref]
        if exact:
            return exact[0]
        if len(rows) == 1:
            return rows[0][0]
        if not rows:
            raise CalsBenchError(f"no run {ref!r} in {self.root} (`cals-bench runs list` shows them)")
        raise CalsBenchError(f"run reference {ref!r} is ambiguous: {', '.join(r[0] for r in rows[:5])}")

    def get_run(self, ref: str) -> dict[str, Any]:
        run_id = self.resolve_run_id(ref)
        with self._connect() as con:
            row = con.execute(
                "SELECT status, meta, created, finished FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
        try:
            meta = json.loads(row[1])
            if not isinstance(meta, dict) or not isinstance(meta.get("protocol"), dict):
                raise ValueError("not a run record")
        except ValueError as exc:
            raise CalsBenchError(
                f"run {run_id}: its stored record in {self.db_path} is damaged ({exc}); "
                f"`cals-bench runs rebuild --results {self.root}` re-indexes it from {self.run_dir(run_id)}"
            ) from exc
        meta = run_record.migrate(meta, f"run {run_id} in {self.db_path}")  # older schema versions
        meta.update(run_id=run_id, status=row[0], created=row[2], finished=row[3])
        return meta

    def get_record(self, ref: str) -> run_record.RunRecord:
        """The typed record of a run (id, unique prefix or ``latest``), index columns included."""
        return run_record.as_record(self.get_run(ref))

    def list_runs(self, protocol: str | None = None) -> pd.DataFrame:
        import pandas as pd

        sql = (
            "SELECT run_id, protocol, protocol_version, protocol_hash, model, model_args, status, created,"
            " n_samples FROM runs"
        )
        params: tuple = ()
        if protocol:
            sql += " WHERE protocol=?"
            params = (protocol,)
        with self._connect() as con:
            df = pd.read_sql_query(sql + " ORDER BY created", con, params=params)
            counts = pd.read_sql_query(
                "SELECT run_id, SUM(status='ok') AS n_scored, SUM(status!='ok') AS n_failed FROM samples GROUP BY run_id",
                con,
            )
        df = df.merge(counts, on="run_id", how="left").fillna({"n_scored": 0, "n_failed": 0})
        df["created"] = pd.to_datetime(df["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
        return df

    # -- samples --------------------------------------------------------------------------------------
    def done_ids(self, run_id: str) -> set[str]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT sample_id FROM samples WHERE run_id=? AND status='ok'", (run_id,)
            ).fetchall()
        return {r[0] for r in rows}

    def write_batch(
        self,
        run_id: str,
        samples: Iterable[dict[str, Any]],
        scores: Iterable[tuple[str, str, float]],
        features: Iterable[tuple[str, str, str, np.ndarray]] = (),
    ) -> None:
        """Commit one batch: sample rows, (sample, metric, value) scores and (sample, extractor, role, vec)."""
        with self._connect() as con:
            for s in samples:
                con.execute(
                    "INSERT OR REPLACE INTO samples (run_id, sample_id, status, error, time_ms, height, width,"
                    " attributes, notes) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        run_id,
                        s["sample_id"],
                        s["status"],
                        s.get("error"),
                        s.get("time_ms"),
                        s.get("height"),
                        s.get("width"),
                        json.dumps(s.get("attributes", {}), sort_keys=True),
                        json.dumps(s.get("notes", {}), sort_keys=True),
                    ),
                )
            con.executemany(
                "INSERT INTO scores (run_id, sample_id, metric, value) VALUES (?,?,?,?)",
                [(run_id, sid, metric, _finite_or_none(v)) for sid, metric, v in scores],
            )
            con.executemany(
                "INSERT INTO features (run_id, sample_id, extractor, role, dim, data) VALUES (?,?,?,?,?,?)",
                [
                    (run_id, sid, ext, role, int(vec.size), np.asarray(vec, dtype=np.float32).tobytes())
                    for sid, ext, role, vec in features
                ],
            )

    def samples(self, ref: str) -> pd.DataFrame:
        import pandas as pd

        run_id = self.resolve_run_id(ref)
        with self._connect() as con:
            df = pd.read_sql_query(
                "SELECT sample_id, status, error, time_ms, height, width, attributes, notes FROM samples"
                " WHERE run_id=? ORDER BY rowid",
                con,
                params=(run_id,),
            )
        attrs = pd.json_normalize(df["attributes"].map(json.loads).tolist())
        attrs.columns = [f"attr.{c}" for c in attrs.columns]
        return pd.concat([df.drop(columns=["attributes"]), attrs], axis=1)

    def scores(self, ref: str) -> pd.DataFrame:
        """Long per-sample records: sample_id, metric, value (NaN where undefined)."""
        import pandas as pd

        run_id = self.resolve_run_id(ref)
        with self._connect() as con:
            df = pd.read_sql_query(
                "SELECT sample_id, metric, value FROM scores WHERE run_id=? ORDER BY rowid",
                con,
                params=(run_id,),
            )
        df["value"] = df["value"].astype(float)
        return df

    def records(self, ref: str) -> pd.DataFrame:
        """Long records joined with sample attributes and timing: the export format."""
        samples = self.samples(ref)
        scores = self.scores(ref)
        keep = ["sample_id", "time_ms", "height", "width"] + [
            c for c in samples.columns if c.startswith("attr.")
        ]
        return scores.merge(samples[samples["status"] == "ok"][keep], on="sample_id", how="left")

    def features(self, ref: str, extractor: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(sample ids, reference features (n, d), output features (n, d)) of one extractor."""
        run_id = self.resolve_run_id(ref)
        with self._connect() as con:
            rows = con.execute(
                "SELECT sample_id, role, data FROM features WHERE run_id=? AND extractor=? ORDER BY rowid",
                (run_id, extractor),
            ).fetchall()
        by: dict[str, dict[str, np.ndarray]] = {}
        for sid, role, blob in rows:
            by.setdefault(sid, {})[role] = np.frombuffer(blob, dtype=np.float32)
        ids = [sid for sid, d in by.items() if "reference" in d and "output" in d]
        if not ids:
            return [], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        ref_arr = np.stack([by[s]["reference"] for s in ids])
        out_arr = np.stack([by[s]["output"] for s in ids])
        return ids, ref_arr, out_arr

    def feature_names(self, ref: str) -> list[str]:
        run_id = self.resolve_run_id(ref)
        with self._connect() as con:
            rows = con.execute("SELECT DISTINCT extractor FROM features WHERE run_id=?", (run_id,)).fetchall()
        return sorted(r[0] for r in rows)

    def export(self, ref: str, fmt: str, out: Path | None = None) -> Path:
        run_id = self.resolve_run_id(ref)
        df = self.records(run_id)
        out = out or self.run_dir(run_id) / f"records.{fmt}"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "json":
            tmp.write_text(df.to_json(orient="records", indent=1))
        else:
            raise CalsBenchError(f"unknown export format {fmt!r} (csv, parquet, json)")
        os.replace(tmp, out)
        return out


def _finite_or_none(v: float) -> float | None:
    """Undefined values (NaN, +-inf: :mod:`cals_bench.numbers`) are stored as NULL, read back as NaN."""
    return numbers.finite_or_none(v)
