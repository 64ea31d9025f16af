"""Metrics: pure per-image functions (``functional``-style modules) and the Metric wrappers the engine uses.

Importing the package registers the built-in metrics. Each module is imported on its own so that a
missing optional dependency disables only its metric (reported by ``cals-bench metrics list``).
"""

from __future__ import annotations

import importlib

from cals_bench.metrics.base import (
    Metric,
    SampleContext,
    build_metric,
    column_directions,
    metric_registry,
    quantize,
    register_metric,
)

BUILTIN_METRIC_MODULES = (
    "cals_bench.metrics.fidelity",
    "cals_bench.metrics.lpips",
    "cals_bench.metrics.identity",
    "cals_bench.metrics.niqe",
    "cals_bench.metrics.piqe",
    "cals_bench.metrics.exposure",
)
IMPORT_ERRORS: dict[str, str] = {}

for _mod in BUILTIN_METRIC_MODULES:
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as _exc:
        if _exc.name != _mod:
            IMPORT_ERRORS[_mod] = f"{type(_exc).__name__}: {_exc}"
    except Exception as _exc:  # reported by `cals-bench metrics list`
        IMPORT_ERRORS[_mod] = f"{type(_exc).__name__}: {_exc}"

__all__ = [
    "IMPORT_ERRORS",
    "Metric",
    "SampleContext",
    "build_metric",
    "column_directions",
    "metric_registry",
    "quantize",
    "register_metric",
]
