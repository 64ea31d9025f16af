"""The scoring side of a submitted model: an Enhancer whose every batch is computed by the worker.

The engine treats it as any model (batching, padding, seeding, timing, output validation, scoring) but
the model's code runs in the worker process: the engine's reference tensors, metric functions, clock and
store are in this process, out of the model's reach. Its record is written by the suite: the display name
checked against registered names, weight hashes of the files the suite bound into the sandbox, the
submission id, kind and isolation level. What the model says about itself is kept as ``reported``.
"""

from __future__ import annotations

from typing import Any

import torch

from cals_bench.enhancer import Enhancer
from cals_bench.submit.sandbox import Worker, WorkerError

MAX_PAD_MULTIPLE = 256


class RemoteEnhancer(Enhancer):
    """An Enhancer whose ``enhance`` runs in a sandboxed worker process (a submitted model)."""

    summary = "a submitted model, run in its own sandboxed process"

    def __init__(
        self, worker: Worker, *, name: str, args: dict[str, Any], weights: dict[str, str], submission: dict
    ):
        super().__init__()
        self.worker = worker
        self.name = name
        self.args.update(args)
        self.suite_weights = dict(weights)
        self.submission = submission
        pad = int(worker.meta.get("pad_multiple") or 1)
        self.pad_multiple = min(max(pad, 1), MAX_PAD_MULTIPLE)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.worker.enhance(x, torch.initial_seed())
        except WorkerError as exc:
            raise RuntimeError(exc.reason) from None
        except BaseException:  # interrupted mid-message (e.g. the engine's own time limit): the pipe is
            self.worker.dead = "the worker was stopped by the engine"  # out of step, so the worker ends
            self.worker.kill()
            raise
        return out.to(x.device)

    def metadata(self) -> dict[str, Any]:
        reported = {k: self.worker.meta.get(k) for k in ("name", "class", "pad_multiple", "weights_reported")}
        return {
            "name": self.name,
            "class": f"submission:{self.submission['id']}:{self.submission['kind']}:{self.submission['content_hash'][:16]}",
            "version": "1",
            "args": dict(self.args),
            "weights": dict(self.suite_weights),
            "parameters": int(self.worker.meta.get("parameters") or 0),
            "pad_multiple": self.pad_multiple,
            "uses_ground_truth": False,
            "sanity": False,
            "licence": "",
            "paper": "",
            "submission": dict(self.submission),
            "reported": reported,
        }
