"""Strict construction of frozen dataclasses from YAML/JSON mappings.

Used for protocols and training configs: unknown keys and wrong types are rejected with one line naming
the file and the dotted key (``protocols/lol-v1.yaml: dataset.lowdir: unknown key; did you mean low_dir?``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class SchemaError(ValueError):
    """Raised with a message ``<source>: <key>: <problem>``."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _convert(value, opt, key, source)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if len(errors) == 1 else f"{source}: {key}: wrong type ({value!r})")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise SchemaError(
                f"{source}: {key}: must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SchemaError(f"{source}: {key}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, source, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SchemaError(f"{source}: {key}: expected a list, got {type(value).__name__} ({value!r})")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SchemaError(f"{source}: {key}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{source}: {key}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {
            _convert(k, kt, f"{key}.{k}", source): _convert(v, vt, f"{key}.{k}", source)
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{source}: {key}: expected a number, got {type(value).__name__} ({value!r})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{source}: {key}: expected an integer, got {type(value).__name__} ({value!r})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"{source}: {key}: expected true/false, got {type(value).__name__} ({value!r})")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise SchemaError(f"{source}: {key}: expected a string, got {type(value).__name__} ({value!r})")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise SchemaError(f"{source}: {key}: expected {_type_name(tp)}, got {type(value).__name__}")


def build(cls: type[T], data: dict[str, Any], source: str, prefix: str = "") -> T:
    """Construct dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; allowed: {', '.join(fields)}"
            raise SchemaError(f"{source}: {prefix}{key}: unknown key{hint}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}", source)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SchemaError(f"{source}: {prefix}{missing[0]}: required key missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{source}: {prefix.rstrip('.') or 'top level'}: {exc}") from exc


OMIT_DEFAULT = "omit_default"


def added_field(default: Any = None, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A field added to a spec after its first version: left out of :func:`to_plain` while at its default.

    Adding an optional key to a protocol or config must not change the hash of every file that does not use
    it (a protocol's hash is the sha256 of ``to_plain``); a file that sets the key gets a new hash, and its
    version is bumped as the protocol rules require.
    """
    meta = {OMIT_DEFAULT: True}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _at_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    if f.default_factory is not dataclasses.MISSING:
        return value == f.default_factory()
    return False


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able data (tuples become lists; :func:`added_field` keys at their
    default are left out)."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get(OMIT_DEFAULT) and _at_default(f, getattr(obj, f.name)))
        }
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def merge_mappings(
    base: dict[str, Any], over: dict[str, Any], replace: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``over`` on top of ``base``, mappings merged key by key (keys in ``replace`` are replaced whole)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in replace:
            out[key] = merge_mappings(out[key], value, replace)
        else:
            out[key] = value
    return out


def _refuse_aliases(text: str, loader: type, path: Path, error: type[Exception]) -> None:
    """Refuse YAML aliases (``*name``) before anything is built: a few hundred bytes of nested aliases
    expand to gigabytes when the spec is hashed or printed (a "billion laughs" file). Specs never need
    them; ``include:`` is the way to share a block between files."""
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise error(
                f"{path}: line {line}: YAML aliases (*{event.anchor}) are not allowed; write the value out"
            )


def read_yaml_mapping(
    path: Path,
    *,
    error: type[Exception],
    what: str,
    loader: type = yaml.SafeLoader,
    replace: tuple[str, ...] = (),
    _seen: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """A YAML mapping with ``include: other.yaml`` resolved (the included file first, this one on top).

    Every problem raises ``error`` with one line naming the file: include cycles, malformed YAML (with the
    line), unreadable files, non-mappings.
    """
    if path in _seen:
        raise error(f"{path}: include cycle")
    try:
        text = path.read_text(encoding="utf-8")
        _refuse_aliases(text, loader, path, error)
        data = yaml.load(text, Loader=loader)  # SafeLoader or a subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise error(f"{path}: malformed YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a YAML mapping")
    include = data.pop("include", None)
    if include is None:
        return data
    if not isinstance(include, str):
        raise error(f"{path}: include: expected a file name")
    base = read_yaml_mapping(
        (path.parent / include).resolve(),
        error=error,
        what=what,
        loader=loader,
        replace=replace,
        _seen=(*_seen, path),
    )
    return merge_mappings(base, data, replace)
