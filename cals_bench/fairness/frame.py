"""Group tables in the manner of fairlearn's MetricFrame: overall and per-group figures, worst group, gaps.

Input is the engine's long record table (one row per sample and metric); every output is a tidy DataFrame.
NaN values (a metric undefined for a sample, e.g. no face found) are dropped per metric and counted in
``n_nan``; a sample without a row for a metric counts the same way. Groups with fewer valid values than
``min_group_size`` stay in the tables with ``small_group=True`` and are left out of worst/best, differences
and ratios (listed in ``small_groups`` of the disparity table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cals_bench.fairness.bootstrap import bootstrap_mean_median, interval, percentile_interval, rng_for
from cals_bench.fairness.clusters import ClusterLayout
from cals_bench.fairness.clusters import bootstrap_mean_median as cluster_bootstrap_mean_median
from cals_bench.fairness.groups import ALL, OVERALL, Grouping
from cals_bench.fairness.settings import AuditInputError, AuditSettings

GROUP_COLUMNS = [
    "grouping",
    "group",
    "metric",
    "higher_is_better",
    "n",
    "n_nan",
    "mean",
    "mean_ci_low",
    "mean_ci_high",
    "median",
    "median_ci_low",
    "median_ci_high",
    "std",
    "diff_to_overall",
    "small_group",
]

DISPARITY_COLUMNS = [
    "grouping",
    "metric",
    "higher_is_better",
    "n_groups",
    "n_groups_compared",
    "small_groups",
    "n_missing_attribute",
    "worst_group",
    "worst_mean",
    "best_group",
    "best_mean",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "max_abs_diff_to_overall",
]


def wide_records(records: pd.DataFrame, directions: Mapping[str, bool]) -> pd.DataFrame:
    """Pivot long records to ``(sample_id x metric)`` floats, checking the contract.

    Requires columns ``sample_id``, ``metric``, ``value``; one row per (sample_id, metric); values finite or
    NaN; a direction for every metric. Extra columns are ignored. Sample ids become strings.
    """
    if not isinstance(records, pd.DataFrame):
        raise AuditInputError(f"records must be a pandas DataFrame, got {type(records)}")
    missing = [c for c in ("sample_id", "metric", "value") if c not in records.columns]
    if missing:
        raise AuditInputError(f"records lack column(s) {missing}; they have {list(records.columns)}")
    rec = records[["sample_id", "metric", "value"]].copy()
    rec["sample_id"] = rec["sample_id"].map(str)
    rec["metric"] = rec["metric"].map(str)
    try:
        rec["value"] = pd.to_numeric(rec["value"], errors="raise").astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise AuditInputError(f"records column 'value' is not numeric: {exc}") from exc
    if np.isinf(rec["value"].to_numpy()).any():
        bad = rec.loc[np.isinf(rec["value"].to_numpy()), ["sample_id", "metric"]].head(3).to_dict("records")
        raise AuditInputError(f"records hold infinite values (use NaN for undefined), e.g. {bad}")
    dup = rec.duplicated(["sample_id", "metric"])
    if dup.any():
        bad = rec.loc[dup, ["sample_id", "metric"]].head(3).to_dict("records")
        raise AuditInputError(f"records hold more than one row per (sample_id, metric), e.g. {bad}")
    metrics = sorted(rec["metric"].unique())
    no_dir = [m for m in metrics if m not in directions]
    if no_dir:
        raise AuditInputError(f"no direction (higher_is_better) given for metric(s) {no_dir}")
    wide = rec.pivot(index="sample_id", columns="metric", values="value")
    wide = wide.reindex(columns=metrics).sort_index()
    wide.columns.name = None
    return wide.astype(np.float64)


def _summary(
    values: np.ndarray,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
    codes: np.ndarray | None = None,
):
    """(mean, median, std, mean_ci, median_ci, bootstrap means) of a 1-D array of valid values.

    With ``codes`` (the cluster of each value), the bootstrap resamples clusters, not values."""
    n = values.size
    if n == 0:
        nan = float("nan")
        return nan, nan, nan, (nan, nan), (nan, nan), np.full(n_resamples, np.nan)
    mean = float(values.mean())
    median = float(np.median(values))
    std = float(values.std(ddof=1)) if n > 1 else float("nan")
    if n_resamples == 0:
        nan = float("nan")
        return mean, median, std, (nan, nan), (nan, nan), np.empty(0)
    if codes is None:
        boot_means, boot_medians = bootstrap_mean_median(values, n_resamples, rng)
    else:
        layout = ClusterLayout(np.arange(n), codes)
        boot_means, boot_medians = cluster_bootstrap_mean_median(values, layout, n_resamples, rng)
    return (
        mean,
        median,
        std,
        percentile_interval(boot_means, confidence),
        percentile_interval(boot_medians, confidence),
        boot_means,
    )


def _row(grouping, group, metric, hib, n, n_nan, summary, overall_mean, small) -> dict:
    mean, median, std, mci, dci, _ = summary
    return {
        "grouping": grouping,
        "group": group,
        "metric": metric,
        "higher_is_better": bool(hib),
        "n": int(n),
        "n_nan": int(n_nan),
        "mean": mean,
        "mean_ci_low": mci[0],
        "mean_ci_high": mci[1],
        "median": median,
        "median_ci_low": dci[0],
        "median_ci_high": dci[1],
        "std": std,
        "diff_to_overall": mean - overall_mean,
        "small_group": bool(small),
    }


def _ratio(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((lo > 0) & (hi > 0), lo / hi, np.nan)


def group_tables(
    wide: pd.DataFrame,
    groupings: Sequence[Grouping],
    directions: Mapping[str, bool],
    settings: AuditSettings,
    clusters: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group table and per-(grouping, metric) disparity table.

    ``clusters`` (optional): the cluster code of each row of ``wide`` (``settings.cluster_by``); every
    interval then resamples clusters within its group (the cluster bootstrap).

    ``wide`` is ``wide_records(...)``; every grouping must be built over ``wide.index`` in that order.
    Group table: one ``overall``/``all`` row per metric, then one row per (grouping, group, metric).
    Disparity table: worst and best group by mean (direction-aware), ``difference = max - min`` of the
    compared group means, ``ratio = min / max`` (fairlearn's between-groups ratio; NaN unless all compared
    means are > 0), their stratified-bootstrap intervals, and the largest ``|group mean - overall mean|``.
    """
    ids = tuple(wide.index)
    for grouping in groupings:
        if grouping.sample_ids != ids:
            raise AuditInputError(f"grouping {grouping.name!r} was built over other samples than the records")
    group_rows: list[dict] = []
    disparity_rows: list[dict] = []
    for metric in wide.columns:
        hib = bool(directions[metric])
        col = wide[metric].to_numpy(dtype=np.float64)
        valid = ~np.isnan(col)
        overall = _summary(
            col[valid],
            settings.bootstrap,
            settings.confidence,
            rng_for(settings.seed, "overall", metric),
            None if clusters is None else clusters[valid],
        )
        overall_mean = overall[0]
        group_rows.append(
            _row(
                OVERALL,
                ALL,
                metric,
                hib,
                valid.sum(),
                (~valid).sum(),
                overall,
                overall_mean,
                valid.sum() < settings.min_group_size,
            )
        )
        for grouping in groupings:
            means, boots, names, smalls = [], [], [], []
            for gi, group in enumerate(grouping.groups):
                mask = grouping.codes == gi
                vals = col[mask & valid]
                rng = rng_for(settings.seed, "group", metric, grouping.name, group)
                codes = None if clusters is None else clusters[mask & valid]
                summ = _summary(vals, settings.bootstrap, settings.confidence, rng, codes)
                small = vals.size < settings.min_group_size
                group_rows.append(
                    _row(
                        grouping.name,
                        group,
                        metric,
                        hib,
                        vals.size,
                        (mask & ~valid).sum(),
                        summ,
                        overall_mean,
                        small,
                    )
                )
                if small:
                    smalls.append(group)
                else:
                    means.append(summ[0])
                    boots.append(summ[5])
                    names.append(group)
            disparity_rows.append(
                _disparity_row(grouping, metric, hib, means, boots, names, smalls, overall_mean, settings)
            )
    groups_df = pd.DataFrame(group_rows, columns=GROUP_COLUMNS)
    disparity_df = pd.DataFrame(disparity_rows, columns=DISPARITY_COLUMNS)
    return groups_df, disparity_df


def _disparity_row(grouping, metric, hib, means, boots, names, smalls, overall_mean, settings) -> dict:
    nan = float("nan")
    row = {
        "grouping": grouping.name,
        "metric": metric,
        "higher_is_better": hib,
        "n_groups": len(grouping.groups),
        "n_groups_compared": len(names),
        "small_groups": ",".join(smalls),
        "n_missing_attribute": grouping.n_missing,
        "worst_group": "",
        "worst_mean": nan,
        "best_group": "",
        "best_mean": nan,
        "difference": nan,
        "difference_ci_low": nan,
        "difference_ci_high": nan,
        "ratio": nan,
        "ratio_ci_low": nan,
        "ratio_ci_high": nan,
        "max_abs_diff_to_overall": nan,
    }
    if not names:
        return row
    m = np.asarray(means)
    worst = int(np.argmin(m) if hib else np.argmax(m))
    best = int(np.argmax(m) if hib else np.argmin(m))
    row.update(
        worst_group=names[worst],
        worst_mean=float(m[worst]),
        best_group=names[best],
        best_mean=float(m[best]),
        max_abs_diff_to_overall=float(np.max(np.abs(m - overall_mean))),
    )
    if len(names) < 2:
        return row
    row["difference"] = float(m.max() - m.min())
    row["ratio"] = float(_ratio(np.array(m.min()), np.array(m.max())))
    if settings.bootstrap > 0:
        # Each group was resampled independently: row b of the stack is one stratified bootstrap draw.
        stack = np.stack(boots, axis=1)
        lo, hi = stack.min(axis=1), stack.max(axis=1)
        kind, conf = settings.distance_interval, settings.confidence
        row["difference_ci_low"], row["difference_ci_high"] = interval(
            kind, row["difference"], hi - lo, conf, lower=0.0
        )
        if np.isfinite(row["ratio"]):
            row["ratio_ci_low"], row["ratio_ci_high"] = interval(
                kind, row["ratio"], _ratio(lo, hi), conf, lower=0.0, upper=1.0
            )
    return row
