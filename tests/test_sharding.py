"""Sharded evaluation under torchrun (2 gloo processes on the CPU): the records equal a single-process run's,
each reach the store once, and a launch with a killed rank resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cals_bench import protocol as protocol_mod
from cals_bench import sharding
from cals_bench.engine import evaluate
from cals_bench.store import Store

DEMO = Path(protocol_mod.__file__).resolve().parents[1] / "protocols" / "demo.yaml"
REPO = DEMO.parents[1]

MODEL = '''
import os, signal
import torch
from cals_bench.enhancer import Enhancer


class Logged(Enhancer):
    """A gamma curve that logs the sample ids it is given; SIGKILLs itself on the KILL_RANK-th batch."""

    name = "logged-gamma"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batches = 0

    def start_batch(self, ids):
        rank = os.environ.get("RANK", "0")
        with open(os.path.join(os.environ["LOG_DIR"], f"rank{rank}.log"), "a") as f:
            f.write("\\n".join(ids) + "\\n")
        self.batches += 1
        if os.environ.get("KILL_RANK") == rank and self.batches == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)

    def enhance(self, x):
        return x.clamp(0, 1) ** 0.6
'''


@pytest.fixture
def setup(tmp_path):
    spec = yaml.safe_load(DEMO.read_text())
    spec["name"] = "demo-sharded"
    spec["metrics"] = ["psnr", "ssim"]
    spec.pop("face_samples", None)
    spec["metric_options"] = {}
    spec["audit"] = {"group_by": ["context"], "min_group_size": 2, "bootstrap": 20}
    spec["batch_size"] = 1
    proto_path = tmp_path / "demo-sharded.yaml"
    proto_path.write_text(yaml.safe_dump(spec))
    model = tmp_path / "logged.py"
    model.write_text(MODEL)
    logs = tmp_path / "logs"
    logs.mkdir()
    return proto_path, f"{model}:Logged", logs


def _torchrun(
    proto_path: Path, model: str, results: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cals_bench", "run", "--protocol", str(proto_path), "--model", model,
        "--results", str(results), "--device", "cpu", "--quiet", "--no-report",
    ]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=300)


def _records(store: Store) -> tuple[str, list[tuple[str, str, float]], dict]:
    runs = store.list_runs()
    assert len(runs) == 1
    run_id = runs["run_id"].iloc[0]
    scores = sorted(store.scores(run_id).itertuples(index=False, name=None))
    return run_id, scores, store.get_run(run_id)


def _read_log(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line] if path.exists() else []


def test_shards_are_deterministic_and_disjoint():
    class S:
        def __init__(self, i):
            self.sample_id = f"s{i}"

    samples = [S(i) for i in range(7)]
    shards = [sharding.Shard(r, 3, r).mine(samples, samples) for r in range(3)]
    assert [[s.sample_id for s in sh] for sh in shards] == [["s0", "s3", "s6"], ["s1", "s4"], ["s2", "s5"]]
    done = {"s3"}  # a resumed launch skips what is stored, and nothing moves to another rank
    assert [
        s.sample_id
        for s in sharding.Shard(0, 3, 0).mine(samples, [s for s in samples if s.sample_id not in done])
    ] == ["s0", "s6"]


def test_two_ranks_equal_one_process_and_resume_after_a_killed_rank(tmp_path, setup, monkeypatch):
    proto_path, model, logs = setup
    monkeypatch.setenv("LOG_DIR", str(logs))
    single = Store(tmp_path / "single")
    ref = evaluate(protocol_mod.load_file(proto_path), model, {}, store=single, progress=False)
    _, ref_scores, ref_meta = _records(single)
    assert ref.meta["n_samples"] == 8
    assert len(ref_scores) == 16
    assert "distributed" not in ref_meta

    # launch 1: rank 1 is SIGKILLed on its 3rd batch (2 of its 4 samples are stored by then)
    results = tmp_path / "sharded"
    (logs / "rank0.log").unlink(missing_ok=True)
    first = _torchrun(proto_path, model, results, {"LOG_DIR": str(logs), "KILL_RANK": "1", "KILL_AT": "3"})
    assert first.returncode != 0, first.stderr[-2000:]
    store = Store(results)
    run_id = store.list_runs()["run_id"].iloc[0]
    stored_first = store.done_ids(run_id)
    rank1_first = _read_log(logs / "rank1.log")
    assert len(rank1_first) == 3
    assert set(rank1_first[:2]) <= stored_first
    assert rank1_first[2] not in stored_first
    assert store.get_run(run_id)["status"] != "finished"

    # launch 2 (no kill): resumes; nothing stored is scored again, every missing sample is scored once
    for f in ("rank0.log", "rank1.log"):
        (logs / f).rename(logs / f"first-{f}")
    second = _torchrun(proto_path, model, results, {"LOG_DIR": str(logs)})
    assert second.returncode == 0, second.stderr[-3000:]
    again = _read_log(logs / "rank0.log") + _read_log(logs / "rank1.log")
    assert len(again) == len(set(again))
    assert not set(again) & stored_first
    assert set(again) | stored_first == {s for s, _, _ in ref_scores}

    run_id2, scores, meta = _records(Store(results))
    assert run_id2 == run_id
    assert meta["status"] == "finished"
    # every per-sample record equals the single-process run's, bit for bit (same batches of one sample)
    assert scores == ref_scores
    assert meta["distributed"]["world_size"] == 2
    assert meta["sessions"][-1]["world_size"] == 2
    assert meta["sessions"][-1]["scored"] == len(again)
    for metric, s in ref_meta["summary"].items():  # summary from the merged records, on rank 0 only
        assert abs(meta["summary"][metric]["mean"] - s["mean"]) < 1e-12
        assert meta["summary"][metric]["count"] == s["count"]
    # the audit is computed once, on rank 0, from the merged records
    assert second.stdout.count(f"run {run_id}") == 1
    assert "records:" in second.stdout
