"""Provenance of a run: the environment it ran in (packages, device, git revision) and its run key.

The engine writes :func:`environment` into each run record and names runs by :func:`run_key`, the hash of
everything a run's results depend on (a run with the same key is reused or resumed, never mixed).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from cals_bench.protocol import Protocol

# Package versions recorded in every run's environment (besides cals-bench itself).
PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-image",
    "opencv-python-headless",
    "pandas",
    "POT",
    "torchmetrics",
)


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run ran: Python, platform, package versions, device, threads, load and git revision."""
    import torch

    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pkgs[name] = None
    try:
        pkgs["cals-bench"] = importlib_metadata.version("cals-bench")
    except importlib_metadata.PackageNotFoundError:
        pkgs["cals-bench"] = None
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model_name()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": pkgs,
        "device": str(device),
        "device_name": dev_name,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        # 1-minute load average when the run started: model times on a busy machine include waiting
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "git_revision": git_revision(),
    }


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else ``platform.processor()``, else ``cpu``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip() or "cpu"
    except OSError:
        pass
    return platform.processor() or "cpu"


def git_revision() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files); None outside git."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_key(protocol: Protocol, model_meta: dict, metrics_meta: list[dict], data_identity: str) -> str:
    """The sha256 naming what a run's results depend on: protocol (name, version, hash), model (spec, class,
    args, weights), metrics (their metadata) and data (:func:`data_identity`). Runs with equal keys are
    the same measurement: a finished one is reused, an unfinished one resumed."""
    blob = json.dumps(
        {
            "protocol": [protocol.name, protocol.version, protocol.hash],
            "model": [model_meta["spec"], model_meta["class"], model_meta["args"], model_meta["weights"]],
            "metrics": metrics_meta,
            "data": data_identity,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def data_identity(protocol: Protocol, root: str | Path | None) -> str:
    """What identifies a run's data in its key: the protocol's checksums when it pins the files, else the
    resolved data folder (``builtin`` for data without a folder)."""
    if protocol.dataset.checksums:
        return "checksums"
    return str(Path(root).resolve()) if root else "builtin"
