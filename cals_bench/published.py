"""Figures a model's authors (or others) report for a protocol, declared as data on the Enhancer class.

An Enhancer lists them in its ``published`` class attribute, keyed by protocol name::

    published = {
        "lol-v1": [
            Published(
                kind="readme",
                source="IAT README (cuiziteng/Illumination-Adaptive-Transformer), LOL-v1 table",
                scores={"psnr": 23.38, "ssim": 0.809},
                args={"variant": "lol_v1"},
                note="its SSIM is IQA_pytorch's, not the suite's",
            ),
        ],
    }

The short form ``{"lol-v1": {"psnr": (23.38, "source")}}`` is read as one ``kind="paper"`` entry per
metric. An entry applies to a run when every item of ``args`` equals the run's recorded model argument
(e.g. the variant the figure was measured with). Leaderboards show the difference between the run's mean and
the figure and flag it when it exceeds ``tolerance`` (per metric; ``DEFAULT_TOLERANCE`` otherwise).

Kinds: ``paper`` and ``readme`` are the authors' own reported figures; ``secondary`` a figure reported by
someone else (a survey, a later paper); ``upstream-code`` the authors' released test script re-run by this
project on the protocol's data and scored with the suite's metrics (what a faithful port must reproduce).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["paper", "readme", "secondary", "upstream-code"]
KINDS: tuple[str, ...] = ("paper", "readme", "secondary", "upstream-code")
# Kinds that are somebody's published claim (shown in the "published" column); the rest is our re-run of
# the authors' code (the "reproduced" column).
PUBLISHED_KINDS = ("paper", "readme", "secondary")

# Absolute tolerance per metric for "ours agrees with the figure". PSNR 0.1 dB: rounding the output to 8
# bit instead of truncating (as several upstream scripts do) moves LOL-v1 PSNR by up to ~0.07 dB. SSIM and
# LPIPS 0.005: published SSIMs come from other implementations (IQA_pytorch, MATLAB ssim) that differ from
# the suite's by up to ~1e-3 on LOL-v1, and figures are printed to 3 decimals.
DEFAULT_TOLERANCE = {"psnr": 0.1, "ssim": 0.005, "lpips": 0.005}
FALLBACK_TOLERANCE = 0.01


@dataclass(frozen=True)
class Published:
    """Figures reported for one protocol under one setting of the model's arguments."""

    kind: Kind
    source: str
    scores: Mapping[str, float]
    args: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""  # why ours may differ (different SSIM code, a crop, truncation ...)
    tolerance: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"published figure kind must be one of {KINDS}, got {self.kind!r}")
        if not self.source:
            raise ValueError("a published figure needs its source")
        for metric, value in self.scores.items():
            if not (isinstance(value, (int, float)) and math.isfinite(float(value))):
                raise ValueError(f"published {metric} must be a finite number, got {value!r}")

    def tolerance_for(self, metric: str) -> float:
        return float(self.tolerance.get(metric, DEFAULT_TOLERANCE.get(metric, FALLBACK_TOLERANCE)))

    def applies_to(self, run_args: Mapping[str, Any]) -> bool:
        return all(_same(run_args.get(k), v) for k, v in self.args.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def normalise(declared: Any) -> dict[str, list[Published]]:
    """``{protocol: [Published, ...]}`` from a class's ``published`` attribute (long or short form)."""
    out: dict[str, list[Published]] = {}
    for protocol, value in (declared or {}).items():
        if isinstance(value, Published):
            items: Sequence[Any] = [value]
        elif isinstance(value, Mapping):  # short form: {metric: (value, source)}
            items = [
                Published(kind="paper", source=str(src), scores={metric: float(v)})
                for metric, (v, src) in value.items()
            ]
        else:
            items = list(value)
        for item in items:
            if not isinstance(item, Published):
                raise ValueError(f"published[{protocol!r}] holds {item!r}, not a Published entry")
        out[str(protocol)] = list(items)
    return out


@dataclass(frozen=True)
class Agreement:
    """Our mean against one reported figure: ``diff = ours - reported``; ``ok`` when within tolerance."""

    metric: str
    ours: float | None
    reported: float
    tolerance: float
    entry: Published

    @property
    def diff(self) -> float | None:
        return None if self.ours is None else self.ours - self.reported

    @property
    def ok(self) -> bool | None:
        d = self.diff
        return None if d is None or not math.isfinite(d) else abs(d) <= self.tolerance + 1e-12


def agreements(
    entries: Sequence[Published], run_args: Mapping[str, Any], means: Mapping[str, float | None]
) -> list[Agreement]:
    """Every (entry, metric) that applies to a run with ``run_args``, against the run's ``means``."""
    out = []
    for entry in entries:
        if not entry.applies_to(run_args):
            continue
        for metric, value in entry.scores.items():
            ours = means.get(metric)
            ours = float(ours) if ours is not None and math.isfinite(float(ours)) else None
            out.append(Agreement(metric, ours, float(value), entry.tolerance_for(metric), entry))
    return out


def model_class(model_meta: Mapping[str, Any]) -> type | None:
    """The Enhancer class a run recorded (``module:qualname``), or the registered class of its name."""
    ref = str(model_meta.get("class") or "")
    if ":" in ref:
        module, _, qualname = ref.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, type):
                return obj
        except Exception:  # a user's file model is not importable later; fall back
            pass
    try:
        from cals_bench.enhancer import registry

        entry = registry().get(str(model_meta.get("name") or ""))
        return entry.cls if entry is not None else None
    except Exception:  # no registry, no published figures
        return None


def published_for(model_meta: Mapping[str, Any], protocol: str) -> list[Published]:
    """The entries the model's class declares for ``protocol`` (empty when none or the class is gone)."""
    cls = model_class(model_meta)
    if cls is None:
        return []
    return normalise(getattr(cls, "published", None)).get(protocol, [])
