"""URetinex-Net baseline: strict loading of the four official checkpoints, both variants (blind fixed ratio as
test.py; GT-guided ratio as evaluate.py), bad input, and LOL-v1 eval15 (paper: 21.33 dB, GT-guided)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cals_bench.baselines.uretinex import URetinexNet, URetinexNetGTGuided
from cals_bench.data.io import read_rgb, to_tensor, to_uint8
from cals_bench.enhancer import load_enhancer
from cals_bench.errors import CalsBenchError, WeightsHashMismatch, WeightsUnavailable
from cals_bench.weights import get_spec
from tests.helpers import tampered_weights

_FILES = {
    "llie/uretinex-init-low": ("model_R",),
    "llie/uretinex-init-high": ("model_R",),
    "llie/uretinex-unfolding": ("model_R", "model_L"),
    "llie/uretinex-l-adjust": ("model_A",),
}


def _scores(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """PSNR / SSIM with the suite's conventions on uint8 RGB (H, W, 3)."""
    return (
        peak_signal_noise_ratio(ref, out, data_range=255),
        structural_similarity(
            ref,
            out,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=2,
        ),
    )


@pytest.fixture(scope="module")
def gt_model(shared_weights) -> URetinexNetGTGuided:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_BENCH_WEIGHTS", str(shared_weights))
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        enh = URetinexNet(variant="gt_guided")
    assert isinstance(enh, URetinexNetGTGuided)
    return enh


@pytest.fixture(scope="module")
def blind_model(shared_weights) -> URetinexNet:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_BENCH_WEIGHTS", str(shared_weights))
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        return URetinexNet()


@pytest.fixture(scope="module")
def lol_scores(gt_model, lol_root) -> dict[str, tuple[float, float]]:
    """Both variants on the 15 eval15 pairs, sharing the (expensive) unfolding of each image.

    ``test_public_methods_equal_the_shared_path`` checks that this shared path is what ``enhance`` and
    ``enhance_with_reference`` compute.
    """
    per: dict[str, list[tuple[float, float]]] = {"blind": [], "gt_guided": []}
    for ref_path in sorted((lol_root / "eval15" / "high").glob("*.png")):
        low = to_tensor(read_rgb(lol_root / "eval15" / "low" / ref_path.name))[None]
        ref_u8 = read_rgb(ref_path)
        with torch.inference_mode():
            r, l = gt_model.net.unfold(low)
            blind = gt_model.net.relight(r, l, torch.tensor([5.0])).clamp(0, 1)
            ratio = gt_model.ground_truth_ratio(l, to_tensor(ref_u8)[None])
            guided = gt_model.net.relight(r, l, ratio).clamp(0, 1)
        per["blind"].append(_scores(to_uint8(blind[0]), ref_u8))
        per["gt_guided"].append(_scores(to_uint8(guided[0]), ref_u8))
    assert len(per["blind"]) == 15
    return {k: tuple(float(v) for v in np.mean(np.array(rows), axis=0)) for k, rows in per.items()}


def test_official_checkpoints_load_strictly(gt_model, shared_weights):
    loaded = {
        "llie/uretinex-init-low": {"model_R": gt_model.net.decom_low},
        "llie/uretinex-init-high": {"model_R": gt_model.decom_high},
        "llie/uretinex-unfolding": {"model_R": gt_model.net.model_R, "model_L": gt_model.net.model_L},
        "llie/uretinex-l-adjust": {"model_A": gt_model.net.adjust},
    }
    with torch.serialization.safe_globals([argparse.Namespace]):
        for name, parts in _FILES.items():
            ckpt = torch.load(shared_weights / get_spec(name).relpath, map_location="cpu", weights_only=True)
            for part in parts:
                assert set(loaded[name][part].state_dict()) == set(ckpt["state_dict"][part]), (name, part)
    assert gt_model.weights_used == {name: get_spec(name).sha256 for name in _FILES}


def test_unfolding_schedule_comes_from_the_checkpoint(blind_model):
    s = blind_model.net.schedule
    assert (s.rounds, s.gamma, s.lamda, s.r_offset, s.l_offset) == (3, 0.1, 0.5, 0.05, 0.05)


def test_variants_flags_and_parameter_counts(blind_model, gt_model):
    assert type(blind_model) is URetinexNet
    assert blind_model.variant == "blind"
    assert not blind_model.uses_ground_truth
    assert blind_model.args == {"variant": "blind", "ratio": 5.0}
    assert gt_model.uses_ground_truth
    assert URetinexNetGTGuided.uses_ground_truth
    assert gt_model.metadata()["uses_ground_truth"] is True
    assert blind_model.parameter_count() == 340_105
    assert gt_model.parameter_count() == 360_653  # + the init_high decomposition net
    assert "llie/uretinex-init-high" not in blind_model.weights_used


def test_registry_names(shared_weights):
    assert isinstance(load_enhancer("uretinex-net@gt_guided"), URetinexNetGTGuided)
    enh = load_enhancer("uretinex-net", {"ratio": 3})
    assert type(enh) is URetinexNet
    assert enh.ratio == 3.0


def test_output_shape_dtype_range_and_odd_size(blind_model, gt_model):
    assert blind_model.pad_multiple == 1
    assert gt_model.pad_multiple == 1
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0)) * 0.2
    ref = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for y in (blind_model.enhance(x), gt_model.enhance_with_reference(x, ref)):
            assert y.shape == x.shape
            assert y.dtype == torch.float32
            assert torch.isfinite(y).all()
            assert y.min() >= 0
            assert y.max() <= 1


def test_public_methods_equal_the_shared_path(blind_model, gt_model):
    """What the LOL fixture computes is what the engine gets; and the GT ratio is per image in a batch."""
    x = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(2)) * 0.2
    ref = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        r, l = gt_model.net.unfold(x)
        torch.testing.assert_close(
            blind_model.enhance(x), gt_model.net.relight(r, l, torch.tensor([5.0] * 2)).clamp(0, 1)
        )
        guided = gt_model.enhance_with_reference(x, ref)
        torch.testing.assert_close(
            guided, gt_model.net.relight(r, l, gt_model.ground_truth_ratio(l, ref)).clamp(0, 1)
        )
        # batch of two == each image alone (upstream runs batch size 1; its ratio is a per-image mean)
        torch.testing.assert_close(
            guided[1:], gt_model.enhance_with_reference(x[1:], ref[1:]), atol=1e-5, rtol=0
        )


def test_gt_guided_needs_the_reference(gt_model):
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(CalsBenchError, match="enhance_with_reference"):
        gt_model.enhance(x)
    with pytest.raises(CalsBenchError, match="reference shape"):
        gt_model.enhance_with_reference(x, torch.rand(1, 3, 8, 9))


def test_bad_arguments_are_refused(shared_weights):
    with pytest.raises(CalsBenchError, match="blind, gt_guided"):
        URetinexNet(variant="gt")
    with pytest.raises(CalsBenchError, match="drop ratio"):
        URetinexNet(variant="gt_guided", ratio=4)
    with pytest.raises(CalsBenchError, match="ratio must be > 0"):
        URetinexNet(ratio=0)


def test_tampered_weight_file_is_refused(shared_weights, tmp_path, monkeypatch):
    tampered_weights(shared_weights, tmp_path, list(_FILES), "llie/uretinex-l-adjust")
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsHashMismatch, match=r"L_adjust.pth"):
        URetinexNet()


def test_missing_weight_file_is_refused_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="llie/uretinex"):
        URetinexNet()


def test_checkpoint_needs_the_namespace_allowance(shared_weights):
    """Why the loader allow-lists argparse.Namespace: plain weights_only=True refuses unfolding.pth."""
    path = shared_weights / get_spec("llie/uretinex-unfolding").relpath
    with pytest.raises(Exception, match=r"argparse.Namespace"):
        torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_lol_v1_gt_guided_reproduces_the_paper(lol_scores):
    psnr, ssim = lol_scores["gt_guided"]
    # Paper (LOL table, ratio from the ground truth as evaluate.py): 21.33 dB; issue tolerance 0.05 dB.
    # (Measured 21.328.) The official evaluate.py rebuilt on CPU saves PNGs scoring 21.328 dB / 0.8341; they
    # differ from ours only by truncation vs rounding to 8 bit (every pixel equal or one level lower).
    assert abs(psnr - 21.33) < 0.05
    assert abs(ssim - 0.8341) < 0.002  # vs the official script's PNGs (ours 0.8335: truncation vs rounding)


@pytest.mark.slow
def test_lol_v1_blind_matches_the_official_test_script(lol_scores):
    psnr, ssim = lol_scores["blind"]
    # Official test.py (--ratio 5) rebuilt on CPU: PNGs score 19.842 dB / 0.8259 (truncating save); ours
    # rounds (measured 19.860 dB / 0.8255). Tolerance 0.05 dB as for the published targets.
    assert abs(psnr - 19.842) < 0.05
    assert abs(ssim - 0.8259) < 0.002
