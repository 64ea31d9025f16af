"""Training throughput of the IAML task: fp32 eager vs AMP bf16 + channels_last (+ torch.compile).

Measures images per second and peak memory of the engine's own optimisation step
(:class:`cals_bench.train.loop.StepRunner`: forward, backward, clipping, Adam, schedule, EMA teacher) on
random batches already on the device, so the numbers are compute only (data loading is excluded; the
data pipeline runs in DataLoader workers during training).

Run on a GPU (the numbers this is for)::

    python benchmarks/train_speed.py --device cuda --json benchmarks/results/train_speed_h100.json

On the CPU (a smoke run; bf16 autocast on CPUs without AMX is slower than fp32)::

    python benchmarks/train_speed.py --device cpu --crop 64 --batch 4 --width 8 --steps 5 --warmup 2

Peak memory is ``torch.cuda.max_memory_allocated`` per mode on a GPU; on the CPU it is the process's peak
resident set size so far (``ru_maxrss``), which only grows, so later modes include earlier ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from cals_bench.train.config import OptimConfig, RuntimeConfig, ScheduleConfig, load_config
from cals_bench.train.loop import StepRunner, build_optimizer, build_scheduler
from cals_bench.train.tasks import build_model

MODES = {
    "fp32-eager": RuntimeConfig(amp="fp32", channels_last=False, compile=False),
    "bf16-channels_last": RuntimeConfig(amp="bf16", channels_last=True, compile=False),
    "bf16-channels_last-compile": RuntimeConfig(amp="bf16", channels_last=True, compile=True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: str, runtime: RuntimeConfig, args: argparse.Namespace, device: torch.device) -> dict:
    base = load_config(args.config)
    model_cfg = dataclasses.replace(base.model, width=args.width, depth=args.depth)
    torch.manual_seed(0)
    model = build_model(base.task, model_cfg).to(device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if runtime.compile else model
    opt = build_optimizer([p for p in model.parameters() if p.requires_grad], OptimConfig(lr=base.optim.lr))
    sched = build_scheduler(opt, ScheduleConfig(steps=args.warmup + args.steps + 1))
    runner = StepRunner(net, model, opt, sched, runtime, 0.0, device)
    g = torch.Generator().manual_seed(1)
    high = torch.rand(args.batch, 3, args.crop, args.crop, generator=g)
    low = high * 0.15
    low, high = low.to(device), high.to(device)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t_first = time.perf_counter()
    for _ in range(args.warmup):  # includes compilation for the compiled mode
        terms, _ = runner.forward_backward(low, high)
        runner.apply()
    _sync(device)
    warmup_s = time.perf_counter() - t_first
    t0 = time.perf_counter()
    for _ in range(args.steps):
        terms, _ = runner.forward_backward(low, high)
        runner.apply()
    _sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loss = float(terms["loss"])
    return {
        "mode": mode,
        "images_per_s": args.steps * args.batch / seconds,
        "ms_per_step": 1000 * seconds / args.steps,
        "peak_memory_mib": peak,
        "warmup_s": warmup_s,
        "final_loss": loss,
        "finite": bool(torch.isfinite(torch.tensor(loss))),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--config", default="iaml-lol-v1", help="IAML config the model and loss come from")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            ap.error(f"unknown mode {mode!r}")
        if MODES[mode].compile:
            torch._dynamo.reset()
        rows.append(measure(mode, MODES[mode], args, device))
        r = rows[-1]
        line = f"{mode:<28} {r['images_per_s']:9.1f} img/s {r['ms_per_step']:9.1f} ms/step "
        line += f"{r['peak_memory_mib']:9.0f} MiB peak (warm-up {r['warmup_s']:.1f} s, "
        line += f"loss {r['final_loss']:.4f})"
        print(line, file=sys.stderr)
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "crop": args.crop, "batch": args.batch, "width": args.width, "depth": args.depth,
        "steps": args.steps, "warmup": args.warmup,
    }  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "results": rows}, indent=1))
    print(json.dumps({"environment": env, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
