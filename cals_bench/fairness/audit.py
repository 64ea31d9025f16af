"""``audit``: the whole fairness audit of one model's per-sample records, from pure data to an AuditResult."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cals_bench.fairness.clusters import cluster_codes, split_by_group
from cals_bench.fairness.frame import group_tables, wide_records
from cals_bench.fairness.gpi import (
    GPI_COLUMNS,
    GPI_SUMMARY_COLUMNS,
    KIND_FEATURES,
    FeatureSet,
    feature_gpi_tables,
    metric_gpi_tables,
)
from cals_bench.fairness.groups import check_attributes, make_grouping
from cals_bench.fairness.result import AuditResult
from cals_bench.fairness.settings import AuditSettings
from cals_bench.fairness.significance import (
    COMPARE_COLUMNS,
    FAMILY_GAP,
    FAMILY_KRUSKAL,
    TEST_COLUMNS,
    across_group_tests,
    apply_correction,
    compare,
)

FAMILY_GPI = "gpi_gap_permutation"
FAMILY_GPI_1D = "gpi_1d_gap_permutation"


def _gpi_test_rows(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in summary.to_dict("records"):
        family = FAMILY_GPI if r["kind"] == KIND_FEATURES else FAMILY_GPI_1D
        note = "" if np.isfinite(r["p_value"]) else "fewer than 2 compared groups or no permutations"
        rows.append(
            {
                "family": family,
                "test": "permutation",
                "grouping": r["grouping"],
                "target": r["feature"],
                "statistic": r["gpi_gap"],
                "p_value": r["p_value"],
                "p_adjusted": np.nan,
                "significant": False,
                "correction": "",
                "n": int(r["n_samples"]),
                "n_groups": int(r["n_groups_compared"]),
                "resamples": int(r["permutations"]),
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def audit(
    records: pd.DataFrame,
    attributes: pd.DataFrame,
    settings: AuditSettings,
    *,
    directions: Mapping[str, bool],
    features: Mapping[str, FeatureSet] | None = None,
    baseline_records: pd.DataFrame | None = None,
    labels: tuple[str, str] = ("model", "baseline"),
) -> AuditResult:
    """Audit one model's per-sample scores group by group.

    ``records``: long table with columns ``sample_id``, ``metric``, ``value`` (NaN allowed); ``attributes``:
    indexed by sample_id, one string column per attribute; ``directions``: metric -> higher_is_better;
    ``features``: optional ``{name: (ref (n, d), out (n, d), sample_ids)}`` for GPI; ``baseline_records``:
    optional records of a second model on the same samples, compared pairwise (``labels`` name the two).
    Deterministic for fixed inputs and settings.
    """
    wide = wide_records(records, directions)
    attrs = check_attributes(attributes)
    notes: list[str] = []
    ids = list(wide.index)
    absent = [i for i in ids if i not in attrs.index]
    if absent:
        notes.append(
            f"{len(absent)} sample(s) have records but no attribute row (overall only), e.g. {absent[:3]}"
        )
    groupings = [make_grouping(spec, ids, attrs) for spec in settings.group_by]
    for g in groupings:
        if g.n_missing:
            notes.append(
                f"grouping {g.name}: {g.n_missing} sample(s) with a missing attribute value (overall only)"
            )

    clusters = None
    if settings.cluster_by:
        clusters, n_no_cluster = cluster_codes(ids, attrs, settings.cluster_by)
        n_clusters = len({int(c) for c in clusters})
        notes.append(
            f"cluster_by {settings.cluster_by}: {n_clusters} clusters of {len(ids)} samples; intervals "
            "resample clusters within each group, permutation tests permute labels between clusters"
        )
        if n_no_cluster:
            notes.append(f"{n_no_cluster} sample(s) have no {settings.cluster_by}: each is its own cluster")
        for g in groupings:
            _, n_split = split_by_group(clusters, g.codes)
            if n_split:
                notes.append(
                    f"grouping {g.name}: {n_split} cluster(s) span more than one group; each part is "
                    "resampled as a cluster of its own"
                )
    groups_df, disparity_df = group_tables(wide, groupings, directions, settings, clusters)
    tests = [across_group_tests(wide, groupings, settings, clusters)]

    gpi_frames, summary_frames = [], []
    if features:
        rows, summ = feature_gpi_tables(features, attrs, settings)
        gpi_frames.append(rows)
        summary_frames.append(summ)
    if settings.gpi_metric is not None:
        if settings.gpi_metric in wide.columns:
            rows, summ = metric_gpi_tables(wide, groupings, settings.gpi_metric, settings, clusters)
            gpi_frames.append(rows)
            summary_frames.append(summ)
        else:
            notes.append(f"gpi_metric {settings.gpi_metric!r} is not in the records: 1-D GPI skipped")
    gpi_df = _concat(gpi_frames, GPI_COLUMNS)
    gpi_summary = _concat(summary_frames, GPI_SUMMARY_COLUMNS)
    if not gpi_summary.empty:
        tests.append(_gpi_test_rows(gpi_summary))
    tests_df = apply_correction(_concat(tests, TEST_COLUMNS), settings)

    disparity_df = _merge_tests(disparity_df, tests_df, settings.alpha)
    if not gpi_summary.empty:
        gpi_summary = _merge_gpi_tests(gpi_summary, tests_df)

    if baseline_records is not None:
        comparisons = compare(
            records,
            baseline_records,
            attributes,
            settings,
            directions=directions,
            label_a=labels[0],
            label_b=labels[1],
        )
    else:
        comparisons = pd.DataFrame(columns=COMPARE_COLUMNS)

    scalars: dict[str, object] = {
        "n_samples": len(ids),
        "n_metrics": int(wide.shape[1]),
        "n_groupings": len(groupings),
        "n_small_groups": int((groups_df["small_group"] & (groups_df["grouping"] != "overall")).sum()),
        "n_tests": int(tests_df["p_value"].notna().sum()),
        "n_significant": int(tests_df["significant"].sum()),
    }
    if not gpi_summary.empty:
        head = gpi_summary.iloc[0]
        scalars.update(
            {
                "gpi_headline": f"{head['kind']}:{head['feature']} by {head['grouping']}",
                "gpi_sum": float(head["gpi_sum"]),
                "gpi_gap": float(head["gpi_gap"]),
                "gpi_gap_p": float(head["p_value"]),
                "gpi_gap_p_adjusted": float(head["p_adjusted"]),
            }
        )
    return AuditResult(
        settings=settings,
        groups=groups_df,
        disparity=disparity_df,
        gpi=gpi_df,
        gpi_summary=gpi_summary,
        tests=tests_df,
        comparisons=comparisons,
        scalars=scalars,
        notes=notes,
    )


def _merge_tests(disparity: pd.DataFrame, tests: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Copy the Kruskal-Wallis and gap-permutation p-values (raw and adjusted) into the disparity rows."""
    out = disparity.copy()
    for family, prefix in ((FAMILY_KRUSKAL, "p_kruskal"), (FAMILY_GAP, "p_gap")):
        t = tests[tests["family"] == family].set_index(["grouping", "target"])
        key = list(zip(out["grouping"], out["metric"]))
        out[prefix] = [float(t["p_value"].get(k, np.nan)) for k in key]
        out[f"{prefix}_adjusted"] = [float(t["p_adjusted"].get(k, np.nan)) for k in key]
    out["gap_significant"] = (out["p_gap_adjusted"] <= alpha).astype(bool)
    return out


def _merge_gpi_tests(summary: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    out = summary.copy()
    for i, r in out.iterrows():
        family = FAMILY_GPI if r["kind"] == KIND_FEATURES else FAMILY_GPI_1D
        t = tests[
            (tests["family"] == family)
            & (tests["grouping"] == r["grouping"])
            & (tests["target"] == r["feature"])
        ]
        if len(t):
            out.at[i, "p_adjusted"] = float(t["p_adjusted"].iloc[0])
            out.at[i, "significant"] = bool(t["significant"].iloc[0])
    return out
