"""The report site: a run's audit page and its protocol's leaderboard, rendered together.

Each page module renders its own page only (:mod:`cals_bench.report.audit_page`,
:mod:`cals_bench.report.leaderboard`); this module decides when one page brings the other up to date:
rendering a run's audit page refreshes its leaderboard, and rendering a leaderboard first renders the
audit page of every row that has none, so that every row links to one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cals_bench.report.audit_page import render_audit_page
from cals_bench.report.layout import reports_root
from cals_bench.report.leaderboard import write_leaderboard
from cals_bench.store import Store


def render_audit(
    store: Store,
    run: str,
    out: str | Path | None = None,
    *,
    root: str | Path | None = None,
    refresh_leaderboard: bool = True,
) -> Path:
    """Write the audit report of ``run`` (id, unique prefix or ``latest``) and return its ``index.html``.

    ``out``: the report folder (default ``<root>/<protocol>-v<version>/runs/<run_id>``); ``root``: the
    reports folder (default ``$CALS_BENCH_REPORTS`` or ``./reports``). With the default folder the
    protocol's leaderboard is refreshed too (without rendering other runs' pages).
    """
    page = render_audit_page(store, run, out, root=root, link_leaderboard=refresh_leaderboard)
    if out is None and refresh_leaderboard:
        record = store.get_record(run)
        write_leaderboard(store, record.protocol.name, record.protocol.version, root=reports_root(root))
    return page


def render_leaderboard(
    store: Store,
    protocol: str,
    version: int | None = None,
    *,
    root: str | Path | None = None,
    out: str | Path | None = None,
    audit_pages: Literal["missing", "existing"] = "missing",
    protocol_hash: str | None = None,
) -> Path:
    """Write the protocol version's leaderboard (HTML, plus .md/.tex/.csv beside it); returns the HTML path.

    ``audit_pages="missing"`` renders the audit page of every run that has none, so that every row links
    to one; ``"existing"`` links only the pages already rendered (what :func:`render_audit` uses to stay
    fast). ``out``: the HTML file (default ``<root>/<protocol>-v<version>/leaderboard.html``); links to
    audits are made relative to it.
    """
    root_path = reports_root(root)

    def render_page(run_id: str) -> Path:
        return render_audit_page(store, run_id, root=root_path, link_leaderboard=False)

    return write_leaderboard(
        store,
        protocol,
        version,
        root=root_path,
        out=out,
        render_missing=render_page if audit_pages == "missing" else None,
        protocol_hash=protocol_hash,
    )
