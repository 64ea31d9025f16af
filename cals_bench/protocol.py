"""Protocols: what is measured, declared in ``protocols/<name>.yaml`` and validated into frozen dataclasses.

A protocol fixes the dataset layout and split, file checksums, preprocessing, the metric list and every
metric convention, the attributes that define groups, the audit settings and the seed. Changing what a
protocol measures bumps its ``version``; every run records name, version and the protocol's hash (sha256 of
its validated, canonical JSON form).

A protocol file may start with ``include: other.yaml``: the other file's mapping is loaded first and this
file's keys override it (mappings merged key by key), as lm-evaluation-harness task YAMLs do.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from cals_bench.audit_settings import AuditSettings
from cals_bench.data.splits import SplitSpec
from cals_bench.data.synthetic import DegradationSpec
from cals_bench.errors import ProtocolError
from cals_bench.schema import SchemaError, added_field, build, read_yaml_mapping, to_plain


@dataclass(frozen=True)
class BandSpec:
    """A derived attribute: the numeric attribute ``source`` cut at ascending integer ``edges``.

    ``edges: [20, 40, 60]`` gives the labels ``0-19``, ``20-39``, ``40-59`` and ``60+``; a sample whose
    ``source`` is missing or not a number gets no label (it counts overall, in no group).
    """

    source: str
    edges: list[int]

    def __post_init__(self) -> None:
        if not self.edges or any(b <= a for a, b in zip(self.edges, self.edges[1:])) or self.edges[0] <= 0:
            raise ValueError(f"bands: edges must be positive and ascending, got {self.edges}")

    def label(self, value: str | None) -> str:
        try:
            v = float(str(value).strip().rstrip("Yy"))
        except (TypeError, ValueError):
            return ""
        if v != v:  # NaN
            return ""
        lo = 0
        for edge in self.edges:
            if v < edge:
                return f"{lo}-{edge - 1}"
            lo = edge
        return f"{lo}+"


@dataclass(frozen=True)
class DatasetSpec:
    """Where the samples come from.

    layouts:
    - ``paired``: ``low_dir`` and ``high_dir`` under the data root, paired by ``pairing``;
    - ``synthetic``: clean images in ``clean_dir`` become pairs through the seeded degradation;
    - ``demo``: built-in scikit-image sample images (no data root), degraded like ``synthetic``;
    - ``composite``: the samples of the protocols named in ``components``, each with its ``context``;
    - ``unpaired``: images with no reference (real low-light photographs) in ``low_dir`` (empty: the data
      root itself); only no-reference metrics apply. ``files`` (optional) is the published file list:
      exactly those files are scored, and a listed file that is missing fails its sample.

    ``bands`` (optional) derives attributes from numeric ones (``age_band`` from ``age``), before the split.
    ``split`` (optional) keeps one part of a seeded train/val/test split (:mod:`cals_bench.data.splits`):
    the test parts are what the CALS protocols score, and trainers read the train parts of the same spec.
    ``recursive`` (synthetic layout): list the images of ``clean_dir`` and of its sub-folders (BSDS500's
    train/val/test folders as one pool); sample ids stay the file stems.
    """

    layout: Literal["paired", "synthetic", "demo", "composite", "unpaired"]
    root_names: list[str] = field(default_factory=list)
    low_dir: str = ""
    high_dir: str = ""
    clean_dir: str = ""
    pairing: Literal["same-name", "lol-v2-real"] = "same-name"
    expected_count: int | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    manifest: str = ""
    manifest_format: Literal["csv", "celebamask-hq", "nih-cxr14", "utkface", "auto"] = "csv"
    manifest_id_column: str = "image"
    attributes: dict[str, str] = field(default_factory=dict)
    components: list[str] = field(default_factory=list)
    degradation: DegradationSpec = field(default_factory=DegradationSpec)
    train_low_dir: str = ""
    train_high_dir: str = ""
    source: str = ""
    citation: str = ""
    bands: dict[str, BandSpec] = added_field(default_factory=dict)
    split: SplitSpec | None = added_field(None)
    recursive: bool = added_field(False)
    files: list[str] = added_field(default_factory=list)

    def __post_init__(self) -> None:
        # folders and files are named relative to the data root, and stay inside it
        for key in ("low_dir", "high_dir", "clean_dir", "manifest", "train_low_dir", "train_high_dir"):
            _inside_root(getattr(self, key), key)
        for rel in self.checksums:
            _inside_root(rel, f"checksums.{rel}")


def _inside_root(rel: str, key: str) -> None:
    path = Path(rel)
    if rel and (path.is_absolute() or rel.startswith(("/", "\\")) or ".." in path.parts or ":" in rel):
        raise ValueError(
            f"{key}: {rel!r} must be a relative path inside the data root (no '..', not absolute)"
        )


@dataclass(frozen=True)
class PreprocessSpec:
    """Explicit resizing (never implicit): ``resize`` is ``[height, width]`` or null (native size)."""

    resize: tuple[int, int] | None = None
    resize_mode: Literal["stretch", "center-crop"] = "stretch"
    interpolation: Literal["area", "bicubic", "bilinear"] = "area"


@dataclass(frozen=True)
class Protocol:
    """A validated protocol: dataset, metrics, audit settings and limits; its ``hash`` is recorded by every run."""

    name: str
    version: int
    title: str
    dataset: DatasetSpec
    metrics: list[str]
    description: str = ""
    diagnostics: list[str] = field(default_factory=list)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    face_samples: dict[str, list[str]] = field(default_factory=dict)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    # the one audit-settings type: the fairness package takes this object as it is (docs/fairness.md)
    audit: AuditSettings = field(default_factory=AuditSettings)
    batch_size: int = 4
    seed: int = 0
    changelog: dict[int, str] = field(default_factory=dict)
    # seconds one batch may take in the model before it fails (None: the suite's default; 0: no limit)
    batch_timeout_s: float | None = added_field(None)
    # images above this many pixels fail their sample (None: the suite's default, cals_bench.limits)
    max_pixels: int | None = added_field(None)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError("version must be >= 1")
        if not self.metrics:
            raise ValueError("metrics: at least one metric is required")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.batch_timeout_s is not None and not self.batch_timeout_s >= 0:
            raise ValueError("batch_timeout_s must be >= 0 (0: no limit)")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError("max_pixels must be >= 1")
        unused = [m for m in self.metric_options if m not in self.all_metrics]
        if unused:
            raise ValueError(
                f"metric_options.{unused[0]}: not a metric of this protocol (metrics and diagnostics: "
                f"{', '.join(self.all_metrics)})"
            )

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the validated spec (keys sorted)."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    @property
    def all_metrics(self) -> list[str]:
        return list(dict.fromkeys([*self.metrics, *self.diagnostics]))


def protocol_dir() -> Path:
    """The folder of built-in protocol YAMLs (the ``protocols`` package, also inside a wheel)."""
    return Path(str(resources.files("cals_bench.protocols")))


def available() -> dict[str, Path]:
    """The built-in protocols by name -> YAML file."""
    return {p.stem: p for p in sorted(protocol_dir().glob("*.yaml"))}


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, error=ProtocolError, what="protocol", replace=("checksums",))


def load_file(path: str | Path) -> Protocol:
    """A protocol from a YAML file (a user protocol may take a built-in name only with the built-in's hash)."""
    path = Path(path)
    data = _read_yaml(path.resolve())
    try:
        proto = build(Protocol, data, str(path))
    except SchemaError as exc:
        raise ProtocolError(str(exc)) from exc
    return proto


def _not_a_builtin(proto: Protocol, path: Path) -> Protocol:
    """A protocol file may not take a built-in protocol's name unless it is that protocol (same hash):
    a built-in name on a leaderboard stands for the built-in spec."""
    builtin = available().get(proto.name)
    if builtin is None or builtin.resolve() == path.resolve():
        return proto
    if load_file(builtin).hash != proto.hash:
        raise ProtocolError(
            f"{path}: name {proto.name!r} is a built-in protocol's; a protocol that differs from it "
            "(here in its spec hash) needs a name of its own"
        )
    return proto


def load(name_or_path: str) -> Protocol:
    """A built-in protocol by name, or a protocol YAML by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return _not_a_builtin(load_file(p), p)
    known = available()
    if name_or_path not in known:
        close = difflib.get_close_matches(name_or_path, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise ProtocolError(f"unknown protocol {name_or_path!r}{hint}")
    proto = load_file(known[name_or_path])
    if proto.name != name_or_path:
        raise ProtocolError(f"{known[name_or_path]}: name {proto.name!r} differs from the file name")
    return proto
