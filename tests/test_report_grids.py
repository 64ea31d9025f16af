"""Pure helpers of the reports: error crop location, sample picking, thumbnails, escaping, number format."""

from __future__ import annotations

import math

import numpy as np
import pytest


def test_error_box_finds_the_window_of_largest_error():
    from cals_bench.report.grids import error_box

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 200, (120, 160, 3), dtype=np.uint8)
    out = ref.copy()
    out[30:50, 70:90] += 50  # the only error: a 20x20 block (window side = max(16, 120 // 6) = 20)
    assert error_box(out, ref) == (30, 70, 20)
    # A second, weaker block does not move it; the window is clipped to small images.
    out[90:110, 10:30] += 10
    assert error_box(out, ref) == (30, 70, 20)
    small = np.zeros((10, 12, 3), np.uint8)
    assert error_box(small, small) == (0, 0, 10)


def test_pick_samples_best_median_worst_by_direction_and_cap():
    from cals_bench.report.grids import pick_samples

    values = {"a": 1.0, "b": 5.0, "c": 3.0, "d": float("nan"), "e": 2.0}
    ids = list(values)
    sections, used = pick_samples(values, True, [("all", ids)])
    assert [(i.role, i.sample_id) for i in sections[0].items] == [
        ("best", "b"),
        ("median", "c"),
        ("worst", "a"),
    ]
    sections, _ = pick_samples(values, False, [("all", ids)])  # lower is better: best is the smallest
    assert [(i.role, i.sample_id) for i in sections[0].items] == [
        ("best", "a"),
        ("median", "e"),
        ("worst", "b"),
    ]
    # One sample in a group is shown once; NaN-only groups are skipped; the cap counts distinct samples.
    sections, used = pick_samples(values, True, [("one", ["c"]), ("nan", ["d"]), ("all", ids)], cap=2)
    assert [s.title for s in sections] == ["one", "all"]
    assert [i.sample_id for i in sections[0].items] == ["c"]
    assert used == 2
    assert {i.sample_id for s in sections for i in s.items} == {"c", "b"}


def test_thumbnail_downscales_only():
    from cals_bench.report.grids import THUMB_PX, thumbnail

    big = np.zeros((300, 500, 3), np.uint8)
    thumb, scale = thumbnail(big)
    assert thumb.shape == (144, THUMB_PX, 3)
    assert scale == pytest.approx(THUMB_PX / 500)
    small = np.zeros((30, 50, 3), np.uint8)
    thumb, scale = thumbnail(small)
    assert thumb is small
    assert scale == 1.0


def test_escapes():
    from cals_bench.report.tables import csv_text, escape_latex, escape_markdown

    # Markdown is plain text (no HTML entities): a '<' that could open a tag and an '&' that could start an
    # entity are backslash-escaped, as are the Markdown specials; a lone '<' or '&' reads as typed.
    assert escape_markdown('<b>"a"|*x*_</b> & \\') == r'\<b>"a"\|\*x\*\_\</b> & \\'
    assert escape_markdown("a &amp; b < c") == r"a \&amp; b < c"
    assert escape_latex("50% of $x_1$ & {y} #2 ~ ^ \\ <>\"'") == (
        r"50\% of \$x\_1\$ \& \{y\} \#2 \textasciitilde{} \textasciicircum{} \textbackslash{} "
        r"\textless{}\textgreater{}\textquotedbl{}\textquotesingle{}"
    )
    assert csv_text("=1+1") == "'=1+1"
    assert csv_text("a=1") == "a=1"
    assert csv_text(-1.0) == -1.0


def test_number_formats():
    from cals_bench.report.formatting import fmt_ci, fmt_p, fmt_value, gpi_label, sort_key

    assert fmt_value(14.588118) == "14.59"
    assert fmt_value(0.62122) == "0.6212"
    assert fmt_value(8.0536, metric="psnr") == "8.05"
    assert fmt_value(12.5, metric="lpips") == "12.5000"
    assert fmt_value(float("nan")) == "-"
    assert fmt_value(None) == "-"
    assert fmt_value(math.inf) == "inf"
    assert fmt_ci(0.1, 0.2, 0.15) == "[0.1000, 0.2000]"
    assert fmt_ci(float("nan"), 1.0) == ""
    assert fmt_p(0.0004) == "< 0.001"
    assert fmt_p(0.04567) == "0.0457"
    assert fmt_p(float("nan")) == "-"
    assert sort_key(0.1 + 0.2) == repr(0.1 + 0.2)
    assert sort_key(float("nan")) == ""
    assert gpi_label("metric_1d", "lpips", "context") == "1-D GPI of LPIPS by context"


def test_finite_records_turns_inf_into_undefined_with_a_note():
    import pandas as pd

    from cals_bench.audits import finite_records

    rec = pd.DataFrame({"sample_id": ["a", "b"], "metric": ["psnr", "psnr"], "value": [math.inf, 20.0]})
    out, notes = finite_records(rec)
    assert math.isnan(out["value"].iloc[0])
    assert out["value"].iloc[1] == 20.0
    assert len(notes) == 1
    assert "1 value(s) of psnr are infinite" in notes[0]
    assert rec["value"].iloc[0] == math.inf  # the input is not modified


def test_settings_from_stored_protocol_specs():
    from cals_bench.audits import settings_for

    audit = {
        "group_by": ["context"],
        "error_metric": "lpips",
        "seed": 3,
        "gpi_features": ["x"],
        "bootstrap": 10,
    }
    old = {"protocol": {"spec": {"audit": audit}}}  # as stored before the protocol schema's rename
    settings, notes = settings_for(old)
    assert settings.group_by == ("context",)
    assert settings.gpi_metric == "lpips"
    assert settings.gpi_seed == 3
    assert settings.bootstrap == 10
    assert notes == []
    new = {"protocol": {"spec": {"audit": {"gpi_metric": None, "gpi_seed": 7, "seed": 1, "surprise": 1}}}}
    settings, notes = settings_for(new)
    assert settings.gpi_metric is None
    assert settings.gpi_seed == 7
    assert notes
    assert "surprise" in notes[0]
