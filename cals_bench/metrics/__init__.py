"""Metrics: pure per-image functions (``functional``-style modules) and the Metric wrappers the engine uses.

The built-in metrics register on the first lookup (``METRICS``, :mod:`cals_bench.registry`), each module
imported on its own so that a missing optional dependency disables only its metric (reported by
``cals-bench metrics list``); another package adds metrics through the entry-point group
``cals_bench.metrics``.
"""

from __future__ import annotations

from cals_bench.metrics.base import (
    BUILTIN_METRIC_MODULES,
    METRICS,
    ColumnFormat,
    Metric,
    SampleContext,
    build_metric,
    column_directions,
    metric_registry,
    quantize,
    register_metric,
)

__all__ = [
    "BUILTIN_METRIC_MODULES",
    "METRICS",
    "ColumnFormat",
    "Metric",
    "SampleContext",
    "build_metric",
    "column_directions",
    "metric_registry",
    "quantize",
    "register_metric",
]
