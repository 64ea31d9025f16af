"""The whole audit: tables present and consistent, JSON round trip, text rendering, determinism, notes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cals_bench.fairness import DEFINITIONS, AuditResult, AuditSettings, audit
from cals_bench.fairness.synthetic import simulated_enhancer_data


def _inputs(seed: int = 0):
    data = simulated_enhancer_data(
        n=300, dim=16, biased_group="d", degradation=1.5, nan_fraction=0.03, seed=seed
    )
    attrs = data.attributes.copy()
    rng = np.random.default_rng(seed)
    attrs["light"] = rng.choice(["dim", "dark"], size=len(attrs))
    attrs.iloc[:3, 1] = None  # 3 samples without a 'light' value
    return data, attrs


def _settings(**kw) -> AuditSettings:
    base = {
        "group_by": ("group", "group*light"),
        "min_group_size": 40,
        "bootstrap": 200,
        "permutations": 200,
        "gpi_exact_max_n": 100,
        "gpi_projections": 32,
    }
    base.update(kw)
    return AuditSettings(**base)


@pytest.fixture(scope="module")
def result() -> AuditResult:
    data, attrs = _inputs()
    baseline = simulated_enhancer_data(n=300, dim=16, seed=0)  # same samples, no degraded group
    return audit(
        data.records,
        attrs,
        _settings(gpi_metric="lpips"),
        directions=data.directions,
        features=data.features,
        baseline_records=baseline.records,
        labels=("biased", "fair"),
    )


def test_tables_cover_every_grouping_and_flag_small_intersections(result):
    g = result.groups
    assert set(g.grouping) == {"overall", "group", "group*light"}
    inter = g[(g.grouping == "group*light") & (g.metric == "psnr")]
    assert len(inter) == 8
    assert inter["small_group"].any()
    assert result.scalars["n_small_groups"] == int((g.small_group & (g.grouping != "overall")).sum())
    lp = g[(g.grouping == "overall") & (g.metric == "lpips")].iloc[0]
    assert lp["n_nan"] == 9
    assert lp["n"] == 291
    assert any("light" in n and "3 sample" in n for n in result.notes)


def test_biased_group_found_by_metrics_gpi_and_tests(result):
    d = result.disparity
    for metric in ("psnr", "lpips"):
        row = d[(d.grouping == "group") & (d.metric == metric)].iloc[0]
        assert row["worst_group"] == "d"
        assert row["gap_significant"]
    s = result.gpi_summary
    feat = s[(s.kind == "features") & (s.grouping == "group")].iloc[0]
    assert feat["worst_group"] == "d"
    assert feat["significant"]
    assert feat["method"] == "exact"
    one_d = s[(s.kind == "metric_1d") & (s.grouping == "group")].iloc[0]
    assert one_d["feature"] == "lpips"
    assert one_d["significant"]
    t = result.tests
    assert set(t.family) == {
        "kruskal_wallis",
        "gap_permutation",
        "gpi_gap_permutation",
        "gpi_1d_gap_permutation",
    }
    for _, fam in t.groupby("family"):
        from cals_bench.fairness import holm

        np.testing.assert_allclose(fam["p_adjusted"], holm(fam["p_value"]), rtol=1e-12)
    assert (t.correction == "holm").all()
    assert result.scalars["gpi_gap"] == pytest.approx(feat["gpi_gap"])


def test_comparison_with_baseline_is_included(result):
    c = result.comparisons
    assert set(c.label_a) == {"biased"}
    assert set(c.label_b) == {"fair"}
    row = c[(c.metric == "psnr") & (c.group == "d")].iloc[0]
    assert row["better"] == "fair"
    assert row["significant_wilcoxon"]


def test_json_round_trip_is_exact(result):
    text = json.dumps(result.to_dict(), allow_nan=False)  # strict JSON: NaN written as null
    back = AuditResult.from_dict(json.loads(text))
    for name in ("groups", "disparity", "gpi", "gpi_summary", "tests", "comparisons"):
        pd.testing.assert_frame_equal(getattr(result, name), getattr(back, name))
    assert back.settings == result.settings
    assert back.notes == result.notes
    assert json.loads(text)["definitions"] == DEFINITIONS
    assert back.to_text() == result.to_text()


def test_text_rendering_shows_every_part(result):
    text = result.to_text()
    for needle in (
        "## metric psnr (higher is better)",
        "## GPI of face by group",
        "gpi_sum =",
        "gpi_gap =",
        "p_holm",
        "## tests (correction: holm",
        "## comparison biased vs fair",
        "## small groups",
        "SMALL",
        "## notes",
    ):
        assert needle in text, needle


def test_audit_is_deterministic_and_seed_dependent():
    data, attrs = _inputs(seed=3)
    settings = {"bootstrap": 50, "permutations": 50, "gpi_exact_max_n": 0}  # small: three audits run here
    run = lambda seed: audit(  # noqa: E731
        data.records,
        attrs,
        _settings(seed=seed, **settings),
        directions=data.directions,
        features=data.features,
    )
    a, b, c = run(1), run(1), run(2)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert json.dumps(a.to_dict()) != json.dumps(c.to_dict())


def test_missing_gpi_metric_and_empty_group_by_are_handled():
    data, attrs = _inputs(seed=4)
    res = audit(
        data.records[data.records.metric == "psnr"],
        attrs,
        _settings(group_by=(), gpi_metric="lpips"),
        directions=data.directions,
    )
    assert set(res.groups.grouping) == {"overall"}
    assert res.gpi.empty
    assert res.gpi_summary.empty
    assert res.comparisons.empty
    assert any("gpi_metric 'lpips'" in n for n in res.notes)
    json.dumps(res.to_dict(), allow_nan=False)
    assert "## metric psnr" in res.to_text()
