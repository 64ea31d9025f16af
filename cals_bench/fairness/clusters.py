"""Cluster resampling (``cluster_by``): intervals that resample clusters and tests that permute clusters.

Samples that share a cluster (several X-rays of one patient) are not independent: a bootstrap that
resamples images treats them as if they were, and its intervals are too narrow (measured in
docs/fairness.md: 95% intervals cover about half the time when a patient effect dominates). With
``cluster_by`` set, every interval of the audit resamples whole clusters, with replacement, within each
group (the cluster bootstrap, Davison & Hinkley 1997, section 3.8, "resample clusters, keep their
contents"), and every permutation test reassigns group labels to whole clusters (a cluster permutation
test: under "group labels do not matter" the clusters' labels are exchangeable, their members' are not).

Clusters are defined within a grouping: a cluster whose samples fall in two groups (a patient whose
images straddle an age band) is split by group, each part a cluster of its own, and the audit says how many
were split. A sample without a cluster value is a cluster of its own.

Exactness: a resample is the concatenation of the drawn clusters' samples; means are ratios of sums
(``sum_c k_c S_c / sum_c k_c n_c`` for draw multiplicities ``k_c``), medians the median of that
concatenation (computed from the multiplicities, no copying), and W1-type statistics take the
concatenated index rows (grouped by length so each length is one vectorised call). With every cluster a
single sample, the draws are the plain bootstrap's draws (same generator calls), so the numbers equal the
unclustered audit's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cals_bench.fairness.bootstrap import permutation_p_value, row_chunks


def cluster_codes(
    sample_ids: Sequence[str], attributes: pd.DataFrame, cluster_by: str
) -> tuple[np.ndarray, int]:
    """Integer cluster code per sample (same code = same cluster) and the number of samples without a value.

    A sample with no value (absent row, NaN, None or empty string) gets a code of its own.
    """
    from cals_bench.fairness.settings import AuditInputError

    if cluster_by not in attributes.columns:
        raise AuditInputError(
            f"cluster_by {cluster_by!r} is not an attribute column; the attribute table has "
            f"{list(attributes.columns)}"
        )
    values = attributes.reindex([str(s) for s in sample_ids])[cluster_by].tolist()
    codes = np.empty(len(values), dtype=np.int64)
    seen: dict[str, int] = {}
    n_missing = 0
    for i, v in enumerate(values):
        missing = v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""
        if missing:
            n_missing += 1
            codes[i] = -1 - i  # unique negative code: a cluster of its own
        else:
            codes[i] = seen.setdefault(str(v).strip(), len(seen))
    return codes, n_missing


def split_by_group(codes: np.ndarray, group_codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes of (cluster, group) pairs, and how many clusters were split across more than one group.

    Only samples with a group (``group_codes >= 0``) count towards a split.
    """
    pairs = codes.astype(np.int64) * 1_000_003 + group_codes.astype(np.int64)
    _, new = np.unique(pairs, return_inverse=True)
    labelled = group_codes >= 0
    per_cluster = pd.Series(group_codes[labelled]).groupby(codes[labelled]).nunique()
    return new.astype(np.int64), int((per_cluster > 1).sum())


class ClusterLayout:
    """The clusters of one set of positions: ``members[c]`` are the positions of cluster ``c``.

    ``positions`` are indices into whatever array the statistic reads (values, feature rows); ``codes`` the
    cluster code of each position. Clusters keep the order of first appearance.
    """

    def __init__(self, positions: np.ndarray, codes: np.ndarray) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        codes = np.asarray(codes)
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # clusters in order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        self.cluster_of = rank[inverse]  # cluster index of each position
        self.n_clusters = order.size
        self.positions = positions
        self.members = [positions[self.cluster_of == c] for c in range(self.n_clusters)]
        self.sizes = np.array([m.size for m in self.members], dtype=np.int64)

    @property
    def all_singletons(self) -> bool:
        return bool(np.all(self.sizes == 1))

    def draw(self, rng: np.random.Generator, n_rows: int) -> np.ndarray:
        """``(n_rows, n_clusters)`` cluster indices drawn with replacement (the plain bootstrap's call)."""
        return rng.integers(0, self.n_clusters, size=(n_rows, self.n_clusters))

    def multiplicities(self, draws: np.ndarray) -> np.ndarray:
        """``(rows, n_clusters)`` counts of each cluster in each row of ``draws``."""
        rows = draws.shape[0]
        out = np.zeros((rows, self.n_clusters), dtype=np.int64)
        np.add.at(out, (np.repeat(np.arange(rows), draws.shape[1]), draws.ravel()), 1)
        return out

    def expand(self, draws: np.ndarray) -> list[np.ndarray]:
        """Each row of cluster draws as the concatenated positions of its clusters (lengths vary)."""
        return [np.concatenate([self.members[c] for c in row]) for row in draws]


def bootstrap_mean_median(
    values: np.ndarray, layout: ClusterLayout, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-bootstrap distributions of the mean and the median of ``values[layout.positions]``.

    ``values`` is indexed by the layout's positions. Mean: ``sum_c k_c S_c / sum_c k_c n_c``. Median: the
    median (numpy's: the average of the two middle order statistics) of the resample the multiplicities
    describe, from the sorted values and cumulative weights.
    """
    vals = values[layout.positions]
    sums = np.array([values[m].sum() for m in layout.members], dtype=np.float64)
    order = np.argsort(vals, kind="stable")
    sorted_vals = vals[order]
    cluster_sorted = layout.cluster_of[order]
    means = np.empty(n_resamples, dtype=np.float64)
    medians = np.empty(n_resamples, dtype=np.float64)
    for sl in row_chunks(n_resamples, max(layout.n_clusters, vals.size)):
        k = layout.multiplicities(layout.draw(rng, sl.stop - sl.start))
        total = k @ layout.sizes
        means[sl] = (k @ sums) / total
        weights = k[:, cluster_sorted]  # multiplicity of each sorted value
        cum = np.cumsum(weights, axis=1)
        lo_pos = (total - 1) // 2
        hi_pos = total // 2
        lo = (cum > lo_pos[:, None]).argmax(axis=1)
        hi = (cum > hi_pos[:, None]).argmax(axis=1)
        medians[sl] = 0.5 * (sorted_vals[lo] + sorted_vals[hi])
    return means, medians


def resampled_rows(
    statistic: Callable[[np.ndarray], np.ndarray],
    layout: ClusterLayout,
    n_resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Cluster-bootstrap distribution of a row statistic (reduces ``(rows, m)`` position matrices).

    Rows of equal length go to ``statistic`` together, so each distinct resample size is one call.
    """
    out = np.empty(n_resamples, dtype=np.float64)
    for sl in row_chunks(n_resamples, max(layout.n_clusters, layout.positions.size)):
        rows = layout.expand(layout.draw(rng, sl.stop - sl.start))
        out[sl] = by_length(statistic, rows)
    return out


def by_length(statistic: Callable[[np.ndarray], np.ndarray], rows: Sequence[np.ndarray]) -> np.ndarray:
    """``statistic`` of each variable-length index row, batching rows of equal length."""
    out = np.empty(len(rows), dtype=np.float64)
    lengths = np.array([r.size for r in rows])
    for length in np.unique(lengths):
        which = np.flatnonzero(lengths == length)
        out[which] = statistic(np.stack([rows[i] for i in which]))
    return out


def permuted_groups(
    cluster_labels: np.ndarray, n_groups: int, n_permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n_permutations, n_clusters)`` group labels of the clusters, permuted (group counts kept)."""
    base = np.broadcast_to(cluster_labels, (n_permutations, cluster_labels.size))
    return rng.permuted(base, axis=1)


def gap_permutation_test(
    values: Sequence[np.ndarray],
    clusters: Sequence[np.ndarray],
    n_permutations: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """(gap, p) of ``max - min`` of group means, permuting group labels between whole clusters.

    ``values[g]`` are group g's values and ``clusters[g]`` their cluster codes (a cluster lies in one
    group). Under the null the clusters' labels are exchangeable; each permutation keeps the number of
    clusters per group (so the number of samples per group varies with the clusters drawn).
    """
    sums, sizes, labels = [], [], []
    for g, (v, c) in enumerate(zip(values, clusters)):
        s = pd.Series(v).groupby(c, sort=False)
        sums.append(s.sum().to_numpy())
        sizes.append(s.size().to_numpy())
        labels.append(np.full(sums[-1].size, g))
    sums_a, sizes_a, labels_a = np.concatenate(sums), np.concatenate(sizes), np.concatenate(labels)
    n_groups = len(values)
    obs = np.array([sums_a[labels_a == g].sum() / sizes_a[labels_a == g].sum() for g in range(n_groups)])
    observed = float(obs.max() - obs.min())
    if n_permutations == 0:
        return observed, float("nan")
    null = np.empty(n_permutations, dtype=np.float64)
    for sl in row_chunks(n_permutations, labels_a.size * n_groups):
        perm = permuted_groups(labels_a, n_groups, sl.stop - sl.start, rng)
        means = np.stack([((perm == g) @ sums_a) / ((perm == g) @ sizes_a) for g in range(n_groups)], axis=1)
        null[sl] = means.max(axis=1) - means.min(axis=1)
    return observed, permutation_p_value(observed, null)


def cluster_means(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Mean of ``values`` per cluster (order of first appearance)."""
    return pd.Series(values).groupby(codes, sort=False).mean().to_numpy()
