"""Hostile and broken submissions: each fails with one clear message, the submission is marked failed with
the reason, and the store (the other run, its records and folders) is untouched."""

from __future__ import annotations

import pytest
from submit_helpers import need_bwrap, snapshot, tiny_world, write

from cals_bench import protocol as protocol_mod
from cals_bench.engine import evaluate
from cals_bench.errors import CalsBenchError
from cals_bench.store import Store
from cals_bench.submit.flow import SubmissionFailed, submit_code
from cals_bench.submit.records import Submissions
from cals_bench.submit.sandbox import Limits

HEAD = "import os, sys, time\nimport torch\nfrom cals_bench.enhancer import Enhancer\n"


def enhancer(body: str, extra: str = "") -> str:
    lines = "\n".join("        " + line for line in body.strip().splitlines())
    return HEAD + extra + "\nclass Model(Enhancer):\n    def enhance(self, x):\n" + lines + "\n"


CASES = {
    "import error": (
        HEAD + "import no_such_package_xyz\n",
        {},
        r"ModuleNotFoundError: No module named 'no_such_package_xyz'",
    ),
    "missing class": (HEAD + "class Other(Enhancer):\n    pass\n", {}, r"has no attribute 'Model'"),
    "wrong signature": (
        HEAD + "class Model(Enhancer):\n    def enhance(self):\n        return None\n",
        {},
        r"raised TypeError: .*enhance\(\) takes 1 positional argument but 2 were given",
    ),
    "raises on a batch": (
        enhancer("raise RuntimeError('boom on batch')"),
        {},
        r"raised RuntimeError: boom on batch",
    ),
    "wrong shape": (enhancer("return x[..., :-1]"), {}, r"validation: runs on a batch: model returned shape"),
    "wrong dtype": (enhancer("return (x * 255).to(torch.uint8)"), {}, r"validation: dtype: torch.uint8"),
    "wrong range": (enhancer("return x * 4 + 1"), {}, r"validation: range \[0, 1\]: \[1"),
    "NaN": (enhancer("return x * float('nan')"), {}, r"validation: no NaN/Inf: \d+ NaN/Inf values"),
    "hangs": (
        enhancer("time.sleep(3600)"),
        {"batch_timeout_s": 2.0},
        r"timed out after 2 s enhancing a batch",
    ),
    "exceeds memory": (
        enhancer("return torch.ones(1 << 31, dtype=torch.float64)"),
        {"memory_bytes": 2 * 2**30},
        r"exceeded the memory limit \(2 GiB\)",
    ),
    "prints megabytes": (
        enhancer("print('x' * (1 << 20), flush=True)\nreturn x"),
        {"log_bytes": 65536},
        r"printed more than 65536 bytes to stdout",
    ),
    "calls exit": (enhancer("os._exit(7)"), {}, r"worker exited with status 7 while enhancing a batch"),
    "calls sys.exit": (enhancer("sys.exit(0)"), {}, r"called exit \(SystemExit 0\)"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_bwrap()
    root = tmp_path_factory.mktemp("hostile")
    data, proto_path, results = tiny_world(root)
    store = Store(results)
    other = evaluate(
        protocol_mod.load(str(proto_path)), "identity", data_root=data, store=store, progress=False
    )
    return {"root": root, "data": data, "proto": str(proto_path), "store": store, "other": other}


def _submit(world, name: str, code: str, limits: dict):
    model = write(world["root"] / name.replace(" ", "_") / "model.py", code)
    return submit_code(
        world["proto"],
        f"{model}:Model",
        {},
        store=world["store"],
        data_root=world["data"],
        limits=Limits(**{"batch_timeout_s": 60.0, **limits}),
        progress=False,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_submission_fails_cleanly(world, case):
    code, limits, message = CASES[case]
    before = snapshot(world["store"].root)
    with pytest.raises(SubmissionFailed, match=message) as info:
        _submit(world, case, code, limits)
    assert "\n" not in str(info.value)  # one line
    rec = info.value.record
    assert rec["status"] == "failed"
    assert rec["reason"]
    assert rec["run_id"] is None
    assert Submissions(world["store"]).get(rec["id"])["events"][-1]["event"] == "failed"
    assert snapshot(world["store"].root) == before


def test_printing_is_captured_and_capped(world):
    subs = Submissions(world["store"])
    rec = next(r for r in reversed(subs.list()) if r["status"] == "failed" and "printed more" in r["reason"])
    log = subs.folder(rec["id"]) / "stdout.txt"
    assert 65536 <= log.stat().st_size <= 65536 + 200
    assert log.read_text().endswith("worker stopped]\n")


def test_writes_outside_its_folder_fail(world):
    outside = world["root"] / "outside.txt"
    own = "/submission/written.txt"
    code = enhancer(f"open({str(outside)!r}, 'w').write('x')\nreturn x") + f"\n# also tries {own}\n"
    before = snapshot(world["store"].root)
    with pytest.raises(SubmissionFailed, match=r"raised FileNotFoundError"):
        _submit(world, "writes outside", code, {})
    assert not outside.exists()
    code = enhancer(f"open({own!r}, 'w').write('x')\nreturn x")
    with pytest.raises(SubmissionFailed, match=r"raised OSError: \[Errno 30\] Read-only file system"):
        _submit(world, "writes own folder", code, {})
    assert not (world["root"] / "writes_own_folder" / "written.txt").exists()
    assert snapshot(world["store"].root) == before


def test_reference_images_are_not_in_view(world):
    """A wrapper that walks the file system for the data finds nothing (else it fails, naming what it saw)."""
    data = world["data"]
    code = enhancer(
        "if getattr(self, 'walked', False):\n"
        "    return x\n"
        "self.walked, hits = True, []\n"
        "for top, dirs, files in os.walk('/'):\n"
        "    if top.startswith(('/proc', '/sys', '/dev')):\n"
        "        dirs[:] = []\n"
        "        continue\n"
        "    hits += [os.path.join(top, f) for f in files if f in ('000.png', '001.png', '002.png')]\n"
        f"hits += [p for p in ({str(data)!r}, {str(data / 'high')!r}, {str(world['store'].root)!r}) if os.path.exists(p)]\n"
        "if hits:\n"
        "    raise RuntimeError(f'found {hits[:3]}')\n"
        "return x"
    )
    out = _submit(world, "walker", code, {})
    assert out.record["status"] == "scored"


def test_a_model_folder_holding_the_data_is_refused(world):
    """The model's folder is shown to the sandbox: one that holds the data root or the store is refused."""
    model = write(world["data"].parent / "model_next_to_data.py", enhancer("return x"))
    before = snapshot(world["store"].root)
    with pytest.raises(CalsBenchError, match=r"holds the (data root|results store) .* folder of their own"):
        submit_code(world["proto"], f"{model}:Model", {}, store=world["store"], data_root=world["data"])
    assert snapshot(world["store"].root) == before
