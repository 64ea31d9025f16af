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

import numpy as np
import torch
import torch.nn.functional as F

from cals_bench.metrics.base import Metric, SampleContext, register_metric
from cals_bench.numbers import PSNR_CAP_DB, cap_psnr

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _np_255(x: torch.Tensor, dtype: type = np.float64) -> np.ndarray:
    """CPU tensor in [0, 1] -> float64 NumPy array on the 0..255 grid.

    The CPU paths use NumPy/SciPy (single-threaded, predictable): torch's intra-op threading on small
    element-wise ops was measured 10-100x slower on a busy 2-core machine.
    """
    arr = x.detach().numpy().astype(dtype, copy=True)
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
    if output.device.type == "cpu":
        return _ssim_255(_np_255(output), _np_255(reference))
    return _ssim_255(_to_255(output), _to_255(reference))


def _ssim_255(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor:
    """SSIM per image of float64 ``(B, C, H, W)`` batches on the 0..255 scale.

    NumPy arrays (the CPU path) are filtered by :func:`_gauss_valid` (separable, symmetric, in cache-sized
    row blocks); GPU tensors with a grouped torch convolution. Both in float64, so the result equals
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
    """CPU SSIM, one channel at a time (cache-friendly), filtering four local moments instead of five:
    SSIM needs only var_x + var_y, so E[x^2] + E[y^2] is filtered as one map E[x^2 + y^2]. Usually in
    cache-sized row blocks (:func:`_ssim_channel_blocked`); images too wide for those take whole-map
    passes, with the element-wise work in place on preallocated buffers."""
    b, c, h, w = x.shape
    c1 = (SSIM_K1 * 255.0) ** 2
    c2 = (SSIM_K2 * 255.0) ** 2
    out = np.empty((b, c))
    if _TORCH_GRAIN // (4 * w) >= 4:  # the usual case: everything in cache-sized row blocks
        for i in range(b):
            for j in range(c):
                out[i, j] = _ssim_channel_blocked(
                    np.ascontiguousarray(x[i, j]), np.ascontiguousarray(y[i, j]), kernel
                )
        return out.mean(axis=1)
    moments = np.empty((4, h, w))
    for i in range(b):
        for j in range(c):
            xi, yi = x[i, j], y[i, j]
            moments[0] = xi
            moments[1] = yi
            np.multiply(xi, xi, out=moments[2])
            moments[2] += yi * yi
            np.multiply(xi, yi, out=moments[3])
            mu_x, mu_y, e_sq, e_xy = _gauss_valid(moments, kernel)
            mu_xy = mu_x * mu_y
            mu_sq = mu_x * mu_x
            mu_sq += mu_y * mu_y
            e_xy -= mu_xy  # covariance
            e_xy *= 2.0
            e_xy += c2
            mu_xy *= 2.0
            mu_xy += c1
            mu_xy *= e_xy  # numerator
            e_sq -= mu_sq  # var_x + var_y
            e_sq += c2
            mu_sq += c1
            mu_sq *= e_sq  # denominator
            np.divide(mu_xy, mu_sq, out=mu_xy)
            out[i, j] = mu_xy.mean()
    return out.mean(axis=1)


def _ssim_channel_blocked(xi: np.ndarray, yi: np.ndarray, kernel_1d: np.ndarray) -> float:
    """Mean SSIM of one float64 ``(h, w)`` channel pair (0..255), the same arithmetic as
    :func:`_ssim_255_numpy` (four moments, the symmetric separable filter of :func:`_gauss_valid`) done in
    row blocks small enough to stay in the CPU cache and on one thread: the moments, both filter passes and
    the SSIM map of a block are computed while it is in cache, and only the map's block sums are kept.
    Equal to scikit-image's to ~1e-15."""
    h, w = xi.shape
    kernel = [float(v) for v in kernel_1d]
    r = len(kernel) // 2
    hh, hw = h - 2 * r, w - 2 * r
    c1 = (SSIM_K1 * 255.0) ** 2
    c2 = (SSIM_K2 * 255.0) ** 2
    x, y = torch.from_numpy(xi), torch.from_numpy(yi)
    rows = _TORCH_GRAIN // (4 * w)
    horiz = torch.empty((4, h, hw), dtype=torch.float64)
    m = torch.empty((4, rows, w), dtype=torch.float64)
    for b0 in range(0, h, rows):
        n = min(h, b0 + rows) - b0
        mb = m[:, :n]
        mb[0], mb[1] = x[b0 : b0 + n], y[b0 : b0 + n]
        torch.mul(mb[0], mb[0], out=mb[2]).addcmul_(mb[1], mb[1])  # x^2 + y^2
        torch.mul(mb[0], mb[1], out=mb[3])
        dst = horiz[:, b0 : b0 + n]
        torch.mul(mb[:, :, r : r + hw], kernel[r], out=dst)
        for i in range(1, r + 1):
            dst.add_(mb[:, :, r - i : r - i + hw] + mb[:, :, r + i : r + i + hw], alpha=kernel[r + i])
    total = 0.0
    filt = torch.empty((4, rows, hw), dtype=torch.float64)
    num_buf = torch.empty((rows, hw), dtype=torch.float64)
    den_buf = torch.empty((rows, hw), dtype=torch.float64)
    for b0 in range(0, hh, rows):
        n = min(hh, b0 + rows) - b0
        dst = filt[:, :n]
        torch.mul(horiz[:, b0 + r : b0 + r + n], kernel[r], out=dst)
        for i in range(1, r + 1):
            dst.add_(
                horiz[:, b0 + r - i : b0 + r - i + n] + horiz[:, b0 + r + i : b0 + r + i + n],
                alpha=kernel[r + i],
            )
        mu_x, mu_y, e_sq, e_xy = dst
        num, den = num_buf[:n], den_buf[:n]
        torch.mul(mu_x, mu_y, out=num)  # mu_x mu_y
        e_xy.sub_(num).mul_(2.0).add_(c2)  # 2 cov_xy + c2
        num.mul_(2.0).add_(c1).mul_(e_xy)  # numerator
        torch.mul(mu_x, mu_x, out=den).addcmul_(mu_y, mu_y)  # mu_x^2 + mu_y^2
        e_sq.sub_(den).add_(c2)  # var_x + var_y + c2
        den.add_(c1).mul_(e_sq)  # denominator
        total += float(num.div_(den).sum())
    return total / (hh * hw)


# torch runs an element-wise op on one thread below this many elements (at::internal::GRAIN_SIZE); above
# it, intra-op threading on a busy machine costs 10-100x (see _np_255), so blocks stay below it.
_TORCH_GRAIN = 32768


def _gauss_valid(maps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The separable Gaussian filter of float64 ``(n, h, w)`` maps where the window fits (``valid``:
    ``(n, h - 2r, w - 2r)``), as ``k[r] x[c] + sum_i k[r + i] (x[c - i] + x[c + i])`` (symmetric kernel).

    Row blocks small enough to stay in the CPU cache, and on one thread, with torch's vectorised element-wise
    kernels doing the arithmetic: about 1.5x faster than SciPy's scalar ``correlate1d`` over whole maps
    (which very wide images still use), equal to it to ~1e-13 on the 0..255 scale (summation order only).
    """
    n, h, w = maps.shape
    r = len(kernel) // 2
    rows = _TORCH_GRAIN // (n * w)
    if rows < 4:
        from scipy.ndimage import correlate1d

        filt = correlate1d(maps, kernel, axis=2, mode="constant")[:, :, r:-r]
        return correlate1d(filt, kernel, axis=1, mode="constant")[:, r:-r, :]
    hh, hw = h - 2 * r, w - 2 * r
    k = [float(v) for v in kernel]
    src = torch.from_numpy(maps)
    horiz = torch.empty((n, h, hw), dtype=torch.float64)
    out = torch.empty((n, hh, hw), dtype=torch.float64)
    for b0 in range(0, h, rows):
        block, dst = src[:, b0 : b0 + rows], horiz[:, b0 : b0 + rows]
        torch.mul(block[:, :, r : r + hw], k[r], out=dst)
        for i in range(1, r + 1):
            dst.add_(block[:, :, r - i : r - i + hw] + block[:, :, r + i : r + i + hw], alpha=k[r + i])
    for b0 in range(0, hh, rows):
        b1 = min(hh, b0 + rows)
        dst = out[:, b0:b1]
        torch.mul(horiz[:, b0 + r : b1 + r], k[r], out=dst)
        for i in range(1, r + 1):
            dst.add_(horiz[:, b0 + r - i : b1 + r - i] + horiz[:, b0 + r + i : b1 + r + i], alpha=k[r + i])
    return out.numpy()


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
    columns = {"psnr": True}

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
    columns = {"ssim": True}

    def score_batch(self, output, reference, contexts: list[SampleContext]):
        return [{"ssim": v} for v in _values(structural_similarity(output, reference))]


@register_metric
class PeakSignalNoiseRatioGTMean(Metric):
    """PSNR after GT-mean brightness correction (diagnostic; inflates LOL scores; never a default)."""

    name = "psnr_gtmean"
    summary = "PSNR after scaling the output's mean grey level to the reference's (GT-mean; diagnostic)"
    columns = {"psnr_gtmean": True}
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
    columns = {"ssim_gtmean": True}
    diagnostic = True

    def score_batch(self, output, reference, contexts: list[SampleContext]):
        scaled = gt_mean_scale(output, reference)
        # SSIM on the scaled image without re-rounding (as the GT-mean evaluation scripts do)
        if scaled.device.type == "cpu":
            vals = _ssim_255(scaled.numpy() * 255.0, _np_255(reference))
        else:
            vals = _ssim_255(scaled * 255.0, _to_255(reference))
        return [{"ssim_gtmean": v} for v in _values(vals)]
