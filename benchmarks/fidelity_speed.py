"""Time PSNR and SSIM per 600x400 LOL-v1 pair: ours vs scikit-image, torchmetrics and piq, in one run.

Each peer is configured like ours (data range 255, Gaussian 11x11 sigma 1.5 SSIM; piq's SSIM without its
default 2x downsampling) and its value is printed beside ours so like is compared with like. Peers that do
not import here (piq needs torchvision, absent on CPU-only torch) are reported as such.

    python benchmarks/fidelity_speed.py [--lol DIR] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _common import SHARED, add_common_args, apply_common

from cals_bench.data.io import read_rgb, to_tensor
from cals_bench.metrics.fidelity import peak_signal_noise_ratio, structural_similarity

CLOCK = time.perf_counter


def timed(fn, pairs, repeats):
    """Median over repeats of the mean time per pair (ms), and the values of the last pass.

    ``--clock cpu`` uses this process's CPU time (robust on a machine other jobs keep busy; it counts
    all threads, so it favours no implementation); ``wall`` (default) is elapsed time.
    """
    fn(*pairs[0])  # warm-up
    per_pass = []
    for _ in range(repeats):
        t0 = CLOCK()
        values = [float(fn(*p)) for p in pairs]
        per_pass.append((CLOCK() - t0) / len(pairs) * 1000)
    return statistics.median(per_pass), values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lol", default=str(SHARED / "data" / "lol-v1"))
    ap.add_argument("--repeats", type=int, default=5)
    add_common_args(ap, threads=2)
    args = ap.parse_args()
    global CLOCK
    CLOCK = apply_common(args)
    root = Path(args.lol) / "eval15"
    names = sorted(p.name for p in (root / "low").iterdir())
    np_pairs = [(read_rgb(root / "low" / n), read_rgb(root / "high" / n)) for n in names]
    t_pairs = [(to_tensor(a)[None], to_tensor(b)[None]) for a, b in np_pairs]
    t255 = [(a.double() * 255, b.double() * 255) for a, b in t_pairs]

    rows = []  # (metric, impl, ms, values)
    rows.append(
        ("psnr", "cals-bench", *timed(lambda a, b: peak_signal_noise_ratio(a, b)[0], t_pairs, args.repeats))
    )
    rows.append(
        ("ssim", "cals-bench", *timed(lambda a, b: structural_similarity(a, b)[0], t_pairs, args.repeats))
    )

    from skimage.metrics import peak_signal_noise_ratio as sk_psnr
    from skimage.metrics import structural_similarity as sk_ssim

    rows.append(
        ("psnr", "skimage", *timed(lambda a, b: sk_psnr(b, a, data_range=255), np_pairs, args.repeats))
    )
    rows.append(
        (
            "ssim",
            "skimage",
            *timed(
                lambda a, b: sk_ssim(
                    a,
                    b,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=255,
                    channel_axis=2,
                ),
                np_pairs,
                args.repeats,
            ),
        )
    )
    missing = {}
    try:
        from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

        rows.append(
            ("psnr", "torchmetrics", *timed(lambda a, b: tm_psnr(a, b, data_range=255.0), t255, args.repeats))
        )
        # torchmetrics' float64 SSIM takes ~10 s per pair on CPU; its usual float32 form is timed.
        t255f = [(a.float(), b.float()) for a, b in t255]
        rows.append(
            (
                "ssim",
                "torchmetrics (f32)",
                *timed(
                    lambda a, b: tm_ssim(a, b, gaussian_kernel=True, sigma=1.5, data_range=255.0),
                    t255f,
                    args.repeats,
                ),
            )
        )
    except Exception as exc:
        missing["torchmetrics"] = f"{type(exc).__name__}: {exc}"
    try:
        import piq

        t1 = [(a, b) for a, b in t_pairs]
        rows.append(("psnr", "piq", *timed(lambda a, b: piq.psnr(a, b, data_range=1.0), t1, args.repeats)))
        rows.append(
            (
                "ssim",
                "piq (no downsample)",
                *timed(
                    lambda a, b: piq.ssim(
                        a, b, data_range=1.0, downsample=False, kernel_size=11, kernel_sigma=1.5
                    ),
                    t1,
                    args.repeats,
                ),
            )
        )
    except Exception as exc:
        missing["piq"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"

    print(
        f"{len(np_pairs)} LOL-v1 pairs, 600x400, torch threads {args.threads}, median of {args.repeats} passes, "
        f"{args.clock} clock\n"
    )
    print(
        f"{'metric':<6} {'implementation':<22} {'ms/pair':>9} {'ours/peer':>10} {'mean value':>12} {'max |diff| vs ours':>19}"
    )
    ours = {m: (ms, vals) for m, impl, ms, vals in rows if impl == "cals-bench"}
    for metric, impl, ms, vals in rows:
        o_ms, o_vals = ours[metric]
        ratio = o_ms / ms
        diff = max(abs(x - y) for x, y in zip(vals, o_vals))
        print(f"{metric:<6} {impl:<22} {ms:9.2f} {ratio:10.2f} {np.mean(vals):12.6f} {diff:19.2e}")
    for name, why in missing.items():
        print(f"{name}: not importable here ({why})")


if __name__ == "__main__":
    main()
