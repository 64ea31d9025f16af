"""Submissions in the results store: one row per submission in ``index.sqlite``, and an audit trail.

``submissions``: id, name, kind (code / plugin / outputs), spec, content hash (the wrapper file's sha256, or
the outputs' manifest hash), args, protocol, submitter metadata, time, isolation level, status
(``running``, ``scored``, ``failed``, ``removed``), the failure reason, and the run it produced.
``submission_events``: every change of status, with its time and detail; ``remove`` deletes the run's
records but keeps the row and its events. A folder per submission (``submissions/<id>/``) holds the
worker's capped stdout/stderr, the validation checklist and the problems found.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cals_bench.errors import CalsBenchError
from cals_bench.store import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    content_key TEXT NOT NULL,
    args TEXT NOT NULL,
    protocol TEXT NOT NULL,
    submitter TEXT NOT NULL,
    created REAL NOT NULL,
    isolation TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    run_id TEXT,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_by_key ON submissions(content_key);
CREATE TABLE IF NOT EXISTS submission_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    submission_id INTEGER NOT NULL,
    time REAL NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
"""
COLUMNS = (
    "id",
    "name",
    "kind",
    "spec",
    "content_hash",
    "content_key",
    "args",
    "protocol",
    "submitter",
    "created",
    "isolation",
    "status",
    "reason",
    "run_id",
    "meta",
)


def submitter_info(note: str | None = None) -> dict[str, str]:
    """Who submitted (user and host, plus an optional note of at most 500 characters)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    info = {"user": user, "host": socket.gethostname()}
    if note:
        info["note"] = note[:500]
    return info


def content_key(kind: str, content_hash: str, args: dict[str, Any], protocol: str, name: str) -> str:
    """The key that makes two submissions of the same content, arguments, protocol and name identical."""
    blob = json.dumps([kind, content_hash, args, protocol, name], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Submissions:
    """The submissions table of a results store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.root / "submissions"
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.store.db_path, timeout=60)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.close()

    def folder(self, sub_id: int) -> Path:
        return self.dir / str(sub_id)

    def create(self, **fields: Any) -> int:
        row = {
            "args": json.dumps(fields.pop("args", {}), sort_keys=True),
            "submitter": json.dumps(fields.pop("submitter", {}), sort_keys=True),
            "meta": json.dumps(fields.pop("meta", {}), sort_keys=True, default=str),
            "created": time.time(),
            "status": "running",
            **fields,
        }
        with self._connect() as con:
            cur = con.execute(
                f"INSERT INTO submissions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            sub_id = int(cur.lastrowid)
            con.execute(
                "INSERT INTO submission_events (submission_id, time, event, detail) VALUES (?,?,?,?)",
                (sub_id, time.time(), "created", row["spec"]),
            )
        self.folder(sub_id).mkdir(parents=True, exist_ok=True)
        return sub_id

    def update(self, sub_id: int, *, event: str, detail: str | None = None, **fields: Any) -> None:
        if "meta" in fields:
            fields["meta"] = json.dumps(fields["meta"], sort_keys=True, default=str)
        with self._connect() as con:
            if fields:
                sets = ", ".join(f"{k}=?" for k in fields)
                con.execute(f"UPDATE submissions SET {sets} WHERE id=?", (*fields.values(), sub_id))
            con.execute(
                "INSERT INTO submission_events (submission_id, time, event, detail) VALUES (?,?,?,?)",
                (sub_id, time.time(), event, detail),
            )

    def _row(self, values) -> dict[str, Any]:
        rec = dict(zip(COLUMNS, values))
        for k in ("args", "submitter", "meta"):
            rec[k] = json.loads(rec[k]) if rec[k] else {}
        rec["isolation"] = (
            json.loads(rec["isolation"]) if rec["isolation"].startswith("{") else rec["isolation"]
        )
        return rec

    def get(self, sub_id: int | str) -> dict[str, Any]:
        try:
            key = int(str(sub_id).lstrip("#"))
        except ValueError:
            raise CalsBenchError(
                f"submission id {sub_id!r} is not a number (cals-bench submissions list)"
            ) from None
        with self._connect() as con:
            row = con.execute(f"SELECT {', '.join(COLUMNS)} FROM submissions WHERE id=?", (key,)).fetchone()
            if row is None:
                raise CalsBenchError(
                    f"no submission #{key} in {self.store.root} (cals-bench submissions list)"
                )
            events = con.execute(
                "SELECT time, event, detail FROM submission_events WHERE submission_id=? ORDER BY id", (key,)
            ).fetchall()
        rec = self._row(row)
        rec["events"] = [{"time": t, "event": e, "detail": d} for t, e, d in events]
        return rec

    def list(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM submissions ORDER BY id").fetchall()
        return [self._row(r) for r in rows]

    def find_identical(self, key: str) -> dict[str, Any] | None:
        """The latest live (not removed) submission with the same content, name, args and protocol."""
        with self._connect() as con:
            row = con.execute(
                "SELECT id FROM submissions WHERE content_key=? AND status!='removed' ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
        return self.get(row[0]) if row else None

    def remove(self, sub_id: int | str, reason: str | None = None) -> dict[str, Any]:
        """Delete the submission's run from the store; keep its row (status ``removed``) and its events."""
        rec = self.get(sub_id)
        if rec["status"] == "removed":
            raise CalsBenchError(f"submission #{rec['id']} was already removed")
        if rec.get("run_id"):
            self.store.delete_run(rec["run_id"])
        self.update(
            rec["id"],
            event="removed",
            detail=(reason or "removed by request")
            + (f"; run {rec['run_id']} deleted" if rec.get("run_id") else ""),
            status="removed",
        )
        return self.get(rec["id"])
