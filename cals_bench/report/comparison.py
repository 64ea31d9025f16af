"""Comparison of two runs on the same protocol: paired differences per metric and per group, with tests.

The numbers are the fairness package's paired comparison (``compare``: mean of per-sample differences
A - B with a percentile-bootstrap interval over pairs, paired bootstrap and Wilcoxon signed-rank p-values,
corrected over the table). The page adds a plot of the per-sample differences and the samples where the
two runs differ most, side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cals_bench import audits
from cals_bench.errors import CalsBenchError
from cals_bench.report import grids, plots
from cals_bench.report.formatting import (
    arrow,
    direction_text,
    fmt_ci,
    fmt_count,
    fmt_p,
    fmt_value,
    metric_label,
    sort_key,
)
from cals_bench.report.html import render_page
from cals_bench.report.layout import compare_folder, href, reports_root, run_folder
from cals_bench.report.runinfo import model_args_text, run_flags
from cals_bench.report.tables import TextTable, ValueCI, write_all
from cals_bench.run_record import RunRecord
from cals_bench.store import Store

LABELS = ("A", "B")
MAX_DIFF_SAMPLES = 3  # per direction: where A is most better, where B is most better


def render_comparison(
    store: Store,
    run_a: str,
    run_b: str,
    out: str | Path | None = None,
    *,
    root: str | Path | None = None,
) -> Path:
    """Write the comparison of two runs (ids, prefixes or ``latest``) and return its ``index.html``.

    Both runs must be on the same protocol name and version. ``out``: the folder (default
    ``<root>/<protocol>-v<version>/compare/<a>__vs__<b>``).
    """
    record_a, record_b = store.get_record(run_a), store.get_record(run_b)
    pa, pb = record_a.protocol, record_b.protocol
    if (pa.name, pa.version) != (pb.name, pb.version):
        raise CalsBenchError(
            f"runs are on different protocols: {record_a.run_id} on {pa.name} v{pa.version}, "
            f"{record_b.run_id} on {pb.name} v{pb.version}; only runs of one protocol version compare"
        )
    if record_a.run_id == record_b.run_id:
        raise CalsBenchError(f"compare needs two different runs, got {record_a.run_id} twice")
    root_path = reports_root(root)
    folder = Path(out) if out else compare_folder(root_path, record_a, record_b)
    folder.mkdir(parents=True, exist_ok=True)
    table, settings = audits.compare_runs(store, record_a, record_b, LABELS)
    directions = {**record_b.metric_directions, **record_a.metric_directions}
    notes = []
    if pa.hash != pb.hash:
        notes.append(
            f"the two runs carry different protocol hashes ({pa.hash[:12]} vs {pb.hash[:12]}) for the "
            "same "
            "name and version: the protocol changed without a version bump"
        )
    metrics = _metric_order(record_a, table)
    diffs = _per_sample_diffs(store, record_a, record_b, metrics)
    attrs = audits.attributes_frame(store.samples(record_a.run_id))
    labels = audits.group_labels(attrs, settings, list(diffs.index))
    first = next(iter(labels), None)
    plot = plots.paired_differences(
        diffs, labels.get(first) if first else None, directions, LABELS, folder / "plots" / "differences.png"
    )
    pct = f"{round(settings.confidence * 100)}% CI"
    blocks = _blocks(table, metrics, directions)
    images = _images(store, record_a, record_b, diffs, metrics, directions, folder)
    downloads = _exports(table, record_a, record_b, folder, pct)
    context = dict(
        a=_run_card(record_a, root_path, folder),
        b=_run_card(record_b, root_path, folder),
        protocol=pa,
        notes=notes,
        blocks=blocks,
        ci_label=pct,
        method_text=(
            "For each metric, pairs are the samples where both runs have a value. Difference = mean over "
            f"pairs of (A - B) with its {pct} (percentile bootstrap over pairs, {settings.bootstrap} "
            f"resamples, seed {settings.seed}). p-values: paired bootstrap and two-sided Wilcoxon "
            f"signed-rank, each corrected with {settings.correction} over all rows of this page; significant "
            f"at alpha = {settings.alpha}. Groups with fewer than {settings.min_group_size} pairs are shown "
            "but not tested; the overall row (the whole set, the comparison papers make) is always tested: "
            "the signed-rank test is exact up to 50 pairs without ties (the note names the method and n), "
            f"and below {settings.min_group_size} pairs it is flagged as low power rather than hidden."
        ),
        defs=[
            (k, audits.DEFINITIONS[k])
            for k in ("wilcoxon", "paired_bootstrap", "holm")
            if k in audits.DEFINITIONS
        ],
        figure={
            "src": href(plot, folder),
            "alt": "per-sample paired differences",
            "caption": (
                "Per-sample differences A - B of each metric, overall and by group; the black bar is the "
                "mean, the dashed line zero. The title says which sign favours which run for the metric's "
                "direction."
            ),
        },
        images=images,
        downloads=downloads,
    )
    return render_page("compare.html.j2", folder / "index.html", store.root, **context)


def _metric_order(record: RunRecord, table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table["metric"]))
    order: list[str] = []
    for m in record.metrics:
        order += [c for c in (m.get("columns") or {}) if c in present and c not in order]
    return order + [c for c in present if c not in order]


def _per_sample_diffs(store: Store, record_a, record_b, metrics: list[str]) -> pd.DataFrame:
    def wide(record):
        rec, _ = audits.finite_records(store.scores(record.run_id))
        w = rec.pivot_table(
            index="sample_id", columns="metric", values="value", aggfunc="first", dropna=False
        )
        w.columns.name = None
        return w

    wa, wb = wide(record_a), wide(record_b)
    ids = sorted(set(wa.index) & set(wb.index))
    cols = [m for m in metrics if m in wa.columns and m in wb.columns]
    return (wa.reindex(index=ids, columns=cols) - wb.reindex(index=ids, columns=cols)).astype(float)


def _blocks(table: pd.DataFrame, metrics: list[str], directions) -> list[dict[str, Any]]:
    blocks = []
    for metric in metrics:
        rows = []
        for r in table[table["metric"] == metric].to_dict("records"):
            rows.append(
                {
                    "grouping": r["grouping"],
                    "group": r["group"],
                    "cls": "small-group" if r["small_group"] else "",
                    "n_pairs": fmt_count(r["n_pairs"]),
                    "n_unpaired": fmt_count(r["n_unpaired"]),
                    "mean_a": fmt_value(r["mean_a"], metric=metric),
                    "mean_b": fmt_value(r["mean_b"], metric=metric),
                    "diff": fmt_value(r["mean_diff"], metric=metric),
                    "diff_sort": sort_key(r["mean_diff"]),
                    "diff_ci": fmt_ci(r["diff_ci_low"], r["diff_ci_high"], r["mean_diff"], metric),
                    "p_boot": fmt_p(r["p_bootstrap"]),
                    "p_boot_adj": fmt_p(r["p_bootstrap_adjusted"]),
                    "p_wil": fmt_p(r["p_wilcoxon"]),
                    "p_wil_adj": fmt_p(r["p_wilcoxon_adjusted"]),
                    "sig": " and ".join(
                        name
                        for name, on in (
                            ("Wilcoxon", r["significant_wilcoxon"]),
                            ("bootstrap", r["significant_bootstrap"]),
                        )
                        if bool(on)
                    ),
                    "better": r["better"] or "-",
                    # the low-power sentence lives in the badge's tooltip; the CSV keeps the full note
                    "note": "; ".join(
                        x for x in str(r["note"] or "").split("; ") if x and not x.startswith("low power")
                    ),
                    "low_power": "low power" in str(r["note"] or ""),
                    "full_note": r["note"] or "",
                }
            )
        hib = directions.get(metric)
        blocks.append(
            {
                "metric": metric,
                "label": metric_label(metric),
                "arrow": arrow(hib),
                "direction": direction_text(hib),
                "rows": rows,
            }
        )
    return blocks


def _run_card(record, root: Path, folder: Path) -> dict[str, Any]:
    index = run_folder(root, record) / "index.html"
    return {
        "run_id": record.run_id,
        "model": record.model["name"],
        "args": model_args_text(record),
        "weights": sorted((record.model.get("weights") or {}).items()),
        "flags": run_flags(record),
        "href": href(index, folder) if index.is_file() else None,
        "finished": record.finished_at or "",
    }


def _images(
    store, record_a, record_b, diffs: pd.DataFrame, metrics, directions, folder: Path
) -> dict[str, Any]:
    metric = next((m for m in metrics if m in diffs.columns and diffs[m].notna().any()), None)
    if metric is None:
        return {"items": [], "text": "No paired values: no images.", "note": ""}
    hib = bool(directions.get(metric, True))
    d = diffs[metric].dropna()
    # Positive "advantage" means A is better for this metric's direction.
    adv = d if hib else -d
    top_a = adv[adv > 0].sort_values(ascending=False).head(MAX_DIFF_SAMPLES)
    top_b = adv[adv < 0].sort_values().head(MAX_DIFF_SAMPLES)
    picks = [("A better", s) for s in top_a.index] + [("B better", s) for s in top_b.index]
    pairs, note = grids.load_pairs(record_a, [s for _, s in picks])
    items = []
    for i, (role, sid) in enumerate(picks):
        low, ref = pairs.get(sid, (None, None))
        out_a = grids.read_output(store.run_dir(record_a.run_id), sid)
        out_b = grids.read_output(store.run_dir(record_b.run_id), sid)
        paths = grids.write_thumbnails(
            {"low": low, "A": out_a, "B": out_b, "reference": ref},
            f"{i:03d}-{grids.slug(sid, 40)}",
            folder / "images",
        )
        captions = {
            "low": "low (input)",
            "A": f"A: {record_a.model['name']}",
            "B": f"B: {record_b.model['name']}",
            "reference": "reference",
        }
        ims = []
        for kind, path in paths.items():
            with Image.open(path) as im:
                w, h = im.size
            ims.append(
                {
                    "src": href(path, folder),
                    "alt": f"{captions[kind]} of sample {sid}",
                    "caption": captions[kind],
                    "width": w,
                    "height": h,
                }
            )
        items.append(
            {
                "role": role,
                "sample_id": sid,
                "text": f"{metric_label(metric)} A - B = {fmt_value(float(d[sid]), metric=metric)}",
                "images": ims,
            }
        )
    text = (
        f"Samples where the runs differ most by {metric_label(metric)} ({direction_text(hib)}): up to "
        f"{MAX_DIFF_SAMPLES} where A is better and {MAX_DIFF_SAMPLES} where B is better."
    )
    return {"items": items, "text": text, "note": note if np.size(picks) else ""}


def _exports(table: pd.DataFrame, record_a, record_b, folder: Path, pct: str) -> list[dict[str, str]]:
    t = TextTable(
        headers=[
            "metric",
            "grouping",
            "group",
            "pairs",
            "mean A",
            "mean B",
            f"A - B [{pct}]",
            "p Wilcoxon (adj.)",
            "p bootstrap (adj.)",
            "better",
        ],
        align=["l", "l", "l", "r", "r", "r", "r", "r", "r", "l"],
        rows=[
            [
                f"{metric_label(r['metric'])} {arrow(bool(r['higher_is_better']))}",
                r["grouping"],
                r["group"],
                fmt_count(r["n_pairs"]),
                fmt_value(r["mean_a"], metric=r["metric"]),
                fmt_value(r["mean_b"], metric=r["metric"]),
                ValueCI(r["mean_diff"], r["diff_ci_low"], r["diff_ci_high"], metric=r["metric"]),
                fmt_p(r["p_wilcoxon_adjusted"]),
                fmt_p(r["p_bootstrap_adjusted"]),
                r["better"] or "-",
            ]
            for r in table.to_dict("records")
        ],
        caption=(
            f"A = {record_a.model['name']} {model_args_text(record_a)}, B = {record_b.model['name']} "
            f"{model_args_text(record_b)} on {record_a.protocol.name} v{record_a.protocol.version}"
        ),
    )
    frame = table.copy()
    frame.insert(0, "run_a", record_a.run_id)
    frame.insert(1, "run_b", record_b.run_id)
    write_all(t, frame, folder / "compare", title="Paired comparison", label="tab:compare")
    return [
        {"href": "compare.md", "name": "compare.md", "text": "Markdown"},
        {"href": "compare.tex", "name": "compare.tex", "text": "LaTeX (booktabs)"},
        {"href": "compare.csv", "name": "compare.csv", "text": "CSV (full precision)"},
    ]
