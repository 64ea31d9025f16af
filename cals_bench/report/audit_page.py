"""One run's audit report: summary, group tables, GPI, tests, plots, image grids, provenance.

``render_audit(store, run)`` writes ``<reports>/<protocol>-v<version>/runs/<run_id>/index.html`` with its
plots, thumbnails, ``audit.json`` and the group table as Markdown, LaTeX and CSV, then refreshes the
protocol's leaderboard so the two pages link to each other. Everything is read from the store.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from cals_bench import audits
from cals_bench.report import grids, plots
from cals_bench.report.formatting import (
    arrow,
    diagnostic_columns,
    direction_text,
    fmt_ci,
    fmt_count,
    fmt_p,
    fmt_value,
    gpi_label,
    metric_label,
    sort_key,
)
from cals_bench.report.html import render_page
from cals_bench.report.layout import href, leaderboard_file, reports_root, run_folder
from cals_bench.report.runinfo import Flag, model_args_text, run_flags
from cals_bench.report.tables import TextTable, ValueCI, write_all
from cals_bench.run_record import RunRecord
from cals_bench.store import Store

MIN_DISPLAY_PX = 120  # thumbnails smaller than this are displayed enlarged
GPI_DEFINITION_KEYS = ("gpi", "gpi_1d", "gpi_sum", "gpi_gap", "gpi_gap permutation test")
GTMEAN_TITLE = (
    "the output's mean is rescaled to the reference's before scoring: a diagnostic that uses the ground "
    "truth, not comparable with blind scores"
)


def render_audit_page(
    store: Store,
    run: str,
    out: str | Path | None = None,
    *,
    root: str | Path | None = None,
    link_leaderboard: bool = True,
) -> Path:
    """Write the audit page of ``run`` (id, unique prefix or ``latest``) and return its ``index.html``.

    ``out``: the report folder (default ``<root>/<protocol>-v<version>/runs/<run_id>``); ``root``: the
    reports folder (default ``$CALS_BENCH_REPORTS`` or ``./reports``). In the default folder the page links
    the protocol's leaderboard when ``link_leaderboard`` (the caller renders it) or when it exists already.
    The leaderboard itself is rendered by :mod:`cals_bench.report.site`.
    """
    record = store.get_record(run)
    root_path = reports_root(root)
    folder = Path(out) if out else run_folder(root_path, record)
    folder.mkdir(parents=True, exist_ok=True)
    board = leaderboard_file(root_path, record.protocol.name, record.protocol.version)
    link_board = out is None and (link_leaderboard or board.is_file())
    return _render(store, record, folder, href(board, folder) if link_board else None)


def _render(store: Store, record: RunRecord, folder: Path, leaderboard_href: str | None) -> Path:
    run_id = record.run_id
    result, report_notes = audits.load_audit(store, run_id)
    # the report folder is self-contained: it carries a copy of the run's audit.json for download
    folder.mkdir(parents=True, exist_ok=True)
    cached, copy = store.run_dir(run_id) / audits.AUDIT_FILE, folder / "audit.json"
    if not copy.is_file() or copy.read_bytes() != cached.read_bytes():
        shutil.copyfile(cached, copy)
    settings = result.settings
    directions = dict(record.metric_directions)
    samples = store.samples(run_id)
    ok_ids = samples.loc[samples["status"] == "ok", "sample_id"].astype(str).tolist()
    records, _ = audits.finite_records(store.scores(run_id))
    wide = _wide(records, ok_ids)
    attrs = audits.attributes_frame(samples)
    labels = audits.group_labels(attrs, settings, list(wide.index))
    metrics = _metric_order(record, wide)
    wide = wide[metrics]
    pct = f"{round(settings.confidence * 100)}% CI"

    (folder / "plots").mkdir(exist_ok=True)
    figures = _figures(result, wide, labels, directions, folder)
    grid = _grid(store, record, wide, labels, directions, settings, folder)
    downloads = _exports(result, record, folder)

    failures = [tuple(f) for f in record.failures or []]
    context = dict(
        model_name=record.model["name"],
        model_args=model_args_text(record),
        protocol=record.protocol,
        run_id=run_id,
        status=record.status,
        n_scored=len(ok_ids),
        n_total=int(record.n_samples or len(samples)),
        leaderboard_href=leaderboard_href,
        flags=run_flags(record),
        callouts=_callouts(record),
        ci_label=pct,
        ci_text=(
            f"{pct} percentile bootstrap of the mean ({settings.bootstrap} resamples, seed {settings.seed})"
            if settings.bootstrap
            else "not computed (protocol sets bootstrap: 0)"
        ),
        summary_rows=_summary_rows(record, result.groups, metrics, directions),
        unavailable=[u for u in _unavailable(record) if u["metric"]],
        unavailable_features=[u for u in _unavailable(record) if not u["metric"]],
        gtmean_title=GTMEAN_TITLE,
        headline=_headline(result.scalars),
        correction=settings.correction,
        alpha=settings.alpha,
        min_group_size=settings.min_group_size,
        notes=[*report_notes, *result.notes],
        groupings=_groupings(result, metrics, labels),
        no_groups_reason=(
            f"Protocol {record.protocol.name} v{record.protocol.version} defines no groups "
            "(audit.group_by is empty): only overall figures, no per-group tables, gaps, GPI or tests."
        ),
        gpi_defs=[(k, audits.DEFINITIONS[k]) for k in GPI_DEFINITION_KEYS if k in audits.DEFINITIONS],
        gpi_blocks=_gpi_blocks(result),
        gpi_interval_text=(
            f"Intervals of GPI, its sum and gap are {settings.distance_interval} bootstrap intervals"
            + (
                " (reverse percentile): they correct the upward bias of the plug-in W1 estimate, so an "
                "interval can lie below its estimate; they are clipped at 0."
                if settings.distance_interval == "basic"
                else "."
            )
        ),
        gpi_empty_reason=_gpi_empty_reason(record, settings, wide),
        tests=_tests(result.tests),
        tests_text=(
            f"Every test the audit ran. p-values are corrected with {settings.correction} within each test "
            "family "
            f"(alpha = {settings.alpha}); permutation tests use {settings.permutations} permutations, seed "
            f"{settings.seed}. Tests with too few groups or values are listed with a note and no p-value."
        ),
        figures=figures,
        grid=grid,
        failures=failures[:200],
        failures_text=(
            f"{len(failures)} sample(s) failed and are left out of every figure"
            + (" (first 200 listed)." if len(failures) > 200 else ".")
        ),
        undefined_reasons=sorted((record.undefined_reasons or {}).items(), key=lambda kv: -kv[1]),
        prov_protocol=_prov_protocol(record),
        prov_model=_prov_model(record),
        prov_metrics=_prov_metrics(record),
        prov_run=_prov_run(record, store),
        prov_packages=sorted(((k, str(v)) for k, v in (record.environment.get("packages") or {}).items())),
        protocol_yaml=yaml.safe_dump(record.protocol.spec, sort_keys=False, width=110),
        definitions=sorted(audits.DEFINITIONS.items()),
        downloads=downloads,
        records_path=str(store.run_dir(run_id) / "records.parquet"),
    )
    return render_page("audit.html.j2", folder / "index.html", store.root, **context)


# ------------------------------------------------------------------------------------------------------------
# data


def _wide(records: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    if records.empty:
        return pd.DataFrame(index=pd.Index(ids, name="sample_id"))
    rec = records.assign(sample_id=records["sample_id"].astype(str))
    wide = rec.pivot_table(index="sample_id", columns="metric", values="value", aggfunc="first", dropna=False)
    wide.columns.name = None
    return wide.reindex(index=[i for i in ids if i in wide.index]).astype(float)


def _metric_order(record: RunRecord, wide: pd.DataFrame) -> list[str]:
    """Protocol metric columns first (as declared in the run's metric list), then the rest."""
    order: list[str] = []
    for m in record.metrics:
        order += [c for c in (m.get("columns") or {}) if c in wide.columns and c not in order]
    order += [c for c in wide.columns if c not in order]
    return order


def _callouts(record: RunRecord) -> list[str]:
    out = []
    model = record.model
    if model.get("uses_ground_truth"):
        out.append(
            "This model reads the ground-truth reference at test time: its scores are not comparable with "
            "blind "
            "methods."
        )
    if model.get("sanity"):
        out.append(
            f"{model.get('name')} is a sanity row (a trivial model): its scores are a floor to compare with, "
            "not a method."
        )
    if record.status not in ("finished", "finished-with-failures"):
        out.append(f"The run has status {record.status!r}: figures cover only the samples scored so far.")
    return out


def _unavailable(record: RunRecord) -> list[dict[str, Any]]:
    """Metrics and GPI feature extractors the run could not compute, with the recorded reason."""
    spec = record.protocol.spec
    metric_names = {*(spec.get("metrics") or []), *(spec.get("diagnostics") or [])}
    return [
        {
            "name": k,
            "reason": str(v),
            "metric": k in metric_names or k in record.metric_directions,
        }
        for k, v in record.unavailable_metrics.items()
    ]


def _summary_rows(record, groups: pd.DataFrame, metrics: list[str], directions) -> list[dict[str, Any]]:
    summary = record.summary or {}
    overall = groups[groups["grouping"] == "overall"].set_index("metric")
    rows = []
    for metric in metrics:
        s = summary.get(metric, {})
        o = overall.loc[metric] if metric in overall.index else None
        mean = s.get("mean", o["mean"] if o is not None else None)
        lo = o["mean_ci_low"] if o is not None else None
        hi = o["mean_ci_high"] if o is not None else None
        rows.append(
            {
                "metric": metric,
                "label": metric_label(metric),
                "arrow": arrow(directions.get(metric)),
                "direction": direction_text(directions.get(metric)),
                "gtmean": metric in diagnostic_columns(),
                "mean": fmt_value(mean, metric=metric),
                "mean_sort": sort_key(mean),
                "ci": fmt_ci(lo, hi, mean, metric),
                "ci_sort": sort_key(lo),
                "median": fmt_value(s.get("median"), metric=metric),
                "median_sort": sort_key(s.get("median")),
                "std": fmt_value(s.get("std"), metric=metric),
                "std_sort": sort_key(s.get("std")),
                "n": fmt_count(s.get("count", o["n"] if o is not None else None)),
                "undefined": fmt_count(s.get("undefined", o["n_nan"] if o is not None else None)),
            }
        )
    return rows


def _headline(scalars: Mapping[str, Any]) -> dict[str, str] | None:
    if "gpi_headline" not in scalars:
        return None
    return {
        "label": _headline_label(str(scalars["gpi_headline"])),
        "sum": fmt_value(scalars.get("gpi_sum")),
        "gap": fmt_value(scalars.get("gpi_gap")),
        "p": fmt_p(scalars.get("gpi_gap_p")) if _finite(scalars.get("gpi_gap_p")) else "",
        "p_adj": fmt_p(scalars.get("gpi_gap_p_adjusted"))
        if _finite(scalars.get("gpi_gap_p_adjusted"))
        else "",
    }


def _headline_label(text: str) -> str:
    """``metric_1d:lpips by context`` (the audit's scalar) as ``1-D GPI of LPIPS by context``."""
    head, _, grouping = text.partition(" by ")
    kind, _, feature = head.partition(":")
    return gpi_label(kind, feature, grouping) if feature and grouping else text


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _groupings(result, metrics: list[str], labels: Mapping[str, pd.Series]) -> list[dict[str, Any]]:
    groups, disparity = result.groups, result.disparity
    out = []
    for gname in [g for g in groups["grouping"].unique() if g != "overall"]:
        g_rows = groups[groups["grouping"] == gname]
        lab = labels.get(gname)
        block = {
            "name": gname,
            "n_groups": int(g_rows["group"].nunique()),
            "n_missing": int(lab.isna().sum()) if lab is not None else 0,
            "metrics": [],
        }
        for metric in [m for m in metrics if m in set(g_rows["metric"])]:
            mrows = g_rows[g_rows["metric"] == metric]
            overall = groups[(groups["grouping"] == "overall") & (groups["metric"] == metric)]
            d = disparity[(disparity["grouping"] == gname) & (disparity["metric"] == metric)]
            drow = d.iloc[0].to_dict() if len(d) else None
            rows = []
            for r in [*overall.to_dict("records"), *mrows.to_dict("records")]:
                cls = []
                flags = []
                if r["small_group"]:
                    cls.append("small-group")
                    flags.append(Flag("small", "small", f"n = {r['n']} < min_group_size: not compared"))
                if drow and r["grouping"] != "overall" and r["group"] == drow["worst_group"]:
                    cls.append("worst")
                    flags.append(Flag("failed", "worst", "worst compared group for this metric"))
                if drow and r["grouping"] != "overall" and r["group"] == drow["best_group"]:
                    cls.append("best")
                rows.append(
                    {
                        "group": "overall" if r["grouping"] == "overall" else r["group"],
                        "cls": " ".join(cls),
                        "n": fmt_count(r["n"]),
                        "nan": fmt_count(r["n_nan"]),
                        "mean": fmt_value(r["mean"], metric=metric),
                        "mean_sort": sort_key(r["mean"]),
                        "mean_ci": fmt_ci(r["mean_ci_low"], r["mean_ci_high"], r["mean"], metric),
                        "median": fmt_value(r["median"], metric=metric),
                        "median_sort": sort_key(r["median"]),
                        "median_ci": fmt_ci(r["median_ci_low"], r["median_ci_high"], r["median"], metric),
                        "diff": ""
                        if r["grouping"] == "overall"
                        else fmt_value(r["diff_to_overall"], metric=metric),
                        "diff_sort": "" if r["grouping"] == "overall" else sort_key(r["diff_to_overall"]),
                        "flags": flags,
                    }
                )
            block["metrics"].append(
                {
                    "metric": metric,
                    "label": metric_label(metric),
                    "arrow": arrow(bool(mrows["higher_is_better"].iloc[0])),
                    "direction": direction_text(bool(mrows["higher_is_better"].iloc[0])),
                    "rows": rows,
                    "disparity": _disparity(drow) if drow else None,
                }
            )
        out.append(block)
    return out


def _disparity(d: Mapping[str, Any]) -> dict[str, Any]:
    m = d.get("metric")
    compared = int(d.get("n_groups_compared") or 0)
    note = ""
    if compared < 2:
        note = "fewer than 2 groups large enough to compare: no gap, ratio or test."
    return {
        "worst": d.get("worst_group") or "-",
        "worst_mean": fmt_value(d.get("worst_mean"), metric=m),
        "best": d.get("best_group") or "-",
        "best_mean": fmt_value(d.get("best_mean"), metric=m),
        "difference": fmt_value(d.get("difference"), metric=m),
        "difference_sort": sort_key(d.get("difference")),
        "difference_ci": fmt_ci(
            d.get("difference_ci_low"), d.get("difference_ci_high"), d.get("difference"), m
        ),
        "ratio": fmt_value(d.get("ratio")),
        "ratio_ci": fmt_ci(d.get("ratio_ci_low"), d.get("ratio_ci_high"), d.get("ratio")),
        "p_kruskal": fmt_p(d.get("p_kruskal")),
        "p_kruskal_adj": fmt_p(d.get("p_kruskal_adjusted")),
        "p_gap": fmt_p(d.get("p_gap")),
        "p_gap_adj": fmt_p(d.get("p_gap_adjusted")),
        "significant": bool(d.get("gap_significant")),
        "small_groups": ", ".join(g for g in str(d.get("small_groups") or "").split(",") if g),
        "note": note,
    }


def _gpi_blocks(result) -> list[dict[str, Any]]:
    blocks = []
    gpi, summary = result.gpi, result.gpi_summary
    for s in summary.to_dict("records"):
        rows = gpi[
            (gpi["kind"] == s["kind"]) & (gpi["feature"] == s["feature"]) & (gpi["grouping"] == s["grouping"])
        ]
        block_rows = []
        for r in rows.to_dict("records"):
            flags = []
            cls = ""
            if r["small_group"]:
                cls = "small-group"
                flags.append(
                    Flag("small", "small", f"n = {r['n']} < min_group_size: not in sum, gap or test")
                )
            if r["group"] == s["worst_group"]:
                cls += " worst"
                flags.append(Flag("failed", "worst", "largest GPI among compared groups"))
            block_rows.append(
                {
                    "group": r["group"],
                    "cls": cls.strip(),
                    "n": fmt_count(r["n"]),
                    "gpi": fmt_value(r["gpi"]),
                    "gpi_sort": sort_key(r["gpi"]),
                    "ci": fmt_ci(r["gpi_ci_low"], r["gpi_ci_high"], r["gpi"]),
                    "flags": flags,
                }
            )
        blocks.append(
            {
                "title": gpi_label(s["kind"], s["feature"], s["grouping"]),
                "method": s["method"],
                "dim": fmt_count(s["dim"]),
                "n_samples": fmt_count(s["n_samples"]),
                "n_dropped": int(s["n_dropped"] or 0),
                "interval": s["interval"],
                "bootstrap": fmt_count(s["bootstrap"]),
                "permutations": fmt_count(s["permutations"]),
                "rows": block_rows,
                "sum": fmt_value(s["gpi_sum"]),
                "sum_ci": fmt_ci(s["gpi_sum_ci_low"], s["gpi_sum_ci_high"], s["gpi_sum"]),
                "gap": fmt_value(s["gpi_gap"]),
                "gap_ci": fmt_ci(s["gpi_gap_ci_low"], s["gpi_gap_ci_high"], s["gpi_gap"]),
                "p": fmt_p(s["p_value"]),
                "p_adj": fmt_p(s["p_adjusted"]),
                "significant": bool(s["significant"]),
                "worst": s["worst_group"] or "-",
                "best": s["best_group"] or "-",
            }
        )
    return blocks


def _gpi_empty_reason(record: RunRecord, settings, wide: pd.DataFrame) -> str:
    if not settings.group_by:
        return "No GPI: the protocol defines no groups (audit.group_by is empty), and GPI compares groups."
    reasons = []
    spec = record.protocol.spec.get("audit") or {}
    unavailable = record.unavailable_metrics
    for name in spec.get("gpi_features") or []:
        if name in unavailable:
            reasons.append(f"feature extractor {name} was unavailable in this run ({unavailable[name]})")
        else:
            reasons.append(f"no stored {name} features")
    if settings.gpi_metric and settings.gpi_metric not in wide.columns:
        reasons.append(f"the 1-D GPI metric {settings.gpi_metric} was not scored")
    return "No GPI was computed: " + ("; ".join(reasons) or "no feature sets or GPI metric") + "."


def _tests(tests: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for t in tests.to_dict("records"):
        out.append(
            {
                "family": t["family"],
                "grouping": t["grouping"],
                "target": t["target"],
                "statistic": fmt_value(t["statistic"]),
                "statistic_sort": sort_key(t["statistic"]),
                "p": fmt_p(t["p_value"]),
                "p_sort": sort_key(t["p_value"]),
                "p_adj": fmt_p(t["p_adjusted"]),
                "p_adj_sort": sort_key(t["p_adjusted"]),
                "significant": bool(t["significant"]),
                "n": fmt_count(t["n"]),
                "n_groups": fmt_count(t["n_groups"]),
                "note": t["note"] or "",
            }
        )
    return out


# ------------------------------------------------------------------------------------------------------------
# figures and images


def _figures(
    result, wide: pd.DataFrame, labels: Mapping[str, pd.Series], directions, folder: Path
) -> list[dict]:
    figs = []
    small: dict[str, dict[str, set[str]]] = {}
    g = result.groups
    for r in g[g["small_group"] & (g["grouping"] != "overall")].to_dict("records"):
        small.setdefault(r["grouping"], {}).setdefault(r["metric"], set()).add(r["group"])
    groupings = list(labels) or [None]
    shown = groupings[:4]
    for i, gname in enumerate(shown):
        path = folder / "plots" / f"distributions-{i}.png"
        plots.metric_distributions(
            wide, labels.get(gname) if gname else None, directions, small.get(gname or "", {}), path
        )
        by = f" by {gname}" if gname else ""
        figs.append(
            {
                "src": href(path, folder),
                "alt": f"per-image metric distributions{by}",
                "caption": (
                    f"Per-image values of each metric{by}: box (quartiles) and one dot per image; "
                    "grey groups "
                    "are small (not compared). Arrows give each metric's direction."
                    + (
                        f" Only the first 4 of {len(groupings)} groupings are plotted."
                        if len(groupings) > 4
                        else ""
                    )
                ),
            }
        )
    if not result.gpi_summary.empty:
        path = plots.gpi_per_group(result.gpi, result.gpi_summary.head(6), folder / "plots" / "gpi.png")
        figs.append(
            {
                "src": href(path, folder),
                "alt": "GPI per group with bootstrap intervals",
                "caption": (
                    "GPI per group (dot) with its bootstrap interval (bar); hollow grey dots are small "
                    "groups. "
                    "Lower GPI means the group's outputs are distributed more like its references."
                ),
            }
        )
    primary = list(wide.columns[: min(3, wide.shape[1])])
    pairs = [(primary[a], primary[b]) for a in range(len(primary)) for b in range(a + 1, len(primary))]
    pairs = [(x, y) for x, y in pairs if wide[[x, y]].dropna().shape[0] > 0]
    first = next(iter(labels)) if labels else None
    path = plots.metric_scatter(
        wide, labels.get(first) if first else None, pairs, directions, folder / "plots" / "scatter.png"
    )
    figs.append(
        {
            "src": href(path, folder),
            "alt": "metric versus metric scatter",
            "caption": "Per-image metric versus metric"
            + (f", coloured by {first}." if first else ".")
            + " Each dot is one image.",
        }
    )
    return figs


def _rank_metric(settings, wide: pd.DataFrame) -> str | None:
    if settings.gpi_metric in wide.columns and wide[settings.gpi_metric].notna().any():
        return settings.gpi_metric
    for m in wide.columns:
        if wide[m].notna().any():
            return m
    return None


def _grid(store, record, wide: pd.DataFrame, labels, directions, settings, folder: Path) -> dict[str, Any]:
    metric = _rank_metric(settings, wide)
    if metric is None:
        return {"sections": [], "note": "No scored values: nothing to show.", "limit_text": ""}
    hib = bool(directions.get(metric, True))
    sections: list[tuple[str, list[str]]] = [("All samples", list(wide.index))]
    n_groups_total = 0
    for gname, lab in labels.items():
        for group in sorted(lab.dropna().unique()):
            n_groups_total += 1
            if n_groups_total <= grids.MAX_GRID_GROUPS:
                sections.append((f"{gname} = {group}", list(lab.index[lab == group])))
    values = wide[metric].to_dict()
    picked, n_used = grids.pick_samples(values, hib, sections)
    wanted = list(dict.fromkeys(it.sample_id for s in picked for it in s.items))
    pairs, note = grids.load_pairs(record, wanted)
    run_dir = store.run_dir(record.run_id)
    img_dir = folder / "images"
    made: dict[str, tuple[dict[str, Path], str]] = {}
    missing_outputs = 0
    for i, sid in enumerate(wanted):
        output = grids.read_output(run_dir, sid)
        missing_outputs += output is None
        made[sid] = grids.write_sample_images(sid, i, output, pairs.get(sid), img_dir)
    if missing_outputs:
        extra = (
            f"{missing_outputs} output image(s) were not saved with the run (it was made with --no-outputs)"
        )
        note = f"{note}; {extra}" if note else extra
    captions = {
        "low": "low (input)",
        "output": "output",
        "reference": "reference",
        "crop_low": "low, zoom",
        "crop_output": "output, zoom",
        "crop_reference": "reference, zoom",
    }
    cols = list(wide.columns)
    out_sections = []
    for s in picked:
        items = []
        for it in s.items:
            paths, crop_note = made[it.sample_id]
            images, crops = [], []
            for kind, caption in captions.items():
                if kind not in paths:
                    continue
                with Image.open(paths[kind]) as im:
                    w, h = im.size
                # Tiny images are shown enlarged (nearest neighbour) so that they stay readable.
                scale = max(1, math.ceil(MIN_DISPLAY_PX / max(w, h)))
                entry = {
                    "src": href(paths[kind], folder),
                    "alt": f"{caption} of sample {it.sample_id}",
                    "caption": caption,
                    "width": w * scale,
                    "height": h * scale,
                    "pix": scale > 1,
                }
                (crops if kind.startswith("crop_") else images).append(entry)
            vals = " \u00b7 ".join(
                f"{metric_label(c)} {fmt_value(wide.at[it.sample_id, c], metric=c)}"
                for c in cols
                if not np.isnan(wide.at[it.sample_id, c])
            )
            items.append(
                {
                    "role": it.role,
                    "sample_id": it.sample_id,
                    "scores_text": vals,
                    "images": images,
                    "crops": crops,
                    "note": crop_note,
                }
            )
        out_sections.append({"title": s.title, "items": items})
    direction = direction_text(hib)
    limit = (
        f"Best, median and worst samples by {metric_label(metric)} ({direction}), over all samples and "
        f"within each group. Limits: at most {grids.MAX_GRID_SAMPLES} distinct samples and "
        f"{grids.MAX_GRID_GROUPS} groups; "
        f"showing {n_used} of {len(wide)} scored samples"
        + (
            f" and {min(n_groups_total, grids.MAX_GRID_GROUPS)} of {n_groups_total} groups"
            if n_groups_total
            else ""
        )
        + f". Thumbnails are at most {grids.THUMB_PX} px. The yellow box on each output marks the window "
        "with the "
        "largest mean |output - reference|, enlarged on the right."
    )
    if (record.protocol.spec.get("dataset") or {}).get("layout") == "unpaired":
        limit = (
            limit.split(" The yellow box")[0] + " No reference images: each sample shows input and output."
        )
    return {"sections": out_sections, "note": note, "limit_text": limit}


# ------------------------------------------------------------------------------------------------------------
# provenance and exports


def _j(obj: Any) -> str:
    return (
        json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str) if obj not in (None, "", {}) else "-"
    )


def _prov_protocol(record) -> list[tuple[str, str]]:
    p = record.protocol
    spec = p.spec
    return [
        ("name", p.name),
        ("version", str(p.version)),
        ("hash (sha256 of the validated spec)", p.hash),
        ("title", p.title or ""),
        (
            "dataset",
            (spec.get("dataset") or {}).get("citation") or (spec.get("dataset") or {}).get("layout", ""),
        ),
        ("data root", record.data_root or "built-in"),
        ("seed", str(record.seed)),
    ]


def _prov_model(record) -> list[tuple[str, str]]:
    m = record.model
    weights = m.get("weights") or {}
    rows = [
        ("name", m.get("name", "")),
        ("given as", m.get("spec", "")),
        ("class", m.get("class", "")),
        ("version", str(m.get("version", ""))),
        ("arguments", model_args_text(record) or "-"),
        ("parameters", str(m.get("parameters", "-"))),
        ("uses ground truth", "yes" if m.get("uses_ground_truth") else "no"),
        ("sanity row", "yes" if m.get("sanity") else "no"),
        ("licence", m.get("licence") or "-"),
        ("paper", m.get("paper") or "-"),
    ]
    if weights:
        rows += [(f"weights {k} (sha256)", str(v)) for k, v in sorted(weights.items())]
    else:
        rows.append(("weights", "none (no pretrained file)"))
    return rows


def _prov_metrics(record) -> list[dict[str, Any]]:
    out = []
    for m in record.metrics:
        out.append(
            {
                "name": m.get("name", ""),
                "columns": ", ".join(f"{c} {arrow(h)}" for c, h in (m.get("columns") or {}).items()),
                "cls": m.get("class", ""),
                "options": _j(m.get("options")),
                "weights": sorted((m.get("weights") or {}).items()),
            }
        )
    return out


def _prov_run(record, store: Store) -> list[tuple[str, str]]:
    env = record.environment
    timing = record.timing or {}
    ms = timing.get("model_ms_per_sample_mean")
    return [
        ("run id", record.run_id),
        ("run key", record.run_key or ""),
        ("started", record.started or ""),
        ("finished", record.finished_at or ""),
        ("command", record.command or "-"),
        ("device", f"{env.get('device', '-')} ({env.get('device_name', '-')})"),
        ("platform", env.get("platform", "-")),
        ("python", env.get("python", "-")),
        ("torch threads", str(env.get("torch_threads", "-"))),
        ("git revision", env.get("git_revision") or "-"),
        ("model time", f"{ms:.1f} ms/sample (mean)" if isinstance(ms, (int, float)) else "-"),
        ("wall time", f"{timing['wall_seconds']:.1f} s" if timing.get("wall_seconds") is not None else "-"),
        ("results store", str(store.root)),
    ]


def _exports(result, record, folder: Path) -> list[dict[str, str]]:
    """Group table as Markdown, LaTeX and CSV; the audit as text and JSON."""
    g = result.groups
    pct = f"{round(result.settings.confidence * 100)}% CI"
    table = TextTable(
        headers=["grouping", "group", "metric", "n", f"mean {pct}", f"median {pct}", "small"],
        align=["l", "l", "l", "r", "r", "r", "l"],
        rows=[
            [
                r["grouping"],
                r["group"],
                f"{metric_label(r['metric'])} {arrow(bool(r['higher_is_better']))}",
                fmt_count(r["n"]),
                ValueCI(r["mean"], r["mean_ci_low"], r["mean_ci_high"], metric=r["metric"]),
                ValueCI(r["median"], r["median_ci_low"], r["median_ci_high"], metric=r["metric"]),
                "yes" if r["small_group"] else "",
            ]
            for r in g.to_dict("records")
        ],
        caption=(
            f"{record.model['name']} {model_args_text(record)} on {record.protocol.name} "
            f"v{record.protocol.version}: per-group means and medians with {pct} (percentile bootstrap, "
            f"{result.settings.bootstrap} resamples)."
        ).replace("  ", " "),
    )
    frame = g.copy()
    frame.insert(0, "model", record.model["name"])
    frame.insert(1, "model_args", model_args_text(record))
    frame.insert(2, "run_id", record.run_id)
    write_all(table, frame, folder / "groups", title="Group table", label=f"tab:groups:{record.run_id}")
    (folder / "audit.txt").write_text(result.to_text(), encoding="utf-8")
    return [
        {"href": "groups.md", "name": "groups.md", "text": "group table, Markdown"},
        {"href": "groups.tex", "name": "groups.tex", "text": "group table, LaTeX (booktabs)"},
        {"href": "groups.csv", "name": "groups.csv", "text": "group table, CSV (full precision)"},
        {"href": "audit.txt", "name": "audit.txt", "text": "every audit table as plain text"},
        {
            "href": "audit.json",
            "name": "audit.json",
            "text": "the audit result (fairness AuditResult.to_dict)",
        },
    ]
