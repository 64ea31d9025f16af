"""Significance tests: across groups for one model, between two models on the same samples, and Holm.

Across groups (per grouping and metric, over the groups that are not small): Kruskal-Wallis H test
(scipy) and a permutation test of the gap ``max - min`` of group means (labels permuted across samples,
group sizes kept). Between two models scored on the same samples (``compare``): the paired Wilcoxon
signed-rank test (scipy) and a paired bootstrap of the mean difference, overall and per group.
Every family of p-values is corrected with Holm's step-down procedure (implemented here), and the output
names the correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cals_bench.fairness import clusters as cl
from cals_bench.fairness.bootstrap import (
    percentile_interval,
    permutation_indices,
    permutation_p_value,
    resampled_statistic,
    rng_for,
    row_chunks,
)
from cals_bench.fairness.frame import wide_records
from cals_bench.fairness.groups import ALL, OVERALL, Grouping, check_attributes, make_grouping
from cals_bench.fairness.settings import AuditInputError, AuditSettings

TEST_COLUMNS = [
    "family",
    "test",
    "grouping",
    "target",
    "statistic",
    "p_value",
    "p_adjusted",
    "significant",
    "correction",
    "n",
    "n_groups",
    "resamples",
    "note",
]

COMPARE_COLUMNS = [
    "metric",
    "grouping",
    "group",
    "higher_is_better",
    "label_a",
    "label_b",
    "n_pairs",
    "n_unpaired",
    "small_group",
    "mean_a",
    "mean_b",
    "mean_diff",
    "diff_ci_low",
    "diff_ci_high",
    "p_bootstrap",
    "p_bootstrap_adjusted",
    "wilcoxon_statistic",
    "p_wilcoxon",
    "p_wilcoxon_adjusted",
    "correction",
    "significant_wilcoxon",
    "significant_bootstrap",
    "better",
    "note",
]

FAMILY_KRUSKAL = "kruskal_wallis"
FAMILY_GAP = "gap_permutation"


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and are not in the family.

    With the m finite p-values sorted ascending, ``p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``;
    rejecting ``p_adj <= alpha`` controls the family-wise error rate at alpha under any dependence.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return out
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def adjust_p_values(p_values: Sequence[float] | np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values for ``method`` in {"holm", "none"}."""
    if method == "holm":
        return holm(p_values)
    if method == "none":
        return np.asarray(p_values, dtype=np.float64).copy()
    raise ValueError(f"unknown correction {method!r}")


def apply_correction(tests: pd.DataFrame, settings: AuditSettings) -> pd.DataFrame:
    """Fill ``p_adjusted``, ``significant`` and ``correction``, correcting within each ``family``."""
    out = tests.copy()
    out["p_adjusted"] = np.nan
    for _, idx in out.groupby("family", sort=False).groups.items():
        out.loc[idx, "p_adjusted"] = adjust_p_values(
            out.loc[idx, "p_value"].to_numpy(dtype=float), settings.correction
        )
    out["significant"] = (out["p_adjusted"] <= settings.alpha).fillna(False).astype(bool)
    out["correction"] = settings.correction
    return out


def gap_permutation_test(
    values: Sequence[np.ndarray], n_permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(gap, p): ``gap = max - min`` of the group means; p from ``n_permutations`` label permutations."""
    pooled = np.concatenate(values).astype(np.float64)
    sizes = np.array([v.size for v in values])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    obs_means = np.add.reduceat(pooled[None, :], starts, axis=1)[0] / sizes
    observed = float(obs_means.max() - obs_means.min())
    if n_permutations == 0:
        return observed, float("nan")
    null = np.empty(n_permutations, dtype=np.float64)
    n = pooled.size
    for sl in row_chunks(n_permutations, n):
        perm = pooled[permutation_indices(rng, n, sl.stop - sl.start)]
        means = np.add.reduceat(perm, starts, axis=1) / sizes
        null[sl] = means.max(axis=1) - means.min(axis=1)
    return observed, permutation_p_value(observed, null)


def kruskal_test(values: Sequence[np.ndarray]) -> tuple[float, float, str]:
    """(H, p, note) of the Kruskal-Wallis test; NaN with a note when it is undefined."""
    try:
        res = stats.kruskal(*values)
    except ValueError as exc:  # e.g. all values identical
        return float("nan"), float("nan"), str(exc)
    return float(res.statistic), float(res.pvalue), ""


def _test_row(family, test, grouping, target, statistic, p, n, n_groups, resamples, note) -> dict:
    return {
        "family": family,
        "test": test,
        "grouping": grouping,
        "target": target,
        "statistic": statistic,
        "p_value": p,
        "p_adjusted": np.nan,
        "significant": False,
        "correction": "",
        "n": int(n),
        "n_groups": int(n_groups),
        "resamples": int(resamples),
        "note": note,
    }


def across_group_tests(
    wide: pd.DataFrame,
    groupings: Sequence[Grouping],
    settings: AuditSettings,
    clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """Kruskal-Wallis and gap-permutation rows for every (grouping, metric), uncorrected.

    Only groups with at least ``min_group_size`` valid values take part; with fewer than two such groups
    the row is kept with NaN and a note. With ``clusters`` (cluster code per row of ``wide``), the gap test
    permutes group labels between whole clusters and Kruskal-Wallis ranks the cluster means (one value per
    cluster, so the observations it assumes independent are).
    """
    rows: list[dict] = []
    for grouping in groupings:
        codes_g = None
        if clusters is not None:
            codes_g, _ = cl.split_by_group(clusters, grouping.codes)
        for metric in wide.columns:
            col = wide[metric].to_numpy(dtype=np.float64)
            valid = ~np.isnan(col)
            masks = [(grouping.codes == gi) & valid for gi in range(len(grouping.groups))]
            masks = [m for m in masks if m.sum() >= settings.min_group_size]
            vals = [col[m] for m in masks]
            n = sum(v.size for v in vals)
            if len(vals) < 2:
                note = f"fewer than 2 groups with >= {settings.min_group_size} values"
                rows.append(
                    _test_row(
                        FAMILY_KRUSKAL,
                        "kruskal",
                        grouping.name,
                        metric,
                        np.nan,
                        np.nan,
                        n,
                        len(vals),
                        0,
                        note,
                    )
                )
                rows.append(
                    _test_row(
                        FAMILY_GAP,
                        "permutation",
                        grouping.name,
                        metric,
                        np.nan,
                        np.nan,
                        n,
                        len(vals),
                        0,
                        note,
                    )
                )
                continue
            rng = rng_for(settings.seed, "gap-perm", grouping.name, metric)
            if codes_g is None:
                h, p, note = kruskal_test(vals)
                gap, p_gap = gap_permutation_test(vals, settings.permutations, rng)
                gap_note = ""
            else:
                member_codes = [codes_g[m] for m in masks]
                h, p, note = kruskal_test([cl.cluster_means(v, c) for v, c in zip(vals, member_codes)])
                note = "; ".join(filter(None, [f"on cluster means ({settings.cluster_by})", note]))
                gap, p_gap = cl.gap_permutation_test(vals, member_codes, settings.permutations, rng)
                gap_note = f"cluster permutation ({settings.cluster_by})"
            rows.append(
                _test_row(FAMILY_KRUSKAL, "kruskal", grouping.name, metric, h, p, n, len(vals), 0, note)
            )
            rows.append(
                _test_row(
                    FAMILY_GAP,
                    "permutation",
                    grouping.name,
                    metric,
                    gap,
                    p_gap,
                    n,
                    len(vals),
                    settings.permutations,
                    gap_note,
                )
            )
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _paired_row(d, a, b, metric, grouping, group, hib, labels, n_unpaired, settings, codes=None) -> dict:
    nan = float("nan")
    n = d.size
    # min_group_size guards comparisons between groups; the whole set is always tested (low power is
    # flagged in the note instead).
    small = n < settings.min_group_size and grouping != OVERALL
    row = {
        "metric": metric,
        "grouping": grouping,
        "group": group,
        "higher_is_better": bool(hib),
        "label_a": labels[0],
        "label_b": labels[1],
        "n_pairs": int(n),
        "n_unpaired": int(n_unpaired),
        "small_group": bool(small),
        "mean_a": float(a.mean()) if n else nan,
        "mean_b": float(b.mean()) if n else nan,
        "mean_diff": float(d.mean()) if n else nan,
        "diff_ci_low": nan,
        "diff_ci_high": nan,
        "p_bootstrap": nan,
        "p_bootstrap_adjusted": nan,
        "wilcoxon_statistic": nan,
        "p_wilcoxon": nan,
        "p_wilcoxon_adjusted": nan,
        "correction": settings.correction,
        "significant_wilcoxon": False,
        "significant_bootstrap": False,
        "better": "",
        "note": "",
    }
    if n == 0:
        row["note"] = "no paired values"
        return row
    diff = row["mean_diff"]
    row["better"] = "tie" if diff == 0 else (labels[0] if (diff > 0) == bool(hib) else labels[1])
    if settings.bootstrap > 0:
        rng = rng_for(settings.seed, "compare", metric, grouping, group)
        if codes is None:
            boot = resampled_statistic(d, settings.bootstrap, rng, lambda x: x.mean(axis=1))
        else:  # resample clusters of pairs
            boot = cl.bootstrap_mean_median(
                d, cl.ClusterLayout(np.arange(n), codes), settings.bootstrap, rng
            )[0]
        row["diff_ci_low"], row["diff_ci_high"] = percentile_interval(boot, settings.confidence)
        if not small:
            below = (1 + np.count_nonzero(boot <= 0)) / (1 + boot.size)
            above = (1 + np.count_nonzero(boot >= 0)) / (1 + boot.size)
            row["p_bootstrap"] = float(min(1.0, 2.0 * min(below, above)))
    if small:
        row["note"] = f"small group (< {settings.min_group_size} pairs): not tested"
        return row
    if np.all(d == 0):
        row["wilcoxon_statistic"], row["p_wilcoxon"] = 0.0, 1.0
        row["note"] = "all paired differences are zero"
    elif codes is not None:  # one paired difference per cluster: its mean
        dc = cl.cluster_means(d, codes)
        if np.all(dc == 0):
            row["wilcoxon_statistic"], row["p_wilcoxon"] = 0.0, 1.0
        else:
            res = stats.wilcoxon(dc)
            row["wilcoxon_statistic"], row["p_wilcoxon"] = float(res.statistic), float(res.pvalue)
        row["note"] = f"clusters ({settings.cluster_by}): {dc.size}; Wilcoxon on cluster mean differences"
    else:
        res = stats.wilcoxon(d)
        row["wilcoxon_statistic"], row["p_wilcoxon"] = float(res.statistic), float(res.pvalue)
    if grouping == OVERALL:
        _note_method_and_power(row, d, settings)
    return row


def wilcoxon_method(d: np.ndarray) -> str:
    """The null distribution ``scipy.stats.wilcoxon(d)`` (``method="auto"``) uses for these differences:
    exact up to 50 pairs without zeros or tied magnitudes, else a permutation (<= 13 pairs) or the normal
    approximation."""
    d = np.asarray(d, dtype=np.float64)
    nonzero = d[d != 0]
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if d.size > 50:
        return "normal approximation"
    if not ties and nonzero.size == d.size:
        return "exact"
    return "exact permutation (zeros or ties)" if d.size <= 13 else "normal approximation (zeros or ties)"


def _note_method_and_power(row: dict, d: np.ndarray, settings: AuditSettings) -> None:
    """Say how the overall row was tested, and flag low power below ``min_group_size`` pairs."""
    notes = [row["note"]] if row["note"] else []
    if np.isfinite(row["p_wilcoxon"]) and not row["note"].startswith("clusters"):
        notes.append(f"Wilcoxon {wilcoxon_method(d)}, n = {d.size} pairs")
    if d.size < settings.min_group_size:
        notes.append(
            f"low power: {d.size} pairs (< {settings.min_group_size}), so a non-significant difference is not "
            "evidence that the runs are equivalent"
        )
    row["note"] = "; ".join(notes)


def compare(
    records_a: pd.DataFrame,
    records_b: pd.DataFrame,
    attributes: pd.DataFrame,
    settings: AuditSettings,
    *,
    directions: Mapping[str, bool],
    label_a: str = "a",
    label_b: str = "b",
) -> pd.DataFrame:
    """Paired comparison of two models scored on the same samples, overall and per group.

    For each metric, pairs are the samples where both models have a valid value (the others are counted in
    ``n_unpaired``). ``mean_diff = mean(a - b)``; its percentile-bootstrap interval resamples pairs (whole
    clusters of pairs with ``settings.cluster_by``, and Wilcoxon then ranks the cluster mean differences);
    ``p_bootstrap = min(1, 2 min(P*(d <= 0), P*(d >= 0)))`` with the bootstrap proportions smoothed as
    ``(1 + k) / (1 + B)``; ``p_wilcoxon`` is scipy's two-sided signed-rank test. ``better`` names the model
    with the better mean for the metric's direction. Holm corrects each of the two p-value columns over all
    rows of the comparison; small groups are reported but not tested.
    """
    if label_a == label_b:
        raise AuditInputError("compare needs two different labels")
    wa = wide_records(records_a, directions)
    wb = wide_records(records_b, directions)
    ids = sorted(set(wa.index) | set(wb.index))
    metrics = sorted(set(wa.columns) | set(wb.columns))
    wa = wa.reindex(index=ids, columns=metrics)
    wb = wb.reindex(index=ids, columns=metrics)
    attrs = check_attributes(attributes)
    groupings = [make_grouping(spec, ids, attrs) for spec in settings.group_by]
    codes_all = cl.cluster_codes(ids, attrs, settings.cluster_by)[0] if settings.cluster_by else None
    rows: list[dict] = []
    for metric in metrics:
        a = wa[metric].to_numpy(dtype=np.float64)
        b = wb[metric].to_numpy(dtype=np.float64)
        paired = ~np.isnan(a) & ~np.isnan(b)
        hib = directions[metric]
        labels = (label_a, label_b)
        parts = [(OVERALL, ALL, np.ones(len(ids), dtype=bool))]
        for grouping in groupings:
            parts += [(grouping.name, g, grouping.codes == gi) for gi, g in enumerate(grouping.groups)]
        for gname, group, mask in parts:
            sel = mask & paired
            row = _paired_row(
                a[sel] - b[sel],
                a[sel],
                b[sel],
                metric,
                gname,
                group,
                hib,
                labels,
                (mask & ~paired).sum(),
                settings,
                None if codes_all is None else codes_all[sel],
            )
            rows.append(row)
    out = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    if len(out):
        out["p_wilcoxon_adjusted"] = adjust_p_values(
            out["p_wilcoxon"].to_numpy(dtype=float), settings.correction
        )
        out["p_bootstrap_adjusted"] = adjust_p_values(
            out["p_bootstrap"].to_numpy(dtype=float), settings.correction
        )
        out["significant_wilcoxon"] = (
            (out["p_wilcoxon_adjusted"] <= settings.alpha).fillna(False).astype(bool)
        )
        out["significant_bootstrap"] = (
            (out["p_bootstrap_adjusted"] <= settings.alpha).fillna(False).astype(bool)
        )
    return out
