"""The leaderboard of one protocol version: one row per stored run, read from the store and the run audits.

Columns: each metric with its direction arrow, the mean as stored in the run record and the audit's
percentile-bootstrap interval of it, sample counts, the headline GPI sum and gap (where the protocol
defines groups), and flags (sanity rows, GT-guided models, GT-mean diagnostic columns, metrics that were
unavailable, failed samples). Rows link to each run's audit report. Exported as HTML (sortable), Markdown,
LaTeX and CSV.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cals_bench import audits
from cals_bench.errors import CalsBenchError
from cals_bench.metrics.noreference import NO_REFERENCE_NOTE, is_no_reference_column
from cals_bench.report import admission, leaderboard_columns
from cals_bench.report.formatting import (
    arrow,
    diagnostic_columns,
    direction_text,
    fmt_ci,
    fmt_p,
    fmt_value,
    gpi_label,
    metric_label,
    sort_key,
)
from cals_bench.report.html import render_page
from cals_bench.report.layout import href, leaderboard_file, reports_root, run_folder
from cals_bench.report.runinfo import FINISHED, Flag, model_args_text, run_flags
from cals_bench.report.tables import TextTable, ValueCI, to_csv, to_latex, to_markdown
from cals_bench.run_record import RunRecord
from cals_bench.store import Store

TextFormat = Literal["markdown", "latex", "csv"]


@dataclass
class Column:
    """One metric column of a leaderboard: its label, direction arrow and whether it is a GT-mean diagnostic."""

    metric: str
    label: str
    arrow: str
    higher_is_better: bool | None
    gtmean: bool


@dataclass
class Cell:
    """One metric of one run: ``state`` is ``ok``, ``unavailable`` (with the reason) or ``absent``."""

    state: str
    mean: float | None = None
    lo: float | None = None
    hi: float | None = None
    count: int = 0
    undefined: int = 0
    reason: str = ""


@dataclass
class Row:
    """One run's row: its record, cells, flags and how many samples were scored, failed or in the protocol."""

    record: RunRecord
    cells: dict[str, Cell]
    flags: list[Flag]
    n_scored: int
    n_total: int
    n_failed: int
    gpi: dict[str, Any] | None
    audit_page: Path | None = None  # the run's audit index.html, where rendered
    rank: int | None = 0  # None: not ranked (an incomplete run, see report.admission)
    facts: Any = None  # report.model_columns.ModelFacts: parameters, speed, published figures
    metric_gap: Any = None  # the primary metric's best - worst group gap (leaderboard_columns)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def model(self) -> str:
        return self.record.model["name"]

    @property
    def meta(self) -> dict[str, Any]:
        """The run record's JSON form (for helpers that read any mapping with a record's keys)."""
        return self.record.to_json()

    @property
    def args(self) -> str:
        """The arguments that differ from the model's defaults (the full set is ``model_args_text``)."""
        return leaderboard_columns.args_text(self)


@dataclass
class Leaderboard:
    """A protocol version's leaderboard: its columns, ranked rows and table notes."""

    name: str
    version: int
    title: str
    hashes: list[str]
    columns: list[Column]
    rows: list[Row]
    primary: str | None
    settings: Any
    notes: list[str] = field(default_factory=list)
    board: str | None = None  # set on a board of runs that are not the built-in protocol's (admission)


def _versions(store: Store, protocol: str) -> pd.DataFrame:
    runs = store.list_runs(protocol)
    if runs.empty:
        raise CalsBenchError(
            f"no stored runs of protocol {protocol!r} in {store.root} (cals-bench runs list)"
        )
    return runs


def build_leaderboard(
    store: Store,
    protocol: str,
    version: int | None = None,
    *,
    root: str | Path | None = None,
    render_missing: Callable[[str], object] | None = None,
    protocol_hash: str | None = None,
) -> Leaderboard:
    """Collect the finished runs of ``protocol`` (``version``: default the newest stored) into a Leaderboard.

    A built-in protocol's board admits only runs of its exact hash; ``protocol_hash`` (a prefix) shows the
    board of another hash, labelled as such (:mod:`cals_bench.report.admission`).

    Audits come from each run's report folder cache (computed and cached when absent); ``render_missing``
    (a run id -> its audit page) renders the page of every run that lacks one first, so every row links
    (:func:`cals_bench.report.site.render_leaderboard` passes the audit page renderer).
    """
    runs = _versions(store, protocol)
    version = int(version if version is not None else runs["protocol_version"].max())
    runs = runs[runs["protocol_version"] == version]
    if runs.empty:
        raise CalsBenchError(f"no stored runs of {protocol} v{version} in {store.root}")
    root_path = reports_root(root)
    runs, notes, board = admission.select_runs(runs, protocol, version, protocol_hash)
    unfinished = runs[~runs["status"].isin(FINISHED)]
    if len(unfinished):
        notes.append(
            f"{len(unfinished)} unfinished run(s) left out: "
            + ", ".join(unfinished["run_id"].astype(str).tolist()[:5])
        )
    rows: list[Row] = []
    hashes: list[str] = []
    title = protocol
    settings = None
    for rec in runs[runs["status"].isin(FINISHED)].to_dict("records"):
        try:
            record = store.get_record(rec["run_id"])
        except CalsBenchError as exc:  # a damaged record: skipped, named, the board still renders
            notes.append(f"run {rec['run_id']} left out: {exc}")
            continue
        folder = run_folder(root_path, record)
        index = folder / "index.html"
        if render_missing is not None and not index.is_file():
            render_missing(record.run_id)
        result, _ = audits.load_audit(store, record.run_id)
        settings = settings or result.settings
        title = record.protocol.title or title
        if record.protocol.hash not in hashes:
            hashes.append(record.protocol.hash)
        rows.append(
            Row(
                record=record,
                cells=_cells(record, result.groups),
                flags=run_flags(record),
                n_scored=int(rec.get("n_scored") or 0),
                n_total=int(record.n_samples or 0),
                n_failed=int(rec.get("n_failed") or 0),
                gpi=_gpi(result),
                audit_page=index if index.is_file() else None,
            )
        )
    if len(hashes) > 1:
        newest = max(rows, key=lambda r: r.record.created or 0).record.protocol.hash
        for r in rows:
            h = r.record.protocol.hash
            if h != newest:
                r.flags.append(
                    Flag(
                        "missing",
                        f"protocol {h[:8]}",
                        f"scored under protocol hash {h}, not the newest {newest}",
                    )
                )
        notes.append(
            f"runs carry {len(hashes)} different protocol hashes for {protocol} v{version}: the protocol "
            "changed "
            "without a version bump; compare with care"
        )
    columns = _columns(rows)
    primary = next((c.metric for c in columns if not c.gtmean and c.higher_is_better is not None), None)
    _rank(rows, columns, primary)
    notes += admission.unranked_notes(rows)
    leaderboard_columns.attach(store, rows, protocol, [c.metric for c in columns], primary)
    if settings is not None and not settings.group_by:
        notes.append(f"{protocol} v{version} defines no groups, so there is no GPI (it compares groups)")
    elif settings is not None:
        no_gpi = [r.run_id for r in rows if r.gpi is None]
        if no_gpi:
            notes.append(
                f"{len(no_gpi)} run(s) have no GPI: neither stored feature sets nor the 1-D GPI metric "
                f"({settings.gpi_metric}) were available (see each audit)"
            )
    return Leaderboard(protocol, version, title, hashes, columns, rows, primary, settings, notes, board)


def _cells(record: RunRecord, groups: pd.DataFrame) -> dict[str, Cell]:
    overall = groups[groups["grouping"] == "overall"].set_index("metric")
    cells = {}
    for metric, s in (record.summary or {}).items():
        lo = hi = None
        if metric in overall.index:
            lo, hi = overall.at[metric, "mean_ci_low"], overall.at[metric, "mean_ci_high"]
        cells[metric] = Cell(
            "ok", s.get("mean"), lo, hi, int(s.get("count") or 0), int(s.get("undefined") or 0)
        )
    spec = record.protocol.spec
    metric_names = {*(spec.get("metrics") or []), *(spec.get("diagnostics") or [])}
    for name, reason in record.unavailable_metrics.items():
        if name in metric_names:  # GPI feature extractors are flagged on the row, not given a column
            cells.setdefault(name, Cell("unavailable", reason=str(reason)))
    return cells


def _gpi(result) -> dict[str, Any] | None:
    s = result.gpi_summary
    if s.empty:
        return None
    head = s.iloc[0]
    return {
        "headline": gpi_label(head["kind"], head["feature"], head["grouping"]),
        "sum": float(head["gpi_sum"]),
        "sum_lo": float(head["gpi_sum_ci_low"]),
        "sum_hi": float(head["gpi_sum_ci_high"]),
        "gap": float(head["gpi_gap"]),
        "gap_lo": float(head["gpi_gap_ci_low"]),
        "gap_hi": float(head["gpi_gap_ci_high"]),
        "p_adjusted": float(head["p_adjusted"]),
    }


def _columns(rows: list[Row]) -> list[Column]:
    order: list[str] = []
    directions: dict[str, bool] = {}
    for r in rows:
        directions.update(r.record.metric_directions)
        for m in r.record.metrics:
            order += [c for c in (m.get("columns") or {}) if c not in order]
        order += [c for c in r.cells if c not in order]
    diagnostic = diagnostic_columns()  # GT-mean variants: after the blind scores, flagged
    order = [c for c in order if c not in diagnostic] + [c for c in order if c in diagnostic]
    out = []
    for c in order:
        hib = directions.get(c, _registry_direction(c))
        label = metric_label(c) + (" (NR)" if is_no_reference_column(c) else "")
        out.append(Column(c, label, arrow(hib), hib, c in diagnostic))
    return out


def _registry_direction(metric: str) -> bool | None:
    """Direction of a metric no run could score (unavailable everywhere), from the metric registry."""
    try:
        from cals_bench.metrics import metric_registry

        cls = metric_registry().get(metric)
        return None if cls is None else cls.columns.get(metric)
    except Exception:  # a missing direction only drops the arrow
        return None


def _rank(rows: list[Row], columns: list[Column], primary: str | None) -> None:
    """Sort rows best first by the primary metric's stored mean (missing values last) and number them."""
    if primary is None:
        return
    hib = next(c.higher_is_better for c in columns if c.metric == primary)

    def key(r: Row):
        cell = r.cells.get(primary)
        v = cell.mean if cell and cell.state == "ok" else None
        if v is None or not math.isfinite(float(v)):
            return (1, 0.0, r.model)
        return (0, -float(v) if hib else float(v), r.model)

    # complete runs first, ranked; incomplete ones after them, unranked and flagged (report.admission)
    rows.sort(key=lambda r: (not admission.is_complete(r), key(r)))
    rank = 0
    for r in rows:
        if admission.is_complete(r):
            rank += 1
            r.rank = rank
        else:
            r.rank = None
            r.flags.append(admission.incomplete_flag(r))


# ------------------------------------------------------------------------------------------------------------
# exports


def text_table(lb: Leaderboard) -> TextTable:
    """The leaderboard as a paper table (Markdown / LaTeX)."""
    pct = f"{round(lb.settings.confidence * 100)}%" if lb.settings else "95%"
    has_gpi = any(r.gpi for r in lb.rows)
    headers = ["#", "Model", "Args"] + [f"{c.label} {c.arrow}".strip() for c in lb.columns]
    align = ["r", "l", "l"] + ["r"] * len(lb.columns)
    if has_gpi:
        headers += ["GPI sum \u2193", "GPI gap \u2193"]
        align += ["r", "r"]
    extra_headers, extra_align = leaderboard_columns.text_headers(lb)
    headers += [*extra_headers, "n", "Flags"]
    align += [*extra_align, "r", "l"]
    rows = []
    for r in lb.rows:
        row: list[Any] = [admission.rank_text(r), r.model, r.args or "-"]
        for c in lb.columns:
            cell = r.cells.get(c.metric)
            if cell is None:
                row.append("-")
            elif cell.state != "ok":
                row.append("unavailable")
            else:
                total = cell.count + cell.undefined
                suffix = f" (n={cell.count})" if cell.count != r.n_scored and total else ""
                row.append(ValueCI(cell.mean, cell.lo, cell.hi, suffix, c.metric))
        if has_gpi:
            g = r.gpi
            row += (
                [ValueCI(g["sum"], g["sum_lo"], g["sum_hi"]), ValueCI(g["gap"], g["gap_lo"], g["gap_hi"])]
                if g
                else [
                    "-",
                    "-",
                ]
            )
        row += leaderboard_columns.text_cells(lb, r)
        row.append(f"{r.n_scored}/{r.n_total}")
        row.append(", ".join(f.text for f in r.flags) or "-")
        rows.append(row)
    notes = [
        f"Mean over the scored samples with a {pct} percentile bootstrap interval of the mean"
        + (f" ({lb.settings.bootstrap} resamples, seed {lb.settings.seed})." if lb.settings else ".")
    ]
    if lb.primary:
        notes.append(f"Rows sorted by {metric_label(lb.primary)}; sanity rows are trivial reference models.")
    if any(c.gtmean for c in lb.columns):
        notes.append(
            "GT-mean columns rescale each output's mean to its reference's: a diagnostic, not a blind score."
        )
    if has_gpi:
        notes.append("GPI: " + audits.DEFINITIONS["gpi_sum"] + " " + audits.DEFINITIONS["gpi_gap"])
    notes += leaderboard_columns.text_notes(lb)
    if any(is_no_reference_column(c.metric) for c in lb.columns):
        notes.append(NO_REFERENCE_NOTE)
    notes += lb.notes
    caption = f"{lb.title} ({lb.name} v{lb.version}, protocol hash {', '.join(h[:12] for h in lb.hashes)})"
    if lb.board:
        caption = f"{caption}. NOT the built-in protocol: {lb.board}"
    return TextTable(headers=headers, rows=rows, align=align, caption=caption, notes=notes)


def frame(lb: Leaderboard) -> pd.DataFrame:
    """The leaderboard as a numeric table (CSV): one column per number, full precision."""
    out = []
    for r in lb.rows:
        m = r.record.model
        row: dict[str, Any] = {
            "rank": r.rank,
            "model": r.model,
            "model_args": model_args_text(r.record),
            "model_spec": m.get("spec", ""),
            "run_id": r.run_id,
            "sanity": bool(m.get("sanity")),
            "uses_ground_truth": bool(m.get("uses_ground_truth")),
            "kind": (m.get("submission") or {}).get("kind") or m.get("kind") or "builtin",
            "isolation": _isolation(m),
            "status": r.record.status,
            "n_scored": r.n_scored,
            "n_total": r.n_total,
            "n_failed": r.n_failed,
        }
        for c in lb.columns:
            cell = r.cells.get(c.metric) or Cell("absent")
            row[f"{c.metric}_mean"] = _num(cell.mean)
            row[f"{c.metric}_ci_low"] = _num(cell.lo)
            row[f"{c.metric}_ci_high"] = _num(cell.hi)
            row[f"{c.metric}_n"] = cell.count if cell.state == "ok" else None
            row[f"{c.metric}_state"] = cell.state
        g = r.gpi or {}
        row.update(
            gpi_headline=g.get("headline", ""),
            gpi_sum=_num(g.get("sum")),
            gpi_sum_ci_low=_num(g.get("sum_lo")),
            gpi_sum_ci_high=_num(g.get("sum_hi")),
            gpi_gap=_num(g.get("gap")),
            gpi_gap_ci_low=_num(g.get("gap_lo")),
            gpi_gap_ci_high=_num(g.get("gap_hi")),
            gpi_gap_p_adjusted=_num(g.get("p_adjusted")),
            unavailable_metrics="; ".join(f"{k}: {v}" for k, v in r.record.unavailable_metrics.items()),
            weights_sha256=json.dumps(m.get("weights") or {}, sort_keys=True),
            protocol_hash=r.record.protocol.hash,
        )
        row.update(leaderboard_columns.frame_columns(lb, r))
        out.append(row)
    return pd.DataFrame(out)


def _isolation(model: dict[str, Any]) -> str:
    """How the run's model code ran: sandbox level of a submission, "unisolated" user code, or "suite"."""
    sub = model.get("submission") or {}
    if sub:
        return "no code" if sub.get("kind") == "outputs" else sub.get("isolation") or "?"
    return "unisolated" if model.get("code") == "unisolated" else "suite"


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def leaderboard_text(lb: Leaderboard, fmt: TextFormat) -> str:
    """Markdown, LaTeX or CSV text of a leaderboard."""
    if fmt == "markdown":
        return to_markdown(text_table(lb), title=f"Leaderboard: {lb.name} v{lb.version}")
    if fmt == "latex":
        return to_latex(text_table(lb), label=f"tab:{lb.name}-v{lb.version}")
    if fmt == "csv":
        return to_csv(frame(lb))
    raise CalsBenchError(f"unknown leaderboard format {fmt!r} (markdown, latex, csv)")


# ------------------------------------------------------------------------------------------------------------
# HTML


def write_leaderboard(
    store: Store,
    protocol: str,
    version: int | None = None,
    *,
    root: str | Path | None = None,
    out: str | Path | None = None,
    render_missing: Callable[[str], object] | None = None,
    protocol_hash: str | None = None,
) -> Path:
    """Write the protocol version's leaderboard (HTML, plus .md/.tex/.csv beside it); returns the HTML path.

    Rows link the audit pages that exist; ``render_missing`` renders the others first
    (:func:`build_leaderboard`). ``out``: the HTML file (default ``<root>/<protocol>-v<version>/
    leaderboard.html``); links to audits are made relative to it.
    """
    lb = build_leaderboard(
        store,
        protocol,
        version,
        root=root,
        render_missing=render_missing,
        protocol_hash=protocol_hash,
    )
    path = Path(out) if out else leaderboard_file(reports_root(root), lb.name, lb.version)
    if lb.board and not out:  # a board of runs that are not the built-in protocol's: its own file
        path = path.with_name(f"leaderboard-{lb.hashes[0][:12]}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    for ext, fmt in (("md", "markdown"), ("tex", "latex"), ("csv", "csv")):
        stem.with_name(f"{stem.name}.{ext}").write_text(leaderboard_text(lb, fmt), encoding="utf-8")
    context = _context(lb, stem.name, path.parent)
    context.update(leaderboard_columns.html_context(lb, path.parent, stem.name))
    return render_page("leaderboard.html.j2", path, store.root, **context)


def _context(lb: Leaderboard, stem: str, page_dir: Path) -> dict[str, Any]:
    s = lb.settings
    pct = f"{round(s.confidence * 100)}% CI" if s else "95% CI"
    has_gpi = any(r.gpi for r in lb.rows)
    rows = []
    for r in lb.rows:
        cells = []
        for c in lb.columns:
            cell = r.cells.get(c.metric)
            if cell is None:
                cells.append(
                    {"text": "-", "ci": "", "sort": "", "title": "not scored in this run", "cls": "absent"}
                )
            elif cell.state != "ok":
                cells.append(
                    {"text": "unavailable", "ci": "", "sort": "", "title": cell.reason, "cls": "unavailable"}
                )
            else:
                n_note = f" (n={cell.count})" if cell.count != r.n_scored else ""
                cells.append(
                    {
                        "text": fmt_value(cell.mean, metric=c.metric) + n_note,
                        "ci": fmt_ci(cell.lo, cell.hi, cell.mean, c.metric),
                        "sort": sort_key(cell.mean),
                        "title": (
                            f"mean of {cell.count} value(s), {cell.undefined} undefined; {pct} "
                            f"{fmt_ci(cell.lo, cell.hi, cell.mean, c.metric) or 'not computed'}; "
                            f"exact {sort_key(cell.mean)}"
                        ),
                        "cls": "ok",
                    }
                )
        g = r.gpi
        rows.append(
            {
                "rank": admission.rank_text(r),
                "run_id": r.run_id,
                "model": r.model,
                "args": r.args,
                "href": href(r.audit_page, page_dir) if r.audit_page else None,
                "flags": r.flags,
                "cls": " ".join(
                    k
                    for k, on in (
                        ("sanity", r.record.model.get("sanity")),
                        ("gt", r.record.model.get("uses_ground_truth")),
                    )
                    if on
                ),
                "cells": cells,
                "gpi_sum": fmt_value(g["sum"]) if g else "-",
                "gpi_sum_ci": fmt_ci(g["sum_lo"], g["sum_hi"], g["sum"]) if g else "",
                "gpi_sum_sort": sort_key(g["sum"]) if g else "",
                "gpi_gap": fmt_value(g["gap"]) if g else "-",
                "gpi_gap_ci": fmt_ci(g["gap_lo"], g["gap_hi"], g["gap"]) if g else "",
                "gpi_gap_sort": sort_key(g["gap"]) if g else "",
                "gpi_title": (
                    f"{g['headline']}; gap permutation p ({s.correction}) {fmt_p(g['p_adjusted'])}"
                    if g
                    else ""
                ),
                "n": f"{r.n_scored}/{r.n_total}",
                "n_sort": str(r.n_scored),
                "x": leaderboard_columns.html_row(lb, r),
                "n_failed": r.n_failed,
            }
        )
    return {
        "lb": lb,
        "columns": [
            {
                "metric": c.metric,
                "label": c.label,
                "arrow": c.arrow,
                "direction": direction_text(c.higher_is_better),
                "gtmean": c.gtmean,
            }
            for c in lb.columns
        ],
        "rows": rows,
        "has_gpi": has_gpi,
        "ci_label": pct,
        "ci_text": (
            f"{pct}: percentile bootstrap of the mean ({s.bootstrap} resamples, seed {s.seed}), "
            "the audit's overall row"
            if s
            else ""
        ),
        "primary": metric_label(lb.primary) if lb.primary else "",
        "gpi_defs": [
            (k, audits.DEFINITIONS[k])
            for k in ("gpi", "gpi_1d", "gpi_sum", "gpi_gap", "gpi_gap permutation test")
            if k in audits.DEFINITIONS
        ],
        "gpi_headlines": sorted({r.gpi["headline"] for r in lb.rows if r.gpi}),
        "hashes": lb.hashes,
        "notes": lb.notes,
        "downloads": [
            {"href": f"{stem}.md", "name": f"{stem}.md", "text": "Markdown"},
            {"href": f"{stem}.tex", "name": f"{stem}.tex", "text": "LaTeX (booktabs)"},
            {"href": f"{stem}.csv", "name": f"{stem}.csv", "text": "CSV (full precision)"},
        ],
    }
