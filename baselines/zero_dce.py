"""Zero-DCE and Zero-DCE++: per-pixel quadratic light-enhancement curves predicted by a small CNN.

Both networks predict curve parameters ``r`` in [-1, 1] (tanh) and apply the light-enhancement curve
``LE(x) = x + r * (x**2 - x)`` eight times; for ``x`` in [0, 1] and ``|r| <= 1`` every step stays in [0, 1].
Zero-DCE predicts a separate 3-channel ``r`` for each of the 8 steps (24 maps) at full resolution; Zero-DCE++
predicts one 3-channel ``r`` shared by all steps, from a 12x bilinearly downscaled input, with
depthwise-separable convolutions, and upsamples it back. SGZ (``baselines/sgz.py``) reuses
:class:`ZeroDCEPlusPlusNet` unchanged.

Images everywhere in this module: float32 RGB ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.padding import pad_to_multiple
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register

# Weight files (``cals-bench weights list``), from the authors' repositories at a pinned commit.
ZERO_DCE_WEIGHTS = register(
    WeightSpec.on_github(
        "llie/zero-dce",
        "llie/zero-dce/Epoch99.pth",
        "a4395acb874f320375d9704997cef874eaaaaa26a1777ceb29a92b70f74c3612",
        320017,
        repo="Li-Chongyi/Zero-DCE",
        commit="e0f4adc54d0f23348c4a9b84acc08fe8778d5bfd",
        path="Zero-DCE_code/snapshots/Epoch99.pth",
        licence="CC BY-NC 4.0",
        paper="Guo et al., Zero-Reference Deep Curve Estimation for Low-Light Image Enhancement, CVPR 2020",
        used_by="zero-dce",
    )
)
ZERO_DCE_PP_WEIGHTS = register(
    WeightSpec.on_github(
        "llie/zero-dce++",
        "llie/zero-dce++/Epoch99.pth",
        "ca8855b90df9a80fa4195a831f33d3476b1964f787eb70602797c773067f3b84",
        52395,
        repo="Li-Chongyi/Zero-DCE_extension",
        commit="09f202b690f82da939b8e6ec8535960ae97ad8bd",
        path="Zero-DCE++/snapshots_Zero_DCE++/Epoch99.pth",
        licence="CC BY-NC 4.0",
        paper="Li et al., Learning to Enhance Low-Light Image via Zero-Reference Deep Curve Estimation, TPAMI 2021",
        used_by="zero-dce++",
    )
)
CURVE_STEPS = 8


def apply_curves(x: torch.Tensor, r: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Apply ``LE(x) = x + r (x^2 - x)`` ``CURVE_STEPS`` times.

    ``r`` is either one ``(B, 3, H, W)`` map used at every step (Zero-DCE++) or a list of eight (Zero-DCE).
    """
    maps = r if isinstance(r, list) else [r] * CURVE_STEPS
    for step in maps:
        x = x + step * (x * x - x)
    return x


class ZeroDCENet(nn.Module):
    """The Zero-DCE curve estimator (state-dict keys ``e_conv1`` ... ``e_conv7``, 79,416 parameters).

    Seven 3x3 convolutions, 32 channels, symmetric skip concatenations (conv5 sees conv3+conv4, conv6 sees
    conv2+conv5, conv7 sees conv1+conv6), ReLU, then tanh on 24 channels = 8 curve maps of 3 channels.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.e_conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.e_conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.e_conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.e_conv4 = nn.Conv2d(width, width, 3, padding=1)
        self.e_conv5 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.e_conv6 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.e_conv7 = nn.Conv2d(2 * width, 3 * CURVE_STEPS, 3, padding=1)

    def curve_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The eight ``(B, 3, H, W)`` curve-parameter maps in [-1, 1]."""
        f1 = F.relu(self.e_conv1(x))
        f2 = F.relu(self.e_conv2(f1))
        f3 = F.relu(self.e_conv3(f2))
        f4 = F.relu(self.e_conv4(f3))
        f5 = F.relu(self.e_conv5(torch.cat([f3, f4], 1)))
        f6 = F.relu(self.e_conv6(torch.cat([f2, f5], 1)))
        r = torch.tanh(self.e_conv7(torch.cat([f1, f6], 1)))
        return list(torch.split(r, 3, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_curves(x, self.curve_maps(x))


class DepthwiseSeparableConv(nn.Module):
    """3x3 depthwise convolution followed by a 1x1 pointwise one (keys ``depth_conv``, ``point_conv``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depth_conv = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in)
        self.point_conv = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class ZeroDCEPlusPlusNet(nn.Module):
    """The Zero-DCE++ curve estimator (10,561 parameters); also SGZ's enhancement network.

    Same topology as :class:`ZeroDCENet` with depthwise-separable convolutions and a single 3-channel curve
    map. The map is estimated on the input bilinearly downscaled by ``scale_factor`` (``F.interpolate`` with
    ``scale_factor=1/s``, half-pixel centres, as upstream) and upsampled back by ``s`` with bilinear
    ``align_corners=True`` (upstream's ``nn.UpsamplingBilinear2d``). H and W must be multiples of ``s``.
    """

    def __init__(self, scale_factor: int = 12, width: int = 32) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.e_conv1 = DepthwiseSeparableConv(3, width)
        self.e_conv2 = DepthwiseSeparableConv(width, width)
        self.e_conv3 = DepthwiseSeparableConv(width, width)
        self.e_conv4 = DepthwiseSeparableConv(width, width)
        self.e_conv5 = DepthwiseSeparableConv(2 * width, width)
        self.e_conv6 = DepthwiseSeparableConv(2 * width, width)
        self.e_conv7 = DepthwiseSeparableConv(2 * width, 3)

    def curve_map(self, x: torch.Tensor) -> torch.Tensor:
        """The shared ``(B, 3, H, W)`` curve-parameter map in [-1, 1]."""
        s = self.scale_factor
        small = x if s == 1 else F.interpolate(x, scale_factor=1 / s, mode="bilinear")
        f1 = F.relu(self.e_conv1(small))
        f2 = F.relu(self.e_conv2(f1))
        f3 = F.relu(self.e_conv3(f2))
        f4 = F.relu(self.e_conv4(f3))
        f5 = F.relu(self.e_conv5(torch.cat([f3, f4], 1)))
        f6 = F.relu(self.e_conv6(torch.cat([f2, f5], 1)))
        r = torch.tanh(self.e_conv7(torch.cat([f1, f6], 1)))
        if s != 1:
            r = F.interpolate(r, scale_factor=s, mode="bilinear", align_corners=True)
        return r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_curves(x, self.curve_map(x))


@register_enhancer("zero-dce")
class ZeroDCE(Enhancer):
    """Zero-DCE (Guo et al., CVPR 2020): eight per-pixel quadratic curves from a 7-layer CNN, 79,416 params.

    Paper: Zero-Reference Deep Curve Estimation for Low-Light Image Enhancement, CVPR 2020. Trained without
    reference images (spatial-consistency, exposure, colour-constancy and smoothness losses) on SICE.

    Weights: ``llie/zero-dce`` = ``Zero-DCE_code/snapshots/Epoch99.pth`` of Li-Chongyi/Zero-DCE @ e0f4adc,
    licence CC BY-NC 4.0 (non-commercial). A plain state dict (legacy torch pickle); loads strictly.

    Upstream test-time procedure (``lowlight_test.py``): ``np.asarray(PIL image) / 255`` as float32, the full
    image through ``enhance_net_nopool``, keep the second output (after all 8 curves), save with
    ``torchvision.utils.save_image`` (``x * 255 + 0.5`` clamped then truncated, i.e. rounded). Ours is the
    same computation; the output is clamped to [0, 1] (it is already in range up to float error). No resizing,
    any size. LOL-v1 eval15: 14.861 dB / SSIM 0.5588, identical to the upstream script's PNGs.
    """

    summary = (
        "Zero-DCE: 8 quadratic light-enhancement curves estimated per pixel (zero-reference, 79k params)"
    )
    paper = ZERO_DCE_WEIGHTS.paper
    licence = ZERO_DCE_WEIGHTS.licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="official lowlight_test.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_zero_dce.py)",
                scores={"psnr": 14.8607, "ssim": 0.5588},
                note="the Zero-DCE paper reports no LOL-v1 figure: LOL-v1 numbers quoted for it elsewhere are third-party (secondary) re-runs, so the authors' code is the reference",
            ),
        ]
    }

    def __init__(self) -> None:
        super().__init__()
        self.net = ZeroDCENet()
        self.net.load_state_dict(self.load_weights(ZERO_DCE_WEIGHTS.name), strict=True)
        self.net.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).clamp(0.0, 1.0)


@register_enhancer("zero-dce++")
class ZeroDCEPlusPlus(Enhancer):
    """Zero-DCE++ (Li et al., TPAMI 2021): one shared curve map from a 12x-downscaled input, 10,561 params.

    Paper: Learning to Enhance Low-Light Image via Zero-Reference Deep Curve Estimation, IEEE TPAMI 2021.

    Weights: ``llie/zero-dce++`` = ``Zero-DCE++/snapshots_Zero_DCE++/Epoch99.pth`` of
    Li-Chongyi/Zero-DCE_extension @ 09f202b, licence CC BY-NC 4.0 (non-commercial). A plain state dict; loads
    strictly.

    Upstream test-time procedure (``lowlight_test.py`` / ``lowlight_test_cpu.py``): ``scale_factor = 12``; the
    image ``/ 255`` is **cropped** to ``[0:H//12*12, 0:W//12*12]`` (a 600x400 LOL image becomes 600x396), the
    curve map is estimated at 1/12 scale and upsampled, and the cropped result is saved with
    ``torchvision.utils.save_image`` (rounded).

    Deviation: we never crop. ``pad_multiple = 12``: the engine reflect-pads H, W up to a multiple of 12 and
    crops the output back, so outputs keep the reference's size (``enhance`` pads the same way itself when
    called on other sizes). On LOL-v1 the 1/12-scale grid then covers 408 rows instead of 396, so the curve
    map differs slightly everywhere, not only in the 4 rows upstream drops. LOL-v1 eval15: ours 15.358 dB /
    0.5675 on the full 600x400 image; on the upstream's 600x396 region ours 15.356 dB / 0.5681 and the
    upstream script's own output 15.345 dB / 0.5681 (+0.011 dB from padding instead of cropping). Run on the
    upstream's crop, our network reproduces the upstream PNGs pixel for pixel
    (tests/test_baselines_zero_dce.py).
    """

    summary = "Zero-DCE++: one curve map from a 12x-downscaled input, depthwise-separable CNN (10.6k params)"
    paper = ZERO_DCE_PP_WEIGHTS.paper
    licence = ZERO_DCE_PP_WEIGHTS.licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="official lowlight_test_cpu.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_zero_dce.py)",
                scores={"psnr": 15.3451, "ssim": 0.5681},
                note="upstream crops 600x400 to 600x396 and scores that region; the suite pads and scores the full image",
            ),
        ]
    }
    pad_multiple = 12

    def __init__(self) -> None:
        super().__init__()
        self.net = ZeroDCEPlusPlusNet(scale_factor=12)
        self.net.load_state_dict(self.load_weights(ZERO_DCE_PP_WEIGHTS.name), strict=True)
        self.net.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        # the engine already pads to pad_multiple (a no-op here); this keeps a direct call correct on any size
        h, w = x.shape[-2:]
        return self.net(pad_to_multiple(x, self.pad_multiple))[..., :h, :w].clamp(0.0, 1.0)
