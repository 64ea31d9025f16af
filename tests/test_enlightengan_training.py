"""EnlightenGAN-style training: the losses on known inputs, the attention-guided generator, alternating D/G
updates with two optimisers (both losses move), exact resume, DDP, and the trained checkpoint as the
``enlightengan`` enhancer."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cals_bench.enhancer import load_enhancer
from cals_bench.errors import CalsBenchError
from cals_bench.reference_models.enlightengan.losses import (
    VGGRelu51,
    ls_loss,
    relativistic_d_loss,
    relativistic_g_loss,
    self_feature_preserving_loss,
)
from cals_bench.reference_models.enlightengan.network import AttentionUNet, attention_map
from cals_bench.reference_models.enlightengan.trainer import EnlightenGANConfig, EnlightenGANTask
from cals_bench.train import checkpoint
from cals_bench.train.batch import Batch
from cals_bench.train.config import config_from_dict, load_config, merge
from cals_bench.train.logs import read_rows
from cals_bench.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "task": "enlightengan",
    "name": "egan-tiny",
    "data": {
        "source": "unpaired",
        "options": {"clean_dir": "clean", "normal_dir": "normal"},
        "crop": 48, "val_fraction": 0.25, "val_crop": 48,
    },
    "model": {"width": 4, "ndf": 4, "global_layers": 2, "local_layers": 1, "patch_size": 32,
              "local_patches": 2},
    "optim": {"lr": 1e-3, "batch_size": 2},
    "schedule": {"steps": 6, "warmup_steps": 1},
    "runtime": {"amp": "fp32"},
    "log": {"every": 2, "val_every": 3, "checkpoint_every": 2, "keep": 0, "plot": False},
}  # fmt: skip


def _images(folder: Path, n: int, seed: int, scale: float = 1.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = (rng.integers(0, 256, (52, 56, 3)) * scale).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{seed}_{i}.png")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("egan")
    _images(r / "clean", 6, 1)
    _images(r / "normal", 4, 2)
    return r


@pytest.fixture(scope="module")
def vgg(shared_weights) -> VGGRelu51:
    return VGGRelu51.from_registry()


@pytest.fixture(scope="module")
def finished(one_torch_thread, root, shared_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("egan-run")
    Trainer(config_from_dict(TINY), data_root=root, out_dir=out, progress=False, device="cpu").fit()
    return out


# ---------------------------------------------------------------------------------------------------------
# losses and network


def test_gan_losses_on_known_scores():
    assert float(ls_loss(torch.ones(2, 1, 3, 3), True)) == 0.0
    assert float(ls_loss(torch.zeros(2, 1, 3, 3), False)) == 0.0
    assert float(ls_loss(torch.full((4,), 0.5), True)) == pytest.approx(0.25)
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])  # means 2 and 1
    # D: 0.5 * (mean((r - 1 - 1)^2) + mean((f - 2)^2)) = 0.5 * ((1 + 1) / 2 + (4 + 0) / 2)
    assert float(relativistic_d_loss(real, fake)) == pytest.approx(0.5 * (1.0 + 2.0))
    # G: 0.5 * (mean((r - 1)^2) + mean((f - 2 - 1)^2)) = 0.5 * ((0 + 4) / 2 + (9 + 1) / 2)
    assert float(relativistic_g_loss(real, fake)) == pytest.approx(0.5 * (2.0 + 5.0))


def test_attention_map_is_one_minus_luminance():
    x = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.4, 0.6]]).T.reshape(
        1, 3, 2, 2
    )
    expected = torch.tensor([0.0, 1.0, 1 - 0.299, 1 - (0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6)]).reshape(
        1, 1, 2, 2
    )
    torch.testing.assert_close(attention_map(x), expected, rtol=0, atol=1e-6)


def test_generator_is_input_plus_attention_times_latent():
    g = torch.Generator().manual_seed(0)
    net = AttentionUNet(4).eval()
    x = torch.rand(2, 3, 21, 30, generator=g) * 0.3  # not a multiple of 16: padded and cropped back
    y = net(x)
    assert y.shape == x.shape
    # with the last 1x1 convolution zeroed, latent = 0 and the output is the input exactly
    with torch.no_grad():
        net.conv10.weight.zero_()
        net.conv10.bias.fill_(0.2)  # latent 0.2 everywhere: out = x + 0.2 * A / 2 in [0, 1] units
    torch.testing.assert_close(net(x), x + 0.1 * attention_map(x), rtol=0, atol=1e-6)
    net.conv10.bias.data.zero_()
    torch.testing.assert_close(net(x), x, rtol=0, atol=1e-6)
    assert sum(p.numel() for p in AttentionUNet(32).parameters()) == 8_636_675  # the authors' 8.6 M


def test_sfp_loss_is_zero_for_the_input_and_reaches_the_generator(vgg):
    g = torch.Generator().manual_seed(1)
    low = torch.rand(2, 3, 48, 48, generator=g) * 0.2
    assert float(self_feature_preserving_loss(vgg, low, low)) == pytest.approx(0.0, abs=1e-10)
    task = EnlightenGANTask(EnlightenGANConfig(width=4, ndf=4, global_layers=2, local_layers=1))
    task._vgg.append(vgg)
    normal = torch.rand(2, 3, 48, 48, generator=g)
    terms = task(Batch(low=low, normal=normal), phase="generator")
    assert float(terms["sfp"].detach()) > 0
    terms["loss"].backward()
    for name, p in task.generator.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0, name


# ---------------------------------------------------------------------------------------------------------
# training


def test_d_and_g_alternate_and_both_losses_move(finished):
    ckpt = checkpoint.load(finished / "last.pt")
    assert ckpt["phases"] == ["generator", "discriminator"]
    for phase in ("generator", "discriminator"):
        opt = ckpt["optimizer"][phase]
        assert all(int(s["step"]) == 6 for s in opt["state"].values()), phase  # one update per step each
        assert opt["param_groups"][0]["betas"] == (0.5, 0.999)
    task = EnlightenGANTask(config_from_dict(TINY).model)
    assert len(ckpt["optimizer"]["generator"]["state"]) == len(list(task.generator.parameters()))
    n_d = len(list(task.global_d.parameters())) + len(list(task.local_d.parameters()))
    assert len(ckpt["optimizer"]["discriminator"]["state"]) == n_d
    rows = [r for r in read_rows(finished / "log.csv") if r["kind"] == "train"]
    assert len(rows) == 3
    for col in ("loss_generator", "loss_discriminator", "adv_global", "d_global", "sfp"):
        values = {float(r[col]) for r in rows}
        assert len(values) == 3, col  # every interval logs another value: both players move
    for r in rows:
        assert float(r["loss"]) == pytest.approx(
            float(r["loss_generator"]) + float(r["loss_discriminator"]), rel=1e-5
        )
        g_total = float(r["adv_global"]) + float(r["adv_local"]) + float(r["sfp"])
        assert float(r["loss_generator"]) == pytest.approx(g_total, rel=1e-5)


def test_exact_resume_with_two_optimisers(root, finished, tmp_path):
    out = tmp_path / "cut"
    Trainer(config_from_dict(TINY), data_root=root, out_dir=out, progress=False, device="cpu").fit(stop_at=3)
    Trainer(
        config_from_dict(TINY), data_root=root, out_dir=out, resume="auto", progress=False, device="cpu"
    ).fit()
    a, b = checkpoint.load(finished / "last.pt"), checkpoint.load(out / "last.pt")
    for key in ("step", "position", "model", "optimizer", "scheduler", "val", "best"):
        _same(a[key], b[key], key)  # bit-identical: weights, BN statistics, both Adams, patch positions' RNG
    rows_a, rows_b = read_rows(finished / "log.csv"), read_rows(out / "log.csv")
    for r in rows_a + rows_b:
        r.pop("images_per_s")
    assert rows_a == rows_b


def test_checkpoint_is_the_enlightengan_enhancer(finished, tmp_path):
    path = finished / "best.pt"
    ours = load_enhancer("enlightengan", {"checkpoint": str(path)})
    as_ckpt = load_enhancer(f"checkpoint:{path}")
    x = torch.rand(1, 3, 19, 26, generator=torch.Generator().manual_seed(5)) * 0.3
    y = ours.enhance(x)
    assert torch.equal(y, as_ckpt.enhance(x))
    assert y.shape == x.shape
    meta = ours.metadata()
    assert "TRAINED BY CALS-BENCH" in ours.summary
    assert meta["training"]["trained_by"] == "cals-bench"
    assert list(meta["weights"].values()) == [hashlib.sha256(path.read_bytes()).hexdigest()]
    with pytest.raises(CalsBenchError, match="cals-bench train enlightengan"):
        load_enhancer("enlightengan", {"checkpoint": str(tmp_path / "missing.pt")})
    # the authors' layout (width 32, DataParallel's "module." prefix) loads under @authors, hash recorded
    authors = {f"module.{k}": v for k, v in AttentionUNet(32).state_dict().items()}
    torch.save(authors, tmp_path / "200_net_G_A.pth")
    theirs = load_enhancer("enlightengan@authors", {"weights": str(tmp_path / "200_net_G_A.pth")})
    assert theirs.name == "enlightengan@authors"
    assert "AUTHORS" in theirs.summary
    assert len(theirs.metadata()["weights"]) == 1
    torch.save({"conv1_1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CalsBenchError, match="not the authors' EnlightenGAN generator"):
        load_enhancer("enlightengan@authors", {"weights": str(tmp_path / "other.pth")})


def test_enlightengan_configs_validate():
    cpu, paper = load_config("enlightengan-cpu"), load_config("enlightengan-paper")
    assert paper.model.width == 32
    assert paper.model.local_patches == 6
    assert paper.optim.batch_size == 32
    assert paper.optim.lr == 1e-4
    assert paper.model.beta1 == 0.5
    # lows and normals: the two halves of the cals-general train part, never its test part
    lows, normals = cpu.data.options.splits, cpu.data.options.normal_splits
    assert lows[0] == normals[0]
    assert lows[0].part == "train"
    assert {lows[1].part, normals[1].part} == {"train", "val"}
    assert lows[1].fractions == normals[1].fractions
    assert lows[1].seed == normals[1].seed


@pytest.mark.slow
def test_torchrun_two_processes_match_one_with_two_phases(root, shared_weights, tmp_path):
    """DDP with two optimisers: two gloo processes (find_unused_parameters) equal one process with the same
    global batch, for losses that are means over samples: without BatchNorm (the authors' --use_norm 0)
    and with the plain LSGAN global loss (no --use_ragan), whose statistics / batch means are per process
    (with the relativistic loss the difference measured 6.4e-4 after 2 steps: the per-process batch means)."""
    model = {"batch_norm": False, "relativistic": False}
    cfg = merge(TINY, {"model": model, "schedule": {"steps": 2}, "data": {"val_fraction": 0.0}})
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    q = shlex.quote
    launch = "-m torch.distributed.run --standalone --nproc_per_node 2 -m cals_bench.train run"
    args = f"--config {q(str(cfg_path))} --data-root {q(str(root))} --out {q(str(tmp_path / 'ddp'))}"
    cmd = [sys.executable, *shlex.split(f"{launch} {args} --device cpu --quiet")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    Trainer(
        load_config(cfg_path), data_root=root, out_dir=tmp_path / "one", device="cpu", progress=False
    ).fit()
    two, one = checkpoint.load(tmp_path / "ddp" / "last.pt"), checkpoint.load(tmp_path / "one" / "last.pt")
    worst = max(float((two["model"][k] - v).abs().max()) for k, v in one["model"].items())
    # float32 summation order only (as tests/test_train_ddp.py); a missing gradient average moves ~lr = 1e-3
    assert worst < 1e-5, worst


def _same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_cpu_config_never_reads_the_cals_general_test_part(shared_dir):
    """Lows, normal-light images and validation images of enlightengan-cpu (and zero-dce-cpu) are disjoint
    from each other and from the test part that protocol cals-general scores (the same seeded split)."""
    from cals_bench.data import splits
    from cals_bench.protocol import load as load_protocol
    from cals_bench.train.sources import build_source

    root = shared_dir / "data"
    stems = sorted(p.stem for p in (root / "bsds500" / "images").rglob("*.jpg"))
    test = set(splits.select(stems, {}, load_protocol("cals-general").dataset.split))
    assert 80 < len(test) < 120  # ~20% of 500
    data = build_source(load_config("enlightengan-cpu").data, root, 0)
    lows, val = set(data.train_ids), {s.sample_id for s in data.val}
    normals = {Path(p).stem for p in data.dataset.normals}
    assert len(lows) > 150
    assert len(normals) > 150
    assert len(val) == 8
    assert not (lows & normals)
    assert not (lows & val)
    assert not (normals & val)
    assert not ((lows | normals | val) & test)
    zd = build_source(load_config("zero-dce-cpu").data, root, 0)
    assert not ((set(zd.train_ids) | {s.sample_id for s in zd.val}) & test)
