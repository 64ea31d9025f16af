"""One registry pattern for every kind of named thing the suite loads: enhancers, metrics, feature
extractors, training tasks, training data sources and weight files.

A :class:`Registry` maps names to objects of one kind. It fills itself lazily, on the first lookup, from
two places (as lm-evaluation-harness and timm do):

- ``builtin_modules``: modules of this package whose import registers the built-ins (through
  :meth:`Registry.register`). A module that fails to import is recorded in :meth:`Registry.import_errors`
  and never hides the others;
- the entry-point group ``cals_bench.<kind>s`` (e.g. ``cals_bench.metrics``): another installed package
  adds a name there; the object behind it is imported only when that name is used.

Registering a name twice is an error unless it is the very same object, or an equal value such as a
frozen dataclass declared again (a module imported twice under one name is harmless; two different
classes under one name are a bug that must not pass silently).
An unknown name is an error that lists the closest names.

>>> colours = Registry("colour", builtin_modules=())
>>> colours.register("red", 0xFF0000)
16711680
>>> colours.get("red")
16711680
>>> colours.get("rde")
Traceback (most recent call last):
...
cals_bench.errors.CalsBenchError: unknown colour 'rde'; did you mean red?
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from cals_bench.errors import CalsBenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one kind; filled from built-in modules and an entry-point group on first use."""

    def __init__(
        self,
        kind: str,
        *,
        builtin_modules: tuple[str, ...] = (),
        entry_point_group: str | None = "",
        plural: str | None = None,
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.builtin_modules = tuple(builtin_modules)
        # "" -> the default group cals_bench.<plural>; None -> no entry points for this kind
        self.entry_point_group = (
            f"cals_bench.{self.plural.replace(' ', '_')}" if entry_point_group == "" else entry_point_group
        )
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._entry_points: dict[str, EntryPoint] = {}
        self._errors: dict[str, str] = {}
        self._loaded = False
        # bumped by every change, so that tables derived from the registry know when to rebuild
        self.revision = 0

    # -- registration ---------------------------------------------------------------------------------
    def register(self, name: str, obj: T, *, origin: str | None = None) -> T:
        """Add ``obj`` under ``name``; the same (or an equal) object again is a no-op, a different one an error."""
        if not name:
            raise ValueError(f"a {self.kind} needs a name ({obj!r})")
        if name in self._items and self._items[name] is not obj and self._items[name] != obj:
            raise ValueError(
                f"{self.kind} name {name!r} registered twice: {self._origins[name]} and {origin or _origin(obj)}"
            )
        if name not in self._items:
            self.revision += 1
        self._items[name] = obj
        self._origins[name] = origin or _origin(obj)
        return obj

    def decorator(self, name: str | None = None, *, key: Callable[[T], str] | None = None):
        """``@registry.decorator("name")``, or ``key`` to take the name from the object."""

        def wrap(obj: T) -> T:
            chosen = name or (key(obj) if key else getattr(obj, "name", ""))
            return self.register(chosen, obj)

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a name (tests that register throw-away objects clean up with this)."""
        self._items.pop(name, None)
        self._origins.pop(name, None)
        self._entry_points.pop(name, None)
        self.revision += 1

    # -- lookup ---------------------------------------------------------------------------------------
    def load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin_modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # a broken optional module must not hide the rest
                self._errors[module] = f"{type(exc).__name__}: {exc}"
        if self.entry_point_group:
            for ep in entry_points(group=self.entry_point_group):
                if ep.name not in self._items:
                    self._entry_points[ep.name] = ep

    def names(self) -> list[str]:
        self.load_builtins()
        return sorted({*self._items, *self._entry_points})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The object registered as ``name`` (importing an entry point's object on first use)."""
        self.load_builtins()
        if name in self._items:
            return self._items[name]
        if name in self._entry_points:
            ep = self._entry_points[name]  # kept until it loads: a failed import fails every lookup alike
            try:
                obj = ep.load()
            except Exception as exc:
                raise CalsBenchError(
                    f"{self.kind} {name!r} (entry point {ep.value}) failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            del self._entry_points[name]
            if name in self._items:  # importing it registered the name (a decorator in the plugin module)
                self._origins[name] = f"entry point {ep.value}"
                return self._items[name]
            return self.register(name, obj, origin=f"entry point {ep.value}")
        raise CalsBenchError(self.unknown_message(name))

    def registered(self) -> dict[str, T]:
        """The objects registered so far, by name; entry points not imported yet are left out (and stay
        unimported): listings that must not import plugins start here."""
        self.load_builtins()
        return dict(sorted(self._items.items()))

    def items(self) -> dict[str, T]:
        """Every registered object by name, entry points imported (what listings show)."""
        out = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except CalsBenchError as exc:
                self._errors[f"entry point {name}"] = str(exc)
        return out

    def origin(self, name: str) -> str:
        self.load_builtins()
        if name in self._entry_points:
            return f"entry point {self._entry_points[name].value}"
        return self._origins[name]

    def import_errors(self) -> dict[str, str]:
        """Modules (or entry points) that failed to import while filling the registry -> the error."""
        self.load_builtins()
        return dict(self._errors)

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            return f"unknown {self.kind} {name!r}; did you mean {', '.join(close)}?"
        return f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(known) or 'none'}"


def _origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qualname}"
