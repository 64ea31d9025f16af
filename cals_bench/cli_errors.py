"""The command-line error convention shared by every click group of the suite."""

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
