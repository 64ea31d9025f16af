"""A click group whose subsystem commands are imported when used, not when the command line starts.

``cals-bench --help`` lists every command with its one-line help; the commands that live beside their
subsystem (reports, training, submissions) pull in the report stack, pandas, POT, matplotlib and torch when
imported, so the group keeps for each of them ``name -> ("module:attribute", short help)`` and imports the
module only when the command is run or asked for its own ``--help``. ``tests/test_lazy_start.py`` checks
that each static short help equals the real command's.
"""

from __future__ import annotations

import importlib

import click

from cals_bench.cli_common import CliGroup


class LazyGroup(CliGroup):
    """:class:`CliGroup` plus ``lazy``: ``{name: ("package.module:attribute", short help)}``."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(load_command(self.lazy[cmd_name][0]), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, with the static short help of commands not imported yet."""
        entries: list[tuple[str, click.Command | str]] = []
        for name in self.list_commands(ctx):
            if name not in self.commands and name in self.lazy:
                entries.append((name, self.lazy[name][1]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                entries.append((name, cmd))
        if not entries:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in entries)
        rows = [
            (name, _shorten(cmd, limit) if isinstance(cmd, str) else cmd.get_short_help_str(limit))
            for name, cmd in entries
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _shorten(text: str, limit: int) -> str:
    """click's rule for a short help that is too long: cut at a word and end with ``...``."""
    return click.Command("lazy", help=text).get_short_help_str(limit)


def load_command(target: str) -> click.Command:
    """Import ``package.module:attribute`` and return that click command."""
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise click.ClickException(f"this command is unavailable here: {exc}") from exc


# The commands that live beside their subsystem: name -> (where, the first paragraph of its help).
SUBSYSTEM_COMMANDS: dict[str, tuple[str, str]] = {
    "report": (
        "cals_bench.report.cli:report",
        "Render a run's audit report (RUN: id, unique prefix or 'latest'); prints the path of its index.html.",
    ),
    "leaderboard": (
        "cals_bench.report.cli:leaderboard",
        "Leaderboard of every stored run of a protocol version: HTML, Markdown, LaTeX or CSV.",
    ),
    "compare": (
        "cals_bench.report.cli:compare",
        "Compare two runs of one protocol: paired differences per metric and group, with paired tests.",
    ),
    "fairness-board": (
        "cals_bench.report.fairness_board:fairness_board",
        "Fairness leaderboard of every stored run of a protocol with groups: per model the metric per group, "
        "worst group, gap with its interval, GPI per group, gpi_sum, gpi_gap, permutation p-values "
        "Holm-adjusted across models, and quality-vs-disparity plots.",
    ),
    "train": (
        "cals_bench.train.cli:train",
        "Train the reference models with the shared engine (checkpoints, exact resume, torchrun/DDP).",
    ),
    "validate": (
        "cals_bench.submit.cli:validate",
        "Check a model against the contract on probe batches (no data needed) and print a pass/fail checklist.",
    ),
    "submit": (
        "cals_bench.submit.cli:submit",
        "Validate a model, then score it from its own sandboxed process that never sees the references.",
    ),
    "score": (
        "cals_bench.submit.cli:score",
        "Score a folder or .zip of outputs named like the protocol's samples (nothing is resized).",
    ),
    "submissions": (
        "cals_bench.submit.cli:submissions",
        "List, show and remove submissions (removal keeps an audit trail).",
    ),
}
