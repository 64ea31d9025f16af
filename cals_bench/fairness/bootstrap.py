"""Seeded resampling: bootstrap and permutation index matrices, percentile intervals, permutation p-values.

Every statistic is resampled through an index matrix (one row per resample) and reduced along rows with
numpy, never through a Python loop over resamples. Each draw gets its own generator derived from the
audit seed and a key naming what is resampled (grouping, group, metric), so a number does not change when
another metric or group is added to the audit.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

import numpy as np

# Largest number of index entries (rows x columns) materialised at once; chunks keep memory near 100 MB.
CHUNK_ENTRIES = 1 << 22


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator determined by ``seed`` and the string keys (CRC32 of each key joins the entropy)."""
    entropy = [int(seed)] + [zlib.crc32(k.encode("utf-8")) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def row_chunks(n_rows: int, row_len: int, budget: int = CHUNK_ENTRIES) -> Iterator[slice]:
    """Slices of ``range(n_rows)`` such that each chunk holds at most ``budget`` entries (at least 1 row)."""
    step = max(1, budget // max(1, row_len))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def bootstrap_indices(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """``(n_resamples, n)`` indices drawn uniformly with replacement from ``range(n)``."""
    return rng.integers(0, n, size=(n_resamples, n))


def permutation_indices(rng: np.random.Generator, n: int, n_permutations: int) -> np.ndarray:
    """``(n_permutations, n)``: each row a uniformly random permutation of ``range(n)``."""
    base = np.broadcast_to(np.arange(n), (n_permutations, n))
    return rng.permuted(base, axis=1)


def resampled_statistic(
    values: np.ndarray,
    n_resamples: int,
    rng: np.random.Generator,
    statistic: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Bootstrap distribution of ``statistic`` (reduces axis 1 of a ``(rows, n)`` array) over ``values``."""
    n = values.shape[0]
    out = np.empty(n_resamples, dtype=np.float64)
    for sl in row_chunks(n_resamples, n):
        idx = bootstrap_indices(rng, n, sl.stop - sl.start)
        out[sl] = statistic(values[idx])
    return out


def bootstrap_mean_median(
    values: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap distributions of the mean and the median, from the same index matrix."""
    n = values.shape[0]
    means = np.empty(n_resamples, dtype=np.float64)
    medians = np.empty(n_resamples, dtype=np.float64)
    for sl in row_chunks(n_resamples, n):
        sample = values[bootstrap_indices(rng, n, sl.stop - sl.start)]
        means[sl] = sample.mean(axis=1)
        medians[sl] = np.median(sample, axis=1)
    return means, medians


def percentile_interval(distribution: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval ``(q_{(1-c)/2}, q_{(1+c)/2})``; NaN when the distribution is empty."""
    dist = np.asarray(distribution, dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(dist, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(lo), float(hi)


def basic_interval(
    estimate: float,
    distribution: np.ndarray,
    confidence: float,
    lower: float | None = None,
    upper: float | None = None,
) -> tuple[float, float]:
    """Basic (reverse-percentile) interval ``(2 t - q_{(1+c)/2}, 2 t - q_{(1-c)/2})``, clipped to the range.

    Davison & Hinkley (1997), eq. 5.6. Used for statistics whose plug-in estimate is biased upwards by
    sampling noise (Wasserstein distances, max - min gaps): the bootstrap distribution then sits above the
    estimate by about the estimate's own bias, and reflecting it about the estimate corrects that shift,
    where a percentile interval would move further away from the true value.
    """
    lo, hi = percentile_interval(distribution, confidence)
    if not (np.isfinite(estimate) and np.isfinite(lo)):
        return float("nan"), float("nan")
    a, b = 2.0 * estimate - hi, 2.0 * estimate - lo
    if lower is not None:
        a, b = max(a, lower), max(b, lower)
    if upper is not None:
        a, b = min(a, upper), min(b, upper)
    return float(a), float(b)


def interval(
    kind: str,
    estimate: float,
    distribution: np.ndarray,
    confidence: float,
    lower: float | None = None,
    upper: float | None = None,
) -> tuple[float, float]:
    """``basic_interval`` or ``percentile_interval`` by name (``"basic"`` / ``"percentile"``)."""
    if kind == "basic":
        return basic_interval(estimate, distribution, confidence, lower, upper)
    if kind == "percentile":
        return percentile_interval(distribution, confidence)
    raise ValueError(f"unknown interval kind {kind!r}")


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p-value ``(1 + #{null >= observed}) / (1 + P)`` (Phipson & Smyth 2010: never zero).

    Null values within a relative 1e-12 of ``observed`` count as ties (floating-point sums of the same
    values in another order), so the test is never anti-conservative through round-off.
    """
    null = np.asarray(null, dtype=np.float64)
    if null.size == 0 or not np.isfinite(observed):
        return float("nan")
    tol = 1e-12 * max(1.0, abs(observed))
    return float((1 + np.count_nonzero(null >= observed - tol)) / (1 + null.size))
