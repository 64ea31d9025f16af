"""Full-reference fidelity metrics: PSNR and SSIM, plus their GT-mean diagnostic variants.

Conventions (README.md, "Metric conventions"), fixed here and never per call:
- images are scored after clamping to [0, 1] and rounding to 8 bits, on the 0..255 scale, RGB, no border crop;
- PSNR = 10 log10(255^2 / MSE) over all pixels and channels, capped at 100 dB (``numbers.PSNR_CAP_DB``:
  identical images score 100 dB, not ``inf``; the function ``peak_signal_noise_ratio`` itself is uncapped);
- SSIM is the Wang et al. (2004) index with an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (not sample) covariances, computed per channel on the positions where the window fits
  (no padding) and averaged over positions and channels. This equals scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
  channel_axis=2)`` (which filters with reflect padding and then crops the 5-pixel border it pads).
- GT-mean variants (``psnr_gtmean``, ``ssim_gtmean``) first scale the output so that its mean grey level
  (BT.601 luma) equals the reference's, then clip to [0, 255]. They inflate LOL PSNR by several dB, are
  never a protocol default, and are reported only as separately named columns.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cals_bench.metrics.base import ColumnFormat, Metric, SampleContext, register_metric
from cals_bench.numbers import PSNR_CAP_DB, cap_psnr

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _np_255(x: torch.Tensor, dtype: type = np.float64, order: str = "K") -> np.ndarray:
    """CPU tensor in [0, 1] -> float64 NumPy array on the 0..255 grid (``order="C"``: (B, C, H, W) in
    memory whatever the tensor's layout, in the same pass).

    The CPU paths use NumPy/SciPy (single-threaded, predictable): torch's intra-op threading on small
    element-wise ops was measured 10-100x slower on a busy 2-core machine.
    """
    arr = x.detach().numpy().astype(dtype, order=order, copy=True)
    np.clip(arr, 0.0, 1.0, out=arr)
    arr *= 255.0
    return np.rint(arr, out=arr)


def _to_255(x: torch.Tensor) -> torch.Tensor:
    """Quantised float in [0, 1] -> float64 on the 0..255 grid."""
    return x.to(torch.float64).clamp(0, 1).mul(255.0).round()


def peak_signal_noise_ratio(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of a batch ``(B, 3, H, W)`` in [0, 1] (8-bit grid, data range 255).

    Example:
        >>> import torch
        >>> ref = torch.zeros(1, 3, 4, 4)
        >>> out = torch.full((1, 3, 4, 4), 1 / 255)
        >>> round(float(peak_signal_noise_ratio(out, ref)[0]), 4)
        48.1308
    """
    _check_pair(output, reference)
    if output.device.type == "cpu":
        # float32 holds the 8-bit grid, differences and squares exactly; the mean accumulates in float64
        diff = _np_255(output, np.float32) - _np_255(reference, np.float32)
        mse = np.square(diff).reshape(diff.shape[0], -1).mean(axis=1, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return torch.from_numpy(10.0 * np.log10((255.0**2) / mse))
    diff = _to_255(output) - _to_255(reference)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10((255.0**2) / mse)


def _gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    half = size // 2
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def structural_similarity(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of a batch ``(B, 3, H, W)`` in [0, 1] (8-bit grid; Gaussian 11/1.5).

    Example:
        >>> import torch
        >>> x = torch.rand(1, 3, 32, 32)
        >>> float(structural_similarity(x, x)[0])
        1.0
    """
    _check_pair(output, reference)
    if output.device.type == "cpu":  # channel planes contiguous: SSIM filters them one by one
        return _ssim_255(_np_255(output, order="C"), _np_255(reference, order="C"))
    return _ssim_255(_to_255(output), _to_255(reference))


def _ssim_255(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor:
    """SSIM per image of float64 ``(B, C, H, W)`` batches on the 0..255 scale.

    NumPy arrays (the CPU path) are filtered by OpenCV's separable float64 filter (:func:`_ssim_maps`);
    GPU tensors with a grouped torch convolution. Both in float64, so the result equals
    scikit-image's to ~1e-15.
    """
    b, c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    kernel = _gaussian_kernel()
    r = SSIM_WINDOW // 2
    if isinstance(x, np.ndarray):
        return torch.from_numpy(_ssim_255_numpy(x, y, kernel.numpy()))
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1).reshape(1, 5 * b * c, h, w)
    n = 5 * b * c
    k = kernel.to(x.device)
    filt = F.conv2d(stacked, k.view(1, 1, 1, -1).expand(n, 1, 1, SSIM_WINDOW).contiguous(), groups=n)
    filt = F.conv2d(filt, k.view(1, 1, -1, 1).expand(n, 1, SSIM_WINDOW, 1).contiguous(), groups=n)
    mu_x, mu_y, e_xx, e_yy, e_xy = filt.reshape(b, 5, c, h - 2 * r, w - 2 * r).transpose(0, 1)
    c1 = (SSIM_K1 * 255.0) ** 2
    c2 = (SSIM_K2 * 255.0) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * (e_xy - mu_x * mu_y) + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * ((e_xx - mu_x * mu_x) + (e_yy - mu_y * mu_y) + c2)
    return (num / den).reshape(b, c, -1).mean(-1).mean(-1)


def _ssim_255_numpy(x: np.ndarray, y: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """CPU SSIM per image of float64 ``(B, C, H, W)`` arrays (0..255), one channel plane at a time
    (:func:`_ssim_maps`; planes that are not contiguous are copied first). Filtering the planes one by one
    takes less time than filtering a channels-last ``(H, W, C)`` image as one map (measured 22 vs 30 ms per
    600x400 pair: smaller maps, fewer fresh pages), so :func:`structural_similarity` converts to planes."""
    b, c = x.shape[:2]
    out = np.empty(b)
    for i in range(b):
        out[i] = (
            sum(
                _ssim_maps(np.ascontiguousarray(x[i, j]), np.ascontiguousarray(y[i, j]), kernel)
                for j in range(c)
            )
            / c
        )
    return out


def _ssim_maps(x: np.ndarray, y: np.ndarray, kernel: np.ndarray) -> float:
    """Mean SSIM of one float64 ``(h, w)`` channel plane pair (0..255) over the positions where the window
    fits.

    Four local moments are filtered instead of five: SSIM needs only var_x + var_y, so E[x^2] + E[y^2] is
    filtered as one map E[x^2 + y^2]. The separable Gaussian filter is OpenCV's float64 ``sepFilter2D``
    (symmetric column pass, one thread: 0.8 ms per 600x400 map, a third of the torch row-block filter it
    replaces); the SSIM map is then computed in row blocks small enough to stay in the CPU cache and on
    one thread (:data:`_TORCH_GRAIN`), and only the blocks' sums are kept. Equal to scikit-image's to
    ~1e-15 (summation order only).
    """
    import cv2

    h, w = x.shape
    r = len(kernel) // 2
    hh, hw = h - 2 * r, w - 2 * r
    c1 = (SSIM_K1 * 255.0) ** 2
    c2 = (SSIM_K2 * 255.0) ** 2

    def gauss(m: np.ndarray) -> torch.Tensor:  # full size, zero border; only the valid part is read
        f = cv2.sepFilter2D(m, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
        return torch.from_numpy(f)

    mu_x, mu_y = gauss(x), gauss(y)
    t = cv2.multiply(x, x)
    cv2.accumulateSquare(y, t)  # x^2 + y^2
    e_sq = gauss(t)
    cv2.multiply(x, y, dst=t)
    e_xy = gauss(t)
    rows = max(1, min(hh, _TORCH_GRAIN // hw))
    num_buf = torch.empty((rows, hw), dtype=torch.float64)
    den_buf = torch.empty((rows, hw), dtype=torch.float64)
    total = 0.0
    for b0 in range(r, h - r, rows):
        b1 = min(h - r, b0 + rows)
        mx, my, es, exy = (m[b0:b1, r : w - r] for m in (mu_x, mu_y, e_sq, e_xy))
        num, den = num_buf[: b1 - b0], den_buf[: b1 - b0]
        torch.mul(mx, my, out=num)  # mu_x mu_y
        exy.sub_(num).mul_(2.0).add_(c2)  # 2 cov_xy + c2
        num.mul_(2.0).add_(c1).mul_(exy)  # numerator
        torch.mul(mx, mx, out=den).addcmul_(my, my)  # mu_x^2 + mu_y^2
        es.sub_(den).add_(c2)  # var_x + var_y + c2
        den.add_(c1).mul_(es)  # denominator
        total += float(num.div_(den).sum())
    return total / (hh * hw)


# torch runs an element-wise op on one thread below this many elements (at::internal::GRAIN_SIZE); above
# it, intra-op threading on a busy machine costs 10-100x (see _np_255), so blocks stay below it.
_TORCH_GRAIN = 32768


def gt_mean_scale(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale each output so its mean BT.601 grey level equals the reference's; clip to [0, 1]."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=output.device).view(1, 3, 1, 1)
    out = output.to(torch.float64)
    mean_out = (out * weights).sum(1).flatten(1).mean(1)
    mean_ref = (reference.to(torch.float64) * weights).sum(1).flatten(1).mean(1)
    scale = mean_ref / mean_out.clamp_min(1e-12)
    return (out * scale.view(-1, 1, 1, 1)).clamp(0, 1)


def _check_pair(output: torch.Tensor, reference: torch.Tensor) -> None:
    if output.shape != reference.shape:
        raise ValueError(f"output shape {tuple(output.shape)} != reference shape {tuple(reference.shape)}")
    if output.ndim != 4 or output.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W), got {tuple(output.shape)}")


def _psnr_unrounded(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    diff = output.to(torch.float64) * 255.0 - _to_255(reference)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10((255.0**2) / mse)


def _values(t: torch.Tensor) -> list[float]:
    return [float(v) if math.isfinite(float(v)) or float(v) > 0 else float("nan") for v in t.cpu()]


@register_metric
class PeakSignalNoiseRatio(Metric):
    """PSNR (dB), RGB, 8-bit, no border crop. Higher is better."""

    name = "psnr"
    summary = "peak signal-to-noise ratio, dB, RGB on the 8-bit grid, no border crop"
    columns: ClassVar[dict[str, bool | None]] = {"psnr": True}
    column_formats: ClassVar[dict[str, ColumnFormat]] = {"psnr": ColumnFormat("PSNR", unit="dB", decimals=2)}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.options["cap_db"] = PSNR_CAP_DB  # recorded: runs scored before the cap have other run keys

    def score_batch(self, output, reference, contexts: list[SampleContext]):
        return [{"psnr": cap_psnr(v)} for v in _values(peak_signal_noise_ratio(output, reference))]


@register_metric
class StructuralSimilarity(Metric):
    """SSIM, Gaussian 11x11 sigma 1.5, RGB mean, 8-bit, as scikit-image's Gaussian form. Higher is better."""

    name = "ssim"
    summary = "structural similarity, Gaussian 11x11 sigma 1.5, mean over RGB (skimage/BasicSR form)"
    columns: ClassVar[dict[str, bool | None]] = {"ssim": True}
    column_formats: ClassVar[dict[str, ColumnFormat]] = {"ssim": ColumnFormat("SSIM", decimals=4)}

    def score_batch(self, output, reference, contexts: list[SampleContext]):
        return [{"ssim": v} for v in _values(structural_similarity(output, reference))]


@register_metric
class PeakSignalNoiseRatioGTMean(Metric):
    """PSNR after GT-mean brightness correction (diagnostic; inflates LOL scores; never a default)."""

    name = "psnr_gtmean"
    summary = "PSNR after scaling the output's mean grey level to the reference's (GT-mean; diagnostic)"
    columns: ClassVar[dict[str, bool | None]] = {"psnr_gtmean": True}
    column_formats: ClassVar[dict[str, ColumnFormat]] = {
        "psnr_gtmean": ColumnFormat("PSNR (GT-mean)", unit="dB", decimals=2)
    }
    diagnostic = True

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.options["cap_db"] = PSNR_CAP_DB

    def score_batch(self, output, reference, contexts: list[SampleContext]):
        scaled = gt_mean_scale(output, reference)
        return [{"psnr_gtmean": cap_psnr(v)} for v in _values(_psnr_unrounded(scaled, reference))]


@register_metric
class StructuralSimilarityGTMean(Metric):
    """SSIM after GT-mean brightness correction (diagnostic; never a default)."""

    name = "ssim_gtmean"
    summary = "SSIM after scaling the output's mean grey level to the reference's (GT-mean; diagnostic)"
    columns: ClassVar[dict[str, bool | None]] = {"ssim_gtmean": True}
    column_formats: ClassVar[dict[str, ColumnFormat]] = {
        "ssim_gtmean": ColumnFormat("SSIM (GT-mean)", decimals=4)
    }
    diagnostic = True

    def score_batch(self, output, reference, contexts: list[SampleContext]):
        scaled = gt_mean_scale(output, reference)
        # SSIM on the scaled image without re-rounding (as the GT-mean evaluation scripts do)
        if scaled.device.type == "cpu":
            vals = _ssim_255(scaled.numpy() * 255.0, _np_255(reference))
        else:
            vals = _ssim_255(scaled * 255.0, _to_255(reference))
        return [{"ssim_gtmean": v} for v in _values(vals)]
