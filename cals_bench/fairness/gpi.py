"""Group Perceptual Index (GPI) tables: per-group W1 between reference and output feature distributions.

For each feature set (e.g. face embeddings of reference and output images) and grouping:

- ``gpi[g] = W1(P_g^ref, P_g^out)``, the 1-Wasserstein distance between the empirical distribution of the
  group's reference features and that of its output features (Ohayon et al., NeurIPS 2024), computed with
  POT: exact EMD when the grouping's largest group has at most ``gpi_exact_max_n`` samples, normalised
  sliced W1 otherwise (see ``wasserstein``). One method per (feature, grouping), so groups compare.
- ``gpi_sum`` = sum of ``gpi[g]`` over the compared groups (the CALS paper's fairness term as written);
- ``gpi_gap`` = max - min of ``gpi[g]`` over the compared groups (perceptual fairness holds when all GPIs
  are equal), with a stratified-bootstrap interval and a permutation test of "group labels do not matter".

The 1-D variant replaces features by a per-image metric (LPIPS by default): ``gpi_1d[g] = W1(values of g,
pooled values of all compared groups)``. Small groups are computed and flagged, but not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from cals_bench.fairness import clusters as cl
from cals_bench.fairness.bootstrap import (
    bootstrap_indices,
    interval,
    permutation_indices,
    permutation_p_value,
    rng_for,
    row_chunks,
)
from cals_bench.fairness.groups import Grouping, make_grouping
from cals_bench.fairness.settings import AuditInputError, AuditSettings
from cals_bench.fairness.wasserstein import (
    exact_w1,
    exact_w1_rows,
    random_projections,
    sliced_scale,
    sliced_w1,
    sliced_w1_rows,
    w1_1d,
    w1_1d_rows,
)

FeatureSet = tuple[np.ndarray, np.ndarray, Sequence[str]]

GPI_COLUMNS = [
    "kind",
    "feature",
    "grouping",
    "group",
    "n",
    "gpi",
    "gpi_ci_low",
    "gpi_ci_high",
    "gpi_boot_bias",
    "method",
    "small_group",
]

GPI_SUMMARY_COLUMNS = [
    "kind",
    "feature",
    "grouping",
    "method",
    "dim",
    "n_samples",
    "n_dropped",
    "n_missing_attribute",
    "n_groups",
    "n_groups_compared",
    "small_groups",
    "gpi_sum",
    "gpi_sum_ci_low",
    "gpi_sum_ci_high",
    "gpi_gap",
    "gpi_gap_ci_low",
    "gpi_gap_ci_high",
    "worst_group",
    "best_group",
    "p_value",
    "p_adjusted",
    "significant",
    "bootstrap",
    "interval",
    "permutations",
    "projections",
    "gpi_seed",
    "sliced_scale",
    "exact_max_n",
]

KIND_FEATURES = "features"
KIND_METRIC_1D = "metric_1d"


class _Estimator(Protocol):
    method: str

    def point(self, members: np.ndarray) -> float: ...

    def rows(self, idx: np.ndarray) -> np.ndarray: ...


class FeatureW1:
    """W1 between ``ref[members]`` and ``out[members]``: exact EMD or normalised sliced W1."""

    def __init__(self, ref: np.ndarray, out: np.ndarray, method: str, projections: np.ndarray | None) -> None:
        self.ref, self.out, self.method = ref, out, method
        self.projections = projections
        self.scale = sliced_scale(ref.shape[1])
        if method == "sliced":
            assert projections is not None
            self.ref_t = np.ascontiguousarray((ref @ projections).T, dtype=np.float32)
            self.out_t = np.ascontiguousarray((out @ projections).T, dtype=np.float32)

    def point(self, members: np.ndarray) -> float:
        if self.method == "exact":
            return exact_w1(self.ref[members], self.out[members])
        return sliced_w1(self.ref[members], self.out[members], self.projections)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        if self.method == "exact":
            return exact_w1_rows(self.ref, self.out, idx)
        return sliced_w1_rows(self.ref_t, self.out_t, idx) / self.scale


class PooledW1:
    """W1 between ``values[members]`` and a fixed pooled sample (1-D)."""

    method = "1d"

    def __init__(self, values: np.ndarray, pooled: np.ndarray) -> None:
        self.values = values
        self.pooled = pooled
        self.pooled_sorted = np.sort(pooled)

    def point(self, members: np.ndarray) -> float:
        return w1_1d(self.values[members], self.pooled)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        return w1_1d_rows(self.values, idx, self.pooled_sorted)


def _rows_chunked(est: _Estimator, members: np.ndarray, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of ``est`` over ``members`` (resampled with replacement)."""
    m = members.size
    out = np.empty(n_rows, dtype=np.float64)
    for sl in row_chunks(n_rows, m):
        out[sl] = est.rows(members[bootstrap_indices(rng, m, sl.stop - sl.start)])
    return out


def gpi_for_grouping(
    est: _Estimator,
    members: Sequence[np.ndarray],
    groups: Sequence[str],
    settings: AuditSettings,
    key: tuple[str, ...],
    member_codes: Sequence[np.ndarray] | None = None,
) -> tuple[list[dict], dict]:
    """Per-group GPI rows and the (sum, gap, test) summary of one grouping, for any W1 estimator.

    ``members[i]`` are the estimator positions of group ``groups[i]``; ``key`` names the draw for seeding.
    ``member_codes[i]`` (optional) the cluster of each member: intervals then resample clusters and the
    gap test permutes labels between clusters.
    """
    n_boot = settings.n_gpi_bootstrap
    n_perm = settings.n_gpi_permutations
    kind, conf = settings.distance_interval, settings.confidence
    nan = float("nan")
    rows, boots, values, compared, compared_codes, small = [], [], [], [], [], []
    codes_list = member_codes if member_codes is not None else [None] * len(members)
    for group, mem, codes in zip(groups, members, codes_list):
        is_small = mem.size < settings.min_group_size
        value = est.point(mem)
        lo = hi = bias = nan
        boot = np.empty(0)
        if n_boot > 0:
            rng = rng_for(settings.seed, "gpi-boot", *key, group)
            if codes is None:
                boot = _rows_chunked(est, mem, n_boot, rng)
            else:
                boot = cl.resampled_rows(est.rows, cl.ClusterLayout(mem, codes), n_boot, rng)
            lo, hi = interval(kind, value, boot, conf, lower=0.0)
            bias = float(boot.mean() - value)
        rows.append(
            {
                "group": group,
                "n": int(mem.size),
                "gpi": value,
                "gpi_ci_low": lo,
                "gpi_ci_high": hi,
                "gpi_boot_bias": bias,
                "method": est.method,
                "small_group": bool(is_small),
            }
        )
        if is_small:
            small.append(group)
        else:
            compared.append(mem)
            compared_codes.append(codes)
            values.append(value)
            boots.append(boot)
    summary = {
        "method": est.method,
        "n_groups": len(groups),
        "n_groups_compared": len(compared),
        "small_groups": ",".join(small),
        "gpi_sum": nan,
        "gpi_sum_ci_low": nan,
        "gpi_sum_ci_high": nan,
        "gpi_gap": nan,
        "gpi_gap_ci_low": nan,
        "gpi_gap_ci_high": nan,
        "worst_group": "",
        "best_group": "",
        "p_value": nan,
        "p_adjusted": nan,
        "significant": False,
        "bootstrap": n_boot,
        "interval": kind,
        "permutations": n_perm,
    }
    if compared:
        names = [g for g, mem in zip(groups, members) if mem.size >= settings.min_group_size]
        v = np.asarray(values)
        summary.update(
            gpi_sum=float(v.sum()),
            worst_group=names[int(np.argmax(v))],
            best_group=names[int(np.argmin(v))],
        )
        if n_boot > 0:
            stack = np.stack(boots, axis=1)
            summary["gpi_sum_ci_low"], summary["gpi_sum_ci_high"] = interval(
                kind, summary["gpi_sum"], stack.sum(axis=1), conf, lower=0.0
            )
    if len(compared) >= 2:
        v = np.asarray(values)
        summary["gpi_gap"] = float(v.max() - v.min())
        if n_boot > 0:
            stack = np.stack(boots, axis=1)
            gaps = stack.max(axis=1) - stack.min(axis=1)
            summary["gpi_gap_ci_low"], summary["gpi_gap_ci_high"] = interval(
                kind, summary["gpi_gap"], gaps, conf, lower=0.0
            )
        if n_perm > 0:
            rng = rng_for(settings.seed, "gpi-perm", *key)
            if member_codes is None:
                summary["p_value"] = gap_permutation_p(est, compared, n_perm, rng)
            else:
                summary["p_value"] = cluster_gap_permutation_p(est, compared, compared_codes, n_perm, rng)
    return rows, summary


def gap_permutation_p(
    est: _Estimator, compared: Sequence[np.ndarray], n_perm: int, rng: np.random.Generator
) -> float:
    """p-value of the GPI gap under random reassignment of group labels (group sizes kept).

    The observed gap is recomputed with the same row estimator as the null draws, so both carry the same
    rounding.
    """
    pooled = np.concatenate(compared)
    bounds = np.cumsum([0] + [m.size for m in compared])
    observed_rows = [est.rows(pooled[None, bounds[i] : bounds[i + 1]])[0] for i in range(len(compared))]
    observed = max(observed_rows) - min(observed_rows)
    null = np.empty(n_perm, dtype=np.float64)
    n = pooled.size
    for sl in row_chunks(n_perm, n):
        perm = pooled[permutation_indices(rng, n, sl.stop - sl.start)]
        per_group = np.stack(
            [est.rows(perm[:, bounds[i] : bounds[i + 1]]) for i in range(len(compared))], axis=1
        )
        null[sl] = per_group.max(axis=1) - per_group.min(axis=1)
    return permutation_p_value(observed, null)


def cluster_gap_permutation_p(
    est: _Estimator,
    compared: Sequence[np.ndarray],
    codes: Sequence[np.ndarray],
    n_perm: int,
    rng: np.random.Generator,
) -> float:
    """p-value of the GPI gap when group labels are permuted between whole clusters (the number of
    clusters per group kept; a group's sample count varies with the clusters it draws)."""
    observed_rows = [est.rows(m[None, :])[0] for m in compared]
    observed = max(observed_rows) - min(observed_rows)
    layouts = [cl.ClusterLayout(m, c) for m, c in zip(compared, codes)]
    cluster_members = [mem for lay in layouts for mem in lay.members]
    labels = np.concatenate([np.full(lay.n_clusters, g) for g, lay in enumerate(layouts)])
    n_groups = len(compared)
    null = np.empty(n_perm, dtype=np.float64)
    for sl in row_chunks(n_perm, sum(m.size for m in compared)):
        perm = cl.permuted_groups(labels, n_groups, sl.stop - sl.start, rng)
        per_group = np.empty((perm.shape[0], n_groups))
        for g in range(n_groups):
            rows = [np.concatenate([cluster_members[c] for c in np.flatnonzero(p == g)]) for p in perm]
            per_group[:, g] = cl.by_length(est.rows, rows)
        null[sl] = per_group.max(axis=1) - per_group.min(axis=1)
    return permutation_p_value(observed, null)


def _cluster_codes_of(
    grouping: Grouping, members: Sequence[np.ndarray], codes: np.ndarray | None
) -> list[np.ndarray] | None:
    """Cluster codes of each group's members (clusters split by group), or None without clusters."""
    if codes is None:
        return None
    split, _ = cl.split_by_group(codes, grouping.codes)
    return [split[m] for m in members]


def _check_feature_set(name: str, fs: FeatureSet) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        ref, out, ids = fs
    except (TypeError, ValueError) as exc:
        raise AuditInputError(f"feature set {name!r} must be (ref, out, sample_ids)") from exc
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    ids = [str(s) for s in ids]
    if ref.ndim != 2 or ref.shape != out.shape:
        raise AuditInputError(
            f"feature set {name!r}: ref {ref.shape} and out {out.shape} must be equal (n, d)"
        )
    if len(ids) != ref.shape[0]:
        raise AuditInputError(f"feature set {name!r}: {len(ids)} sample ids for {ref.shape[0]} feature rows")
    if len(set(ids)) != len(ids):
        raise AuditInputError(f"feature set {name!r} repeats sample ids")
    return ref, out, ids


def _grouping_members(grouping: Grouping, valid: np.ndarray | None = None) -> list[np.ndarray]:
    keep = np.ones(grouping.codes.size, dtype=bool) if valid is None else valid
    return [np.flatnonzero((grouping.codes == gi) & keep) for gi in range(len(grouping.groups))]


def feature_gpi_tables(
    features: Mapping[str, FeatureSet], attributes: pd.DataFrame, settings: AuditSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GPI rows and summaries for every feature set and every grouping of ``settings.group_by``.

    Feature rows with a non-finite value (e.g. no face found) are dropped and counted in ``n_dropped``.
    """
    rows: list[dict] = []
    summaries: list[dict] = []
    for name in sorted(features):
        ref, out, ids = _check_feature_set(name, features[name])
        ok = np.isfinite(ref).all(axis=1) & np.isfinite(out).all(axis=1)
        ref, out = ref[ok], out[ok]
        ids = [i for i, keep in zip(ids, ok) if keep]
        dim = ref.shape[1]
        projections = random_projections(dim, settings.gpi_projections, settings.gpi_seed)
        codes = None
        if settings.cluster_by:
            codes = cl.cluster_codes(ids, attributes, settings.cluster_by)[0]
        for spec in settings.group_by:
            grouping = make_grouping(spec, ids, attributes)
            members = _grouping_members(grouping)
            largest = max((m.size for m in members), default=0)
            method = "exact" if largest <= settings.gpi_exact_max_n else "sliced"
            est = FeatureW1(ref, out, method, projections if method == "sliced" else None)
            g_rows, summary = gpi_for_grouping(
                est,
                members,
                grouping.groups,
                settings,
                (KIND_FEATURES, name, grouping.name),
                _cluster_codes_of(grouping, members, codes),
            )
            head = {"kind": KIND_FEATURES, "feature": name, "grouping": grouping.name}
            rows.extend({**head, **r} for r in g_rows)
            summaries.append(
                {
                    **head,
                    **summary,
                    "dim": dim,
                    "n_samples": int(ok.sum()),
                    "n_dropped": int((~ok).sum()),
                    "n_missing_attribute": grouping.n_missing,
                    "projections": settings.gpi_projections if method == "sliced" else 0,
                    "gpi_seed": settings.gpi_seed,
                    "sliced_scale": sliced_scale(dim) if method == "sliced" else float("nan"),
                    "exact_max_n": settings.gpi_exact_max_n,
                }
            )
    return _frames(rows, summaries)


def metric_gpi_tables(
    wide: pd.DataFrame,
    groupings: Sequence[Grouping],
    metric: str,
    settings: AuditSettings,
    clusters: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1-D GPI on a per-image metric: per group, W1 between its values and the pooled compared values.

    The pool holds the valid values of every compared (not small) group, so it is the same under the
    permutation null; with fewer than two compared groups (no gap, no test) the pool is every labelled
    valid value.
    """
    rows: list[dict] = []
    summaries: list[dict] = []
    col = wide[metric].to_numpy(dtype=np.float64)
    valid = ~np.isnan(col)
    for grouping in groupings:
        members = _grouping_members(grouping, valid)
        compared = [m for m in members if m.size >= settings.min_group_size]
        if len(compared) >= 2:
            pool_members = np.concatenate(compared)
        else:
            pool_members = np.flatnonzero(valid & (grouping.codes >= 0))
        head = {"kind": KIND_METRIC_1D, "feature": metric, "grouping": grouping.name}
        summary_extra = {
            "dim": 1,
            "n_samples": int(pool_members.size),
            "n_dropped": int((~valid).sum()),
            "n_missing_attribute": grouping.n_missing,
            "projections": 0,
            "gpi_seed": settings.gpi_seed,
            "sliced_scale": float("nan"),
            "exact_max_n": settings.gpi_exact_max_n,
        }
        if pool_members.size == 0:
            continue
        # Empty groups (all values NaN) have no distribution: listed with n = 0 and NaN.
        nonempty = [(g, m) for g, m in zip(grouping.groups, members) if m.size > 0]
        est = PooledW1(col, col[pool_members])
        g_rows, summary = gpi_for_grouping(
            est,
            [m for _, m in nonempty],
            [g for g, _ in nonempty],
            settings,
            (KIND_METRIC_1D, metric, grouping.name),
            _cluster_codes_of(grouping, [m for _, m in nonempty], clusters),
        )
        for g, m in zip(grouping.groups, members):
            if m.size == 0:
                g_rows.append(
                    {
                        "group": g,
                        "n": 0,
                        "gpi": np.nan,
                        "gpi_ci_low": np.nan,
                        "gpi_ci_high": np.nan,
                        "gpi_boot_bias": np.nan,
                        "method": "1d",
                        "small_group": True,
                    }
                )
                summary["small_groups"] = ",".join(filter(None, [summary["small_groups"], g]))
        summary["n_groups"] = len(grouping.groups)
        g_rows.sort(key=lambda r: grouping.groups.index(r["group"]))
        rows.extend({**head, **r} for r in g_rows)
        summaries.append({**head, **summary, **summary_extra})
    return _frames(rows, summaries)


def _frames(rows: list[dict], summaries: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(rows, columns=GPI_COLUMNS), pd.DataFrame(summaries, columns=GPI_SUMMARY_COLUMNS)
