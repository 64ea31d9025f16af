"""The Metric contract: per-image values first, aggregates afterwards (never inside the loop).

A metric scores a batch of same-size samples and returns one dict of named values per sample (most metrics
yield a single column named after themselves; identity similarity yields ``id_sim`` and ``id_sim_input``).
Images reach a metric already clamped to [0, 1] and rounded to 8 bits (``quantize``), as a saved PNG
would be, as float32 ``(B, 3, H, W)`` tensors in [0, 1] on the engine's device.

Each metric declares ``higher_is_better`` per column, how reports write each column (``column_formats``:
label, unit, decimals), whether it is ``diagnostic``, whether it ``needs_reference``, whether it is a
``face`` metric, and the weight files it uses (recorded in every run). A metric whose weights are missing
reports itself unavailable (with the command that fixes it) instead of producing a number.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from cals_bench.errors import CalsBenchError
from cals_bench.registry import Registry


@dataclass
class SampleContext:
    """What a metric may know about a sample besides the two images.

    ``reference_key`` identifies the reference image content and preprocessing (sha256 of the file plus
    the protocol's preprocessing); learned metrics key their reference-feature cache on it.
    ``low`` is the model input (quantised float ``(3, H, W)``), for metrics that compare with the input.
    """

    sample_id: str
    reference_key: str
    low: torch.Tensor | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnFormat:
    """How reports write one metric column: a readable ``label``, its ``unit`` and a fixed number of
    ``decimals`` (None: 2 for magnitudes of 10 and above, 4 below), so that a column reads the same in
    every row and every report."""

    label: str
    unit: str = ""
    decimals: int | None = None


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (values k/255); one new tensor, the rest in place."""
    return x.clamp(0.0, 1.0).mul_(255.0).round_().div_(255.0)


class Metric(abc.ABC):
    """Base class of every metric. Subclasses set ``name``, ``columns`` and implement ``score_batch``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # column name -> higher_is_better
    columns: ClassVar[dict[str, bool | None]] = {}
    needs_reference: ClassVar[bool] = True
    face: ClassVar[bool] = False
    # True for metrics that are never a protocol default (GT-mean variants): reports list their columns
    # after the blind scores and flag them
    diagnostic: ClassVar[bool] = False
    # column name -> how reports write it; a column not listed reads as its name, decimals by magnitude
    column_formats: ClassVar[dict[str, ColumnFormat]] = {}

    def __init__(self, **options: Any) -> None:
        if options:
            raise CalsBenchError(f"metric {self.name!r} takes no option(s) {sorted(options)}")
        self.options: dict[str, Any] = {}
        self.weights_used: dict[str, str] = {}

    @classmethod
    def column_format(cls, column: str) -> ColumnFormat:
        """How reports write ``column`` (one of ``columns``)."""
        return cls.column_formats.get(column) or ColumnFormat(column)

    def available(self) -> tuple[bool, str]:
        """(True, "") when the metric can run; else (False, one-line reason with the fix)."""
        return True, ""

    def to(self, device: torch.device | str) -> Metric:
        return self

    def attach_cache(self, cache: Any) -> None:  # noqa: B027 - optional hook
        """Give the metric the run's reference-feature cache (learned metrics use it)."""

    @abc.abstractmethod
    def score_batch(
        self, output: torch.Tensor, reference: torch.Tensor, contexts: list[SampleContext]
    ) -> list[dict[str, float]]:
        """One dict ``{column: value}`` per sample; NaN (with a reason in ``last_reasons``) when undefined.

        ``output`` and ``reference`` are shared with the other metrics of the batch and with the saved
        output PNG: read them, never modify them in place."""

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "columns": dict(self.columns),
            "options": dict(self.options),
            "weights": dict(self.weights_used),
        }


# Modules whose import registers the built-in metrics; imported on the first lookup, each on its own, so
# that a missing optional dependency disables only its metric (reported by `cals-bench metrics list`).
BUILTIN_METRIC_MODULES = (
    "cals_bench.metrics.fidelity",
    "cals_bench.metrics.lpips",
    "cals_bench.metrics.identity",
    "cals_bench.metrics.niqe",
    "cals_bench.metrics.piqe",
    "cals_bench.metrics.exposure",
)
# name -> Metric class: the built-ins, then what other packages declare in the entry-point group
# ``cals_bench.metrics`` (imported when used)
METRICS: Registry[type[Metric]] = Registry("metric", builtin_modules=BUILTIN_METRIC_MODULES)


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: ``@register_metric`` makes a :class:`Metric` subclass available by its ``name``.

    A second, different class under a name already taken is refused (ValueError naming both)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a name")
    return METRICS.register(cls.name, cls)


def metric_registry() -> dict[str, type[Metric]]:
    """Every registered metric class by name (built-ins and entry points)."""
    return METRICS.items()


def column_directions() -> dict[str, bool]:
    """higher_is_better for every column of every registered metric."""
    out: dict[str, bool] = {}
    for cls in metric_registry().values():
        out.update(cls.columns)
    return out


def build_metric(name: str, **options: Any) -> Metric:
    """An instance of the registered metric ``name`` with its protocol options (unknown names: the closest ones)."""
    return METRICS.get(name)(**options)


def column_format(column: str) -> ColumnFormat:
    """How reports write ``column``: as the registered metric that yields it declares; else by its name."""
    return _column_table()[1].get(column) or ColumnFormat(column)


def diagnostic_columns() -> tuple[str, ...]:
    """The columns of diagnostic metrics (the GT-mean variants), in metric-name order."""
    return _column_table()[2]


# (METRICS.revision it was built at, column -> format, diagnostic columns): reports ask per cell
_COLUMN_TABLE: tuple[int, dict[str, ColumnFormat], tuple[str, ...]] | None = None


def _column_table() -> tuple[int, dict[str, ColumnFormat], tuple[str, ...]]:
    global _COLUMN_TABLE
    if _COLUMN_TABLE is None or _COLUMN_TABLE[0] != METRICS.revision:
        classes = METRICS.items()  # built-ins and entry points imported, then the revision read
        formats: dict[str, ColumnFormat] = {}
        diagnostic: list[str] = []
        for cls in classes.values():
            for column in cls.columns:
                formats.setdefault(column, cls.column_format(column))
                if cls.diagnostic and column not in diagnostic:
                    diagnostic.append(column)
        _COLUMN_TABLE = (METRICS.revision, formats, tuple(diagnostic))
    return _COLUMN_TABLE
