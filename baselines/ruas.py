"""RUAS: Retinex-inspired Unrolling with cooperative prior Architecture Search (Liu et al., CVPR 2021).

Three unrolled illumination-estimation modules (IEM) refine an illumination map ``t`` and give ``u = x / t``;
a noise-removal network (NRM) then subtracts an estimated noise map. Both are built from the searched
"distillation" cell below, whose operations were fixed by the architecture search (the genotypes).
Images: float32 RGB ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.enhancer import VariantEnhancer, register_enhancer
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register

# The searched operation of each of the cell's seven slots (c1_d, c1_r, c2_d, c2_r, c3_d, c3_r, c4), as in the
# upstream genotypes ``IEM`` and ``NRM``.
IEM_OPS = ("skip", "res1x1", "resdil3x3", "conv3x3", "conv3x3", "skip", "conv3x3")
NRM_OPS = ("res1x1", "res1x1", "resdil3x3", "skip", "res1x1", "res1x1", "skip")
SLOTS = ("c1_d", "c1_r", "c2_d", "c2_r", "c3_d", "c3_r", "c4")


class _ConvOp(nn.Module):
    """A searched convolution (key ``op``); ``residual`` adds the input back (upstream ``ResBlock``)."""

    def __init__(self, channels: int, kernel: int, dilation: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.op = nn.Conv2d(
            channels, channels, kernel, padding=(kernel - 1) // 2 * dilation, dilation=dilation
        )
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        return y + x if self.residual else y


def _make_op(name: str, channels: int) -> nn.Module:
    if name == "skip":
        return nn.Identity()
    if name == "conv3x3":
        return _ConvOp(channels, 3)
    if name == "res1x1":
        return _ConvOp(channels, 1, residual=True)
    if name == "resdil3x3":
        return _ConvOp(channels, 3, dilation=2, residual=True)
    raise ValueError(f"unknown RUAS operation {name!r}")


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.05)


class SearchedCell(nn.Module):
    """RUAS's distillation cell: three distil/refine steps, a last op, a 1x1 fusion of four distilled maps.

    ``d_k = act(c{k}_d(r_{k-1}))``, ``r_k = act(c{k}_r(r_{k-1}) + r_{k-1})`` (k = 1..3, ``r_0`` = input; note
    a residual op adds its input a second time), ``r_4 = act(c4(r_3))``, output ``c5(cat(d_1, d_2, d_3,
    r_4))``; ``act`` is LeakyReLU(0.05).
    """

    def __init__(self, channels: int, ops: tuple[str, ...]) -> None:
        super().__init__()
        for slot, name in zip(SLOTS, ops, strict=True):
            setattr(self, slot, _make_op(name, channels))
        self.c5 = nn.Conv2d(4 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = _leaky
        d1 = act(self.c1_d(x))
        r1 = act(self.c1_r(x) + x)
        d2 = act(self.c2_d(r1))
        r2 = act(self.c2_r(r1) + r1)
        d3 = act(self.c3_d(r2))
        r3 = act(self.c3_r(r2) + r2)
        r4 = act(self.c4(r3))
        return self.c5(torch.cat([d1, d2, d3, r4], dim=1))


def local_max_2x2(x: torch.Tensor) -> torch.Tensor:
    """Max of each pixel and its right, lower and lower-right neighbours (zero past the bottom/right).

    >>> local_max_2x2(torch.tensor([[[[1.0, 5.0], [3.0, -2.0]]]])).tolist()
    [[[[5.0, 5.0], [3.0, 0.0]]]]
    """
    x = F.pad(x, (0, 1, 0, 1))
    x = torch.maximum(x[:, :, :-1, :], x[:, :, 1:, :])
    return torch.maximum(x[:, :, :, :-1], x[:, :, :, 1:])


class IlluminationModule(nn.Module):
    """One IEM: ``t = clamp(sigmoid(cell(t_hat)), 0.001, 1)``, ``u = clamp(y / t, 0, 1)``.

    ``t_hat`` is ``local_max_2x2(y)`` at the first stage and ``local_max_2x2(u) - 0.5 (u - y)`` after it.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.cell = SearchedCell(channels, IEM_OPS)

    def forward(self, y: torch.Tensor, u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        t_hat = local_max_2x2(y) if u is None else local_max_2x2(u) - 0.5 * (u - y)
        t = torch.clamp(torch.sigmoid(self.cell(t_hat)), 0.001, 1.0)
        return torch.clamp(y / t, 0.0, 1.0), t


class IlluminationNet(nn.Module):
    """Three unrolled IEMs (keys ``iems.{0,1,2}.cell.*``); returns the last ``u`` (in [0, 1])."""

    def __init__(self, stages: int = 3, channels: int = 3) -> None:
        super().__init__()
        self.iems = nn.ModuleList(IlluminationModule(channels) for _ in range(stages))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        u = None
        for iem in self.iems:
            u, _ = iem(y, u)
        return u


class DenoiseNet(nn.Module):
    """The NRM (keys ``stem``, ``nrms.{0,1,2}.*``, ``activate.0``): returns ``x - noise`` (not clamped)."""

    def __init__(self, cells: int = 3, channels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.nrms = nn.ModuleList(SearchedCell(channels, NRM_OPS) for _ in range(cells))
        self.activate = nn.Sequential(nn.Conv2d(channels, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x)
        for cell in self.nrms:
            f = cell(f)
        return x - self.activate(f)


class RUASNet(nn.Module):
    """Upstream ``Network`` layout: ``enhance_net`` (IEMs) + ``denoise_net`` (NRM), 3,438 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.enhance_net = IlluminationNet()
        self.denoise_net = DenoiseNet()


# Weight files (``cals-bench weights list``), from the authors' repository at a pinned commit. One per
# variant, and the denoiser all variants share.
_UPSTREAM = {
    "repo": "KarelZhang/RUAS",
    "commit": "f621bb19ceffbe27b2d9625bb806bc7cc60aea7b",
    "licence": "none stated upstream",
    "paper": "Liu et al., Retinex-inspired Unrolling with Cooperative Prior Architecture Search for Low-light Image Enhancement, CVPR 2021",
    "used_by": "ruas",
}
WEIGHTS = {
    "lol": register(
        WeightSpec.on_github(
            "llie/ruas-lol",
            "llie/ruas/lol.pt",
            "f45a881a9b836fff4a3172481f28c9eb4d91bc4df54ec064092f39ce40abcdcd",
            31374,
            path="ckpt/lol.pt",
            **_UPSTREAM,
        )
    ),
    "upe": register(
        WeightSpec.on_github(
            "llie/ruas-upe",
            "llie/ruas/upe.pt",
            "2252d3d909e346b547232c7015f034685aac75181171c6caf90ee12d87ca36c1",
            31374,
            path="ckpt/upe.pt",
            **_UPSTREAM,
        )
    ),
    "dark": register(
        WeightSpec.on_github(
            "llie/ruas-dark",
            "llie/ruas/dark.pt",
            "59083ec4dd4a2b7926c182a4add1519b9646a3aca6c39cfdb7d496fe885828e4",
            31374,
            path="ckpt/dark.pt",
            **_UPSTREAM,
        )
    ),
    "denoise": register(
        WeightSpec.on_github(
            "llie/ruas-denoise",
            "llie/ruas/denoise.pt",
            "15b64a9cb813ac1fef7b741a99ca7c6a7cc003525814ab3c624b82b0b5774dea",
            14706,
            path="model/denoise.pt",
            **_UPSTREAM,
        )
    ),
}


@register_enhancer("ruas")
class RUAS(VariantEnhancer):
    """RUAS (Liu et al., CVPR 2021): unrolled Retinex illumination estimation + a denoiser, 3,438 params.

    Paper: Retinex-inspired Unrolling with Cooperative Prior Architecture Search for Low-light Image
    Enhancement, CVPR 2021.

    Weights (KarelZhang/RUAS @ f621bb1; no licence stated upstream): one checkpoint per variant,
    ``ckpt/{lol,upe,dark}.pt`` (``llie/ruas-<variant>``; per the upstream README trained on LOL, MIT5K,
    DarkFace), each a full ``Network`` state dict (``enhance_net.*`` + ``denoise_net.*``), plus
    ``model/denoise.pt`` (``llie/ruas-denoise``, ``denoise_net`` only). The upstream ``Network()`` constructor
    loads ``denoise.pt`` into ``denoise_net`` and ``test.py`` then loads the variant checkpoint over the whole
    network, so every ``denoise_net`` tensor is replaced by the checkpoint's (they differ from ``denoise.pt``,
    by up to 4.6e-3 for lol): we follow the same order (both loads strict, both hashes recorded), hence
    ``denoise.pt`` has no effect on outputs.

    Upstream test-time procedure (``test.py``): ``ToTensor`` input, ``u_list, _ = model(x)``; for ``lol`` it
    saves ``u_list[-1]`` (the denoiser output, **not clamped**), for ``upe`` and ``dark`` ``u_list[-2]`` (the
    last IEM output, already in [0, 1]; the denoiser runs but is discarded), as ``np.clip(v * 255, 0,
    255).astype('uint8')`` (clip, truncate). Ours returns the same tensor clamped to [0, 1] (skipping the
    unused denoiser for upe/dark); the suite rounds instead of truncating. LOL-v1 eval15 (ours rounded /
    upstream PNGs): lol 16.446 / 16.405 dB (SSIM 0.5015 / 0.4996), upe 11.370 / 11.309 dB, dark 16.193 /
    16.146 dB; our output clipped and truncated like upstream matches the upstream PNGs in all but ~1e-5 of
    the values (off by one level: float summation order).
    """

    summary = "RUAS: unrolled Retinex illumination estimation with searched cells, plus a searched denoiser"
    paper = WEIGHTS["denoise"].paper
    licence = WEIGHTS["denoise"].licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_ruas.py)",
                scores={"psnr": 16.4047, "ssim": 0.4996},
                args={"variant": "lol"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (model card)",
                scores={"psnr": 11.309},
                args={"variant": "upe"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
            Published(
                kind="upstream-code",
                source="official test.py re-run on CPU, its PNGs scored by the suite (model card)",
                scores={"psnr": 16.146},
                args={"variant": "dark"},
                note="upstream truncates to 8 bit where the suite rounds",
            ),
        ]
    }
    variants = ("lol", "upe", "dark")
    default_variant = "lol"

    def __init__(self, *, variant: str | None = None) -> None:
        super().__init__(variant=variant)
        self.net = RUASNet()
        self.net.denoise_net.load_state_dict(self.load_weights(WEIGHTS["denoise"].name), strict=True)
        self.net.load_state_dict(self.load_weights(WEIGHTS[self.variant].name), strict=True)
        self.net.eval()
        self.denoise = self.variant == "lol"

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        u = self.net.enhance_net(x)
        if self.denoise:
            u = self.net.denoise_net(u)
        return u.clamp(0.0, 1.0)
