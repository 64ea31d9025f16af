"""Identity similarity on CPU: ms per face for each stage, cold and with the reference cache warm, and the
same-person / different-person margins over the 56 CelebA-HQ faces.

Faces: ``../shared/data/celebahq-mini/images`` (56 CelebA-HQ 1024x1024 JPEGs), read with cals-bench's
reader and area-resized to ``--size`` (default 256, the CALS protocols' size), on the 8-bit grid.

Timings (median over ``--repeats`` passes over the 56 faces, ms per face):
- ``detect``: YuNet on the reference (capped-size search, see ``cals_bench.face.detect``);
- ``align``: the similarity fit and the 112x112 warp;
- ``embed sface/cv2`` and ``embed sface/onnxruntime`` (one face per call, and 56 per call for onnxruntime);
- ``id_sim cold``: a whole ``score_batch`` per sample with an empty cache (detect the reference, embed the
  reference, the output and the input);
- ``id_sim warm``: the same with the cache filled by an earlier model (only the output is embedded).

Margins (``--margins``, on by default): ``id_sim`` of each face under three mild degradations (gamma 1.5,
Gaussian noise sigma 0.03 seeded, Gaussian blur sigma 1.5) against itself, and of every other face
(56 x 55 ordered pairs, the output warped by the reference's transform as the metric does) against it.
Two identities appear twice among the 56 images (063109/113393 and 020167/060259, the same celebrities;
checked by eye), so those 4 ordered pairs are left out of "different people".

    python benchmarks/identity_speed.py [--size 256] [--repeats 3] [--threads 1] [--no-margins] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import SHARED, add_common_args, apply_common

CLOCK: Callable[[], float] = time.perf_counter
SAME_IDENTITY = {frozenset({"063109.jpg", "113393.jpg"}), frozenset({"020167.jpg", "060259.jpg"})}


def _q(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().div(255)


def load_faces(folder: Path, size: int) -> tuple[list[str], torch.Tensor]:
    from cals_bench.data.io import read_rgb, to_tensor

    files = sorted(folder.glob("*.jpg"))
    imgs = torch.stack([to_tensor(read_rgb(f)) for f in files])
    return [f.name for f in files], _q(F.interpolate(imgs, size=(size, size), mode="area"))


def gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    k = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=3)


def per_item_ms(fn: Callable[[int], object], n: int, repeats: int) -> float:
    fn(0)  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = CLOCK()
        for i in range(n):
            fn(i)
        runs.append((CLOCK() - t0) * 1000 / n)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=SHARED / "data" / "celebahq-mini" / "images")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    add_common_args(ap)
    ap.add_argument("--no-margins", dest="margins", action="store_false")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    global CLOCK
    CLOCK = apply_common(args)
    import cv2

    from cals_bench.cache import FeatureCache
    from cals_bench.face import alignment_matrix, build_recognizer, warp_face
    from cals_bench.face.pipeline import FacePipeline, to_uint8_hwc
    from cals_bench.metrics import SampleContext, build_metric

    names, imgs = load_faces(args.faces, args.size)
    n = len(names)
    rgb = [to_uint8_hwc(x) for x in imgs]
    out = _q(imgs**1.3)
    low = _q(imgs * 0.25)
    ctxs = [[SampleContext(names[i], f"celebahq/{names[i]}@{args.size}", low=low[i])] for i in range(n)]

    pipe = FacePipeline("sface").load()
    searches = [pipe.detector.detect(x) for x in rgb]
    missing = [names[i] for i, s in enumerate(searches) if s.chosen is None]
    matrices = [alignment_matrix(s.chosen.landmarks) if s.chosen else np.eye(2, 3) for s in searches]
    crops = np.stack([warp_face(x, m) for x, m in zip(rgb, matrices)])
    ms: dict[str, float] = {}
    ms["detect (YuNet)"] = per_item_ms(lambda i: pipe.detector.detect(rgb[i]), n, args.repeats)
    ms["align (fit + warp)"] = per_item_ms(
        lambda i: warp_face(rgb[i], alignment_matrix(searches[i].chosen.landmarks)), n, args.repeats
    )
    rec_cv2 = build_recognizer("sface", engine="cv2").load()
    rec_ort = build_recognizer("sface", engine="onnxruntime").load()
    ms["embed sface/cv2, 1 per call"] = per_item_ms(
        lambda i: rec_cv2.embed(crops[i : i + 1]), n, args.repeats
    )
    ms["embed sface/onnxruntime, 1 per call"] = per_item_ms(
        lambda i: rec_ort.embed(crops[i : i + 1]), n, args.repeats
    )
    ms[f"embed sface/onnxruntime, {n} per call"] = (
        per_item_ms(lambda i: rec_ort.embed(crops), 1, args.repeats) / n
    )
    engines_diff = float(np.abs(rec_cv2.embed(crops) - rec_ort.embed(crops)).max())

    roots = []

    def id_sim_run(warm: bool) -> Callable[[int], object]:
        root = Path(tempfile.mkdtemp(prefix="idsim-bench-"))
        roots.append(root)
        if warm:
            filler = build_metric("id_sim")
            filler.attach_cache(FeatureCache(root))
            for i in range(n):
                filler.score_batch(out[i : i + 1], imgs[i : i + 1], ctxs[i])
        metric = build_metric("id_sim")

        def run(i: int) -> object:
            if i == 0:  # a fresh process: nothing in memory; cold: an empty cache
                if not warm:
                    FeatureCache(root).clear()
                metric.pipeline.clear_memory()
                metric.attach_cache(FeatureCache(root, memory_bytes=0))
            return metric.score_batch(out[i : i + 1], imgs[i : i + 1], ctxs[i])

        return run

    ms["id_sim cold (detect, embed ref + output + input)"] = per_item_ms(id_sim_run(False), n, args.repeats)
    ms["id_sim warm cache (embed output)"] = per_item_ms(id_sim_run(True), n, args.repeats)
    for root in roots:
        FeatureCache(root).clear()

    print(
        f"identity similarity, {n} CelebA-HQ faces at {args.size}x{args.size}, CPU, "
        f"OpenCV {cv2.__version__}, "
        f"torch threads {torch.get_num_threads()}, OpenCV threads {cv2.getNumThreads()}, "
        f"load average {os.getloadavg()[0]:.1f}, median of {args.repeats}, {args.clock} clock"
    )
    print(f"faces found: {n - len(missing)}/{n}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    print(f"{'stage':<52}{'ms/face':>9}")
    for label, v in ms.items():
        print(f"{label:<52}{v:>9.1f}")
    print(f"sface cv2 vs onnxruntime: max |embedding difference| {engines_diff:.1e}")
    result = {"ms_per_face": ms, "engines_max_diff": engines_diff}

    if args.margins:
        metric = build_metric("id_sim")
        metric.attach_cache(FeatureCache(tempfile.mkdtemp(prefix="idsim-margins-")))
        all_ctx = [c[0] for c in ctxs]
        g = torch.Generator().manual_seed(0)
        degraded = {
            "gamma 1.5": _q(imgs**1.5),
            "noise sigma 0.03": _q(imgs + 0.03 * torch.randn(imgs.shape, generator=g)),
            "blur sigma 1.5": _q(gauss_blur(imgs, 1.5)),
        }
        same = {
            k: np.array([r["id_sim"] for r in metric.score_batch(d, imgs, all_ctx)])
            for k, d in degraded.items()
        }
        diff = []
        for shift in range(1, n):
            rows = metric.score_batch(imgs.roll(shift, 0), imgs, all_ctx)
            diff += [
                r["id_sim"] for i, r in enumerate(rows) if {names[i], names[i - shift]} not in SAME_IDENTITY
            ]
        diff = np.array(diff)
        emb = pipe.recognizer.embed(crops)
        sims = emb @ emb.T
        known = [sims[names.index(a), names.index(b)] for a, b in (sorted(p) for p in SAME_IDENTITY)]
        print("\nsame person, degraded (id_sim against the clean reference):")
        for k, v in same.items():
            print(f"  {k:<20} min {v.min():.4f}  median {np.median(v):.4f}")
        all_same = np.concatenate(list(same.values()))
        print(
            f"different people ({len(diff)} ordered pairs): max {diff.max():.4f}  "
            f"p99 {np.quantile(diff, 0.99):.4f}  median {np.median(diff):.4f}"
        )
        print(f"margin: min same-person-degraded - max different-person = {all_same.min() - diff.max():.4f}")
        print(
            "the two same-identity pairs left out (own alignment each): "
            + ", ".join(f"{s:.3f}" for s in known)
        )
        result["margins"] = {
            "same_min": {k: float(v.min()) for k, v in same.items()},
            "diff_max": float(diff.max()),
            "diff_median": float(np.median(diff)),
            "margin": float(all_same.min() - diff.max()),
        }
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
