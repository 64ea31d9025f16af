"""RetinexNet (Wei et al., BMVC 2018), through the PyTorch port aasharma90/RetinexNet_PyTorch and its weights.

``DecomNet`` splits an image into reflectance R and illumination I; ``RelightNet`` (a small encoder-decoder
with nearest-neighbour upsampling) predicts the brightened illumination; the output is ``R * I_delta``.
Rebuilt here so that the port's ``ckpts/{Decom,Relight}/9200.tar`` state dicts load strictly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register


def _conv(cin: int, cout: int, k: int = 3, *, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    """Convolution with replicate padding, as every padded layer of the port uses."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, padding_mode="replicate")


class DecomNet(nn.Module):
    """Input ``[max_c(x), x]`` (4 ch) -> 9x9 conv (no activation) -> five 3x3 conv+ReLU -> 3x3 conv to 4 ch;
    sigmoid of channels 0-2 is R, of channel 3 is I."""

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        self.net1_conv0 = _conv(4, ch, 9, padding=4)
        layers: list[nn.Module] = []
        for _ in range(5):
            layers += [_conv(ch, ch), nn.ReLU()]
        self.net1_convs = nn.Sequential(*layers)
        self.net1_recon = _conv(ch, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inp = torch.cat([x.amax(dim=1, keepdim=True), x], dim=1)
        out = self.net1_recon(self.net1_convs(self.net1_conv0(inp)))
        return torch.sigmoid(out[:, :3]), torch.sigmoid(out[:, 3:4])


class RelightNet(nn.Module):
    """Input ``[R, I]`` -> conv, three stride-2 conv+ReLU, three (nearest-upsample, concat skip, conv+ReLU)
    stages, multi-scale fusion (1x1 conv with replicate padding 1) and a 3x3 valid conv to one channel.
    The output (the new illumination) has no activation."""

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        self.net2_conv0_1 = _conv(4, ch)
        self.net2_conv1_1 = _conv(ch, ch, stride=2)
        self.net2_conv1_2 = _conv(ch, ch, stride=2)
        self.net2_conv1_3 = _conv(ch, ch, stride=2)
        self.net2_deconv1_1 = _conv(2 * ch, ch)
        self.net2_deconv1_2 = _conv(2 * ch, ch)
        self.net2_deconv1_3 = _conv(2 * ch, ch)
        self.net2_fusion = _conv(3 * ch, ch, 1, padding=1)
        self.net2_output = nn.Conv2d(ch, 1, 3, padding=0)

    def forward(self, illumination: torch.Tensor, reflectance: torch.Tensor) -> torch.Tensor:
        out0 = self.net2_conv0_1(torch.cat([reflectance, illumination], dim=1))
        out1 = F.relu(self.net2_conv1_1(out0))
        out2 = F.relu(self.net2_conv1_2(out1))
        out3 = F.relu(self.net2_conv1_3(out2))
        # F.interpolate's default mode is "nearest", as in the port.
        dec1 = F.relu(self.net2_deconv1_1(torch.cat([F.interpolate(out3, size=out2.shape[2:]), out2], dim=1)))
        dec2 = F.relu(self.net2_deconv1_2(torch.cat([F.interpolate(dec1, size=out1.shape[2:]), out1], dim=1)))
        dec3 = F.relu(self.net2_deconv1_3(torch.cat([F.interpolate(dec2, size=out0.shape[2:]), out0], dim=1)))
        size = reflectance.shape[2:]
        feats = torch.cat([F.interpolate(dec1, size=size), F.interpolate(dec2, size=size), dec3], dim=1)
        return self.net2_output(self.net2_fusion(feats))


# Weight files (``cals-bench weights list``), from the authors' repository at a pinned commit.
_UPSTREAM = {
    "repo": "aasharma90/RetinexNet_PyTorch",
    "commit": "22675105f52432715a7935db16562f5117c9d369",
    "licence": "none stated upstream",
    "paper": "Wei et al., Deep Retinex Decomposition for Low-Light Enhancement, BMVC 2018 (PyTorch port)",
    "used_by": "retinexnet",
}
WEIGHTS = {
    "decom": register(
        WeightSpec.on_github(
            "llie/retinexnet-decom",
            "llie/retinexnet/Decom_9200.tar",
            "40c090e3bb884e697f6b396fe7fddade67172b30b428daa316c68a0b9247d4b5",
            833535,
            path="ckpts/Decom/9200.tar",
            **_UPSTREAM,
        )
    ),
    "relight": register(
        WeightSpec.on_github(
            "llie/retinexnet-relight",
            "llie/retinexnet/Relight_9200.tar",
            "513ae3a0bf503b9a6ecce1a46112135aefcfeb393cf61531e18cc3356701efde",
            1392856,
            path="ckpts/Relight/9200.tar",
            **_UPSTREAM,
        )
    ),
}


@register_enhancer("retinexnet")
class RetinexNet(Enhancer):
    """RetinexNet, Wei et al., "Deep Retinex Decomposition for Low-Light Enhancement", BMVC 2018, as ported
    to PyTorch (and retrained) by aasharma90/RetinexNet_PyTorch. Not the authors' TensorFlow weights.

    Weights: aasharma90/RetinexNet_PyTorch @ 22675105f52432715a7935db16562f5117c9d369 :
    ckpts/Decom/9200.tar and ckpts/Relight/9200.tar. Despite the extension these are not tar archives but
    ``torch.save``'d state dicts of ``DecomNet`` and ``RelightNet`` in the legacy (pre-1.6, non-zip) format;
    ``weights_only=True`` reads them and they load strictly. No licence is stated upstream. 555,205 parameters.

    Upstream test-time procedure (``predict.py`` -> ``RetinexNet.predict``): ``np.array(PIL image) / 255``
    (RGB in [0, 1]) at full size; ``R, I = DecomNet(x)``; ``I_delta = RelightNet(I, R)``; output
    ``R * I_delta`` (I_delta repeated over the three channels), unbounded. It saves ``[input | output]``
    side by side as a JPEG after ``np.clip(x*255, 0, 255).astype(uint8)`` (truncation). Ours returns the
    output alone, clamped to [0, 1], and the engine rounds to 8 bit and stores PNG: no JPEG loss. The
    network takes any H, W (the decoder upsamples to the exact encoder sizes; ``pad_multiple = 1``).

    LOL-v1 eval15 with the suite's conventions: 17.611 dB / SSIM 0.6477. The port's predict.py rebuilt on
    CPU: its uint8 output scores 17.610 / 0.6479 if kept lossless (every value equal to ours or one level
    lower: truncation), and 17.558 / 0.6506 from the JPEG it actually writes (PIL's default quality 75).
    """

    summary = "RetinexNet (BMVC 2018), PyTorch port weights: Retinex decomposition + relighting net"
    paper = WEIGHTS["decom"].paper
    licence = WEIGHTS["decom"].licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="the PyTorch port's predict.py re-run on CPU, its uint8 output kept lossless and scored by the suite (tests/test_baselines_retinexnet.py)",
                scores={"psnr": 17.61, "ssim": 0.6479},
                note="upstream truncates to 8 bit where the suite rounds; the port itself saves a JPEG (quality 75), which scores 17.558 dB / 0.6506",
            ),
        ]
    }
    pad_multiple = 1

    def __init__(self) -> None:
        super().__init__()
        self.decom = DecomNet()
        self.decom.load_state_dict(self.load_weights(WEIGHTS["decom"].name), strict=True)
        self.relight = RelightNet()
        self.relight.load_state_dict(self.load_weights(WEIGHTS["relight"].name), strict=True)
        self.decom.eval()
        self.relight.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """float32 RGB ``(B, 3, H, W)`` in [0, 1] -> ``R * I_delta``, same shape, clamped to [0, 1]."""
        reflectance, illumination = self.decom(x)
        new_illumination = self.relight(illumination, reflectance)
        return (reflectance * new_illumination).clamp(0.0, 1.0)
