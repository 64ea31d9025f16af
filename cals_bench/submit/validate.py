"""``cals-bench validate``: the model contract checked on probe batches, as a pass/fail checklist.

Checks: the model imports and constructs; shape; float dtype; range [0, 1]; no NaN/Inf; batch-size
independence (a batch of 2 equals the same images one at a time); determinism under a fixed seed; an odd
size (37x53) after the engine's padding to the model's ``pad_multiple``; time and memory per megapixel
(informative). Outputs agree when they differ by at most half an 8-bit step (1/510), the resolution the
suite scores at. The probes are random images from a fixed generator; nothing from a dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from cals_bench.submit.sandbox import Worker, WorkerError

TOLERANCE = 1.0 / 510.0
RANGE_TOLERANCE = 1e-3


@dataclass
class Check:
    """One line of a submission's checklist: a name, pass/fail (None: a figure only) and its detail."""

    name: str
    ok: bool | None  # None: informative figure only
    detail: str

    def line(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "INFO"}[self.ok]
        return f"[{mark}] {self.name:<26} {self.detail}"


def _probe(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def _call(worker: Worker, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    from cals_bench.padding import pad_to_multiple

    xp = pad_to_multiple(x, max(1, min(int(worker.meta.get("pad_multiple") or 1), 256)))
    out = worker.enhance(xp, seed)
    if tuple(out.shape) != tuple(xp.shape):
        raise WorkerError(f"model returned shape {tuple(out.shape)} for input {tuple(xp.shape)}")
    return out[..., : x.shape[-2], : x.shape[-1]]


def run_checks(worker: Worker, *, load_error: str | None = None) -> list[Check]:
    """Run the checklist against a started worker (handshake done unless ``load_error``)."""
    checks: list[Check] = []
    if load_error:
        return [Check("imports and constructs", False, load_error)]
    m = worker.meta
    checks.append(
        Check("imports and constructs", True, f"{m.get('class')} (pad_multiple {m.get('pad_multiple')})")
    )
    if m.get("uses_ground_truth"):
        checks.append(
            Check("blind", False, "declares uses_ground_truth: submissions never receive references")
        )
        return checks
    x = _probe((2, 3, 48, 64), 1)
    try:
        out = _call(worker, x, 0)
    except WorkerError as exc:
        checks.append(Check("runs on a batch", False, exc.reason))
        return checks
    checks.append(Check("shape", True, f"{tuple(out.shape)}"))
    if not out.is_floating_point():
        checks.append(Check("dtype", False, f"{out.dtype}, expected a float tensor"))
        return checks
    checks.append(Check("dtype", True, str(out.dtype)))
    out = out.float()
    finite = bool(torch.isfinite(out).all())
    checks.append(
        Check(
            "no NaN/Inf",
            finite,
            "all finite" if finite else f"{int((~torch.isfinite(out)).sum())} NaN/Inf values",
        )
    )
    if not finite:
        return checks
    lo, hi = float(out.min()), float(out.max())
    in_range = lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE
    checks.append(Check("range [0, 1]", in_range, f"[{lo:.4g}, {hi:.4g}]"))
    try:
        singles = torch.cat([_call(worker, x[i : i + 1], 0).float() for i in range(2)])
        diff = float((singles - out).abs().max())
        checks.append(
            Check("batch-size independent", diff <= TOLERANCE, f"max |batch - single| = {diff:.3g}")
        )
        again = _call(worker, x, 0).float()
        diff = float((again - out).abs().max())
        checks.append(
            Check("deterministic (fixed seed)", diff <= TOLERANCE, f"max |run1 - run2| = {diff:.3g}")
        )
        odd = _call(worker, _probe((1, 3, 37, 53), 2), 0)
        ok = tuple(odd.shape) == (1, 3, 37, 53) and bool(torch.isfinite(odd.float()).all())
        checks.append(
            Check("odd size 37x53 + padding", ok, f"padded to a multiple of {m.get('pad_multiple')}")
        )
        big = _probe((1, 3, 256, 256), 3)
        t0 = time.perf_counter()
        _call(worker, big, 0)
        ms = (time.perf_counter() - t0) * 1000.0
        mp = 256 * 256 / 1e6
        checks.append(
            Check("time per megapixel", None, f"{ms / mp:.0f} ms/MP (256x256 probe, transfer included)")
        )
        peak = worker.peak_rss_kib
        base = m.get("rss_kib")
        mem = f"peak {peak / 1024:.0f} MiB resident" if peak else "not reported"
        if peak and base:
            mem += f"; {(peak - base) / 1024 / mp:.0f} MiB/MP above the loaded model (reported by the worker)"
        checks.append(Check("memory per megapixel", None, mem))
    except WorkerError as exc:
        checks.append(Check("runs on every probe", False, exc.reason))
    return checks


def passed(checks: list[Check]) -> bool:
    """True when no check failed."""
    return all(c.ok is not False for c in checks)


def checklist_text(checks: list[Check]) -> str:
    """The checklist as lines of ``[PASS|FAIL|INFO] name detail``."""
    return "\n".join(c.line() for c in checks)


def to_dicts(checks: list[Check]) -> list[dict[str, Any]]:
    """The checklist as plain dicts for JSON."""
    return [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
