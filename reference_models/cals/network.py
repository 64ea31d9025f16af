"""The U-Net enhancer CALS trains (Ronneberger et al. 2015), the same network for CALS and its baseline.

``depth`` stages; stage ``k`` has ``width * 2**k`` channels and two 3x3 convolutions, each followed by
LeakyReLU(0.2) (no normalisation layer: the output is a per-image function of the input alone, so train
and eval modes agree). Down: 2x2 max pooling; up: 2x2 transposed convolution, concatenation with the
encoder's skip, two 3x3 convolutions. A 1x1 convolution to RGB and a sigmoid give the enhanced image in
[0, 1]. Any input size: reflect-padded to a multiple of ``2**(depth - 1)`` and cropped back.

``input_gain`` (optional): the head's output is added, in logit space, to the input scaled per image to
mean brightness 0.45 (``sigmoid(head + logit(clip(x * 0.45 / mean(x))))``, the head initialised to zero), so
the untrained network already returns the exposure-corrected input and training learns the rest (tone,
noise, colour). A global skip connection, not another architecture: the same U-Net in both CALS and its
baseline, and it lets a short CPU training start from a sensible image rather than from grey.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAIN_TARGET = 0.45


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class UNet(nn.Module):
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H, W)`` in [0, 1]."""

    def __init__(self, width: int = 32, depth: int = 4, input_gain: bool = False) -> None:
        super().__init__()
        self.input_gain = input_gain
        if width < 1 or depth < 2:
            raise ValueError("width must be >= 1 and depth >= 2")
        self.depth = depth
        widths = [width * 2**k for k in range(depth)]
        self.down = nn.ModuleList()
        c_in = 3
        for w in widths:
            self.down.append(_double_conv(c_in, w))
            c_in = w
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for w_hi, w_lo in zip(widths[::-1][:-1], widths[::-1][1:]):
            self.upsample.append(nn.ConvTranspose2d(w_hi, w_lo, 2, stride=2))
            self.up.append(_double_conv(2 * w_lo, w_lo))
        self.head = nn.Conv2d(widths[0], 3, 1)
        if input_gain:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        inp = x
        m = 2 ** (self.depth - 1)
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        skips = []
        for k, stage in enumerate(self.down):
            if k:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            skips.append(x)
        for up, stage, skip in zip(self.upsample, self.up, skips[::-1][1:]):
            x = stage(torch.cat([up(x), skip], dim=1))
        logits = self.head(x)[..., :h, :w]
        if self.input_gain:
            gain = GAIN_TARGET / inp.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
            logits = logits + torch.logit((inp * gain).clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(logits)
