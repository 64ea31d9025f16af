"""1-Wasserstein distances between empirical distributions: exact (POT's EMD), sliced, and 1-D.

Point estimates call POT (``ot.emd2`` on a Euclidean ``ot.dist`` cost; ``ot.sliced_wasserstein_distance``
with ``p=1``) and scipy (``scipy.stats.wasserstein_distance``). The ``*_rows`` functions compute the same
quantities for many index sets at once (bootstrap resamples, label permutations); tests check them against
the POT/scipy point estimates.

Sliced values are *normalised*: POT's sliced W1 averages ``W1`` of 1-D projections on random unit
directions, which for a translation by ``delta`` equals ``|delta| * E|theta_1|`` (about
``|delta| * sqrt(2 / (pi d))``). Dividing by ``c_d = E|theta_1| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))``
makes it equal ``|delta|`` for translations, as the exact W1 does, and a lower bound of W1 in general
(each projection is 1-Lipschitz), so exact and sliced GPIs are on the same scale.
"""

from __future__ import annotations

import math

import numpy as np
import ot
from scipy.special import gammaln

from cals_bench.fairness.bootstrap import row_chunks


def sliced_scale(d: int) -> float:
    """``E|<theta, e_1>|`` for ``theta`` uniform on the unit sphere of R^d (1 for d = 1)."""
    return float(math.exp(gammaln(d / 2.0) - gammaln((d + 1) / 2.0)) / math.sqrt(math.pi))


def random_projections(d: int, n_projections: int, seed: int) -> np.ndarray:
    """``(d, n_projections)`` unit directions drawn by POT from ``RandomState(seed)``.

    A private RandomState leaves numpy's global random state untouched.
    """
    return np.asarray(ot.sliced.get_random_projections(d, n_projections, seed=np.random.RandomState(seed)))


def _emd2(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    n, m = cost.shape
    return float(ot.emd2(a, b, cost, numItermax=max(100_000, 50 * n * m)))


def exact_w1(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W1 between the uniform empirical distributions of the rows of ``x`` (n, d) and ``y`` (m, d)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    return _emd2(a, b, ot.dist(x, y, metric="euclidean"))


def sliced_w1(x: np.ndarray, y: np.ndarray, projections: np.ndarray, *, normalise: bool = True) -> float:
    """POT's sliced W1 (p = 1) over the given ``(d, K)`` directions, divided by ``c_d`` when ``normalise``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    raw = float(ot.sliced_wasserstein_distance(x, y, projections=projections, p=1))
    return raw / sliced_scale(x.shape[1]) if normalise else raw


def w1_1d(x: np.ndarray, y: np.ndarray) -> float:
    """W1 between two 1-D samples (scipy)."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)))


def exact_w1_rows(ref: np.ndarray, out: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Exact W1 between ``ref[row]`` and ``out[row]`` for each row of ``idx`` (R, m).

    Repeated indices (bootstrap draws) become weights: a sample drawn k times has mass k/m on both sides,
    which equals the transport problem on the duplicated points but is smaller. One EMD per row.
    """
    res = np.empty(idx.shape[0], dtype=np.float64)
    m = idx.shape[1]
    for r, row in enumerate(idx):
        uniq, counts = np.unique(row, return_counts=True)
        w = counts / m
        res[r] = _emd2(w, w, ot.dist(ref[uniq], out[uniq], metric="euclidean"))
    return res


def sliced_w1_rows(ref_proj_t: np.ndarray, out_proj_t: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Raw sliced W1 (mean over projections of 1-D W1) for each row of ``idx`` (R, m).

    ``ref_proj_t`` and ``out_proj_t`` are the projected features transposed, ``(K, n)``. Both sides of a row
    have m equally weighted points, so each 1-D W1 is the mean absolute difference of the sorted values.
    Pass float32 projections for speed (sorting dominates and float32 sorts about 3x faster); the result
    then carries float32 rounding, about 1e-6 relative.
    """
    k = ref_proj_t.shape[0]
    n_rows, m = idx.shape
    res = np.empty(n_rows, dtype=np.float64)
    for sl in row_chunks(n_rows, k * m):
        sub = idx[sl]
        r = ref_proj_t[:, sub]  # (K, rows, m) copy, sorted in place
        o = out_proj_t[:, sub]
        r.sort(axis=-1)
        o.sort(axis=-1)
        np.subtract(r, o, out=r)
        np.abs(r, out=r)
        res[sl] = r.sum(axis=-1, dtype=np.float64).sum(axis=0) / (k * m)
    return res


def quantile_grid(m: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged quantile grid of two uniform empirical distributions of sizes m and n.

    Returns ``(widths, ia, ib)``: on the t-th interval of the merged grid of levels ``{i/m} U {j/n}``, the
    quantile functions equal ``sorted_a[ia[t]]`` and ``sorted_b[ib[t]]``; so
    ``W1 = sum_t widths[t] * |sorted_a[ia[t]] - sorted_b[ib[t]]|``. Integer arithmetic avoids float ties.
    """
    lcm = math.lcm(m, n)
    levels = np.union1d(
        np.arange(1, m + 1, dtype=np.int64) * (lcm // m), np.arange(1, n + 1, dtype=np.int64) * (lcm // n)
    )
    widths = np.diff(np.concatenate(([0], levels))) / lcm
    ia = -(-levels // (lcm // m)) - 1
    ib = -(-levels // (lcm // n)) - 1
    return widths, ia, ib


def w1_1d_rows(values: np.ndarray, idx: np.ndarray, pooled_sorted: np.ndarray) -> np.ndarray:
    """W1 between ``values[row]`` and the fixed sample ``pooled_sorted`` (sorted) for each row of ``idx``."""
    n_rows, m = idx.shape
    widths, ia, ib = quantile_grid(m, pooled_sorted.size)
    target = pooled_sorted[ib]
    res = np.empty(n_rows, dtype=np.float64)
    for sl in row_chunks(n_rows, max(m, widths.size)):
        srt = np.sort(values[idx[sl]], axis=1)
        res[sl] = np.abs(srt[:, ia] - target) @ widths
    return res
