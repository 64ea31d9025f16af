"""docs/extending.md stays true: every Python block there is a complete script, run here in its own process
in an empty folder (so its registrations never reach this process), and its own asserts check its numbers
against independent computations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), flags=re.S | re.M)
SECTIONS = ["metric", "baseline-with-weights", "protocol", "trainer"]


def test_the_guide_has_one_example_per_kind():
    assert len(BLOCKS) == len(SECTIONS)


@pytest.mark.parametrize("index", range(len(SECTIONS)), ids=SECTIONS)
def test_guide_example_runs(index, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(GUIDE.parents[1]),
        "CALS_BENCH_RESULTS": str(tmp_path / "results"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
