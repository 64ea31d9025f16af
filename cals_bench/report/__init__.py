"""Reports rendered from the results store: run audits, leaderboards, run comparisons, paper tables.

``render_audit(store, run)`` is what ``cals-bench run`` calls at the end of every run; it returns the path of
the audit's ``index.html``. Nothing here runs a model: outputs are the PNGs saved while scoring, numbers
are the stored per-sample records and the fairness audit computed from them.
"""

from cals_bench.report.comparison import render_comparison
from cals_bench.report.layout import ENV_REPORTS, reports_root
from cals_bench.report.leaderboard import build_leaderboard, leaderboard_text
from cals_bench.report.site import render_audit, render_leaderboard

__all__ = [
    "ENV_REPORTS",
    "build_leaderboard",
    "leaderboard_text",
    "render_audit",
    "render_comparison",
    "render_leaderboard",
    "reports_root",
]
