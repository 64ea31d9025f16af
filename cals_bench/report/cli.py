"""Click commands ``report``, ``leaderboard`` and ``compare``; ``cals_bench/cli.py`` registers them.

Paths of written HTML go to stdout (last line); Markdown, LaTeX and CSV leaderboards go to stdout unless
``--out`` names a file.
"""

from __future__ import annotations

from pathlib import Path

import click

from cals_bench.cli_common import results_option

reports_option = click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="CALS_BENCH_REPORTS",
    help="Reports folder (default ./reports; env CALS_BENCH_REPORTS).",
)


def _store(results: str | None):
    from cals_bench.store import Store

    return Store(results)


@click.command("report")
@click.argument("run_ref")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Report folder (default: under the reports folder).",
)
@results_option
@reports_option
def report(run_ref, out, results, reports_dir):
    """Render a run's audit report (RUN: id, unique prefix or 'latest'); prints the path of its index.html.

    \b
    Examples:
      cals-bench report latest
      cals-bench report lol-v1__zero-dce --out /tmp/zero-dce-report
    """
    from cals_bench.report import render_audit

    click.echo(str(render_audit(_store(results), run_ref, out, root=reports_dir)))


@click.command("leaderboard")
@click.option("--protocol", "protocol_name", required=True, help="Protocol name (as stored with the runs).")
@click.option(
    "--version", "protocol_version", type=int, default=None, help="Protocol version (default: newest)."
)
@click.option("--html", "fmt", flag_value="html", default=True, help="Write the HTML leaderboard (default).")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print a Markdown table.")
@click.option("--latex", "fmt", flag_value="latex", help="Print a LaTeX (booktabs) table.")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV with full-precision numbers.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Output file (HTML default: under --reports).",
)
@click.option(
    "--no-audits",
    is_flag=True,
    help="HTML: do not render missing audit pages (rows link only to existing ones).",
)
@click.option(
    "--hash",
    "protocol_hash",
    default=None,
    help="Only runs under this protocol hash (a prefix): the separate board of runs that carry a built-in "
    "protocol's name with another spec.",
)
@results_option
@reports_option
def leaderboard(protocol_name, protocol_version, fmt, out, no_audits, protocol_hash, results, reports_dir):
    """Leaderboard of every stored run of a protocol version: HTML, Markdown, LaTeX or CSV.

    \b
    Examples:
      cals-bench leaderboard --protocol lol-v1 --html
      cals-bench leaderboard --protocol lol-v1 --markdown > lol-v1.md
      cals-bench leaderboard --protocol lol-v1 --latex --out table.tex
    """
    from cals_bench.report import build_leaderboard, leaderboard_text, render_leaderboard

    store = _store(results)
    if fmt == "html":
        path = render_leaderboard(
            store,
            protocol_name,
            protocol_version,
            root=reports_dir,
            out=out,
            audit_pages="existing" if no_audits else "missing",
            protocol_hash=protocol_hash,
        )
        click.echo(str(path))
        return
    lb = build_leaderboard(
        store, protocol_name, protocol_version, root=reports_dir, protocol_hash=protocol_hash
    )
    text = leaderboard_text(lb, fmt)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        click.echo(out)
    else:
        click.echo(text, nl=False)


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Report folder.")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="ATTR=VALUE",
    help="Per-group table on the samples with this attribute value only (repeatable), e.g. context=face.",
)
@click.option(
    "--group-by",
    "group_by",
    multiple=True,
    help="Per-group table grouped by these attributes instead of the protocol's (repeatable; a*b for cells).",
)
@results_option
@reports_option
def compare(run_a, run_b, out, where, group_by, results, reports_dir):
    """Compare two runs of one protocol: paired differences per metric and group, with paired tests.

    Also prints the per-group table (the CALS paper's Table 1 layout for cals-contexts: each group's means
    with intervals for both runs, the paired difference and tests; then GPI per group, gpi_sum, gpi_gap
    and p for both runs) and writes it beside the page as group_table.md. --where and --group-by compute
    that table (audit and paired tests afresh, the protocol's other settings) on a subset with other groups.

    \b
    Examples:
      cals-bench compare lol-v1__zero-dce lol-v1__identity
      cals-bench compare RUN_A RUN_B --where context=face --group-by race --group-by gender
    """
    from cals_bench.errors import CalsBenchError
    from cals_bench.report import render_comparison
    from cals_bench.report.group_table import group_table, to_markdown

    pairs = {}
    for item in where:
        if "=" not in item:
            raise CalsBenchError(f"--where {item!r}: expected ATTR=VALUE")
        k, v = item.split("=", 1)
        pairs[k.strip()] = v.strip()
    store = _store(results)
    page = render_comparison(store, run_a, run_b, out, root=reports_dir)
    subset = pairs or group_by
    text = to_markdown(
        group_table(store, run_a, run_b, where=pairs or None, group_by=list(group_by) if group_by else None)
    )
    name = "group_table.md"
    if subset:
        tag = "_".join([f"{k}-{v}" for k, v in pairs.items()] + [g.replace("*", "x") for g in group_by])
        name = f"group_table_{''.join(c if c.isalnum() or c in '-_' else '-' for c in tag)}.md"
    Path(page).parent.joinpath(name).write_text(text, encoding="utf-8")
    click.echo(text)
    click.echo(str(page))


COMMANDS = (report, leaderboard, compare)

# the fairness leaderboard lives beside its builder
from cals_bench.report.fairness_board import fairness_board  # noqa: E402

COMMANDS = (*COMMANDS, fairness_board)
