"""Model names, model arguments, sample file names and group labels holding ``<script>`` and quotes are
shown as text, never as markup, in every output format: HTML (audit, leaderboard, comparison), Markdown,
LaTeX and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MODEL_NAME = '<script>alert("m")</script>'
MODEL_ARG = "<script>alert(\"a\")</script> 'q' =1+1"
SAMPLE = '<script>alert("s")<x\'q>'  # a file name: no slash, so no closing tag
GROUP = '<i>g&"1"</i>'
ARGS_TEXT = json.dumps({"note": MODEL_ARG}, sort_keys=True, ensure_ascii=False)

MODEL_FILE = """
from cals_bench.enhancer import Enhancer


class Model(Enhancer):
    name = {name!r}
    uses_ground_truth = True

    def __init__(self, note=""):
        super().__init__()
        self.args["note"] = note

    def enhance(self, x):
        return x

    def enhance_with_reference(self, x, ref):
        return (0.8 * ref + 0.2 * x).clamp(0, 1)
"""

PROTOCOL = """name: esc-test
version: 1
title: escaping test <b>"title"</b>
dataset:
  layout: synthetic
  clean_dir: clean
  manifest: manifest.csv
  degradation: {gamma: [1.2, 1.6], exposure: [0.1, 0.2], photons: [300.0, 1000.0], read_noise: [0.002, 0.008]}
metrics: [psnr, ssim]
audit:
  group_by: [grp]
  min_group_size: 2
  bootstrap: 100
  permutations: 100
batch_size: 4
seed: 0
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    base = tmp_path_factory.mktemp("report-escaping")
    with pytest.MonkeyPatch.context() as mp:  # conftest's isolation is function-scoped
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(base / "xdg-cache"))
        return _render(base)


def _render(base: Path) -> dict:
    from cals_bench import protocol
    from cals_bench.engine import evaluate
    from cals_bench.report import render_audit, render_comparison, render_leaderboard
    from cals_bench.store import Store

    data = base / "data"
    (data / "clean").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{SAMPLE}.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "grp"])
    for i, name in enumerate(names):
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(data / "clean" / name)
        writer.writerow([name, GROUP if i % 2 == 0 else "plain"])
    (data / "manifest.csv").write_text(buf.getvalue())
    (base / "proto.yaml").write_text(PROTOCOL)
    (base / "model.py").write_text(MODEL_FILE.format(name=MODEL_NAME))

    proto = protocol.load(str(base / "proto.yaml"))
    store = Store(base / "results")
    bad = evaluate(
        proto, f"{base / 'model.py'}:Model", {"note": MODEL_ARG}, data_root=data, store=store, progress=False
    )
    ref = evaluate(proto, "identity", {}, data_root=data, store=store, progress=False)
    reports = base / "reports"
    audit = render_audit(store, bad.run_id, root=reports)
    board = render_leaderboard(store, "esc-test", root=reports)
    comparison = render_comparison(store, bad.run_id, ref.run_id, root=reports)
    return {"audit": audit, "leaderboard": board, "compare": comparison, "store": store, "run": bad}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.mark.parametrize("kind", ["audit", "leaderboard", "compare"])
def test_html_shows_names_as_text(rendered, kind):
    path = rendered[kind]
    source = path.read_text(encoding="utf-8")
    page = _parse(path)
    # Only the page's own sorter script, no event-handler attributes, no raw tag from the data.
    assert [t for t, _ in page.tags].count("script") == 1
    assert not [(t, a) for t, attrs in page.tags for a, _ in attrs if a.lower().startswith("on")]
    assert "<script>alert" not in source
    assert "<i>g&" not in source
    text = "".join(page.text)
    assert MODEL_NAME in text
    if kind != "leaderboard":
        assert GROUP in text
    if kind in ("audit", "leaderboard"):
        assert ARGS_TEXT in text
    if kind == "audit":
        assert SAMPLE in text  # the image grid names every sample of this 6-sample run
        cards = [
            dict(a).get("data-sample") for t, a in page.tags if t == "div" and dict(a).get("data-sample")
        ]
        assert SAMPLE in cards  # attribute values round-trip exactly through escaping


def _md_cells(line: str) -> list[str]:
    """Cells of a Markdown table row, unescaped as CommonMark would render them (backslash escapes only: the
    export writes no HTML entities)."""
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [re.sub(r"\\(.)", r"\1", c.strip()) for c in cells]


def _assert_plain_markdown(md: str) -> None:
    """No HTML entity anywhere, and no ``<`` that could open a tag unless backslash-escaped."""
    assert not re.search(r"&(lt|gt|amp|quot|#\d+);", md), "Markdown export wrote an HTML entity"
    assert not re.search(r"(?<!\\)<[A-Za-z/!?]", md), "Markdown export holds a raw tag opener"


_LATEX_BACK = {
    r"\textless{}": "<",
    r"\textgreater{}": ">",
    r"\textquotedbl{}": '"',
    r"\textquotesingle{}": "'",
    r"\textbackslash{}": "\\",
    r"\textasciicircum{}": "^",
    r"\textasciitilde{}": "~",
    r"\textasciigrave{}": "`",
    r"\textbar{}": "|",
    r"\{": "{",
    r"\}": "}",
    r"\$": "$",
    r"\&": "&",
    r"\#": "#",
    r"\_": "_",
    r"\%": "%",
}


def _latex_text(cell: str) -> str:
    pattern = "|".join(re.escape(k) for k in sorted(_LATEX_BACK, key=len, reverse=True))
    return re.sub(pattern, lambda m: _LATEX_BACK[m.group(0)], cell.strip())


def _latex_rows(tex: str) -> list[list[str]]:
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    return [re.split(r"(?<!\\)&", line.rstrip().removesuffix(r"\\")) for line in body.strip().splitlines()]


def test_markdown_latex_csv_leaderboard(rendered):
    folder = rendered["leaderboard"].parent
    md = (folder / "leaderboard.md").read_text()
    _assert_plain_markdown(md)
    assert '{"note": ' in md  # quotes as typed (no &quot;): the export reads as plain text
    rows = [_md_cells(line) for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    header, body = rows[0], rows[1:]
    assert all(len(r) == len(header) for r in body)
    mine = next(r for r in body if r[1] == MODEL_NAME)
    assert mine[2] == ARGS_TEXT
    assert "GT-guided" in mine[-1]

    tex = (folder / "leaderboard.tex").read_text()
    assert "<" not in tex
    assert '"' not in tex
    rows = _latex_rows(tex)
    assert len({len(r) for r in rows}) == 1  # no stray column separator from the data
    mine = next(r for r in rows if _latex_text(r[1]) == MODEL_NAME)
    assert _latex_text(mine[2]) == ARGS_TEXT

    table = list(csv.DictReader(io.StringIO((folder / "leaderboard.csv").read_text())))
    mine = next(r for r in table if r["model"] == MODEL_NAME)
    assert mine["model_args"] == ARGS_TEXT
    assert mine["uses_ground_truth"] == "True"


def test_markdown_latex_csv_group_and_comparison_tables(rendered):
    folder = rendered["audit"].parent
    md = (folder / "groups.md").read_text()
    _assert_plain_markdown(md)
    groups = {_md_cells(line)[1] for line in md.splitlines() if line.startswith("| ")}
    assert GROUP in groups
    assert MODEL_NAME in re.sub(r"\\(.)", r"\1", md)  # the caption names the model
    tex = (folder / "groups.tex").read_text()
    assert "<" not in tex
    assert '"' not in tex
    assert GROUP in {_latex_text(r[1]) for r in _latex_rows(tex)}
    table = list(csv.DictReader(io.StringIO((folder / "groups.csv").read_text())))
    assert {r["group"] for r in table} >= {GROUP, "plain", "all"}
    assert {r["model"] for r in table} == {MODEL_NAME}
    assert {r["model_args"] for r in table} == {ARGS_TEXT}

    cfolder = rendered["compare"].parent
    cmd = (cfolder / "compare.md").read_text()
    _assert_plain_markdown(cmd)
    assert GROUP in {c for line in cmd.splitlines() if line.startswith("| ") for c in _md_cells(line)}
    ctex = (cfolder / "compare.tex").read_text()
    assert "<" not in ctex
    assert len({len(r) for r in _latex_rows(ctex)}) == 1
    ctable = list(csv.DictReader(io.StringIO((cfolder / "compare.csv").read_text())))
    assert GROUP in {r["group"] for r in ctable}


def test_csv_guards_formula_text_and_keeps_numbers():
    import pandas as pd

    from cals_bench.report.tables import to_csv

    frame = pd.DataFrame(
        {"name": ["=HYPERLINK(1)", "@x", "-1 cmd", "plain"], "value": [-1.5, 2.0, float("nan"), 3.0]}
    )
    rows = list(csv.reader(io.StringIO(to_csv(frame))))
    assert [r[0] for r in rows[1:]] == ["'=HYPERLINK(1)", "'@x", "'-1 cmd", "plain"]
    assert [r[1] for r in rows[1:]] == ["-1.5", "2.0", "", "3.0"]  # numbers are never prefixed
