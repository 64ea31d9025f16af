"""Training checkpoints: everything an exact resume needs, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of plain values and tensors:

``format``      ``"cals-bench-train/1"``
``task``        the registered task name (``iaml``)
``config``      the validated config as a JSON string
``step``        optimiser steps done
``position``    data position: ``{"step", "epoch", "batch_in_epoch", "steps_per_epoch", "train_ids_sha256"}``
``model``       the model's state dict (EMA sub-modules included, e.g. IAML's ``teacher_decoder.*``)
``ema``         ``{name: {"source": ..., "momentum": ..., "updates": ...}}`` for each EMA pair
``optimizer``, ``scheduler``, ``scaler``   their state dicts (``scaler`` is ``{}`` without fp16)
``rng``         torch CPU (and CUDA) generator states, NumPy's and Python's, all as tensors
``log_interval``  loss sums and step count of the unfinished logging interval (so logs resume exactly)
``val``         the last validation metrics, ``best`` the best validation PSNR and its step
``torch``       the torch version that wrote it

Files are written to a temporary name and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cals_bench.train.errors import CheckpointError

FORMAT = "cals-bench-train/1"
REQUIRED = ("format", "task", "config", "step", "model")


def save(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` atomically to ``path`` (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a cals-bench training checkpoint with ``weights_only=True``; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = (
            text[text.find("Unsupported global") :].split(" was not", 1)[0]
            if "Unsupported global" in text
            else ""
        )
        if detail:
            raise CheckpointError(
                f"{path}: holds objects other than tensors and plain values ({detail}); not loaded"
            ) from exc
        from cals_bench.safe_load import refusal_reason

        reason = refusal_reason(exc)
        if reason.startswith("its pickle holds"):
            # an opcode no pickle writer emits: garbage or a damaged file far more often than an attack
            raise CheckpointError(f"{path}: unreadable or corrupted checkpoint ({reason})") from exc
        raise CheckpointError(f"{path}: refused: {reason}") from exc
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable or corrupted checkpoint ({_first_line(exc)})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cals-bench training checkpoint (no format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def check_architecture(path: Path, ckpt: dict[str, Any], task: str, model: torch.nn.Module) -> None:
    """Refuse a checkpoint of another task, or whose tensors differ in name or shape from ``model``'s."""
    if ckpt["task"] != task:
        raise CheckpointError(f"{path}: checkpoint is for task {ckpt['task']!r}, not {task!r}")
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    for key in sorted(set(have) | set(got)):
        if key not in got:
            raise CheckpointError(f"{path}: another architecture: the checkpoint lacks {key}")
        if key not in have:
            raise CheckpointError(
                f"{path}: another architecture: the checkpoint has {key}, this model does not"
            )
        if have[key] != got[key]:
            raise CheckpointError(
                f"{path}: another architecture: {key} is {list(got[key])} in the checkpoint, "
                f"{list(have[key])} here"
            )


def rng_state() -> dict[str, Any]:
    """Every global generator the loop could touch, as tensors (so ``weights_only`` loading accepts them)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": py_version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the torch, NumPy and Python random states saved in a checkpoint."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
