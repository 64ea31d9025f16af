"""One process or many: the torchrun environment, the process group and the few collectives the loop needs.

Launched plainly, training runs in one process. Launched by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), every process joins a process group
(NCCL on GPUs, gloo on CPUs), takes GPU ``LOCAL_RANK`` when GPUs are used, and the model is wrapped in
DistributedDataParallel. Multi-node is the same code: only the torchrun command changes.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cals_bench.errors import CalsBenchError


@dataclass(frozen=True)
class DistContext:
    """Where this training process stands under torchrun: rank, world size, device and backend."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str | None = None) -> DistContext:
    """Join the torchrun process group if there is one (idempotent) and pick this process's device.

    ``device``: ``cpu``, ``cuda`` or ``cuda:N`` (one process), or None for cuda when available. Under
    torchrun, ``cuda`` means ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.type == "cuda" and not torch.cuda.is_available():
        raise CalsBenchError(f"device {device!r} requested but CUDA is not available")
    if want.type == "cuda" and world > 1:
        want = torch.device("cuda", local_rank)
        torch.cuda.set_device(want)
    backend = None
    if world > 1:
        backend = "nccl" if want.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
            atexit.register(_destroy)
        elif dist.get_backend() != backend:
            backend = dist.get_backend()
    return DistContext(rank, world, local_rank, want, backend)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``t`` over processes (in place; ``t`` itself when there is one process)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()
