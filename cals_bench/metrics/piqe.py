"""PIQE (Venkatanath N et al., "Blind image quality evaluation using perception based features", NCC 2015).

As MATLAB's ``piqe`` (Image Processing Toolbox) computes it, with its defaults:

1. the RGB image becomes grey with MATLAB's ``rgb2gray`` (:mod:`cals_bench.metrics.matlab`), rescaled to
   ``round(255 * I / max(I))``, and padded (``'symmetric'``, after the last row/column) to whole 16x16
   blocks;
2. the MSCN map ``(I - mu) / (sigma + 1)`` is taken with the 7x7 Gaussian of sigma 7/6 (replicate
   padding), as in NIQE;
3. a 16x16 block is *active* when its MSCN variance (``var``, N - 1) exceeds 0.1. An active block shows a
   *noticeable artifact* when one of the 11 six-pixel segments of any of its four edges has a standard
   deviation below 0.1, and *noise* when ``sigma > 2 beta`` with ``sigma`` the block's standard deviation
   and ``beta = |sigma - r| / max(sigma, r)``, ``r`` the ratio of the standard deviation of the two centre
   columns (8 and 9, 1-based) to that of fourteen others (0 when undefined). MATLAB removes column 8
   and then column 9 of the narrowed block, so its "surround" keeps column 9 and leaves out column 10;
   this is reproduced, since it is what the official values measure (with the other reading I04 moves
   from 21.62 to 21.35);
4. ``PIQE = 100 (sum over active blocks of [artifact] (1 - var) + [noise] var + 1) / (n_active + 1)``.

0 is best, 100 worst (lower is better). Checked against the MATLAB values on five TID2013 images
(``tests/test_noreference.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from cals_bench.metrics.base import register_metric
from cals_bench.metrics.matlab import rgb2gray
from cals_bench.metrics.niqe import mscn
from cals_bench.metrics.noreference import NoReferenceMetric, to_uint8_hwc

BLOCK = 16
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
SEGMENT = 6


def _segment_std(edges: np.ndarray) -> np.ndarray:
    """``(n, BLOCK)`` edges -> ``(n, BLOCK - SEGMENT + 1)`` standard deviations (N - 1) of 6-pixel runs."""
    runs = np.lib.stride_tricks.sliding_window_view(edges, SEGMENT, axis=1)
    return runs.std(axis=2, ddof=1)


def piqe_gray(gray: np.ndarray) -> float:
    """PIQE of a grey image on the 0..255 scale (MATLAB's steps 1-4 above, from the rescaling on)."""
    img = np.asarray(gray, dtype=np.float64)
    peak = img.max()
    if peak <= 0:
        return 100.0  # an all-black image has no active block: 100 (0 + 1) / (0 + 1)
    img = np.round(255.0 * (img / peak))
    h, w = img.shape
    ph, pw = (-h) % BLOCK, (-w) % BLOCK
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="symmetric")
    norm = mscn(img)
    nh, nw = norm.shape[0] // BLOCK, norm.shape[1] // BLOCK
    blocks = norm.reshape(nh, BLOCK, nw, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)
    var = blocks.reshape(len(blocks), -1).var(axis=1, ddof=1)
    active = var > ACTIVITY_THRESHOLD
    edges = (blocks[:, 0, :], blocks[:, :, BLOCK - 1], blocks[:, BLOCK - 1, :], blocks[:, :, 0])
    impaired = np.zeros(len(blocks), dtype=bool)
    for edge in edges:
        impaired |= (_segment_std(edge) < IMPAIRED_THRESHOLD).any(axis=1)
    c1 = (BLOCK - 1 + 1) // 2 - 1  # MATLAB's centre columns 8 and 9 (1-based)
    center = blocks[:, :, c1 : c1 + 2].reshape(len(blocks), -1)
    # MATLAB deletes column 8 and then column 9 *of what remains*: the surround keeps column 9 and loses 10
    keep = [j for j in range(BLOCK) if j not in (c1, c1 + 2)]
    surround = blocks[:, :, keep].reshape(len(blocks), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = center.std(axis=1, ddof=1) / surround.std(axis=1, ddof=1)
        ratio = np.where(np.isnan(ratio), 0.0, ratio)
        sigma = np.sqrt(var)
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
    noise = sigma > 2.0 * beta
    dist = np.where(active & impaired, 1.0 - var, 0.0) + np.where(active & noise, var, 0.0)
    return float((dist.sum() + 1.0) / (active.sum() + 1.0) * 100.0)


def piqe_rgb(rgb: np.ndarray) -> float:
    """PIQE of an 8-bit RGB image ``(H, W, 3)`` (MATLAB ``rgb2gray`` first) or of a grey ``(H, W)`` one."""
    gray = rgb2gray(rgb) if np.ndim(rgb) == 3 else np.asarray(rgb, dtype=np.float64)
    return piqe_gray(gray)


@register_metric
class PerceptionBasedImageQualityEvaluator(NoReferenceMetric):
    """PIQE (MATLAB ``piqe``), no reference, no trained model; 0 best, 100 worst (lower is better)."""

    name = "piqe"
    summary = "PIQE, no reference, no trained model: MATLAB piqe on rgb2gray, 16x16 blocks (lower is better)"
    columns: ClassVar[dict[str, bool | None]] = {"piqe": False}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def score_image(self, image: torch.Tensor) -> tuple[dict[str, float], str | None]:
        return {"piqe": piqe_rgb(to_uint8_hwc(image))}, None
