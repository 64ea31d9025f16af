"""End-to-end evaluation throughput: the suite's marginal cost per 600x400 pair against a plain-script peer.

What is timed (each in a fresh child process, so nothing is shared between rows):

- ``cals-bench, cold cache``: ``engine.evaluate`` of the identity model on the ``paired-folder`` protocol
  (PSNR + SSIM + LPIPS-alex, outputs saved as PNG, records written to a fresh store): the first model
  scored on a protocol, so both LPIPS backbone passes run and the reference features are written to the
  on-disk reference cache;
- ``cals-bench, warm cache``: the same run again with ``force=True`` in a fresh process on the same store:
  a later model, whose references' LPIPS features come from the on-disk cache (one backbone pass);
- ``peers (plain script)``: what a user would write with the peer libraries, reading the same PNGs:
  NumPy PSNR (8-bit, data range 255), scikit-image ``structural_similarity`` (Gaussian 11/1.5, no sample
  covariance, RGB, data range 255) and a minimal torch LPIPS v0.1 (AlexNet from ``torch.nn.functional``
  on the same ``backbone/alexnet-features`` and ``lpips/v0.1-alex`` tensors). torchmetrics' LPIPS needs
  torchvision, which the project venv does not hold, hence the minimal one.

Marginal cost per pair = (CPU seconds of a run on N_big pairs - CPU seconds on N_small pairs) /
(N_big - N_small): fixed costs (weights, store, start-up) cancel. The pairs are distinct: the 15 LOL-v1
eval15 pairs and their horizontal / vertical / both flips (60 pairs, written once to a temporary folder).
``--clock cpu`` (the default here) reads the child's process CPU time, which a loaded machine disturbs far
less than wall time; torch runs on ``--threads`` threads (default 1) in every row.

Fixed costs: ``cals-bench --help`` (CPU and wall seconds of the whole child process, from
``getrusage(RUSAGE_CHILDREN)``) and ``cals-bench run`` start-up: the CPU and wall seconds from process start
until the engine starts the first sample (the real CLI, one-pair folder, with ``engine._score`` wrapped to
stamp the moment).

    python benchmarks/eval_throughput.py [--small 15 --big 60] [--repeats 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
PY = sys.executable


# ------------------------------------------------------------------------------------------------------------
# data


def make_pairs(lol: Path, out: Path, n: int) -> Path:
    """A paired folder (low/, high/) of ``n`` distinct 600x400 pairs: LOL-v1 eval15 and its flips."""
    import numpy as np
    from PIL import Image

    folder = out / f"pairs{n}"
    if (folder / "high").is_dir() and len(list((folder / "high").iterdir())) == n:
        return folder
    (folder / "low").mkdir(parents=True, exist_ok=True)
    (folder / "high").mkdir(parents=True, exist_ok=True)
    names = sorted((lol / "eval15" / "high").iterdir(), key=lambda p: p.name)
    flips = [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]]
    k = 0
    for flip_i, flip in enumerate(flips):
        for p in names:
            if k >= n:
                return folder
            for side in ("low", "high"):
                arr = np.asarray(Image.open(lol / "eval15" / side / p.name).convert("RGB"))
                img = Image.fromarray(np.ascontiguousarray(flip(arr)))
                img.save(folder / side / f"f{flip_i}_{p.stem}.png", compress_level=1)
            k += 1
    return folder


# ------------------------------------------------------------------------------------------------------------
# workers (run in a child process; print one JSON line)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass


def worker_ours(folder: Path, results: Path, force: bool, threads: int) -> dict:
    import torch  # noqa: F401 - imported before the clock starts, as in any run

    _threads(threads)
    from cals_bench import protocol
    from cals_bench.engine import evaluate
    from cals_bench.store import Store

    proto = protocol.load("paired-folder")
    store = Store(results)
    c0, w0 = time.process_time(), time.perf_counter()
    result = evaluate(proto, "identity", {}, data_root=folder, store=store, force=force, progress=False)
    c1, w1 = time.process_time(), time.perf_counter()
    return {"cpu": c1 - c0, "wall": w1 - w0, "summary": result.summary, "n": result.meta["n_samples"]}


def worker_peers(folder: Path, threads: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from skimage.metrics import structural_similarity

    _threads(threads)
    from cals_bench import weights

    c0, w0 = time.process_time(), time.perf_counter()
    backbone = weights.torch_load_tensors(weights.resolve("backbone/alexnet-features", download=False).path)
    heads_sd = weights.torch_load_tensors(weights.resolve("lpips/v0.1-alex", download=False).path)
    convs = [(0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1)]  # (index, stride, padding)
    heads = [heads_sd[f"lin{k}.model.1.weight"].flatten() for k in range(5)]
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def alex(x):
        x = (x * 2 - 1 - shift) / scale
        feats = []
        for k, (i, stride, pad) in enumerate(convs):
            if k in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(
                F.conv2d(x, backbone[f"features.{i}.weight"], backbone[f"features.{i}.bias"], stride, pad)
            )
            feats.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return feats

    def lpips(a, b):
        fa, fb = alex(a), alex(b)
        return sum(((u - v) ** 2 * w.view(1, -1, 1, 1)).sum(1).mean() for u, v, w in zip(fa, fb, heads))

    values = []
    names = sorted(p.name for p in (folder / "high").iterdir())
    with torch.inference_mode():
        for name in names:
            out = np.asarray(Image.open(folder / "low" / name).convert("RGB"))
            ref = np.asarray(Image.open(folder / "high" / name).convert("RGB"))
            mse = np.mean((out.astype(np.float64) - ref.astype(np.float64)) ** 2)
            psnr = 10 * np.log10(255.0**2 / mse)
            ssim = structural_similarity(
                out, ref, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )  # fmt: skip
            t0 = torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255
            t1 = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255
            values.append((float(psnr), float(ssim), float(lpips(t0, t1))))
    c1, w1 = time.process_time(), time.perf_counter()
    means = np.mean(np.asarray(values), axis=0)
    return {"cpu": c1 - c0, "wall": w1 - w0, "n": len(names), "means": [float(v) for v in means]}


def worker_startup(folder: Path, results: Path, threads: int) -> dict:
    """CPU/wall seconds from process start to the engine's first sample, through the real CLI."""
    t_start = float(os.environ["EVAL_THROUGHPUT_T0"])
    stamp: dict = {}
    import cals_bench.engine as engine_mod  # the CLI imports it anyway; wrapping needs it

    real = engine_mod._score

    def stamped(*a, **k):
        if not stamp:
            stamp.update(cpu=time.process_time(), wall=time.time() - t_start)
        return real(*a, **k)

    engine_mod._score = stamped
    from cals_bench.cli import main

    argv = ["run", "--protocol", "paired-folder", "--data-root", str(folder), "--results", str(results)]
    with contextlib.suppress(SystemExit):
        main([*argv, "--quiet", "--no-report"], standalone_mode=False)
    return stamp


def run_child(args: list[str], env: dict | None = None) -> dict:
    e = {**os.environ, **(env or {})}
    out = subprocess.run([PY, str(HERE), *args], capture_output=True, text=True, env=e, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_cost(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of a whole child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


# ------------------------------------------------------------------------------------------------------------
# driver


def stages(lol: Path, threads: int) -> dict[str, float]:
    """CPU ms per 600x400 pair of each stage of the suite's per-pair path (LOL-v1 eval15, batch 1,
    median over the 15 pairs): what the marginal cost is made of."""
    import numpy as np
    import torch

    _threads(threads)
    from cals_bench.cache import FeatureCache
    from cals_bench.data.io import decoded_images, read_rgb, to_tensor, to_uint8, write_png
    from cals_bench.metrics import SampleContext, build_metric, quantize

    names = sorted(p.name for p in (lol / "eval15" / "high").iterdir())
    psnr, ssim, lp = build_metric("psnr"), build_metric("ssim"), build_metric("lpips")
    lp.load_model()
    work = Path(tempfile.mkdtemp(prefix="eval-stages-"))
    cold_cache = FeatureCache(work / "cache")
    times: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def timed(name):
        c0 = time.process_time()
        yield
        times.setdefault(name, []).append((time.process_time() - c0) * 1000)

    for name in names:
        paths = (lol / "eval15" / "low" / name, lol / "eval15" / "high" / name)
        with timed("decode 2 PNGs"):
            low, high = read_rgb(paths[0]), read_rgb(paths[1])
        with decoded_images(cold_cache), timed("decode 2 PNGs, cold (+ decoded-pixels cache write)"):
            read_rgb(paths[0]), read_rgb(paths[1])
        with decoded_images(FeatureCache(work / "cache")), timed("2 PNGs warm (decoded-pixels cache read)"):
            read_rgb(paths[0]), read_rgb(paths[1])
        with timed("to tensors"):
            x, y = to_tensor(low)[None], to_tensor(high)[None]
        with timed("quantize output"):
            out = quantize(x)
        ctx = [SampleContext(name, f"stages:{name}", x[0], {})]
        with timed("psnr"):
            psnr.score_batch(out, y, ctx)
        with timed("ssim"):
            ssim.score_batch(out, y, ctx)
        lp.attach_cache(cold_cache)
        with timed("lpips cold (2 passes, cache write)"):
            lp.score_batch(out, y, ctx)
        lp.attach_cache(FeatureCache(work / "cache"))  # a later model in a fresh process: disk hit
        with timed("lpips warm (1 pass, cache read)"):
            lp.score_batch(out, y, ctx)
        with timed("encode output PNG"):
            write_png(work / "out.png", to_uint8(out[0]))
    return {k: float(np.median(v)) for k, v in times.items()} | {"torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lol", type=Path, default=SHARED / "data" / "lol-v1")
    ap.add_argument("--small", type=int, default=15)
    ap.add_argument("--big", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--skip-startup", action="store_true", help="only the per-pair rows")
    ap.add_argument("--only-startup", action="store_true", help="only --help and run start-up")
    ap.add_argument("--stages", action="store_true", help="only the per-stage CPU ms of one pair")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="folder for the pairs and stores (default: temp)")
    ap.add_argument("--worker", choices=("ours", "peers", "startup"), help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if (SHARED / "weights").is_dir():
        os.environ.setdefault("CALS_BENCH_WEIGHTS", str(SHARED / "weights"))

    if args.stages:
        print(json.dumps(stages(args.lol, args.threads), indent=2))
        return
    if args.worker == "ours":
        print(json.dumps(worker_ours(args.folder, args.results, args.force, args.threads)))
        return
    if args.worker == "peers":
        print(json.dumps(worker_peers(args.folder, args.threads)))
        return
    if args.worker == "startup":
        print(json.dumps(worker_startup(args.folder, args.results, args.threads)))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    folders = {n: make_pairs(args.lol, work, n) for n in (1, args.small, args.big)}
    key = args.clock
    rows: dict[str, list[float]] = {"ours-cold": [], "ours-warm": [], "peers": []}
    check: dict[str, object] = {}
    for rep in range(0 if args.only_startup else args.repeats):
        per: dict[str, dict[int, float]] = {k: {} for k in rows}
        for n in (args.small, args.big):
            common = ["--folder", str(folders[n]), "--threads", str(args.threads)]
            store = work / f"store-{rep}-{n}"
            cold = run_child(["--worker", "ours", "--results", str(store), *common])
            warm = run_child(["--worker", "ours", "--results", str(store), "--force", *common])
            peers = run_child(["--worker", "peers", *common])
            per["ours-cold"][n], per["ours-warm"][n], per["peers"][n] = cold[key], warm[key], peers[key]
            check[f"ours n={n}"] = {m: s["mean"] for m, s in cold["summary"].items()}
            check[f"ours warm n={n}"] = {m: s["mean"] for m, s in warm["summary"].items()}
            check[f"peers n={n}"] = dict(zip(("psnr", "ssim", "lpips"), peers["means"]))
        for k in rows:
            rows[k].append((per[k][args.big] - per[k][args.small]) / (args.big - args.small))
        print(
            f"repeat {rep}: " + ", ".join(f"{k} {rows[k][-1] * 1000:.1f} ms" for k in rows), file=sys.stderr
        )
    med = {k: statistics.median(v) if v else float("nan") for k, v in rows.items()}
    result: dict[str, object] = {
        "clock": key,
        "threads": args.threads,
        "pairs": [args.small, args.big],
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "marginal_ms_per_pair": {k: v * 1000 for k, v in med.items()},
        "all_ms": {k: [x * 1000 for x in v] for k, v in rows.items()},
        "ratio_vs_peers": {k: med[k] / med["peers"] if rows[k] else None for k in ("ours-cold", "ours-warm")},
        "means": check,
    }
    if not args.skip_startup:
        helps = [child_cost([str(Path(PY).parent / "cals-bench"), "--help"]) for _ in range(3)]
        imp = [child_cost([PY, "-c", "import torch"]) for _ in range(3)]
        starts = []
        for i in range(2):
            os.environ["EVAL_THROUGHPUT_T0"] = repr(time.time())
            starts.append(
                run_child(
                    ["--worker", "startup", "--folder", str(folders[1]), "--results", str(work / f"s{i}")]
                )
            )
        result["help_s"] = {"cpu": min(h[0] for h in helps), "wall": min(h[1] for h in helps)}
        result["import_torch_s"] = {"cpu": min(h[0] for h in imp), "wall": min(h[1] for h in imp)}
        result["run_startup_s"] = {
            "cpu": min(s["cpu"] for s in starts),
            "wall": min(s["wall"] for s in starts),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ms = result["marginal_ms_per_pair"]
    if args.only_startup:
        return
    print(f"\n| row | marginal {key} ms/pair | x peers |", file=sys.stderr)
    print("|---|---:|---:|", file=sys.stderr)
    for k in ("ours-cold", "ours-warm", "peers"):
        print(f"| {k} | {ms[k]:.1f} | {med[k] / med['peers']:.2f} |", file=sys.stderr)


if __name__ == "__main__":
    main()
