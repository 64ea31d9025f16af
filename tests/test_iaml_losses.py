"""IAML losses against independent NumPy re-implementations and the benchmark's own SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cals_bench.metrics.fidelity import structural_similarity as benchmark_ssim
from cals_bench.reference_models.iaml.losses import (
    cosine_mirror_loss,
    illumination_aware_mirror_loss,
    luminance_weight,
    ssim_loss,
    standardise,
    standardised_l2_mirror_loss,
    structural_similarity,
)


def _grid_images(seed: int, shape=(2, 3, 40, 33)) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 batches on the 8-bit grid (what the benchmark scores), the second a degraded first."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, shape, generator=g).double() / 255
    noise = torch.randint(-30, 31, shape, generator=g).double() / 255
    b = (0.6 * a + noise).clamp(0, 1).mul(255).round() / 255
    return a, b


def test_ssim_is_the_benchmark_ssim():
    a, b = _grid_images(0)
    ours = float(structural_similarity(a, b))
    ref = float(benchmark_ssim(a, b).mean())
    # Both float64, same Gaussian 11/1.5 valid-window convention; the benchmark filters with SciPy, we with
    # torch convolutions: agreement to summation-order rounding (~1e-15), asserted at 1e-10.
    assert ours == pytest.approx(ref, abs=1e-10)
    assert 0.2 < ref < 0.95  # a real, non-degenerate comparison


def test_ssim_loss_zero_on_identity_and_differentiable():
    a, b = _grid_images(1)
    x = b.float().requires_grad_(True)
    assert float(ssim_loss(a.float(), a.float())) == pytest.approx(0.0, abs=1e-6)  # float32 rounding
    loss = ssim_loss(x, a.float())
    loss.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_luminance_weight_bt601_min_max():
    img = torch.zeros(1, 3, 2, 2)
    img[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # Y = 0.299
    img[0, :, 0, 1] = torch.tensor([0.0, 1.0, 0.0])  # Y = 0.587 (brightest)
    img[0, :, 1, 0] = torch.tensor([0.0, 0.0, 1.0])  # Y = 0.114 (darkest)
    img[0, :, 1, 1] = torch.tensor([0.5, 0.5, 0.5])  # Y = 0.5
    w = luminance_weight(img, alpha=2.0)[0, 0]
    y = np.array([[0.299, 0.587], [0.114, 0.5]])
    expected = 1 + 2.0 * (1 - (y - y.min()) / (y.max() - y.min()))
    # eps 1e-6 in the min-max denominator and float32: 1e-5
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-5)
    assert float(w[1, 0]) == pytest.approx(3.0, abs=1e-5)
    assert float(w[0, 1]) == pytest.approx(1.0, abs=1e-5)


def test_standardise_zero_mean_unit_std():
    f = torch.randn(3, 5, 7, 9, generator=torch.Generator().manual_seed(2)) * 4 + 3
    z = standardise(f, eps=1e-5).flatten(1)
    assert torch.allclose(z.mean(1), torch.zeros(3), atol=1e-5)  # float32 sums of 315 values
    assert torch.allclose(z.std(1, correction=0), torch.ones(3), atol=1e-4)  # eps/std ~ 2.5e-6


def _np_standardise(f: np.ndarray, eps: float) -> np.ndarray:
    flat = f.reshape(f.shape[0], -1)
    mean = flat.mean(1)[:, None, None, None]
    std = flat.std(1)[:, None, None, None]
    return (f - mean) / (std + eps)


def _np_iaml(student, teacher, image, alpha, eps=1e-5):
    y = 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    lo = y.reshape(len(y), -1).min(1)[:, None, None]
    hi = y.reshape(len(y), -1).max(1)[:, None, None]
    w = 1 + alpha * (1 - (y - lo) / (hi - lo + 1e-6))
    total = 0.0
    for s, t in zip(student, teacher):
        k = image.shape[-1] // s.shape[-1]
        b, h, ww = w.shape
        wl = w.reshape(b, h // k, k, ww // k, k).mean(axis=(2, 4))[:, None]  # area average to level size
        total += np.mean(wl * (_np_standardise(s, eps) - _np_standardise(t, eps)) ** 2)
    return total / len(student)


def _levels(seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = [(2, 8, 4, 4), (2, 4, 8, 8), (2, 2, 16, 16)]
    student = [torch.randn(s, generator=g) for s in shapes]
    teacher = [torch.randn(s, generator=g) * 2 + 1 for s in shapes]
    image = torch.rand(2, 3, 16, 16, generator=g) * 0.3
    return student, teacher, image


def test_iaml_matches_numpy_reference():
    student, teacher, image = _levels(3)
    ours = float(illumination_aware_mirror_loss(student, teacher, image, alpha=1.5))
    ref = _np_iaml(
        [s.double().numpy() for s in student],
        [t.double().numpy() for t in teacher],
        image.double().numpy(),
        1.5,
    )
    assert ours == pytest.approx(ref, rel=1e-5)  # float32 internally vs float64 reference


def test_iaml_with_alpha_zero_is_the_standardised_l2_mirror():
    student, teacher, image = _levels(4)
    a = float(illumination_aware_mirror_loss(student, teacher, image, alpha=0.0))
    b = float(standardised_l2_mirror_loss(student, teacher))
    assert a == pytest.approx(b, rel=1e-6)  # W == 1 exactly; float32 rounding only


def test_iaml_weights_dark_pixels_by_one_plus_alpha():
    """Swapping two values inside a map keeps its mean and std, so the standardised difference is non-zero
    at those two pixels only: the loss must then be W there times the same squared difference."""
    alpha = 0.7
    image = torch.ones(1, 3, 8, 8)
    image[..., :4] = 0.0  # left half dark (W = 1 + alpha), right half bright (W = 1)
    teacher = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(5))

    def swapped(col_a, col_b):
        s = teacher.clone()
        s[0, 0, 3, col_a], s[0, 0, 3, col_b] = teacher[0, 0, 3, col_b], teacher[0, 0, 3, col_a]
        return s

    dark = float(illumination_aware_mirror_loss([swapped(0, 1)], [teacher], image, alpha))
    bright = float(illumination_aware_mirror_loss([swapped(6, 7)], [teacher], image, alpha))
    d_dark = (teacher[0, 0, 3, 0] - teacher[0, 0, 3, 1]) ** 2
    d_bright = (teacher[0, 0, 3, 6] - teacher[0, 0, 3, 7]) ** 2
    ratio = (dark / float(d_dark)) / (bright / float(d_bright))
    assert ratio == pytest.approx(1 + alpha, rel=1e-4)  # float32 standardisation of 128 values


def test_mirror_losses_stop_the_teacher_gradient():
    student, teacher, image = _levels(6)
    student = [s.requires_grad_(True) for s in student]
    teacher = [t.requires_grad_(True) for t in teacher]
    for loss in (
        illumination_aware_mirror_loss(student, teacher, image, 1.0),
        standardised_l2_mirror_loss(student, teacher),
        cosine_mirror_loss(student, teacher),
    ):
        loss.backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)


def test_cosine_mirror_matches_numpy_and_is_zero_on_identity():
    student, teacher, _ = _levels(7)
    assert float(cosine_mirror_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    ref = np.mean(
        [
            np.mean(
                [
                    1 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
                    for a, b in zip(s.double().numpy().reshape(2, -1), t.double().numpy().reshape(2, -1))
                ]
            )
            for s, t in zip(student, teacher)
        ]
    )
    assert float(cosine_mirror_loss(student, teacher)) == pytest.approx(ref, rel=1e-5)  # float32


def test_ssim_loss_stays_float32_under_bf16_autocast():
    a, b = _grid_images(8, shape=(1, 3, 32, 32))
    x, y = b.float(), a.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = float(ssim_loss(x, y))
    # in bf16 the variances cancel and the loss comes out on a 1/256 grid; in float32 it matches to 1e-6
    assert under == pytest.approx(float(ssim_loss(x, y)), abs=1e-6)
