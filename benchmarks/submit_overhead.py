"""Isolation overhead of `cals-bench submit`: LOL-v1 (eval15, 15 pairs, 600x400; PSNR, SSIM, LPIPS-alex)
scored with the in-process `identity` and with a submitted identity wrapper (a file, run in the bubblewrap
worker), in the same Python process, each repeat on a fresh results store (nothing reused or cached).

Reported per repeat and as medians, on the wall clock and in CPU seconds (this process plus every worker
process it waited for, ``RUSAGE_CHILDREN``; steadier than the wall clock on a busy shared machine):
in-process seconds; submitted seconds in total and split into worker
start (process + sandbox + torch import + model load), validation probes, and scoring (the engine loop with
every batch sent to the worker and back). Overhead = submitted / in-process - 1, for the total and for the
scoring part alone. Target (issue 14): < 15% on CPU.

    python benchmarks/submit_overhead.py [--data-root ../shared/data/lol-v1] [--repeats 3] [--threads 2]
                                         [--clock wall] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED, add_common_args, apply_common

WRAPPER = "class Identity:\n    def __call__(self, x):\n        return x.clone()\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(SHARED / "data" / "lol-v1"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    add_common_args(ap, threads=2)
    args = ap.parse_args()
    clock = apply_common(args)

    from cals_bench import protocol as protocol_mod
    from cals_bench.engine import evaluate
    from cals_bench.store import Store
    from cals_bench.submit import flow
    from cals_bench.submit.sandbox import Worker, detect

    iso = detect()
    print(f"isolation: {iso.level} ({iso.detail})", file=sys.stderr)
    proto = protocol_mod.load("lol-v1")
    tmp = Path(tempfile.mkdtemp(prefix="submit-bench-"))
    wrapper_dir = tmp / "wrapper"
    wrapper_dir.mkdir()
    (wrapper_dir / "identity_wrapper.py").write_text(WRAPPER)
    spec = f"{wrapper_dir / 'identity_wrapper.py'}:Identity"

    # time the worker's phases by wrapping its methods (the flow is otherwise unchanged)
    phases: dict[str, float] = {}
    orig_start, orig_handshake = Worker.start, Worker.handshake

    def start(self):
        phases["t_start"] = clock()
        return orig_start(self)

    def handshake(self):
        out = orig_handshake(self)
        phases["worker_start"] = clock() - phases["t_start"]
        phases["t_ready"] = clock()
        return out

    orig_score = flow._score_remote

    def score_remote(*a, **k):
        phases["validation"] = clock() - phases["t_ready"]
        t0 = clock()
        out = orig_score(*a, **k)
        phases["scoring"] = clock() - t0
        return out

    Worker.start, Worker.handshake, flow._score_remote = start, handshake, score_remote

    # warm-up: metric modules, LPIPS weights and the data in the page cache, for both paths alike
    evaluate(proto, "identity", data_root=args.data_root, store=Store(tmp / "warm"), progress=False)

    def cpu() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    rows = []
    for i in range(args.repeats):
        c0, t0 = cpu(), clock()
        a = evaluate(proto, "identity", data_root=args.data_root, store=Store(tmp / f"in{i}"), progress=False)
        t_in, c_in = clock() - t0, cpu() - c0
        c0, t0 = cpu(), clock()
        out = flow.submit_code(
            "lol-v1",
            spec,
            {},
            store=Store(tmp / f"sub{i}"),
            data_root=args.data_root,
            name="identity-wrapper",
            progress=False,
        )
        t_sub, c_sub = clock() - t0, cpu() - c0
        b = out.result
        assert a.summary["psnr"]["mean"] == b.summary["psnr"]["mean"], (
            "submitted identity must score the same"
        )
        row = {
            "in_process_s": t_in,
            "submitted_s": t_sub,
            "worker_start_s": phases["worker_start"],
            "validation_s": phases["validation"],
            "scoring_s": phases["scoring"],
            "in_process_cpu_s": c_in,
            "submitted_cpu_s": c_sub,
        }
        rows.append(row)
        print(json.dumps({k: round(v, 3) for k, v in row.items()}), file=sys.stderr)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["overhead_total"] = med["submitted_s"] / med["in_process_s"] - 1
    med["overhead_scoring"] = med["scoring_s"] / med["in_process_s"] - 1
    med["overhead_cpu"] = med["submitted_cpu_s"] / med["in_process_cpu_s"] - 1
    print(
        f"isolation {iso.level}; threads {args.threads}; clock {args.clock}; {args.repeats} repeats (medians)"
    )
    print(f"in-process identity      {med['in_process_s']:.2f} s")
    print(f"submitted identity       {med['submitted_s']:.2f} s  (overhead {med['overhead_total']:+.1%})")
    print(f"  worker start           {med['worker_start_s']:.2f} s")
    print(f"  validation probes      {med['validation_s']:.2f} s")
    print(f"  scoring through worker {med['scoring_s']:.2f} s  (overhead {med['overhead_scoring']:+.1%})")
    print(
        f"CPU seconds: in-process {med['in_process_cpu_s']:.2f}, submitted {med['submitted_cpu_s']:.2f} "
        f"(overhead {med['overhead_cpu']:+.1%})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"isolation": iso.to_dict(), "repeats": rows, "median": med}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
