"""RUAS wrapper: strict loading (checkpoint over denoise.pt), I/O contract, variants, bad inputs, LOL-v1.

Reproduction references: RUAS's ``test.py`` (rebuilt outside the repo, run on CPU with the same files) saves
``np.clip(v * 255, 0, 255).astype('uint8')`` (clip, truncate) of the denoiser output (lol) or of the last
illumination stage (upe, dark). Its PNGs score (RGB, whole image, skimage PSNR / SSIM):
- lol on all 15 LOL-v1 eval15 pairs: 16.4047 dB / 0.4996 (ours rounded: 16.4458 / 0.5015);
- upe and dark (not LOL models; checked on the first 3 pairs by name, 1/111/146, to keep the test short):
  upe 10.9707 / 0.5311, dark 16.9673 / 0.5700.
Truncated like upstream, our outputs match those PNGs in all but ~1e-5 of the values (one level, float order).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cals_bench.baselines.ruas import RUAS, local_max_2x2
from cals_bench.data.io import read_rgb, to_tensor, to_uint8
from cals_bench.enhancer import load_enhancer
from cals_bench.errors import CalsBenchError, WeightsHashMismatch, WeightsUnavailable
from tests.helpers import skimage_scores


def _mean_scores(outs: list[np.ndarray], refs: list[np.ndarray]) -> tuple[float, float]:
    return skimage_scores(refs, outs)


def _truncated(x: torch.Tensor) -> np.ndarray:
    """Upstream's save: clip to [0, 255] after * 255, then truncate to uint8."""
    return x.mul(255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def models(shared_weights, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # module scope: set the env the autouse fixture sets per test
        mp.setenv("CALS_BENCH_WEIGHTS", str(shared_weights))
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return {v: RUAS(variant=v) for v in RUAS.variants}


@pytest.mark.parametrize("variant", ["lol", "upe", "dark"])
def test_checkpoint_loads_strictly_over_denoise_pt(models, shared_weights, variant):
    ckpt = torch.load(shared_weights / f"llie/ruas/{variant}.pt", map_location="cpu", weights_only=True)
    denoise = torch.load(shared_weights / "llie/ruas/denoise.pt", map_location="cpu", weights_only=True)
    model = models[variant]
    ours = model.net.state_dict()
    assert list(ours) == list(ckpt)
    assert all(torch.equal(ours[k], ckpt[k]) for k in ckpt)
    # As upstream: denoise.pt is loaded first, then replaced by the checkpoint's own denoise_net tensors.
    assert any(not torch.equal(ours[f"denoise_net.{k}"], v) for k, v in denoise.items())
    assert set(model.weights_used) == {f"llie/ruas-{variant}", "llie/ruas-denoise"}
    assert model.parameter_count() == 3_438  # 3 x 387 (IEMs) + 2,277 (denoiser): the paper's 0.003M


def test_default_variant_is_lol_and_a_wrong_one_lists_the_valid_ones(shared_weights):
    assert load_enhancer("ruas").variant == "lol"
    with pytest.raises(CalsBenchError, match="no variant 'LOL'; valid variants: lol, upe, dark"):
        load_enhancer("ruas@LOL")


def test_local_max_matches_a_direct_loop():
    x = torch.rand(1, 2, 5, 7, generator=torch.Generator().manual_seed(3))
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 1), (0, 1)))  # zeros below and to the right
    direct = np.zeros_like(x.numpy())
    for i in range(5):
        for j in range(7):
            direct[..., i, j] = padded[..., i : i + 2, j : j + 2].max(axis=(-2, -1))
    np.testing.assert_array_equal(local_max_2x2(x).numpy(), direct)  # a max is exact


def test_output_contract_and_odd_size(models):
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0)) * 0.3
    for model in models.values():
        with torch.inference_mode():
            y = model.enhance(x)
            y1 = model.enhance(x[1:])
        assert y.shape == x.shape
        assert y.dtype == torch.float32
        assert float(y.min()) >= 0.0
        assert float(y.max()) <= 1.0
        assert float(y.mean()) > float(x.mean())
        # independent of the batch; u = y / t with t >= 0.001 can magnify float reassociation up to 1000x
        torch.testing.assert_close(y[1:], y1, atol=1e-4, rtol=0)


def test_lol_variant_clamps_the_unclamped_denoiser_output(models):
    """Upstream saves the denoiser output unclamped (then clips); ours clamps it; the rest is identical."""
    model = models["lol"]
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))  # bright noise: overshoots 1
    with torch.inference_mode():
        raw = model.net.denoise_net(model.net.enhance_net(x))
        y = model.enhance(x)
    assert float(raw.max()) > 1.0 or float(raw.min()) < 0.0
    torch.testing.assert_close(y, raw.clamp(0, 1), atol=0, rtol=0)


@pytest.mark.parametrize(("variant", "rel"), [("lol", "llie/ruas/lol.pt"), ("lol", "llie/ruas/denoise.pt")])
def test_tampered_or_missing_weights_are_refused(variant, rel, shared_weights, tmp_path, monkeypatch):
    root = tmp_path / "weights"
    for f in ("llie/ruas/lol.pt", "llie/ruas/denoise.pt"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_weights / f, root / f)
    data = bytearray((root / rel).read_bytes())
    data[len(data) // 2] ^= 0x10
    (root / rel).write_bytes(bytes(data))
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(root))
    with pytest.raises(WeightsHashMismatch, match=Path(rel).name):
        RUAS(variant=variant)
    (root / rel).unlink()
    with pytest.raises(WeightsUnavailable, match="not available offline"):
        RUAS(variant=variant)


@pytest.fixture(scope="module")
def lol(lol_root: Path):
    low_dir, high_dir = lol_root / "eval15" / "low", lol_root / "eval15" / "high"
    names = sorted(p.name for p in low_dir.glob("*.png"))
    assert len(names) == 15
    return [to_tensor(read_rgb(low_dir / n))[None] for n in names], [read_rgb(high_dir / n) for n in names]


def test_lol_variant_reproduces_lol_v1(models, lol):
    xs, refs = lol
    with torch.inference_mode():
        outs = [models["lol"].enhance(x)[0] for x in xs]
    psnr, ssim = _mean_scores([to_uint8(o) for o in outs], refs)
    # Ours, measured 16.4458 / 0.5015. 0.005 dB / 0.001 SSIM: room only for a few one-level rounding flips
    # from another CPU's float arithmetic.
    assert abs(psnr - 16.4458) <= 0.005, psnr
    assert abs(ssim - 0.5015) <= 0.001, ssim
    # Truncated like upstream's save, our outputs give the upstream PNGs' 16.4047 / 0.4996 (same margin).
    t_psnr, t_ssim = _mean_scores([_truncated(o) for o in outs], refs)
    assert abs(t_psnr - 16.4047) <= 0.005, t_psnr
    assert abs(t_ssim - 0.4996) <= 0.001, t_ssim
    # Rounding vs truncation is the whole difference (+0.041 dB), within the 0.07 dB for it.
    assert 0.0 < psnr - t_psnr <= 0.07


@pytest.mark.parametrize(
    ("variant", "up_psnr", "up_ssim"), [("upe", 10.9707, 0.5311), ("dark", 16.9673, 0.5700)]
)
def test_other_variants_match_upstream_on_three_pairs(models, lol, variant, up_psnr, up_ssim):
    xs, refs = lol
    with torch.inference_mode():
        outs = [models[variant].enhance(x)[0] for x in xs[:3]]
    t_psnr, t_ssim = _mean_scores([_truncated(o) for o in outs], refs[:3])
    # Truncated like upstream: the upstream PNGs' scores on pairs 1, 111, 146, to the same float-noise margin.
    assert abs(t_psnr - up_psnr) <= 0.005, t_psnr
    assert abs(t_ssim - up_ssim) <= 0.001, t_ssim
