"""SGZ wrapper: strict loading, I/O contract, bad inputs, LOL-v1 eval15 reproduction.

Reproduction reference: SGZ's ``test.py`` (rebuilt outside the repo, run on CPU with the same weights) crops
each 600x400 LOL image to 600x396 and its saved PNGs score 16.0406 dB / SSIM 0.5708 against the equally
cropped references (suite conventions: uint8, RGB, whole region, skimage PSNR/SSIM).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cals_bench.baselines.sgz import SGZ
from cals_bench.baselines.zero_dce import ZeroDCEPlusPlusNet
from cals_bench.data.io import read_rgb, to_tensor, to_uint8
from cals_bench.enhancer import load_enhancer
from cals_bench.errors import CalsBenchError, WeightsHashMismatch, WeightsUnavailable
from tests.helpers import skimage_scores

REL = "llie/sgz/Epoch99.pth"


def _mean_scores(outs: list[np.ndarray], refs: list[np.ndarray]) -> tuple[float, float]:
    return skimage_scores(refs, outs)


@pytest.fixture(scope="module")
def sgz(shared_weights, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # module scope: set the env the autouse fixture sets per test
        mp.setenv("CALS_BENCH_WEIGHTS", str(shared_weights))
        mp.setenv("CALS_BENCH_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return SGZ()


def test_strict_load_matches_the_official_file(sgz, shared_weights):
    official = torch.load(shared_weights / REL, map_location="cpu", weights_only=True)
    ours = sgz.net.state_dict()
    assert list(ours) == list(official)
    assert all(torch.equal(ours[k], official[k]) for k in official)
    assert isinstance(sgz.net, ZeroDCEPlusPlusNet)
    assert sgz.net.scale_factor == 12
    assert sgz.parameter_count() == 10_561
    assert set(sgz.weights_used) == {"llie/sgz"}


def test_output_contract_and_odd_size(sgz):
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.inference_mode():
        y = sgz.enhance(x)
        expected = sgz.net(F.pad(x, (0, 7, 0, 11), mode="reflect"))[..., :37, :53].clamp(0, 1)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0
    assert float(y.max()) <= 1.0
    assert float(y.mean()) > float(x.mean())
    torch.testing.assert_close(y, expected, atol=0, rtol=0)  # pad-and-crop, never a resize


def test_unknown_argument_is_rejected(shared_weights):
    with pytest.raises(CalsBenchError, match="model 'sgz' has no argument 'variant'"):
        load_enhancer("sgz@lol")


def test_tampered_or_missing_weights_are_refused(shared_weights, tmp_path, monkeypatch):
    bad = tmp_path / "weights" / REL
    bad.parent.mkdir(parents=True)
    shutil.copyfile(shared_weights / REL, bad)
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0x40
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(WeightsHashMismatch, match="checksum"):
        SGZ()
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(WeightsUnavailable, match="llie/sgz"):
        SGZ()


def test_reproduces_lol_v1(sgz, lol_root: Path):
    low_dir, high_dir = lol_root / "eval15" / "low", lol_root / "eval15" / "high"
    names = sorted(p.name for p in low_dir.glob("*.png"))
    assert len(names) == 15
    refs = [read_rgb(high_dir / n) for n in names]
    with torch.inference_mode():
        xs = [to_tensor(read_rgb(low_dir / n))[None] for n in names]
        ours = [to_uint8(sgz.enhance(x)[0]) for x in xs]
        cropped = [to_uint8(sgz.net(x[..., :396, :600])[0].clamp(0, 1)) for x in xs]  # upstream's procedure
    up_psnr, up_ssim = _mean_scores(cropped, [r[:396] for r in refs])
    # Our network on the upstream's crop gives the upstream PNGs (16.0406 / 0.5708) pixel for pixel; 0.005 dB
    # and 0.001 SSIM leave room only for a few one-level rounding flips from another CPU's float arithmetic.
    assert abs(up_psnr - 16.0406) <= 0.005, up_psnr
    assert abs(up_ssim - 0.5708) <= 0.001, up_ssim
    # Ours (pad-and-crop, full 600x400), measured 16.0448 / 0.5702; same float-noise margin.
    psnr, ssim = _mean_scores(ours, refs)
    assert abs(psnr - 16.0448) <= 0.005, psnr
    assert abs(ssim - 0.5702) <= 0.001, ssim
    # On the upstream's region, padding instead of cropping moves the score by +0.001 dB: within the issue's
    # 0.05 dB reproduction tolerance.
    region_psnr, _ = _mean_scores([o[:396] for o in ours], [r[:396] for r in refs])
    assert abs(region_psnr - up_psnr) <= 0.05, (region_psnr, up_psnr)
