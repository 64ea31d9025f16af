"""One rule for non-finite numbers, everywhere a number leaves the engine.

- **A score is finite or undefined.** A metric value that is NaN or +-inf is *undefined* for that sample:
  it is stored as NULL (read back as NaN), counted in the summary's ``undefined``, left out of every mean,
  median, interval and test, and the sample's notes say why. The engine summary, the audit and every
  table therefore cover the same samples.
- **PSNR has no infinity.** An output equal to its reference has MSE 0; PSNR is capped at
  :data:`PSNR_CAP_DB` (100 dB, the cap IQA-PyTorch's ``eps = 1e-10`` on the [0, 1] scale gives), so a
  perfect output gets the best score instead of an undefined one. The cap is a clamp: an 8-bit image pair
  differing by one level in fewer than one value in 153,000 (MSE < 255**2 * 1e-10) also scores 100 dB.
- **Records are strict JSON.** ``run.json``, ``--json`` and every other JSON the suite writes hold no
  ``NaN``/``Infinity`` tokens and no ``"inf"`` strings: a non-finite number is written as ``null``
  (:func:`json_safe`, :func:`dumps`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

PSNR_CAP_DB = 100.0


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else None (NaN, +-inf, None, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def is_defined(value: Any) -> bool:
    """True for a finite number: the values a mean, interval or test may use."""
    return finite_or_none(value) is not None


def defined_values(values: Any) -> np.ndarray:
    """The finite entries of ``values`` as a float array (NaN and +-inf dropped)."""
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (Python or NumPy) replaced by None; NumPy scalars to Python."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite_or_none(obj)
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``obj`` (non-finite numbers as null; raises on anything else non-JSON)."""
    kwargs.setdefault("default", _default)
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def _default(obj: Any) -> Any:
    from pathlib import PurePath

    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return json_safe(obj.item())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def cap_psnr(value: float) -> float:
    """PSNR in dB with the suite's cap: +inf (identical images) and anything above become PSNR_CAP_DB."""
    v = float(value)
    if v != v:
        return v
    return min(v, PSNR_CAP_DB)
