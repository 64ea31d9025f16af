"""Every cheat from issue 14 fails under `submit`: the model runs in a bubblewrap sandbox and gets only inputs.

One cheating model tries all of them (each prints what it found, into the captured stdout log); the
submission must score exactly what the identity scores (checked against scikit-image), and the store's
other run must be untouched. The in-process path labels the same file as unisolated code.
"""

from __future__ import annotations

import json

import pytest
from submit_helpers import identity_scores, need_level, snapshot, tiny_world, write

from cals_bench import protocol as protocol_mod
from cals_bench.engine import evaluate
from cals_bench.errors import CalsBenchError
from cals_bench.store import Store
from cals_bench.submit.flow import submit_code

CHEATER = r'''
import gc, inspect, os, sqlite3, sys, time
import torch
from cals_bench.enhancer import Enhancer

FAKE_IAT_SHA = "f" * 64

def say(*a):
    print("CHEAT", *a, flush=True)

class Cheater(Enhancer):
    name = "iat"                                   # cheat: pass for the registered IAT

    def __init__(self, outside=""):
        super().__init__()
        self.outside = outside
        self.weights_used["llie/iat-lol"] = FAKE_IAT_SHA   # cheat: report IAT's weight hash
        try:                                       # cheat: patch the suite's metric code
            import cals_bench.metrics.fidelity as fid
            for name in dir(fid):
                obj = getattr(fid, name)
                if isinstance(obj, type) and hasattr(obj, "score_batch"):
                    obj.score_batch = lambda self, out, ref, ctx: [{c: 42.0 for c in self.columns} for _ in ctx]
            say("metrics: patched in this process")
        except Exception as exc:
            say("metrics: patch failed", exc)
        time.perf_counter = lambda: 0.0           # cheat: freeze the clock
        time.time = lambda: 0.0
        say("clock: patched in this process")

    def _stack_reference(self, x):
        """Tensors shaped like the input that are none of the inputs seen so far: a reference, if any."""
        self.seen = getattr(self, "seen", []) + [x.clone()]

        def new(v):
            return (
                isinstance(v, torch.Tensor) and v.shape == x.shape and v.dtype == x.dtype
                and not any(torch.equal(v, s) for s in self.seen if s.shape == v.shape)
            )

        found = [v for f in inspect.stack() for v in f.frame.f_locals.values() if new(v)]
        return found + [o for o in gc.get_objects() if new(o)]

    def _argv_reference(self):
        texts = [" ".join(sys.argv)]
        try:
            pids = os.listdir("/proc")
        except OSError:
            pids = []
        for pid in pids:
            if pid.isdigit():
                try:
                    texts.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
                except OSError:
                    pass
        texts.append(os.environ.get("CALS_BENCH_DATA_ROOT", ""))
        roots = []
        for t in texts:
            parts = t.split()
            roots += [parts[i + 1] for i, p in enumerate(parts[:-1]) if p == "--data-root"]
        return [r for r in roots if os.path.isdir(os.path.join(r, "high"))]

    def _walk(self):
        hits, dbs = [], []
        for top, dirs, files in os.walk("/"):
            if top.startswith(("/proc", "/sys", "/dev")):
                dirs[:] = []
                continue
            for f in files:
                p = os.path.join(top, f)
                if f == "index.sqlite":
                    dbs.append(p)
                if os.path.basename(top) in ("high", "Normal") or f in ("000.png", "001.png", "002.png"):
                    hits.append(p)
        return hits, dbs

    def enhance(self, x):
        stack = self._stack_reference(x)
        say(f"stack: {len(stack)} reference-like tensors")
        roots = self._argv_reference()
        say(f"argv: {len(roots)} data roots with high/")
        hits, dbs = getattr(self, "walked", None) or self._walk()  # once: the tree does not change
        self.walked = (hits, dbs)
        say(f"walk: {len(hits)} reference files, {len(dbs)} sqlite indexes", hits[:3])
        for db in dbs:
            con = sqlite3.connect(db)
            con.execute("UPDATE scores SET value = 99.0")
            con.commit()
        try:                                       # write outside its folder
            with open(self.outside, "w") as fh:
                fh.write("escaped")
            say("write: outside succeeded")
        except OSError as exc:
            say("write: outside refused", type(exc).__name__)
        time.sleep(0.3)                            # real time the frozen clock would hide
        if stack:
            return stack[0]
        return x.clone()
'''


@pytest.fixture(scope="module", params=["bwrap", "landlock"])
def cheated(request, tmp_path_factory):
    need_level(request.param)
    root = tmp_path_factory.mktemp(f"cheats-{request.param}")
    data, proto_path, results = tiny_world(root)
    store = Store(results)
    proto = protocol_mod.load(str(proto_path))
    other = evaluate(proto, "identity", data_root=data, store=store, progress=False)
    before = snapshot(results)
    model = write(root / "entry" / "cheater.py", CHEATER)
    outside = root / "outside.txt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_BENCH_SANDBOX", request.param)
        outcome = submit_code(
            str(proto_path),
            f"{model}:Cheater",
            {"outside": str(outside)},
            store=store,
            data_root=data,
            progress=False,
        )
    assert outcome.record["isolation"]["level"] == request.param
    log = (store.root / "submissions" / str(outcome.record["id"]) / "stdout.txt").read_text()
    return {
        "data": data,
        "store": store,
        "proto": proto_path,
        "other": other,
        "before": before,
        "outcome": outcome,
        "log": log,
        "model": model,
        "outside": outside,
    }


def _scored_as_identity(c) -> None:
    psnr, ssim = identity_scores(c["data"])
    summary = c["outcome"].result.summary
    assert summary["psnr"]["mean"] == pytest.approx(psnr, abs=1e-9)
    assert summary["ssim"]["mean"] == pytest.approx(ssim, abs=1e-6)


def test_stack_walk_finds_no_reference(cheated):
    assert "CHEAT stack: 0 reference-like tensors" in cheated["log"]
    _scored_as_identity(cheated)
    assert cheated["outcome"].result.summary["psnr"]["mean"] < 60  # not the inf of returning the reference


def test_data_root_from_argv_is_unreachable(cheated):
    assert "CHEAT argv: 0 data roots with high/" in cheated["log"]
    assert "CHEAT walk: 0 reference files, 0 sqlite indexes []" in cheated["log"]
    _scored_as_identity(cheated)


def test_patched_metrics_stay_in_the_worker(cheated):
    assert "CHEAT metrics: patched in this process" in cheated["log"]
    summary = cheated["outcome"].result.summary
    assert summary["psnr"]["mean"] != 42.0
    assert summary["ssim"]["mean"] != 42.0
    _scored_as_identity(cheated)


def test_name_and_weight_hash_come_from_the_suite(cheated):
    meta = cheated["outcome"].result.meta["model"]
    assert meta["name"] == "cheater.Cheater"  # from the spec, never the class's "iat"
    assert meta["weights"] == {}  # the suite bound no weight file
    assert meta["reported"]["name"] == "iat"
    assert meta["reported"]["weights_reported"] == {"llie/iat-lol": "f" * 64}
    with pytest.raises(CalsBenchError, match="taken by the registered model 'iat'"):
        submit_code(
            str(cheated["proto"]),
            f"{cheated['model']}:Cheater",
            {},
            store=cheated["store"],
            name="IAT",
            data_root=cheated["data"],
            progress=False,
        )


def test_other_runs_untouched(cheated):
    after = snapshot(cheated["store"].root)
    before = cheated["before"]
    assert [r for r in after["scores"] if r[0] == cheated["other"].run_id] == [
        r for r in before["scores"] if r[0] == cheated["other"].run_id
    ]
    assert not any(r[3] == 99.0 for r in after["scores"])
    assert set(before["runs"]) < set(after["runs"])


def test_frozen_clock_does_not_reach_the_timer(cheated):
    assert "CHEAT clock: patched in this process" in cheated["log"]
    times = cheated["store"].samples(cheated["outcome"].result.run_id)["time_ms"].astype(float)
    # each batch of 2 slept 0.3 s in the worker: at least 150 ms per sample on the scorer's clock
    assert (times >= 150.0).all()


def test_inprocess_run_of_the_same_file_is_labelled(tmp_path):
    from cals_bench.report.runinfo import run_flags

    data, proto_path, results = tiny_world(tmp_path)
    model = write(
        tmp_path / "m" / "named_iat.py",
        (
            "from cals_bench.enhancer import Enhancer\n"
            "class Model(Enhancer):\n    name = 'iat'\n"
            "    def __init__(self):\n        super().__init__()\n        self.weights_used['llie/iat-lol'] = 'f' * 64\n"
            "    def enhance(self, x):\n        return x.clone()\n"
        ),
    )
    res = evaluate(
        protocol_mod.load(str(proto_path)),
        f"{model}:Model",
        data_root=data,
        store=Store(results),
        progress=False,
    )
    m = res.meta["model"]
    assert m["name"] == "named_iat.Model"
    assert m["claimed_name"] == "iat"
    assert m["code"] == "unisolated"
    assert m["weights"] == {}
    assert m["weights_reported"] == {"llie/iat-lol": "f" * 64}
    assert [f.text for f in run_flags(res.meta) if f.text == "unisolated code"] == ["unisolated code"]
    assert json.loads(json.dumps(m))  # the record stays JSON


def test_writes_outside_its_folder_are_refused(cheated):
    assert "CHEAT write: outside refused" in cheated["log"]
    assert not cheated["outside"].exists()
