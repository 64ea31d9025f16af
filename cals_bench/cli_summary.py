"""The terminal summary of a run (``cals-bench run``, ``runs show``, ``submit``): a plain-text table."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cals_bench.engine import RunResult


def format_summary(result: RunResult) -> str:
    """A plain-text results table for the terminal."""
    rec = result.record
    model = rec.model
    lines = [
        f"protocol {rec.protocol.name} v{rec.protocol.version} (hash {rec.protocol.hash[:12]})  model {model['name']}"
        + (f" {json.dumps(model['args'], sort_keys=True)}" if model.get("args") else ""),
    ]
    if model.get("uses_ground_truth"):
        lines.append(
            "FLAG: this model reads the ground truth at test time; not comparable with blind methods"
        )
    flag = _code_flag(model)
    if flag:
        lines.append(flag)
    lines.append(f"{'metric':<14}{'mean':>10}{'median':>10}{'n':>6}  direction")
    for metric, s in result.summary.items():
        arrow = {True: "higher is better", False: "lower is better"}.get(s.get("higher_is_better"), "")
        undefined = f"  ({s['undefined']} undefined)" if s.get("undefined") else ""
        lines.append(
            f"{metric:<14}{_fmt(s['mean']):>10}{_fmt(s['median']):>10}{s['count']:>6}  {arrow}{undefined}"
        )
    for name, reason in rec.unavailable_metrics.items():
        lines.append(f"{name:<14} unavailable: {reason}")
    if result.failures:
        lines.append(f"{len(result.failures)} sample(s) failed:")
        lines.extend(f"  {sid}: {err}" for sid, err in result.failures[:20])
    timing = rec.timing or {}
    if timing.get("model_ms_per_sample_mean") is not None:
        lines.append(f"model time {timing['model_ms_per_sample_mean']:.1f} ms/sample (mean)")
    return "\n".join(lines)


def _code_flag(model: dict) -> str | None:
    """The line a terminal summary shows for user code (cals_bench.submit): how it was run."""
    sub = model.get("submission") or {}
    if sub:
        iso = "no code run" if sub.get("kind") == "outputs" else f"isolation {sub.get('isolation')}"
        return f"submission #{sub.get('id')} ({sub.get('kind')}, {iso})"
    if model.get("code") == "unisolated":
        return "FLAG: unisolated code: user code ran in the scoring process (use `cals-bench submit` to isolate it)"
    return None


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.4f}"
