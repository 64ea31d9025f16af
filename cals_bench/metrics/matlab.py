"""MATLAB image-processing conventions that no-reference metrics depend on, in NumPy (float64).

The reference implementations of NIQE (LIVE's ``niqe_release``) and PIQE are MATLAB code; their numbers
move by tenths when a port swaps one of these conventions for a near equivalent (BT.601 luma for
``rgb2gray``, OpenCV's bicubic for ``imresize``, reflect for replicate padding). Each function here
states the MATLAB behaviour it reproduces:

- :func:`rgb2gray`: ``rgb2gray`` on ``uint8`` RGB. The coefficients are the first row of the inverse of
  the NTSC (YIQ) matrix, ``inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703])(1, :)`` =
  (0.298936021293775, 0.587043074451121, 0.114020904255103), not BT.601's (0.299, 0.587, 0.114); the
  ``uint8`` result is rounded to the nearest integer (``imlincomb``), halves away from zero.
- :func:`imresize`: ``imresize(A, scale)`` on a ``double`` image with the default ``'bicubic'`` method
  and antialiasing: Keys' cubic (a = -0.5) stretched by ``1/scale`` when shrinking, ``ceil(scale * n)``
  output pixels, sample positions ``u = x / scale + 0.5 (1 - 1/scale)``, weights normalised per output
  pixel, symmetric boundary (edge pixel repeated: ``[1:n, n:-1:1]`` indexing), rows resized before
  columns when both scales are equal; no rounding (the input is ``double``).
- :func:`fspecial_gaussian`: ``fspecial('gaussian', size, sigma)``.
- :func:`imfilter_replicate`: ``imfilter(A, h, 'replicate')`` (correlation, same size, edge replicated).
- :func:`colon`: the values of MATLAB's ``a:d:b`` (computed from both ends, as MATLAB does).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate, correlate1d

# First row of inv(NTSC matrix): MATLAB rgb2gray's coefficients.
RGB2GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]


def rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an 8-bit RGB image ``(H, W, 3)`` (values 0..255): float64 integer grey levels.

    Example:
        >>> import numpy as np
        >>> rgb2gray(np.array([[[255, 255, 255], [10, 200, 30]]], dtype=np.uint8)).tolist()
        [[255.0, 124.0]]
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb2gray expects (H, W, 3), got {rgb.shape}")
    x = rgb.astype(np.float64)
    y = x[..., 0] * RGB2GRAY[0] + x[..., 1] * RGB2GRAY[1] + x[..., 2] * RGB2GRAY[2]
    # uint8 conversion: round half away from zero (all values are >= 0), saturate.
    return np.clip(np.floor(y + 0.5), 0.0, 255.0)


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize's ``contributions``: ``(weights, indices)``, both ``(out_length, taps)``, 0-based
    indices after the symmetric boundary, taps whose weight is zero for every output removed."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:

        def h(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

        kernel_width = kernel_width / scale
    else:
        h = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    ind = left[:, None] + np.arange(taps)[None, :]
    weights = h(u[:, None] - ind)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric boundary: MATLAB's aux = [1:n, n:-1:1], indexed modulo 2n (1-based)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = aux[np.mod(ind.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """``(out_length, in_length)`` matrix of MATLAB imresize's bicubic contributions along one axis."""
    weights, indices = contributions(in_length, out_length, scale, antialiasing)
    mat = np.zeros((out_length, in_length))
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    np.add.at(mat, (rows, indices.ravel()), weights.ravel())
    return mat


def _resize_axis(img: np.ndarray, axis: int, out_length: int, scale: float) -> np.ndarray:
    """Resize along one axis: for each output, the weighted sum of its taps in tap order (as MATLAB's
    ``imresizemex`` accumulates), one whole-array multiply-add per tap."""
    weights, indices = contributions(img.shape[axis], out_length, scale)
    out = None
    for k in range(weights.shape[1]):
        if axis == 0:
            term = weights[:, k, None] * img[indices[:, k], :]
        else:
            term = img[:, indices[:, k]] * weights[None, :, k]
        out = term if out is None else out + term
    return out


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (bicubic, antialiasing) of a 2-D float64 image; no rounding.

    Example:
        >>> import numpy as np
        >>> imresize(np.full((8, 6), 7.0), 0.5).round(12).tolist()[0]
        [7.0, 7.0, 7.0]
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"imresize expects a 2-D image, got {img.shape}")
    h, w = img.shape
    # equal scales: MATLAB resizes along dimension 1 (rows) first, then dimension 2
    tmp = _resize_axis(img, 0, math.ceil(scale * h), scale)
    return _resize_axis(tmp, 1, math.ceil(scale * w), scale)


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: a normalised ``size x size`` Gaussian."""
    half = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - half
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    g[g < np.finfo(np.float64).eps * g.max()] = 0.0
    return g / g.sum()


def imfilter_replicate(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``imfilter(img, kernel, 'replicate')``: correlation, output the size of ``img``.

    A rank-one kernel (every Gaussian window) is applied as two 1-D passes; others in 2-D.
    """
    u, s, vt = np.linalg.svd(kernel)
    if s[1:].max(initial=0.0) <= 1e-14 * s[0]:
        col = u[:, 0] * math.sqrt(s[0])
        row = vt[0] * math.sqrt(s[0])
        if col.sum() < 0:
            col, row = -col, -row
        tmp = correlate1d(img, col, axis=0, mode="nearest")
        return correlate1d(tmp, row, axis=1, mode="nearest")
    return correlate(img, kernel, mode="nearest")


def colon(a: float, d: float, b: float) -> np.ndarray:
    """The values of MATLAB's ``a:d:b``: the first half counted up from ``a``, the rest down from ``b``,
    and the middle element of an even count ``(a + b) / 2`` (Moler's ``colonop``).

    Example:
        >>> colon(0.2, 0.001, 10.0).size
        9801
    """
    n = math.floor((b - a) / d + 1e-10)
    k = np.arange(n + 1, dtype=np.float64)
    up = a + k * d
    down = b - (n - k) * d
    out = np.where(k < n / 2.0, up, down)
    if n % 2 == 0:
        out[n // 2] = (a + b) / 2.0
    return out
