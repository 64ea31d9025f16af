"""Speed and accuracy of the fairness audit (cals_bench.fairness). Not a test: prints tables.

Sections (``--section``, default all):

- ``speed``: one full audit (group tables with 1,000 bootstrap resamples, Kruskal-Wallis and gap
  permutation tests with 1,000 permutations, feature GPI with intervals and its permutation test, 1-D GPI,
  Holm) of a 2,000-sample, 4-group synthetic record set with 128-d features; wall time per stage.
- ``table``: GPI estimators against analytic W1 across n and d: exact EMD (POT) versus normalised sliced
  W1 (POT, ``--projections`` directions), in two scenarios with a known answer:
  A "shift": independent ref ~ N(0, I_d), out ~ N(delta, I_d), |delta| = 1, W1 = 1;
  B "enhancer": paired out = ref + 0.3 eps, W1 = (sqrt(1.09) - 1) E||Z_d|| (scaled Gaussian).
- ``power``: rejection rates at alpha = 0.05 over ``--reps`` seeds of the simulated enhancer that adds 30%
  more noise to one group (power) and of the unbiased one (false-positive rate), for every test family.
- ``coverage``: coverage of 95% intervals (basic versus percentile) where the truth is known.
- ``clusters``: clustered data (patients x images, a random patient effect): coverage of 95% intervals of a
  mean and of a two-group difference, and the false-positive rate of the gap permutation test, resampling
  images (naive) versus patients (``cluster_by``), across intra-cluster correlations.

Run: ``.venv/bin/python benchmarks/fairness_speed.py`` (about 5 minutes on 2 cores), or one section.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import time

import numpy as np
import pandas as pd
from scipy.special import gammaln

from cals_bench.fairness import AuditSettings, audit, feature_gpi_tables, group_tables, make_grouping
from cals_bench.fairness.frame import wide_records
from cals_bench.fairness.gpi import metric_gpi_tables
from cals_bench.fairness.significance import across_group_tests
from cals_bench.fairness.synthetic import simulated_enhancer_data
from cals_bench.fairness.wasserstein import exact_w1, random_projections, sliced_w1


def _expected_norm(d: int) -> float:
    """E||Z|| for Z ~ N(0, I_d)."""
    return math.sqrt(2.0) * math.exp(gammaln((d + 1) / 2) - gammaln(d / 2))


def section_speed(repeats: int, projections: int) -> None:
    print("\n== speed: full audit, 2,000 samples, 4 groups, 128-d features ==")
    data = simulated_enhancer_data(
        n=2000, dim=128, biased_group="d", degradation=1.1, nan_fraction=0.02, seed=0
    )
    settings = AuditSettings(
        group_by=("group",), min_group_size=20, bootstrap=1000, permutations=1000, gpi_projections=projections
    )
    print(
        f"settings: bootstrap={settings.bootstrap} permutations={settings.permutations} "
        f"gpi_exact_max_n={settings.gpi_exact_max_n} gpi_projections={settings.gpi_projections} "
        f"(groups of 500 -> sliced)"
    )
    audit(data.records, data.attributes, settings, directions=data.directions, features=data.features)  # warm
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = audit(
            data.records, data.attributes, settings, directions=data.directions, features=data.features
        )
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    print(
        f"full audit: wall min {min(walls):.2f} s (median {np.median(walls):.2f}), "
        f"CPU min {min(cpus):.2f} s (median {np.median(cpus):.2f}) over {repeats} runs; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("  (the work is single-threaded numpy: on an idle machine wall time ~ CPU time)")
    # Stage breakdown (same work, called one by one).
    wide = wide_records(data.records, data.directions)
    grouping = make_grouping("group", list(wide.index), data.attributes)
    stages = {}
    t = time.perf_counter()
    group_tables(wide, [grouping], data.directions, settings)
    stages["group tables (2 metrics x 5 rows, mean+median bootstrap)"] = time.perf_counter() - t
    t = time.perf_counter()
    across_group_tests(wide, [grouping], settings)
    stages["Kruskal-Wallis + gap permutation (2 metrics)"] = time.perf_counter() - t
    t = time.perf_counter()
    feature_gpi_tables(data.features, data.attributes, settings)
    stages["feature GPI (4 x 1,000 bootstrap + 1,000 permutations)"] = time.perf_counter() - t
    t = time.perf_counter()
    metric_gpi_tables(wide, [grouping], "lpips", settings)
    stages["1-D GPI on lpips"] = time.perf_counter() - t
    for k, v in stages.items():
        print(f"  {k:60s} {v:6.2f} s wall")
    s = res.gpi_summary.iloc[0]
    ci = f"[{s['gpi_gap_ci_low']:.4f}, {s['gpi_gap_ci_high']:.4f}]"
    print(f"headline: gpi_gap = {s['gpi_gap']:.4f} {ci}, p = {s['p_value']:.4f}")


def section_table(projections: int) -> None:
    print(f"\n== table: exact vs normalised sliced W1 ({projections} projections) against the analytic W1 ==")
    header = f"{'scenario':9s} {'d':>4s} {'n':>5s} {'W1':>7s} {'exact':>8s} {'err':>8s} {'t_exact':>8s} "
    header += f"{'sliced':>8s} {'err':>8s} {'t_POT':>7s}"
    print(header)
    proj_cache: dict[int, np.ndarray] = {}
    for scenario in ("shift", "enhancer"):
        for d in (128, 256):
            proj = proj_cache.setdefault(d, random_projections(d, projections, seed=0))
            for n in (50, 100, 250, 500, 1000, 2000):
                rng = np.random.default_rng(1000 + n + d)
                ref = rng.standard_normal((n, d))
                if scenario == "shift":
                    delta = np.zeros(d)
                    delta[0] = 1.0
                    out = rng.standard_normal((n, d)) + delta
                    truth = 1.0
                else:
                    out = ref + 0.3 * rng.standard_normal((n, d))
                    truth = (math.sqrt(1.09) - 1.0) * _expected_norm(d)
                t = time.perf_counter()
                ex = exact_w1(ref, out)
                t_ex = time.perf_counter() - t
                t = time.perf_counter()
                sl = sliced_w1(ref, out, proj)
                t_sl = time.perf_counter() - t
                print(
                    f"{scenario:9s} {d:4d} {n:5d} {truth:7.3f} {ex:8.3f} {ex - truth:+8.3f} {t_ex:8.3f} "
                    f"{sl:8.3f} {sl - truth:+8.3f} {t_sl:7.3f}"
                )


def section_power(reps: int, degradations: tuple[float, ...] = (1.1, 1.3)) -> None:
    print(f"\n== power / false-positive rate at alpha = 0.05 over {reps} seeds (no correction) ==")
    print("simulated enhancer: 4 groups x 60 samples, d = 32; group d gets more noise (x degradation) or not")
    rates: dict[str, dict[object, list[bool]]] = {}
    for exact in (True, False):
        settings = AuditSettings(
            group_by=("group",),
            min_group_size=10,
            bootstrap=0,
            permutations=200,
            gpi_exact_max_n=100 if exact else 0,
            gpi_projections=50,
            correction="none",
        )
        for degradation in (None, *degradations):
            for seed in range(reps):
                data = simulated_enhancer_data(
                    n=240,
                    dim=32,
                    biased_group="d" if degradation else None,
                    degradation=degradation or 1.0,
                    seed=seed,
                )
                # A fresh permutation seed per repetition: with one fixed set of permutations the rejection
                # rate over data draws is conditional on that set and need not equal alpha.
                res = audit(
                    data.records,
                    data.attributes,
                    dataclasses.replace(settings, seed=seed),
                    directions=data.directions,
                    features=data.features,
                )
                for r in res.tests.to_dict("records"):
                    if r["family"] == "gpi_gap_permutation":
                        name = f"GPI gap, {'exact EMD' if exact else 'sliced (50 dirs)'}"
                    elif exact:
                        name = f"{r['family']} on {r['target']}"
                    else:
                        continue
                    rates.setdefault(name, {}).setdefault(degradation, []).append(r["p_value"] <= 0.05)
    cols = "".join(f" {'power x' + str(d):>11s}" for d in degradations)
    print(f"{'test':40s}{cols} {'FPR':>7s}")
    for name, v in rates.items():
        powers = "".join(f" {np.mean(v[d]):11.2f}" for d in degradations)
        print(f"{name:40s}{powers} {np.mean(v[None]):7.2f}")


def section_coverage(reps: int) -> None:
    print(
        f"\n== coverage of 95% intervals over {reps} seeds (truth known; 4 groups, d = 32, 300 resamples) =="
    )
    d = 32
    truth_gpi = (math.sqrt(1.09) - 1.0) * _expected_norm(d)  # every group: scaled-Gaussian W1
    truth_diff = 20 * math.log10(1.3)  # psnr gap: group d shifted by -20 log10(1.3) dB, others equal
    rows_out = []
    for n in (400, 2000):
        hits = {"gpi per group": [0, 0], "gpi_gap = 0": [0, 0], "psnr difference (x1.3)": [0, 0]}
        counts = dict.fromkeys(hits, 0)
        for seed in range(reps):
            fair = simulated_enhancer_data(n=n, dim=d, seed=seed)
            biased = simulated_enhancer_data(n=n, dim=d, biased_group="d", degradation=1.3, seed=seed)
            for j, kind in enumerate(("basic", "percentile")):
                s = AuditSettings(
                    group_by=("group",), min_group_size=10, bootstrap=300, permutations=0,
                    gpi_exact_max_n=0, gpi_projections=50, distance_interval=kind,
                )  # fmt: skip
                rows, summ = feature_gpi_tables(fair.features, fair.attributes, s)
                hits["gpi per group"][j] += int(
                    ((rows.gpi_ci_low <= truth_gpi) & (truth_gpi <= rows.gpi_ci_high)).sum()
                )
                hits["gpi_gap = 0"][j] += int(summ.iloc[0]["gpi_gap_ci_low"] <= 0.0)
                wide = wide_records(biased.records, biased.directions)
                g = make_grouping("group", list(wide.index), biased.attributes)
                _, disp = group_tables(wide, [g], biased.directions, s)
                r = disp[disp.metric == "psnr"].iloc[0]
                hits["psnr difference (x1.3)"][j] += int(
                    r["difference_ci_low"] <= truth_diff <= r["difference_ci_high"]
                )
            counts["gpi per group"] += len(rows)
            counts["gpi_gap = 0"] += 1
            counts["psnr difference (x1.3)"] += 1
        truths = {"gpi per group": truth_gpi, "gpi_gap = 0": 0.0, "psnr difference (x1.3)": truth_diff}
        for k, (basic, pct) in hits.items():
            rows_out.append((k, n // 4, truths[k], basic / counts[k], pct / counts[k], counts[k]))
    head = f"{'quantity (sliced GPI)':24s} {'n/group':>7s} {'truth':>8s}"
    print(f"{head} {'basic':>7s} {'percentile':>10s} {'intervals':>9s}")
    for k, m, truth, basic, pct, count in rows_out:
        print(f"{k:24s} {m:7d} {truth:8.4f} {basic:7.2f} {pct:10.2f} {count:9d}")


def section_clusters(reps: int) -> None:
    """Naive versus cluster resampling on data with a patient effect (truth: mean 0, no group effect)."""
    print(
        f"\n== clustered data over {reps} seeds: 2 groups x 15 patients x 5 images; patient effect sd tau, "
        "noise sd 0.5; 95% percentile intervals (400 resamples) and gap permutation tests (199) =="
    )
    print(f"{'tau':>5s} {'ICC':>5s} {'mean cov naive':>14s} {'cluster':>8s} {'diff cov naive':>14s} "
          f"{'cluster':>8s} {'FPR naive':>9s} {'cluster':>8s}")  # fmt: skip
    for tau in (0.0, 0.5, 1.0):
        rng = np.random.default_rng(0)
        cov = np.zeros((2, 2))
        rej = np.zeros(2)
        for r in range(reps):
            codes = np.repeat(np.arange(30), 5)
            values = rng.normal(0.0, tau, 30)[codes] + rng.normal(0.0, 0.5, codes.size)
            ids = [f"s{i:03d}" for i in range(codes.size)]
            group = np.where(codes % 2 == 0, "a", "b")
            wide = wide_records(pd.DataFrame({"sample_id": ids, "metric": "m", "value": values}), {"m": True})
            g = make_grouping("group", ids, pd.DataFrame({"group": group}, index=ids))
            s = AuditSettings(group_by=("group",), bootstrap=400, permutations=199, seed=r, min_group_size=5,
                              distance_interval="percentile")  # fmt: skip
            for j, clusters in enumerate((None, codes)):
                groups, _ = group_tables(wide, [g], {"m": True}, s, clusters=clusters)
                o = groups.iloc[0]
                cov[0, j] += o["mean_ci_low"] <= 0.0 <= o["mean_ci_high"]
                tests = across_group_tests(wide, [g], s, clusters=clusters)
                rej[j] += tests.loc[tests["family"] == "gap_permutation", "p_value"].iloc[0] <= 0.05
                cov[1, j] += _diff_covers_zero(values, group, codes if clusters is not None else None, r)
        icc = tau**2 / (tau**2 + 0.25)
        print(f"{tau:5.1f} {icc:5.2f} {cov[0, 0] / reps:14.2f} {cov[0, 1] / reps:8.2f} "
              f"{cov[1, 0] / reps:14.2f} {cov[1, 1] / reps:8.2f} {rej[0] / reps:9.2f} {rej[1] / reps:8.2f}")  # fmt: skip


def _diff_covers_zero(values, group, codes, seed) -> bool:
    """95% percentile interval of mean(a) - mean(b) from stratified (cluster) bootstrap draws covers 0."""
    from cals_bench.fairness.bootstrap import bootstrap_mean_median, percentile_interval, rng_for
    from cals_bench.fairness.clusters import ClusterLayout
    from cals_bench.fairness.clusters import bootstrap_mean_median as cluster_boot

    draws = []
    for name in ("a", "b"):
        v = values[group == name]
        rng = rng_for(seed, "diff", name)
        if codes is None:
            draws.append(bootstrap_mean_median(v, 400, rng)[0])
        else:
            draws.append(cluster_boot(v, ClusterLayout(np.arange(v.size), codes[group == name]), 400, rng)[0])
    lo, hi = percentile_interval(draws[0] - draws[1], 0.95)
    return lo <= 0.0 <= hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--section", choices=("all", "speed", "table", "power", "coverage", "clusters"), default="all"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the full audit")
    ap.add_argument("--reps", type=int, default=50, help="seeds for power and coverage")
    ap.add_argument("--projections", type=int, default=AuditSettings().gpi_projections)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, cpus {os.cpu_count()}")
    if args.section in ("all", "speed"):
        section_speed(args.repeats, args.projections)
    if args.section in ("all", "table"):
        section_table(args.projections)
    if args.section in ("all", "power"):
        section_power(args.reps)
    if args.section in ("all", "coverage"):
        section_coverage(args.reps)
    if args.section in ("all", "clusters"):
        section_clusters(args.reps)


if __name__ == "__main__":
    main()
