"""Peak memory of a whole ``cals-bench run`` on the UTKFace protocol as the number of samples grows.

Each row is one fresh child process, ``cals-bench run --protocol utkface --model identity`` (PSNR, SSIM,
LPIPS, identity similarity, GPI features, the audit and, unless ``--no-report``, the HTML report) on a
data root holding the first N faces of ``shared/data/utkface`` (symbolic links to the images and the
matching rows of ``attributes.csv``, in file-name order), with a fresh results folder. Peak RSS is the
child's ``ru_maxrss`` (``os.wait4``), so it covers every byte the run ever held at once, the report
included; CPU seconds are the child's user + system time.

The protocol scores the test part of its seeded split (about 20% of the faces in the data root). With
``--all-test`` the rows use a copy of the protocol whose split puts every face in the test part
(fractions 0/0/1, written to the work folder), so that N faces in the root are N scored samples, up to all
9,778.

    python benchmarks/memory_budget.py --sizes 500 2000 9778 [--all-test] [--no-report] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import SHARED

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
CLI = Path(sys.executable).parent / "cals-bench"


def subset_root(source: Path, work: Path, n: int) -> Path:
    """A data root with the first ``n`` faces of ``source`` (links) and their attributes.csv rows."""
    root = work / f"utkface-{n}"
    images = root / "images"
    if images.is_dir() and len(list(images.iterdir())) == n:
        return root
    images.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in (source / "images").iterdir())[:n]
    for name in names:
        link = images / name
        if not link.exists():
            link.symlink_to(source / "images" / name)
    keep = set(names)
    with (
        open(source / "attributes.csv", newline="") as f,
        open(root / "attributes.csv", "w", newline="") as g,
    ):
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(row for row in reader if row["image"] in keep)
    return root


def all_test_protocol(work: Path) -> Path:
    """The utkface protocol with every face in the test part (split fractions 0/0/1), as a YAML file."""
    import yaml

    try:
        import cals_bench.protocols as shipped

        folder = Path(shipped.__file__).parent
    except ImportError:
        folder = REPO / "protocols"
    spec = yaml.safe_load((folder / "utkface.yaml").read_text())
    spec["name"] = "utkface-all-test"
    spec["dataset"]["split"]["fractions"] = [0.0, 0.0, 1.0]
    path = work / "utkface-all-test.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _poll_rss(pid: int, results: Path, peaks: dict, log: Path, stop: threading.Event) -> None:
    """Every 2 s: the child's anonymous and file-backed resident memory (kB, /proc/PID/status) and the
    number of outputs written so far (how far scoring is), into ``peaks`` and one line each in ``log``."""
    with open(log, "w") as f:
        while not stop.wait(2.0):
            try:
                with open(f"/proc/{pid}/status") as status:
                    fields = dict(line.split(":", 1) for line in status)
            except (OSError, ValueError):
                return
            now = {k: int(fields.get(k, "0 kB").split()[0]) for k in peaks}
            for k, v in now.items():
                peaks[k] = max(peaks[k], v)
            done = sum(1 for _ in results.glob("runs/*/outputs/*.png"))
            f.write(f"{time.time():.0f} {done} {now['RssAnon']} {now['RssFile']}\n")
            f.flush()


def measure(protocol: str, root: Path, results: Path, report: bool) -> dict:
    cmd = [str(CLI), "run", "--protocol", protocol, "--model", "identity", "--data-root", str(root)]
    cmd += ["--results", str(results), "--device", "cpu", "--quiet", "--json"]
    if not report:
        cmd.append("--no-report")
    t0 = time.perf_counter()
    peaks = {"RssAnon": 0, "RssFile": 0}
    log = results.parent / f"{results.name}.rss"
    with (
        open(results.parent / f"{results.name}.out", "w") as out,
        open(results.parent / f"{results.name}.err", "w") as err,
    ):
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        stop = threading.Event()
        poller = threading.Thread(target=_poll_rss, args=(proc.pid, results, peaks, log, stop), daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        poller.join()
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    summary = (results.parent / f"{results.name}.out").read_text().strip().splitlines()
    n = None
    if summary:
        try:
            n = json.loads(summary[-1]).get("n_samples")
        except (json.JSONDecodeError, AttributeError):
            n = None
    return {
        "exit": code,
        "samples": n,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "peak_anon_mb": peaks["RssAnon"] / 1024,
        "peak_file_mb": peaks["RssFile"] / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "utkface")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 9778])
    ap.add_argument("--all-test", action="store_true", help="every face in the root is a scored sample")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if (SHARED / "weights").is_dir():
        os.environ.setdefault("CALS_BENCH_WEIGHTS", str(SHARED / "weights"))
    work = args.work or Path(tempfile.mkdtemp(prefix="memory-budget-"))
    work.mkdir(parents=True, exist_ok=True)
    protocol = str(all_test_protocol(work)) if args.all_test else "utkface"
    rows = []
    for n in args.sizes:
        root = subset_root(args.data, work, n)
        row = {"faces": n, **measure(protocol, root, work / f"results-{n}-{len(rows)}", not args.no_report)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("\n| samples scored | peak RSS (MB) | peak anonymous / file-backed (MB) | CPU s | wall s | exit |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['samples']} | {r['peak_rss_mb']:.0f} | {r['peak_anon_mb']:.0f} / {r['peak_file_mb']:.0f} "
            f"| {r['cpu_s']:.0f} | {r['wall_s']:.0f} | {r['exit']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
