"""IAML as a training task for the shared engine (``task: iaml``).

Total loss ``MSE + (1 - SSIM) + lambda * mirror``, where the mirror term compares the student's decoder
levels (low-light image in) with the teacher's (clean image in; student encoder with gradients blocked,
EMA decoder). ``mirror`` selects IAML or one of the ablation's alternatives; ``ssim: false`` and
``mirror: none`` give the ablation's MSE-only and MSE+SSIM rows (Table IV of the paper).

The paper's text, as we have it, lost several constants. Each is a config value here; the defaults and the
reasons for them are in :class:`IAMLConfig` and docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from cals_bench.errors import DataError
from cals_bench.reference_models.iaml.losses import (
    cosine_mirror_loss,
    illumination_aware_mirror_loss,
    mse_loss,
    ssim_loss,
    standardised_l2_mirror_loss,
)
from cals_bench.reference_models.iaml.network import IAMLNetwork, UNetCBAM
from cals_bench.train.batch import Batch
from cals_bench.train.tasks import EmaPair, TrainableModel, register_task

MIRROR_TERMS = {"iaml": "iaml", "std-l2": "std_l2_mirror", "cosine": "cosine_mirror"}


@dataclass(frozen=True)
class IAMLConfig:
    """The ``model:`` section of an IAML config.

    - ``width`` 32, ``depth`` 4: stage widths 32/64/128/256, three decoder levels; a U-Net of this size is
      what LOL-scale auto-encoders use (about 2 M parameters in the student).
    - ``cbam_reduction`` 8, ``cbam_kernel`` 7: CBAM's kernel; reduction 8 rather than CBAM's 16 because the
      first stage has only 32 channels (16 would leave a 2-unit bottleneck; the MLP keeps at least 4).
    - ``ssim``: add ``1 - SSIM``; ``mirror``: ``iaml``, ``std-l2``, ``cosine`` or ``none``.
    - ``mirror_weight`` (lambda) 0.1: the mirror term of standardised maps starts near 2 per level, the
      image terms near 0.05-0.5; 0.1 keeps the mirror term from dominating early. The lambda grid
      (``cals-bench train grid``, default 0.01, 0.05, 0.1, 0.5, 1) selects it on the validation split.
    - ``alpha`` 1.0: W ranges over [1, 2], the darkest pixels weigh twice the brightest; bounded so no
      region dominates.
    - ``std_eps`` 1e-5: the epsilon added to each map's std in the standardisation.
    - ``ema_momentum`` 0.999: the usual mean-teacher momentum (Tarvainen & Valpola 2017); the teacher
      decoder then averages the student decoder over roughly the last 1000 steps.
    """

    width: int = 32
    depth: int = 4
    cbam_reduction: int = 8
    cbam_kernel: int = 7
    ssim: bool = True
    mirror: Literal["iaml", "std-l2", "cosine", "none"] = "iaml"
    mirror_weight: float = 0.1
    alpha: float = 1.0
    std_eps: float = 1e-5
    ema_momentum: float = 0.999

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 2:
            raise ValueError("width must be >= 1 and depth >= 2")
        if self.cbam_kernel % 2 == 0:
            raise ValueError("cbam_kernel must be odd")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        if self.mirror_weight < 0 or self.alpha < 0 or self.std_eps <= 0:
            raise ValueError("mirror_weight and alpha must be >= 0, std_eps > 0")


@register_task("iaml")
class IAMLModel(IAMLNetwork, TrainableModel):
    """Student U-Net with CBAM, and the teacher decoder when a mirror loss is used."""

    config_cls = IAMLConfig
    config_dir = Path(__file__).resolve().parent / "configs"
    summary = "IAML: U-Net + CBAM student, EMA teacher decoder, illumination-aware mirror loss"

    def __init__(self, config: IAMLConfig) -> None:
        super().__init__(
            width=config.width,
            depth=config.depth,
            reduction=config.cbam_reduction,
            kernel_size=config.cbam_kernel,
            teacher=config.mirror != "none",
        )
        self.config = config

    def loss_terms(self) -> tuple[str, ...]:
        terms = ["loss", "mse"]
        if self.config.ssim:
            terms.append("ssim_loss")
        if self.config.mirror != "none":
            terms.append(MIRROR_TERMS[self.config.mirror])
        return tuple(terms)

    def forward(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        """Loss terms for a paired batch; the networks run under the caller's autocast, the losses in
        float32."""
        if batch.high is None:
            raise DataError("task iaml trains on paired data: the batch has no reference (data.source)")
        low, high = batch.low, batch.high
        cfg = self.config
        out, student_levels = self.student.forward_levels(low)
        teacher_levels = self.teacher_levels(high) if cfg.mirror != "none" else []
        with torch.autocast(low.device.type, enabled=False):
            return self._losses(out.float(), high.float(), low.float(), student_levels, teacher_levels)

    def _losses(self, out, high, low, student_levels, teacher_levels) -> dict[str, torch.Tensor]:
        cfg = self.config
        terms = {"mse": mse_loss(out, high)}
        total = terms["mse"]
        if cfg.ssim:
            terms["ssim_loss"] = ssim_loss(out, high)
            total = total + terms["ssim_loss"]
        if cfg.mirror != "none":
            if cfg.mirror == "iaml":
                mirror = illumination_aware_mirror_loss(
                    student_levels, teacher_levels, low, cfg.alpha, cfg.std_eps
                )
            elif cfg.mirror == "std-l2":
                mirror = standardised_l2_mirror_loss(student_levels, teacher_levels, cfg.std_eps)
            else:
                mirror = cosine_mirror_loss(student_levels, teacher_levels)
            terms[MIRROR_TERMS[cfg.mirror]] = mirror
            total = total + cfg.mirror_weight * mirror
        return {"loss": total, **terms}

    def enhancer_module(self) -> UNetCBAM:
        return self.student

    def ema_pairs(self) -> list[EmaPair]:
        if self.teacher_decoder is None:
            return []
        return [
            EmaPair("teacher_decoder", self.teacher_decoder, self.student.decoder, self.config.ema_momentum)
        ]
