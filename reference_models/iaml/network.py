"""IAML networks: a U-Net auto-encoder with CBAM attention at every scale (the student) and the teacher.

Images are float RGB ``(B, 3, H, W)`` in [0, 1]. The student maps a low-light image to a clean one; its
decoder also returns the feature map of every decoder level, coarse to fine, which the mirror losses
compare with the teacher's.

The teacher (Mohsen et al., "IAML: Illumination-Aware Mirror Loss ...", 2026) shares the student's
encoder, run on the *clean* image with gradients blocked, and has its own decoder: a copy of the student
decoder's initial weights that receives no gradients and follows the student decoder by an exponential
moving average after each optimiser step (the training engine applies it; see :meth:`IAMLNetwork.ema_pairs`).

No normalisation layers: every feature depends on its own image only, so a batch split over processes
gives the same gradients as the whole batch in one process, and validation is per image.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.padding import pad_to_multiple


class ChannelAttention(nn.Module):
    """CBAM channel attention (Woo et al., ECCV 2018): a shared MLP over average- and max-pooled features.

    The max pooling returns indices (``adaptive_max_pool2d``; ``max(dim)`` in :class:`SpatialAttention`)
    rather than using ``amax``: compiled with bf16 autocast, amax's tie-mask backward gave NaN gradients
    on the CPU (torch 2.13 inductor). The forward is the same.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a k x k convolution over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU(0.2), then CBAM: one U-Net stage."""

    def __init__(self, cin: int, cout: int, reduction: int, kernel_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.attention = CBAM(cout, reduction, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.body(x))


def _channels(width: int, depth: int) -> list[int]:
    return [width * 2**i for i in range(depth)]


class UNetEncoder(nn.Module):
    """``depth`` stages at widths ``width * 2**i``; 2x2 max-pooling between stages.

    Returns every stage's output, fine to coarse (the last one is the bottleneck).
    """

    def __init__(self, width: int, depth: int, reduction: int, kernel_size: int) -> None:
        super().__init__()
        ch = _channels(width, depth)
        self.stages = nn.ModuleList(
            [ConvBlock(3 if i == 0 else ch[i - 1], ch[i], reduction, kernel_size) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """Transposed-convolution upsampling, skip concatenation and a CBAM stage per level; sigmoid RGB head.

    ``forward(feats)`` returns ``(image, levels)``: the image in [0, 1] and the ``depth - 1`` decoder
    feature maps, coarse to fine (these are the levels the mirror losses compare).
    """

    def __init__(self, width: int, depth: int, reduction: int, kernel_size: int) -> None:
        super().__init__()
        ch = _channels(width, depth)
        levels = list(range(depth - 2, -1, -1))
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in levels])
        self.stages = nn.ModuleList([ConvBlock(2 * ch[i], ch[i], reduction, kernel_size) for i in levels])
        self.head = nn.Conv2d(ch[0], 3, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = feats[-1]
        levels = []
        for up, stage, skip in zip(self.up, self.stages, reversed(feats[:-1])):
            x = stage(torch.cat([up(x), skip], dim=1))
            levels.append(x)
        return torch.sigmoid(self.head(x)), levels


class UNetCBAM(nn.Module):
    """The IAML student: low-light RGB in, clean RGB out, both ``(B, 3, H, W)`` in [0, 1].

    ``forward`` accepts any H and W: it reflect-pads to a multiple of ``2 ** (depth - 1)`` and crops back.
    """

    def __init__(self, width: int = 32, depth: int = 4, reduction: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("depth must be >= 2 (one downsampling at least)")
        self.depth = depth
        self.encoder = UNetEncoder(width, depth, reduction, kernel_size)
        self.decoder = UNetDecoder(width, depth, reduction, kernel_size)

    @property
    def pad_multiple(self) -> int:
        return 2 ** (self.depth - 1)

    def forward_levels(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image and decoder levels for an input whose H and W are multiples of :attr:`pad_multiple`."""
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out, _ = self.forward_levels(pad_to_multiple(x, self.pad_multiple))
        return out[..., :h, :w]


class IAMLNetwork(nn.Module):
    """Student U-Net plus the teacher decoder (absent when no mirror loss is used).

    The teacher decoder is built as a deep copy of the student decoder right after initialisation, so it
    starts from the student decoder's initial weights; its parameters never require gradients.
    """

    def __init__(
        self,
        *,
        width: int = 32,
        depth: int = 4,
        reduction: int = 8,
        kernel_size: int = 7,
        teacher: bool = True,
    ) -> None:
        super().__init__()
        self.student = UNetCBAM(width, depth, reduction, kernel_size)
        self.teacher_decoder: UNetDecoder | None = None
        if teacher:
            self.teacher_decoder = copy.deepcopy(self.student.decoder)
            self.teacher_decoder.requires_grad_(False)

    def teacher_levels(self, clean: torch.Tensor) -> list[torch.Tensor]:
        """Teacher decoder levels for clean images: the student encoder with gradients blocked, then the
        EMA decoder. Computed under ``torch.no_grad``: nothing here enters the autograd graph."""
        if self.teacher_decoder is None:
            raise RuntimeError("this network was built without a teacher (mirror: none)")
        with torch.no_grad():
            _, levels = self.teacher_decoder(self.student.encoder(clean))
        return levels
