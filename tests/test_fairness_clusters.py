"""Cluster bootstrap and cluster permutation tests (audit setting ``cluster_by``).

Reference values: explicit Python loops over the same draws, the unclustered audit (every cluster a single
sample must reproduce it), and coverage / false-positive rates on simulated clustered data whose truth is
known (a random patient effect shared by all images of a patient).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cals_bench.fairness import AuditSettings, AuditSettingsError, audit
from cals_bench.fairness.bootstrap import rng_for
from cals_bench.fairness.clusters import (
    ClusterLayout,
    bootstrap_mean_median,
    cluster_codes,
    gap_permutation_test,
    permuted_groups,
    split_by_group,
)
from cals_bench.fairness.frame import group_tables, wide_records
from cals_bench.fairness.groups import make_grouping
from cals_bench.fairness.significance import across_group_tests


def _clustered(rng, n_clusters, per_cluster, tau, sigma, shift=0.0):
    """Values with a cluster effect N(0, tau^2) plus noise N(0, sigma^2); cluster code per value."""
    effects = rng.normal(0.0, tau, n_clusters)
    codes = np.repeat(np.arange(n_clusters), per_cluster)
    return shift + effects[codes] + rng.normal(0.0, sigma, codes.size), codes


def test_cluster_bootstrap_equals_explicit_resamples():
    rng = np.random.default_rng(1)
    values = rng.normal(size=53)
    codes = rng.integers(0, 11, size=53)
    layout = ClusterLayout(np.arange(53), codes)
    means, medians = bootstrap_mean_median(values, layout, 120, rng_for(3, "x"))
    draws = layout.draw(rng_for(3, "x"), 120)
    rows = layout.expand(draws)
    # each resample is the concatenation of the drawn clusters' values
    assert all(r.size == layout.sizes[d].sum() for r, d in zip(rows, draws))
    np.testing.assert_allclose(means, [values[r].mean() for r in rows], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(medians, [np.median(values[r]) for r in rows])


def test_singleton_clusters_reproduce_the_unclustered_audit():
    rng = np.random.default_rng(2)
    n = 90
    ids = [f"s{i:03d}" for i in range(n)]
    attrs = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "pid": [f"p{i}" for i in range(n)]}, index=ids)
    records = pd.DataFrame(
        {"sample_id": ids * 2, "metric": ["psnr"] * n + ["lpips"] * n, "value": rng.normal(size=2 * n)}
    )
    feats = {"f": (rng.normal(size=(n, 4)), rng.normal(size=(n, 4)), ids)}
    kw = dict(directions={"psnr": True, "lpips": False}, features=feats)
    base = AuditSettings(group_by=("sex",), bootstrap=200, permutations=50)
    plain = audit(records, attrs, base, **kw)
    clustered = audit(records, attrs, AuditSettings(**{**base.to_dict(), "cluster_by": "pid"}), **kw)
    cols = ["mean_ci_low", "mean_ci_high", "median_ci_low", "median_ci_high"]
    np.testing.assert_allclose(clustered.groups[cols], plain.groups[cols], rtol=0, atol=1e-12)
    cols = ["gpi", "gpi_ci_low", "gpi_ci_high"]
    np.testing.assert_allclose(clustered.gpi[cols], plain.gpi[cols], rtol=0, atol=1e-12)
    assert any("cluster_by pid: 90 clusters" in note for note in clustered.notes)


def test_cluster_permutation_test_equals_explicit_loop():
    rng = np.random.default_rng(4)
    v0, c0 = _clustered(rng, 9, 3, 1.0, 0.5)
    v1, c1 = _clustered(rng, 7, 4, 1.0, 0.5, shift=0.3)
    c1 = c1 + 100
    gap, p = gap_permutation_test([v0, v1], [c0, c1], 99, rng_for(0, "perm"))
    # reference: explicit cluster lists, the same label permutations
    clusters = [v0[c0 == k] for k in np.unique(c0)] + [v1[c1 == k] for k in np.unique(c1)]
    labels = np.array([0] * 9 + [1] * 7)
    perms = permuted_groups(labels, 2, 99, rng_for(0, "perm"))
    null = []
    for row in perms:
        means = [np.concatenate([clusters[i] for i in np.flatnonzero(row == g)]).mean() for g in (0, 1)]
        null.append(max(means) - min(means))
    assert gap == pytest.approx(abs(v1.mean() - v0.mean()), abs=1e-12)
    assert p == pytest.approx((1 + np.sum(np.array(null) >= gap - 1e-12)) / 100, abs=1e-12)


def test_cluster_codes_and_split():
    attrs = pd.DataFrame({"pid": ["a", "a", None, "b", ""]}, index=list("vwxyz"))
    codes, missing = cluster_codes(list("vwxyz"), attrs, "pid")
    assert missing == 2
    assert codes[0] == codes[1] != codes[3]
    assert len(set(codes.tolist())) == 4  # the two without a value are clusters of their own
    split, n_split = split_by_group(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert n_split == 1
    assert split[0] != split[1]
    assert split[2] == split[3]
    with pytest.raises(AuditSettingsError):
        AuditSettings(cluster_by="")


def test_coverage_cluster_bootstrap_vs_naive():
    """Nominal 95% intervals of a mean over 30 patients x 5 images, patient effect sd 1, noise sd 0.5
    (intra-cluster correlation 0.8, design effect 4.2): resampling images covers about
    P(|Z| < 1.96 / sqrt(4.2)) = 0.66; resampling patients covers near 0.95 (300 data sets, binomial sd
    about 0.013 at 0.95)."""
    rng = np.random.default_rng(0)
    settings = AuditSettings(bootstrap=400)
    hits_naive = hits_cluster = 0
    reps = 300
    for r in range(reps):
        values, codes = _clustered(rng, 30, 5, 1.0, 0.5)
        wide = wide_records(
            pd.DataFrame(
                {"sample_id": [f"s{i:03d}" for i in range(values.size)], "metric": "m", "value": values}
            ),
            {"m": True},
        )
        s = AuditSettings(**{**settings.to_dict(), "seed": r})
        naive = group_tables(wide, [], {"m": True}, s)[0].iloc[0]
        clus = group_tables(wide, [], {"m": True}, s, clusters=codes)[0].iloc[0]
        hits_naive += naive["mean_ci_low"] <= 0.0 <= naive["mean_ci_high"]
        hits_cluster += clus["mean_ci_low"] <= 0.0 <= clus["mean_ci_high"]
    assert hits_naive / reps < 0.80
    assert 0.89 <= hits_cluster / reps <= 0.98


def test_false_positive_rate_cluster_permutation_vs_naive():
    """Two groups of 12 patients x 5 images with no group effect (patient effect sd 1, noise 0.5): the
    image-level permutation test of the gap rejects far too often at 0.05; permuting patients holds the
    level (200 data sets: binomial sd about 0.015 at 0.05)."""
    rng = np.random.default_rng(5)
    settings = AuditSettings(group_by=("sex",), permutations=199, min_group_size=5)
    reject_naive = reject_cluster = 0
    reps = 200
    for r in range(reps):
        values, codes = _clustered(rng, 24, 5, 1.0, 0.5)
        ids = [f"s{i:03d}" for i in range(values.size)]
        sex = np.where(codes % 2 == 0, "F", "M")
        wide = wide_records(pd.DataFrame({"sample_id": ids, "metric": "m", "value": values}), {"m": True})
        grouping = make_grouping("sex", ids, pd.DataFrame({"sex": sex}, index=ids))
        s = AuditSettings(**{**settings.to_dict(), "seed": r})
        naive = across_group_tests(wide, [grouping], s)
        clus = across_group_tests(wide, [grouping], s, clusters=codes)
        reject_naive += naive.loc[naive["family"] == "gap_permutation", "p_value"].iloc[0] <= 0.05
        reject_cluster += clus.loc[clus["family"] == "gap_permutation", "p_value"].iloc[0] <= 0.05
    assert reject_naive / reps > 0.25
    assert reject_cluster / reps <= 0.09
