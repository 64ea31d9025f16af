"""Group tables: recomputed on boolean masks by hand, as fairlearn's MetricFrame tests do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cals_bench.fairness import (
    AuditInputError,
    AuditSettings,
    AuditSettingsError,
    group_tables,
    make_grouping,
)
from cals_bench.fairness.bootstrap import bootstrap_mean_median, percentile_interval, rng_for
from cals_bench.fairness.frame import wide_records

DIRECTIONS = {"psnr": True, "lpips": False}


def _data(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"img{i:04d}" for i in range(n)]
    context = rng.choice(["indoor", "outdoor", "night"], size=n, p=[0.45, 0.45, 0.10])
    gender = rng.choice(["female", "male"], size=n)
    attrs = pd.DataFrame({"context": context, "gender": gender}, index=ids)
    psnr = 20 + 2 * rng.standard_normal(n) - 1.5 * (context == "night")
    lpips = np.abs(0.2 + 0.05 * rng.standard_normal(n))
    lpips[rng.choice(n, size=9, replace=False)] = np.nan  # e.g. undefined for these samples
    records = pd.concat(
        [
            pd.DataFrame({"sample_id": ids, "metric": "psnr", "value": psnr}),
            pd.DataFrame({"sample_id": ids, "metric": "lpips", "value": lpips}),
        ],
        ignore_index=True,
    )
    return records, attrs


def _tables(records, attrs, **kw):
    settings = AuditSettings(group_by=("context", "gender*context"), min_group_size=15, bootstrap=200, **kw)
    wide = wide_records(records, DIRECTIONS)
    groupings = [make_grouping(spec, list(wide.index), attrs) for spec in settings.group_by]
    groups, disparity = group_tables(wide, groupings, DIRECTIONS, settings)
    return settings, wide, groups, disparity


def test_group_rows_equal_hand_computation_on_masks():
    records, attrs = _data()
    settings, wide, groups, _ = _tables(records, attrs)
    attrs = attrs.reindex(wide.index)
    for metric in DIRECTIONS:
        values = wide[metric]
        overall = values.dropna()
        for (grouping, group), mask in _masks(attrs).items():
            row = groups[(groups.grouping == grouping) & (groups.group == group) & (groups.metric == metric)]
            assert len(row) == 1
            row = row.iloc[0]
            sel = values[mask]
            valid = sel.dropna()
            # Same float64 values in the same order: equality up to summation rounding (1e-12 relative).
            assert row["n"] == len(valid)
            assert row["n_nan"] == sel.isna().sum()
            assert row["mean"] == pytest.approx(valid.mean(), rel=1e-12)
            assert row["median"] == pytest.approx(valid.median(), rel=1e-12)
            assert row["std"] == pytest.approx(valid.std(ddof=1), rel=1e-12)
            assert row["diff_to_overall"] == pytest.approx(valid.mean() - overall.mean(), rel=1e-9, abs=1e-12)
            assert row["small_group"] == (len(valid) < settings.min_group_size)


def _masks(attrs: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    masks = {}
    for c in attrs["context"].unique():
        masks[("context", c)] = (attrs["context"] == c).to_numpy()
    for g in attrs["gender"].unique():
        for c in attrs["context"].unique():
            masks[("gender*context", f"{g}*{c}")] = (
                (attrs["gender"] == g) & (attrs["context"] == c)
            ).to_numpy()
    return masks


def test_overall_row_and_nan_counts():
    records, attrs = _data()
    _, wide, groups, _ = _tables(records, attrs)
    row = groups[(groups.grouping == "overall") & (groups.metric == "lpips")].iloc[0]
    assert row["group"] == "all"
    assert row["n"] == 120 - 9
    assert row["n_nan"] == 9
    assert row["mean"] == pytest.approx(np.nanmean(wide["lpips"]), rel=1e-12)
    # NaNs are dropped per metric: psnr keeps all 120 samples.
    assert groups[(groups.grouping == "overall") & (groups.metric == "psnr")].iloc[0]["n"] == 120


def test_small_groups_flagged_kept_and_not_compared():
    records, attrs = _data()
    _, _, groups, disparity = _tables(records, attrs)
    inter = groups[(groups.grouping == "gender*context") & (groups.metric == "psnr")]
    small = set(inter.loc[inter.small_group, "group"])
    assert small, "the 10% night context must give small intersections"
    assert len(inter) == 6  # every group is reported, small or not
    row = disparity[(disparity.grouping == "gender*context") & (disparity.metric == "psnr")].iloc[0]
    assert set(row["small_groups"].split(",")) == small
    assert row["n_groups_compared"] == 6 - len(small)
    assert row["worst_group"] not in small
    assert row["best_group"] not in small


def test_worst_best_difference_ratio_are_direction_aware():
    records, attrs = _data(n=400)
    _settings, _, groups, disparity = _tables(records, attrs)
    for metric, hib in DIRECTIONS.items():
        g = groups[(groups.grouping == "context") & (groups.metric == metric) & ~groups.small_group]
        means = dict(zip(g.group, g["mean"]))
        row = disparity[(disparity.grouping == "context") & (disparity.metric == metric)].iloc[0]
        worst = min(means, key=means.get) if hib else max(means, key=means.get)
        best = max(means, key=means.get) if hib else min(means, key=means.get)
        assert row["worst_group"] == worst
        assert row["best_group"] == best
        assert row["difference"] == pytest.approx(max(means.values()) - min(means.values()), rel=1e-12)
        assert row["ratio"] == pytest.approx(min(means.values()) / max(means.values()), rel=1e-12)
        assert row["difference_ci_low"] <= row["difference_ci_high"]
    # psnr is worse at night by construction (1.5 dB lower mean).
    assert (
        disparity[(disparity.grouping == "context") & (disparity.metric == "psnr")].iloc[0]["worst_group"]
        == "night"
    )


def test_vectorised_bootstrap_equals_a_loop_over_resamples():
    """The index-matrix bootstrap draws the same resamples as a per-resample loop on the same generator."""
    values = np.random.default_rng(3).standard_normal(57)
    means, medians = bootstrap_mean_median(values, 300, rng_for(7, "k"))
    gen = rng_for(7, "k")
    loop = [values[gen.integers(0, values.size, size=values.size)] for _ in range(300)]
    np.testing.assert_array_equal(means, [x.mean() for x in loop])  # identical draws and reductions
    np.testing.assert_array_equal(medians, [np.median(x) for x in loop])


def test_bootstrap_interval_matches_normal_theory_for_a_mean():
    """n = 2000 normal values: the 95% percentile interval of the mean is near mean +- 1.96 s/sqrt(n)."""
    values = np.random.default_rng(11).standard_normal(2000)
    means, _ = bootstrap_mean_median(values, 4000, rng_for(0))
    lo, hi = percentile_interval(means, 0.95)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    # Monte-Carlo error of a 2.5% quantile with B = 4000 is about 3% of the half-width; 10% leaves margin.
    assert lo == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(values.mean() + half, abs=0.1 * half)


def test_group_tables_are_seeded_and_reproducible():
    records, attrs = _data()
    _, _, g1, d1 = _tables(records, attrs, seed=5)
    _, _, g2, d2 = _tables(records, attrs, seed=5)
    _, _, g3, _ = _tables(records, attrs, seed=6)
    pd.testing.assert_frame_equal(g1, g2)
    pd.testing.assert_frame_equal(d1, d2)
    assert not np.allclose(g1["mean_ci_low"], g3["mean_ci_low"])
    pd.testing.assert_series_equal(g1["mean"], g3["mean"])  # point estimates do not depend on the seed


def test_adding_a_metric_does_not_change_other_metrics_intervals():
    records, attrs = _data()
    _, _, g1, _ = _tables(records[records.metric == "psnr"], attrs)
    _, _, g2, _ = _tables(records, attrs)
    g2 = g2[g2.metric == "psnr"].reset_index(drop=True)
    pd.testing.assert_frame_equal(g1, g2)


def test_missing_attribute_samples_count_overall_only():
    records, attrs = _data()
    attrs = attrs.copy()
    attrs.loc[attrs.index[:4], "context"] = None
    attrs = attrs.drop(index=attrs.index[4:6])
    _, _, groups, disparity = _tables(records, attrs)
    ctx = groups[(groups.grouping == "context") & (groups.metric == "psnr")]
    assert ctx["n"].sum() == 120 - 6
    assert groups[(groups.grouping == "overall") & (groups.metric == "psnr")].iloc[0]["n"] == 120
    assert disparity[(disparity.grouping == "context")]["n_missing_attribute"].eq(6).all()


def test_records_contract_errors():
    records, attrs = _data()
    with pytest.raises(AuditInputError, match="direction"):
        wide_records(records, {"psnr": True})
    dup = pd.concat([records, records.iloc[:1]])
    with pytest.raises(AuditInputError, match="more than one row"):
        wide_records(dup, DIRECTIONS)
    bad = records.copy()
    bad.loc[0, "value"] = np.inf
    with pytest.raises(AuditInputError, match="infinite"):
        wide_records(bad, DIRECTIONS)
    with pytest.raises(AuditInputError, match="lack column"):
        wide_records(records.rename(columns={"value": "v"}), DIRECTIONS)
    with pytest.raises(AuditInputError, match="attribute column"):
        make_grouping("age_band", ["img0000"], attrs)


def test_settings_validation_and_mapping():
    s = AuditSettings.from_mapping({"group_by": ["gender * age_band", "context"], "bootstrap": 10})
    assert s.group_by == ("gender*age_band", "context")
    assert AuditSettings.from_mapping(s.to_dict()) == s
    with pytest.raises(AuditSettingsError, match="unknown"):
        AuditSettings.from_mapping({"bootstraps": 10})
    for bad in (
        {"confidence": 1.0},
        {"alpha": 0},
        {"bootstrap": -1},
        {"min_group_size": 0},
        {"group_by": ["a*a"]},
        {"group_by": ["a", "a"]},
        {"correction": "bonferroni"},
        {"gpi_projections": 0},
        {"bootstrap": True},
        {"distance_interval": "bca"},
    ):
        with pytest.raises(AuditSettingsError):
            AuditSettings(**bad)
    with pytest.raises(TypeError):
        AuditSettings(("context",))  # keyword-only
