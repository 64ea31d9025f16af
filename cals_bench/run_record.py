"""The run record: what ``runs/<run_id>/run.json`` holds and the store's ``runs.meta`` column repeats.

One typed, versioned record, written and read here only. A run is a protocol (name, version, hash, the
validated spec) x a model (its metadata: name, spec, args, weight sha256, ...) x an environment (package
versions, device, git revision) x its summary and failures; the per-sample records live in the store.

- :meth:`RunRecord.to_json` / :meth:`RunRecord.from_json` convert to and from the plain JSON form, which
  carries ``schema_version``. ``from_json(r.to_json()) == r`` and ``from_json(d).to_json() == d`` for a
  current record ``d`` (lossless: keys this version does not type, such as a shard's annotations, are kept
  in ``extra`` and written back as they were).
- Records written before the schema was versioned (no ``schema_version``: version 0) are migrated on read,
  so old run folders still load; a record newer than this code is a one-line :class:`RunRecordError`.
- :func:`write_run_json` / :func:`read_run_json` are the one place that writes and reads ``run.json``.
- :func:`migrate_index` brings the SQLite index to :data:`INDEX_VERSION` (``PRAGMA user_version``).

Keys that are written once the run reaches them (``timing``, ``summary``, ``finished_at``, ...) are ``None``
until then and left out of the JSON form while ``None``.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cals_bench import numbers
from cals_bench.errors import CalsBenchError
from cals_bench.jsonfile import write_json_atomic

SCHEMA_VERSION = 1
"""Version of the run record's JSON form (``schema_version`` in run.json and in the index's meta)."""

INDEX_VERSION = 1
"""Version of the SQLite index (``PRAGMA user_version``); 0 is an index made before it was versioned."""

RUN_FILE = "run.json"

FINISHED = ("finished", "finished-with-failures")


class RunRecordError(CalsBenchError, ValueError):
    """A run record cannot be read: not a record, or written by a newer cals-bench (one line says which)."""


@dataclass(frozen=True)
class ProtocolRef:
    """The protocol a run measured: name, version, sha256 of the validated spec, title, and that spec."""

    name: str
    version: int
    hash: str
    title: str = ""
    spec: dict[str, Any] = field(default_factory=dict)


# Keys always written (with these defaults where a version-0 record lacks them).
_CORE_DEFAULTS: dict[str, Any] = {
    "metrics": list,
    "metric_directions": dict,
    "features": list,
    "unavailable_metrics": dict,
    "data_root": None,
    "n_samples": None,
    "seed": None,
    "environment": dict,
    "command": None,
    "started": None,
    "sessions": list,
    "batch_timeout_s": None,
    "status": None,
}


@dataclass
class RunRecord:
    """One run. ``model`` is the enhancer's metadata as the engine recorded it (open-ended: submissions and
    trainers add keys); ``summary`` maps each metric column to its ``mean``/``count``/... figures."""

    run_id: str
    run_key: str
    protocol: ProtocolRef
    model: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    metric_directions: dict[str, bool] = field(default_factory=dict)
    features: list[dict[str, Any]] = field(default_factory=list)
    unavailable_metrics: dict[str, str] = field(default_factory=dict)
    data_root: str | None = None
    n_samples: int | None = None
    seed: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    started: str | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    batch_timeout_s: float | None = None
    status: str | None = None
    batch_size: int | None = None  # samples per model call; a resumed run must keep it (None: not recorded)
    # written once the run gets there (left out of the JSON form while None)
    replaces: str | None = None
    timing: dict[str, Any] | None = None
    summary: dict[str, dict[str, Any]] | None = None
    failures: list[Any] | None = None
    undefined_reasons: dict[str, Any] | None = None
    metric_failures: list[Any] | None = None
    finished_at: str | None = None
    stopped_reason: str | None = None
    created: float | None = None  # index columns (epoch seconds), added by the store when it reads a run
    finished: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def is_finished(self) -> bool:
        """Whether the run scored every sample it could (failed samples included)."""
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        """The plain JSON form (what run.json holds), ``schema_version`` first."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for f in dataclasses.fields(self):
            if f.name in ("schema_version", "extra"):
                continue
            value = getattr(self, f.name)
            if f.name == "protocol":
                value = dataclasses.asdict(value)
            elif value is None and f.name not in _CORE_DEFAULTS:
                continue
            out[f.name] = value
        clash = sorted(set(self.extra) & set(out))
        if clash:
            raise RunRecordError(f"run {self.run_id}: extra keys {clash} shadow typed fields")
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Any, source: str = "run record") -> RunRecord:
        """A record from its JSON form (any schema version up to :data:`SCHEMA_VERSION`, migrated)."""
        data = migrate(data, source)
        typed = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in typed}
        proto = values["protocol"]
        try:
            values["protocol"] = ProtocolRef(**proto)
        except TypeError as exc:
            raise RunRecordError(f"{source}: protocol: {exc}") from exc
        extra = {k: v for k, v in data.items() if k not in typed}
        return cls(**values, extra=extra)


def _v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Unversioned records (before schema_version): the keys the engine has always written, with their
    defaults where an older engine did not write them yet."""
    out = dict(data)
    for key, default in _CORE_DEFAULTS.items():
        if key not in out:
            out[key] = default() if callable(default) else default
    out["schema_version"] = 1
    return out


# schema_version -> step to the next version
_MIGRATIONS = {0: _v0_to_v1}


def migrate(data: Any, source: str = "run record") -> dict[str, Any]:
    """The JSON form of a record at :data:`SCHEMA_VERSION` (a new dict; the input is not modified)."""
    if not isinstance(data, dict) or not all(k in data for k in ("run_id", "run_key", "protocol", "model")):
        raise RunRecordError(f"{source}: not a run record (run_id, run_key, protocol and model are required)")
    if not isinstance(data["protocol"], dict) or not isinstance(data["model"], dict):
        raise RunRecordError(f"{source}: not a run record (protocol and model must be mappings)")
    version = data.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RunRecordError(f"{source}: schema_version must be a non-negative integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise RunRecordError(
            f"{source}: run record schema_version {version} is newer than this cals-bench reads "
            f"({SCHEMA_VERSION}); upgrade cals-bench to read it"
        )
    out = dict(data)
    while version < SCHEMA_VERSION:
        out = _MIGRATIONS[version](out)
        version = out["schema_version"]
    return out


def write_run_json(path: Path, meta: dict[str, Any] | RunRecord) -> None:
    """Write a run record to ``path`` (strict JSON, atomically), at the current schema version."""
    record = meta if isinstance(meta, RunRecord) else RunRecord.from_json(meta, str(path))
    write_json_atomic(path, record.to_json())


def read_run_json(path: Path) -> RunRecord:
    """Read ``path`` (a run folder's run.json), migrating an older schema; one-line errors."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunRecordError(f"{path}: unreadable run record ({exc})") from exc
    return RunRecord.from_json(data, str(path))


def dumps(meta: Mapping[str, Any] | RunRecord) -> str:
    """The index's ``runs.meta`` text of a record (current schema version)."""
    return numbers.dumps(as_record(meta).to_json())


def _index_v0_to_v1(con: sqlite3.Connection) -> None:
    """Index version 0 -> 1: every stored meta gets the record's current JSON form (schema_version)."""
    rows = con.execute("SELECT run_id, meta FROM runs").fetchall()
    for run_id, text in rows:
        try:
            meta = json.loads(text)
            migrated = RunRecord.from_json(meta, f"run {run_id}").to_json()
        except (ValueError, RunRecordError):
            continue  # a damaged row stays as it is: reading it names `runs rebuild`
        con.execute("UPDATE runs SET meta=? WHERE run_id=?", (numbers.dumps(migrated), run_id))


_INDEX_MIGRATIONS = {0: _index_v0_to_v1}


def migrate_index(con: sqlite3.Connection, where: str) -> None:
    """Bring an open index (tables created) to :data:`INDEX_VERSION` inside the caller's transaction."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > INDEX_VERSION:
        raise RunRecordError(
            f"results index {where} has version {version}, newer than this cals-bench reads "
            f"({INDEX_VERSION}); upgrade cals-bench or use another --results folder"
        )
    while version < INDEX_VERSION:
        _INDEX_MIGRATIONS[version](con)
        version += 1
        con.execute(f"PRAGMA user_version={version}")


def as_record(meta: Mapping[str, Any] | RunRecord) -> RunRecord:
    """The typed record of ``meta`` (a record as ``Store.get_run`` and the engine hand it out, or already
    a :class:`RunRecord`): how readers take a run's fields by name instead of by string key."""
    return meta if isinstance(meta, RunRecord) else RunRecord.from_json(dict(meta))
