"""No-reference metrics (NIQE, PIQE, the colour and exposure report) against the original MATLAB values, and
their path through the engine: unpaired protocols, deltas against the model input, paired protocols with a
no-reference column, the audit page and the leaderboard.

Reference values: ``../shared/data/iqa-calibration/results_official.csv`` (pyiqa's ResultsCalibra), the
numbers the original MATLAB code gives on five TID2013 images (dist_dir, through MATLAB ``rgb2gray``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from cals_bench.data.io import read_rgb
from cals_bench.metrics import matlab
from cals_bench.metrics.exposure import exposure_report, srgb_to_lab
from cals_bench.metrics.niqe import _GAM, _R_GAM, _nearest_on_grid, load_pristine, niqe_rgb
from cals_bench.metrics.piqe import piqe_rgb

IMAGES = ("I03", "I04", "I06", "I08", "I19")

# NIQE tolerance. Where a whole 7x7 neighbourhood is one grey level, the MSCN value (I - mu) / (sigma + 1) is
# exactly 0; floating point leaves +-1e-14 there whose sign, set by the grey level and the library's
# summation order, decides which half of the AGGD fit the pixel joins. cals-bench uses the exact 0; the
# official figures carry MATLAB's rounding. On I04 (no flat neighbourhood) the two agree to 3e-13; on the
# others the flat regions (I19: 30% of the pixels) leave |difference| <= 0.030 (I19 +0.030, I08 +0.018,
# I03 -0.007, I06 -0.001), while giving those same pixels a +-1e-15 sign instead of 0 moves I19 by up to
# 0.5 (pyiqa's port misses I19 by 0.44). So: 1e-9 where nothing is flat, 0.035 (0.4% of I19) elsewhere.
NIQE_TOL_FLAT = 0.035
NIQE_TOL_EXACT = 1e-9
# The official PIQE figures are given to 2 decimals: half a unit in the last place.
PIQE_TOL = 0.005


def _official(shared: Path) -> dict[str, list[float]]:
    with open(shared / "data" / "iqa-calibration" / "results_official.csv", newline="") as f:
        rows = {r["Method"]: r for r in csv.DictReader(f)}
    return {m: [float(rows[m][f"{i}.bmp"]) for i in IMAGES] for m in ("niqe", "piqe")}


@pytest.fixture(scope="module")
def calibration(shared_dir):
    folder = shared_dir / "data" / "iqa-calibration" / "dist_dir"
    return {i: read_rgb(folder / f"{i}.bmp") for i in IMAGES}, _official(shared_dir)


def test_niqe_matches_original_matlab(calibration, shared_weights):
    images, official = calibration
    mu, cov, sha = load_pristine()
    assert sha == "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
    for name, expected in zip(IMAGES, official["niqe"]):
        got = niqe_rgb(images[name], mu, cov)
        tol = NIQE_TOL_EXACT if name == "I04" else NIQE_TOL_FLAT
        assert abs(got - expected) <= tol, (name, got, expected)


def test_piqe_matches_matlab(calibration):
    images, official = calibration
    for name, expected in zip(IMAGES, official["piqe"]):
        got = piqe_rgb(images[name])
        assert abs(got - expected) <= PIQE_TOL, (name, got, expected)


def test_matlab_conventions():
    # rgb2gray: MATLAB's coefficients (rgb2gray.m), not BT.601's, and uint8 rounding
    assert np.allclose(matlab.RGB2GRAY, [0.298936021293775, 0.587043074451121, 0.114020904255103], atol=1e-15)
    px = np.array([[[10, 200, 30], [255, 0, 1], [1, 1, 2]]], dtype=np.uint8)
    assert matlab.rgb2gray(px).tolist() == [[124.0, 76.0, 1.0]]
    # imresize: the answer for imresize(reshape(0:15, 4, 4)', [3 3]) (bicubic, antialiased) quoted, to 4
    # decimals, by the MATLAB-equivalent resampler pyiqa ships (sanghyun-son/bicubic_pytorch). Its 6.1505
    # is off by 4e-4 from its own symmetric entries (row 2, col 1 must be 4 * 1.5 + 0.7506 / 5 = 6.1501).
    x = np.arange(16, dtype=np.float64).reshape(4, 4)
    w = matlab.resize_matrix(4, 3, 0.75)
    expected = [[0.7506, 2.1004, 3.4503], [6.1505, 7.5000, 8.8499], [11.5497, 12.8996, 14.2494]]
    assert np.allclose(w @ x @ w.T, expected, atol=5e-4)
    assert np.abs(w @ x @ w.T - expected)[[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 1, 2, 0, 1, 2]].max() < 1e-4
    # the tap-by-tap resize equals the matrix form, and a constant stays constant
    img = np.random.default_rng(0).uniform(0, 255, (96, 72))
    dense = matlab.resize_matrix(96, 48, 0.5) @ img @ matlab.resize_matrix(72, 36, 0.5).T
    assert np.allclose(matlab.imresize(img, 0.5), dense, rtol=0, atol=1e-10)
    assert np.allclose(matlab.imresize(np.full((20, 10), 3.0), 0.5), 3.0, atol=1e-12)
    # MATLAB's 0.2:0.001:10 has 9801 values, both ends exact
    g = matlab.colon(0.2, 0.001, 10.0)
    assert g.size == 9801
    assert g[0] == 0.2
    assert g[-1] == 10.0


def test_aggd_grid_search_equals_full_scan():
    """The binary search on the monotone moment-ratio grid picks what MATLAB's min over all 9801 does."""
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.uniform(0.0, 0.8, 2000), _R_GAM[::97], [np.nan, 0.74, 0.05]])
    scan = np.argmin((_R_GAM[None, :] - np.where(np.isnan(v), 0, v)[:, None]) ** 2, axis=1)
    scan[np.isnan(v)] = 0
    assert np.array_equal(_nearest_on_grid(v), scan)
    assert np.all(np.diff(_R_GAM) > 0)
    assert _GAM.size == _R_GAM.size


def test_exposure_report_against_direct_counts_and_skimage():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    img[:5] = 0  # 250 crushed pixels
    img[5:7] = 255  # 100 blown pixels
    r = exposure_report(img)
    x = img.astype(np.float64)
    assert math.isclose(
        r["brightness"], float((0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).mean()) / 255
    )
    assert r["clipped_low"] == np.mean([(p == 0).any() for p in img.reshape(-1, 3)])
    assert r["clipped_high"] == np.mean([(p == 255).any() for p in img.reshape(-1, 3)])
    assert r["clipped_low"] >= 250 / 2000
    assert r["clipped_high"] >= 100 / 2000
    # CIELAB as scikit-image computes it, within 0.01: skimage takes the rounded CIE D65 white (0.95047, 1,
    # 1.08883) where cals-bench takes the image of sRGB white (so that neutral greys have no cast at all)
    lab = rgb2lab(img)
    assert np.abs(srgb_to_lab(img) - lab).max() < 0.01
    assert abs(r["color_cast"] - math.hypot(lab[..., 1].mean(), lab[..., 2].mean())) < 0.01
    for level in (1, 128, 254):
        assert exposure_report(np.full((8, 8, 3), level, dtype=np.uint8))["color_cast"] < 1e-9
    reddish = np.zeros((8, 8, 3), dtype=np.uint8) + np.array([160, 120, 120], dtype=np.uint8)
    assert exposure_report(reddish)["color_cast"] > 10


# ----------------------------------------------------------------------------------------------------------
# through the engine


def _folder(tmp_path: Path, shared_dir: Path, names=("01.jpg", "05.jpg")) -> Path:
    import shutil

    root = tmp_path / "photos"
    root.mkdir()
    for n in names:
        shutil.copy(shared_dir / "data" / "dicm" / n, root / n)
    return root


def test_unpaired_run_scores_outputs_and_deltas(tmp_path, shared_dir, shared_weights):
    from cals_bench import protocol as protocols
    from cals_bench.engine import evaluate
    from cals_bench.store import Store

    root = _folder(tmp_path, shared_dir)
    store = Store(tmp_path / "results")
    proto = protocols.load("unpaired-folder")
    res = evaluate(
        proto, "gamma", {"gamma": 2.0}, data_root=root, store=store, progress=False, extra_metrics=("psnr",)
    )
    assert res.meta["status"] == "finished"
    assert not res.failures
    assert "reference" in res.meta["unavailable_metrics"]["psnr"]
    scores = store.scores(res.run_id).pivot(index="sample_id", columns="metric", values="value")
    assert {"niqe", "niqe_delta", "piqe", "piqe_delta", "brightness", "color_cast_delta"} <= set(scores)
    mu, cov, _ = load_pristine()
    for sid in ("01", "05"):
        low = read_rgb(root / f"{sid}.jpg")
        out = read_rgb(res.run_dir / "outputs" / f"{sid}.png")  # the output as scored
        assert math.isclose(scores.at[sid, "niqe"], niqe_rgb(out, mu, cov), rel_tol=0, abs_tol=1e-12)
        delta = niqe_rgb(out, mu, cov) - niqe_rgb(low, mu, cov)
        assert math.isclose(scores.at[sid, "niqe_delta"], delta, rel_tol=0, abs_tol=1e-12)
        exp_in, exp_out = exposure_report(low), exposure_report(out)
        assert math.isclose(scores.at[sid, "brightness_delta"], exp_out["brightness"] - exp_in["brightness"])
        assert scores.at[sid, "brightness_delta"] > 0.05  # gamma 2 brightens
    assert res.meta["metric_directions"]["niqe"] is False
    assert res.meta["metric_directions"]["brightness"] is None
    # the audit page shows image grids of input and output (no reference column); the leaderboard shows
    # the no-reference columns flagged (NR), with their direction
    from cals_bench.report import render_audit
    from cals_bench.report.leaderboard import build_leaderboard, leaderboard_text

    page = render_audit(store, res.run_id, root=tmp_path / "reports").read_text()
    assert 'alt="low (input) of sample 01"' in page
    assert 'alt="output of sample 01"' in page
    assert "reference of sample" not in page
    assert "No reference images" in page
    board = leaderboard_text(
        build_leaderboard(store, "unpaired-folder", root=tmp_path / "reports"), "markdown"
    )
    assert "niqe (NR) \u2193" in board
    assert "piqe\\_delta (NR) \u2193" in board
    assert "brightness (NR) |" in board  # descriptive: no arrow


def test_identity_on_unpaired_has_zero_deltas(tmp_path, shared_dir, shared_weights):
    from cals_bench import protocol as protocols
    from cals_bench.engine import evaluate
    from cals_bench.store import Store

    root = _folder(tmp_path, shared_dir, ("02.jpg",))
    store = Store(tmp_path / "results")
    res = evaluate(protocols.load("unpaired-folder"), "identity", data_root=root, store=store, progress=False)
    scores = store.scores(res.run_id).set_index("metric")["value"]
    for col in ("niqe_delta", "piqe_delta", "brightness_delta", "clipped_low_delta", "color_cast_delta"):
        assert scores[col] == 0.0


PAIRED_WITH_NR = """
name: paired-with-niqe
version: 1
title: synthetic pairs with a no-reference column, grouped
dataset:
  layout: synthetic
  clean_dir: images
  manifest: groups.csv
preprocess: {resize: [192, 192], resize_mode: center-crop, interpolation: area}
metrics: [psnr, niqe]
audit: {group_by: [grp], min_group_size: 2, bootstrap: 50, permutations: 50, gpi_metric: null}
batch_size: 4
"""


def test_paired_protocol_with_a_no_reference_column(tmp_path, shared_dir, shared_weights):
    from cals_bench import protocol as protocols
    from cals_bench.audits import audit_run
    from cals_bench.engine import evaluate
    from cals_bench.store import Store

    root = _folder(tmp_path, shared_dir, ("01.jpg", "02.jpg", "03.jpg", "04.jpg"))
    (root / "images").mkdir()
    for p in sorted(root.glob("*.jpg")):
        p.rename(root / "images" / p.name)
    (root / "groups.csv").write_text("image,grp\n01.jpg,a\n02.jpg,a\n03.jpg,b\n04.jpg,b\n")
    (tmp_path / "p.yaml").write_text(PAIRED_WITH_NR)
    store = Store(tmp_path / "results")
    res = evaluate(
        protocols.load(str(tmp_path / "p.yaml")), "identity", data_root=root, store=store, progress=False
    )
    scores = store.scores(res.run_id).pivot(index="sample_id", columns="metric", values="value")
    assert {"psnr", "niqe", "niqe_delta"} <= set(scores)
    assert len(scores) == 4
    assert (scores["niqe_delta"] == 0).all()  # identity: output == input
    meta = next(m for m in res.meta["metrics"] if m["name"] == "niqe")
    assert meta["needs_reference"] is False
    # the audit's groups cover the no-reference column like any other
    result, _ = audit_run(store, res.meta)
    rows = result.groups[(result.groups["metric"] == "niqe") & (result.groups["grouping"] == "grp")]
    assert sorted(rows["group"]) == ["a", "b"]
    assert rows["n"].tolist() == [2, 2]
    mean_a = rows.loc[rows["group"] == "a", "mean"].item()
    assert math.isclose(mean_a, scores.loc[["01", "02"], "niqe"].mean(), rel_tol=1e-12)


def test_dicm_protocol_pins_the_shared_files(shared_dir):
    from cals_bench import protocol as protocols
    from cals_bench.data.io import sha256_path

    proto = protocols.load("dicm")
    assert len(proto.dataset.files) == 64
    assert proto.dataset.expected_count == 64
    here = sorted(p.name for p in (shared_dir / "data" / "dicm").iterdir())
    assert len(here) == 24
    for name in here:
        assert proto.dataset.checksums[name] == sha256_path(shared_dir / "data" / "dicm" / name)
    for name in ("lime", "mef", "npe", "vv"):
        p = protocols.load(name)
        assert p.dataset.layout == "unpaired"
        assert p.dataset.source
        assert p.dataset.citation


def test_missing_listed_file_fails_its_sample(tmp_path, shared_dir, shared_weights):
    from cals_bench import protocol as protocols
    from cals_bench.data.datasets import load_samples

    root = _folder(tmp_path, shared_dir, ("01.jpg",))
    lime = protocols.load("lime")
    _, samples = load_samples(lime, root)
    assert [s.sample_id for s in samples] == [str(i) for i in range(1, 11)]
    assert all("published file list but missing" in (s.error or "") for s in samples)
    _, samples = load_samples(protocols.load("unpaired-folder"), root)
    low, ref = samples[0].load()
    assert ref is None
    assert low.shape == (640, 480, 3)
    assert low.dtype == np.uint8
