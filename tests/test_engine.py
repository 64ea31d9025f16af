"""The evaluation loop end to end: bad input, resume after SIGKILL, reuse, JSON output, export."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cals_bench.cli import main
from cals_bench.data.io import read_rgb
from cals_bench.errors import DataError
from tests.helpers import make_pairs, write_model

FAST = (
    "name: fast\nversion: 1\ntitle: psnr/ssim on a paired folder\n"
    "dataset: {layout: paired, low_dir: low, high_dir: high}\nmetrics: [psnr, ssim]\nbatch_size: 2\n"
)


@pytest.fixture
def proto(tmp_path):
    p = tmp_path / "fast.yaml"
    p.write_text(FAST)
    return str(p)


def _run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def _records(results, run_id):
    return pd.read_parquet(results / "runs" / run_id / "records.parquet")


def test_identity_scores_every_pair_and_json(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=5)
    res = _run(
        "run",
        "--protocol",
        proto,
        "--model",
        "identity",
        "--data-root",
        str(data),
        "--results",
        str(tmp_path / "r"),
        "--json",
        "--no-report",
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["protocol"]["name"] == "fast"
    assert payload["protocol"]["version"] == 1
    assert payload["metrics"]["psnr"]["count"] == 5
    # psnr of x vs x//5: recompute by hand from the files
    expected = []
    for i in range(5):
        lo = read_rgb(data / "low" / f"{i:03d}.png").astype(float)
        hi = read_rgb(data / "high" / f"{i:03d}.png").astype(float)
        expected.append(10 * np.log10(255**2 / np.mean((lo - hi) ** 2)))
    assert payload["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(expected), abs=1e-9)
    recs = _records(tmp_path / "r", payload["run_id"])
    assert sorted(recs["metric"].unique()) == ["psnr", "ssim"]
    assert len(recs) == 10


def test_rerun_reuses_and_force_rescores(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=2)
    args = [
        "run",
        "--protocol",
        proto,
        "--data-root",
        str(data),
        "--results",
        str(tmp_path / "r"),
        "--json",
        "--no-report",
    ]
    first = json.loads(_run(*args).stdout)
    second = json.loads(_run(*args).stdout)
    assert second["reused"]
    assert second["run_id"] == first["run_id"]
    third = json.loads(_run(*args, "--force").stdout)
    assert not third["reused"]
    assert third["metrics"] == first["metrics"]


def test_missing_data_root(tmp_path, proto):
    res = _run(
        "run", "--protocol", proto, "--data-root", str(tmp_path / "nope"), "--results", str(tmp_path / "r")
    )
    assert res.exit_code == 2
    assert "data root" in res.stderr
    assert "nope" in res.stderr
    assert "does not exist" in res.stderr


def test_lol_v1_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.delenv("CALS_BENCH_DATA", raising=False)
    res = _run("run", "--protocol", "lol-v1", "--results", str(tmp_path / "r"))
    assert res.exit_code == 2
    assert "--data-root" in res.stderr
    assert "eval15/low" in res.stderr
    assert "daooshee" in res.stderr


def test_bad_samples_fail_alone(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=4)
    (data / "high" / "001.png").unlink()  # low without reference
    (data / "low" / "002.png").write_bytes((data / "low" / "002.png").read_bytes()[:100])  # truncated
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(data / "high" / "003.png")  # size mismatch
    res = _run(
        "run",
        "--protocol",
        proto,
        "--data-root",
        str(data),
        "--results",
        str(tmp_path / "r"),
        "--json",
        "--no-report",
    )
    assert res.exit_code == 3  # finished, but with failed samples
    payload = json.loads(res.stdout)
    errors = {f["sample_id"]: f["error"] for f in payload["failures"]}
    assert set(errors) == {"001", "002", "003"}
    assert "no reference image" in errors["001"]
    assert "001.png" in errors["001"]
    assert "unreadable or truncated" in errors["002"]
    assert "002.png" in errors["002"]
    assert "size mismatch" in errors["003"]
    assert payload["metrics"]["psnr"]["count"] == 1  # the good sample's record is kept


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return x[:, :, :-1]", "returned shape"),
        ("return (x * 255).to(torch.uint8)", "dtype"),
        ("return x * 3 + 0.5", "outside [0, 1]"),
        ("y = x.clone(); y[0, 0, 0, 0] = float('nan'); return y", "NaN/Inf"),
    ],
)
def test_bad_model_outputs(tmp_path, proto, body, message):
    data = make_pairs(tmp_path / "d", n=2)
    model = write_model(tmp_path / "m.py", body)
    res = _run(
        "run",
        "--protocol",
        proto,
        "--model",
        f"{model}:Model",
        "--data-root",
        str(data),
        "--results",
        str(tmp_path / "r"),
        "--json",
        "--no-report",
        "--batch-size",
        "1",
    )
    payload = json.loads(res.stdout)
    assert res.exit_code == 3
    assert any(message in f["error"] for f in payload["failures"]), payload["failures"]


def test_model_that_always_raises_stops_the_run(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=5)
    model = write_model(tmp_path / "m.py", "raise RuntimeError('boom')")
    res = _run(
        "run",
        "--protocol",
        proto,
        "--model",
        f"{model}:Model",
        "--data-root",
        str(data),
        "--results",
        str(tmp_path / "r"),
        "--batch-size",
        "1",
        "--no-report",
    )
    assert res.exit_code == 2
    assert "stopping" in res.stderr
    assert "boom" in res.stderr


def test_model_that_raises_on_one_sample(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(data / "low" / "001.png")
    model = write_model(tmp_path / "m.py", "if float(x.max()) == 0: raise ValueError('all black')\nreturn x")
    res = _run(
        "run",
        "--protocol",
        proto,
        "--model",
        f"{model}:Model",
        "--data-root",
        str(data),
        "--results",
        str(tmp_path / "r"),
        "--batch-size",
        "1",
        "--json",
        "--no-report",
    )
    payload = json.loads(res.stdout)
    assert [f["sample_id"] for f in payload["failures"]] == ["001"]
    assert "all black" in payload["failures"][0]["error"]
    assert payload["metrics"]["psnr"]["count"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "lol-v"], "unknown protocol 'lol-v'; did you mean lol-v1"),
        (["--model", "identiti"], "unknown model 'identiti'; did you mean identity"),
        (["--model", "gamma", "--model-args", "gama=2"], "has no argument 'gama'; did you mean gamma?"),
        (["--model", "gamma", "--model-args", "nonsense"], "not of the form key=value"),
    ],
)
def test_unknown_names(tmp_path, args, message):
    res = _run("run", *args, "--results", str(tmp_path / "r"))
    assert res.exit_code == 2, res.stderr
    assert message in res.stderr, res.stderr


def test_unknown_metric_suggests(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(FAST.replace("[psnr, ssim]", "[psnr, ssimm]"))
    res = _run(
        "run",
        "--protocol",
        str(p),
        "--data-root",
        str(make_pairs(tmp_path / "d", n=1)),
        "--results",
        str(tmp_path / "r"),
    )
    assert res.exit_code == 2
    assert "unknown metric 'ssimm'; did you mean ssim" in res.stderr


def test_checksum_mismatch_is_refused(tmp_path, lol_root):
    import shutil

    data = tmp_path / "lol"
    shutil.copytree(lol_root, data)
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(data / "eval15" / "high" / "1.png")
    from cals_bench import protocol
    from cals_bench.engine import evaluate
    from cals_bench.store import Store

    with pytest.raises(DataError, match=r"1\.png: sha256 .* differs from the protocol"):
        evaluate(
            protocol.load("lol-v1"), "identity", data_root=data, store=Store(tmp_path / "r"), progress=False
        )


SLOW_MODEL = """
import time
time.sleep(0.4)
return x
"""


def test_sigkill_and_resume_scores_each_sample_once(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=8)
    model = write_model(tmp_path / "slow.py", SLOW_MODEL)
    results = tmp_path / "r"
    cmd = [
        sys.executable,
        "-m",
        "cals_bench.cli",
        "run",
        "--protocol",
        proto,
        "--model",
        f"{model}:Model",
        "--data-root",
        str(data),
        "--results",
        str(results),
        "--batch-size",
        "1",
        "--quiet",
        "--no-report",
    ]
    env = {**os.environ}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = results / "index.sqlite"
    deadline = time.time() + 120
    scored = 0
    while time.time() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    scored = con.execute("SELECT COUNT(*) FROM samples WHERE status='ok'").fetchone()[0]
            except sqlite3.OperationalError:
                scored = 0
        if scored >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= scored < 8, f"kill happened at {scored} scored samples"
    done = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["metrics"]["psnr"]["count"] == 8
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT sample_id, metric, COUNT(*) FROM scores WHERE run_id=? GROUP BY sample_id, metric",
            (payload["run_id"],),
        ).fetchall()
    assert len(rows) == 16
    assert all(count == 1 for _, _, count in rows)
    assert len(json.loads((results / "runs" / payload["run_id"] / "run.json").read_text())["sessions"]) == 1


def test_export_formats(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    results = tmp_path / "r"
    payload = json.loads(
        _run(
            "run",
            "--protocol",
            proto,
            "--data-root",
            str(data),
            "--results",
            str(results),
            "--json",
            "--no-report",
        ).stdout
    )
    for fmt in ("csv", "parquet", "json"):
        out = tmp_path / f"rec.{fmt}"
        res = _run(
            "runs", "export", payload["run_id"], "--format", fmt, "--out", str(out), "--results", str(results)
        )
        assert res.exit_code == 0, res.output
        df = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt](out)
        assert len(df) == 6
        assert {"sample_id", "metric", "value"} <= set(df.columns)


def test_list_commands(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=1)
    results = tmp_path / "r"
    _run("run", "--protocol", proto, "--data-root", str(data), "--results", str(results), "--no-report")
    assert "fast" in _run("runs", "list", "--results", str(results)).stdout
    shown = _run("runs", "show", "latest", "--results", str(results)).stdout
    assert "psnr" in shown
    assert "packages" in shown
    assert "lol-v1" in _run("protocols", "list").stdout
    assert "checksums" in _run("protocols", "show", "lol-v1").stdout
    models = _run("models", "list").stdout
    for name in ("identity", "gamma", "histogram-equalization", "clahe"):
        assert name in models
    for cmd in (
        ["run"],
        ["protocols", "list"],
        ["models", "list"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "export"],
        ["data", "check"],
        ["weights", "list"],
    ):
        helptext = _run(*cmd, "--help").stdout
        assert "Example" in helptext, cmd


FLAGGED_MODEL = """
import os
if os.path.exists(os.environ["CALS_TEST_FAIL_FLAG"]):
    raise RuntimeError("told to fail")
return x
"""


def test_a_run_resumes_only_with_the_settings_it_started_with(tmp_path, proto, monkeypatch):
    """The run key leaves device and batch size out (the same run is found again), so a resume that
    changes either is refused instead of mixing two settings' records in one run."""
    from cals_bench import protocol as protocol_mod
    from cals_bench.engine import evaluate
    from cals_bench.errors import CalsBenchError
    from cals_bench.store import Store

    data = make_pairs(tmp_path / "d", n=4)
    model = write_model(tmp_path / "flagged.py", FLAGGED_MODEL)
    flag = tmp_path / "fail"
    flag.write_text("1")
    monkeypatch.setenv("CALS_TEST_FAIL_FLAG", str(flag))
    store = Store(tmp_path / "r")
    p = protocol_mod.load(proto)

    def go(batch_size, device="cpu"):
        return evaluate(
            p,
            f"{model}:Model",
            data_root=data,
            store=store,
            batch_size=batch_size,
            device=device,
            progress=False,
        )

    with pytest.raises(CalsBenchError, match="stopping"):
        go(1)  # every batch fails: the run stops unfinished, started with batch size 1 on the CPU
    flag.unlink()
    with pytest.raises(
        CalsBenchError, match=r"was started with batch size 1 \(now 2\).*--device cpu --batch-size 1"
    ):
        go(2)
    # the same refusal for another device kind (the record as a GPU run would have left it)
    (run_id,) = store.list_runs()["run_id"]  # the one stopped run
    on_gpu = store.get_record(run_id)
    on_gpu.environment = {**on_gpu.environment, "device": "cuda:0"}
    store.update_meta(run_id, on_gpu, status="stopped")
    with pytest.raises(
        CalsBenchError, match=r"was started with device cuda \(now cpu\).*--device cuda --batch-size 1"
    ):
        go(1)
    on_gpu.environment = {**on_gpu.environment, "device": "cpu"}
    store.update_meta(run_id, on_gpu, status="stopped")
    result = go(1)
    assert result.record.status == "finished"
    assert result.record.batch_size == 1
    assert result.record.sessions[-1]["device"] == "cpu"
    assert result.record.sessions[-1]["batch_size"] == 1
    assert result.summary["psnr"]["count"] == 4


def test_runs_cache_lists_and_clears_entries_without_changing_results(tmp_path, proto):
    data = make_pairs(tmp_path / "d", n=3)
    results = tmp_path / "r"
    args = ["run", "--protocol", proto, "--data-root", str(data), "--results", str(results), "--json"]
    first = json.loads(_run(*args).stdout)
    listing = _run("runs", "cache", "--results", str(results))
    assert listing.exit_code == 0, listing.output
    line = next(x for x in listing.output.splitlines() if x.startswith("decoded-rgb"))
    assert int(line.split()[1]) == 6  # 3 inputs + 3 references, one entry per distinct PNG
    cleared = _run("runs", "cache", "--clear", "--kind", "decoded-rgb", "--results", str(results))
    assert "deleted" in cleared.output
    assert not list((results / "cache" / "decoded-rgb").rglob("*.npz"))
    again = json.loads(_run(*args, "--force").stdout)
    assert again["metrics"] == first["metrics"]
    missing = CliRunner().invoke(main, ["runs", "cache", "--kind", "nope", "--results", str(results)])
    assert missing.exit_code != 0
    assert "no cache entries of kind 'nope'" in missing.output
