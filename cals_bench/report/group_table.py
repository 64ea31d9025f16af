"""The per-group comparison table of two runs of one protocol: the CALS paper's Table 1 layout.

For every group of the protocol's groupings (for ``cals-contexts``: the contexts), one row per method
(run A, run B) with each metric's mean and its percentile-bootstrap interval (the audit's own ``groups``
table, same settings and seed), then the paired difference A - B with its interval and the paired tests'
p-values (the fairness package's ``compare``, Holm-corrected over the table). Below it, the per-group
audit of both runs: GPI per group (with interval), and per grouping ``gpi_sum``, ``gpi_gap`` and the gap's
permutation p-value. ``cals-bench compare RUN_A RUN_B`` prints this and writes it beside the page as
``group_table.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from cals_bench import audits
from cals_bench.run_record import RunRecord
from cals_bench.store import Store

METRIC_ORDER = ("psnr", "ssim", "lpips", "id_sim")
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "id_sim": "id-sim"}


def _f(x: Any, digits: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def _p(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    if math.isnan(v):
        return "-"
    return "<0.001" if v < 1e-3 else f"{v:.3f}"


def _digits(metric: str) -> int:
    return 2 if metric == "psnr" else 4


def _method(record: RunRecord) -> str:
    return str(record.model.get("name") or record.run_id)


def _audit(store: Store, record: RunRecord, where: dict[str, str] | None, group_by: list[str] | None):
    if not where and group_by is None:  # the run's own audit, from its cache
        return audits.load_audit(store, record.run_id)[0]
    return audits.audit_run(
        store, record, where=where, group_by=None if group_by is None else tuple(group_by)
    )[0]


def group_table(
    store: Store,
    run_a: str,
    run_b: str,
    *,
    where: dict[str, str] | None = None,
    group_by: list[str] | None = None,
) -> dict[str, Any]:
    """``{"rows": [...], "paired": [...], "gpi": [...], "gpi_summary": [...], "metrics": [...], ...}`` for
    two runs of one protocol version (plain records, for text/Markdown rendering and JSON).

    ``where`` (e.g. ``{"context": "face"}``) restricts both runs to the samples with those attributes, and
    ``group_by`` replaces the protocol's groupings (e.g. race, gender within the face context of a
    ``cals-contexts`` run): the audit and the paired comparison are then computed afresh on that subset
    with the protocol's other settings."""
    record_a, record_b = store.get_record(run_a), store.get_record(run_b)
    aud_a = _audit(store, record_a, where, group_by)
    aud_b = _audit(store, record_b, where, group_by)
    table, settings = audits.compare_runs(
        store,
        record_a,
        record_b,
        ("A", "B"),
        where=where,
        group_by=None if group_by is None else tuple(group_by),
    )
    metrics = [m for m in METRIC_ORDER if m in set(aud_a.groups["metric"])]
    metrics += [m for m in aud_a.groups["metric"].unique() if m not in metrics and not m.endswith("_input")]
    rows = []
    for label, record, aud in (("A", record_a, aud_a), ("B", record_b, aud_b)):
        g = aud.groups
        for (grouping, group), sub in g.groupby(["grouping", "group"], sort=False):
            row: dict[str, Any] = {
                "grouping": grouping,
                "group": group,
                "run": label,
                "method": _method(record),
            }
            for m in metrics:
                r = sub[sub["metric"] == m]
                if r.empty:
                    continue
                r = r.iloc[0]
                row[m] = (float(r["mean"]), float(r["mean_ci_low"]), float(r["mean_ci_high"]), int(r["n"]))
            rows.append(row)
    paired = table.to_dict("records") if table is not None and len(table) else []
    gpi = [
        {**r, "run": label} for label, aud in (("A", aud_a), ("B", aud_b)) for r in aud.gpi.to_dict("records")
    ]
    gpi_summary = [
        {**r, "run": label}
        for label, aud in (("A", aud_a), ("B", aud_b))
        for r in aud.gpi_summary.to_dict("records")
    ]
    return {
        "protocol": dataclasses.asdict(record_a.protocol),
        "subset": {"where": dict(where or {}), "group_by": list(settings.group_by)},
        "runs": {"A": record_a.run_id, "B": record_b.run_id},
        "methods": {"A": _method(record_a), "B": _method(record_b)},
        "metrics": metrics,
        "confidence": settings.confidence,
        "rows": rows,
        "paired": paired,
        "gpi": gpi,
        "gpi_summary": gpi_summary,
    }


def _paired_lookup(paired: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for r in paired:
        out[(str(r.get("grouping")), str(r.get("group")), str(r.get("metric")))] = r
    return out


def to_markdown(t: dict[str, Any]) -> str:
    """Markdown tables: Table 1 layout, paired tests, per-group GPI."""
    pct = f"{round(t['confidence'] * 100)}%"
    metrics = t["metrics"]
    p = t["protocol"]
    sub = t.get("subset", {}).get("where")
    within = f" (samples with {', '.join(f'{k}={v}' for k, v in sub.items())})" if sub else ""
    lines = [
        f"### {p['name']} v{p['version']}{within}: A = {t['methods']['A']} ({t['runs']['A']}), "
        f"B = {t['methods']['B']} ({t['runs']['B']})",
        "",
        f"Means with {pct} percentile-bootstrap intervals; paired difference A - B with its {pct} interval and "
        "the paired tests' p-values (Wilcoxon signed-rank / paired bootstrap, corrected as the audit "
        "corrects).",
        "",
        "| grouping | group | method | n | " + " | ".join(LABELS.get(m, m) for m in metrics) + " |",
        "|---|---|---|---|" + "---|" * len(metrics),
    ]
    lookup = _paired_lookup(t["paired"])
    seen_groups = []
    for r in t["rows"]:
        key = (r["grouping"], r["group"])
        if key not in seen_groups:
            seen_groups.append(key)
    for grouping, group in seen_groups:
        for r in [x for x in t["rows"] if (x["grouping"], x["group"]) == (grouping, group)]:
            n = next((v[3] for m, v in r.items() if m in metrics), 0)
            cells = []
            for m in metrics:
                if m in r:
                    mean, lo, hi, _ = r[m]
                    d = _digits(m)
                    cells.append(f"{_f(mean, d)} [{_f(lo, d)}, {_f(hi, d)}]")
                else:
                    cells.append("-")
            lines.append(
                f"| {grouping} | {group} | {r['run']}: {r['method']} | {n} | " + " | ".join(cells) + " |"
            )
        cells = []
        for m in metrics:
            pr = lookup.get((str(grouping), str(group), m))
            if pr is None:
                cells.append("-")
                continue
            d = _digits(m)
            diff, lo, hi = pr.get("mean_diff"), pr.get("diff_ci_low"), pr.get("diff_ci_high")
            pw, pb = pr.get("p_wilcoxon_adjusted"), pr.get("p_bootstrap_adjusted")
            cells.append(f"{_f(diff, d)} [{_f(lo, d)}, {_f(hi, d)}] p={_p(pw)}/{_p(pb)}")
        lines.append(f"| {grouping} | {group} | A - B (paired) | | " + " | ".join(cells) + " |")
    if t["gpi_summary"]:
        lines += [
            "",
            "Per-group audit (GPI: Wasserstein distance between the group's reference and output feature "
            "distributions; gpi_sum over groups, gpi_gap = largest - smallest GPI, p = the gap's permutation "
            "test):",
            "",
            "| run | feature | grouping | group | n | GPI | interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in t["gpi"]:
            lines.append(
                f"| {r['run']} | {r.get('feature', '-')} | {r.get('grouping', '-')} | {r.get('group', '-')} | "
                f"{r.get('n', '-')} | {_f(r.get('gpi'), 4)} | "
                f"[{_f(r.get('gpi_ci_low'), 4)}, {_f(r.get('gpi_ci_high'), 4)}] |"
            )
        lines += [
            "",
            "| run | feature | grouping | gpi_sum | gpi_gap | p (gap) |",
            "|---|---|---|---|---|---|",
        ]
        for r in t["gpi_summary"]:
            lines.append(
                f"| {r['run']} | {r.get('feature', '-')} | {r.get('grouping', '-')} | {_f(r.get('gpi_sum'), 4)} | "
                f"{_f(r.get('gpi_gap'), 4)} | {_p(r.get('p_value'))} |"
            )
    return "\n".join(lines) + "\n"


def frame(t: dict[str, Any]) -> pd.DataFrame:
    """The Table-1 rows as a flat frame (one column per metric mean, ``<metric>_lo``, ``<metric>_hi``)."""
    recs = []
    for r in t["rows"]:
        rec = {k: r[k] for k in ("grouping", "group", "run", "method")}
        for m in t["metrics"]:
            if m in r:
                rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"], rec["n"] = r[m]
        recs.append(rec)
    return pd.DataFrame(recs)
