"""PairLIE (Fu et al., CVPR 2023) with its official weights.

Three small fully convolutional nets (reflection padding, 64 channels) rebuilt so that the upstream
``weights/PairLIE.pth`` loads strictly: ``N_net`` removes noise, then ``L_net`` and ``R_net`` decompose the
cleaned image into illumination and reflectance.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.errors import CalsBenchError
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register


def _five_conv_stack(out_channels: int, width: int = 64) -> nn.Sequential:
    """Reflection-pad 3x3 conv x5 with ReLU between; Sequential indices 1, 4, 7, 10, 13 hold the convs."""
    layers: list[nn.Module] = []
    chans = [3, width, width, width, width, out_channels]
    for i in range(5):
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(chans[i], chans[i + 1], 3, 1, 0)]
        if i < 4:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Branch(nn.Module):
    """One PairLIE sub-network; the attribute name matches the upstream key (``L_net.L_net.1.weight``)."""

    def __init__(self, attr: str, out_channels: int) -> None:
        super().__init__()
        self.attr = attr
        setattr(self, attr, _five_conv_stack(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(getattr(self, self.attr)(x))


class PairLIENet(nn.Module):
    """``x = N(input)``, ``L = L_net(x)`` (1 channel), ``R = R_net(x)`` (3 channels), all in (0, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.L_net = _Branch("L_net", 1)
        self.R_net = _Branch("R_net", 3)
        self.N_net = _Branch("N_net", 3)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.N_net(img)
        return self.L_net(x), self.R_net(x), x


# Weight files (``cals-bench weights list``), from the authors' repository at a pinned commit.
WEIGHTS = register(
    WeightSpec.on_github(
        "llie/pairlie",
        "llie/pairlie/PairLIE.pth",
        "e223ec9e66504550e69f65b631ce520be9b5c4e8e0aba882768d06af355b0631",
        1377483,
        repo="zhenqifu/PairLIE",
        commit="3fd5c1586aa5f8f0736382de36d5bf46a4e208c2",
        path="weights/PairLIE.pth",
        licence="none stated upstream",
        paper="Fu et al., Learning a Simple Low-light Image Enhancer from Paired Low-light Instances, CVPR 2023",
        used_by="pairlie",
    )
)


@register_enhancer("pairlie")
class PairLIE(Enhancer):
    """PairLIE, Fu et al., "Learning a Simple Low-light Image Enhancer from Paired Low-light Instances",
    CVPR 2023.

    Trained without normal-light references on pairs of low-light shots of the same scene: a denoising net
    ``N`` then a Retinex decomposition into illumination ``L`` and reflectance ``R``. Enhancement brightens
    the illumination with a power: ``out = L ** e * R``. 341,767 parameters.

    Weights: zhenqifu/PairLIE @ 3fd5c1586aa5f8f0736382de36d5bf46a4e208c2 : weights/PairLIE.pth (a plain
    state dict, loaded strictly). No licence is stated upstream.

    Upstream test-time procedure (``eval.py``): ``ToTensor`` input (RGB in [0, 1]), the whole image (no
    crop, pad or resize), ``I = torch.pow(L, 0.2) * R`` with the comment "default=0.2, LOL=0.14", saved with
    ``ToPILImage`` (x255 then ``.byte()``, i.e. truncation). Ours uses ``l_exponent=0.14`` by default, the
    value the authors name for LOL; pass ``l_exponent=0.2`` for their default on other sets (SICE, MEF).
    ``L ** e * R`` lies in (0, 1), so the final clamp changes nothing; we round to 8 bit where upstream
    truncates (worth up to ~0.07 dB on LOL). The network is fully convolutional with reflection padding
    (``pad_multiple = 1``): odd sizes run as they are.

    LOL-v1 eval15 with the suite's conventions: 19.521 dB / SSIM 0.7357; the official ``eval.py`` (exponent
    0.14) rebuilt on CPU writes PNGs scoring 19.514 dB / 0.7359, every value equal to ours or one level
    lower (truncation).
    """

    summary = "PairLIE (CVPR 2023): denoise, Retinex-decompose, out = L**0.14 * R (LOL exponent)"
    paper = WEIGHTS.paper
    licence = WEIGHTS.licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="official eval.py (exponent 0.14) re-run on CPU, its PNGs scored by the suite (tests/test_baselines_pairlie.py)",
                scores={"psnr": 19.514, "ssim": 0.7359},
                args={"l_exponent": 0.14},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
        ]
    }
    pad_multiple = 1

    def __init__(self, *, l_exponent: float = 0.14) -> None:
        super().__init__()
        l_exponent = float(l_exponent)
        if not 0.0 < l_exponent <= 1.0:
            raise CalsBenchError(f"pairlie: l_exponent must be in (0, 1], got {l_exponent}")
        self.l_exponent = l_exponent
        self.args["l_exponent"] = l_exponent
        self.net = PairLIENet()
        self.net.load_state_dict(self.load_weights(WEIGHTS.name), strict=True)
        self.net.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """float32 RGB ``(B, 3, H, W)`` in [0, 1] -> ``L ** l_exponent * R``, same shape, in [0, 1]."""
        illumination, reflectance, _ = self.net(x)
        return (illumination.pow(self.l_exponent) * reflectance).clamp(0.0, 1.0)
