"""The four zero-reference losses of Zero-DCE (Guo et al., CVPR 2020), as the official code computes them.

Images are float ``(B, 3, H, W)``; the curve maps are the eight 3-channel maps stacked, ``(B, 24, H, W)``.
Every function returns a scalar tensor. The formulas follow ``Zero-DCE_code/Myloss.py`` of
Li-Chongyi/Zero-DCE (the code that trained the official ``Epoch99.pth``), written afresh:

- spatial consistency: grey level (mean over channels), 4x4 average pooling, then for each pooled cell the
  difference to its left/right/up/down neighbour, **zero padding at the border** (``F.conv2d(...,
  padding=1)`` upstream); the loss is the mean over cells of the sum over the four directions of the
  squared difference between the enhanced image's and the input's differences;
- exposure control: grey level, non-overlapping ``patch`` x ``patch`` means (``AvgPool2d(16)``: a partial
  patch at the right/bottom border is dropped), mean of ``(patch mean - E)^2`` with ``E = 0.6``;
- colour constancy: per image, with ``m_c`` the mean of channel ``c``,
  ``sqrt((m_R - m_G)^4 + (m_R - m_B)^4 + (m_G - m_B)^4)``, averaged over the batch (upstream squares the
  pairwise differences, then takes the root of the sum of their squares);
- illumination smoothness: total variation of the curve maps,
  ``2 * (sum dh^2 / ((H-1) W) + sum dw^2 / (H (W-1))) / B`` with the sums over the batch and all 24
  channels (upstream's ``L_TV``: the count is per channel, not per element).

Weights (:data:`OFFICIAL_WEIGHTS`): upstream's ``lowlight_train.py`` total is
``200 * TV + spatial + 5 * colour + 10 * exposure``. The CVPR paper writes ``W_col = 0.5``, ``W_tvA = 20``
with unit weights on the other two: the same ratios between exposure, colour and smoothness, with the
spatial term ten times heavier relative to them. The code's weights are what produced the released
weights, so they are the default; both are config values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# lowlight_train.py: loss = 200 * Loss_TV + loss_spa + 5 * loss_col + 10 * loss_exp
OFFICIAL_WEIGHTS = {"spatial": 1.0, "exposure": 10.0, "colour": 5.0, "smoothness": 200.0}


def _neighbour_differences(g: torch.Tensor) -> list[torch.Tensor]:
    """``g - neighbour`` for left, right, up, down, with zero beyond the border. ``g``: ``(B, 1, h, w)``."""
    p = F.pad(g, (1, 1, 1, 1))
    return [
        g - p[:, :, 1:-1, :-2],  # left
        g - p[:, :, 1:-1, 2:],  # right
        g - p[:, :, :-2, 1:-1],  # up
        g - p[:, :, 2:, 1:-1],  # down
    ]


def spatial_consistency_loss(enhanced: torch.Tensor, low: torch.Tensor, pool: int = 4) -> torch.Tensor:
    """Keeps the differences between neighbouring regions (``pool`` x ``pool`` cells) of the input."""
    e = F.avg_pool2d(enhanced.mean(1, keepdim=True), pool)
    o = F.avg_pool2d(low.mean(1, keepdim=True), pool)
    total = sum((de - do).pow(2) for de, do in zip(_neighbour_differences(e), _neighbour_differences(o)))
    return total.mean()


def exposure_control_loss(enhanced: torch.Tensor, level: float = 0.6, patch: int = 16) -> torch.Tensor:
    """Pulls the mean grey level of every ``patch`` x ``patch`` region towards ``level``."""
    means = F.avg_pool2d(enhanced.mean(1, keepdim=True), patch)
    return (means - level).pow(2).mean()


def colour_constancy_loss(enhanced: torch.Tensor) -> torch.Tensor:
    """Grey-world: penalises differences between the channel means (zero for a grey image)."""
    m = enhanced.mean(dim=(2, 3))
    r, g, b = m[:, 0], m[:, 1], m[:, 2]
    k = ((r - g).pow(2).pow(2) + (r - b).pow(2).pow(2) + (b - g).pow(2).pow(2)).sqrt()
    return k.mean()


def illumination_smoothness_loss(curves: torch.Tensor) -> torch.Tensor:
    """Total variation of the curve-parameter maps ``(B, C, H, W)`` (zero for constant maps)."""
    b, _, h, w = curves.shape
    dh = (curves[:, :, 1:, :] - curves[:, :, :-1, :]).pow(2).sum()
    dw = (curves[:, :, :, 1:] - curves[:, :, :, :-1]).pow(2).sum()
    return 2 * (dh / ((h - 1) * w) + dw / (h * (w - 1))) / b


def zero_reference_losses(
    enhanced: torch.Tensor,
    low: torch.Tensor,
    curves: torch.Tensor,
    weights: dict[str, float] | None = None,
    *,
    exposure_level: float = 0.6,
    exposure_patch: int = 16,
    spatial_pool: int = 4,
) -> dict[str, torch.Tensor]:
    """The four terms (unweighted) and ``loss``, their weighted sum (``weights`` default: upstream's)."""
    w = {**OFFICIAL_WEIGHTS, **(weights or {})}
    terms = {
        "spatial": spatial_consistency_loss(enhanced, low, spatial_pool),
        "exposure": exposure_control_loss(enhanced, exposure_level, exposure_patch),
        "colour": colour_constancy_loss(enhanced),
        "smoothness": illumination_smoothness_loss(curves),
    }
    total = sum(w[k] * v for k, v in terms.items())
    return {"loss": total, **terms}
