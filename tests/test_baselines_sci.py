"""SCI wrapper: strict loading, I/O contract, variants, bad inputs, LOL-v1 eval15 reproduction.

Reproduction references: SCI's ``test.py`` (rebuilt outside the repo, run on CPU with the same weights) saves
``np.clip(r * 255, 0, 255).astype('uint8')`` (truncation); its PNGs score on LOL-v1 eval15 (15 pairs, RGB,
whole image, skimage PSNR / SSIM): easy 9.5802 dB / 0.3692, medium 14.7840 / 0.5220, difficult 13.8063 /
0.5261. Our outputs truncated the same way are pixel-identical to those PNGs; rounded (the suite's convention)
they score 9.6275 / 0.3741, 14.8538 / 0.5239 and 13.8693 / 0.5290, i.e. +0.05 to +0.07 dB, all from truncation
vs rounding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cals_bench.baselines.sci import SCI
from cals_bench.data.io import read_rgb, to_tensor, to_uint8
from cals_bench.enhancer import load_enhancer
from cals_bench.errors import CalsBenchError, WeightsHashMismatch, WeightsUnavailable
from tests.helpers import skimage_scores

# variant: (ours rounded PSNR, SSIM), (upstream PNGs PSNR, SSIM)
EXPECTED = {
    "easy": ((9.6275, 0.3741), (9.5802, 0.3692)),
    "medium": ((14.8538, 0.5239), (14.7840, 0.5220)),
    "difficult": ((13.8693, 0.5290), (13.8063, 0.5261)),
}


def _mean_scores(outs: list[np.ndarray], refs: list[np.ndarray]) -> tuple[float, float]:
    return skimage_scores(refs, outs)


@pytest.fixture(scope="module")
def models(shared_weights, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # module scope: set the env the autouse fixture sets per test
        mp.setenv("CALS_BENCH_WEIGHTS", str(shared_weights))
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return {v: SCI(variant=v) for v in SCI.variants}


def test_default_variant_is_medium(shared_weights):
    model = load_enhancer("sci")
    assert model.variant == "medium"
    assert model.args == {"variant": "medium"}
    assert set(model.weights_used) == {"llie/sci-medium"}


@pytest.mark.parametrize("variant", ["easy", "medium", "difficult"])
def test_strict_load_matches_the_official_file(models, shared_weights, variant):
    official = torch.load(shared_weights / f"llie/sci/{variant}.pt", map_location="cpu", weights_only=True)
    net = models[variant].net
    ours = net.state_dict()
    # the inference part: every enhance.* tensor of the file, nothing else
    assert sorted(ours) == sorted(k[len("enhance.") :] for k in official if k.startswith("enhance."))
    assert all(torch.equal(ours[k], official[f"enhance.{k}"]) for k in ours)
    assert net.conv is net.blocks[0]  # upstream registers one block twice; the tensors are shared
    assert not net.training  # BatchNorm uses its running statistics, as upstream's model.eval()
    assert models[variant].parameter_count() == 258  # the count the SCI paper gives


def test_output_contract_odd_size_and_batch_independence(models):
    x = torch.rand(3, 3, 37, 53, generator=torch.Generator().manual_seed(0)) * 0.3
    model = models["medium"]
    with torch.inference_mode():
        y = model.enhance(x)
        y_single = model.enhance(x[2:])
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0
    assert float(y.max()) <= 1.0
    assert float(y.mean()) > float(x.mean())
    # eval-mode BatchNorm: an image's output does not depend on the rest of the batch (float reassociation
    # only)
    torch.testing.assert_close(y[2:], y_single, atol=1e-6, rtol=0)


def test_wrong_variant_lists_the_valid_ones(shared_weights):
    with pytest.raises(CalsBenchError, match="no variant 'hard'; valid variants: easy, medium, difficult"):
        load_enhancer("sci@hard")


def test_tampered_or_missing_weights_are_refused(shared_weights, tmp_path, monkeypatch):
    rel = "llie/sci/difficult.pt"
    bad = tmp_path / "weights" / rel
    bad.parent.mkdir(parents=True)
    shutil.copyfile(shared_weights / rel, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 3] ^= 0x01
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(WeightsHashMismatch, match="checksum"):
        SCI(variant="difficult")
    with pytest.raises(WeightsUnavailable, match="llie/sci-medium"):  # only difficult.pt is in that folder
        SCI()


@pytest.fixture(scope="module")
def lol(lol_root: Path):
    low_dir, high_dir = lol_root / "eval15" / "low", lol_root / "eval15" / "high"
    names = sorted(p.name for p in low_dir.glob("*.png"))
    assert len(names) == 15
    return [to_tensor(read_rgb(low_dir / n))[None] for n in names], [read_rgb(high_dir / n) for n in names]


@pytest.mark.parametrize("variant", ["easy", "medium", "difficult"])
def test_reproduces_lol_v1(models, lol, variant):
    xs, refs = lol
    with torch.inference_mode():
        outs = [models[variant].enhance(x)[0] for x in xs]
    (ours_psnr, ours_ssim), (up_psnr, up_ssim) = EXPECTED[variant]
    psnr, ssim = _mean_scores([to_uint8(o) for o in outs], refs)
    # 0.005 dB / 0.001 SSIM: room only for a few one-level rounding flips from another CPU's float arithmetic.
    assert abs(psnr - ours_psnr) <= 0.005, psnr
    assert abs(ssim - ours_ssim) <= 0.001, ssim
    # Truncated like upstream's save, our outputs are the upstream PNGs: same scores to the same float margin.
    truncated = [o.clamp(0, 1).mul(255).to(torch.uint8).permute(1, 2, 0).numpy() for o in outs]
    t_psnr, t_ssim = _mean_scores(truncated, refs)
    assert abs(t_psnr - up_psnr) <= 0.005, t_psnr
    assert abs(t_ssim - up_ssim) <= 0.001, t_ssim
    # Rounding instead of truncating is the whole difference, and is worth at most the 0.07 dB.
    assert 0.0 < psnr - t_psnr <= 0.075, psnr - t_psnr
