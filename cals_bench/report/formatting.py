"""How numbers, metric names and directions are written in every report format (HTML, Markdown, LaTeX).

One place so that a value reads the same on a leaderboard, in an audit and in a paper table. Full precision
is kept beside the rounded text (HTML ``data-sort`` / ``title`` attributes, CSV columns).
"""

from __future__ import annotations

import math
from typing import Any

# Readable names of the suite's metric columns; unknown columns are shown as stored.
METRIC_LABELS = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "id_sim": "ID sim",
    "id_sim_input": "ID sim (input)",
    "psnr_gtmean": "PSNR (GT-mean)",
    "ssim_gtmean": "SSIM (GT-mean)",
}
METRIC_UNITS = {"psnr": "dB", "psnr_gtmean": "dB"}
# Decimals per metric column, so one metric reads the same in every row; others follow ``decimals``.
METRIC_DECIMALS = {
    "psnr": 2,
    "psnr_gtmean": 2,
    "ssim": 4,
    "ssim_gtmean": 4,
    "lpips": 4,
    "id_sim": 4,
    "id_sim_input": 4,
}
# Columns computed after rescaling the output's mean to the reference's: diagnostics, not blind scores.
GT_MEAN_COLUMNS = ("psnr_gtmean", "ssim_gtmean")


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def arrow(higher_is_better: bool | None) -> str:
    """The direction arrow of a metric header: up when higher is better."""
    if higher_is_better is None:
        return ""
    return "\u2191" if higher_is_better else "\u2193"


def direction_text(higher_is_better: bool | None) -> str:
    if higher_is_better is None:
        return "direction unknown"
    return "higher is better" if higher_is_better else "lower is better"


def gpi_label(kind: str, feature: str, grouping: str) -> str:
    """Readable name of one GPI analysis: ``1-D GPI of LPIPS by context``, ``GPI of x features by g``."""
    if kind == "metric_1d":
        return f"1-D GPI of {metric_label(feature)} by {grouping}"
    return f"GPI of {feature} features by {grouping}"


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def decimals(x: float, metric: str | None = None) -> int:
    """Decimals for a value: the metric's own (``METRIC_DECIMALS``) when known, else 2 for magnitudes of 10
    and above and 4 below."""
    if metric in METRIC_DECIMALS:
        return METRIC_DECIMALS[metric]
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
