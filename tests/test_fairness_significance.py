"""Significance tests: Holm, Kruskal-Wallis, the gap permutation test, and the paired model comparison."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cals_bench.fairness import AuditSettings, across_group_tests, compare, holm, make_grouping
from cals_bench.fairness.bootstrap import rng_for
from cals_bench.fairness.frame import wide_records
from cals_bench.fairness.significance import apply_correction, gap_permutation_test


def test_holm_hand_computed_values():
    # m = 4, sorted p: 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06).
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    # NaN is outside the family (m = 3); values are capped at 1 and kept monotone.
    np.testing.assert_allclose(holm([0.5, np.nan, 0.2, 0.9]), [1.0, np.nan, 0.6, 1.0], rtol=1e-12)
    np.testing.assert_allclose(holm([0.01, 0.01]), [0.02, 0.02], rtol=1e-12)
    np.testing.assert_allclose(holm([0.3]), [0.3], rtol=1e-12)
    assert holm([]).size == 0
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        holm([1.5])


def test_holm_matches_statsmodels():
    from statsmodels.stats import multitest  # in the test extras: never skipped

    p = np.random.default_rng(0).uniform(0, 0.2, size=25)
    expected = multitest.multipletests(p, alpha=0.05, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12)


def test_holm_controls_familywise_rejections_against_brute_force_definition():
    """Holm rejects H_(1..k) where k is the first i with p_(i) > alpha / (m - i + 1): check on random sets."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = rng.uniform(0, 0.1, size=rng.integers(1, 9))
        order = np.argsort(p)
        reject = np.zeros(p.size, dtype=bool)
        for i, j in enumerate(order):
            if p[j] > 0.05 / (p.size - i):
                break
            reject[j] = True
        np.testing.assert_array_equal(holm(p) <= 0.05, reject)


def test_gap_permutation_test_matches_exact_enumeration():
    """Two groups of 3: exactly 2 of the 20 splits reach the observed gap, so the exact p-value is 0.1."""
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 11.0, 12.0])
    pooled = np.concatenate([a, b])
    gaps = []
    for idx in itertools.combinations(range(6), 3):
        mask = np.zeros(6, dtype=bool)
        mask[list(idx)] = True
        gaps.append(abs(pooled[mask].mean() - pooled[~mask].mean()))
    exact = np.mean(np.array(gaps) >= 9.0 - 1e-12)
    assert exact == pytest.approx(0.1)
    gap, p = gap_permutation_test([a, b], 20000, rng_for(0))
    assert gap == pytest.approx(9.0)
    # Monte-Carlo sd of p with P = 20000 is sqrt(0.1 * 0.9 / 20000) = 0.0021; 0.01 is ~5 sd.
    assert p == pytest.approx(exact, abs=0.01)


def _records(values: dict[str, np.ndarray], ids: list[str]) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"sample_id": ids, "metric": m, "value": v}) for m, v in values.items()],
        ignore_index=True,
    )


def test_across_group_tests_equal_scipy_on_masks_and_exclude_small_groups():
    rng = np.random.default_rng(2)
    n = 300
    ids = [f"s{i}" for i in range(n)]
    group = rng.choice(["a", "b", "c", "tiny"], size=n, p=[0.33, 0.33, 0.30, 0.04])
    psnr = 20 + rng.standard_normal(n) + 0.8 * (group == "c")
    attrs = pd.DataFrame({"g": group}, index=ids)
    settings = AuditSettings(group_by=("g",), min_group_size=20, permutations=500)
    wide = wide_records(_records({"psnr": psnr}, ids), {"psnr": True})
    grouping = make_grouping("g", list(wide.index), attrs)
    tests = apply_correction(across_group_tests(wide, [grouping], settings), settings)
    kw = tests[tests.family == "kruskal_wallis"].iloc[0]
    col = wide["psnr"]
    labs = attrs.reindex(wide.index)["g"]
    expected = stats.kruskal(*[col[labs == g].to_numpy() for g in ("a", "b", "c")])
    assert kw["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert kw["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert kw["n_groups"] == 3
    assert kw["n"] == sum((labs == g).sum() for g in ("a", "b", "c"))
    gap = tests[tests.family == "gap_permutation"].iloc[0]
    means = [col[labs == g].mean() for g in ("a", "b", "c")]
    assert gap["statistic"] == pytest.approx(max(means) - min(means), rel=1e-12)
    assert gap["p_value"] == pytest.approx(1 / 501)  # 0.8 sd shift with ~100 per group: never reached
    assert bool(gap["significant"])
    assert gap["correction"] == "holm"


def _two_models(seed: int = 0, n: int = 240):
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(n)]
    group = np.array(["x", "y"])[np.arange(n) % 2]
    attrs = pd.DataFrame({"g": group}, index=ids)
    base = 20 + 2 * rng.standard_normal(n)
    a = base + 0.1 * rng.standard_normal(n)
    b = base + 0.1 * rng.standard_normal(n) - 0.5 * (group == "y")  # b is 0.5 dB worse on group y only
    lp_a = 0.2 + 0.01 * rng.standard_normal(n)
    lp_b = lp_a + 0.01 * rng.standard_normal(n)
    lp_a[:5] = np.nan  # unpaired: dropped and counted
    rec_a = _records({"psnr": a, "lpips": lp_a}, ids)
    rec_b = _records({"psnr": b, "lpips": lp_b}, ids)
    return rec_a, rec_b, attrs, ids, group


def test_compare_equals_scipy_wilcoxon_on_masks_with_holm():
    rec_a, rec_b, attrs, _ids, _group = _two_models()
    settings = AuditSettings(group_by=("g",), min_group_size=20, bootstrap=500)
    dirs = {"psnr": True, "lpips": False}
    out = compare(rec_a, rec_b, attrs, settings, directions=dirs, label_a="new", label_b="old")
    wa = wide_records(rec_a, dirs)
    wb = wide_records(rec_b, dirs)
    labs = attrs.reindex(wa.index)["g"].to_numpy()
    for r in out.to_dict("records"):
        mask = np.ones(len(wa), dtype=bool) if r["grouping"] == "overall" else labs == r["group"]
        a = wa[r["metric"]].to_numpy()[mask]
        b = wb[r["metric"]].to_numpy()[mask]
        ok = ~np.isnan(a) & ~np.isnan(b)
        d = a[ok] - b[ok]
        assert r["n_pairs"] == ok.sum()
        assert r["n_unpaired"] == (~ok).sum()
        assert r["mean_diff"] == pytest.approx(d.mean(), rel=1e-12)
        w = stats.wilcoxon(d)
        assert r["wilcoxon_statistic"] == pytest.approx(w.statistic, rel=1e-12)
        assert r["p_wilcoxon"] == pytest.approx(w.pvalue, rel=1e-9)
    np.testing.assert_allclose(out["p_wilcoxon_adjusted"], holm(out["p_wilcoxon"]), rtol=1e-12)
    np.testing.assert_allclose(out["p_bootstrap_adjusted"], holm(out["p_bootstrap"]), rtol=1e-12)
    assert (out["correction"] == "holm").all()
    assert out.loc[(out.metric == "lpips") & (out.grouping == "overall"), "n_unpaired"].item() == 5


def test_compare_finds_the_group_specific_regression():
    rec_a, rec_b, attrs, *_ = _two_models()
    settings = AuditSettings(group_by=("g",), min_group_size=20, bootstrap=1000)
    out = compare(
        rec_a, rec_b, attrs, settings, directions={"psnr": True, "lpips": False}, label_a="new", label_b="old"
    )
    psnr = out[out.metric == "psnr"].set_index("group")
    # On y, a - b = 0.5 dB (+ noise of sd 0.14 per pair, n = 120): CI must hold 0.5 and exclude 0.
    assert psnr.loc["y", "diff_ci_low"] < 0.5 < psnr.loc["y", "diff_ci_high"]
    assert psnr.loc["y", "significant_wilcoxon"]
    assert psnr.loc["y", "significant_bootstrap"]
    assert psnr.loc["y", "better"] == "new"
    # On x the two models are equal in distribution: after Holm no test calls it (seeded data).
    assert not psnr.loc["x", "significant_wilcoxon"]
    assert not psnr.loc["x", "significant_bootstrap"]
    assert psnr.loc["x", "diff_ci_low"] < 0 < psnr.loc["x", "diff_ci_high"]


def test_compare_small_groups_are_reported_not_tested():
    rec_a, rec_b, attrs, *_ = _two_models(n=30)
    settings = AuditSettings(group_by=("g",), min_group_size=20, bootstrap=100)
    out = compare(rec_a, rec_b, attrs, settings, directions={"psnr": True, "lpips": False})
    grp = out[out.grouping == "g"]
    assert grp["small_group"].all()
    assert grp["p_wilcoxon"].isna().all()
    assert grp["note"].str.contains("small group").all()
    assert out.loc[(out.grouping == "overall") & (out.metric == "psnr"), "p_wilcoxon"].notna().all()
