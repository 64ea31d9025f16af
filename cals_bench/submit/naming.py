"""Who a model is: its kind (built-in, code, plugin, outputs), its display name, and what a run may claim.

Rules (the same for ``submit``, ``score --outputs`` and in-process ``run``):
- a display name can never take a registered model's name (compared case- and punctuation-blind, variants
  included) unless the model *is* that registered model;
- weight hashes on a record are computed by the suite (files it resolved or bound read-only), never taken
  from the model; what user code reports is kept apart as ``weights_reported``;
- a model from user code run in the scoring process is labelled ``unisolated code`` on every table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cals_bench.enhancer import BUILTIN_MODULES, registry
from cals_bench.errors import CalsBenchError

KINDS = ("code", "plugin", "outputs")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def registered_names() -> set[str]:
    """Every registered model name, with each ``name@variant``."""
    out: set[str] = set()
    for name, entry in registry().items():
        out.add(name)
        for v in getattr(entry.cls, "variants", ()) or ():
            out.add(f"{name}@{v}")
    return out


def collides(name: str) -> str | None:
    """The registered model a display name would pass for, or None."""
    key = _norm(name)
    base = _norm(name.split("@", 1)[0])
    for reg in sorted(registered_names()):
        if _norm(reg) == key or ("@" not in reg and _norm(reg) == base):
            return reg
    return None


def is_builtin(spec: str) -> bool:
    """``spec`` names a model the suite itself ships (not an entry point, not a file or module)."""
    reg = registry()
    base = spec.split("@", 1)[0]
    entry = reg.get(spec) or reg.get(base)
    if entry is None:
        return False
    return not entry.origin.startswith("entry point") and any(
        entry.origin.split(":", 1)[0] == m or entry.origin.startswith(m + ".") for m in BUILTIN_MODULES
    )


def is_plugin(spec: str) -> bool:
    """True when the model name comes from another package's entry point."""
    reg = registry()
    entry = reg.get(spec) or reg.get(spec.split("@", 1)[0])
    return entry is not None and entry.origin.startswith("entry point")


def spec_kind(spec: str) -> str:
    """``builtin``, ``plugin`` (entry point), ``checkpoint`` or ``code`` (a file or module)."""
    if is_builtin(spec):
        return "builtin"
    if is_plugin(spec):
        return "plugin"
    if spec.startswith("checkpoint:"):
        return "checkpoint"
    return "code"


def default_name(spec: str) -> str:
    """A display name from the spec itself (never from what the code says about itself)."""
    if ":" in spec:
        left, attr = spec.split(":", 1)
        if left.endswith(".py"):
            return f"{Path(left).stem}.{attr}"
        if left == "checkpoint":
            return f"checkpoint.{Path(attr).stem}"
        return f"{left.rsplit('.', 1)[-1]}.{attr}"
    return spec


def check_display_name(name: str, spec: str | None) -> str:
    """``name`` if it may be shown; a clear error when it would pass for a registered model."""
    name = name.strip()
    if not name or len(name) > 80 or any(ord(c) < 32 for c in name):
        raise CalsBenchError(f"display name {name!r} must be 1-80 printable characters")
    hit = collides(name)
    itself = bool(hit and spec and spec.split("@", 1)[0] == hit.split("@", 1)[0])
    if hit and not (itself and spec_kind(spec) in ("builtin", "plugin")):
        raise CalsBenchError(
            f"display name {name!r} is taken by the registered model {hit!r}; only {hit!r} itself may be "
            "shown under it (choose another --name)"
        )
    return name


def inprocess_provenance(spec: Any, enhancer: Any) -> dict[str, Any]:
    """What the engine adds to a run's model record for a model loaded in the scoring process.

    Built-in models: nothing. User code (a file, a module, an entry-point plugin): ``code: unisolated``,
    the kind, weight hashes moved to ``weights_reported`` (self-reported, unverified), and a display name
    that cannot pass for a registered model (the enhancer's ``name`` is replaced on the instance).
    """
    from cals_bench.enhancer import Enhancer

    if not isinstance(spec, str) or getattr(enhancer, "submission", None):
        return {}
    kind = spec_kind(spec)
    if kind in ("builtin", "checkpoint"):
        return {}
    extra: dict[str, Any] = {"code": "unisolated", "kind": kind}
    shown = enhancer.name or default_name(spec)
    if collides(shown) or not shown:
        extra["claimed_name"] = shown
        shown = default_name(spec)
        if collides(shown):
            shown = f"user.{shown}"
    if isinstance(enhancer, Enhancer):
        enhancer.name = shown
        extra["weights_reported"] = dict(enhancer.weights_used)
    extra["name"] = shown
    extra["weights"] = {}
    return extra
