"""The typed, versioned run record (cals_bench/run_record.py) and the index's user_version."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cals_bench import run_record
from cals_bench.run_record import RunRecord, RunRecordError
from cals_bench.store import Store

# A run.json as the engine wrote it before records carried a schema version (keys and shapes copied from
# a run of that engine; the spec shortened). An older engine did not write batch_timeout_s yet.
OLD_RUN_JSON = {
    "run_id": "lol-v1-identity-0001",
    "run_key": "ab" * 32,
    "protocol": {
        "name": "lol-v1",
        "version": 2,
        "hash": "cd" * 32,
        "title": "LOL-v1 eval15",
        "spec": {"name": "lol-v1", "audit": {"group_by": [], "error_metric": "lpips"}},
    },
    "model": {"name": "identity", "spec": "identity", "args": {}, "weights": {}, "class": "x:Identity"},
    "metrics": [{"name": "psnr", "version": 1}],
    "metric_directions": {"psnr": True},
    "features": [],
    "unavailable_metrics": {},
    "data_root": "/data/LOL",
    "n_samples": 15,
    "seed": 0,
    "environment": {"python": "3.12.3", "torch": "2.13.0", "device": "cpu"},
    "command": "cals-bench run --protocol lol-v1 --model identity",
    "started": "2026-11-01T10:00:00+0000",
    "sessions": [{"seconds": 1.5, "scored": 15}],
    "status": "finished",
    "timing": {"wall_seconds": 1.5},
    "summary": {"psnr": {"mean": 7.77, "count": 15, "undefined": 0}},
    "failures": [],
    "undefined_reasons": {},
    "metric_failures": [],
    "finished_at": "2026-11-01T10:00:02+0000",
    "distributed": {"world_size": 1, "backend": "gloo", "sharding": "round-robin"},
}


def test_old_format_record_loads_and_is_migrated():
    rec = RunRecord.from_json(OLD_RUN_JSON)
    assert rec.schema_version == run_record.SCHEMA_VERSION == 1
    assert rec.protocol.name == "lol-v1"
    assert rec.protocol.version == 2
    assert rec.protocol.hash == "cd" * 32
    assert rec.summary["psnr"]["mean"] == 7.77
    assert rec.n_samples == 15
    assert rec.is_finished
    assert rec.batch_timeout_s is None  # filled by the migration
    assert rec.extra == {"distributed": OLD_RUN_JSON["distributed"]}  # untyped keys kept as they are
    # the migrated JSON form is the old one plus the version and the filled key, nothing else
    assert rec.to_json() == {**OLD_RUN_JSON, "schema_version": 1, "batch_timeout_s": None}
    assert "schema_version" not in OLD_RUN_JSON  # the input is not modified


def test_round_trip_is_lossless():
    current = RunRecord.from_json(OLD_RUN_JSON).to_json()
    again = RunRecord.from_json(json.loads(json.dumps(current)))
    assert again.to_json() == current
    assert again == RunRecord.from_json(current)
    # optional keys the run has not reached stay absent (not null) in the JSON form
    running = {k: v for k, v in current.items() if k not in ("timing", "summary", "finished_at")}
    assert RunRecord.from_json(running).to_json() == running


def test_newer_schema_version_is_a_one_line_error():
    newer = {**OLD_RUN_JSON, "schema_version": run_record.SCHEMA_VERSION + 1}
    with pytest.raises(
        RunRecordError, match=r"schema_version 2 is newer than this cals-bench reads \(1\)"
    ) as e:
        RunRecord.from_json(newer, "runs/x/run.json")
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("runs/x/run.json: ")
    with pytest.raises(RunRecordError, match="not a run record"):
        RunRecord.from_json({"run_id": "x"})


def test_old_run_folder_is_reindexed_and_read(tmp_path):
    """A results folder written before versioning (run.json without schema_version, no index) loads."""
    folder = tmp_path / "runs" / OLD_RUN_JSON["run_id"]
    folder.mkdir(parents=True)
    # status "running": re-indexed without records (a finished one would need its records.parquet)
    (folder / "run.json").write_text(json.dumps({**OLD_RUN_JSON, "status": "running"}))
    store = Store(tmp_path)
    meta = store.get_run(OLD_RUN_JSON["run_id"])
    assert meta["schema_version"] == 1
    assert meta["summary"] == OLD_RUN_JSON["summary"]
    assert meta["status"] == "running"
    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == run_record.INDEX_VERSION


def test_unversioned_index_is_migrated(tmp_path):
    """An index made before user_version (0) gets its stored records migrated by the step 0 -> 1."""
    Store(tmp_path)  # creates the tables at the current version
    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        con.execute("PRAGMA user_version=0")
        con.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ("old", "k", "lol-v1", 2, "h", "identity", "{}", "finished", 1.0, 2.0, 15,
             json.dumps({**OLD_RUN_JSON, "run_id": "old"})),
        )  # fmt: skip
    store = Store(tmp_path)
    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        stored = json.loads(con.execute("SELECT meta FROM runs WHERE run_id='old'").fetchone()[0])
    assert stored["schema_version"] == 1
    assert stored["batch_timeout_s"] is None
    assert store.get_run("old")["finished"] == 2.0


def test_newer_index_is_a_one_line_error(tmp_path):
    Store(tmp_path)
    with sqlite3.connect(tmp_path / "index.sqlite") as con:
        con.execute(f"PRAGMA user_version={run_record.INDEX_VERSION + 1}")
    with pytest.raises(RunRecordError, match="newer than this cals-bench reads"):
        Store(tmp_path)


def test_engine_run_json_is_a_current_record_and_round_trips(tmp_path):
    """run.json of a real (tiny) run: current schema version, lossless through the typed record, and the
    same record the store hands out."""
    from cals_bench.engine import evaluate
    from cals_bench.protocol import load_file
    from tests.helpers import make_pairs

    data = make_pairs(tmp_path / "d", n=2)
    proto_file = tmp_path / "tiny.yaml"
    proto_file.write_text(
        "name: tiny\nversion: 1\ntitle: t\ndataset: {layout: paired, low_dir: low, high_dir: high}\n"
        "metrics: [psnr]\nbatch_size: 2\n"
    )
    store = Store(tmp_path / "r")
    res = evaluate(load_file(proto_file), "identity", data_root=data, store=store, progress=False)
    on_disk = json.loads((store.run_dir(res.run_id) / "run.json").read_text())
    assert on_disk["schema_version"] == run_record.SCHEMA_VERSION
    assert on_disk["status"] == "finished"
    rec = run_record.read_run_json(store.run_dir(res.run_id) / "run.json")
    assert rec.to_json() == on_disk
    assert rec.extra == {}
    assert rec.summary["psnr"]["count"] == 2
    assert rec.protocol.name == "tiny"
    stored = store.get_run(res.run_id)
    assert {k: v for k, v in stored.items() if k not in ("created", "finished")} == on_disk
