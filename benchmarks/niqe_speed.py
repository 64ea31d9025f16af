"""Time NIQE and PIQE per 600x400 image (the LOL-v1 eval15 images) on the CPU, and NIQE against a peer.

Peer: BasicSR's NumPy NIQE (``basicsr/metrics/niqe.py``), loaded from a BasicSR checkout given with
``--basicsr DIR`` (its package ``__init__`` imports torchvision, which CPU-only torch lacks, so its three
modules are loaded on their own). pyiqa needs torchvision and is not installable here. Both are fed the same
MATLAB-``rgb2gray`` image, so the values printed side by side differ only by the implementations; the
TID2013 calibration images show each one's distance from the original MATLAB values.

    python benchmarks/niqe_speed.py [--lol DIR] [--repeats 5] [--basicsr DIR] [--clock cpu]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
from _common import SHARED, add_common_args, apply_common

from cals_bench.data.io import read_rgb
from cals_bench.metrics.matlab import rgb2gray
from cals_bench.metrics.niqe import load_pristine, niqe_score
from cals_bench.metrics.piqe import piqe_gray

CLOCK = time.perf_counter


def timed(fn, images, repeats):
    """Median over repeats of the mean time per image (ms), and the values of the last pass."""
    fn(images[0])  # warm-up
    per_pass, values = [], []
    for _ in range(repeats):
        t0 = CLOCK()
        values = [float(fn(im)) for im in images]
        per_pass.append((CLOCK() - t0) / len(images) * 1000)
    return statistics.median(per_pass), values


def basicsr_niqe(src: Path):
    """BasicSR's ``calculate_niqe`` from a checkout, without running its package ``__init__``."""

    def load(name: str, path: Path):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    for pkg in ("basicsr", "basicsr.utils", "basicsr.metrics"):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(src / "basicsr" / pkg.split(".")[-1])] if "." in pkg else [str(src / "basicsr")]
        sys.modules[pkg] = mod
    color = load("basicsr.utils.color_util", src / "basicsr" / "utils" / "color_util.py")
    sys.modules["basicsr.utils"].bgr2ycbcr = color.bgr2ycbcr
    load("basicsr.utils.matlab_functions", src / "basicsr" / "utils" / "matlab_functions.py")
    load("basicsr.utils.registry", src / "basicsr" / "utils" / "registry.py")
    load("basicsr.metrics.metric_util", src / "basicsr" / "metrics" / "metric_util.py")
    niqe = load("basicsr.metrics.niqe", src / "basicsr" / "metrics" / "niqe.py")
    return lambda gray: niqe.calculate_niqe(gray, 0, input_order="HW")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lol", default=str(SHARED / "data" / "lol-v1"))
    ap.add_argument("--calibration", default=str(SHARED / "data" / "iqa-calibration"))
    ap.add_argument("--basicsr", default=None, help="a BasicSR checkout (the folder holding basicsr/)")
    ap.add_argument("--repeats", type=int, default=5)
    add_common_args(ap, threads=1)
    args = ap.parse_args()
    global CLOCK
    CLOCK = apply_common(args)
    root = Path(args.lol) / "eval15"
    grays = [rgb2gray(read_rgb(p)) for d in ("low", "high") for p in sorted((root / d).iterdir())]
    mu, cov, _ = load_pristine()
    impls = {"cals-bench": lambda g: niqe_score(g, mu, cov)}
    if args.basicsr:
        impls["basicsr"] = basicsr_niqe(Path(args.basicsr))
    h, w = grays[0].shape
    print(f"{len(grays)} LOL-v1 images, {w}x{h}, MATLAB rgb2gray; clock {args.clock}; {args.repeats} repeats")
    results = {}
    for name, fn in impls.items():
        ms, values = timed(fn, grays, args.repeats)
        results[name] = values
        print(f"niqe  {name:<11} {ms:8.1f} ms/image   mean NIQE {np.mean(values):.6f}")
    if "basicsr" in results:
        diff = np.abs(np.array(results["basicsr"]) - np.array(results["cals-bench"]))
        print(f"      |basicsr - cals-bench| per image: max {diff.max():.2e}, mean {diff.mean():.2e}")
    ms, _ = timed(piqe_gray, grays, args.repeats)
    print(f"piqe  {'cals-bench':<11} {ms:8.1f} ms/image")

    cal = Path(args.calibration)
    if (cal / "results_official.csv").is_file():
        with open(cal / "results_official.csv", newline="") as f:
            official = next(r for r in csv.DictReader(f) if r["Method"] == "niqe")
        print("TID2013 calibration (MATLAB niqe.m on rgb2gray), |implementation - official|:")
        for stem in ("I03", "I04", "I06", "I08", "I19"):
            g = rgb2gray(read_rgb(cal / "dist_dir" / f"{stem}.bmp"))
            ref = float(official[f"{stem}.bmp"])
            line = "  ".join(f"{n} {abs(float(fn(g)) - ref):.2e}" for n, fn in impls.items())
            print(f"  {stem} official {ref:.4f}  {line}")


if __name__ == "__main__":
    main()
