"""Leaderboard columns read at a glance: parameters, time per megapixel, non-default arguments, published
figures with our difference and a flag, the Pareto front of the trade-off plots; the comparison's overall
paired test at fewer pairs than ``min_group_size`` (exact Wilcoxon, checked against scipy and against a
full enumeration of sign flips); the audit headline that ``run --json`` carries."""

from __future__ import annotations

import csv
import io
import itertools
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from cals_bench.enhancer import Enhancer
from cals_bench.published import Published, agreements, normalise


class PublishedModel(Enhancer):
    """A brightening curve with figures declared for the test protocol: one our run matches, one it cannot."""

    name = "published-test-model"
    published: ClassVar[dict[str, Any]] = {
        "glance-test": [
            Published(kind="paper", source="a paper", scores={"psnr": 0.0}, args={"gain": 2.0}),
            Published(
                kind="upstream-code",
                source="the authors' script",
                scores={"psnr": 0.0},
                args={"gain": 2.0},
                note="set by the test to our own mean",
            ),
        ]
    }

    def __init__(self, *, gain: float = 2.0) -> None:
        super().__init__()
        self.gain = float(gain)
        self.args["gain"] = self.gain

    def enhance(self, x):
        return (x * self.gain).clamp(0, 1)


# ------------------------------------------------------------------------------------------------------------
# pure pieces


def test_pareto_front_hand_example_and_directions():
    from cals_bench.report.plots import pareto_front

    # (time, quality): (3, 11) is beaten by (2, 12); (2.5, 12) ties on quality and is slower; NaN never counts.
    x = [1.0, 2.0, 3.0, 0.5, 2.5, float("nan")]
    y = [10.0, 12.0, 11.0, 5.0, 12.0, 99.0]
    assert pareto_front(x, y).tolist() == [True, True, False, True, False, False]
    # Lower quality is better (e.g. LPIPS): only the fastest point with the lowest value survives with it.
    assert pareto_front(x, y, y_higher_is_better=False).tolist() == [False, False, False, True, False, False]
    # Brute force on random points: a point is on the front iff no other point is >= on both and > on one.
    rng = np.random.default_rng(0)
    xs, ys = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)
    expected = [
        not any(
            xs[j] <= xs[i] and ys[j] >= ys[i] and (xs[j] < xs[i] or ys[j] > ys[i])
            for j in range(40)
            if j != i
        )
        for i in range(40)
    ]
    assert pareto_front(xs, ys).tolist() == expected


def test_published_entries_match_by_arguments_and_tolerance():
    # Short form: one paper entry per metric.
    short = normalise({"lol-v1": {"psnr": (23.38, "README")}})["lol-v1"]
    assert [(p.kind, dict(p.scores), p.source) for p in short] == [("paper", {"psnr": 23.38}, "README")]
    with pytest.raises(ValueError, match="published figure kind must be one of"):
        Published(kind="blog", source="x", scores={"psnr": 1.0})
    with pytest.raises(ValueError, match="published psnr must be a finite number"):
        Published(kind="paper", source="x", scores={"psnr": float("nan")})

    from cals_bench.baselines.iat import IAT

    entries = normalise(IAT.published)["lol-v1"]
    # The README figure applies to the lol_v1 weights only.
    ours = {"psnr": 23.3810, "ssim": 0.8081}
    got = agreements(entries, {"variant": "lol_v1"}, ours)
    readme = [a for a in got if a.entry.kind == "readme"]
    assert {a.metric: a.reported for a in readme} == {"psnr": 23.38, "ssim": 0.809}
    psnr = next(a for a in readme if a.metric == "psnr")
    assert psnr.diff == pytest.approx(0.001, abs=1e-12)
    assert psnr.ok
    assert not [a for a in agreements(entries, {"variant": "lol"}, ours) if a.entry.kind == "readme"]
    # 0.2 dB off is flagged.
    off = next(a for a in agreements(entries, {"variant": "lol_v1"}, {"psnr": 23.18}) if a.metric == "psnr")
    assert off.ok is False
    assert off.diff == pytest.approx(-0.2)


def _meta(cls: type, args: dict, given: dict | None) -> dict:
    model = {"name": cls.name, "class": f"{cls.__module__}:{cls.__qualname__}", "args": args}
    if given is not None:
        model["args_given"] = given
    return {"model": model}


def test_non_default_arguments():
    from cals_bench.baselines.lime import Lime
    from cals_bench.baselines.sci import SCI
    from cals_bench.report.model_columns import non_default_args
    from cals_bench.sanity import Gamma

    lime_args = dict(Lime().args)  # every recorded constant: solver, radius (derived), denoise ...
    assert len(lime_args) > 5
    # A default run shows nothing, with or without the record of what the user gave.
    assert non_default_args(_meta(Lime, lime_args, {})) == {}
    assert non_default_args(_meta(Lime, lime_args, None)) == {}
    changed = dict(Lime(alpha=0.3).args)
    assert non_default_args(_meta(Lime, changed, {"alpha": 0.3})) == {"alpha": 0.3}
    assert non_default_args(_meta(Lime, changed, None)) == {"alpha": 0.3}  # older runs: from the signature
    # A user who types the default gets no column entry; the variant counts against default_variant.
    assert non_default_args(_meta(Gamma, {"gamma": 2.2}, {"gamma": 2.2})) == {}
    assert non_default_args(_meta(Gamma, {"gamma": 2.5}, {"gamma": 2.5})) == {"gamma": 2.5}
    assert non_default_args(_meta(SCI, {"variant": "medium"}, {"variant": "medium"})) == {}
    assert non_default_args(_meta(SCI, {"variant": "easy"}, {"variant": "easy"})) == {"variant": "easy"}
    # A class that cannot be imported any more: every argument is shown.
    gone = {"model": {"name": "x", "class": "no_such_module_xyz:Model", "args": {"a": 1}}}
    assert non_default_args(gone) == {"a": 1}


def test_speed_is_the_median_time_per_megapixel():
    from cals_bench.report.model_columns import speed

    samples = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "failed"],
            "time_ms": [30.0, 12.0, 24.0, 1.0],
            "height": [400, 400, 200, 400],
            "width": [600, 600, 300, 600],
        }
    )
    meta = {"environment": {"device": "cpu", "device_name": "Some CPU", "torch_threads": 2}}
    sp = speed(samples, meta)
    rates = [30.0 / 0.24, 12.0 / 0.24, 24.0 / 0.06]  # ms per megapixel of each scored sample
    assert sp.ms_per_megapixel == pytest.approx(float(np.median(rates)), rel=1e-12)
    assert sp.mean_ms_per_megapixel == pytest.approx(66.0 / 0.54, rel=1e-12)
    assert sp.n == 3
    assert sp.device_text == "cpu (Some CPU), 2 threads"


# ------------------------------------------------------------------------------------------------------------
# the overall paired test of two models at 15 pairs


def _exact_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided exact p of the signed-rank statistic by enumerating all 2^n sign assignments."""
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    total = ranks.sum()
    signs = np.array(list(itertools.product((0, 1), repeat=d.size)), dtype=float)
    w_plus = signs @ ranks
    extreme = min(observed, total - observed)
    return float(np.mean((w_plus <= extreme) | (w_plus >= total - extreme)))


def test_overall_paired_difference_is_tested_at_15_pairs():
    from cals_bench.fairness.settings import AuditSettings
    from cals_bench.fairness.significance import compare

    rng = np.random.default_rng(3)
    ids = [f"s{i:02d}" for i in range(15)]
    a = rng.normal(15.0, 2.0, 15)
    b = a - rng.normal(0.6, 0.8, 15)  # A better on average, with a spread of signs
    rec = lambda v: pd.DataFrame({"sample_id": ids, "metric": "psnr", "value": v})  # noqa: E731
    attrs = pd.DataFrame({"sample_id": ids, "grp": ["x"] * 8 + ["y"] * 7})
    settings = AuditSettings(group_by=("grp",), min_group_size=20, bootstrap=200, permutations=200)
    table = compare(rec(a), rec(b), attrs, settings, directions={"psnr": True}, label_a="A", label_b="B")
    overall = table[table["grouping"] == "overall"].iloc[0]
    d = a - b
    assert overall["n_pairs"] == 15
    assert not overall["small_group"]
    # scipy's exact test, and an independent enumeration of the 2^15 sign flips, to float precision.
    assert overall["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d, method="exact").pvalue, rel=1e-12)
    assert overall["p_wilcoxon"] == pytest.approx(_exact_signed_rank_p(d), rel=1e-9)
    assert math.isfinite(overall["p_bootstrap"])
    assert "Wilcoxon exact, n = 15 pairs" in overall["note"]
    assert "low power" in overall["note"]
    # Groups below min_group_size are still shown and not tested.
    groups = table[table["grouping"] == "grp"]
    assert groups["small_group"].all()
    assert groups["p_wilcoxon"].isna().all()
    assert groups["note"].str.contains("not tested").all()


# ------------------------------------------------------------------------------------------------------------
# a rendered leaderboard with published figures


PROTOCOL = """name: glance-test
version: 1
title: at-a-glance test
dataset:
  layout: synthetic
  clean_dir: clean
  manifest: manifest.csv
  degradation: {gamma: [1.2, 1.6], exposure: [0.1, 0.2], photons: [300.0, 1000.0], read_noise: [0.002, 0.008]}
metrics: [psnr, ssim]
audit:
  group_by: [grp]
  min_group_size: 2
  bootstrap: 50
  permutations: 50
batch_size: 2
seed: 0
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    from cals_bench import protocol
    from cals_bench.engine import evaluate
    from cals_bench.report import render_leaderboard
    from cals_bench.store import Store

    base = tmp_path_factory.mktemp("glance")
    data = base / "data"
    (data / "clean").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = ["image,grp"]
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(data / "clean" / f"{i}.png")
        rows.append(f"{i}.png,{'a' if i % 2 else 'b'}")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    (base / "p.yaml").write_text(PROTOCOL)
    proto = protocol.load(str(base / "p.yaml"))
    store = Store(base / "results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(base / "xdg"))
        ours = evaluate(proto, PublishedModel(), data_root=data, store=store, progress=False)
        # The upstream-code entry is set to our own mean (within tolerance); the paper's 0.0 dB is far off.
        mean = ours.meta["summary"]["psnr"]["mean"]
        entries = PublishedModel.published["glance-test"]
        PublishedModel.published = {
            "glance-test": [entries[0], Published(**{**entries[1].__dict__, "scores": {"psnr": mean - 0.05}})]
        }
        other = evaluate(proto, "gamma", {"gamma": 2.5}, data_root=data, store=store, progress=False)
        page = render_leaderboard(store, "glance-test", root=base / "reports")
    return store, ours, other, page


def test_leaderboard_columns_and_exports(board):
    from cals_bench.report.model_columns import fmt_speed

    store, ours, other, page = board
    folder = page.parent
    table = {r["run_id"]: r for r in csv.DictReader(io.StringIO((folder / "leaderboard.csv").read_text()))}
    mine, gamma = table[ours.run_id], table[other.run_id]
    mean = ours.meta["summary"]["psnr"]["mean"]
    # Published figure 0.0 dB: diff = our mean, flagged; authors' code at mean - 0.05: within 0.1 dB.
    assert float(mine["psnr_published"]) == 0.0
    assert float(mine["psnr_published_diff"]) == pytest.approx(mean, rel=1e-12)
    assert mine["psnr_published_within_tolerance"] == "False"
    assert float(mine["psnr_authors_code_diff"]) == pytest.approx(0.05, abs=1e-9)
    assert mine["psnr_authors_code_within_tolerance"] == "True"
    assert gamma["psnr_published"] == ""  # gamma declares nothing
    # Parameters and speed, from the record and the per-sample rows.
    assert mine["parameters"] == "0"
    assert gamma["model_args_non_default"] == '{"gamma": 2.5}'
    samples = store.samples(ours.run_id)
    rate = samples["time_ms"] / (samples["height"] * samples["width"] / 1e6)
    assert float(mine["ms_per_megapixel"]) == pytest.approx(float(rate.median()), rel=1e-12)
    assert mine["model_args_non_default"] == ""
    assert mine["model_args"] == '{"gain": 2.0}'

    md = (folder / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| #"))
    assert "Params" in header
    assert "ms/MP" in header
    assert "Published" in header
    assert "authors' code" in header
    row = next(line for line in md.splitlines() if PublishedModel.name in line)
    assert "OFF" in row
    assert fmt_speed(float(rate.median())) in row
    assert "&quot;" not in md
    assert "&lt;" not in md

    html = page.read_text()
    assert "quality-vs-speed.png" in html
    assert "quality-vs-disparity.png" in html
    for name in ("quality-vs-speed.png", "quality-vs-disparity.png"):
        with Image.open(folder / "leaderboard-plots" / name) as im:
            assert im.size[0] > 300
            assert im.size[1] > 200
    assert 'badge failed">off</span>' in html  # the paper figure is flagged on the page, with why
    assert '<div class="why muted">no known reason: see the model card</div>' in html


def test_environment_names_the_cpu_and_its_load():
    import os
    from pathlib import Path

    import torch

    from cals_bench.provenance import environment

    env = environment(torch.device("cpu"))
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        if names:
            assert env["device_name"] == names[0]
    assert env["cpu_count"] == os.cpu_count()
    assert env["load_average"] is None or (math.isfinite(env["load_average"]) and env["load_average"] >= 0)


def test_run_json_carries_the_audit_headline(board, tmp_path):
    import json

    from click.testing import CliRunner

    from cals_bench.audits import load_audit
    from cals_bench.cli import main

    store, ours, _, _ = board
    data = store.get_run(ours.run_id)["data_root"]
    # The same data with a 1-D GPI of SSIM, through the CLI as a script would call it.
    (tmp_path / "p.yaml").write_text(
        PROTOCOL.replace("name: glance-test", "name: glance-test-gpi").replace(
            "  min_group_size: 2", "  min_group_size: 2\n  gpi_metric: ssim"
        )
    )
    res = CliRunner().invoke(
        main,
        [
            "run",
            "--protocol",
            str(tmp_path / "p.yaml"),
            "--model",
            "identity",
            "--data-root",
            data,
            "--results",
            str(tmp_path / "results"),
            "--json",
            "--no-report",
            "--quiet",
        ],
        env={"CALS_BENCH_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "xdg")},
    )
    assert res.exit_code == 0, res.output
    head = json.loads(res.stdout)["audit"]
    from cals_bench.store import Store

    run_store = Store(tmp_path / "results")
    run_id = json.loads(res.stdout)["run_id"]
    result, _ = load_audit(run_store, run_id)
    s = result.gpi_summary.iloc[0]
    assert head["grouped"]
    assert head["group_by"] == ["grp"]
    assert head["headline"] == "1-D GPI of SSIM by grp"
    assert head["gpi_sum"] == pytest.approx(float(s["gpi_sum"]), rel=1e-12)
    assert head["gpi_gap"] == pytest.approx(float(s["gpi_gap"]), rel=1e-12)
    assert head["p"] == pytest.approx(float(s["p_value"]))
    assert head["worst_group"] == s["worst_group"]
    worst = head["metric_worst_group"]
    # Recompute the worst PSNR group from the per-sample scores.
    scores = run_store.scores(run_id)
    psnr = scores[scores["metric"] == "psnr"].set_index("sample_id")["value"]
    grp = run_store.samples(run_id).set_index("sample_id")["attr.grp"]
    means = psnr.groupby(grp.reindex(psnr.index)).mean()
    assert worst["metric"] == "psnr"
    assert worst["group"] == means.idxmin()
    assert worst["mean"] == pytest.approx(means.min(), rel=1e-12)
    assert worst["difference"] == pytest.approx(means.max() - means.min(), rel=1e-9)
