"""The submission path end to end through the command line: a wrapper file (a plain torch.nn.Module) and an
outputs folder in a temporary directory outside the project are validated, submitted, scored and shown on
the HTML leaderboard with their kind and isolation; the plugin template installs and is listed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from submit_helpers import need_bwrap, tiny_world, write

from cals_bench.cli import main

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "templates" / "cals-bench-plugin"

NET = """
import torch

class Brighten(torch.nn.Module):          # a researcher's plain module: no Enhancer subclass
    pad_multiple = 4

    def __init__(self, gain: float = 2.0):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        return (x * self.gain).clamp(0, 1)

def halve(x):                              # a plain callable
    return x * 0.5
"""


def _expected_psnr(data: Path, fn) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    vals = []
    for p in sorted((data / "high").glob("*.png")):
        ref = np.asarray(Image.open(p).convert("RGB"))
        low = np.asarray(Image.open(data / "low" / p.name).convert("RGB")).astype(np.float64) / 255.0
        out = np.round(np.clip(fn(low), 0, 1) * 255).astype(np.uint8)
        vals.append(peak_signal_noise_ratio(ref, out, data_range=255))
    return float(np.mean(vals))


def test_wrapper_and_outputs_reach_the_html_leaderboard(tmp_path, monkeypatch):
    need_bwrap()
    assert REPO not in tmp_path.parents
    data, proto, results = tiny_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    results = results.relative_to(tmp_path)  # a relative --results, as typed
    model = write(tmp_path / "entry" / "my_net.py", NET)
    runner = CliRunner()

    res = runner.invoke(main, ["validate", f"{model}:Brighten", "--model-args", "gain=3", "--json"])
    assert res.exit_code == 0, res.output
    checks = json.loads(res.output)
    assert checks["passed"]
    assert checks["isolation"]["level"] == "bwrap"
    assert {c["name"] for c in checks["checks"]} >= {
        "shape",
        "dtype",
        "range [0, 1]",
        "no NaN/Inf",
        "batch-size independent",
        "deterministic (fixed seed)",
        "odd size 37x53 + padding",
        "time per megapixel",
        "memory per megapixel",
    }

    common = ["--protocol", str(proto), "--data-root", str(data), "--results", str(results), "--json"]
    res = runner.invoke(
        main,
        [
            "submit",
            f"{model}:Brighten",
            "--model-args",
            "gain=3",
            "--name",
            "brighten-3",
            "--note",
            "A. Researcher <a@example.org>",
            *common,
        ],
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output.strip().splitlines()[-1])
    assert rec["status"] == "scored"
    assert rec["kind"] == "code"
    assert rec["isolation"]["level"] == "bwrap"
    from cals_bench.store import Store

    meta = Store(results).get_run(rec["run_id"])
    assert meta["summary"]["psnr"]["mean"] == pytest.approx(_expected_psnr(data, lambda x: x * 3), abs=1e-9)
    assert (Store(results).run_dir(rec["run_id"]) / "worker" / "validation.json").is_file()

    res = runner.invoke(
        main, ["submit", f"{model}:Brighten", "--model-args", "gain=3", "--name", "brighten-3", *common[:-1]]
    )
    assert res.exit_code == 0
    assert "identical to submission #1" in res.output

    res = runner.invoke(main, ["submit", f"{model}:halve", "--name", "halve", *common])
    assert res.exit_code == 0, res.output

    outs = tmp_path / "paper_outputs"
    outs.mkdir()
    for p in sorted((data / "low").glob("*.png")):
        low = np.asarray(Image.open(p).convert("RGB")).astype(np.float64) / 255.0
        Image.fromarray(np.round(np.clip(low * 2, 0, 1) * 255).astype(np.uint8)).save(outs / p.name)
    res = runner.invoke(main, ["score", "--outputs", str(outs), "--name", "paper x2", *common])
    assert res.exit_code == 0, res.output
    rec_out = json.loads(res.output.strip().splitlines()[-1])
    assert Store(results).get_run(rec_out["run_id"])["summary"]["psnr"]["mean"] == pytest.approx(
        _expected_psnr(data, lambda x: x * 2), abs=1e-9
    )

    res = runner.invoke(main, ["submissions", "list", "--results", str(results)])
    assert res.exit_code == 0
    assert "brighten-3" in res.output
    assert "paper x2" in res.output
    res = runner.invoke(main, ["submissions", "show", "1", "--results", str(results), "--json"])
    shown = json.loads(res.output)
    assert shown["submitter"]["note"] == "A. Researcher <a@example.org>"
    assert shown["args"] == {"gain": 3}
    assert [e["event"] for e in shown["events"]] == ["created", "validated", "scored"]
    assert shown["meta"]["files"]["my_net.py"] == hashlib.sha256(model.read_bytes()).hexdigest()

    reports = tmp_path / "reports"
    res = runner.invoke(
        main,
        [
            "leaderboard",
            "--protocol",
            "tiny-pairs",
            "--results",
            str(results),
            "--reports",
            str(reports),
            "--html",
        ],
    )
    assert res.exit_code == 0, res.output
    html = next(reports.rglob("leaderboard.html")).read_text()
    for text in ("brighten-3", "halve", "paper x2", "code \u00b7 sandboxed", ">outputs<"):
        assert text in html, text
    csv = next(reports.rglob("leaderboard.csv")).read_text()
    assert "kind" in csv.splitlines()[0]
    assert ",bwrap," in csv
    assert ",no code," in csv


def test_submit_refused_without_sandbox_unless_trusted(tmp_path, monkeypatch):
    data, proto, results = tiny_world(tmp_path)
    model = write(tmp_path / "entry" / "m.py", NET)
    monkeypatch.setenv("CALS_BENCH_SANDBOX", "none")
    args = [
        "submit",
        f"{model}:halve",
        "--protocol",
        str(proto),
        "--data-root",
        str(data),
        "--results",
        str(results),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert "refused: no sandbox" in res.output
    assert "--trusted" in res.output
    res = CliRunner().invoke(main, [*args, "--trusted", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output.strip().splitlines()[-1])
    assert rec["isolation"]["level"] == "process"
    assert not rec["isolation"]["isolated"]
    from cals_bench.report.runinfo import run_flags
    from cals_bench.store import Store

    flags = [f.text for f in run_flags(Store(results).get_run(rec["run_id"]))]
    assert "code \u00b7 unisolated code" in flags


@pytest.fixture
def installed_template(tmp_path):
    src = tmp_path / "plugin"
    shutil.copytree(TEMPLATE, src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(src)], check=True, timeout=600)
    yield src
    subprocess.run([*pip, "uninstall", "-y", "cals-bench-plugin-example"], check=True, timeout=300)


def test_plugin_template_installs_lists_and_submits(installed_template, tmp_path):
    need_bwrap()
    exe = Path(sys.executable).with_name("cals-bench")
    listed = subprocess.run([str(exe), "models", "list"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0
    assert any(x.split()[:1] == ["example-gain"] for x in listed.stdout.splitlines())
    as_json = subprocess.run(
        [str(exe), "models", "list", "--json"], capture_output=True, text=True, timeout=300
    )
    row = next(m for m in json.loads(as_json.stdout)["models"] if m["name"] == "example-gain")
    assert row["origin"] == "entry point cals_bench_plugin_example.model:ExampleGain"
    data, proto, results = tiny_world(tmp_path)
    run = subprocess.run(
        [
            str(exe),
            "submit",
            "example-gain",
            "--model-args",
            "target=0.5",
            "--protocol",
            str(proto),
            "--data-root",
            str(data),
            "--results",
            str(results),
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    rec = json.loads(run.stdout.strip().splitlines()[-1])
    assert rec["kind"] == "plugin"
    assert rec["status"] == "scored"
    assert rec["name"] == "example-gain"
    from cals_bench.store import Store

    psnr = Store(results).get_run(rec["run_id"])["summary"]["psnr"]["mean"]
    assert psnr == pytest.approx(_expected_psnr(data, lambda x: x * (0.5 / max(x.mean(), 1e-3))), abs=1e-6)
