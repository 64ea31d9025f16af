"""Time LPIPS-alex per 600x400 pair: ours cold / with a warm reference cache, against the peer libraries.

Pairs: the 15 LOL-v1 eval15 pairs (``low`` as the "output", ``high`` as the reference), one pair per call
(batch 1), float32 on the CPU under ``torch.inference_mode()``. Rows:

- ``cals-bench, no cache``: two backbone passes per pair (output and reference), as the peers do;
- ``cals-bench, cold cache``: the first model scored on a protocol (both passes, and the reference features
  are written to the on-disk cache);
- ``cals-bench, warm cache (disk)``: a later model in a fresh process (a new ``FeatureCache`` on the same
  folder, nothing in memory): one backbone pass plus reading the reference features from disk;
- ``cals-bench, warm cache (memory)``: a later model in the same process (the in-memory LRU holds them);
- ``lpips <version>``: the ``lpips`` package's ``LPIPS(net="alex")`` forward pass;
- ``torchmetrics <version>``: torchmetrics' LPIPS network (``_NoTrainLpips``) forward pass.
Both peers need torchvision for the AlexNet module and download its ImageNet weights through torchvision;
offline, they are built with ``pnet_rand=True`` and the same ``backbone/alexnet-features`` tensors are
loaded into their slices (their own v0.1 heads are kept). A peer that cannot be imported is listed with the
import error (in the project venv: neither imports, since torchvision is kept out of it).

Each configuration is timed over the 15 pairs, ``--repeats`` times, configurations interleaved round-robin
so that load from other processes hits them alike; the table gives the median over repeats of the mean
ms per pair. Every value is compared with our cold value of the same pair (max |difference|).

To run the peers, use a Python that can import them next to CPU torch, e.g. a throw-away venv outside the
repo (never the project venv):
    python -m venv /tmp/peer/venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/peer/venv/lib/python3.11/site-packages/main.pth
    /tmp/peer/venv/bin/pip install --no-deps torchvision==0.28.0 lpips==0.1.4
PyPI's torchvision wheel is a CUDA build whose C ops do not load beside CPU torch, and ``import torchvision``
then fails registering meta kernels for those ops; skipping ``_meta_registrations`` and
``_autograd_registrations`` in ``torchvision/__init__.py`` when ``extension._has_ops()`` is False makes it
import (LPIPS uses only plain nn layers from it). Then:

    python benchmarks/lpips_speed.py [--repeats 5] [--threads 2] [--lol DIR] [--json out.json]
    PYTHONPATH=. /tmp/peer/venv/bin/python benchmarks/lpips_speed.py ...   # with the peers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import SHARED, add_common_args, apply_common

CLOCK: Callable[[], float] = time.perf_counter


def load_pairs(lol: Path) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
    from cals_bench.data.io import read_rgb, to_tensor

    names = sorted(p.name for p in (lol / "eval15" / "high").iterdir())
    low = [to_tensor(read_rgb(lol / "eval15" / "low" / n))[None] for n in names]
    high = [to_tensor(read_rgb(lol / "eval15" / "high" / n))[None] for n in names]
    return names, low, high


def backbone_state() -> dict[str, torch.Tensor]:
    from cals_bench import weights

    state, _ = weights.load_torch("backbone/alexnet-features")
    return state


def _load_slices(slices_module: torch.nn.Module, features: dict[str, torch.Tensor]) -> None:
    """Peers keep torchvision's features.N modules inside slice1..5 under the same index N."""
    sd = {}
    for key in slices_module.state_dict():
        _, idx, param = key.split(".")
        sd[key] = features[f"features.{idx}.{param}"]
    slices_module.load_state_dict(sd, strict=True)


def peer_lpips() -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    import lpips

    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    _load_slices(model.net, backbone_state())
    version = getattr(lpips, "__version__", "0.1.4")
    return f"lpips {version}", lambda out, ref: model(out, ref, normalize=True).flatten()


def peer_torchmetrics() -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    import torchmetrics
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    model = _NoTrainLpips(net="alex", pnet_rand=True).eval()
    _load_slices(model.net, backbone_state())
    return f"torchmetrics {torchmetrics.__version__}", lambda out, ref: model(
        out, ref, normalize=True
    ).flatten()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lol", type=Path, default=SHARED / "data" / "lol-v1")
    ap.add_argument("--repeats", type=int, default=5)
    add_common_args(ap)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    global CLOCK
    CLOCK = apply_common(args)

    from cals_bench.cache import FeatureCache
    from cals_bench.metrics import SampleContext, build_metric

    names, low, high = load_pairs(args.lol)
    ctxs = [[SampleContext(sample_id=n, reference_key=f"lol-v1/eval15/high/{n}")] for n in names]
    cold_root = Path(tempfile.mkdtemp(prefix="lpips-bench-cold-"))
    warm_root = Path(tempfile.mkdtemp(prefix="lpips-bench-warm-"))

    def ours(cache_mode: str) -> Callable[[int], float]:
        metric = build_metric("lpips")
        metric.load_model()
        if cache_mode == "warm cache (memory)":  # one cache instance, filled before timing
            metric.attach_cache(FeatureCache(warm_root, memory_bytes=2**30))
            for i in range(len(names)):
                metric.score_batch(low[i], high[i], ctxs[i])

        def run(i: int) -> float:
            if i == 0 and cache_mode == "cold cache":  # an empty cache each repeat
                FeatureCache(cold_root).clear()
                metric.attach_cache(FeatureCache(cold_root))
            elif i == 0 and cache_mode == "warm cache (disk)":  # a fresh process: nothing in memory
                metric.attach_cache(FeatureCache(warm_root, memory_bytes=0))
            return metric.score_batch(low[i], high[i], ctxs[i])[0]["lpips"]

        return run

    configs: dict[str, Callable[[int], float]] = {}
    unavailable: dict[str, str] = {}
    configs["cals-bench, no cache"] = ours("no cache")
    configs["cals-bench, cold cache"] = ours("cold cache")
    filler = build_metric("lpips")  # the warm rows need the references cached: one cold pass
    filler.attach_cache(FeatureCache(warm_root))
    for i in range(len(names)):
        filler.score_batch(low[i], high[i], ctxs[i])
    configs["cals-bench, warm cache (disk)"] = ours("warm cache (disk)")
    configs["cals-bench, warm cache (memory)"] = ours("warm cache (memory)")
    for label, build in (("lpips", peer_lpips), ("torchmetrics", peer_torchmetrics)):
        try:
            name, fn = build()
        except Exception as exc:  # reported in the table
            unavailable[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            continue
        configs[name] = lambda i, fn=fn: float(fn(low[i], high[i])[0])

    values: dict[str, list[float]] = {k: [0.0] * len(names) for k in configs}
    times: dict[str, list[float]] = {k: [] for k in configs}
    with torch.inference_mode():
        for label in configs:  # warm-up (first-call allocations), not timed
            values[label][0] = configs[label](0)
        for _ in range(args.repeats):
            for label, fn in configs.items():
                # the cold/disk rows restart their cache at pair 0 (clear / fresh instance), inside the timing
                t0 = CLOCK()
                for i in range(len(names)):
                    values[label][i] = fn(i)
                times[label].append((CLOCK() - t0) * 1000 / len(names))

    cold = values["cals-bench, cold cache"]
    ms = {k: statistics.median(v) for k, v in times.items()}
    peers = [k for k in configs if not k.startswith("cals-bench")]
    fastest_peer = min(peers, key=ms.get) if peers else None
    base = fastest_peer or "cals-bench, no cache"
    entry = next(warm_root.rglob("*.npz"))
    print(
        f"LPIPS-alex, {len(names)} LOL-v1 pairs 600x400, batch 1, CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}, {args.repeats} repeats (median), {args.clock} clock"
    )
    print(
        f"{'implementation':<34}{'ms/pair':>9}{'vs ' + ('fastest peer' if fastest_peer else 'no cache'):>20}"
        f"{'max |d - ours cold|':>22}"
    )
    for label in configs:
        diff = max(abs(a - b) for a, b in zip(values[label], cold))
        print(f"{label:<34}{ms[label]:>9.1f}{ms[label] / ms[base]:>19.2f}x{diff:>22.2e}")
    for label, why in unavailable.items():
        print(f"{label:<34}{'unavailable':>9}  {why}")
    warm = max(abs(a - b) for a, b in zip(values["cals-bench, warm cache (disk)"], cold))
    print(f"warm-cache values equal the cold ones within 1e-4: {warm < 1e-4} (max {warm:.1e})")
    print(f"target warm (disk) <= 0.6x {base}: {ms['cals-bench, warm cache (disk)'] <= 0.6 * ms[base]}")
    print(
        f"cache: {entry.stat().st_size / 2**20:.1f} MiB on disk per 600x400 reference (float32 normalised "
        f"maps of 5 layers); peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"ms_per_pair": ms, "unavailable": unavailable, "values": values}, indent=1)
        )
    FeatureCache(cold_root).clear()
    FeatureCache(warm_root).clear()


if __name__ == "__main__":
    main()
