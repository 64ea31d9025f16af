"""Two gloo processes under torchrun give the same training as one process with the same global batch."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cals_bench.train import checkpoint
from cals_bench.train.config import load_config
from cals_bench.train.logs import read_rows
from cals_bench.train.loop import Trainer
from tests.helpers import make_pairs

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "task": "iaml",
    "data": {"low_dir": "low", "high_dir": "high", "crop": 32, "val_fraction": 0.2, "val_crop": 32},
    "model": {"width": 4, "depth": 3, "ema_momentum": 0.9},
    "optim": {"lr": 1e-3, "batch_size": 4, "grad_clip": 1.0},
    "schedule": {"steps": 4},
    "runtime": {"amp": "fp32"},
    "log": {"every": 2, "val_every": 2, "checkpoint_every": 2, "plot": False},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as torchrun gives each process (OMP_NUM_THREADS=1)


def test_torchrun_two_gloo_processes_match_one_process(tmp_path):
    root = make_pairs(tmp_path / "pairs", n=10, size=(40, 48))
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    q = shlex.quote
    launch = "-m torch.distributed.run --standalone --nproc_per_node 2 -m cals_bench.train run"
    args = f"--config {q(str(cfg_path))} --data-root {q(str(root))} --out {q(str(tmp_path / 'ddp'))}"
    cmd = [sys.executable, *shlex.split(f"{launch} {args} --device cpu --quiet")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("step 4: last checkpoint") == 1  # the report is printed by rank 0 only

    single = tmp_path / "single"
    Trainer(load_config(cfg_path), data_root=root, out_dir=single, device="cpu", progress=False).fit()
    two, one = checkpoint.load(tmp_path / "ddp" / "last.pt"), checkpoint.load(single / "last.pt")
    assert two["step"] == one["step"] == 4
    worst = 0.0
    for key, ref in one["model"].items():  # student and EMA teacher decoder
        worst = max(worst, float((two["model"][key] - ref).abs().max()))
    # Same samples, same crops; DDP averages two 2-image mean gradients where one process takes the
    # 4-image mean: float32 summation order only. After 4 Adam steps of lr 1e-3 the largest weight
    # difference measured 3.7e-7 (0.04% of one step); 1e-5 is 1% of a step, while another batch or a
    # missing gradient average moves weights by ~1e-3 per step.
    assert worst < 1e-5, worst
    rows_two, rows_one = read_rows(tmp_path / "ddp" / "log.csv"), read_rows(single / "log.csv")
    assert len(rows_two) == len(rows_one) == 4
    for a, b in zip(rows_two, rows_one):
        assert a["step"] == b["step"]
        assert a["kind"] == b["kind"]
        # logged with 6 significant digits; losses are means over both processes. The gradient norm is
        # what Adam's scale invariance would hide: a missing average over processes would double it.
        for col in ("loss", "mse", "iaml", "grad_norm") if a["kind"] == "train" else ("val_psnr", "val_ssim"):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-4), col
