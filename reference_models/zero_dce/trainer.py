"""Zero-DCE as a training task for the shared engine (``task: zero-dce``).

The network is the suite's :class:`cals_bench.baselines.zero_dce.ZeroDCENet` (the one the registered ``zero-dce``
enhancer runs with the official weights): a checkpoint's ``net.*`` tensors are that network's state dict,
so it loads into the baseline's network or runs as ``checkpoint:PATH``. The losses are the four
zero-reference terms of :mod:`cals_bench.reference_models.zero_dce.losses`; training reads low-light images only
(``data.source: lows``), never a reference.

Upstream's training recipe (``lowlight_train.py``): conv weights ~ N(0, 0.02) (biases keep PyTorch's
default), Adam lr 1e-4 with weight decay 1e-4, gradient-norm clipping at 0.1, batch 8, 200 epochs over the
2,002 SICE part-1 images resized to 256 x 256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cals_bench.baselines.zero_dce import ZeroDCENet, apply_curves
from cals_bench.reference_models.zero_dce.losses import zero_reference_losses
from cals_bench.train.batch import Batch
from cals_bench.train.tasks import TrainableModel, register_task


@dataclass(frozen=True)
class ZeroDCEConfig:
    """The ``model:`` section of a Zero-DCE config.

    Weights default to upstream's training script (see :mod:`cals_bench.reference_models.zero_dce.losses` for the
    paper's). ``exposure_level`` E = 0.6 on ``exposure_patch`` 16 x 16 regions, ``spatial_pool`` 4.
    ``init``: ``paper`` (conv weights ~ N(0, 0.02), as upstream's ``weights_init``) or a weights-registry
    name whose state dict starts the run (``llie/zero-dce``: fine-tune the official weights; resolved and
    checksummed at the start of a fresh run only).
    """

    spatial_weight: float = 1.0
    exposure_weight: float = 10.0
    colour_weight: float = 5.0
    smoothness_weight: float = 200.0
    exposure_level: float = 0.6
    exposure_patch: int = 16
    spatial_pool: int = 4
    init: str = "paper"

    def __post_init__(self) -> None:
        weights = (self.spatial_weight, self.exposure_weight, self.colour_weight, self.smoothness_weight)
        if min(weights) < 0:
            raise ValueError("loss weights must be >= 0")
        if not 0.0 < self.exposure_level < 1.0:
            raise ValueError(f"exposure_level must be in (0, 1), got {self.exposure_level}")
        if self.exposure_patch < 1 or self.spatial_pool < 1:
            raise ValueError("exposure_patch and spatial_pool must be >= 1")


@register_task("zero-dce")
class ZeroDCETask(TrainableModel):
    """DCE-Net (7 convolutions, 8 curve maps) trained with the four zero-reference losses."""

    config_cls = ZeroDCEConfig
    config_dir = Path(__file__).resolve().parent / "configs"
    summary = "Zero-DCE: DCE-Net trained with the zero-reference losses (no references)"

    def __init__(self, config: ZeroDCEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = ZeroDCENet()

    def init_weights(self) -> None:
        if self.config.init == "paper":
            for m in self.net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, 0.02)
            return
        from cals_bench import weights

        state, _ = weights.load_torch(self.config.init)
        self.net.load_state_dict(state, strict=True)

    def loss_terms(self) -> tuple[str, ...]:
        return ("loss", "spatial", "exposure", "colour", "smoothness")

    def forward(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        low = batch.low
        maps = self.net.curve_maps(low)
        with torch.autocast(low.device.type, enabled=False):
            maps = [m.float() for m in maps]
            enhanced = apply_curves(low.float(), maps)
            return self.losses(enhanced, low.float(), torch.cat(maps, 1))

    def losses(
        self, enhanced: torch.Tensor, low: torch.Tensor, curves: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        c = self.config
        weights = {
            "spatial": c.spatial_weight,
            "exposure": c.exposure_weight,
            "colour": c.colour_weight,
            "smoothness": c.smoothness_weight,
        }
        return zero_reference_losses(
            enhanced, low, curves, weights,
            exposure_level=c.exposure_level, exposure_patch=c.exposure_patch, spatial_pool=c.spatial_pool,
        )  # fmt: skip

    def enhancer_module(self) -> ZeroDCENet:
        return self.net
