"""Columns a reader expects beside a run's scores: size, speed, the arguments that matter, and how the run
compares with what the model's authors report (``cals_bench.published``).

Everything comes from the run record and its per-sample rows (``time_ms``, ``height``, ``width``); only
the published figures come from the model's class, since they are facts about the paper, not about the run.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cals_bench.published import PUBLISHED_KINDS, Agreement, agreements, model_class, published_for

_MISSING = object()


# ------------------------------------------------------------------------------------------------------------
# arguments


def default_args(cls: type | None) -> dict[str, Any]:
    """Constructor defaults along the class's ``__init__`` chain; ``variant`` is the class's default variant."""
    if cls is None:
        return {}
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            if p.name != "self" and p.default is not inspect.Parameter.empty:
                out.setdefault(p.name, p.default)
    if getattr(cls, "variants", ()):
        out["variant"] = getattr(cls, "default_variant", None)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool | np.bool_):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def non_default_args(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model arguments of a run that differ from the model's defaults.

    Runs record the arguments the user gave (``model.args_given``): those that differ from the constructor's
    default are kept, with the value the model recorded. Older runs lack it: then the recorded arguments that
    are constructor parameters with a non-``None`` default and a different value are kept (derived values
    such as LIME's radius or constants such as its solver name are not arguments a user chose). When the
    model's class cannot be imported any more, every argument is shown.
    """
    model = meta.get("model") or {}
    args = dict(model.get("args") or {})
    cls = model_class(model)
    if cls is None:
        return args
    defaults = default_args(cls)
    given = model.get("args_given")
    if isinstance(given, Mapping):
        out = {}
        for key, value in given.items():
            recorded = args.get(key, value)
            if not _same(recorded, defaults.get(key, _MISSING)):
                out[key] = recorded
        return out
    return {k: v for k, v in args.items() if defaults.get(k, None) is not None and not _same(v, defaults[k])}


def args_json(args: Mapping[str, Any]) -> str:
    """Compact JSON (keys sorted) as every report writes model arguments; empty when there are none."""
    return json.dumps(dict(args), sort_keys=True, ensure_ascii=False) if args else ""


# ------------------------------------------------------------------------------------------------------------
# speed


@dataclass(frozen=True)
class Speed:
    """Model time per megapixel of input: the median over scored samples of ``time_ms / (H * W / 1e6)``.

    The engine times ``enhance`` alone (padding and validation included, metrics excluded) per batch and
    splits it evenly over the batch; the median keeps the first batch's warm-up out of the figure.
    """

    ms_per_megapixel: float
    mean_ms_per_megapixel: float
    n: int
    megapixels: float  # median input size
    device: str
    threads: int | None
    load_average: float | None = None  # 1-minute load when the run started
    cpu_count: int | None = None

    @property
    def device_text(self) -> str:
        return self.device + (f", {self.threads} threads" if self.threads else "")

    @property
    def busy(self) -> bool:
        """The machine had more runnable processes than CPUs when the run started: times include waiting."""
        return (
            self.load_average is not None
            and self.cpu_count is not None
            and self.load_average > self.cpu_count
        )

    @property
    def load_text(self) -> str:
        if self.load_average is None or self.cpu_count is None:
            return "machine load not recorded"
        return f"load {self.load_average:.1f} on {self.cpu_count} CPU(s) when the run started"


def speed(samples: pd.DataFrame, meta: Mapping[str, Any]) -> Speed | None:
    """Speed of a run from its per-sample rows (``store.samples``); None without timed samples."""
    if samples is None or samples.empty or "time_ms" not in samples:
        return None
    ok = samples[samples["status"] == "ok"] if "status" in samples else samples
    t = pd.to_numeric(ok["time_ms"], errors="coerce").to_numpy(dtype=float)
    mp = (
        pd.to_numeric(ok["height"], errors="coerce").to_numpy(dtype=float)
        * pd.to_numeric(ok["width"], errors="coerce").to_numpy(dtype=float)
        / 1e6
    )
    good = np.isfinite(t) & np.isfinite(mp) & (mp > 0)
    if not good.any():
        return None
    rate = t[good] / mp[good]
    env = meta.get("environment") or {}
    return Speed(
        ms_per_megapixel=float(np.median(rate)),
        mean_ms_per_megapixel=float(t[good].sum() / mp[good].sum()),
        n=int(good.sum()),
        megapixels=float(np.median(mp[good])),
        device=device_label(env),
        threads=env.get("torch_threads"),
        load_average=_float_or_none(env.get("load_average")),
        cpu_count=int(env["cpu_count"]) if env.get("cpu_count") else None,
    )


def _float_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def device_label(env: Mapping[str, Any]) -> str:
    """``cuda (NVIDIA H200)`` / ``cpu (Intel Xeon ...)``: the device type and, where known, its model."""
    dev = str(env.get("device") or "?")
    name = str(env.get("device_name") or "")
    if not name or name == dev:
        return f"{dev} (model not recorded)" if dev == "cpu" else dev
    return f"{dev} ({name})"


# ------------------------------------------------------------------------------------------------------------
# published figures


@dataclass
class Reference:
    """Our mean against the figures declared for this run's protocol and arguments, for one metric."""

    metric: str
    published: list[Agreement] = field(default_factory=list)  # paper / README / secondary
    upstream: list[Agreement] = field(default_factory=list)  # the authors' code re-run here

    @property
    def any(self) -> bool:
        return bool(self.published or self.upstream)


def references(meta: Mapping[str, Any], protocol: str, metrics: Sequence[str]) -> dict[str, Reference]:
    """Per metric (of ``metrics`` that have a figure), the agreements of the run's mean with each figure."""
    entries = published_for(meta.get("model") or {}, protocol)
    if not entries:
        return {}
    means = {m: (s or {}).get("mean") for m, s in (meta.get("summary") or {}).items()}
    args = (meta.get("model") or {}).get("args") or {}
    out: dict[str, Reference] = {}
    for a in agreements(entries, args, means):
        if a.metric not in metrics:
            continue
        ref = out.setdefault(a.metric, Reference(a.metric))
        (ref.published if a.entry.kind in PUBLISHED_KINDS else ref.upstream).append(a)
    return out


def agreement_text(a: Agreement, metric_fmt) -> str:
    """``23.38 (readme): ours +0.001, within 0.1`` for tooltips and notes."""
    if a.diff is None:
        return f"{metric_fmt(a.reported)} ({a.entry.kind}, {a.entry.source}): no mean of ours to compare"
    verdict = "within" if a.ok else "off by more than"
    text = (
        f"{metric_fmt(a.reported)} ({a.entry.kind}, {a.entry.source}): ours {a.diff:+.4g}, {verdict} the "
        f"tolerance {a.tolerance:g}"
    )
    return text + (f"; {a.entry.note}" if a.entry.note else "")


# ------------------------------------------------------------------------------------------------------------
# all of it, per run


@dataclass
class ModelFacts:
    """What the leaderboard shows about a run's model besides its scores."""

    parameters: int | None
    args: dict[str, Any]
    speed: Speed | None
    references: dict[str, Reference]


def model_facts(
    meta: Mapping[str, Any], samples: pd.DataFrame | None, protocol: str, metrics: Sequence[str]
) -> ModelFacts:
    """Collect a run's model facts: parameter count, non-default arguments, speed and published references."""
    params = (meta.get("model") or {}).get("parameters")
    return ModelFacts(
        parameters=int(params) if isinstance(params, (int, float)) and not isinstance(params, bool) else None,
        args=non_default_args(meta),
        speed=speed(samples, meta) if samples is not None else None,
        references=references(meta, protocol, metrics),
    )


def fmt_parameters(n: int | None) -> str:
    """``91.2k``, ``1.35M``, ``0`` (training-free methods), ``-`` when not recorded."""
    if n is None:
        return "-"
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.2f}M"


def fmt_speed(ms: float | None) -> str:
    """Milliseconds per megapixel with 3 significant digits (``12.3``, ``1.23e+03`` spelt ``1230``)."""
    if ms is None or not math.isfinite(ms):
        return "-"
    if ms >= 100:
        return f"{ms:.0f}"
    return f"{ms:.3g}"
