"""RetinexNet (PyTorch port) baseline: strict loading of the Decom/Relight checkpoints, the Enhancer contract,
bad input, and the LOL-v1 eval15 number against the port's own predict.py rebuilt on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cals_bench.baselines.retinexnet import RetinexNet
from cals_bench.enhancer import load_enhancer
from cals_bench.errors import WeightsHashMismatch, WeightsUnavailable
from cals_bench.weights import get_spec
from tests.helpers import lol_v1_scores, tampered_weights

_NAMES = ("llie/retinexnet-decom", "llie/retinexnet-relight")


def _lol_v1_scores(enhancer, lol_root: Path) -> tuple[float, float]:
    """Mean PSNR / SSIM over eval15 with the suite's conventions (clamp, round to uint8, RGB, whole image)."""
    return lol_v1_scores(enhancer, lol_root)


@pytest.fixture(scope="module")
def retinexnet(shared_weights) -> RetinexNet:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_BENCH_WEIGHTS", str(shared_weights))
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        return RetinexNet()


def test_official_state_dicts_load_strictly(retinexnet, shared_weights):
    for name, net in zip(_NAMES, (retinexnet.decom, retinexnet.relight)):
        state = torch.load(shared_weights / get_spec(name).relpath, map_location="cpu", weights_only=True)
        assert set(net.state_dict()) == set(state), name
    assert retinexnet.weights_used == {name: get_spec(name).sha256 for name in _NAMES}
    assert retinexnet.parameter_count() == 555_205
    assert isinstance(load_enhancer("retinexnet"), RetinexNet)


def test_output_shape_dtype_range(retinexnet):
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.inference_mode():
        y = retinexnet.enhance(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.min() >= 0
    assert y.max() <= 1


@pytest.mark.parametrize("size", [(37, 53), (9, 11), (400, 601)])
def test_odd_sizes_run_as_is(retinexnet, size):
    """Three stride-2 stages, but the decoder upsamples to the exact encoder sizes: no padding needed."""
    assert retinexnet.pad_multiple == 1
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.inference_mode():
        assert retinexnet.enhance(x).shape == x.shape


def test_tampered_weight_file_is_refused(shared_weights, tmp_path, monkeypatch):
    tampered_weights(shared_weights, tmp_path, list(_NAMES), "llie/retinexnet-relight")
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsHashMismatch, match=r"Relight_9200.tar"):
        RetinexNet()


def test_missing_weight_file_is_refused_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="llie/retinexnet-decom"):
        RetinexNet()


@pytest.mark.slow
def test_lol_v1_matches_the_official_predict(retinexnet, lol_root):
    psnr, ssim = _lol_v1_scores(retinexnet, lol_root)
    # The port's predict.py rebuilt on CPU: its uint8 output (clip, truncate) scores 17.610 dB / 0.6479
    # when kept lossless (every value equal to ours or one level lower); the [input | output] JPEG it
    # actually writes scores 17.558 dB / 0.6506 (JPEG loss, see the model card). Ours measured 17.611.
    assert abs(psnr - 17.610) < 0.05  # issue tolerance
    assert abs(ssim - 0.6479) < 0.002  # truncation vs rounding moves SSIM by 2e-4 here
