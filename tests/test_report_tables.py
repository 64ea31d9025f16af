"""Leaderboards, group tables and comparisons carry the stored numbers; flags, caps, layout and the CLI.

Runs are real (engine on a small synthetic protocol with per-sample groups, PSNR/SSIM plus LPIPS made
unavailable on purpose); every number checked here is read back from the store or from the fairness
package's own functions on the stored records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

PROTOCOL = """name: rep-test
version: 1
title: report test
dataset:
  layout: synthetic
  clean_dir: clean
  manifest: manifest.csv
  degradation:
    {{gamma: [1.2, 1.6], exposure: [0.1, 0.2], photons: [300.0, 1000.0], read_noise: [0.002, 0.008]}}
metrics: [psnr, ssim, lpips]
audit:
  group_by: [grp]
  min_group_size: 3
  bootstrap: 200
  permutations: 100
batch_size: 8
seed: 0
"""


def _dataset(root: Path, n: int, n_groups: int, size: tuple[int, int]) -> Path:
    """``n`` random clean images in ``root/clean`` and a manifest cycling through ``n_groups`` groups."""
    rng = np.random.default_rng(1)
    (root / "clean").mkdir(parents=True)
    rows = ["image,grp"]
    for i in range(n):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "clean" / f"img{i:03d}.png")
        rows.append(f"img{i:03d}.png,g{i % n_groups}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """identity and gamma (with the GT-mean columns) on 12 samples in 2 groups; LPIPS unavailable."""
    base = tmp_path_factory.mktemp("report-tables")
    with pytest.MonkeyPatch.context() as mp:  # conftest's isolation is function-scoped
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        mp.setenv("CALS_BENCH_WEIGHTS", str(base / "no-weights"))  # LPIPS cannot load: recorded unavailable
        mp.setenv("XDG_CACHE_HOME", str(base / "xdg-cache"))
        mp.setenv("TORCH_HOME", str(base / "xdg-cache" / "torch"))
        from cals_bench import protocol
        from cals_bench.engine import evaluate
        from cals_bench.store import Store

        data = _dataset(base / "data", 12, 2, (40, 56))
        (base / "proto.yaml").write_text(PROTOCOL.format())
        proto = protocol.load(str(base / "proto.yaml"))
        store = Store(base / "results")
        ident = evaluate(proto, "identity", {}, data_root=data, store=store, progress=False)
        gamma = evaluate(
            proto, "gamma", {"gamma": 2.0}, data_root=data, store=store, progress=False,
            extra_metrics=("psnr_gtmean", "ssim_gtmean"),
        )  # fmt: skip
    return {"base": base, "store": store, "identity": ident.run_id, "gamma": gamma.run_id, "data": data}


def test_leaderboard_holds_the_stored_numbers_and_the_audit_intervals(runs):
    from cals_bench.fairness import AuditSettings, group_tables, wide_records
    from cals_bench.report import build_leaderboard
    from cals_bench.report.leaderboard import frame

    store = runs["store"]
    lb = build_leaderboard(store, "rep-test", root=runs["base"] / "reports")
    table = frame(lb).set_index("run_id")
    settings = AuditSettings(group_by=("grp",), min_group_size=3, bootstrap=200, permutations=100, seed=0)
    for run_id in (runs["identity"], runs["gamma"]):
        meta = store.get_run(run_id)
        wide = wide_records(store.scores(run_id), meta["metric_directions"])
        overall, _ = group_tables(wide, [], meta["metric_directions"], settings)
        overall = overall.set_index("metric")
        for metric, s in meta["summary"].items():
            # Exactly the stored mean (the table copies it), and exactly the fairness package's overall
            # interval for the protocol's settings (same seeded resamples): tolerance 0.
            assert table.at[run_id, f"{metric}_mean"] == s["mean"]
            assert table.at[run_id, f"{metric}_ci_low"] == overall.at[metric, "mean_ci_low"]
            assert table.at[run_id, f"{metric}_ci_high"] == overall.at[metric, "mean_ci_high"]
            assert table.at[run_id, f"{metric}_n"] == s["count"] == 12
        assert table.at[run_id, "lpips_state"] == "unavailable"
        assert math.isnan(table.at[run_id, "lpips_mean"])
    # Ranked by PSNR, best first; GT-mean columns after the blind ones; GT-mean cells only where scored.
    assert list(table.index) == [runs["gamma"], runs["identity"]]
    assert [c.metric for c in lb.columns] == ["psnr", "ssim", "lpips", "psnr_gtmean", "ssim_gtmean"]
    assert [c.arrow for c in lb.columns] == ["\u2191", "\u2191", "\u2193", "\u2191", "\u2191"]
    assert table.at[runs["gamma"], "psnr_gtmean_state"] == "ok"
    assert table.at[runs["identity"], "psnr_gtmean_state"] == "absent"
    flags = {r.run_id: {f.text for f in r.flags} for r in lb.rows}
    assert flags[runs["gamma"]] == {"sanity row", "GT-mean columns", "missing: lpips"}
    assert flags[runs["identity"]] == {"sanity row", "missing: lpips"}
    # GPI: LPIPS (the 1-D GPI metric) is missing and no features are stored, so the row has none and a
    # note says why.
    assert all(r.gpi is None for r in lb.rows)
    assert any("no GPI" in n for n in lb.notes)


def test_paper_table_formats_agree(runs):
    from cals_bench.report import build_leaderboard, leaderboard_text
    from cals_bench.report.formatting import fmt_value

    lb = build_leaderboard(runs["store"], "rep-test", root=runs["base"] / "reports")
    meta = runs["store"].get_run(runs["gamma"])
    psnr = meta["summary"]["psnr"]["mean"]

    md = leaderboard_text(lb, "markdown").splitlines()
    rows = [line for line in md if line.startswith("| ")]
    assert len({line.count(" | ") for line in rows}) == 1
    assert len(rows) == 3
    assert "PSNR \u2191" in rows[0]
    assert "LPIPS \u2193" in rows[0]
    gamma_row = next(r for r in rows if "| gamma |" in r)
    assert f"| {fmt_value(psnr, metric='psnr')} [" in gamma_row
    assert "unavailable" in gamma_row

    tex = leaderboard_text(lb, "latex")
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 2
    assert all(line.endswith(r"\\") for line in body)
    assert r"PSNR $\uparrow$" in tex
    assert r"\begin{tabular}" in tex
    assert r"\scriptsize [" in tex

    parsed = list(csv.DictReader(io.StringIO(leaderboard_text(lb, "csv"))))
    row = next(r for r in parsed if r["run_id"] == runs["gamma"])
    assert float(row["psnr_mean"]) == psnr  # full precision survives the CSV (repr of the float)
    assert row["model_args"] == json.dumps({"gamma": 2.0})


class _Cells(HTMLParser):
    """(row run id, cell data-sort) pairs of the leaderboard's body."""

    def __init__(self):
        super().__init__()
        self.run = None
        self.cells: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-run" in a:
            self.run = a["data-run"]
        if tag == "td" and self.run and a.get("data-sort"):
            self.cells.append((self.run, a["data-sort"]))


def test_audit_page_exports_and_leaderboard_links(runs, monkeypatch):
    from cals_bench.report import render_audit
    from cals_bench.report.layout import ENV_REPORTS

    store = runs["store"]
    monkeypatch.setenv(ENV_REPORTS, str(runs["base"] / "env-reports"))
    page = render_audit(store, runs["gamma"])
    assert page == runs["base"] / "env-reports" / "rep-test-v1" / "runs" / runs["gamma"] / "index.html"
    folder = page.parent
    for name in ("audit.json", "audit.txt", "groups.md", "groups.tex", "groups.csv", "plots/scatter.png"):
        assert (folder / name).is_file(), name
    # The refreshed leaderboard links to this audit (relative) and not to the identity run's, not rendered.
    board = folder.parents[1] / "leaderboard.html"
    text = board.read_text()
    assert f'href="runs/{runs["gamma"]}/index.html"' in text
    assert f'href="runs/{runs["identity"]}/index.html"' not in text
    cells = _Cells()
    cells.feed(text)
    for run_id in (runs["gamma"], runs["identity"]):
        sorts = {v for r, v in cells.cells if r == run_id}
        for s in store.get_run(run_id)["summary"].values():
            assert repr(s["mean"]) in sorts

    # Group table CSV = the audit's group rows; the audit is cached and reused for the same run.
    groups = pd.read_csv(folder / "groups.csv")
    audit = json.loads((folder / "audit.json").read_text())
    assert len(groups) == len(audit["frames"]["groups"]["data"])
    assert set(groups["group"]) == {"all", "g0", "g1"}
    mtime = (folder / "audit.json").stat().st_mtime_ns
    render_audit(store, runs["gamma"], refresh_leaderboard=False)
    assert (folder / "audit.json").stat().st_mtime_ns == mtime


def test_comparison_and_cli(runs):
    from click.testing import CliRunner

    from cals_bench.errors import CalsBenchError
    from cals_bench.report import render_comparison
    from cals_bench.report.cli import compare, leaderboard, report

    store, reports = runs["store"], runs["base"] / "cli-reports"
    common = ["--results", str(store.root), "--reports", str(reports)]
    cli = CliRunner()
    out = cli.invoke(compare, [runs["gamma"], runs["identity"], *common])
    assert out.exit_code == 0, out.output
    # compare prints the per-group table, then the page's path on the last line
    page = Path(out.output.strip().splitlines()[-1])
    assert "| overall | all | A - B (paired) |" in out.output
    assert (page.parent / "group_table.md").read_text(encoding="utf-8").strip() in out.output
    table = pd.read_csv(page.parent / "compare.csv")
    overall = table[(table["metric"] == "psnr") & (table["grouping"] == "overall")].iloc[0]
    a = store.scores(runs["gamma"]).query("metric == 'psnr'").set_index("sample_id")["value"]
    b = store.scores(runs["identity"]).query("metric == 'psnr'").set_index("sample_id")["value"]
    # The paired mean difference over the 12 shared samples; float sums in another order: 1e-9 dB.
    assert overall["mean_diff"] == pytest.approx(float((a - b.reindex(a.index)).mean()), abs=1e-9)
    assert overall["n_pairs"] == 12
    assert overall["better"] == "A"
    assert set(table["group"]) == {"all", "g0", "g1"}
    with pytest.raises(CalsBenchError, match="two different runs"):
        render_comparison(store, runs["gamma"], runs["gamma"], root=reports)

    out = cli.invoke(leaderboard, ["--protocol", "rep-test", "--markdown", *common])
    assert out.exit_code == 0
    assert out.output.startswith("## Leaderboard: rep-test v1")
    tex = reports / "t.tex"
    out = cli.invoke(leaderboard, ["--protocol", "rep-test", "--latex", "--out", str(tex), *common])
    assert out.exit_code == 0
    assert tex.read_text().startswith("% generated by cals-bench")
    out = cli.invoke(leaderboard, ["--protocol", "rep-test", "--html", *common])
    assert out.exit_code == 0
    html = Path(out.output.strip().splitlines()[-1]).read_text()
    # --html renders the missing audit pages so every row links to one.
    assert html.count('/index.html"') == 2
    out = cli.invoke(report, [runs["identity"], "--out", str(reports / "custom"), *common])
    assert out.exit_code == 0
    assert Path(out.output.strip()) == reports / "custom" / "index.html"
    out = cli.invoke(leaderboard, ["--protocol", "no-such-protocol", *common])
    assert out.exit_code != 0


def test_large_protocol_is_capped(tmp_path, monkeypatch):
    """40 samples in 10 groups at 250x120: the image grid stays within its stated limits."""
    from cals_bench import protocol
    from cals_bench.engine import evaluate
    from cals_bench.report import render_audit
    from cals_bench.report.grids import MAX_GRID_GROUPS, MAX_GRID_SAMPLES, THUMB_PX
    from cals_bench.store import Store

    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "no-weights"))
    data = _dataset(tmp_path / "data", 40, 10, (120, 250))
    (tmp_path / "proto.yaml").write_text(
        PROTOCOL.format()
        .replace("[psnr, ssim, lpips]", "[psnr]")
        .replace("min_group_size: 3", "min_group_size: 2")
    )
    store = Store(tmp_path / "results")
    run = evaluate(protocol.load(str(tmp_path / "proto.yaml")), "identity", {}, data_root=data, store=store,
                   progress=False)  # fmt: skip
    page = render_audit(store, run.run_id, root=tmp_path / "reports")
    text = page.read_text()
    cards = {
        line.split('data-sample="')[1].split('"')[0] for line in text.splitlines() if 'data-sample="' in line
    }
    assert 3 <= len(cards) <= MAX_GRID_SAMPLES
    assert text.count("<h3>grp = ") == MAX_GRID_GROUPS
    assert f"showing {len(cards)} of 40 scored samples and {MAX_GRID_GROUPS} of 10 groups" in text
    thumbs = list((page.parent / "images").glob("*.jpg"))
    assert len(thumbs) == 3 * len(cards)  # low, output, reference per distinct sample, not per card
    for path in thumbs:
        with Image.open(path) as im:
            assert max(im.size) == THUMB_PX  # 250 px wide inputs, downscaled to the stated limit


def test_group_table_on_a_subset_audits_and_compares_only_those_samples(runs):
    from cals_bench.report.group_table import group_table

    store = runs["store"]
    out = group_table(store, runs["gamma"], runs["identity"], where={"grp": "g0"}, group_by=[])
    assert out["subset"] == {"where": {"grp": "g0"}, "group_by": []}
    g0 = {s for s, g in store.samples(runs["gamma"]).set_index("sample_id")["attr.grp"].items() if g == "g0"}
    a = store.scores(runs["gamma"]).query("metric == 'psnr'").set_index("sample_id")["value"]
    b = store.scores(runs["identity"]).query("metric == 'psnr'").set_index("sample_id")["value"]
    ((paired,),) = [[p for p in out["paired"] if p["metric"] == "psnr" and p["grouping"] == "overall"]]
    assert paired["n_pairs"] == len(g0) == 6
    assert paired["mean_diff"] == pytest.approx(float((a[sorted(g0)] - b[sorted(g0)]).mean()), abs=1e-9)
    assert {r["grouping"] for r in out["rows"]} == {"overall"}  # group_by [] replaced the protocol's grp
    nothing = group_table(store, runs["gamma"], runs["identity"], where={"no-such-attribute": "x"})
    assert not [p for p in nothing["paired"] if p.get("n_pairs")]
