"""The at-a-glance columns and plots of a leaderboard: parameters, time per megapixel (device named),
published figures with our difference, reproduction of the authors' code, and two trade-off plots.

Kept apart from ``leaderboard.py`` (which builds, ranks and exports rows) so that each export asks this
module for its extra cells: Markdown/LaTeX (``text_headers``/``text_cells``), CSV (``frame_columns``) and
HTML (``html_context``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cals_bench.published import DEFAULT_TOLERANCE, Agreement
from cals_bench.report import plots
from cals_bench.report.formatting import column_decimals, metric_label, sort_key
from cals_bench.report.layout import href
from cals_bench.report.model_columns import (
    ModelFacts,
    Reference,
    agreement_text,
    args_json,
    fmt_parameters,
    fmt_speed,
    model_facts,
)
from cals_bench.report.runinfo import model_args_text

if TYPE_CHECKING:
    from cals_bench.report.leaderboard import Leaderboard, Row
    from cals_bench.store import Store

SPEED_LABEL = "ms/MP"
KIND_TEXT = {"paper": "paper", "readme": "README", "secondary": "secondary", "upstream-code": "authors' code"}


def attach(
    store: Store, rows: Sequence[Row], protocol: str, metrics: Sequence[str], primary: str | None = None
) -> None:
    """Set ``row.facts`` (parameters, non-default arguments, speed, published figures) on every row, and
    ``row.metric_gap`` (the primary metric's gap between groups, from the run's cached audit)."""
    for r in rows:
        try:
            samples = store.samples(r.run_id)
        except Exception:  # a run without sample rows just has no speed
            samples = None
        r.facts = model_facts(r.meta, samples, protocol, metrics)
        r.metric_gap = _metric_gap(store, r.run_id, primary) if primary else None


def _metric_gap(store: Store, run_id: str, metric: str) -> dict[str, Any] | None:
    """Best minus worst group mean of ``metric`` (first grouping that compares groups), with its interval."""
    from cals_bench import audits

    try:
        result, _ = audits.load_audit(store, run_id)
    except Exception:  # no audit, no point on the disparity plot
        return None
    d = result.disparity
    if d is None or d.empty:
        return None
    d = d[(d["metric"] == metric) & (d["worst_group"].astype(str) != "")]
    if d.empty:
        return None
    row = d.iloc[0]
    return {
        "grouping": str(row["grouping"]),
        "gap": float(row["difference"]),
        "lo": float(row["difference_ci_low"]),
        "hi": float(row["difference_ci_high"]),
    }


def _facts(r: Row) -> ModelFacts | None:
    return getattr(r, "facts", None)


def args_text(r: Row) -> str:
    """The run's arguments that differ from the model's defaults (compact JSON), for every table."""
    f = _facts(r)
    return args_json(f.args) if f is not None else model_args_text(r.record)


def has_references(lb: Leaderboard) -> tuple[bool, bool]:
    """(any published figure, any authors'-code figure) among the rows."""
    refs = [ref for r in lb.rows if _facts(r) for ref in _facts(r).references.values()]
    return any(x.published for x in refs), any(x.upstream for x in refs)


def devices(lb: Leaderboard) -> list[str]:
    return sorted({f.speed.device_text for r in lb.rows if (f := _facts(r)) and f.speed})


# ------------------------------------------------------------------------------------------------------------
# text (Markdown / LaTeX)


def _short_agreement(a: Agreement, tag: str = "") -> str:
    label = metric_label(a.metric)
    num = _reported(a.reported)
    if a.diff is None:
        return f"{label} {num}{tag}"
    mark = "" if a.ok else " OFF"
    return f"{label} {num}{tag} ({a.diff:+.{_diff_digits(a.metric)}f}){mark}"


def _reported(value: float) -> str:
    """A reported figure with the digits it was declared with (0.809 stays 0.809, not 0.8090)."""
    return f"{value:.6g}"


def _diff_digits(metric: str) -> int:
    """Decimals of a difference from a reported figure: the metric's own, at most 3."""
    return min(3, column_decimals(metric) or 3)


def _agreements(f: ModelFacts | None, which: str) -> list[Agreement]:
    if f is None:
        return []
    return [a for ref in f.references.values() for a in getattr(ref, which)]


def text_headers(lb: Leaderboard) -> tuple[list[str], list[str]]:
    """Headers and alignments of the model columns (parameters, speed, published figures) in the text table."""
    pub, up = has_references(lb)
    headers = ["Params", f"{SPEED_LABEL} \u2193"]
    align = ["r", "r"]
    if pub:
        headers.append("Published (ours - published)")
        align.append("l")
    if up:
        headers.append("Reproduces authors' code (ours - theirs)")
        align.append("l")
    return headers, align


def text_cells(lb: Leaderboard, r: Row) -> list[str]:
    """A row's model-column cells in the text table."""
    f = _facts(r)
    pub, up = has_references(lb)
    cells = [
        fmt_parameters(f.parameters) if f else "-",
        (fmt_speed(f.speed.ms_per_megapixel) + (" *" if f.speed.busy else "")) if f and f.speed else "-",
    ]
    if pub:
        items = _agreements(f, "published")
        cells.append(
            "; ".join(_short_agreement(a, f" {KIND_TEXT[a.entry.kind]}") for a in items) if items else "-"
        )
    if up:
        items = _agreements(f, "upstream")
        cells.append("; ".join(_short_agreement(a) for a in items) if items else "-")
    return cells


def text_notes(lb: Leaderboard) -> list[str]:
    """The notes printed under the text table for the model columns (devices, published figures)."""
    notes = []
    devs = devices(lb)
    if devs:
        notes.append(
            f"{SPEED_LABEL}: model time per megapixel of input (median over samples; metrics excluded), "
            f"measured on {'; '.join(devs)}"
            + (" - device descriptions differ, so compare speeds with care." if len(devs) > 1 else ".")
            + (
                " * the machine was busy when the run started (load above its CPU count): its time includes "
                "waiting."
                if any(f.speed.busy for r in lb.rows if (f := _facts(r)) and f.speed)
                else ""
            )
        )
    notes.append("Params: parameters of the model's torch modules (0 for training-free methods).")
    pub, up = has_references(lb)
    if pub or up:
        tol = ", ".join(f"{metric_label(m)} {t:g}" for m, t in DEFAULT_TOLERANCE.items())
        notes.append(
            "Published: the figure the paper or the authors' README reports for this protocol and setting, and "
            "ours minus it; Reproduces authors' code: the authors' released test script re-run here and scored "
            f"with the suite's metrics. OFF: the difference exceeds the tolerance ({tol} unless the model card "
            "states another); the HTML leaderboard gives each source and reason."
        )
    return notes


# ------------------------------------------------------------------------------------------------------------
# CSV


def frame_columns(lb: Leaderboard, r: Row) -> dict[str, Any]:
    """A row's model columns as plain values for the CSV/JSON leaderboard export."""
    f = _facts(r)
    out: dict[str, Any] = {
        "model_args_non_default": args_text(r),
        "parameters": f.parameters if f and f.parameters is not None else None,
        "ms_per_megapixel": f.speed.ms_per_megapixel if f and f.speed else float("nan"),
        "ms_per_megapixel_mean": f.speed.mean_ms_per_megapixel if f and f.speed else float("nan"),
        "timing_device": f.speed.device_text if f and f.speed else "",
        "timing_load_average": f.speed.load_average if f and f.speed else None,
    }
    for a in _agreements(f, "published") + _agreements(f, "upstream"):
        key = "published" if a.entry.kind != "upstream-code" else "authors_code"
        out[f"{a.metric}_{key}"] = a.reported
        out[f"{a.metric}_{key}_diff"] = a.diff if a.diff is not None else float("nan")
        out[f"{a.metric}_{key}_within_tolerance"] = a.ok
        out[f"{a.metric}_{key}_tolerance"] = a.tolerance
        out[f"{a.metric}_{key}_source"] = f"{a.entry.kind}: {a.entry.source}"
    return out


# ------------------------------------------------------------------------------------------------------------
# HTML


def _html_agreements(items: list[Agreement], with_kind: bool) -> dict[str, Any]:
    if not items:
        return {"lines": [], "title": "no figure declared for this protocol and setting", "off": False}
    lines = []
    for a in items:
        kind = f" {KIND_TEXT[a.entry.kind]}" if with_kind else ""
        diff = "" if a.diff is None else f"{a.diff:+.{_diff_digits(a.metric)}f}"
        lines.append(
            {
                "label": metric_label(a.metric),
                "value": _reported(a.reported) + kind,
                "diff": diff,
                "off": a.ok is False,
                "ok": a.ok is True,
                # a flagged difference says why, on the page (the tooltip adds the source)
                "why": (a.entry.note or "no known reason: see the model card") if a.ok is False else "",
            }
        )
    title = " | ".join(agreement_text(a, _reported) for a in items)
    return {"lines": lines, "title": title, "off": any(x["off"] for x in lines)}


def html_row(lb: Leaderboard, r: Row) -> dict[str, Any]:
    """A row's model-column cells for the HTML leaderboard template."""
    f = _facts(r)
    pub, up = has_references(lb)
    sp = f.speed if f else None
    cells: dict[str, Any] = {
        "args": args_text(r),
        "args_full": model_args_text(r.record),
        "params": fmt_parameters(f.parameters) if f else "-",
        "params_sort": "" if not f or f.parameters is None else str(f.parameters),
        "params_title": (
            f"{f.parameters:,} parameters (nn.Module parameters of the model)"
            if f and f.parameters is not None
            else "not recorded"
        ),
        "speed": fmt_speed(sp.ms_per_megapixel) if sp else "-",
        "busy": bool(sp and sp.busy),
        "speed_sort": sort_key(sp.ms_per_megapixel) if sp else "",
        "speed_title": (
            f"median {sp.ms_per_megapixel:.4g} ms per megapixel over {sp.n} sample(s) "
            f"(time-weighted mean {sp.mean_ms_per_megapixel:.4g}); inputs {sp.megapixels:.3g} MP; "
            f"device {sp.device_text}; {sp.load_text}"
            if sp
            else "no timed samples"
        ),
    }
    if pub:
        cells["published"] = _html_agreements(_agreements(f, "published"), with_kind=True)
    if up:
        cells["upstream"] = _html_agreements(_agreements(f, "upstream"), with_kind=False)
    return cells


def html_context(lb: Leaderboard, page_dir: Path, stem: str) -> dict[str, Any]:
    """Extra template variables: which columns exist, the trade-off plots (written beside the page)."""
    pub, up = has_references(lb)
    figures = []
    speed_plot = speed_figure(lb, page_dir / f"{stem}-plots" / "quality-vs-speed.png")
    if speed_plot:
        figures.append(
            {
                "src": href(speed_plot, page_dir),
                "alt": "quality against time per megapixel, Pareto front marked",
                "caption": (
                    f"{metric_label(lb.primary or '')} against model time per megapixel (log scale; "
                    f"{'; '.join(devices(lb)) or 'device unknown'}). Filled points joined by the dashed line "
                    "are the Pareto front: no other model is both faster and better. Grey: sanity rows."
                ),
            }
        )
    disparity_plot = disparity_figure(lb, page_dir / f"{stem}-plots" / "quality-vs-disparity.png")
    if disparity_plot:
        path, what = disparity_plot
        figures.append(
            {
                "src": href(path, page_dir),
                "alt": "quality against disparity between groups, Pareto front marked",
                "caption": (
                    f"{metric_label(lb.primary or '')} against {what} (lower is fairer; bars: intervals). "
                    "A model to the left serves the groups more equally; one higher is better on average; the "
                    "Pareto front shows where quality is bought with disparity."
                ),
            }
        )
    tol = ", ".join(f"{metric_label(m)} {t:g}" for m, t in DEFAULT_TOLERANCE.items())
    return {
        "extra": {
            "published": pub,
            "upstream": up,
            "devices": devices(lb),
            "tolerance": tol,
            "speed_label": SPEED_LABEL,
            "any_args": any(args_text(r) for r in lb.rows),
            "any_busy": any(f.speed.busy for r in lb.rows if (f := _facts(r)) and f.speed),
        },
        "figures": figures,
    }


# ------------------------------------------------------------------------------------------------------------
# plots


def _point_label(r: Row) -> str:
    f = _facts(r)
    extra = ", ".join(f"{k}={v}" for k, v in sorted((f.args if f else {}).items()))
    return r.model + (f" ({extra})" if extra else "")


def _primary_point(lb: Leaderboard, r: Row) -> float:
    cell = r.cells.get(lb.primary) if lb.primary else None
    v = cell.mean if cell is not None and cell.state == "ok" else None
    return float(v) if v is not None else float("nan")


def speed_figure(lb: Leaderboard, path: Path) -> Path | None:
    """Quality (primary metric) vs ms per megapixel; None when no row has both."""
    if not lb.primary:
        return None
    rows = []
    for r in lb.rows:
        f = _facts(r)
        rows.append(
            {
                "label": _point_label(r),
                "x": f.speed.ms_per_megapixel if f and f.speed else float("nan"),
                "y": _primary_point(lb, r),
                "muted": bool(r.record.model.get("sanity")),
            }
        )
    pts = pd.DataFrame(rows)
    if pts.empty or not (np.isfinite(pts["x"]) & np.isfinite(pts["y"])).any():
        return None
    hib = next((c.higher_is_better for c in lb.columns if c.metric == lb.primary), True)
    return plots.quality_tradeoff(
        pts,
        path,
        x_label=f"model time, {SPEED_LABEL} (log)",
        y_label=metric_label(lb.primary),
        x_lower_is_better=True,
        y_higher_is_better=bool(hib),
        log_x=True,
    )


def disparity_figure(lb: Leaderboard, path: Path) -> tuple[Path, str] | None:
    """Quality vs disparity between groups: the headline GPI gap where runs have a GPI, else the primary
    metric's best-minus-worst group gap; intervals as bars. None on protocols without groups."""
    if not lb.primary or lb.settings is None or not lb.settings.group_by:
        return None
    use_gpi = any(r.gpi for r in lb.rows)
    rows = []
    for r in lb.rows:
        if use_gpi:
            g = r.gpi or {}
            x, lo, hi = g.get("gap", math.nan), g.get("gap_lo", math.nan), g.get("gap_hi", math.nan)
        else:
            g = getattr(r, "metric_gap", None) or {}
            x, lo, hi = g.get("gap", math.nan), g.get("lo", math.nan), g.get("hi", math.nan)
        rows.append(
            {
                "label": _point_label(r),
                "x": float(x),
                "x_lo": float(lo),
                "x_hi": float(hi),
                "y": _primary_point(lb, r),
                "muted": bool(r.record.model.get("sanity")),
            }
        )
    pts = pd.DataFrame(rows)
    if pts.empty or not (np.isfinite(pts["x"]) & np.isfinite(pts["y"])).any():
        return None
    label = metric_label(lb.primary)
    if use_gpi:
        headlines = sorted({r.gpi["headline"] for r in lb.rows if r.gpi})
        what, x_label = "the GPI gap (" + "; ".join(headlines) + ")", "GPI gap"
    else:
        groupings = sorted({r.metric_gap["grouping"] for r in lb.rows if getattr(r, "metric_gap", None)})
        what = f"the gap in {label} between the best and the worst group (by {', '.join(groupings)})"
        x_label = f"{label} gap between groups"
    hib = next((c.higher_is_better for c in lb.columns if c.metric == lb.primary), True)
    out = plots.quality_tradeoff(
        pts,
        path,
        x_label=x_label,
        y_label=metric_label(lb.primary),
        x_lower_is_better=True,
        y_higher_is_better=bool(hib),
    )
    return out, what


__all__ = [
    "Reference",
    "args_text",
    "attach",
    "frame_columns",
    "html_context",
    "html_row",
    "text_cells",
    "text_headers",
    "text_notes",
]
