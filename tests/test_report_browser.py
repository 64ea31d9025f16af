"""The demo run's audit report and a leaderboard, opened in headless Chromium.

Chromium (Debian's ``chromium`` package) is driven through the DevTools protocol over
``--remote-debugging-pipe`` (NUL-delimited JSON on file descriptors 3 and 4; no websocket library
needed). Checks: no console errors, exceptions or failed loads; every ``src``/``href`` in the DOM resolves
to an existing file (or an element id on the page); every image decoded (``naturalWidth > 0``); the tables
show the numbers stored in the run records; the sorter reorders rows. Full-page screenshots go to
``test-artifacts/`` (git-ignored). Skips, saying so, only where no Chromium binary is installed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import math
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]
PAGE_TIMEOUT_S = 120


def chromium_binary() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """A headless Chromium driven over the DevTools pipe: one page, its console and its DOM."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="cals-chromium-")
        r_in, self._w = (self._high(fd) for fd in os.pipe())
        self._r, w_out = (self._high(fd) for fd in os.pipe())

        def child_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(r_in, 3)
            os.dup2(w_out, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=child_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(r_in)
        os.close(w_out)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(domain, session=self.session)

    @staticmethod
    def _high(fd: int) -> int:
        """Move a pipe end above fd 10 so that mapping it onto 3 and 4 in the child cannot clobber another."""
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return new

    def _recv(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(0.0, deadline - time.time()))
            if not ready:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._recv(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=self.session)
        deadline = time.time() + PAGE_TIMEOUT_S
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._recv(deadline))

    def js(self, expression: str) -> Any:
        res = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, failed loads and CSP violations so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(
                    f"console.{p['type']}: " + " ".join(str(a.get("value")) for a in p.get("args", []))
                )
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path: Path, width: int = 1280) -> Path:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=self.session,
        )
        size = self.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": width, "height": min(math.ceil(size["height"]), 20000), "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=self.session,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, EOFError):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self.profile, ignore_errors=True)


# What the page exposes to the checks: every link target, every image's decoding state, element ids.
DOM_PROBE = """(() => {
  const refs = [];
  for (const el of document.querySelectorAll('[src], [href]')) {
    for (const attr of ['src', 'href']) {
      if (el.hasAttribute(attr)) refs.push([el.tagName, attr, el.getAttribute(attr), el[attr]]);
    }
  }
  const images = [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const scripts = document.querySelectorAll('script').length;
  return {refs, images, ids, scripts, title: document.title};
})()"""


def check_page(browser: Browser, page: Path, expect_images: bool = True) -> dict[str, Any]:
    """Open ``page``; assert no console problems, no broken link or image; return the DOM probe."""
    browser.open(page)
    dom = browser.js(DOM_PROBE)
    assert browser.problems() == [], f"{page}: {browser.problems()}"
    ids = set(dom["ids"])
    for tag, attr, raw, resolved in dom["refs"]:
        if raw.startswith("#"):
            assert raw[1:] in ids, f"{page}: {tag} {attr}={raw!r} names no element"
            continue
        url = urlparse(resolved)
        assert url.scheme == "file", f"{page}: {tag} {attr}={raw!r} leaves the file system ({resolved})"
        target = Path(unquote(url.path))
        assert target.is_file(), f"{page}: {tag} {attr}={raw!r} -> {target} does not exist"
        assert not raw.startswith("/"), f"{page}: {tag} {attr}={raw!r} is absolute, not relative"
    assert dom["images"] or not expect_images, f"{page}: no images"
    for src, complete, width in dom["images"]:
        assert complete, f"{page}: image {src} did not decode (naturalWidth {width})"
        assert width > 0, f"{page}: image {src} did not decode (naturalWidth {width})"
    assert dom["scripts"] == 1, f"{page}: expected only the sorter script, found {dom['scripts']}"
    return dom


# Rows of a table: the row's data-metric or data-run key, and each cell's text and data-sort value.
TABLE_PROBE = """((sel) => [...document.querySelectorAll(sel + ' tbody tr')].map(tr => ({
  key: tr.getAttribute('data-metric') || tr.getAttribute('data-run'),
  cells: [...tr.cells].map(td => [td.textContent.trim(), td.getAttribute('data-sort')])
})))(%s)"""
HEADER_PROBE = """[...document.querySelectorAll('#leaderboard thead th')].map(th =>
  [th.getAttribute('data-metric'), th.textContent.trim()])"""


def table(browser: Browser, selector: str) -> list[dict[str, Any]]:
    return browser.js(TABLE_PROBE % json.dumps(selector))


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary (apt-get install -y chromium, or set CHROMIUM=/path/to/chrome)")
    b = Browser(binary)
    yield b
    b.close()


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory):
    """``cals-bench run`` (the demo) and a gamma run on the demo, with their audits and the leaderboard."""
    from click.testing import CliRunner

    from cals_bench.cli import main

    base = tmp_path_factory.mktemp("report-browser")
    results, reports = base / "results", base / "reports"
    # conftest's isolation is function-scoped; this module fixture sets the same environment itself.
    env = {
        "CALS_BENCH_REPORTS": str(reports),
        "CALS_BENCH_OFFLINE": "1",
        "XDG_CACHE_HOME": str(base / "xdg-cache"),
        "TORCH_HOME": str(base / "xdg-cache" / "torch"),
    }
    shared_weights = REPO.parent / "shared" / "weights"
    if shared_weights.is_dir():
        env["CALS_BENCH_WEIGHTS"] = str(shared_weights)
    runner = CliRunner()
    first = runner.invoke(main, ["run", "--results", str(results), "--quiet"], env=env)
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["run", "--results", str(results), "--model", "gamma", "--quiet"], env=env)
    assert second.exit_code == 0, second.output
    return results, reports, first.output, second.output


def _report_line(output: str) -> Path:
    lines = [line for line in output.splitlines() if line.startswith("report: ")]
    assert len(lines) == 1, output
    return Path(lines[0][len("report: ") :])


def test_demo_run_prints_its_audit_and_it_loads_cleanly(demo_reports, browser):
    from cals_bench.report.formatting import fmt_ci, fmt_value
    from cals_bench.store import Store

    results, reports, out, _ = demo_reports
    page = _report_line(out)
    assert page.is_file()
    assert page.name == "index.html"
    assert reports in page.parents, f"{page} is not under CALS_BENCH_REPORTS={reports}"
    dom = check_page(browser, page)
    assert dom["title"].startswith("Audit: identity on demo")
    browser.screenshot(ARTIFACTS / "report-audit-demo.png")

    meta = Store(results).get_run("demo__identity")
    groups = json.loads((page.parent / "audit.json").read_text())["frames"]["groups"]
    cols = groups["columns"]
    overall = {r[cols.index("metric")]: dict(zip(cols, r)) for r in groups["data"] if r[0] == "overall"}
    rows = {r["key"]: r["cells"] for r in table(browser, "#summary-table")}
    scored = [m for m, s in meta["summary"].items() if s["count"]]
    assert scored
    assert set(scored) <= set(rows)
    for metric in scored:
        mean = meta["summary"][metric]["mean"]
        (mean_text, mean_exact), (ci_text, _) = rows[metric][2], rows[metric][3]
        # The cell carries the stored mean exactly (repr of the float) and shows it rounded.
        assert mean_exact == repr(mean)
        assert mean_text == fmt_value(mean, metric=metric)
        o = overall[metric]
        assert ci_text == fmt_ci(o["mean_ci_low"], o["mean_ci_high"], mean, metric)
    # Every metric the run could not compute is listed as unavailable, not silently dropped.
    for name in meta.get("unavailable_metrics", {}):
        assert name in browser.js("document.body.textContent")


def test_leaderboard_loads_sorts_and_links(demo_reports, browser):
    from click.testing import CliRunner

    from cals_bench.report.cli import leaderboard
    from cals_bench.report.formatting import fmt_value
    from cals_bench.store import Store

    results, reports, _, _ = demo_reports
    res = CliRunner().invoke(
        leaderboard,
        ["--protocol", "demo", "--html", "--results", str(results)],
        env={"CALS_BENCH_REPORTS": str(reports)},
    )
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    check_page(browser, page)  # the trade-off plots are images; check_page checks that they decode
    browser.screenshot(ARTIFACTS / "report-leaderboard-demo.png")
    # At 1280 px (the screenshot's width) the table fits without a horizontal scroll bar.
    wrap = browser.js(
        "[...document.querySelectorAll('.table-wrap')].map(w => [w.scrollWidth, w.clientWidth])"
    )
    assert all(sw <= cw for sw, cw in wrap), wrap
    links = browser.js(
        "[...document.querySelectorAll('#leaderboard tbody a')].map(a => a.getAttribute('href'))"
    )
    assert len(links) == 2
    assert all(h.endswith("/index.html") for h in links)

    store = Store(results)
    metas = {m["run_id"]: m for m in (store.get_run(r) for r in store.list_runs("demo")["run_id"])}
    assert {m["model"]["name"] for m in metas.values()} == {"identity", "gamma"}
    headers = browser.js(HEADER_PROBE)
    col = {metric: i for i, (metric, _) in enumerate(headers) if metric}
    rows = table(browser, "#leaderboard")
    assert {r["key"] for r in rows} == set(metas)
    for row in rows:
        meta = metas[row["key"]]
        assert "sanity row" in row["cells"][1][0]
        for metric, s in meta["summary"].items():
            text, exact = row["cells"][col[metric]]
            assert exact == repr(s["mean"])
            assert text.startswith(fmt_value(s["mean"], metric=metric))
    # Parameters and time per megapixel: from the run record and the per-sample rows, recomputed here.
    from cals_bench.report.model_columns import fmt_parameters

    cols = {
        c: i
        for i, c in enumerate(
            browser.js(
                "[...document.querySelectorAll('#leaderboard thead th')].map(th => th.getAttribute('data-col'))"
            )
        )
        if c
    }
    assert {"params", "speed"} <= set(cols)
    for row in rows:
        meta = metas[row["key"]]
        assert row["cells"][cols["params"]][0] == fmt_parameters(meta["model"]["parameters"])
        samples = store.samples(meta["run_id"])
        rate = samples["time_ms"] / (samples["height"] * samples["width"] / 1e6)
        assert float(row["cells"][cols["speed"]][1]) == float(rate.median())
    # The trade-off plots: quality vs speed, and (the demo has groups and a GPI) quality vs disparity.
    plots = browser.js(
        "[...document.querySelectorAll('#tradeoffs img')].map(i => [i.getAttribute('src'), i.naturalWidth])"
    )
    assert [Path(src).name for src, _ in plots] == ["quality-vs-speed.png", "quality-vs-disparity.png"]
    assert all(w > 300 for _, w in plots)
    # Default order: PSNR, best first; a click on its header sorts ascending, a second click descending.
    psnr = col["psnr"]
    values = [float(r["cells"][psnr][1]) for r in rows]
    assert values == sorted(values, reverse=True)
    for expected in (sorted(values), sorted(values, reverse=True)):
        browser.js(f"document.querySelectorAll('#leaderboard thead th')[{psnr}].click()")
        assert [float(r["cells"][psnr][1]) for r in table(browser, "#leaderboard")] == expected
    assert browser.problems() == []


def test_comparison_page_loads(demo_reports, browser):
    from click.testing import CliRunner

    from cals_bench.report.cli import compare

    results, reports, _, _ = demo_reports
    res = CliRunner().invoke(
        compare, ["demo__gamma", "demo__identity", "--results", str(results), "--reports", str(reports)]
    )
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    dom = check_page(browser, page)
    assert dom["title"].startswith("Compare: gamma vs identity on demo")
    browser.screenshot(ARTIFACTS / "report-compare-demo.png")
    # One table per metric, each with the overall row first.
    first_rows = browser.js(
        "[...document.querySelectorAll('table.compare-table')]"
        ".map(t => t.tBodies[0].rows[0].cells[0].textContent)"
    )
    assert first_rows
    assert set(first_rows) == {"overall"}
    # The overall row of every metric is tested and says how: scipy's exact signed-rank test at these n
    # (8 pairs; 1 for identity similarity, which only the face sample has, flagged as low power).
    rows = browser.js(
        "[...document.querySelectorAll('table.compare-table')].map(t => [...t.tBodies[0].rows[0].cells]"
        ".map(c => c.textContent))"
    )
    for cells in rows:
        pairs, better, note = cells[2], cells[-2], cells[-1]
        assert f"Wilcoxon exact, n = {pairs} pairs" in note, note
        # the demo's min_group_size is 2: below it the badge says so
        assert ("low power (n = 1)" in better) == (int(pairs) < 2), better
