"""Researchers' models as they are: a plain ``torch.nn.Module`` or a callable mapping a float RGB batch
``(B, 3, H, W)`` in ``[0, 1]`` to the same becomes an :class:`~cals_bench.enhancer.Enhancer` without a subclass.

Accepted objects (``file.py:NAME`` or ``module:NAME``):
- an ``Enhancer`` subclass (used as is);
- an ``nn.Module`` subclass: constructed with ``--model-args``, put in eval mode, wrapped;
- any other class whose instances are callable: constructed with ``--model-args``, wrapped;
- an ``nn.Module`` instance or a function taking the batch as its one required argument (``--model-args``
  are passed as keywords on each call);
- a factory function with no required argument: called with ``--model-args``; what it returns is wrapped.
``pad_multiple`` is read from the object when it defines one.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from cals_bench.enhancer import Enhancer
from cals_bench.errors import CalsBenchError


class CallableEnhancer(Enhancer):
    """An Enhancer around a callable (an ``nn.Module`` or a function) taking and returning a batch."""

    summary = "a plain torch module or callable, wrapped"

    def __init__(
        self, fn: Any, *, name: str, call_kwargs: dict[str, Any] | None = None, args: dict | None = None
    ):
        super().__init__()
        self.fn = fn  # an nn.Module attribute is moved to the device by Enhancer.to
        self.name = name
        self.call_kwargs = dict(call_kwargs or {})
        self.args.update(args or {})
        pad = getattr(fn, "pad_multiple", None)
        if isinstance(pad, int) and pad >= 1:
            self.pad_multiple = pad
        if isinstance(fn, torch.nn.Module):
            fn.eval()

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, **self.call_kwargs)

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        target = self.fn if inspect.isfunction(self.fn) else type(self.fn)
        meta["class"] = f"{target.__module__}:{target.__qualname__}"
        meta["wrapped"] = "module" if isinstance(self.fn, torch.nn.Module) else "callable"
        return meta


def _required_positional(fn: Any) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(
        1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def _construct(cls: type, kwargs: dict[str, Any], origin: str) -> Any:
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise CalsBenchError(f"cannot construct model {origin}: {exc}") from exc


def as_enhancer(obj: Any, kwargs: dict[str, Any], origin: str) -> Enhancer:
    """An Enhancer from any accepted object (see the module docstring); a clear error otherwise."""
    if isinstance(obj, Enhancer):
        if kwargs:
            raise CalsBenchError(f"{origin} is an Enhancer instance; it takes no arguments {sorted(kwargs)}")
        return obj
    if inspect.isclass(obj):
        inst = _construct(obj, kwargs, origin)
        if isinstance(inst, Enhancer):
            return inst
        if not callable(inst):
            raise CalsBenchError(
                f"{origin}: a {obj.__name__} is neither an Enhancer, a torch.nn.Module nor callable"
            )
        return CallableEnhancer(inst, name=obj.__name__, args=kwargs)
    if isinstance(obj, torch.nn.Module):
        return CallableEnhancer(obj, name=type(obj).__name__, call_kwargs=kwargs, args=kwargs)
    if not callable(obj):
        raise CalsBenchError(
            f"{origin} is not an Enhancer, a torch.nn.Module or a callable (got {type(obj).__name__})"
        )
    if _required_positional(obj) >= 1:
        if _required_positional(obj) > 1:
            raise CalsBenchError(
                f"{origin} takes {_required_positional(obj)} required arguments; a model callable takes "
                "one batch (B, 3, H, W)"
            )
        name = getattr(obj, "__name__", type(obj).__name__)
        return CallableEnhancer(obj, name=name, call_kwargs=kwargs, args=kwargs)
    try:
        made = obj(**kwargs)
    except TypeError as exc:
        raise CalsBenchError(f"cannot construct model {origin}: {exc}") from exc
    if isinstance(made, Enhancer):
        return made
    if callable(made):
        return CallableEnhancer(made, name=getattr(obj, "__name__", "model"), args=kwargs)
    raise CalsBenchError(f"{origin} did not produce a cals_bench.Enhancer (got {type(made).__name__})")
