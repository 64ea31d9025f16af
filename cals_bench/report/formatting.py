"""How numbers, metric names and directions are written in every report format (HTML, Markdown, LaTeX).

One place so that a value reads the same on a leaderboard, in an audit and in a paper table. Full precision
is kept beside the rounded text (HTML ``data-sort`` / ``title`` attributes, CSV columns). A metric column's
label and decimals, and whether it is a diagnostic, are declared by its metric class
(``Metric.column_formats``, ``Metric.diagnostic``) and read here from the metric registry.
"""

from __future__ import annotations

import math
from typing import Any


def metric_label(metric: str) -> str:
    """The readable name of a metric column (``PSNR``); a column no registered metric declares as stored."""
    from cals_bench.metrics.base import column_format

    return column_format(metric).label


def column_decimals(metric: str | None) -> int | None:
    """The fixed decimals a metric column declares (PSNR 2, SSIM 4), None when it declares none."""
    if metric is None:
        return None
    from cals_bench.metrics.base import column_format

    return column_format(metric).decimals


def diagnostic_columns() -> tuple[str, ...]:
    """Columns of diagnostic metrics (the GT-mean variants: the output's mean rescaled to the reference's),
    shown after the blind scores and flagged, never a headline."""
    from cals_bench.metrics.base import diagnostic_columns as registered

    return registered()


def arrow(higher_is_better: bool | None) -> str:
    """The direction arrow of a metric header: up when higher is better."""
    if higher_is_better is None:
        return ""
    return "\u2191" if higher_is_better else "\u2193"


def direction_text(higher_is_better: bool | None) -> str:
    """``higher is better``, ``lower is better`` or ``direction unknown``."""
    if higher_is_better is None:
        return "direction unknown"
    return "higher is better" if higher_is_better else "lower is better"


def gpi_label(kind: str, feature: str, grouping: str) -> str:
    """Readable name of one GPI analysis: ``1-D GPI of LPIPS by context``, ``GPI of x features by g``."""
    if kind == "metric_1d":
        return f"1-D GPI of {metric_label(feature)} by {grouping}"
    return f"GPI of {feature} features by {grouping}"


def is_number(x: Any) -> bool:
    """True for a finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def decimals(x: float, metric: str | None = None) -> int:
    """Decimals for a value: the metric column's own (:func:`column_decimals`) when it declares them, else 2
    for magnitudes of 10 and above and 4 below."""
    fixed = column_decimals(metric)
    if fixed is not None:
        return fixed
    return 2 if abs(x) >= 10 else 4


def fmt_value(x: Any, digits: int | None = None, metric: str | None = None) -> str:
    """A value as text with ``digits`` decimals (default: ``decimals(x, metric)``); ``-`` for missing or NaN
    values, ``inf`` spelt out."""
    if x is None:
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{decimals(v, metric) if digits is None else digits}f}"


def fmt_ci(lo: Any, hi: Any, like: Any = None, metric: str | None = None) -> str:
    """``[lo, hi]`` with the decimals of ``like`` (the estimate); empty when the interval is undefined."""
    if not (is_number(lo) and is_number(hi)):
        return ""
    if is_number(like):
        d = decimals(float(like), metric)
    else:
        d = max(decimals(float(lo), metric), decimals(float(hi), metric))
    return f"[{float(lo):.{d}f}, {float(hi):.{d}f}]"


def fmt_p(p: Any) -> str:
    """A p-value with three significant digits; ``< 0.001`` below that; ``-`` when not computed."""
    if not is_number(p):
        return "-"
    v = float(p)
    if v < 0.001:
        return "< 0.001"
    return f"{v:.3g}"


def fmt_count(n: Any) -> str:
    """A count as text (``-`` when missing)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    return str(int(n))


def sort_key(x: Any) -> str:
    """The exact value for an HTML ``data-sort`` attribute: ``repr`` of the float, empty when missing."""
    if x is None:
        return ""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "" if math.isnan(v) else repr(v)
