"""The few audit numbers a script wants after ``cals-bench run --json``, without calling ``audit``.

From a run's :class:`~cals_bench.fairness.result.AuditResult`: the headline GPI analysis (the first row of
``gpi_summary``: gpi_sum and gpi_gap with their intervals, the gap's permutation p raw and corrected, the
group with the largest GPI) and, for the protocol's primary metric, the worst group with its gap to the best
(first grouping whose groups could be compared). Ungrouped protocols give ``grouped: false`` and nulls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cals_bench.fairness.result import AuditResult


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _interval(lo: Any, hi: Any) -> list[float | None]:
    return [_num(lo), _num(hi)]


def audit_headline(result: AuditResult, metric_order: Sequence[str] = ()) -> dict[str, Any]:
    """``{"grouped", "group_by", "headline", "gpi_sum", "gpi_gap", "p", "p_adjusted", "worst_group", ...}``.

    ``metric_order``: the run's metric columns in protocol order; the first with a disparity row is the
    primary metric for ``metric_worst_group``.
    """
    s = result.settings
    out: dict[str, Any] = {
        "grouped": bool(s.group_by),
        "group_by": [str(g) for g in s.group_by],
        "headline": None,
        "gpi_sum": None,
        "gpi_sum_ci": [None, None],
        "gpi_gap": None,
        "gpi_gap_ci": [None, None],
        "p": None,
        "p_adjusted": None,
        "correction": s.correction,
        "worst_group": None,
        "metric_worst_group": None,
    }
    summary = result.gpi_summary
    if summary is not None and not summary.empty:
        from cals_bench.report.formatting import gpi_label

        head = summary.iloc[0]
        out.update(
            headline=gpi_label(str(head["kind"]), str(head["feature"]), str(head["grouping"])),
            gpi_sum=_num(head["gpi_sum"]),
            gpi_sum_ci=_interval(head["gpi_sum_ci_low"], head["gpi_sum_ci_high"]),
            gpi_gap=_num(head["gpi_gap"]),
            gpi_gap_ci=_interval(head["gpi_gap_ci_low"], head["gpi_gap_ci_high"]),
            p=_num(head["p_value"]),
            p_adjusted=_num(head["p_adjusted"]),
            worst_group=str(head["worst_group"]) or None,
        )
    out["metric_worst_group"] = _metric_worst(result, metric_order)
    return out


def _metric_worst(result: AuditResult, metric_order: Sequence[str]) -> dict[str, Any] | None:
    d = result.disparity
    if d is None or d.empty:
        return None
    d = d[d["worst_group"].astype(str) != ""]
    if d.empty:
        return None
    order = [m for m in metric_order if m in set(d["metric"])] or list(dict.fromkeys(d["metric"]))
    rows = d[d["metric"] == order[0]]
    r: Mapping[str, Any] = rows.iloc[0].to_dict()
    return {
        "metric": str(r["metric"]),
        "grouping": str(r["grouping"]),
        "group": str(r["worst_group"]),
        "mean": _num(r.get("worst_mean")),
        "best_group": str(r.get("best_group") or "") or None,
        "best_mean": _num(r.get("best_mean")),
        "difference": _num(r.get("difference")),
        "difference_ci": _interval(r.get("difference_ci_low"), r.get("difference_ci_high")),
        "p_gap": _num(r.get("p_gap")),
        "p_gap_adjusted": _num(r.get("p_gap_adjusted")),
    }
