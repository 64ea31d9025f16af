"""A reference-free colour and exposure report: what a reader of an enhancement paper checks first.

No learned model; four numbers per image, each on the 8-bit RGB image as saved:

- ``brightness``: mean BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, in [0, 1]. Descriptive (no direction:
  neither brighter nor darker is better in itself);
- ``clipped_low``: the fraction of pixels with a channel at 0 (crushed shadows; lower is better);
- ``clipped_high``: the fraction of pixels with a channel at 255 (blown highlights; lower is better);
- ``color_cast``: the distance of the image's mean chromaticity from neutral grey in CIELAB,
  ``sqrt(mean(a*)^2 + mean(b*)^2)`` (sRGB, D65; the "D" of Gasparini & Schettini's colour-cast detector,
  Pattern Recognition 2004). 0 for a grey-balanced image; lower is better.

Like every no-reference metric, each also comes as ``<name>_delta``: output minus model input.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from cals_bench.metrics.base import register_metric
from cals_bench.metrics.noreference import NoReferenceMetric, to_uint8_hwc

LUMA = np.array([0.299, 0.587, 0.114])
# sRGB (linear) -> XYZ, D65 (IEC 61966-2-1)
SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
# the white point is the image of sRGB white (the rows' sums, D65), so that R = G = B has a* = b* = 0
WHITE_D65 = SRGB_TO_XYZ.sum(axis=1)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB ``(H, W, 3)`` -> CIELAB (D65) float64 ``(H, W, 3)``."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ SRGB_TO_XYZ.T / WHITE_D65
    eps = (6.0 / 29.0) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def exposure_report(rgb: np.ndarray) -> dict[str, float]:
    """The four figures of one 8-bit RGB image ``(H, W, 3)``.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((2, 2, 3), dtype=np.uint8); img[0, 0] = 255
        >>> r = exposure_report(img)
        >>> r["brightness"], r["clipped_low"], r["clipped_high"], round(r["color_cast"], 6)
        (0.25, 0.75, 0.25, 0.0)
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    n = rgb.shape[0] * rgb.shape[1]
    lab = srgb_to_lab(rgb)
    return {
        "brightness": float((rgb.reshape(-1, 3).astype(np.float64) @ LUMA).mean() / 255.0),
        "clipped_low": float((rgb == 0).any(axis=2).sum() / n),
        "clipped_high": float((rgb == 255).any(axis=2).sum() / n),
        "color_cast": float(np.hypot(lab[..., 1].mean(), lab[..., 2].mean())),
    }


@register_metric
class ExposureReport(NoReferenceMetric):
    """Brightness, clipped shadows and highlights, colour cast; no reference, no model."""

    name = "exposure"
    summary = (
        "colour and exposure report, no reference: mean luma, clipped shadow/highlight fractions, "
        "CIELAB colour cast"
    )
    columns: ClassVar[dict[str, bool | None]] = {
        "brightness": None,
        "clipped_low": False,
        "clipped_high": False,
        "color_cast": False,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def score_image(self, image: torch.Tensor) -> tuple[dict[str, float], str | None]:
        return exposure_report(to_uint8_hwc(image)), None
