"""Importing the package changes no global state: warning filters and the matplotlib backend stay the user's."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys, warnings
import matplotlib
# third-party libraries install their own filters on import; measure only what the package adds
import numpy, scipy.special, scipy.stats, torch, pandas, cv2, skimage, jinja2, ot  # noqa: F401
before = (list(warnings.filters), matplotlib.rcParams._get_backend_or_none())
import cals_bench, cals_bench.enhancer, cals_bench.engine, cals_bench.report.plots, cals_bench.report.audit_page
import cals_bench.weights, cals_bench.train.logs
after = (list(warnings.filters), matplotlib.rcParams._get_backend_or_none())
print(json.dumps({"filters_same": before[0] == after[0], "backend_before": before[1], "backend_after": after[1],
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_import_sets_no_warning_filter_and_no_backend():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["filters_same"]
    assert probe["backend_after"] == probe["backend_before"]
    assert not probe["pyplot"]


def test_report_plot_draws_without_pyplot(tmp_path):
    from cals_bench.report.plots import _save, new_figure

    fig = new_figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    path = _save(fig, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
