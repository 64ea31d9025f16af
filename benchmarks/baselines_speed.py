"""Time every registered enhancer per 600x400 image on the CPU (and on CUDA when available).

For each model in ``cals_bench.enhancer.registry()`` (the sanity rows, ``baselines/`` and entry points, so
models added by anyone appear without editing this file) it builds the default variant (every variant with
``--all-variants``) and times ``enhance`` the way the engine calls it: a ``(1, 3, 400, 600)`` float32 batch
in [0, 1], reflect-padded at the bottom/right to the model's ``pad_multiple`` (padding included in the time),
under ``torch.inference_mode()``; models that read the reference at test time (flagged ``[GT]``) are timed
through ``enhance_with_reference``. One warm-up call, then the median (and min) of ``--repeats`` calls, in
milliseconds; on CUDA the device is synchronised around each call. On the CPU the process CPU time of each
call is recorded too (``cpu-time``, summed over threads): on a shared machine wall time grows with the other
processes' load (printed in the header) while CPU time mostly does not. A model that cannot be built (weights
missing offline, a failed checksum, an optional dependency absent) is listed as ``unavailable`` with the
reason, and a device on which it fails gets ``failed`` with the reason; neither stops the others.

The input is LOL-v1 eval15 ``low/1.png`` (default ``--lol ../shared/data/lol-v1``) or, when that is absent,
a seeded synthetic dark image of the same size (some classical methods' run time depends on content, so the
header says which was used). Weights resolve as everywhere in cals-bench (``CALS_BENCH_WEIGHTS``, the cache,
a download); ``--weights DIR`` sets ``CALS_BENCH_WEIGHTS`` and ``--offline`` forbids downloads.

    python benchmarks/baselines_speed.py [--repeats 5] [--threads 2] [--only 'zero-dce*' sci]
        [--all-variants] [--skip-sanity] [--devices cpu cuda] [--weights DIR] [--offline] [--json out.json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cals_bench.padding import pad_to_multiple

HEIGHT, WIDTH = 400, 600
SHARED = Path(__file__).resolve().parents[2] / "shared"


def lol_pair(lol: Path, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A low/high pair, float32 ``(1, 3, 400, 600)`` in [0, 1]: LOL-v1 ``1.png``, else a seeded dark image."""
    from cals_bench.data.io import read_rgb, to_tensor

    low_path, high_path = lol / "eval15" / "low" / "1.png", lol / "eval15" / "high" / "1.png"
    if low_path.is_file() and high_path.is_file():
        low, high = to_tensor(read_rgb(low_path))[None], to_tensor(read_rgb(high_path))[None]
        if tuple(low.shape[-2:]) == (HEIGHT, WIDTH):
            return low, high, f"LOL-v1 eval15 {low_path.name}"
    rng = np.random.default_rng(seed)
    high = torch.from_numpy(rng.random((1, 3, HEIGHT, WIDTH), dtype=np.float32))
    high = F.avg_pool2d(high, 9, stride=1, padding=4, count_include_pad=False)  # some spatial structure
    return (high * 0.15).contiguous(), high.contiguous(), "synthetic (seeded, LOL-v1 absent)"


def time_model(
    model, low: torch.Tensor, high: torch.Tensor, device: torch.device, repeats: int
) -> tuple[list[float], list[float]]:
    """Wall and process-CPU times in ms of ``repeats`` calls after one warm-up, padding included."""
    model.to(device)
    multiple = max(1, int(getattr(model, "pad_multiple", 1) or 1))
    low, high = low.to(device), high.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def call() -> None:
        x = pad_to_multiple(low, multiple)
        with torch.inference_mode():
            if model.uses_ground_truth:
                out = model.enhance_with_reference(x, pad_to_multiple(high, multiple))
            else:
                out = model.enhance(x)
        if tuple(out.shape) != tuple(x.shape):
            raise RuntimeError(f"returned shape {tuple(out.shape)} for input {tuple(x.shape)}")

    call()
    times, cpu_times = [], []
    for _ in range(repeats):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
        cpu_times.append((time.process_time() - c0) * 1000.0)
    return times, cpu_times


def model_specs(only: list[str] | None, all_variants: bool, skip_sanity: bool) -> list[str]:
    """Model specs (``name`` or ``name@variant``) to time, in registry order."""
    from cals_bench.enhancer import describe, registry

    specs = []
    for name, entry in registry().items():
        if only and not any(fnmatch.fnmatch(name, pattern) for pattern in only):
            continue
        if skip_sanity and entry.cls is not None and getattr(entry.cls, "sanity", False):
            continue
        variants = describe(entry)["variants"] if all_variants else []
        specs.extend([f"{name}@{v}" for v in variants] or [name])
    return specs


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def measure(spec: str, devices: list[str], low, high, repeats: int) -> dict[str, Any]:
    """One table row: parameters and per-device median/min ms, or why the model is unavailable."""
    from cals_bench.enhancer import load_enhancer

    try:
        model = load_enhancer(spec)
    except Exception as exc:  # reported in the table; one broken model never hides the others
        return {"model": spec, "status": "unavailable", "reason": one_line(exc)}
    row: dict[str, Any] = {
        "model": spec,
        "status": "ok",
        "params": model.parameter_count(),
        "pad_multiple": max(1, int(getattr(model, "pad_multiple", 1) or 1)),
        "uses_ground_truth": bool(model.uses_ground_truth),
    }
    for dev in devices:
        try:
            times, cpu_times = time_model(model, low, high, torch.device(dev), repeats)
        except Exception as exc:
            row[dev] = {"status": "failed", "reason": one_line(exc)}
            continue
        row[dev] = {
            "status": "ok",
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "runs": times,
        }
        if dev == "cpu":
            row[dev]["cpu_time_median_ms"] = statistics.median(cpu_times)
            row[dev]["cpu_time_runs"] = cpu_times
    model.to("cpu")
    return row


def format_table(rows: list[dict[str, Any]], devices: list[str]) -> str:
    head = f"{'model':<28}{'params':>11}{'pad':>5}" + "".join(
        f"{d + ' ms: median (min)':>26}" + (f"{'cpu-time ms':>14}" if d == "cpu" else "") for d in devices
    )
    lines = [head, "-" * len(head)]
    notes = []
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"{row['model']:<28}{'unavailable':>11}     {row['reason']}")
            continue
        label = row["model"] + (" [GT]" if row["uses_ground_truth"] else "")
        line = f"{label:<28}{row['params']:>11,}{row['pad_multiple']:>5}"
        for dev in devices:
            cell = row[dev]
            if cell["status"] == "ok":
                line += f"{cell['median_ms']:>16.1f} ({cell['min_ms']:.1f})".rjust(26)
                if dev == "cpu":
                    line += f"{cell['cpu_time_median_ms']:>14.1f}"
            else:
                line += f"{'failed':>26}" + (f"{'':>14}" if dev == "cpu" else "")
                notes.append(f"  {row['model']} on {dev}: {cell['reason']}")
        lines.append(line)
    return "\n".join(lines + notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--lol", default=str(SHARED / "data/lol-v1"), help="LOL-v1 root holding eval15/{low,high}"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per model and device (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--only", nargs="*", default=None, help="registry names or globs (default: every model)")
    ap.add_argument(
        "--all-variants", action="store_true", help="time every variant, not only the default one"
    )
    ap.add_argument(
        "--skip-sanity", action="store_true", help="leave out the sanity rows (identity, gamma, ...)"
    )
    ap.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when available")
    ap.add_argument("--weights", default=None, help="a weights folder (sets CALS_BENCH_WEIGHTS)")
    ap.add_argument("--offline", action="store_true", help="never download weights (CALS_BENCH_OFFLINE=1)")
    ap.add_argument(
        "--json", default=None, help="also write every row (with all run times) to this JSON file"
    )
    args = ap.parse_args()
    if args.weights:
        os.environ["CALS_BENCH_WEIGHTS"] = args.weights
    elif not os.environ.get("CALS_BENCH_WEIGHTS") and (SHARED / "weights").is_dir():
        os.environ["CALS_BENCH_WEIGHTS"] = str(SHARED / "weights")
    if args.offline:
        os.environ["CALS_BENCH_OFFLINE"] = "1"
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        ap.error("--devices cuda requested but torch.cuda.is_available() is False")

    from cals_bench.enhancer import import_errors

    low, high, source = lol_pair(Path(args.lol))
    specs = model_specs(args.only, args.all_variants, args.skip_sanity)
    unmatched = [p for p in args.only or [] if not any(fnmatch.fnmatch(s.split("@")[0], p) for s in specs)]
    rows = [measure(spec, devices, low, high, args.repeats) for spec in specs]

    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = "/".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"
    print(
        f"Enhancer time per 600x400 image: median (min) of {args.repeats} calls after one warm-up, padding "
        f"included; torch {torch.__version__}, {args.threads} CPU threads; input: {source}; "
        f"load average at the end {load}"
    )
    if "cuda" in devices:
        print(f"CUDA: {torch.cuda.get_device_name()}")
    print(format_table(rows, devices))
    for pattern in unmatched:
        print(f"--only {pattern!r} matched no registered model")
    errors = import_errors()
    for module, error in errors.items():
        print(f"module {module} did not import (its models are missing above): {error}")
    if args.json:
        payload = {
            "input": source,
            "threads": args.threads,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "load_average": load,
            "rows": rows,
            "import_errors": errors,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
