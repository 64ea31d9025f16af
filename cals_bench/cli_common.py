"""Command-line conventions shared by every click group of the suite: errors, exit codes, common options."""

from __future__ import annotations

import sys

import click

from cals_bench.errors import CalsBenchError

EXIT_USER_ERROR = 2
EXIT_SAMPLE_FAILURES = 3


class CliGroup(click.Group):
    """Turns :class:`CalsBenchError` into one line on stderr (``error: ...``) and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CalsBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)


data_root_option = click.option(
    "--data-root",
    type=click.Path(),
    default=None,
    envvar="CALS_BENCH_DATA_ROOT",
    help="Dataset folder (else $CALS_BENCH_DATA/<dataset name>; env CALS_BENCH_DATA_ROOT).",
)

results_option = click.option(
    "--results",
    type=click.Path(file_okay=False),
    default=None,
    envvar="CALS_BENCH_RESULTS",
    help="Results folder (default ./results; env CALS_BENCH_RESULTS).",
)
