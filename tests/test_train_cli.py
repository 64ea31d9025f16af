"""``cals-bench train`` end to end: train, stop, resume, score with ``cals-bench run --model checkpoint:``;
the Table IV ablation and the lambda grid at a tiny size."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from cals_bench.cli import main
from cals_bench.data.io import sha256_path
from cals_bench.train.cli import ABLATION, train
from tests.helpers import make_pairs

PROTOCOL = """
name: tiny-paired
version: 1
title: tiny paired protocol (test split test/, training split train/)
dataset:
  layout: paired
  low_dir: test/low
  high_dir: test/high
  train_low_dir: train/low
  train_high_dir: train/high
metrics: [psnr, ssim]
batch_size: 2
"""
# A tiny U-Net, 32x32 crops and a few steps: sized for a CI run on two busy cores.
TINY_SET = [
    "model.width=4", "model.depth=3", "data.crop=32", "data.val_crop=32", "data.val_fraction=0.2",
    "data.workers=0", "optim.batch_size=2", "schedule.steps=3", "runtime.amp=fp32", "log.every=1",
    "log.val_every=3", "log.checkpoint_every=3",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(tmp_path):
    make_pairs(tmp_path / "data" / "train", n=8, size=(48, 64), seed=1)
    make_pairs(tmp_path / "data" / "test", n=3, size=(48, 64), seed=2)
    proto = tmp_path / "tiny-paired.yaml"
    proto.write_text(PROTOCOL)
    return tmp_path, proto


def _invoke(group, *args):
    return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)


def _sets(*extra):
    return [x for s in (*TINY_SET, *extra) for x in ("--set", s)]


def test_train_stop_resume_and_score(setup):
    tmp, proto = setup
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"task": "iaml", "data": {"protocol": str(proto)}}))
    out = tmp / "run"
    common = ["train", "iaml", "--config", cfg, "--data-root", tmp / "data", "--out", out, "--quiet",
              *_sets("schedule.steps=6", "log.val_every=2")]  # fmt: skip
    # through the main `cals-bench` group, as a user runs it
    res = _invoke(main, *common, "--stop-at", 3)
    assert res.exit_code == 0
    assert "step 3: last checkpoint" in res.output
    res = _invoke(main, *common)  # without --resume: refused, nothing overwritten
    assert res.exit_code == 2
    assert "pass --resume" in res.output
    res = _invoke(main, *common, "--resume")
    assert res.exit_code == 0
    assert "step 6: last checkpoint" in res.output
    assert "best on the validation" in res.output
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert (out / "split.json").is_file()
    split = json.loads((out / "split.json").read_text())
    assert len(split["validation"]) == 2
    assert len(split["train"]) == 6
    assert not set(split["validation"]) & set(split["train"])
    assert "train/low" in split["description"]

    model = f"checkpoint:{out / 'best.pt'}"
    res = _invoke(main, "run", "--protocol", proto, "--model", model, "--data-root", tmp / "data",
                  "--results", tmp / "results", "--json", "--no-report")  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["metrics"]["psnr"]["count"] == 3
    assert math.isfinite(payload["metrics"]["psnr"]["mean"])
    assert payload["model"]["weights"] == {"checkpoint:best.pt": sha256_path(out / "best.pt")}


def test_ablation_trains_and_scores_table_iv(setup):
    tmp, proto = setup
    args = ["ablation", "--protocol", proto, "--data-root", tmp / "data", "--out", tmp / "abl",
            "--results", tmp / "results", "--quiet", *_sets()]  # fmt: skip
    res = _invoke(train, *args, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["variant"] for r in rows] == [label for label, _ in ABLATION]
    for r in rows:
        assert set(r["test"]) == {"psnr", "ssim"}
        assert all(math.isfinite(v) for v in r["test"].values())
        assert r["checkpoint"].endswith("best.pt")
        assert math.isfinite(r["val_psnr"])
    assert len({r["run_id"] for r in rows}) == 5  # five distinct checkpoints scored
    again = _invoke(train, *args)  # finished variants are reused, the table printed
    assert again.exit_code == 0
    assert "Table IV" in again.stdout
    assert all(label in again.stdout for label, _ in ABLATION)


def test_lambda_grid_selects_on_validation(setup):
    tmp, proto = setup
    res = _invoke(train, "grid", "--lambdas", "0.01,1", "--data-root", tmp / "data", "--out", tmp / "grid",
                  "--quiet", "--json", *_sets(f"data.protocol={proto}"))  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["lambda"] for r in rows] == [0.01, 1.0]
    assert sum(r["selected"] for r in rows) == 1
    best = max(rows, key=lambda r: r["val_psnr"])
    assert best["selected"]
    assert (tmp / "grid" / "lambda_0.01" / "last.pt").is_file()
