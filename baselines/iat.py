"""IAT, the Illumination-Adaptive Transformer (Cui et al., BMVC 2022), with its official weights.

The network is rebuilt here so that the upstream state dicts (``IAT_enhance/best_Epoch_*.pth``) load
strictly; parameter names follow the upstream modules (``local_net.*``, ``global_net.*``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.enhancer import VariantEnhancer, register_enhancer
from cals_bench.published import Published
from cals_bench.weights import WeightSpec, register


class _AffineChannelNorm(nn.Module):
    """IAT's "Aff_channel" normalisation: a learned colour matrix over channels, then a per-channel affine.

    Works on ``(B, C, H, W)``: ``y[:, i] = alpha[i] * sum_j color[i, j] * x[:, j] + beta[i]``. The
    parameters keep the upstream shapes (alpha, beta ``(1, 1, C)``; color ``(C, C)``) so the weights load.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))
        self.color = nn.Parameter(torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bjhw,ij->bihw", x, self.color)
        return y * self.alpha.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class _ConvMlp(nn.Module):
    """Two 1x1 convolutions with a GELU between them (a per-pixel MLP)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _ConvBlock(nn.Module):
    """IAT's local-branch block ("CBlock_ln"): depthwise positional conv, a conv "attention" and an MLP,
    each residual, the last two behind an Aff_channel norm and scaled by learned ``gamma_1``/``gamma_2``.
    (Drop-path is a training-time device and is the identity at test time.)"""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = _AffineChannelNorm(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = _AffineChannelNorm(dim)
        self.mlp = _ConvMlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-4))
        self.gamma_2 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.gamma_1 * self.conv2(self.attn(self.conv1(self.norm1(x))))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class _LocalBranch(nn.Module):
    """Full-resolution branch: predicts a per-pixel multiplier (ReLU) and offset (tanh), 3 channels each."""

    def __init__(self, dim: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, dim, 3, padding=1)
        self.mul_blocks = nn.Sequential(*[_ConvBlock(dim) for _ in range(blocks)])
        self.add_blocks = nn.Sequential(*[_ConvBlock(dim) for _ in range(blocks)])
        self.mul_end = nn.Sequential(nn.Conv2d(dim, 3, 3, padding=1), nn.ReLU())
        self.add_end = nn.Sequential(nn.Conv2d(dim, 3, 3, padding=1), nn.Tanh())

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = F.leaky_relu(self.conv1(img), 0.2)
        mul = self.mul_end(self.mul_blocks(feat) + feat)
        add = self.add_end(self.add_blocks(feat) + feat)
        return mul, add


class _ConvEmbedding(nn.Module):
    """Two stride-2 conv + batch-norm stages (keys ``proj.0/1/3/4``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_ch, out_ch // 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(out_ch // 2),
            nn.GELU(),
            nn.Conv2d(out_ch // 2, out_ch, 3, stride=2, padding=1),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _QueryAttention(nn.Module):
    """Cross-attention from 10 learned queries to all image tokens (keys and values without bias)."""

    def __init__(self, dim: int, heads: int, queries: int = 10) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Parameter(torch.ones(1, queries, dim))
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        k = self.k(x).view(b, n, self.heads, d).transpose(1, 2)
        v = self.v(x).view(b, n, self.heads, d).transpose(1, 2)
        q = self.q.expand(b, -1, -1).reshape(b, -1, self.heads, d).transpose(1, 2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, -1, c)
        return self.proj(out)


class _TokenMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _QueryBlock(nn.Module):
    """Positional depthwise conv, then query attention (no residual: 10 queries out), then a residual MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _QueryAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _TokenMlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        tokens = x.flatten(2).transpose(1, 2)
        q = self.attn(self.norm1(tokens))
        return q + self.mlp(self.norm2(q))


class _GlobalBranch(nn.Module):
    """Predicts one gamma and one 3x3 colour matrix per image from a 4x-downsampled feature map."""

    def __init__(self, dim: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.gamma_base = nn.Parameter(torch.ones(1))
        self.color_base = nn.Parameter(torch.eye(3))
        self.conv_large = _ConvEmbedding(3, dim)
        self.generator = _QueryBlock(dim, heads)
        self.gamma_linear = nn.Linear(dim, 1)
        self.color_linear = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.generator(self.conv_large(x))  # (B, 10, dim)
        gamma = self.gamma_linear(q[:, 0]) + self.gamma_base  # (B, 1)
        color = self.color_linear(q[:, 1:]).squeeze(-1).view(-1, 3, 3) + self.color_base  # (B, 3, 3)
        return gamma, color


class IATNet(nn.Module):
    """IAT: ``out = clamp(colour_matrix @ (x * mul + add), 1e-8, 1) ** gamma`` per image.

    Input ``(B, 3, H, W)`` float, any H and W (the global branch's two stride-2 convolutions take odd sizes).
    Output in ``[1e-8, 1]`` (the clamp is part of the upstream network).
    """

    def __init__(self) -> None:
        super().__init__()
        self.local_net = _LocalBranch()
        self.global_net = _GlobalBranch()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        mul, add = self.local_net(img)
        out = img * mul + add
        gamma, color = self.global_net(img)
        out = torch.einsum("bjhw,bij->bihw", out, color).clamp(1e-8, 1.0)
        return out ** gamma.view(-1, 1, 1, 1)


# Weight files (``cals-bench weights list``), from the authors' repository at a pinned commit. One per
# variant.
_UPSTREAM = {
    "repo": "cuiziteng/Illumination-Adaptive-Transformer",
    "commit": "c76472265247f47cea57649af28b15018bb64cb1",
    "licence": "Apache-2.0",
    "paper": "Cui et al., You Only Need 90K Parameters to Adapt Light: a Light Weight Transformer for Image Enhancement and Exposure Correction, BMVC 2022",
    "used_by": "iat",
}
WEIGHTS = {
    "lol_v1": register(
        WeightSpec.on_github(
            "llie/iat-lol_v1",
            "llie/iat/best_Epoch_lol_v1.pth",
            "6fb32236152283d3f3633ea1b79601c7e819efbf9d87d6b4767e1db0f1f3435b",
            427160,
            path="IAT_enhance/best_Epoch_lol_v1.pth",
            **_UPSTREAM,
        )
    ),
    "lol": register(
        WeightSpec.on_github(
            "llie/iat-lol",
            "llie/iat/best_Epoch_lol.pth",
            "9564b7e10882e688ac817ae6fd164544d05b9f74232de56c33ed7f9dabf7bdc4",
            427160,
            path="IAT_enhance/best_Epoch_lol.pth",
            **_UPSTREAM,
        )
    ),
    "exposure": register(
        WeightSpec.on_github(
            "llie/iat-exposure",
            "llie/iat/best_Epoch_exposure.pth",
            "15a9494582f028bef996d4af7145860eaa5d67799d2b0625ed93ff8c546ea3ee",
            427160,
            path="IAT_enhance/best_Epoch_exposure.pth",
            **_UPSTREAM,
        )
    ),
}


@register_enhancer("iat")
class IAT(VariantEnhancer):
    """IAT (Illumination-Adaptive Transformer), Cui et al., "You Only Need 90K Parameters to Adapt Light:
    a Light Weight Transformer for Image Enhancement and Exposure Correction", BMVC 2022.

    A local branch predicts per-pixel multiply and add maps; a global branch predicts one gamma and one
    3x3 colour matrix per image from learned queries. 91,154 parameters (weights identical in shape for all
    three variants).

    Weights: cuiziteng/Illumination-Adaptive-Transformer @ c76472265247f47cea57649af28b15018bb64cb1 :
    IAT_enhance/best_Epoch_{lol_v1,lol,exposure}.pth, Apache-2.0; plain state dicts, loaded strictly.

    Variants and the upstream test-time procedure each reproduces:
    - ``lol_v1`` (default; trained on LOL-v1): ``evaluation_lol_v1.py`` reads the eval15 PNGs with
      ``TF.to_tensor`` (RGB in [0, 1], no normalisation: that script's ``--pre_norm`` flag is parsed but
      unused), runs the whole 600x400 image (no crop, pad or resize) and saves with
      ``torchvision.utils.save_image`` (clamp, x255, round). Ours: the same input, output clamped to [0, 1].
    - ``lol`` (trained on LOL-v2-real): ``evaluation_lol_v2.py`` uses ``data_loaders/lol.py`` with
      ``normalize=True`` (``pre_norm`` default), i.e. ``Normalize(0.5, 0.5)``: the network sees
      ``2x - 1`` in [-1, 1], as in training (``train_lol.py --normalize`` defaults to on). Ours does the
      same mapping before the network.
    - ``exposure`` (trained on the Afifi et al. exposure set): ``evaluation_exposure.py`` feeds [0, 1]
      input without normalisation. Its loader also transposes portrait images and resizes every test image
      to 1200x900 (a property of that dataset's protocol, not of the model); ours never resizes, so a
      protocol that wants that resize must ask for it.
    The network needs no particular H, W (``pad_multiple = 1``): odd sizes run as they are.

    LOL-v1 eval15 with the suite's conventions: ``lol_v1`` 23.381 dB / SSIM 0.8081 (README: 23.38 / 0.809,
    its SSIM from IQA_pytorch); the official evaluation script rebuilt on CPU writes PNGs that score the
    same (57 of 10.8M values one level apart). ``lol`` gives 18.427 dB / 0.7660, as the official
    ``evaluation_lol_v2.py`` procedure does on these images.
    """

    summary = "IAT (BMVC 2022): local mul/add maps + global gamma and colour matrix, 91k params"
    paper = WEIGHTS["lol_v1"].paper
    licence = WEIGHTS["lol_v1"].licence
    published: ClassVar[dict[str, Any]] = {
        "lol-v1": [
            Published(
                kind="readme",
                source="IAT README (cuiziteng/Illumination-Adaptive-Transformer), LOL-v1 table",
                scores={"psnr": 23.38, "ssim": 0.809},
                args={"variant": "lol_v1"},
                note="the README's SSIM is IQA_pytorch's, not the suite's SSIM",
            ),
            Published(
                kind="upstream-code",
                source="official evaluation_lol_v1.py re-run on CPU, its PNGs scored by the suite (tests/test_baselines_iat.py)",
                scores={"psnr": 23.381, "ssim": 0.8081},
                args={"variant": "lol_v1"},
            ),
            Published(
                kind="upstream-code",
                source="official evaluation_lol_v2.py procedure re-run on CPU, its PNGs scored by the suite (tests/test_baselines_iat.py)",
                scores={"psnr": 18.427, "ssim": 0.766},
                args={"variant": "lol"},
            ),
        ]
    }
    variants = ("lol_v1", "lol", "exposure")
    default_variant = "lol_v1"
    pad_multiple = 1

    # Variants whose upstream evaluation maps the input to [-1, 1] with Normalize((0.5,)*3, (0.5,)*3).
    _NORMALISED_INPUT = frozenset({"lol"})

    def __init__(self, *, variant: str | None = None) -> None:
        super().__init__(variant=variant)
        self.net = IATNet()
        state = self.load_weights(WEIGHTS[self.variant].name)
        self.net.load_state_dict(state, strict=True)
        self.net.eval()
        self.normalise_input = self.variant in self._NORMALISED_INPUT

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """float32 RGB ``(B, 3, H, W)`` in [0, 1] -> same shape, clamped to [0, 1]."""
        inp = x * 2.0 - 1.0 if self.normalise_input else x
        out = self.net(inp)
        return out.clamp(0.0, 1.0)
