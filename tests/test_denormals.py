"""Models run on the CPU with subnormal floats flushed (as GPUs do), and torch's default comes back after."""

from __future__ import annotations

import torch

from cals_bench.engine import _run_model
from cals_bench.enhancer import Enhancer

TINY = 1e-40  # subnormal in float32 (smallest normal ~1.18e-38)


class _Probe(Enhancer):
    name = "denormal-probe"

    def __init__(self):
        super().__init__()
        self.seen = None

    def enhance(self, x):
        self.seen = float(torch.tensor([TINY], dtype=torch.float32)[0] * 1.0)
        return x


def test_model_sees_flushed_subnormals_and_default_is_restored():
    model = _Probe()
    x = torch.rand(1, 3, 8, 8)
    out, ms = _run_model(model, x, x, 0, torch.device("cpu"))
    assert model.seen == 0.0  # flushed while the model ran
    assert torch.equal(out, x)
    assert ms >= 0
    assert float(torch.tensor([TINY], dtype=torch.float32)[0] * 1.0) > 0  # restored afterwards
