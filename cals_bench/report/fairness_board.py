"""The fairness leaderboard of one protocol: every stored run's audit side by side, grouping by grouping.

Per model and grouping: the headline metric's mean per group (with the audit's intervals), the worst group,
the gap ``max - min`` of group means with its interval and permutation p-value, the GPI of each group,
``gpi_sum``, ``gpi_gap`` with its interval and permutation p-value, and a quality-vs-disparity plot (mean
quality on one axis, gap on the other) per grouping. Everything is read from each run's cached audit
(``cals_bench.audits.load_audit``: the protocol's own settings, cluster resampling included); the only
statistic computed here is Holm's correction **across models**: the audits correct within one model, and
a board that tests every model asks one question per model, so each (grouping, test) column is one family
over the models that have a p-value in it.

``cals-bench fairness-board --protocol utkface-balanced`` writes ``<reports>/<protocol>-v<version>/
fairness.html`` (plots in ``fairness-plots/``); ``--markdown`` prints the tables instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import matplotlib

from cals_bench import audits
from cals_bench.cli_common import results_option
from cals_bench.fairness import holm
from cals_bench.report.formatting import (
    arrow,
    direction_text,
    fmt_ci,
    fmt_p,
    fmt_value,
    metric_label,
    sort_key,
)
from cals_bench.report.html import render_page
from cals_bench.report.layout import protocol_folder, reports_root
from cals_bench.report.plots import _PALETTE, _RC, SMALL_COLOUR, _save, new_figure
from cals_bench.run_record import RunRecord
from cals_bench.store import Store, slug

NAN = float("nan")


@dataclass
class Stat:
    """A value with its interval (NaN where absent) and, for groups, size and small-group flag."""

    value: float = NAN
    lo: float = NAN
    hi: float = NAN
    n: int = 0
    small: bool = False


@dataclass
class BoardRow:
    """One run on one grouping."""

    run_id: str
    model: str
    sanity: bool
    uses_gt: bool
    n_scored: int
    overall: Stat
    groups: dict[str, Stat]
    worst: str
    best: str
    gap: Stat
    p_gap: float
    gpi: dict[str, Stat]
    gpi_sum: Stat
    gpi_gap: Stat
    gpi_worst: str
    p_gpi: float
    p_gap_holm: float = NAN
    p_gpi_holm: float = NAN


@dataclass
class GroupingBoard:
    grouping: str
    groups: list[str]
    rows: list[BoardRow]
    gpi_method: str = ""


@dataclass
class FairnessBoard:
    """One fairness board: a metric's group gaps for every model on one grouped protocol."""

    name: str
    version: int
    title: str
    metric: str
    higher_is_better: bool
    feature: str
    feature_kind: str
    groupings: list[GroupingBoard]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return NAN
    return v


def _runs(store: Store, protocol: str, version: int | None) -> list[RunRecord]:
    df = store.list_runs(protocol)
    if df.empty:
        raise click.ClickException(f"no stored runs of protocol {protocol!r} in {store.root}")
    df = df[df["status"] == "finished"] if "status" in df.columns else df
    if version is None:
        version = int(df["protocol_version"].max())
    df = df[df["protocol_version"] == version]
    if df.empty:
        raise click.ClickException(f"no finished runs of {protocol} v{version}")
    return [store.get_record(r) for r in df["run_id"]]


def _headline_feature(summary) -> tuple[str, str]:
    """(kind, feature) of the GPI shown: the first feature set, else the 1-D GPI's metric."""
    if summary.empty:
        return "", ""
    feats = summary[summary["kind"] == "features"]
    pick = feats if len(feats) else summary
    first = pick.iloc[0]
    return str(first["kind"]), str(first["feature"])


def build_board(
    store: Store, protocol: str, version: int | None = None, metric: str | None = None
) -> FairnessBoard:
    """Collect every finished run of the protocol version and its audit into a board."""
    records = _runs(store, protocol, version)
    spec = records[0].protocol.spec
    metric = metric or spec["metrics"][0]
    audit_spec = spec.get("audit") or {}
    groupings = [g.replace(" ", "") for g in audit_spec.get("group_by", [])]
    if not groupings:
        raise click.ClickException(f"protocol {protocol} declares no audit groups: no fairness board")
    results = []
    for record in sorted(records, key=lambda r: r.model["name"]):
        result, _ = audits.load_audit(store, record.run_id)
        results.append((record, result))
    directions = dict(records[0].metric_directions)
    if metric not in directions:
        raise click.ClickException(
            f"metric {metric!r} is not scored on {protocol}; have {sorted(directions)}"
        )
    kind, feature = "", ""
    for _, result in results:
        kind, feature = _headline_feature(result.gpi_summary)
        if feature:
            break
    boards = []
    for grouping in groupings:
        rows = [_row(record, result, grouping, metric, kind, feature) for record, result in results]
        groups = sorted({g for r in rows for g in r.groups} | {g for r in rows for g in r.gpi})
        for attr, holm_attr in (("p_gap", "p_gap_holm"), ("p_gpi", "p_gpi_holm")):
            adjusted = holm([getattr(r, attr) for r in rows]) if rows else []
            for r, p in zip(rows, adjusted):
                setattr(r, holm_attr, float(p))
        method = ""
        for _, result in results:
            s = result.gpi_summary
            hit = s[(s["kind"] == kind) & (s["feature"] == feature) & (s["grouping"] == grouping)]
            if len(hit):
                method = str(hit["method"].iloc[0])
                break
        boards.append(GroupingBoard(grouping, groups, rows, method))
    settings = results[0][1].settings.to_dict()
    notes = []
    versions = {r.protocol.hash for r in records}
    if len(versions) > 1:
        notes.append(f"{len(versions)} protocol hashes among these runs: check the run records")
    return FairnessBoard(
        name=records[0].protocol.name,
        version=int(records[0].protocol.version),
        title=str(spec.get("title", "")),
        metric=metric,
        higher_is_better=bool(directions[metric]),
        feature=feature,
        feature_kind=kind,
        groupings=boards,
        settings=settings,
        notes=notes,
    )


def _row(record: RunRecord, result, grouping: str, metric: str, kind: str, feature: str) -> BoardRow:
    g = result.groups
    overall = g[(g["grouping"] == "overall") & (g["metric"] == metric)]
    o = overall.iloc[0] if len(overall) else None
    per = g[(g["grouping"] == grouping) & (g["metric"] == metric)]
    groups = {
        str(r["group"]): Stat(
            _f(r["mean"]), _f(r["mean_ci_low"]), _f(r["mean_ci_high"]), int(r["n"]), bool(r["small_group"])
        )
        for r in per.to_dict("records")
    }
    d = result.disparity
    drow = d[(d["grouping"] == grouping) & (d["metric"] == metric)]
    dr = drow.iloc[0] if len(drow) else {}
    gp = result.gpi
    gprows = gp[(gp["kind"] == kind) & (gp["feature"] == feature) & (gp["grouping"] == grouping)]
    gpi = {
        str(r["group"]): Stat(
            _f(r["gpi"]), _f(r["gpi_ci_low"]), _f(r["gpi_ci_high"]), int(r["n"]), bool(r["small_group"])
        )
        for r in gprows.to_dict("records")
    }
    s = result.gpi_summary
    srow = s[(s["kind"] == kind) & (s["feature"] == feature) & (s["grouping"] == grouping)]
    sr = srow.iloc[0] if len(srow) else {}
    model = record.model
    return BoardRow(
        run_id=record.run_id,
        model=str(model.get("spec") or model["name"]),
        sanity=bool(model.get("sanity")),
        uses_gt=bool(model.get("uses_ground_truth")),
        n_scored=int(o["n"]) if o is not None else 0,
        overall=Stat(_f(o["mean"]), _f(o["mean_ci_low"]), _f(o["mean_ci_high"]), int(o["n"]))
        if o is not None
        else Stat(),
        groups=groups,
        worst=str(dr.get("worst_group", "") or ""),
        best=str(dr.get("best_group", "") or ""),
        gap=Stat(_f(dr.get("difference")), _f(dr.get("difference_ci_low")), _f(dr.get("difference_ci_high"))),
        p_gap=_f(dr.get("p_gap")),
        gpi=gpi,
        gpi_sum=Stat(_f(sr.get("gpi_sum")), _f(sr.get("gpi_sum_ci_low")), _f(sr.get("gpi_sum_ci_high"))),
        gpi_gap=Stat(_f(sr.get("gpi_gap")), _f(sr.get("gpi_gap_ci_low")), _f(sr.get("gpi_gap_ci_high"))),
        gpi_worst=str(sr.get("worst_group", "") or ""),
        p_gpi=_f(sr.get("p_value")),
    )


# ---------------------------------------------------------------------------------------------------------
# text


def _sig(p: float, alpha: float) -> str:
    return "*" if math.isfinite(p) and p <= alpha else ""


def board_markdown(board: FairnessBoard) -> str:
    """Markdown tables (plain characters), one pair per grouping: metric by group, GPI by group."""
    alpha = float(board.settings.get("alpha", 0.05))
    m, lab = board.metric, metric_label(board.metric)
    lines = [
        f"# Fairness: {board.name} v{board.version}",
        "",
        f"Headline metric {lab} ({direction_text(board.higher_is_better)}); GPI of {board.feature} "
        f"({board.feature_kind}). Intervals: the audit's {round(board.settings.get('confidence', 0.95) * 100)}% "
        f"bootstrap intervals{_cluster_text(board)}; p: permutation p-value, Holm-adjusted across the "
        f"{len(board.groupings[0].rows) if board.groupings else 0} models; * p_holm <= {alpha}.",
    ]
    for gb in board.groupings:
        groups = gb.groups
        ns = _group_sizes(gb)
        lines += ["", f"## {gb.grouping}", ""]
        head = ["model", f"{lab} all"] + [f"{g} (n={ns.get(g, '?')})" for g in groups]
        head += ["worst", "gap [CI]", "p_holm"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in gb.rows:
            cells = [r.model, fmt_value(r.overall.value, metric=m)]
            cells += [_cell_md(r.groups.get(g), m) for g in groups]
            cells += [
                r.worst or "-",
                f"{fmt_value(r.gap.value, metric=m)} {fmt_ci(r.gap.lo, r.gap.hi, r.gap.value, m)}".strip(),
                f"{fmt_p(r.p_gap_holm)}{_sig(r.p_gap_holm, alpha)}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"GPI ({board.feature}, {gb.gpi_method}) by {gb.grouping}:", ""]
        head = ["model", *list(groups), "gpi_sum", "gpi_gap [CI]", "worst", "p_holm"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in gb.rows:
            cells = [r.model] + [_cell_md(r.gpi.get(g), None) for g in groups]
            cells += [
                fmt_value(r.gpi_sum.value),
                f"{fmt_value(r.gpi_gap.value)} {fmt_ci(r.gpi_gap.lo, r.gpi_gap.hi, r.gpi_gap.value)}".strip(),
                r.gpi_worst or "-",
                f"{fmt_p(r.p_gpi_holm)}{_sig(r.p_gpi_holm, alpha)}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell_md(s: Stat | None, metric: str | None) -> str:
    if s is None or not math.isfinite(s.value):
        return "-"
    return fmt_value(s.value, metric=metric) + (" (small)" if s.small else "")


def _group_sizes(gb: GroupingBoard) -> dict[str, int]:
    """The largest n of each group over the rows (the same samples in every run, bar failures)."""
    out: dict[str, int] = {}
    for r in gb.rows:
        for g, s in r.groups.items():
            out[g] = max(out.get(g, 0), s.n)
    return out


def _cluster_text(board: FairnessBoard) -> str:
    c = board.settings.get("cluster_by")
    return f", resampling {c} clusters (tests permute {c} clusters)" if c else ""


# ---------------------------------------------------------------------------------------------------------
# plot


def tradeoff_plot(board: FairnessBoard, gb: GroupingBoard, path: Path) -> Path:
    """Quality vs disparity for one grouping: mean metric against its gap, and against the GPI gap."""
    m = board.metric
    with matplotlib.rc_context(_RC):
        fig = new_figure(figsize=(10.5, 4.2))
        axes = fig.subplots(1, 2)
        for ax, (label, get) in zip(
            axes,
            (
                (f"{metric_label(m)} gap between {gb.grouping} groups", lambda r: r.gap),
                (f"GPI gap ({board.feature}) between {gb.grouping} groups", lambda r: r.gpi_gap),
            ),
        ):
            for i, r in enumerate(gb.rows):
                y = get(r)
                if not (math.isfinite(r.overall.value) and math.isfinite(y.value)):
                    continue
                colour = SMALL_COLOUR if r.sanity else _PALETTE[i % len(_PALETTE)]
                if math.isfinite(y.lo) and math.isfinite(y.hi):
                    ax.plot([r.overall.value] * 2, [y.lo, y.hi], color=colour, lw=1.5, alpha=0.6)
                if math.isfinite(r.overall.lo) and math.isfinite(r.overall.hi):
                    ax.plot([r.overall.lo, r.overall.hi], [y.value] * 2, color=colour, lw=1.5, alpha=0.6)
                ax.scatter([r.overall.value], [y.value], s=30, color=colour, zorder=3)
                ax.annotate(
                    r.model, (r.overall.value, y.value), textcoords="offset points", xytext=(4, 3), fontsize=7
                )
            ax.set_xlabel(f"mean {metric_label(m)} {arrow(board.higher_is_better)} (all samples)")
            ax.set_ylabel(f"{label} (lower is fairer)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        fig.suptitle(
            f"{board.name}: quality vs disparity by {gb.grouping} (bars: intervals; grey: sanity rows)",
            fontsize=10,
        )
        fig.tight_layout()
        return _save(fig, path)


# ---------------------------------------------------------------------------------------------------------
# HTML


def _cell(s: Stat | None, metric: str | None, worst: bool = False) -> dict[str, Any]:
    if s is None or not math.isfinite(s.value):
        return {"text": "-", "ci": "", "sort": "", "title": "no value", "cls": "absent"}
    cls = "small-group" if s.small else ("worst" if worst else "")
    return {
        "text": fmt_value(s.value, metric=metric),
        "ci": fmt_ci(s.lo, s.hi, s.value, metric),
        "sort": sort_key(s.value),
        "title": f"n={s.n}{'; small group: not compared' if s.small else ''}; exact {sort_key(s.value)}",
        "cls": cls,
    }


def _context(board: FairnessBoard, page_dir: Path, plots: dict[str, str]) -> dict[str, Any]:
    alpha = float(board.settings.get("alpha", 0.05))
    m = board.metric
    sections = []
    for gb in board.groupings:
        sizes = _group_sizes(gb)
        rows = []
        for r in gb.rows:
            rows.append(
                {
                    "run_id": r.run_id,
                    "model": r.model,
                    "cls": " ".join(k for k, on in (("sanity", r.sanity), ("gt", r.uses_gt)) if on),
                    "sanity": r.sanity,
                    "overall": _cell(r.overall, m),
                    "groups": [_cell(r.groups.get(g), m, g == r.worst) for g in gb.groups],
                    "worst": r.worst or "-",
                    "gap": _cell(r.gap, m),
                    "p_gap": fmt_p(r.p_gap),
                    "p_gap_holm": fmt_p(r.p_gap_holm),
                    "p_gap_sort": sort_key(r.p_gap_holm),
                    "gap_sig": math.isfinite(r.p_gap_holm) and r.p_gap_holm <= alpha,
                    "gpi": [_cell(r.gpi.get(g), None, g == r.gpi_worst) for g in gb.groups],
                    "gpi_sum": _cell(r.gpi_sum, None),
                    "gpi_gap": _cell(r.gpi_gap, None),
                    "gpi_worst": r.gpi_worst or "-",
                    "p_gpi": fmt_p(r.p_gpi),
                    "p_gpi_holm": fmt_p(r.p_gpi_holm),
                    "p_gpi_sort": sort_key(r.p_gpi_holm),
                    "gpi_sig": math.isfinite(r.p_gpi_holm) and r.p_gpi_holm <= alpha,
                }
            )
        n_sig = sum(1 for r in rows if r["gap_sig"])
        n_gpi_sig = sum(1 for r in rows if r["gpi_sig"])
        worst_counts: dict[str, int] = {}
        for r in gb.rows:
            if r.worst and not r.sanity:
                worst_counts[r.worst] = worst_counts.get(r.worst, 0) + 1
        sections.append(
            {
                "id": slug(gb.grouping, 40),
                "grouping": gb.grouping,
                "groups": [{"name": g, "n": sizes.get(g, 0)} for g in gb.groups],
                "rows": rows,
                "plot": plots.get(gb.grouping),
                "gpi_method": gb.gpi_method,
                "summary": (
                    f"{n_sig} of {len(rows)} models have a {metric_label(m)} gap between {gb.grouping} groups "
                    f"significant after Holm across models (alpha {alpha}); {n_gpi_sig} have a significant "
                    "GPI gap. Worst group by mean (non-sanity models): "
                    + (
                        ", ".join(
                            f"{g} for {k}" for g, k in sorted(worst_counts.items(), key=lambda x: -x[1])
                        )
                        or "none"
                    )
                    + "."
                ),
            }
        )
    s = board.settings
    return {
        "board": board,
        "metric_label": metric_label(m),
        "arrow": arrow(board.higher_is_better),
        "direction": direction_text(board.higher_is_better),
        "sections": sections,
        "alpha": alpha,
        "ci_pct": round(float(s.get("confidence", 0.95)) * 100),
        "bootstrap": s.get("bootstrap"),
        "permutations": s.get("permutations"),
        "cluster_by": s.get("cluster_by") or "",
        "min_group_size": s.get("min_group_size"),
        "n_models": len(board.groupings[0].rows) if board.groupings else 0,
        "defs": [
            (k, audits.DEFINITIONS[k])
            for k in (
                "difference",
                "gap_permutation",
                "gpi",
                "gpi_sum",
                "gpi_gap",
                "gpi_gap permutation test",
                "holm",
            )
            if k in audits.DEFINITIONS
        ],
    }


def fairness_file(root: Path, name: str, version: int) -> Path:
    return protocol_folder(root, name, version) / "fairness.html"


def render_board(
    store: Store,
    protocol: str,
    version: int | None = None,
    *,
    metric: str | None = None,
    root: str | Path | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write the fairness board (HTML + its plots + a Markdown copy); returns the HTML path."""
    board = build_board(store, protocol, version, metric)
    path = Path(out) if out else fairness_file(reports_root(root), board.name, board.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_dir = path.parent / f"{path.stem}-plots"
    plots = {}
    for gb in board.groupings:
        file = tradeoff_plot(board, gb, plot_dir / f"quality-vs-disparity-{slug(gb.grouping, 40)}.png")
        plots[gb.grouping] = f"{plot_dir.name}/{file.name}"
    path.with_suffix(".md").write_text(board_markdown(board), encoding="utf-8")
    context = _context(board, path.parent, plots)
    context["markdown_href"] = path.with_suffix(".md").name
    return render_page("fairness.html.j2", path, store.root, **context)


@click.command("fairness-board")
@click.option("--protocol", "protocol_name", required=True, help="Protocol name (as stored with the runs).")
@click.option(
    "--version", "protocol_version", type=int, default=None, help="Protocol version (default: newest)."
)
@click.option("--metric", default=None, help="Headline metric (default: the protocol's first metric).")
@click.option("--markdown", is_flag=True, help="Print the tables as Markdown instead of writing HTML.")
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="HTML file (default: under --reports)."
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="CALS_BENCH_REPORTS",
    help="Reports folder (default ./reports; env CALS_BENCH_REPORTS).",
)
@results_option
def fairness_board(protocol_name, protocol_version, metric, markdown, out, reports_dir, results):
    """Fairness leaderboard of every stored run of a protocol with groups: per model the metric per group,
    worst group, gap with its interval, GPI per group, gpi_sum, gpi_gap, permutation p-values Holm-adjusted
    across models, and quality-vs-disparity plots.

    \b
    Examples:
      cals-bench fairness-board --protocol utkface-balanced
      cals-bench fairness-board --protocol covid-cxr --markdown > covid-cxr-fairness.md
    """
    store = Store(results)
    if markdown:
        click.echo(board_markdown(build_board(store, protocol_name, protocol_version, metric)), nl=False)
        return
    click.echo(
        str(render_board(store, protocol_name, protocol_version, metric=metric, root=reports_dir, out=out))
    )


__all__ = ["BoardRow", "FairnessBoard", "board_markdown", "build_board", "fairness_board", "render_board"]
