"""What every benchmark script shares: the ../shared location, --threads and --clock, and their set-up."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


def add_common_args(ap: argparse.ArgumentParser, *, threads: int | None = None) -> None:
    ap.add_argument("--threads", type=int, default=threads, help="torch (and OpenCV) threads")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: perf_counter; cpu: this process's CPU time (steadier on a busy shared machine)",
    )


def apply_common(args: argparse.Namespace) -> Callable[[], float]:
    """Set the thread counts and the weights folder (../shared/weights when present); return the clock."""
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            import cv2

            cv2.setNumThreads(args.threads)
        except ImportError:
            pass
    if (SHARED / "weights").is_dir():
        os.environ.setdefault("CALS_BENCH_WEIGHTS", str(SHARED / "weights"))
    return time.process_time if args.clock == "cpu" else time.perf_counter
