"""cals-bench: evaluation and fairness auditing for image enhancement models.

The names below are imported on first use (module ``__getattr__``), so that ``import cals_bench`` and the
command line's ``--help`` load no torch, SciPy, POT, pandas or report stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
_LAZY = {
    "CalsBenchError": "cals_bench.errors",
    "Enhancer": "cals_bench.enhancer",
    "VariantEnhancer": "cals_bench.enhancer",
    "load_enhancer": "cals_bench.enhancer",
    "register_enhancer": "cals_bench.enhancer",
}
__all__ = [
    "CalsBenchError",
    "Enhancer",
    "VariantEnhancer",
    "__version__",
    "load_enhancer",
    "register_enhancer",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from cals_bench.enhancer import Enhancer, VariantEnhancer, load_enhancer, register_enhancer
    from cals_bench.errors import CalsBenchError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cals_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
