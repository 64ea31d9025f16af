"""The Enhancer contract and its registry.

An Enhancer is what a user submits: a name, optional metadata, and one batch method
``enhance(x)`` taking float RGB ``(B, 3, H, W)`` in ``[0, 1]`` and returning the same shape and range.
The engine owns device, batching, padding (to ``pad_multiple``), dtype, seeding and timing.

Models are named as
- a registered name (``identity``, ``zero-dce``), optionally with ``@variant`` (``sci@difficult``);
- ``package.module:Class``;
- ``path/to/file.py:Class``;
- ``checkpoint:PATH`` (a checkpoint written by ``cals-bench train``);
- a name registered by another package through the entry-point group ``cals_bench.enhancers``.
Constructor arguments come from ``--model-args k=v,k=v`` (values parsed as YAML scalars).
"""

from __future__ import annotations

import abc
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml

from cals_bench.errors import CalsBenchError
from cals_bench.registry import Registry

# Modules whose import registers the built-in enhancers. A module that fails to import is reported by
# `cals-bench models list` and skipped; it never hides the others.
BUILTIN_MODULES = ("cals_bench.sanity", "cals_bench.baselines", "cals_bench.train.checkpoint_enhancer")
# name -> Enhancer class (or factory): the built-ins, then the names other packages declare in the
# entry-point group ``cals_bench.enhancers`` (listed at once, imported only when that model is loaded)
ENHANCERS: Registry[Callable[..., Enhancer]] = Registry("enhancer", builtin_modules=BUILTIN_MODULES)
ENTRY_POINT_GROUP = ENHANCERS.entry_point_group


class Enhancer(abc.ABC):
    """Base class of every model the suite scores.

    Subclasses set ``name`` and implement :meth:`enhance`. Optional class attributes:
    ``pad_multiple`` (the engine reflect-pads H and W up to a multiple of it and crops back),
    ``variants``/``default_variant`` (named weight sets), ``uses_ground_truth`` (the model reads the
    reference at test time; such rows are flagged in every table), ``paper``, ``licence``, ``summary``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    pad_multiple: ClassVar[int] = 1
    variants: ClassVar[tuple[str, ...]] = ()
    default_variant: ClassVar[str | None] = None
    uses_ground_truth: ClassVar[bool] = False
    # variants that read the reference at test time (listed by `models list`, flagged in every table)
    ground_truth_variants: ClassVar[tuple[str, ...]] = ()
    sanity: ClassVar[bool] = False
    # Reported figures per protocol (cals_bench.published.Published entries, or the short form
    # {"lol-v1": {"psnr": (23.38, "source")}}); leaderboards show ours beside them.
    published: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        if kwargs:
            raise CalsBenchError(
                f"model {self.name or type(self).__name__!r} takes no argument(s) {sorted(kwargs)}"
            )
        self.device = torch.device("cpu")
        self.args: dict[str, Any] = {}
        self.weights_used: dict[str, str] = {}

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """Enhance a batch: float32 RGB ``(B, 3, H, W)`` in [0, 1] -> same shape, in [0, 1]."""

    def enhance_with_reference(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Only for ``uses_ground_truth`` models (e.g. URetinex-Net's GT-guided ratio)."""
        raise NotImplementedError

    # -- helpers for subclasses -----------------------------------------------------------------
    def use_weights(self, name: str, path: str | Path | None = None):
        """Resolve a registered weight file, record its sha256 in the run, and return it."""
        from cals_bench import weights

        resolved = weights.resolve(name, path=path)
        self.weights_used[name] = resolved.sha256
        return resolved

    def load_weights(self, name: str, path: str | Path | None = None) -> Any:
        """Resolve a registered torch weight file, record its sha256, and load it with weights_only=True."""
        from cals_bench import weights

        obj, resolved = weights.load_torch(name, path)
        self.weights_used[name] = resolved.sha256
        return obj

    def to(self, device: torch.device | str) -> Enhancer:
        """Move every ``torch.nn.Module`` attribute to ``device``."""
        self.device = torch.device(device)
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        return [v for v in vars(self).values() if isinstance(v, torch.nn.Module)]

    def parameter_count(self) -> int:
        return sum(p.numel() for m in self.modules() for p in m.parameters())

    def metadata(self) -> dict[str, Any]:
        """Everything a run records about the model."""
        return {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "version": self.version,
            "args": dict(self.args),
            "weights": dict(self.weights_used),
            "parameters": self.parameter_count(),
            "args_given": dict(getattr(self, "args_given", {})),
            "pad_multiple": self.pad_multiple,
            "uses_ground_truth": self.uses_ground_truth,
            "sanity": self.sanity,
            "licence": self.licence,
            "paper": self.paper,
        }


class VariantEnhancer(Enhancer):
    """An Enhancer with named variants (weight sets); ``variant`` is checked against ``variants``."""

    def __init__(self, *, variant: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise CalsBenchError(
                f"model {self.name!r} has no variant {variant!r}; valid variants: {', '.join(self.variants)}"
            )
        self.variant = variant
        self.args["variant"] = variant


@dataclass
class RegistryEntry:
    """What listings show of one registered name; ``cls`` is None for an entry point not imported yet."""

    name: str
    factory: Callable[..., Enhancer]
    origin: str
    cls: type[Enhancer] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


_TAGS: dict[str, tuple[str, ...]] = {}


def register_enhancer(name: str | None = None, *, tags: tuple[str, ...] = ()):
    """Class decorator: ``@register_enhancer("zero-dce")`` makes the class loadable by that name.

    A second, different class under a name already taken is refused (ValueError naming both)."""

    def wrap(cls: type[Enhancer]) -> type[Enhancer]:
        key = name or cls.name
        if not key:
            raise ValueError(f"{cls.__qualname__} needs a name")
        ENHANCERS.register(key, cls)
        if not cls.name:
            cls.name = key
        _TAGS[key] = tuple(tags)
        return cls

    return wrap


def registry() -> dict[str, RegistryEntry]:
    """All registered enhancers by name (built-ins, baselines and entry points; none imported here)."""
    loaded = ENHANCERS.registered()
    out = {}
    for name in ENHANCERS.names():
        origin = ENHANCERS.origin(name)
        if name in loaded:
            obj = loaded[name]
            cls = obj if inspect.isclass(obj) and issubclass(obj, Enhancer) else None
            out[name] = RegistryEntry(name, obj, origin, cls, _TAGS.get(name, ()))
        else:
            out[name] = RegistryEntry(name, _entry_point_factory(name), origin)
    return out


def _entry_point_factory(name: str) -> Callable[..., Enhancer]:
    """Builds the model of an entry point, importing its object on the first call."""

    def factory(**kwargs: Any) -> Enhancer:
        return _instantiate(ENHANCERS.get(name), kwargs, ENHANCERS.origin(name))

    return factory


def import_errors() -> dict[str, str]:
    """Modules that failed to import while loading the registry (module -> error), each baseline module
    on its own (``cals_bench.baselines.IMPORT_ERRORS``)."""
    errors = ENHANCERS.import_errors()
    baselines = sys.modules.get("cals_bench.baselines")
    errors.update(getattr(baselines, "IMPORT_ERRORS", {}))
    return errors


# Loaders for ``prefix:rest`` model specs other than module/file paths (e.g. "checkpoint").
_SPEC_LOADERS: dict[str, Callable[[str, dict[str, Any]], Enhancer]] = {}


def register_spec_loader(prefix: str):
    """Function decorator: ``@register_spec_loader("checkpoint")`` loads model names of the form ``checkpoint:REST``."""

    def wrap(fn: Callable[[str, dict[str, Any]], Enhancer]):
        _SPEC_LOADERS[prefix] = fn
        return fn

    return wrap


def parse_model_args(text: str | None) -> dict[str, Any]:
    """Parse ``k=v,k2=v2`` into a dict; values are YAML scalars (``2.2`` -> float, ``true`` -> bool)."""
    args: dict[str, Any] = {}
    if not text:
        return args
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise CalsBenchError(f"model argument {part!r} is not of the form key=value")
        key, value = part.split("=", 1)
        key = key.strip()
        if not key or not value.strip() or value.lstrip().startswith("="):
            what = "no name" if not key else "no value" if not value.strip() else "a value starting with '='"
            raise CalsBenchError(f"model argument {part!r} has {what} (write key=value, e.g. gamma=2)")
        if key in args:
            raise CalsBenchError(f"model argument {key!r} is given twice in {text!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if not isinstance(parsed, (str, int, float, bool)) or parsed is None:
            parsed = value
        args[key] = parsed
    return args


def _check_arg_types(cls: type, kwargs: dict[str, Any], origin: str) -> None:
    """A value whose kind differs from the constructor default's (``gamma=true`` for a float, a word for a
    number) is refused by name instead of reaching the model."""
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.default is not p.empty and p.default is not None:
                defaults[p.name] = p.default
    name = getattr(cls, "name", "") or origin
    for key, value in kwargs.items():
        if key not in defaults:
            continue
        default = defaults[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise CalsBenchError(f"model {name!r} argument {key!r} expects true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CalsBenchError(f"model {name!r} argument {key!r} expects a number, got {value!r}")
            if isinstance(default, int) and not isinstance(value, int):
                raise CalsBenchError(f"model {name!r} argument {key!r} expects an integer, got {value!r}")


def _instantiate(obj: Any, kwargs: dict[str, Any], origin: str) -> Enhancer:
    if inspect.isclass(obj) and issubclass(obj, Enhancer):
        accepted = _accepted_args(obj)
        unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(accepted), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            valid = ", ".join(sorted(accepted)) or "none"
            raise CalsBenchError(
                f"model {getattr(obj, 'name', '') or origin!r} has no argument {unknown[0]!r}{hint} "
                f"(valid arguments: {valid})"
            )
        _check_arg_types(obj, kwargs, origin)
        try:
            inst = obj(**kwargs)
        except TypeError as exc:
            raise CalsBenchError(f"cannot construct model {origin}: {exc}") from exc
    else:  # a plain nn.Module, callable or factory: wrapped (cals_bench.submit.wrap)
        from cals_bench.submit.wrap import as_enhancer

        inst = as_enhancer(obj, kwargs, origin)
    if not isinstance(inst, Enhancer):
        raise CalsBenchError(f"{origin} did not produce a cals_bench.Enhancer (got {type(inst).__name__})")
    for key, value in kwargs.items():
        inst.args.setdefault(key, value)
    inst.args_given = dict(kwargs)  # what the user asked for, so reports can show only non-defaults
    return inst


def _accepted_args(cls: type) -> set[str] | None:
    """Keyword arguments a class's constructor chain accepts (None when it takes **kwargs freely)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {
            p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
        if klass is Enhancer:
            return names
    return None


def _load_from_file(path_text: str, attr: str) -> Any:
    path = Path(path_text)
    if not path.is_file():
        raise CalsBenchError(f"model file {path} does not exist")
    # a name stable across processes (hash() of a str is salted per process): it is part of the run key,
    # so a killed run of a model file resumes instead of starting a new run
    mod_name = f"cals_bench_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise CalsBenchError(f"cannot import model file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CalsBenchError(f"importing model file {path} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise CalsBenchError(f"model file {path} has no attribute {attr!r}")
    return getattr(module, attr)


def load_enhancer(spec: str, args: dict[str, Any] | None = None) -> Enhancer:
    """Build an Enhancer from a model spec (see the module docstring) and constructor args."""
    args = dict(args or {})
    if spec in ENHANCERS:
        return _instantiate(ENHANCERS.get(spec), args, ENHANCERS.origin(spec))
    if "@" in spec and spec.split("@", 1)[0] in ENHANCERS:
        base, variant = spec.split("@", 1)
        args.setdefault("variant", variant)
        return _instantiate(ENHANCERS.get(base), args, ENHANCERS.origin(base))
    if ":" in spec:
        prefix, rest = spec.split(":", 1)
        if prefix in _SPEC_LOADERS:
            return _SPEC_LOADERS[prefix](rest, args)
        if prefix.endswith(".py"):
            return _instantiate(_load_from_file(prefix, rest), args, spec)
        if prefix.replace(".", "").replace("_", "").isalnum():
            try:
                module = importlib.import_module(prefix)
            except ImportError as exc:
                raise CalsBenchError(f"cannot import module {prefix!r} for model {spec!r}: {exc}") from exc
            if not hasattr(module, rest):
                raise CalsBenchError(f"module {prefix!r} has no attribute {rest!r}")
            return _instantiate(getattr(module, rest), args, spec)
    close = difflib.get_close_matches(spec, ENHANCERS.names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `cals-bench models list` shows them"
    raise CalsBenchError(f"unknown model {spec!r}{hint}")


def describe(entry: RegistryEntry) -> dict[str, Any]:
    """A registered model as plain data for ``models list``: summary, variants, paper, licence, tags and origin."""
    cls = entry.cls
    return {
        "name": entry.name,
        "summary": getattr(cls, "summary", "") if cls else "",
        "variants": list(getattr(cls, "variants", ()) or ()) if cls else [],
        "default_variant": getattr(cls, "default_variant", None) if cls else None,
        "licence": getattr(cls, "licence", "") if cls else "",
        "paper": getattr(cls, "paper", "") if cls else "",
        "uses_ground_truth": bool(getattr(cls, "uses_ground_truth", False)) if cls else False,
        "ground_truth_variants": list(getattr(cls, "ground_truth_variants", ()) or ()) if cls else [],
        "tags": list(entry.tags),
        "origin": entry.origin,
    }
