"""EnlightenGAN (Jiang et al., TIP 2021) as an Enhancer: the suite's own trained weights, or the authors'.

No official EnlightenGAN generator can be obtained where the suite is built, so the default variant runs a
generator **trained by cals-bench** (``cals-bench train enlightengan``, reference_models/enlightengan/) and
says so in its name, summary, paper and licence fields: its numbers are ours, never the authors'.

- ``enlightengan`` (variant ``cals-bench``): ``--model-args checkpoint=PATH``, a cals-bench training
  checkpoint of task ``enlightengan`` (default ``runs/train/enlightengan-cpu/best.pt``, where
  ``cals-bench train enlightengan --data-root DIR`` writes it). Its sha256 is recorded in the run.
- ``enlightengan@authors``: ``--model-args weights=PATH``, the authors' PyTorch generator
  (``200_net_G_A.pth`` of VITA-Group/EnlightenGAN: ``Unet_resize_conv``, width 32, BatchNorm; a
  ``module.`` prefix from DataParallel is accepted). Its sha256 is recorded in the run. Untested against
  the real file (not available here): the key layout is the authors' ``models/networks.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cals_bench.data.io import sha256_path
from cals_bench.enhancer import VariantEnhancer, register_enhancer
from cals_bench.errors import CalsBenchError

DEFAULT_CHECKPOINT = "runs/train/enlightengan-cpu/best.pt"
PAPER = (
    "Jiang, Gong, Liu, Cheng, Fang, Shen, Yang, Zhou, Wang. EnlightenGAN: Deep Light Enhancement without "
    "Paired Supervision. IEEE TIP 2021"
)


@register_enhancer("enlightengan")
class EnlightenGAN(VariantEnhancer):
    """EnlightenGAN's attention-guided U-Net generator; weights trained by cals-bench unless ``@authors``."""

    summary = (
        "EnlightenGAN-style attention U-Net, weights TRAINED BY CALS-BENCH (unpaired BSDS500 lows/normals; "
        "not the authors' weights)"
    )
    paper = f"{PAPER} (architecture and losses; the default weights are trained by cals-bench)"
    licence = "weights trained by cals-bench (research use; BSDS500 training images); @authors: theirs"
    variants = ("cals-bench", "authors")
    default_variant = "cals-bench"
    pad_multiple = 1  # the generator pads to a multiple of 16 itself (reflect, both sides) and crops back

    def __init__(
        self, *, variant: str | None = None, checkpoint: str | None = None, weights: str | None = None
    ) -> None:
        super().__init__(variant=variant)
        from cals_bench.reference_models.enlightengan.network import AttentionUNet

        if self.variant == "authors":
            if checkpoint or not weights:
                raise CalsBenchError(
                    "enlightengan@authors takes --model-args weights=PATH (the authors' .pth)"
                )
            path = Path(weights)
            if not path.is_file():
                raise CalsBenchError(f"{path}: the authors' generator weights file does not exist")
            from cals_bench.weights import torch_load_tensors

            state = {k.removeprefix("module."): v for k, v in torch_load_tensors(path).items()}
            self.net = AttentionUNet(32)
            try:
                self.net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise CalsBenchError(f"{path}: not the authors' EnlightenGAN generator ({first})") from exc
            self.weights_used[f"enlightengan-authors:{path.name}"] = sha256_path(path)
            self.args["weights"] = str(path)
            self.summary = "EnlightenGAN generator with the AUTHORS' weights (loaded from a local file)"
            self.name = "enlightengan@authors"
        else:
            if weights:
                raise CalsBenchError("enlightengan (cals-bench weights) takes checkpoint=PATH, not weights=")
            from cals_bench.train.checkpoint_enhancer import load_trained_model

            path = Path(checkpoint or DEFAULT_CHECKPOINT)
            if not path.is_file():
                raise CalsBenchError(
                    f"{path}: no trained EnlightenGAN checkpoint; train one with `cals-bench train enlightengan "
                    "--data-root DIR` (see docs/training.md) or pass --model-args checkpoint=PATH"
                )
            cfg, model, ckpt = load_trained_model(path)
            if cfg.task != "enlightengan":
                raise CalsBenchError(f"{path}: a checkpoint of task {cfg.task!r}, not enlightengan")
            self.net = model.enhancer_module()
            self.weights_used[f"cals-bench-trained:{path.name}"] = sha256_path(path)
            self.args["checkpoint"] = str(path)
            self.training = {"task": cfg.task, "config_name": cfg.name, "step": int(ckpt["step"]),
                             "trained_by": "cals-bench"}  # fmt: skip
        self.net.eval().requires_grad_(False)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float().clamp(0.0, 1.0)

    def metadata(self) -> dict:
        meta = super().metadata()
        if getattr(self, "training", None):
            meta["training"] = dict(self.training)
        return meta
