"""Fast start: ``import cals_bench`` and ``cals-bench --help`` load no torch, SciPy, POT, pandas or report stack;
the commands listed from static help are the real ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

HEAVY = (
    "torch", "scipy", "ot", "pandas", "matplotlib", "jinja2", "skimage", "cv2",
    "cals_bench.engine", "cals_bench.report", "cals_bench.audits", "cals_bench.fairness", "cals_bench.train",
)  # fmt: skip

PROBE = r"""
import json, sys
import cals_bench
after_package = sorted(m for m in HEAVY if m in sys.modules)
from cals_bench.cli import main
try:
    main(["--help"], prog_name="cals-bench")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"package": after_package, "help": sorted(m for m in HEAVY if m in sys.modules), "code": code}))
"""


def test_import_and_help_load_no_heavy_module():
    probe = f"HEAVY = {HEAVY!r}\n{PROBE}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    lines = out.stdout.strip().splitlines()
    got = json.loads(lines[-1])
    assert got == {"package": [], "help": [], "code": 0}
    text = "\n".join(lines[:-1])
    from cals_bench.cli_lazy import SUBSYSTEM_COMMANDS

    for name in [*SUBSYSTEM_COMMANDS, "run", "audit", "runs", "weights"]:
        assert f"\n  {name} " in text, name  # every command is listed


def test_static_short_help_equals_the_real_commands():
    from cals_bench.cli_lazy import SUBSYSTEM_COMMANDS, _shorten, load_command

    for name, (target, text) in SUBSYSTEM_COMMANDS.items():
        cmd = load_command(target)
        assert cmd.name == name
        for limit in (30, 45, 80, 400):
            assert _shorten(text, limit) == cmd.get_short_help_str(limit), (name, limit)


@pytest.mark.parametrize("name", ["leaderboard", "train", "submissions"])
def test_lazy_commands_run(name):
    from cals_bench.cli import main

    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {name}") or f" {name} " in result.output.splitlines()[0]
