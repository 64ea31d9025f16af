"""The fairness leaderboard (``cals-bench fairness-board``): built from stored runs, opened in headless Chromium.

Two runs (identity and gamma) of the demo protocol, whose audit groups the eight images by context with
min_group_size 2 (general: 4 images, medical: 3, face: 1, small). The page must load with no console
problems and no broken link or image (the browser helpers of test_report_browser.py), show the audits'
numbers exactly (data-sort), and adjust the permutation p-values across models with Holm's procedure,
checked against the hand formula for two p-values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_report_browser import ARTIFACTS, Browser, check_page, chromium_binary, table


@pytest.fixture(scope="module")
def board_store(tmp_path_factory, shared_weights):
    # the demo protocol's GPI features and LPIPS need the AlexNet weights (../shared/weights offline)
    from cals_bench.cli import main

    base = tmp_path_factory.mktemp("fairness-board")
    results = base / "results"
    runner = CliRunner()
    for model in ("identity", "gamma"):
        res = runner.invoke(
            main,
            ["run", "--results", str(results), "--model", model, "--quiet", "--no-report", "--no-outputs"],
        )
        assert res.exit_code == 0, res.output
    return results, base / "reports"


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary (apt-get install -y chromium, or set CHROMIUM=/path/to/chrome)")
    b = Browser(binary)
    yield b
    b.close()


def _holm2(p1: float, p2: float) -> tuple[float, float]:
    """Holm for two p-values, by hand: the smaller times 2, the larger at least that."""
    lo, hi = sorted((p1, p2))
    a = min(1.0, 2 * lo)
    b = max(a, min(1.0, hi))
    return (a, b) if p1 <= p2 else (b, a)


def test_board_numbers_and_holm_across_models(board_store):
    from cals_bench.audits import load_audit
    from cals_bench.report.fairness_board import board_markdown, build_board
    from cals_bench.store import Store

    results, _ = board_store
    store = Store(results)
    board = build_board(store, "demo")
    assert board.metric == "psnr"
    assert board.feature == "alexnet-pooled"
    (gb,) = board.groupings
    assert gb.grouping == "context"
    assert gb.groups == ["face", "general", "medical"]
    rows = {r.model: r for r in gb.rows}
    assert set(rows) == {"identity", "gamma"}
    for r in gb.rows:
        audit, _ = load_audit(store, r.run_id)
        g = audit.groups.set_index(["grouping", "group", "metric"])
        for group in gb.groups:
            assert r.groups[group].value == g.loc[("context", group, "psnr"), "mean"]
            assert r.groups[group].small == (group == "face")
        d = audit.disparity.set_index(["grouping", "metric"]).loc[("context", "psnr")]
        assert r.gap.value == pytest.approx(
            abs(r.groups["general"].value - r.groups["medical"].value), abs=1e-12
        )
        assert r.worst == d["worst_group"]
        assert r.p_gap == d["p_gap"]
        s = audit.gpi_summary
        s = s[(s["kind"] == "features") & (s["grouping"] == "context")].iloc[0]
        assert r.gpi_gap.value == s["gpi_gap"]
        assert r.p_gpi == s["p_value"]
    a, b = rows["identity"], rows["gamma"]
    for raw, adj in (("p_gap", "p_gap_holm"), ("p_gpi", "p_gpi_holm")):
        expect = _holm2(getattr(a, raw), getattr(b, raw))
        assert (getattr(a, adj), getattr(b, adj)) == pytest.approx(expect, abs=1e-12)
    text = board_markdown(board)
    assert "| identity |" in text
    assert "&" not in text


def test_board_page_loads_and_sorts(board_store, browser):
    from cals_bench.report.fairness_board import fairness_board
    from cals_bench.store import Store

    results, reports = board_store
    res = CliRunner().invoke(
        fairness_board, ["--protocol", "demo", "--results", str(results), "--reports", str(reports)]
    )
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    assert page.name == "fairness.html"
    assert page.with_suffix(".md").is_file()
    dom = check_page(browser, page)  # the quality-vs-disparity plot is an image: it must decode
    assert dom["title"] == "Fairness: demo v1"
    browser.screenshot(ARTIFACTS / "report-fairness-demo.png")
    width = browser.js("[...document.images].map(i => i.naturalWidth)")
    assert len(width) == 1
    assert width[0] > 500

    store = Store(results)
    metas = {m["run_id"]: m for m in (store.get_run(r) for r in store.list_runs("demo")["run_id"])}
    heads = browser.js(
        "[...document.querySelectorAll('#metric-context thead th')].map(th => th.getAttribute('data-group') || th.getAttribute('data-col'))"
    )
    rows = table(browser, "#metric-context")
    assert {r["key"] for r in rows} == set(metas)
    from cals_bench.audits import load_audit

    for row in rows:
        audit, _ = load_audit(store, row["key"])
        g = audit.groups.set_index(["grouping", "group", "metric"])
        for i, head in enumerate(heads):
            if head in ("face", "general", "medical"):
                assert float(row["cells"][i][1]) == g.loc[("context", head, "psnr"), "mean"]
        overall = g.loc[("overall", "all", "psnr"), "mean"]
        assert float(row["cells"][heads.index("overall")][1]) == overall
        assert "small" in row["cells"][heads.index("face")][0]  # flagged: one image
    # sorting by the gap column orders rows by the gap, ascending then descending
    col = heads.index("gap")
    gaps = [float(r["cells"][col][1]) for r in rows]
    for expected in (sorted(gaps), sorted(gaps, reverse=True)):
        browser.js(f"document.querySelectorAll('#metric-context thead th')[{col}].click()")
        assert [float(r["cells"][col][1]) for r in table(browser, "#metric-context")] == expected
    gpi_rows = table(browser, "#gpi-context")
    assert len(gpi_rows) == 2
    assert all(math.isfinite(float(r["cells"][-4][1])) for r in gpi_rows)
    assert browser.problems() == []
    assert json.loads(json.dumps(dom["ids"]))  # page has anchors for its table of contents
