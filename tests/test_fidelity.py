"""PSNR and SSIM against independent references: scikit-image (primary) and torchmetrics (second)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from cals_bench.data.io import read_rgb, to_tensor
from cals_bench.metrics.fidelity import gt_mean_scale, peak_signal_noise_ratio, structural_similarity

# Agreement with scikit-image: both compute in float64 on the same 8-bit grid with the same separable
# Gaussian filter; only summation order differs, measured <= 1.3e-15 on the LOL pairs and random images.
# 1e-12 leaves three orders of magnitude for other BLAS/SciPy builds and still catches any convention change
# (border handling, sample vs population covariance, window size move SSIM by >= 1e-4).
TOL = 1e-12


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return sk_ssim(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )


def _t(img: np.ndarray) -> torch.Tensor:
    return to_tensor(img)[None]


def test_lol_pairs_match_skimage(lol_root):
    names = sorted(p.name for p in (lol_root / "eval15" / "low").iterdir())
    assert len(names) == 15
    psnrs = []
    for name in names:
        low = read_rgb(lol_root / "eval15" / "low" / name)
        high = read_rgb(lol_root / "eval15" / "high" / name)
        ours_p = float(peak_signal_noise_ratio(_t(low), _t(high))[0])
        ours_s = float(structural_similarity(_t(low), _t(high))[0])
        assert ours_p == pytest.approx(sk_psnr(high, low, data_range=255), abs=TOL)
        assert ours_s == pytest.approx(_sk_ssim(low, high), abs=TOL)
        psnrs.append(ours_p)
    # The well-known PSNR of the raw LOL-v1 input (identity row), 3 decimals.
    assert round(float(np.mean(psnrs)), 3) == 7.773


@pytest.mark.parametrize("shape", [(11, 11), (37, 64), (120, 90)])
def test_random_images_match_skimage(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    # a correlated second image so SSIM is far from 0 and 1
    b = np.clip(a.astype(int) + rng.integers(-40, 41, size=a.shape), 0, 255).astype(np.uint8)
    assert float(structural_similarity(_t(a), _t(b))[0]) == pytest.approx(_sk_ssim(a, b), abs=TOL)
    assert float(peak_signal_noise_ratio(_t(a), _t(b))[0]) == pytest.approx(
        sk_psnr(b, a, data_range=255), abs=TOL
    )


def test_batch_equals_single():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=(40, 52, 3), dtype=np.uint8) for _ in range(4)]
    x = torch.cat([_t(i) for i in imgs[:2]])
    y = torch.cat([_t(i) for i in imgs[2:]])
    batch = structural_similarity(x, y)
    for k in range(2):
        assert float(batch[k]) == pytest.approx(
            float(structural_similarity(x[k : k + 1], y[k : k + 1])[0]), abs=1e-12
        )


@pytest.mark.parametrize("shape", [(11, 11), (40, 52), (97, 130)])
def test_torch_path_equals_numpy_path(shape):
    """The GPU body (grouped torch convolutions) run on CPU tensors equals the CPU body (SciPy filters).

    Both are float64 on the 8-bit grid; they differ only in summation order (measured ~1e-15)."""
    from cals_bench.metrics.fidelity import _np_255, _ssim_255, _to_255

    rng = np.random.default_rng(shape[0])
    a = rng.integers(0, 256, size=(2, *shape, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, size=a.shape), 0, 255).astype(np.uint8)
    x = torch.cat([_t(i) for i in a])
    y = torch.cat([_t(i) for i in b])
    ssim_numpy = _ssim_255(_np_255(x), _np_255(y))
    ssim_torch = _ssim_255(_to_255(x), _to_255(y))
    np.testing.assert_allclose(ssim_torch.numpy(), ssim_numpy.numpy(), rtol=0, atol=TOL)
    mse_torch = (_to_255(x) - _to_255(y)).pow(2).flatten(1).mean(1)
    psnr_torch = 10.0 * torch.log10(255.0**2 / mse_torch)
    np.testing.assert_allclose(psnr_torch.numpy(), peak_signal_noise_ratio(x, y).numpy(), rtol=0, atol=TOL)


# torchmetrics accumulates in float32 inside (measured on pair 1: PSNR 1.2e-7 dB, SSIM interior 1.8e-9).
TM_TOL = 1e-5


def test_torchmetrics_second_reference(lol_root):
    tm = pytest.importorskip("torchmetrics.functional.image")
    low = _t(read_rgb(lol_root / "eval15" / "low" / "1.png")).double()
    high = _t(read_rgb(lol_root / "eval15" / "high" / "1.png")).double()
    ref_p = tm.peak_signal_noise_ratio(low * 255, high * 255, data_range=255.0)
    assert float(peak_signal_noise_ratio(low, high)[0]) == pytest.approx(float(ref_p), abs=TM_TOL)
    # torchmetrics 1.x reflect-pads and averages the SSIM map over *all* positions, border included
    # (0.2357 here vs skimage's 0.2340: a different convention). Its full map, with the 5-pixel border
    # that the 11x11 window cannot cover cropped, must average to our value.
    _, full = tm.structural_similarity_index_measure(
        low * 255,
        high * 255,
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=255.0,
        return_full_image=True,
    )
    interior = full[..., 5:-5, 5:-5].mean()
    assert float(structural_similarity(low, high)[0]) == pytest.approx(float(interior), abs=TM_TOL)


def test_rounding_convention():
    """Scores are taken on the 8-bit grid: sub-quantum differences do not count."""
    x = torch.full((1, 3, 16, 16), 100 / 255)
    y = x + 0.3 / 255  # rounds back to 100
    assert torch.isinf(peak_signal_noise_ratio(x, y)).all()
    assert float(structural_similarity(x, y)[0]) == pytest.approx(1.0, abs=1e-12)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        peak_signal_noise_ratio(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_gt_mean_scaling_matches_reference_mean():
    rng = np.random.default_rng(1)
    out = torch.from_numpy(rng.uniform(0.0, 0.3, size=(1, 3, 20, 20)))
    ref = torch.from_numpy(rng.uniform(0.2, 0.8, size=(1, 3, 20, 20)))
    scaled = gt_mean_scale(out, ref)
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    # no clipping happens at these ranges, so the grey means are equal to float precision
    assert float((scaled * w).sum(1).mean()) == pytest.approx(float((ref * w).sum(1).mean()), abs=1e-12)
