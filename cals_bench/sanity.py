"""Trivial enhancers that serve as sanity rows on every leaderboard.

- ``identity``: returns the input (the "do nothing" floor; LOL-v1 PSNR 7.773 dB).
- ``gamma``: ``x ** (1 / gamma)`` per channel, default gamma 2.2.
- ``histogram-equalization``: global histogram equalisation (256 bins) either on each RGB channel
  independently (``space=rgb``, shifts colours) or on the luma of YCrCb (``space=y``, default: keeps chroma).
- ``clahe``: OpenCV's contrast-limited adaptive histogram equalisation on the L channel of CIELAB
  (``clip_limit`` 2.0, ``tile`` 8x8 by default), the usual way CLAHE is applied to colour images.
The histogram methods work on the 8-bit image (rounded from the input), as their definitions are over
256 grey levels.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch

from cals_bench.enhancer import Enhancer, register_enhancer
from cals_bench.errors import CalsBenchError


def _per_image_uint8(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn(uint8 HxWx3) -> uint8 HxWx3`` to every image of a batch."""
    out = []
    for img in x:
        u8 = img.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        res = fn(np.ascontiguousarray(u8))
        out.append(torch.from_numpy(res).permute(2, 0, 1).float().div(255))
    return torch.stack(out).to(x.device)


@register_enhancer("identity")
class Identity(Enhancer):
    """Returns its input: the sanity row that scores doing nothing."""

    summary = "returns the input unchanged (sanity row: the score of doing nothing)"
    sanity = True

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


@register_enhancer("gamma")
class Gamma(Enhancer):
    """A fixed gamma curve ``x ** (1 / gamma)``: the simplest brightening sanity row."""

    summary = "fixed gamma curve x**(1/gamma), default gamma=2.2 (sanity row)"
    sanity = True

    def __init__(self, *, gamma: float = 2.2) -> None:
        super().__init__()
        if not float(gamma) > 0:
            raise CalsBenchError(f"gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)
        self.args["gamma"] = self.gamma

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 1).pow(1.0 / self.gamma)


@register_enhancer("histogram-equalization")
class HistogramEqualization(Enhancer):
    """Global histogram equalisation, on luma or per RGB channel (sanity row)."""

    summary = "global histogram equalisation on luma (space=y, default) or per RGB channel (space=rgb)"
    sanity = True

    def __init__(self, *, space: Literal["y", "rgb"] = "y") -> None:
        super().__init__()
        if space not in ("y", "rgb"):
            raise CalsBenchError(f"histogram-equalization: space must be 'y' or 'rgb', got {space!r}")
        self.space = space
        self.args["space"] = space

    def _one(self, rgb: np.ndarray) -> np.ndarray:
        if self.space == "rgb":
            return np.stack([cv2.equalizeHist(rgb[..., c]) for c in range(3)], axis=2)
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return _per_image_uint8(x, self._one)


@register_enhancer("clahe")
class Clahe(Enhancer):
    """CLAHE on the L channel of CIELAB with OpenCV (sanity row)."""

    summary = "CLAHE on the L channel of CIELAB (OpenCV; clip_limit=2.0, tile=8)"
    sanity = True

    def __init__(self, *, clip_limit: float = 2.0, tile: int = 8) -> None:
        super().__init__()
        self.clip_limit = float(clip_limit)
        self.tile = int(tile)
        if self.clip_limit <= 0 or self.tile < 1:
            raise CalsBenchError("clahe: clip_limit must be > 0 and tile >= 1")
        self.args.update(clip_limit=self.clip_limit, tile=self.tile)

    def _one(self, rgb: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(self.tile, self.tile))
        lab[..., 0] = clahe.apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return _per_image_uint8(x, self._one)
