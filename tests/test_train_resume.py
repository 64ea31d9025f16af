"""Checkpoints: exact resume (bit-identical on the CPU), bad checkpoints refused with nothing overwritten,
non-finite losses stopped with the step, the terms and the last good checkpoint named."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from cals_bench.enhancer import load_enhancer
from cals_bench.train import checkpoint
from cals_bench.train.config import config_from_dict, merge
from cals_bench.train.errors import CheckpointError, TrainingDiverged
from cals_bench.train.logs import read_rows
from cals_bench.train.loop import Trainer
from tests.helpers import make_pairs

TINY = {
    "task": "iaml",
    "name": "tiny",
    "data": {"low_dir": "low", "high_dir": "high", "crop": 32, "val_fraction": 0.2, "val_crop": 32},
    "model": {"width": 4, "depth": 3, "ema_momentum": 0.9},
    "optim": {"lr": 1e-3, "batch_size": 2},
    "schedule": {"steps": 8, "warmup_steps": 2},
    "runtime": {"amp": "fp32"},
    "log": {"every": 2, "val_every": 4, "checkpoint_every": 3, "keep": 0, "plot": False},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("pairs"), n=6, size=(48, 64))


@pytest.fixture(scope="module")
def finished(one_torch_thread, data_root, tmp_path_factory) -> Path:
    """An uninterrupted 8-step run (with one thread, like the runs it is compared with)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    Trainer(config_from_dict(TINY), data_root=data_root, out_dir=out, progress=False).fit()
    return out


def _cfg(**over):
    return config_from_dict(merge(TINY, over))


def _digest(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_mid_epoch_is_bit_identical(data_root, finished, tmp_path):
    out = tmp_path / "interrupted"
    first = Trainer(_cfg(), data_root=data_root, out_dir=out, progress=False).fit(stop_at=5)
    position = checkpoint.load(out / "last.pt")["position"]
    assert first.step == 5
    assert position["batch_in_epoch"] == 1
    Trainer(_cfg(), data_root=data_root, out_dir=out, resume="auto", progress=False).fit()
    a, b = checkpoint.load(finished / "last.pt"), checkpoint.load(out / "last.pt")
    # exact: weights (student and EMA teacher), Adam moments, schedule, data position, best-on-validation
    for key in ("step", "position", "model", "ema", "optimizer", "scheduler", "val", "best", "config"):
        _assert_same(a[key], b[key], key)
    _assert_same(checkpoint.load(finished / "best.pt")["model"], checkpoint.load(out / "best.pt")["model"])
    rows_a, rows_b = read_rows(finished / "log.csv"), read_rows(out / "log.csv")
    for r in rows_a + rows_b:
        r.pop("images_per_s")  # wall-clock
    assert rows_a == rows_b
    assert len(rows_a) == 6


def test_checkpoint_loads_weights_only_and_scores_as_enhancer(finished):
    ckpt = torch.load(finished / "last.pt", weights_only=True)
    assert isinstance(ckpt["config"], str)
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    assert ckpt["ema"]["teacher_decoder"]["source"] == "student.decoder"
    enh = load_enhancer(f"checkpoint:{finished / 'best.pt'}")
    x = torch.rand(1, 3, 21, 30)
    y = enh.enhance(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0
    assert float(y.max()) <= 1
    assert enh.name == f"tiny@step{ckpt['best']['step']}"
    sha = hashlib.sha256((finished / "best.pt").read_bytes()).hexdigest()
    assert list(enh.metadata()["weights"].values()) == [sha]


def _resume_fails(cfg, data_root, out: Path, match: str, resume="auto") -> None:
    before = _digest(out)
    with pytest.raises(CheckpointError, match=match) as err:
        Trainer(cfg, data_root=data_root, out_dir=out, resume=resume, progress=False).fit()
    assert "\n" not in str(err.value)
    assert _digest(out) == before  # nothing written, nothing overwritten


def test_corrupted_checkpoints_are_refused(data_root, finished, tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "last.pt").write_bytes(b"not a checkpoint at all")
    _resume_fails(_cfg(), data_root, garbage, "unreadable or corrupted checkpoint")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    raw = (finished / "last.pt").read_bytes()
    (truncated / "last.pt").write_bytes(raw[: len(raw) // 2])
    _resume_fails(_cfg(), data_root, truncated, "unreadable or corrupted checkpoint")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"weight": torch.zeros(2)}, foreign / "last.pt")
    _resume_fails(_cfg(), data_root, foreign, "not a cals-bench training checkpoint")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({"format": checkpoint.FORMAT, "x": argparse.Namespace(a=1)}, pickled / "last.pt")
    _resume_fails(_cfg(), data_root, pickled, "holds objects other than tensors")
    with pytest.raises(CheckpointError, match="unreadable or corrupted"):
        load_enhancer(f"checkpoint:{truncated / 'last.pt'}")


def test_other_architecture_or_task_is_refused(data_root, finished, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    _resume_fails(_cfg(model={"width": 8}), data_root, out, r"differs from the checkpoint's at model\.width")
    ckpt = checkpoint.load(finished / "last.pt")
    ckpt["model"]["student.decoder.head.weight"] = torch.zeros(3, 5, 1, 1)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    checkpoint.save(ckpt, tampered / "last.pt")
    msg = r"another architecture: student\.decoder\.head\.weight is \[3, 5, 1, 1\] in the checkpoint, \[3, 4,"
    _resume_fails(_cfg(), data_root, tampered, msg)
    with pytest.raises(CheckpointError, match=msg):
        load_enhancer(f"checkpoint:{tampered / 'last.pt'}")
    ckpt = checkpoint.load(finished / "last.pt")
    ckpt["task"] = "cals"
    other = tmp_path / "other-task"
    other.mkdir()
    checkpoint.save(ckpt, other / "last.pt")
    _resume_fails(_cfg(), data_root, other, "checkpoint is for task 'cals', not 'iaml'")


def test_fresh_run_never_overwrites_an_earlier_one(data_root, finished):
    before = _digest(finished)
    with pytest.raises(CheckpointError, match="pass --resume to continue it or choose another --out"):
        Trainer(_cfg(), data_root=data_root, out_dir=finished, progress=False).fit()
    assert _digest(finished) == before


def test_non_finite_loss_stops_naming_step_terms_and_last_checkpoint(data_root, tmp_path):
    # Adam moves every weight by ~lr on its first step: lr 1e12 overflows the next forward pass.
    cfg = _cfg(optim={"lr": 1e12}, log={"checkpoint_every": 1}, schedule={"warmup_steps": 0})
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged) as err:
        Trainer(cfg, data_root=data_root, out_dir=out, progress=False).fit()
    msg = str(err.value)
    assert msg.startswith("step 2: non-finite loss (loss=nan, mse=")
    assert all(f"{t}=" in msg for t in ("ssim_loss", "iaml", "grad_norm"))
    assert f"last good checkpoint: {out / 'last.pt'} (step 1)" in msg
    last = checkpoint.load(out / "last.pt")
    assert last["step"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
