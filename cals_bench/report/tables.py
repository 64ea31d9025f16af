"""Paper tables: Markdown, LaTeX and CSV exports of leaderboards and group tables.

A :class:`TextTable` holds cells that are either plain text (escaped for the target format, so a model name
holding ``<script>`` or quotes stays text) or a :class:`ValueCI` (an estimate with its interval, laid out
per format). CSV exports are built from numeric DataFrames instead, one column per number.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from cals_bench.report.formatting import fmt_ci, fmt_value

Format = Literal["markdown", "latex", "csv"]


@dataclass(frozen=True)
class ValueCI:
    """An estimate with an optional interval: ``14.59 [13.10, 16.02]``."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    suffix: str = ""  # plain text after the number, escaped like any text (e.g. " (n=1)")
    metric: str | None = None  # picks the decimals (the metric column's own, formatting.decimals)


Cell = str | ValueCI


@dataclass
class TextTable:
    """Headers, rows of cells, alignment per column (``l`` or ``r``), a caption and footnotes."""

    headers: list[str]
    rows: list[list[Cell]]
    align: list[str] | None = None
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def aligns(self) -> list[str]:
        return self.align or ["l"] * len(self.headers)


# ------------------------------------------------------------------------------------------------------------
# escaping

# Inline Markdown syntax inside a table cell (a cell never starts a line, so list and heading markers are
# inert); ``|`` would end the cell. A ``<`` that could open an HTML tag, comment or autolink and an ``&``
# that could start an entity are backslash-escaped too (CommonMark allows a backslash before any ASCII
# punctuation); every other ``<``, ``>``, ``&`` and quote stays as typed.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~]|<(?=[A-Za-z/!?])|&(?=#?[A-Za-z0-9]+;))")


def escape_markdown(text: str) -> str:
    """Plain text for a Markdown table cell: Markdown and HTML punctuation backslash-escaped, line breaks as
    spaces; no HTML entities, so the file reads as typed. Renders as the literal text in CommonMark/GFM."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


_LATEX_MAP = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    '"': r"\textquotedbl{}",
    "'": r"\textquotesingle{}",
    "`": r"\textasciigrave{}",
    "|": r"\textbar{}",
    "\n": " ",
    "\r": " ",
}


def escape_latex(text: str) -> str:
    """Plain text for LaTeX (needs ``\\usepackage[T1]{fontenc}`` and ``textcomp`` for the quote glyphs)."""
    return "".join(_LATEX_MAP.get(ch, ch) for ch in str(text))


_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: Any) -> Any:
    """A CSV cell: text starting like a spreadsheet formula gets a leading apostrophe (OWASP's advice);
    numbers are left as they are."""
    if isinstance(value, str) and value.startswith(_CSV_FORMULA):
        return "'" + value
    return value


# ------------------------------------------------------------------------------------------------------------
# exports

_UP, _DOWN = "\u2191", "\u2193"


def _cell(cell: Cell, fmt: Format) -> str:
    if isinstance(cell, ValueCI):
        num = fmt_value(cell.value, metric=cell.metric)
        ci = fmt_ci(cell.lo, cell.hi, cell.value, cell.metric)
        if fmt == "latex":
            out = num + (rf" {{\scriptsize {ci}}}" if ci else "")
            return out + escape_latex(cell.suffix)
        return num + (f" {ci}" if ci else "") + escape_markdown(cell.suffix)
    if fmt == "latex":
        return escape_latex(cell).replace(_UP, r"$\uparrow$").replace(_DOWN, r"$\downarrow$")
    return escape_markdown(cell)


def to_markdown(table: TextTable, title: str = "") -> str:
    """A GitHub-flavoured Markdown table (with optional ``# title``), caption and footnotes below."""
    lines = []
    if title:
        lines += [f"## {escape_markdown(title)}", ""]
    lines.append("| " + " | ".join(_cell(h, "markdown") for h in table.headers) + " |")
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in table.aligns()) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_cell(c, "markdown") for c in row) + " |")
    if table.caption:
        lines += ["", escape_markdown(table.caption)]
    for note in table.notes:
        lines += ["", escape_markdown(note)]
    return "\n".join(lines) + "\n"


def to_latex(table: TextTable, label: str = "") -> str:
    """A booktabs ``table`` environment; the header comment lists the packages it needs."""
    cols = "".join(table.aligns())
    lines = [
        r"% generated by cals-bench; needs \usepackage{booktabs},"
        r" \usepackage[T1]{fontenc}, \usepackage{textcomp}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
    ]
    if table.caption:
        lines.append(rf"\caption{{{escape_latex(table.caption)}}}")
    if label:
        lines.append(rf"\label{{{re.sub(r'[^A-Za-z0-9:._-]', '-', label)}}}")
    lines += [rf"\begin{{tabular}}{{{cols}}}", r"\toprule"]
    lines.append(" & ".join(_cell(h, "latex") for h in table.headers) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        lines.append(" & ".join(_cell(c, "latex") for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.notes:
        lines.append(rf"\par\smallskip\footnotesize {escape_latex(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    """CSV of a DataFrame (RFC 4180 quoting by the csv module, formula-like text guarded, NaN empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_text(str(c)) for c in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        writer.writerow([_csv_value(v) for v in row])
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return csv_text(v) if isinstance(v, str) else v


def write_all(
    table: TextTable, frame: pd.DataFrame, stem: Any, title: str = "", label: str = ""
) -> list[Any]:
    """Write ``stem``.md, .tex and .csv; returns the paths."""
    from pathlib import Path

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, text in (
        ("md", to_markdown(table, title)),
        ("tex", to_latex(table, label)),
        ("csv", to_csv(frame)),
    ):
        path = stem.with_name(f"{stem.name}.{ext}")
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
