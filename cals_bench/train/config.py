"""Training configs: YAML validated strictly into frozen dataclasses (unknown keys, wrong types: errors).

A config names a ``task`` (a registered :class:`~cals_bench.train.tasks.TrainableModel`) and has the
sections ``data``, ``model`` (the task's own dataclass), ``optim``, ``schedule``, ``runtime`` and ``log``.
A file may start with ``include: other.yaml`` (the other file is read first, this one's keys override it,
mappings merged key by key). Command-line overrides ``--set optim.lr=1e-3`` are applied to the raw mapping
before validation, so they are checked like the file. The validated config is saved, as JSON, inside every
checkpoint and beside the run (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cals_bench.data.synthetic import DegradationSpec
from cals_bench.errors import CalsBenchError
from cals_bench.schema import SchemaError, added_field, build, merge_mappings, read_yaml_mapping, to_plain
from cals_bench.train.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where training pairs come from, how the validation split is held out, and the augmentation.

    Exactly one source: ``protocol`` (the protocol's ``train_low_dir``/``train_high_dir`` and pairing under
    the data root: LOL-v1 our485, LOL-v2 Train), ``low_dir`` + ``high_dir`` (any paired folders), or
    ``clean_dir`` (clean images; each becomes a pair through the core's seeded low-light degradation with
    ``degradation`` ranges and ``degradation_seed``). ``val_fraction`` of the training pairs, drawn once
    by ``split_seed``, is held out for validation; the protocol's test split is never read in training.

    ``source`` names a registered training data source (:mod:`cals_bench.train.sources`); the keys above
    belong to the default, ``protocol``. Other sources (``lows``, ``unpaired``, or one a task registers)
    take their own keys in ``options``, validated by the source; ``crop``, ``flips``, ``val_fraction``,
    ``split_seed``, ``degradation*``, ``cache_images`` and ``workers`` apply to every source.
    """

    source: str = added_field("protocol")
    options: Any = added_field(default_factory=dict)
    protocol: str = ""
    low_dir: str = ""
    high_dir: str = ""
    pairing: Literal["same-name", "lol-v2-real"] = "same-name"
    clean_dir: str = ""
    degradation: DegradationSpec = field(default_factory=DegradationSpec)
    degradation_seed: int = 0
    val_fraction: float = 0.05
    split_seed: int = 0
    crop: int = 256
    flips: bool = True
    val_crop: int | None = None
    cache_images: bool = True
    workers: int = 0

    def __post_init__(self) -> None:
        sources = [bool(self.protocol), bool(self.low_dir or self.high_dir), bool(self.clean_dir)]
        if self.source != "protocol":
            if any(sources):
                raise ValueError(
                    f"protocol, low_dir, high_dir and clean_dir belong to source protocol; source "
                    f"{self.source} takes its folders in data.options"
                )
        elif sum(sources) != 1:
            raise ValueError("set exactly one data source: protocol, low_dir + high_dir, or clean_dir")
        if bool(self.low_dir) != bool(self.high_dir):
            raise ValueError("low_dir and high_dir go together")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.crop < 16:
            raise ValueError(f"crop must be >= 16, got {self.crop}")
        if self.val_crop is not None and self.val_crop < 16:
            raise ValueError(f"val_crop must be >= 16 or null, got {self.val_crop}")
        if self.workers < 0:
            raise ValueError("workers must be >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser. ``batch_size`` is the global batch, split evenly over the processes of a torchrun job."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.grad_clip < 0:
            raise ValueError("lr must be > 0, batch_size >= 1, grad_clip >= 0 (0 = no clipping)")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning rate over ``steps`` optimiser steps: optional linear warm-up, then cosine or constant."""

    name: Literal["cosine", "constant"] = "cosine"
    steps: int = 50000
    warmup_steps: int = 0
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        if self.steps < 1 or not 0 <= self.warmup_steps < self.steps:
            raise ValueError("steps must be >= 1 and 0 <= warmup_steps < steps")


@dataclass(frozen=True)
class RuntimeConfig:
    """Speed switches. ``amp: auto`` is bf16 autocast on a GPU that supports it, fp32 elsewhere; ``fp32``
    is no autocast; ``fp16`` uses a gradient scaler. The fast path on a GPU is
    ``amp: bf16, channels_last: true, compile: true``.
    ``deterministic`` asks torch for deterministic kernels (CPU runs are bit-reproducible either way)."""

    amp: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False


@dataclass(frozen=True)
class LogConfig:
    """Every ``every`` steps a CSV row of mean losses; validation every ``val_every``; checkpoints every
    ``checkpoint_every`` (``keep`` numbered ones besides last.pt and best.pt; 0 keeps all)."""

    every: int = 50
    val_every: int = 1000
    checkpoint_every: int = 1000
    keep: int = 3
    plot: bool = True

    def __post_init__(self) -> None:
        if min(self.every, self.val_every, self.checkpoint_every) < 1 or self.keep < 0:
            raise ValueError("every, val_every and checkpoint_every must be >= 1, keep >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """A training run's whole configuration, validated from YAML; its hash is recorded in checkpoints."""

    task: str
    data: DataConfig
    name: str = ""
    seed: int = 0
    model: Any = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``; learning rates are
    written the short way). Everything else is standard YAML 1.1."""


_ConfigLoader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no arbitrary objects


# Sections that may change when a run is resumed (speed switches and logging); anything else must match.
RESUMABLE_CHANGES = ("name", "runtime", "log")


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, error=ConfigError, what="training config", loader=_ConfigLoader)


merge = merge_mappings


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "model.width=8"]`` -> nested mapping; values are YAML (``[1, 2]``, ``true``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        key, text = item.split("=", 1)
        try:
            value = _yaml(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is both a value and a section")
        node[parts[-1]] = value
    return out


def builtin_configs() -> dict[str, Path]:
    """Built-in config YAMLs of every registered task, by file stem."""
    from cals_bench.train.tasks import tasks

    found: dict[str, Path] = {}
    for cls in tasks().values():
        if cls.config_dir is not None and Path(cls.config_dir).is_dir():
            found.update({p.stem: p for p in sorted(Path(cls.config_dir).glob("*.yaml"))})
    return found


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A training config's path from a built-in config name or a YAML path (one-line error otherwise)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: training config file does not exist")
        return path
    known = builtin_configs()
    if str(name_or_path) not in known:
        close = difflib.get_close_matches(str(name_or_path), list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; built-in configs: {', '.join(known)}"
        raise ConfigError(f"unknown training config {str(name_or_path)!r}{hint}")
    return known[str(name_or_path)]


def load_config(name_or_path: str | Path, overrides: Iterable[str] | dict[str, Any] = ()) -> TrainConfig:
    """A built-in config by name (``iaml-lol-v1``) or a YAML file, with ``--set`` overrides, validated."""
    path = resolve_config_path(name_or_path)
    raw = _read_yaml(path.resolve())
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    raw = merge(raw, over)
    raw.setdefault("name", path.stem)
    return config_from_dict(raw, str(path))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a plain mapping (a YAML file's, or the JSON saved in a checkpoint) into a TrainConfig."""
    from cals_bench.train.tasks import get_task

    try:
        cfg = build(TrainConfig, raw, source)
        task = get_task(cfg.task)
        model_cfg = build(task.config_cls, cfg.model, source, prefix="model.")
    except SchemaError as exc:
        raise ConfigError(str(exc)) from exc
    except ConfigError:
        raise
    except CalsBenchError as exc:  # an unknown task name
        raise ConfigError(f"{source}: task: {exc}") from exc
    data = _with_source_options(cfg.data, source)
    return dataclasses.replace(cfg, model=model_cfg, data=data)


def _with_source_options(data: DataConfig, source: str) -> DataConfig:
    """``data.options`` validated by the registered source's options dataclass."""
    from cals_bench.train.sources import get_source

    try:
        src = get_source(data.source)
    except CalsBenchError as exc:
        raise ConfigError(f"{source}: data.source: {exc}") from exc
    raw = data.options if isinstance(data.options, dict) else to_plain(data.options)
    try:
        options = build(src.options_cls, raw, source, prefix="data.options.")
    except SchemaError as exc:
        raise ConfigError(str(exc)) from exc
    if not dataclasses.fields(options):  # a source without options keeps {} (and old configs their JSON)
        return data
    return dataclasses.replace(data, options=options)


def config_from_json(text: str, source: str = "checkpoint") -> TrainConfig:
    """Rebuild a TrainConfig from its JSON text (as stored in a checkpoint)."""
    return config_from_dict(json.loads(text), source)


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The dotted key of the first difference between two plain mappings (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{prefix}{key}"
            diff = first_difference(a[key], b[key], f"{prefix}{key}.")
            if diff:
                return diff
        return None
    return None if a == b else prefix.rstrip(".") or "(top level)"


def training_identity(cfg: TrainConfig) -> dict[str, Any]:
    """The part of a config that an exact resume needs unchanged (all but RESUMABLE_CHANGES)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES}
