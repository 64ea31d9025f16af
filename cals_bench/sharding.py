"""Sharded evaluation under ``torchrun``: every rank scores its share of a protocol's samples into one run.

    torchrun --nproc_per_node 8 -m cals_bench run --protocol P --model M            # one machine
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m cals_bench run --protocol P --model M --results /shared/results          # several machines

How it works (the engine calls the hooks below; without ``WORLD_SIZE > 1`` in the environment nothing
changes):

- **Process group**: initialised on first use from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): ``nccl`` when the run's device is CUDA, else ``gloo``.
  A CUDA run uses ``cuda:LOCAL_RANK`` on each rank.
- **One run id**: rank 0 looks the run up (reuse, resume, or ``--force``) and creates it in the store; the
  other ranks wait at a barrier and then find the same run by its key.
- **Deterministic shards**: sample ``i`` of the protocol's sample list (its fixed order) belongs to rank
  ``i % world_size``. A rank skips the samples of its shard already stored, so a relaunch (after a killed
  rank, or with another world size) resumes: every sample is scored by exactly one rank of a launch, and
  one already recorded is never scored again.
- **Records reach the store exactly once**: each rank writes its own samples' records to the shared SQLite
  store (WAL mode; one transaction per batch, so a killed rank leaves whole batches, never half of one;
  samples are keyed by ``(run_id, sample_id)``). This is the "every rank writes under one run id created
  by rank 0" design: no merge step that could be interrupted. The results folder must be one that every
  rank can lock (a local disk for one machine; for several machines a shared filesystem with working POSIX
  locks, since SQLite relies on them).
- **Once, on rank 0**: after a barrier (an all-reduce of "finished" flags and counts, so a rank that
  stopped makes the run stop rather than hang), rank 0 computes the summary from the merged records,
  exports them, marks the run finished, and the CLI audits and reports it there. The other ranks print
  nothing on stdout.
- **Provenance**: the run record holds ``distributed = {"world_size", "backend", "sharding"}`` and each
  session its ``world_size``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

SHARDING_RULE = "sample index modulo world size (protocol sample order)"
_CURRENT: Shard | None = None
_CHECKED = False


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return 0, 1, 0
    return rank, world, local


def is_rank0() -> bool:
    """True outside torchrun and on rank 0 (the rank that finalises, audits and reports)."""
    return env_world()[0] == 0


@dataclass
class Shard:
    """This process's place in a sharded evaluation (see the module docstring)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str = ""

    # -- process group --------------------------------------------------------------------------
    def _ensure_group(self, device_type: str = "cpu") -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            self.backend = self.backend or str(dist.get_backend())
            return
        self.backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=self.backend, rank=self.rank, world_size=self.world_size)

    def place(self, device: Any) -> Any:
        """The device of this rank: ``cuda:LOCAL_RANK`` for an unindexed CUDA device; also starts the group."""
        import torch

        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank % max(1, torch.cuda.device_count()))
            torch.cuda.set_device(device)
        self._ensure_group(device.type)
        return device

    # -- the engine's hooks ---------------------------------------------------------------------
    def lock_name(self, name: str) -> str:
        """Each rank holds its own run lock: a second launch of the same run still fails on every rank."""
        return f"{name}.rank{self.rank}"

    def wait_for_rank0(self) -> None:
        """Ranks other than 0 wait here until rank 0 has looked the run up and created it."""
        if self.rank != 0:
            self._barrier()

    def rank0_ready(self) -> None:
        """Rank 0 has created (or found) the run: release the others."""
        if self.rank == 0:
            self._barrier()

    def annotate(self, meta: dict[str, Any]) -> None:
        """Provenance: the world size (and backend) of this launch in the run record."""
        meta["distributed"] = {
            "world_size": self.world_size,
            "backend": self.backend,
            "sharding": SHARDING_RULE,
        }

    def mine(self, samples: list[Any], pending: list[Any]) -> list[Any]:
        """The pending samples of this rank's shard, in protocol order."""
        ids = {s.sample_id for i, s in enumerate(samples) if i % self.world_size == self.rank}
        return [s for s in pending if s.sample_id in ids]

    def finished(self, ok: bool, scored: int) -> tuple[bool, int]:
        """Wait for every rank to finish its shard: (all ranks ok, samples scored by all ranks together)."""
        import torch
        import torch.distributed as dist

        flags = torch.tensor([0 if ok else 1, int(scored)], dtype=torch.int64)
        if self.backend == "nccl":
            flags = flags.cuda()
        dist.all_reduce(flags, op=dist.ReduceOp.SUM)
        return int(flags[0]) == 0, int(flags[1])

    def _barrier(self) -> None:
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[torch_cuda_index()])
        else:
            dist.barrier()


def torch_cuda_index() -> int:
    """The current CUDA device index (imported lazily: torch only when sharding on GPUs)."""
    import torch

    return torch.cuda.current_device()


def current() -> Shard | None:
    """This process's :class:`Shard` under torchrun with ``WORLD_SIZE > 1``, else None."""
    global _CURRENT, _CHECKED
    if not _CHECKED:
        rank, world, local = env_world()
        _CURRENT = Shard(rank, world, local) if world > 1 else None
        _CHECKED = True
    return _CURRENT


def shutdown() -> None:
    """Destroy the process group, if this module started one (the CLI calls it at exit)."""
    global _CURRENT, _CHECKED
    if _CURRENT is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CURRENT, _CHECKED = None, False
