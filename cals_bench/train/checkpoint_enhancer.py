"""A training checkpoint as an Enhancer: ``cals-bench run --model checkpoint:PATH``.

Importing this module registers the ``checkpoint`` model-spec prefix (it is listed in
``cals_bench.enhancer.BUILTIN_MODULES``). The network is rebuilt from the config saved in the checkpoint,
its state restored (``weights_only=True``), and the task's enhancing module (for IAML, the student) runs
in eval mode. The checkpoint's sha256 is recorded in the run, so two checkpoints never share a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cals_bench.data.io import sha256_path
from cals_bench.enhancer import Enhancer, register_spec_loader
from cals_bench.errors import CalsBenchError
from cals_bench.train import checkpoint
from cals_bench.train.config import TrainConfig, config_from_json
from cals_bench.train.errors import CheckpointError, ConfigError
from cals_bench.train.tasks import TrainableModel, build_model


def load_trained_model(path: str | Path) -> tuple[TrainConfig, TrainableModel, dict[str, Any]]:
    """``(config, model with the checkpoint's weights, checkpoint)`` for a cals-bench training checkpoint."""
    path = Path(path)
    ckpt = checkpoint.load(path)
    try:
        cfg = config_from_json(ckpt["config"], f"{path} (saved config)")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its saved config does not validate: {exc}") from exc
    model = build_model(cfg.task, cfg.model)
    checkpoint.check_architecture(path, ckpt, cfg.task, model)
    model.load_state_dict(ckpt["model"])
    return cfg, model, ckpt


class CheckpointEnhancer(Enhancer):
    """The enhancing module of a checkpoint written by ``cals-bench train`` (any task)."""

    name = "checkpoint"
    summary = "a network trained by `cals-bench train`, loaded from its checkpoint"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        cfg, model, ckpt = load_trained_model(path)
        self.net = model.enhancer_module().eval()
        self.net.requires_grad_(False)
        self.name = f"{cfg.name or cfg.task}@step{int(ckpt['step'])}"
        self.summary = f"{type(model).summary or cfg.task} (checkpoint {path.name}, step {int(ckpt['step'])})"
        self.weights_used[f"checkpoint:{path.name}"] = sha256_path(path)
        self.training = {
            "task": cfg.task,
            "config_name": cfg.name,
            "step": int(ckpt["step"]),
            "val": dict(ckpt.get("val", {})),
        }

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float().clamp(0, 1)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "training": dict(self.training)}


@register_spec_loader("checkpoint")
def load_checkpoint_enhancer(path: str, args: dict[str, Any]) -> Enhancer:
    """``checkpoint:PATH`` -> :class:`CheckpointEnhancer` (it takes no ``--model-args``)."""
    if args:
        raise CalsBenchError(f"checkpoint:{path} takes no model arguments (got {', '.join(sorted(args))})")
    return CheckpointEnhancer(path)
