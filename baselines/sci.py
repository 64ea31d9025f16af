"""SCI: Self-Calibrated Illumination learning (Ma et al., CVPR 2022).

Retinex-style: a three-convolution network estimates the illumination ``i`` of the input ``x`` and the result
is the reflectance ``clamp(x / i, 0, 1)``. Training unrolls three stages with a self-calibration module that
feeds a corrected input to the next stage; at test time only one illumination stage runs and the calibration
module is dropped. Images: float32 RGB ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from cals_bench.enhancer import VariantEnhancer, register_enhancer
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class SCIIlluminationNet(nn.Module):
    """SCI's illumination estimator (upstream ``EnhanceNetwork(layers=1, channels=3)``, 258 parameters).

    ``i = clamp(sigmoid(out_conv(f + block(f))) + x, 1e-4, 1)`` with ``f = relu(in_conv(x))`` and ``block`` a
    conv-BN-ReLU. Upstream registers that one block twice (as ``conv`` and as ``blocks.0``), so the state dict
    holds both key sets for the same tensors; we keep the same sharing so the file loads strictly.
    """

    def __init__(self, channels: int = 3, layers: int = 1) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(_conv3x3(3, channels), nn.ReLU())
        self.conv = nn.Sequential(_conv3x3(channels, channels), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.ModuleList([self.conv] * layers)
        self.out_conv = nn.Sequential(_conv3x3(channels, 3), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.in_conv(x)
        for block in self.blocks:
            f = f + block(f)
        return torch.clamp(self.out_conv(f) + x, 0.0001, 1.0)


class SCICalibrationNet(nn.Module):
    """SCI's training-only self-calibration module (upstream ``CalibrateNetwork(layers=3, channels=16)``).

    Built only so that the released files, which hold it, load strictly; it never runs at test time. As
    upstream, one two-conv block is registered as ``convs`` and again as ``blocks.0``-``blocks.2`` (shared
    tensors).
    """

    def __init__(self, channels: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(_conv3x3(3, channels), nn.BatchNorm2d(channels), nn.ReLU())
        self.convs = nn.Sequential(
            _conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            _conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleList([self.convs] * layers)
        self.out_conv = nn.Sequential(_conv3x3(channels, 3), nn.Sigmoid())

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        f = self.in_conv(r)
        for block in self.blocks:
            f = f + block(f)
        return r - self.out_conv(f)


class SCITrainingNet(nn.Module):
    """The layout SCI's weight files are saved from (upstream ``Network``): ``enhance`` + ``calibrate``."""

    def __init__(self) -> None:
        super().__init__()
        self.enhance = SCIIlluminationNet()
        self.calibrate = SCICalibrationNet()


# Weight files (``cals-bench weights list``), from the authors' repository at a pinned commit. One per
# variant.
_UPSTREAM = {
    "repo": "vis-opt-group/SCI",
    "commit": "9d28a3f1237df248bb765e7fee16f7c4ac7dbeee",
    "licence": "MIT",
    "paper": "Ma et al., Toward Fast, Flexible, and Robust Low-Light Image Enhancement, CVPR 2022",
    "used_by": "sci",
}
WEIGHTS = {
    "easy": register(
        WeightSpec.on_github(
            "llie/sci-easy",
            "llie/sci/easy.pt",
            "b17326a26a93bf187ecbab217f9d3c57467a8b56020d4d9ff600ba257bbffb36",
            43967,
            path="weights/easy.pt",
            **_UPSTREAM,
        )
    ),
    "medium": register(
        WeightSpec.on_github(
            "llie/sci-medium",
            "llie/sci/medium.pt",
            "4ff1e7e66e8f18114f790e5085ca4c936f0858e329e7ad1cb65b8aa09a9c6916",
            43967,
            path="weights/medium.pt",
            **_UPSTREAM,
        )
    ),
    "difficult": register(
        WeightSpec.on_github(
            "llie/sci-difficult",
            "llie/sci/difficult.pt",
            "657fa1f280cae1035df0d5cbe628e91f2d0f28660df608a3fa3f7e9a71da5a13",
            43967,
            path="weights/difficult.pt",
            **_UPSTREAM,
        )
    ),
}


@register_enhancer("sci")
class SCI(VariantEnhancer):
    """SCI (Ma et al., CVPR 2022): one learned illumination stage, output = input / illumination, 258 params.

    Paper: Toward Fast, Flexible, and Robust Low-Light Image Enhancement, CVPR 2022. Unsupervised training.

    Weights (vis-opt-group/SCI @ 9d28a3f, ``weights/{easy,medium,difficult}.pt``, licence MIT), one per
    variant: ``easy``, ``medium`` (the default, as in the upstream's Cog demo) and ``difficult``; the upstream
    README names them without describing their training data. Each file is the full training state dict
    (``enhance.*`` and ``calibrate.*``). Upstream's ``Finetunemodel`` keeps the ``enhance.*`` keys silently;
    we instead load the whole file strictly into :class:`SCITrainingNet` (so a wrong or truncated file fails)
    and keep its ``enhance`` part, in eval mode (BatchNorm uses its running statistics, as upstream's
    ``model.eval()``).

    Upstream test-time procedure (``test.py``; the same in the repo's Cog ``predict.py``): ``ToTensor`` input,
    ``i, r = Finetunemodel(x)`` with ``r = clamp(x / i, 0, 1)``, save ``r`` as
    ``np.clip(r * 255, 0, 255).astype('uint8')`` (truncation). Ours returns the same ``r``; the suite rounds
    instead of truncating, which is the only difference. LOL-v1 eval15 (ours rounded / upstream PNGs):
    medium 14.854 / 14.784 dB (SSIM 0.5239 / 0.5220), easy 9.628 / 9.580 dB, difficult 13.869 / 13.806 dB; our
    output truncated like upstream reproduces the upstream PNGs pixel for pixel.
    """

    summary = (
        "SCI: self-calibrated illumination; one 3-conv illumination stage, output = input / illumination"
    )
    paper = WEIGHTS["easy"].paper
    licence = WEIGHTS["easy"].licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_sci.py)",
                scores={"psnr": 14.784, "ssim": 0.522},
                args={"variant": "medium"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_sci.py)",
                scores={"psnr": 9.5802, "ssim": 0.3692},
                args={"variant": "easy"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_sci.py)",
                scores={"psnr": 13.8063, "ssim": 0.5261},
                args={"variant": "difficult"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
        ]
    }
    variants = ("easy", "medium", "difficult")
    default_variant = "medium"

    def __init__(self, *, variant: str | None = None) -> None:
        super().__init__(variant=variant)
        full = SCITrainingNet()
        full.load_state_dict(self.load_weights(WEIGHTS[self.variant].name), strict=True)
        self.net = full.enhance.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        illumination = self.net(x)
        return torch.clamp(x / illumination, 0.0, 1.0)
