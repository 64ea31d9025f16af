"""Published enhancers wrapped as cals-bench Enhancers (classical methods and networks with official weights).

Importing this package registers every baseline. Each submodule is imported on its own: one that fails
(a missing optional dependency) is reported by ``cals-bench models list`` and does not hide the others.
"""

from __future__ import annotations

import importlib
import pkgutil

IMPORT_ERRORS: dict[str, str] = {}

for _info in pkgutil.iter_modules(__path__):
    if _info.name.startswith("_"):
        continue
    try:
        importlib.import_module(f"{__name__}.{_info.name}")
    except Exception as _exc:  # reported, never silently dropped
        IMPORT_ERRORS[f"{__name__}.{_info.name}"] = f"{type(_exc).__name__}: {_exc}"
