"""NIQE (Mittal, Soundararajan & Bovik, "Making a completely blind image quality analyzer", IEEE SPL 2013).

This reproduces LIVE's MATLAB release (``niqe_release``: ``computequality.m``, ``computefeature.m``,
``estimateaggdparam.m``) with its defaults, step by step:

1. the RGB image becomes grey with MATLAB's ``rgb2gray`` (rounded to ``uint8``) and then ``double``;
2. it is cropped (top-left kept) to whole 96x96 blocks;
3. at each of two scales, the MSCN map ``(I - mu) / (sigma + 1)`` is taken with the 7x7 Gaussian window
   of sigma 7/6 (``imfilter(..., 'replicate')``; ``sigma = sqrt(|E[I^2] - mu^2|)``), and every block
   (96x96, then 48x48) gives 18 features: the AGGD fit of the block (shape, mean of the two scales) and,
   for the four neighbour products (``circshift`` by (0,1), (1,0), (1,1), (1,-1) *within the block*,
   wrapping), the AGGD shape, mean, left and right scales; the image is then halved with MATLAB's
   ``imresize(I, 0.5)`` (bicubic, antialiased; :mod:`cals_bench.metrics.matlab`);
4. the AGGD shape is the grid value of ``0.2:0.001:10`` nearest the moment ratio (first minimum);
5. the 36-dimensional block features are pooled by ``nanmean`` (per feature) and ``nancov`` (rows with a
   NaN dropped, sample covariance), and the score is the Mahalanobis-like distance
   ``sqrt((mu_p - mu_d) pinv((C_p + C_d) / 2) (mu_p - mu_d)')`` to the pristine model (MATLAB's ``pinv``
   tolerance ``max(size) * norm * eps``).

One deliberate difference: where a whole 7x7 neighbourhood is one grey level (saturated or posterised
regions), the exact MSCN value is 0, and so is the half-scale image's deviation from that grey level where
the bicubic support is flat; floating point leaves +-1e-14 there, whose sign (which decides the AGGD half a
pixel joins) depends on the grey level and on the summation order of the library (MATLAB's, NumPy's).
Such pixels are set to the exact values, so that NIQE does not depend on the machine. On the TID2013
calibration images the original MATLAB code is matched to 3e-13 where nothing is flat (I04) and within
0.030 elsewhere (I19, 30% flat), while giving those pixels a +-1e-15 sign instead moves I19 by up to 0.5.

The pristine model (``mu_prisparam``, ``cov_prisparam`` of ``modelparameters.mat``) is the registered
weight file ``iqa/niqe-pris-params`` (BasicSR's ``niqe_pris_params.npz``). Lower is better. Images
smaller than 96 pixels on a side have no block: the value is NaN with that reason.
Checked against the values the original MATLAB code gives on five TID2013 images
(``tests/test_noreference.py``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.ndimage import maximum_filter, minimum_filter
from scipy.special import gamma

from cals_bench.errors import WeightsError
from cals_bench.metrics.base import register_metric
from cals_bench.metrics.matlab import (
    colon,
    fspecial_gaussian,
    imfilter_replicate,
    imresize,
    resize_matrix,
    rgb2gray,
)
from cals_bench.metrics.noreference import NoReferenceMetric, to_uint8_hwc
from cals_bench.weights import WeightSpec, register

# NIQE's pristine model (``cals-bench weights list``).
PRISTINE_MODEL = register(
    WeightSpec(
        name="iqa/niqe-pris-params",
        relpath="iqa/niqe_pris_params.npz",
        sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        size=11850,
        licence="Apache-2.0 (BasicSR); the parameters are LIVE's niqe_release modelparameters.mat",
        origin="XPixelGroup/BasicSR @ 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a : "
        "basicsr/metrics/niqe_pris_params.npz",
        url="https://raw.githubusercontent.com/XPixelGroup/BasicSR/8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a/"
        "basicsr/metrics/niqe_pris_params.npz",
        paper="Mittal, Soundararajan & Bovik, Making a Completely Blind Image Quality Analyzer, IEEE SPL 2013",
        used_by="metric niqe",
        fmt="other",
        notes="npz (read with allow_pickle=False): mu_pris_param (1, 36), cov_pris_param (36, 36), "
        "gaussian_window (7, 7)",
    )
)
WEIGHTS = PRISTINE_MODEL.name
BLOCK = 96
WINDOW = fspecial_gaussian(7, 7.0 / 6.0)
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
N_FEATURES = 36

_GAM = colon(0.2, 0.001, 10.0)
_R_GAM = gamma(2.0 / _GAM) ** 2 / (gamma(1.0 / _GAM) * gamma(3.0 / _GAM))


def _nearest_on_grid(values: np.ndarray) -> np.ndarray:
    """Index of ``argmin((r_gam - v)^2)`` for each value, first minimum on ties, index 0 for NaN (MATLAB's
    ``min`` of an all-NaN vector). ``r_gam`` is strictly increasing, so only the two grid neighbours of
    ``v`` can be nearest: found by binary search instead of scanning the 9,801 grid points."""
    v = np.where(np.isnan(values), -np.inf, values)
    hi = np.clip(np.searchsorted(_R_GAM, v), 1, _R_GAM.size - 1)
    lo = hi - 1
    d_lo = (_R_GAM[lo] - v) ** 2
    d_hi = (_R_GAM[hi] - v) ** 2
    idx = np.where(d_hi < d_lo, hi, lo)
    return np.where(np.isnan(values), 0, idx)


def aggd_fit(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MATLAB ``estimateaggdparam`` on each row of ``vecs`` ``(n, m)``: (alpha, beta_left, beta_right).

    A row with no negative (or no positive) value has a NaN scale and alpha = 0.2 (MATLAB's ``min`` of an
    all-NaN vector returns its first index), as the original code gives.
    """
    neg = vecs < 0
    pos = vecs > 0
    sq = vecs * vecs
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.where(neg, sq, 0.0).sum(1) / neg.sum(1))
        right = np.sqrt(np.where(pos, sq, 0.0).sum(1) / pos.sum(1))
        gammahat = left / right
        rhat = np.abs(vecs).mean(1) ** 2 / sq.mean(1)
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    alpha = _GAM[_nearest_on_grid(rhatnorm)]
    ratio = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left * ratio, right * ratio


def _blocks(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape
    nh, nw = h // size, w // size
    return (
        img[: nh * size, : nw * size]
        .reshape(nh, size, nw, size)
        .transpose(0, 2, 1, 3)
        .reshape(-1, size, size)
    )


def block_features(structdis: np.ndarray, size: int) -> np.ndarray:
    """``(n_blocks, 18)`` NIQE features of an MSCN map cut into ``size x size`` blocks."""
    blocks = _blocks(structdis, size)
    n = blocks.shape[0]
    flat = blocks.reshape(n, -1)
    alpha, bl, br = aggd_fit(flat)
    feats = [alpha, (bl + br) / 2.0]
    for shift in SHIFTS:
        pair = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(n, -1)
        alpha, bl, br = aggd_fit(pair)
        mean = (br - bl) * (gamma(2.0 / alpha) / gamma(1.0 / alpha))
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def mscn(img: np.ndarray) -> np.ndarray:
    """``(I - mu) / (sigma + 1)`` with NIQE's 7x7 Gaussian window and replicate padding.

    Where the whole 7x7 neighbourhood is one grey level the exact value is 0; floating point leaves
    +-1e-14 there, whose sign (it decides which half of the AGGD fit the pixel joins) depends on the grey
    level and on the library's summation order. It is set to exactly 0 (see the module notes).
    """
    mu = imfilter_replicate(img, WINDOW)
    sigma = np.sqrt(np.abs(imfilter_replicate(img * img, WINDOW) - mu * mu))
    out = (img - mu) / (sigma + 1.0)
    size = WINDOW.shape[0]
    flat = maximum_filter(img, size, mode="nearest") == minimum_filter(img, size, mode="nearest")
    out[flat] = 0.0
    return out


def half_scale(img: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(img, 0.5)``, with pixels whose whole support is one grey level set to it exactly."""
    out = imresize(img, 0.5)
    lo = _support_extreme(img, np.minimum)
    hi = _support_extreme(img, np.maximum)
    flat = lo == hi
    out[flat] = lo[flat]
    return out


def _support_extreme(img: np.ndarray, op: Any) -> np.ndarray:
    """Min or max of ``img`` over each half-scale output pixel's bicubic support (rows, then columns)."""
    for axis in (0, 1):
        n = img.shape[axis]
        mat = resize_matrix(n, math.ceil(0.5 * n), 0.5)
        nz = mat != 0
        first = nz.argmax(axis=1)
        last = n - 1 - nz[:, ::-1].argmax(axis=1)
        moved = np.moveaxis(img, axis, 0)
        red = np.stack([op.reduce(moved[a : b + 1], axis=0) for a, b in zip(first, last)])
        img = np.moveaxis(red, 0, axis)
    return img


def niqe_features(gray: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """``(n_blocks, 36)`` features of a grey image on the 0..255 scale (both scales side by side)."""
    img = np.asarray(gray, dtype=np.float64)
    h, w = img.shape
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        raise ValueError(f"NIQE needs at least {block}x{block} pixels, got {w}x{h}")
    img = img[: nh * block, : nw * block]
    feats = []
    for scale in (1, 2):
        feats.append(block_features(mscn(img), block // scale))
        if scale == 1:
            img = half_scale(img)
    return np.concatenate(feats, axis=1)


def _pinv_matlab(a: np.ndarray) -> np.ndarray:
    u, s, vt = np.linalg.svd(a)
    tol = max(a.shape) * s[0] * np.finfo(np.float64).eps
    keep = s > tol
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def niqe_score(gray: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray, block: int = BLOCK) -> float:
    """NIQE of a grey image (0..255 scale) against a pristine model ``(mu (36,), cov (36, 36))``."""
    feats = niqe_features(gray, block)
    mu_dist = np.nanmean(feats, axis=0)
    complete = feats[~np.isnan(feats).any(axis=1)]
    if complete.shape[0] < 2:
        return float("nan")
    cov_dist = np.cov(complete, rowvar=False)
    diff = np.ravel(mu_pris) - mu_dist
    quality = diff @ _pinv_matlab((cov_pris + cov_dist) / 2.0) @ diff
    return float(math.sqrt(quality)) if quality >= 0 else float("nan")


def load_pristine(path: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(mu (36,), cov (36, 36), sha256) of the registered pristine model (read with ``allow_pickle=False``)."""
    from cals_bench.weights import resolve

    resolved = resolve(WEIGHTS, path)
    try:
        with np.load(resolved.path, allow_pickle=False) as data:
            mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
            cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise WeightsError(f"{resolved.path} ({WEIGHTS}) is not NIQE's pristine model: {exc}") from exc
    if mu.shape != (N_FEATURES,) or cov.shape != (N_FEATURES, N_FEATURES):
        raise WeightsError(f"{resolved.path}: expected a 36-d model, got {mu.shape} and {cov.shape}")
    return mu, cov, resolved.sha256


def niqe_rgb(rgb: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray) -> float:
    """NIQE of an 8-bit RGB image ``(H, W, 3)`` (MATLAB ``rgb2gray`` first), or of a grey ``(H, W)`` one."""
    gray = rgb2gray(rgb) if np.ndim(rgb) == 3 else np.asarray(rgb, dtype=np.float64)
    return niqe_score(gray, mu_pris, cov_pris)


@register_metric
class NaturalImageQualityEvaluator(NoReferenceMetric):
    """NIQE (LIVE MATLAB release, 96x96 blocks, MATLAB rgb2gray and imresize); no reference; lower is better."""

    name = "niqe"
    summary = "NIQE, no reference: LIVE's MATLAB niqe on MATLAB rgb2gray, 96x96 blocks (lower is better)"
    columns: ClassVar[dict[str, bool | None]] = {"niqe": False}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._model: tuple[np.ndarray, np.ndarray] | None = None

    def available(self) -> tuple[bool, str]:
        try:
            self._load()
        except WeightsError as exc:
            return False, f"niqe: {exc}"
        return True, ""

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._model is None:
            mu, cov, sha = load_pristine()
            self._model = (mu, cov)
            self.weights_used = {WEIGHTS: sha}
        return self._model

    def score_image(self, image: torch.Tensor) -> tuple[dict[str, float], str | None]:
        mu, cov = self._load()
        rgb = to_uint8_hwc(image)
        h, w = rgb.shape[:2]
        if h < BLOCK or w < BLOCK:
            return {"niqe": float("nan")}, f"niqe: image {w}x{h} is smaller than one {BLOCK}x{BLOCK} block"
        value = niqe_rgb(rgb, mu, cov)
        return {"niqe": value}, None if value == value else "niqe: fewer than two complete blocks"
