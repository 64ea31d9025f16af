"""EnlightenGAN's networks (Jiang et al., "EnlightenGAN: Deep Light Enhancement without Paired Supervision",
IEEE TIP 2021), written from the paper and the authors' code (VITA-Group/EnlightenGAN, ``models/networks.py``:
``Unet_resize_conv`` with ``--self_attention --use_norm 1 --skip 1 --times_residual``, ``NoNormDiscriminator``).

Generator (:class:`AttentionUNet`): a 5-level U-Net (two 3x3 convolutions per level, LeakyReLU(0.2) then
BatchNorm, max-pool down, bilinear x2 up then a 3x3 convolution), guided by the self-regularised attention
map ``A = 1 - Y`` (``Y`` the input's luminance, 0.299 R + 0.587 G + 0.114 B in [0, 1]): ``A`` is a fifth input
channel, the skip features of every level are multiplied by ``A`` max-pooled to that level, and the output is
``x + A * latent`` in the authors' [-1, 1] image range. Widths ``w, 2w, 4w, 8w, 16w`` (the authors': w = 32);
state-dict keys are the authors' (``conv1_1``, ``bn1_1``, ... ``conv10``), so their generator loads at w = 32.

Conventions kept from the authors' code: images in [-1, 1] inside the network; H and W reflect-padded to a
multiple of 16, split evenly between the sides (``pad_tensor``), and cropped back; upsampling is bilinear
with ``align_corners=True`` (the PyTorch 0.3 ``F.upsample`` behaviour their weights were trained with).
Not kept: their test-time halving of images wider than 2200 pixels.

Discriminator (:class:`PatchDiscriminator`): ``NoNormDiscriminator``: 4x4 convolutions with stride 2 and
LeakyReLU(0.2), no normalisation, ``n_layers`` of them (widths ``ndf * min(2^k, 8)``), a stride-1 4x4
convolution and a 4x4 convolution to one channel: a map of patch scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """``1 - Y`` for images ``(B, 3, H, W)`` in [0, 1] -> ``(B, 1, H, W)`` (bright pixels near 0)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 1.0 - (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)


def _pad16(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom
    if ph == 0 and pw == 0:
        return x, pads
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, pads, mode=mode), pads


class AttentionUNet(nn.Module):
    """The generator: images ``(B, 3, H, W)`` in [0, 1] of any H, W -> enhanced, same shape (not clamped)."""

    def __init__(self, width: int = 32, batch_norm: bool = True) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (width * m for m in (1, 2, 4, 8, 16))
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)  # noqa: E731
        bn = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())  # --use_norm 1 / 0
        self.conv1_1, self.bn1_1 = conv(4, c1), bn(c1)
        self.conv1_2, self.bn1_2 = conv(c1, c1), bn(c1)
        self.conv2_1, self.bn2_1 = conv(c1, c2), bn(c2)
        self.conv2_2, self.bn2_2 = conv(c2, c2), bn(c2)
        self.conv3_1, self.bn3_1 = conv(c2, c3), bn(c3)
        self.conv3_2, self.bn3_2 = conv(c3, c3), bn(c3)
        self.conv4_1, self.bn4_1 = conv(c3, c4), bn(c4)
        self.conv4_2, self.bn4_2 = conv(c4, c4), bn(c4)
        self.conv5_1, self.bn5_1 = conv(c4, c5), bn(c5)
        self.conv5_2, self.bn5_2 = conv(c5, c5), bn(c5)
        self.deconv5 = conv(c5, c4)
        self.conv6_1, self.bn6_1 = conv(2 * c4, c4), bn(c4)
        self.conv6_2, self.bn6_2 = conv(c4, c4), bn(c4)
        self.deconv6 = conv(c4, c3)
        self.conv7_1, self.bn7_1 = conv(2 * c3, c3), bn(c3)
        self.conv7_2, self.bn7_2 = conv(c3, c3), bn(c3)
        self.deconv7 = conv(c3, c2)
        self.conv8_1, self.bn8_1 = conv(2 * c2, c2), bn(c2)
        self.conv8_2, self.bn8_2 = conv(c2, c2), bn(c2)
        self.deconv8 = conv(c2, c1)
        self.conv9_1, self.bn9_1 = conv(2 * c1, c1), bn(c1)
        self.conv9_2 = conv(c1, c1)
        self.conv10 = nn.Conv2d(c1, 3, 1)

    def _block(self, x: torch.Tensor, k: str) -> torch.Tensor:
        """``bn(lrelu(conv(x)))``, the authors' order (normalisation after the activation)."""
        return getattr(self, f"bn{k}")(F.leaky_relu(getattr(self, f"conv{k}")(x), 0.2))

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        gray = attention_map(x)
        xs, pads = _pad16(x * 2.0 - 1.0)  # the authors' [-1, 1] range
        gray, _ = _pad16(gray)
        g2 = F.max_pool2d(gray, 2)
        g3 = F.max_pool2d(g2, 2)
        g4 = F.max_pool2d(g3, 2)
        g5 = F.max_pool2d(g4, 2)
        conv1 = self._block(self._block(torch.cat([xs, gray], 1), "1_1"), "1_2")
        conv2 = self._block(self._block(F.max_pool2d(conv1, 2), "2_1"), "2_2")
        conv3 = self._block(self._block(F.max_pool2d(conv2, 2), "3_1"), "3_2")
        conv4 = self._block(self._block(F.max_pool2d(conv3, 2), "4_1"), "4_2")
        t = self._block(F.max_pool2d(conv4, 2), "5_1") * g5
        conv5 = self._block(t, "5_2")
        t = torch.cat([self.deconv5(self._up(conv5)), conv4 * g4], 1)
        conv6 = self._block(self._block(t, "6_1"), "6_2")
        t = torch.cat([self.deconv6(self._up(conv6)), conv3 * g3], 1)
        conv7 = self._block(self._block(t, "7_1"), "7_2")
        t = torch.cat([self.deconv7(self._up(conv7)), conv2 * g2], 1)
        conv8 = self._block(self._block(t, "8_1"), "8_2")
        t = torch.cat([self.deconv8(self._up(conv8)), conv1 * gray], 1)
        conv9 = F.leaky_relu(self.conv9_2(self._block(t, "9_1")), 0.2)
        out = self.conv10(conv9) * gray + xs
        left, _right, top, _bottom = pads
        out = out[:, :, top : top + h, left : left + w]
        return (out + 1.0) * 0.5


class PatchDiscriminator(nn.Module):
    """Least-squares patch critic (no normalisation): ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 1, h, w)`` scores."""

    def __init__(self, ndf: int = 64, n_layers: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=2), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=2)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
