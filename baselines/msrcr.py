"""MSRCR: multi-scale Retinex with colour restoration (Jobson, Rahman & Woodell, IEEE TIP 1997).

Model card
----------
What it is: a training-free centre/surround Retinex. For each colour channel ``I_i`` the single-scale
Retinex is ``log I_i - log(F_n * I_i)`` with a Gaussian surround ``F_n``; the multi-scale Retinex (MSR)
averages it over scales; colour restoration multiplies the MSR by ``C_i = beta log(alpha I_i / sum_j I_j)``,
which brings back the colour that the MSR's grey-world behaviour washes out. A final per-channel stretch
maps the result to the display range.

Papers: D. J. Jobson, Z. Rahman, G. A. Woodell, "A multiscale retinex for bridging the gap between color
images and the human observation of scenes", IEEE Trans. Image Processing 6(7):965-976, 1997 (the MSR, the
colour restoration, scales 15/80/250 with equal weights, alpha = 125, beta = 46); A. B. Petro, C. Sbert,
J.-M. Morel, "Multiscale Retinex", Image Processing On Line 4:71-88, 2014 (doi:10.5201/ipol.2014.107),
whose documented implementation replaces Jobson's final gain/offset (G = 192, b = -30, which are tied to
the original log/range conventions and are not automatic) by the *simplest colour balance*: each channel is
clipped at its 1% and 99% quantiles (1% of the pixels saturated at each end) and stretched linearly to
[0, 1]. That parameterisation is the one used here. No weights; the code is the project's own.

Exact definition implemented (every parameter recorded in ``self.args``):
- ``I = x + offset`` with ``x`` the input in [0, 1] and ``offset = 1/255`` (one 8-bit level), so that the
  log is finite at black pixels; the Retinex ratio and ``C_i`` are scale-free, so apart from this offset
  the result does not depend on the input's overall scale;
- surround ``F_n(u, v) = K exp(-(u^2 + v^2) / c_n^2)`` (Jobson's form: ``c_n`` is the surround constant,
  the standard deviation is ``c_n / sqrt(2)``), ``c_n`` in (15, 80, 250), ``K`` such that the discrete
  kernel sums to 1 over the integer lattice; the image is extended by half-sample symmetric reflection
  (``cba|abc|cba``, repeated as far as the kernel reaches). The convolution is computed exactly in the
  DCT-II domain, where it is a multiplication by the kernel's periodised cosine transform (no truncation to
  a window, which the 250 scale would overflow on a 600x400 image);
- ``R_MSR,i = sum_n w_n (log I_i - log(F_n * I_i))`` with ``w_n = 1/3``; ``R_i = C_i * R_MSR,i`` with the
  natural log (the base cancels in the final stretch);
- simplest colour balance per channel, ``low_clip = high_clip = 0.01``: with the channel's ``n`` values
  sorted, ``v_min`` is the value at index ``floor(n low_clip)`` and ``v_max`` the one at index
  ``ceil(n (1 - high_clip)) - 1``; output ``clip((R - v_min) / (v_max - v_min), 0, 1)``. A channel with
  ``v_max - v_min <= 1e-9`` (no contrast: a constant image, whose MSR is exactly 0 and comes out of the
  floating-point surround as ~1e-13) maps to 0.5 rather than to stretched rounding noise.

Deviations: widely circulated Python versions use a Gaussian standard deviation of ``c_n`` and other final
stretches; ours follows the formulas above. Images: float32 RGB ``(B, 3, H, W)`` in [0, 1]; each image is
processed on its own, in float64, on the CPU (about 0.2 s for 600x400).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import fft

from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.errors import CalsBenchError

DEFAULT_SCALES = (15.0, 80.0, 250.0)
# A spread of C * R_MSR at most this large is rounding, not contrast: a constant image's exact R_MSR = 0
# comes out of the DCT as |R| ~ 1e-13, while one 8-bit step of real contrast gives a spread of order 0.1.
NO_CONTRAST = 1e-9


def surround_kernel_1d(c: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``m`` and values of the 1-D surround ``exp(-m^2 / c^2)`` normalised to sum 1 over the lattice.

    The 2-D surround is the outer product of two of these. Terms below 1e-17 of the peak are dropped
    (``|m| > 6.3 c``), which changes nothing in float64.
    """
    radius = max(1, math.ceil(6.3 * c))
    m = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(m**2) / c**2)
    return m, g / g.sum()


@functools.lru_cache(maxsize=64)
def surround_multiplier(n: int, c: float) -> np.ndarray:
    """DCT-II eigenvalues of the surround convolution on ``n`` samples with half-sample symmetric extension.

    For ``k = 0..n-1``: ``sum_m g(m) cos(pi k m / n)``, exact for a kernel of any length (the extension is
    ``2n``-periodic, so the cosine basis diagonalises the convolution). Computed by folding ``g`` modulo
    ``2n`` and taking the real FFT of the folded kernel. Cached per ``(n, c)``; the array is read-only.
    """
    m, g = surround_kernel_1d(c)
    folded = np.bincount(np.mod(m.astype(np.int64), 2 * n), weights=g, minlength=2 * n)
    mult = np.fft.rfft(folded).real[:n]
    mult.setflags(write=False)
    return mult


def gaussian_surround(channel: np.ndarray, c: float) -> np.ndarray:
    """``F * I`` for one ``(H, W)`` channel (float64), symmetric boundary, surround constant ``c``."""
    h, w = channel.shape
    spec = fft.dctn(channel, type=2, norm="ortho")
    spec *= surround_multiplier(h, c)[:, None] * surround_multiplier(w, c)[None, :]
    return fft.idctn(spec, type=2, norm="ortho")


def multiscale_retinex(
    channel: np.ndarray, scales: Sequence[float] = DEFAULT_SCALES, weights: Sequence[float] | None = None
) -> np.ndarray:
    """``sum_n w_n (log I - log(F_n * I))`` for one positive ``(H, W)`` channel; equal weights by default."""
    weights = [1.0 / len(scales)] * len(scales) if weights is None else list(weights)
    log_i = np.log(channel)
    h, w = channel.shape
    spec = fft.dctn(channel, type=2, norm="ortho")
    out = np.zeros_like(channel, dtype=np.float64)
    for c, wn in zip(scales, weights, strict=True):
        mult = surround_multiplier(h, c)[:, None] * surround_multiplier(w, c)[None, :]
        blurred = fft.idctn(spec * mult, type=2, norm="ortho")
        out += wn * (log_i - np.log(blurred))
    return out


def color_restoration(intensity: np.ndarray, alpha: float = 125.0, beta: float = 46.0) -> np.ndarray:
    """Jobson's ``C_i = beta * (log(alpha I_i) - log(sum_j I_j))`` for a positive ``(H, W, 3)`` image."""
    return beta * (np.log(alpha * intensity) - np.log(intensity.sum(axis=2, keepdims=True)))


def simplest_color_balance(
    channel: np.ndarray, low_clip: float = 0.01, high_clip: float = 0.01
) -> np.ndarray:
    """Saturate ``low_clip`` / ``high_clip`` of the pixels at each end and stretch linearly to [0, 1].

    ``v_min`` is the sorted value at ``floor(n * low_clip)``, ``v_max`` the one at
    ``ceil(n * (1 - high_clip)) - 1``; a channel with ``v_max - v_min <= NO_CONTRAST`` returns 0.5.
    """
    flat = channel.ravel()
    n = flat.size
    lo = min(n - 1, math.floor(n * low_clip))
    hi = max(lo, min(n - 1, math.ceil(n * (1.0 - high_clip)) - 1))
    part = np.partition(flat, (lo, hi))
    v_min, v_max = part[lo], part[hi]
    if not v_max - v_min > NO_CONTRAST:
        return np.full_like(channel, 0.5, dtype=np.float64)
    return np.clip((channel - v_min) / (v_max - v_min), 0.0, 1.0)


def msrcr_enhance(
    rgb: np.ndarray,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    weights: Sequence[float] | None = None,
    alpha: float = 125.0,
    beta: float = 46.0,
    low_clip: float = 0.01,
    high_clip: float = 0.01,
    offset: float = 1.0 / 255.0,
    return_raw: bool = False,
):
    """MSRCR on one image: float ``(H, W, 3)`` in [0, 1] -> ``(H, W, 3)`` in [0, 1].

    With ``return_raw`` also returns the pre-balance ``R = C * R_MSR`` (float64 ``(H, W, 3)``).
    """
    intensity = np.asarray(rgb, dtype=np.float64) + offset
    msr = np.stack([multiscale_retinex(intensity[..., i], scales, weights) for i in range(3)], axis=2)
    raw = color_restoration(intensity, alpha, beta) * msr
    out = np.stack([simplest_color_balance(raw[..., i], low_clip, high_clip) for i in range(3)], axis=2)
    return (out, raw) if return_raw else out


@register_enhancer("msrcr")
class Msrcr(Enhancer):
    """MSRCR (Jobson et al. 1997) with the IPOL simplest-colour-balance ending (Petro et al. 2014); the module
    docstring is the model card."""

    summary = (
        "multi-scale Retinex with colour restoration (scales 15/80/250, alpha 125, beta 46, 1%/1% balance)"
    )
    paper = (
        "Jobson, Rahman & Woodell, A multiscale retinex for bridging the gap between color images and the "
        "human observation of scenes, IEEE TIP 1997; final stretch as Petro, Sbert & Morel, Multiscale "
        "Retinex, IPOL 2014"
    )
    licence = "no weights (training-free method)"

    def __init__(
        self,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        weights: Sequence[float] | None = None,
        alpha: float = 125.0,
        beta: float = 46.0,
        low_clip: float = 0.01,
        high_clip: float = 0.01,
        offset: float = 1.0 / 255.0,
    ) -> None:
        super().__init__()
        self.scales = tuple(float(c) for c in scales)
        if not self.scales or any(not c > 0 for c in self.scales):
            raise CalsBenchError(f"msrcr: scales must be positive, got {scales!r}")
        n = len(self.scales)
        self.weights = tuple([1.0 / n] * n if weights is None else (float(w) for w in weights))
        if len(self.weights) != n:
            raise CalsBenchError(f"msrcr: {len(self.weights)} weights for {n} scales")
        self.alpha, self.beta = float(alpha), float(beta)
        self.low_clip, self.high_clip = float(low_clip), float(high_clip)
        self.offset = float(offset)
        if not (self.alpha > 0 and self.offset > 0):
            raise CalsBenchError("msrcr: alpha and offset must be > 0")
        if not (0 <= self.low_clip < 1 and 0 <= self.high_clip < 1 and self.low_clip + self.high_clip < 1):
            raise CalsBenchError("msrcr: low_clip and high_clip must be in [0, 1) with a sum below 1")
        self.args.update(
            scales=list(self.scales),
            weights=list(self.weights),
            alpha=self.alpha,
            beta=self.beta,
            low_clip=self.low_clip,
            high_clip=self.high_clip,
            offset=self.offset,
            surround="K exp(-r^2 / c^2), symmetric boundary, exact (DCT)",
            final_stretch="simplest colour balance per channel (IPOL 2014)",
        )

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 RGB ``(B, 3, H, W)`` in [0, 1] -> same shape and range; loops over the batch."""
        out = []
        for img in x:
            rgb = img.detach().to(torch.float64).permute(1, 2, 0).cpu().numpy()
            res = msrcr_enhance(
                rgb,
                scales=self.scales,
                weights=self.weights,
                alpha=self.alpha,
                beta=self.beta,
                low_clip=self.low_clip,
                high_clip=self.high_clip,
                offset=self.offset,
            )
            out.append(torch.from_numpy(np.ascontiguousarray(res)).permute(2, 0, 1))
        return torch.stack(out).to(device=x.device, dtype=torch.float32)
