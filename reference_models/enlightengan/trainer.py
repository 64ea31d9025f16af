"""EnlightenGAN as a training task for the shared engine (``task: enlightengan``): two optimisers.

Each step (the authors' ``optimize_parameters``): phase ``generator`` computes the enhanced image, draws
``local_patches`` random patch positions (the same positions in the output, the normal-light image and the
input), and minimises the relativistic global adversarial loss + the local LSGAN loss (mean over patches) +
``sfp_weight`` x the self-feature-preserving loss (whole image + mean over patches); phase
``discriminator`` then updates the global and the local discriminator on that (detached) output and the
unpaired normal-light batch. The data are unpaired (``data.source: unpaired``): ``batch.low`` and
``batch.normal`` are unrelated images.

The authors' recipe (``scripts/script.py``): Adam lr 1e-4, betas (0.5, 0.999) for G and both Ds, batch 32,
320x320 crops, 32x32 patches (one + five more), global D 5 layers, local D 4 layers, 100 epochs at
constant lr then 100 with linear decay; generator width 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cals_bench.errors import DataError
from cals_bench.reference_models.enlightengan.losses import (
    VGGRelu51,
    ls_loss,
    relativistic_d_loss,
    relativistic_g_loss,
    self_feature_preserving_loss,
)
from cals_bench.reference_models.enlightengan.network import AttentionUNet, PatchDiscriminator
from cals_bench.train.batch import Batch
from cals_bench.train.tasks import Phase, TrainableModel, register_task


@dataclass(frozen=True)
class EnlightenGANConfig:
    """The ``model:`` section. Defaults are the authors' (``scripts/script.py``).

    ``width``: generator base width (32); ``ndf``: discriminator base width (64); ``global_layers`` (5) and
    ``local_layers`` (4): stride-2 stages of the global and local discriminator; ``patch_size`` (32) and
    ``local_patches`` (6 = 1 + ``patchD_3`` 5) for the local discriminator and the patch SFP loss;
    ``sfp_weight`` (``--vgg 1``); ``beta1`` (0.5) of both Adams; ``d_lr_scale``: discriminator lr / generator lr;
    ``batch_norm`` (``--use_norm 1``): BatchNorm in the generator (false: none, the authors' ``--use_norm 0``);
    ``relativistic`` (``--use_ragan``): the relativistic global loss (false: plain LSGAN). Under torchrun,
    BatchNorm statistics and the relativistic batch means are per process (as the local batch is).
    """

    width: int = 32
    ndf: int = 64
    global_layers: int = 5
    local_layers: int = 4
    patch_size: int = 32
    local_patches: int = 6
    sfp_weight: float = 1.0
    beta1: float = 0.5
    d_lr_scale: float = 1.0
    batch_norm: bool = True
    relativistic: bool = True

    def __post_init__(self) -> None:
        if min(self.width, self.ndf, self.global_layers, self.local_layers, self.local_patches) < 1:
            raise ValueError("width, ndf, global_layers, local_layers and local_patches must be >= 1")
        if self.patch_size < 8 or self.sfp_weight < 0 or not 0 <= self.beta1 < 1 or self.d_lr_scale <= 0:
            raise ValueError("patch_size >= 8, sfp_weight >= 0, 0 <= beta1 < 1 and d_lr_scale > 0 required")
        if self.sfp_weight > 0 and self.patch_size < 32:
            raise ValueError(
                "patch_size must be >= 32 with the SFP loss: relu5_1 is 1/16 of the patch and instance "
                "normalisation needs more than one feature position"
            )


@register_task("enlightengan")
class EnlightenGANTask(TrainableModel):
    """Attention-guided U-Net generator, relativistic global D and LSGAN local D, SFP loss on VGG16."""

    config_cls = EnlightenGANConfig
    config_dir = Path(__file__).resolve().parent / "configs"
    summary = "EnlightenGAN-style unpaired GAN: attention U-Net, global + local discriminators, SFP loss"

    def __init__(self, config: EnlightenGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = AttentionUNet(config.width, config.batch_norm)
        self.global_d = PatchDiscriminator(config.ndf, config.global_layers)
        self.local_d = PatchDiscriminator(config.ndf, config.local_layers)
        self._vgg: list[VGGRelu51] = []  # frozen, loaded on first use, not in the state dict
        self._fake: torch.Tensor | None = None
        self._patches: list[tuple[int, int]] = []

    # -- the engine contract ------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """The authors' ``weights_init``: conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), shift 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def phases(self) -> list[Phase]:
        betas = (self.config.beta1, 0.999)
        d_params = [*self.global_d.parameters(), *self.local_d.parameters()]
        return [
            Phase("generator", list(self.generator.parameters()), betas=betas),
            Phase("discriminator", d_params, lr_scale=self.config.d_lr_scale, betas=betas),
        ]

    def loss_terms(self) -> tuple[str, ...]:
        return ("loss", "loss_generator", "loss_discriminator", "adv_global", "adv_local", "sfp", "d_global",
                "d_local")  # fmt: skip

    def enhancer_module(self) -> AttentionUNet:
        return self.generator

    def forward(self, batch: Batch, phase: str = "generator") -> dict[str, torch.Tensor]:
        if batch.normal is None:
            raise DataError("task enlightengan needs unpaired normal-light images (data.source: unpaired)")
        if phase == "generator":
            return self._generator_step(batch.low, batch.normal)
        if phase == "discriminator":
            return self._discriminator_step(batch.normal)
        raise ValueError(f"enlightengan has no phase {phase!r}")

    # -- the two phases -----------------------------------------------------------------------------------
    def sfp_network(self, device: torch.device) -> VGGRelu51:
        if not self._vgg:
            self._vgg.append(VGGRelu51.from_registry())
        vgg = self._vgg[0]
        return vgg.to(device) if next(vgg.parameters()).device != device else vgg

    def _draw_patches(self, h: int, w: int) -> list[tuple[int, int]]:
        """Patch corners from torch's global generator (saved in checkpoints: resume draws the same ones);
        offsets in ``[0, size - patch - 1]`` as the authors' ``random.randint(0, max(0, w - p - 1))``."""
        p = self.config.patch_size
        if h < p or w < p:
            raise DataError(f"the {p}x{p} discriminator patches do not fit {w}x{h} training crops")
        tops = torch.randint(0, max(1, h - p), (self.config.local_patches,)).tolist()
        lefts = torch.randint(0, max(1, w - p), (self.config.local_patches,)).tolist()
        return list(zip(tops, lefts))

    def _crop(self, x: torch.Tensor, corner: tuple[int, int]) -> torch.Tensor:
        p = self.config.patch_size
        return x[:, :, corner[0] : corner[0] + p, corner[1] : corner[1] + p]

    def _generator_step(self, low: torch.Tensor, normal: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.generator(low)
        fake, real = out * 2 - 1, normal * 2 - 1  # the discriminators see the authors' [-1, 1] range
        self._fake = fake.detach()
        self._patches = self._draw_patches(*low.shape[-2:])
        if self.config.relativistic:
            adv_global = relativistic_g_loss(self.global_d(real), self.global_d(fake))
        else:
            adv_global = ls_loss(self.global_d(fake), True)
        adv_local = torch.stack(
            [ls_loss(self.local_d(self._crop(fake, c)), True) for c in self._patches]
        ).mean()
        terms = {"adv_global": adv_global, "adv_local": adv_local}
        loss = adv_global + adv_local
        if self.config.sfp_weight > 0:
            vgg = self.sfp_network(low.device)
            whole = self_feature_preserving_loss(vgg, out, low)
            patches = torch.stack(
                [
                    self_feature_preserving_loss(vgg, self._crop(out, c), self._crop(low, c))
                    for c in self._patches
                ]
            ).mean()
            terms["sfp"] = whole + patches
            loss = loss + self.config.sfp_weight * terms["sfp"]
        else:
            terms["sfp"] = torch.zeros((), device=low.device)
        return {"loss": loss, **terms}

    def _discriminator_step(self, normal: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._fake is None:
            raise RuntimeError("the discriminator phase runs after the generator phase of the same step")
        fake, real = self._fake, normal * 2 - 1
        if self.config.relativistic:
            d_global = relativistic_d_loss(self.global_d(real), self.global_d(fake))
        else:
            d_global = 0.5 * (ls_loss(self.global_d(real), True) + ls_loss(self.global_d(fake), False))
        d_local = torch.stack(
            [
                0.5
                * (
                    ls_loss(self.local_d(self._crop(real, c)), True)
                    + ls_loss(self.local_d(self._crop(fake, c)), False)
                )
                for c in self._patches
            ]
        ).mean()
        self._fake = None
        return {"loss": d_global + d_local, "d_global": d_global, "d_local": d_local}
