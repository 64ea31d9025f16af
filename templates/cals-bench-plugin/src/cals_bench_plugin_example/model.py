"""The plugin's model: a global gain ``y = min(1, gain * x)`` with a brightness-adaptive default.

cals-bench imports this module only when the model is used (entry points load lazily), so importing it must
not download or compute anything. Constructor keyword arguments come from ``--model-args k=v``.
"""

from __future__ import annotations

import torch

from cals_bench import Enhancer


class ExampleGain(Enhancer):
    name = "example-gain"
    summary = "example plugin: global gain to a target mean brightness (template)"
    licence = "MIT"
    pad_multiple = 1

    def __init__(self, *, target: float = 0.4) -> None:
        super().__init__()
        if not 0.0 < float(target) <= 1.0:
            raise ValueError(f"target must be in (0, 1], got {target}")
        self.target = float(target)
        self.args["target"] = self.target

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        # x: float32 RGB (B, 3, H, W) in [0, 1]; one gain per image so that its mean becomes `target`
        mean = x.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        return (x * (self.target / mean)).clamp(0.0, 1.0)
