"""Training data sources: a registry chosen by ``data.source`` in a training config.

A source is a function registered with ``@register_source("name", options=OptionsDataclass)``. It receives
the validated :class:`~cals_bench.train.config.DataConfig`, its own options (``data.options``, validated
strictly into ``OptionsDataclass``), the data root and the training seed, and returns a
:class:`SourceData`: the training ids, a dataset indexed by ``(sample index, step, slot)`` whose items are
the mappings of :mod:`cals_bench.train.batch`, and the paired validation samples (possibly none).

Built-ins:

``protocol`` (default)  today's paired training data: a protocol's training split, two paired folders, or
                        clean images degraded into pairs (``data.protocol`` / ``low_dir`` + ``high_dir`` /
                        ``clean_dir``). Items carry ``low`` and ``high``.
``lows``                low-light images without references (zero-reference training, e.g. Zero-DCE):
                        ``options.low_dir`` (a folder of real low-light images) or ``options.clean_dir``
                        (clean images through the seeded degradation; the clean image is then the held-out
                        validation reference only). Items carry ``low`` (``high`` is None).
``unpaired``            ``lows``, plus ``options.normal_dir``: unrelated normal-light images; each item
                        carries a random crop of one of them, drawn from ``(seed, step, slot)``, as
                        ``normal`` (EnlightenGAN-style unpaired training).

Every draw (crop, flips, the normal image) is a function of ``(seed, step, slot)``, so resume, data-loader
workers and DDP see the same batches (see :mod:`cals_bench.train.data`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cals_bench.data import splits
from cals_bench.data.datasets import Sample, load_samples
from cals_bench.data.io import is_image, read_rgb, to_tensor
from cals_bench.data.splits import SplitSpec
from cals_bench.data.synthetic import degrade
from cals_bench.errors import DataError
from cals_bench.protocol import DatasetSpec, Protocol
from cals_bench.registry import Registry
from cals_bench.train.batch import item
from cals_bench.train.data import CropDataset, load_training_data, split_validation
from cals_bench.train.tasks import TASK_MODULES


@dataclass
class SourceData:
    """What a source returns. ``dataset[(index, step, slot)]`` is an item (see :mod:`..batch`);
    ``len(dataset) == len(train_ids)``. ``val``: paired samples for validation (may be empty).
    ``info``: extra facts written to ``split.json``."""

    root: Path
    description: str
    train_ids: list[str]
    dataset: torch.utils.data.Dataset
    val: list[Sample]
    info: dict[str, Any] = field(default_factory=dict)


SourceFn = Callable[[Any, Any, "str | Path | None", int], SourceData]


@dataclass(frozen=True)
class RegisteredSource:
    """A training data source as registered: its name, build function, options type and summary."""

    name: str
    build: SourceFn
    options_cls: type
    summary: str


# name -> source: the built-ins (this module, and the task modules: a task may register the source it needs
# next to itself), then what other packages declare in the entry-point group ``cals_bench.sources``
SOURCES: Registry[RegisteredSource] = Registry(
    "training data source", builtin_modules=(__name__, *TASK_MODULES), entry_point_group="cals_bench.sources"
)


def register_source(name: str, options: type, summary: str = ""):
    """Function decorator: ``@register_source("lows", options=LowsOptions)``.

    The function is called ``fn(data_config, options, data_root, seed) -> SourceData``. A different
    function (or options) under a name already taken is refused.
    """

    def wrap(fn: SourceFn) -> SourceFn:
        SOURCES.register(
            name,
            RegisteredSource(name, fn, options, summary or (fn.__doc__ or "").strip()),
            origin=f"{fn.__module__}:{fn.__qualname__}",
        )
        return fn

    return wrap


def sources() -> dict[str, RegisteredSource]:
    """All registered training data sources by name (built-ins, task modules and entry points imported)."""
    return SOURCES.items()


def get_source(name: str) -> RegisteredSource:
    """The registered source ``name`` (unknown names: a one-line error with the closest ones)."""
    if name not in SOURCES:
        raise DataError(SOURCES.unknown_message(name))
    return SOURCES.get(name)


def build_source(data: Any, data_root: str | Path | None, seed: int) -> SourceData:
    """The training data of a validated ``data:`` section."""
    src = get_source(data.source)
    return src.build(data, data.options, data_root, seed)


# ---------------------------------------------------------------------------------------------------------
# protocol: paired training data (the engine's original behaviour)


@dataclass(frozen=True)
class NoOptions:
    """The source takes no ``data.options``."""


class PairItems(torch.utils.data.Dataset):
    """:class:`~cals_bench.train.data.CropDataset` crops as items."""

    def __init__(self, crops: CropDataset) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        low, high = self.crops[key]
        s = self.crops.samples[key[0]]
        return item(low, high, attributes=s.attributes, id=s.sample_id)


@register_source("protocol", options=NoOptions, summary="paired training data (protocol split or folders)")
def protocol_source(data: Any, options: NoOptions, data_root: str | Path | None, seed: int) -> SourceData:
    """Paired training data from a protocol's training split (or paired folders), as random crops."""
    td = load_training_data(data, data_root)
    crops = CropDataset(td.train, data.crop, data.flips, seed, data.cache_images)
    return SourceData(td.root, td.description, td.train_ids, PairItems(crops), td.val)


# ---------------------------------------------------------------------------------------------------------
# lows / unpaired


@dataclass(frozen=True)
class LowsOptions:
    """``data.options`` of the ``lows`` source (folders relative to the data root).

    Exactly one of ``low_dir`` (real low-light images) and ``clean_dir`` (clean images darkened by the
    seeded degradation, ``data.degradation`` and ``data.degradation_seed``; sample id = file stem, as the
    synthetic protocols have it). ``recursive``: list sub-folders too (BSDS500's train/val/test as one pool).
    ``splits``: keep only the images in the chosen ``part`` of every one of these seeded splits
    (:mod:`cals_bench.data.splits`; e.g. the train part of the split a CALS protocol scores the test part of).
    Validation (paired, for best.pt): with ``clean_dir``, the images in the chosen parts of ``val_splits``
    (else ``data.val_fraction`` of the training images, held out); with ``low_dir``, the paired folders
    ``val_low_dir`` + ``val_high_dir`` when given. At most ``val_count`` validation pairs (drawn by
    ``data.split_seed``). ``resize_short``: downscale (area) each image so its shorter side is at most this
    (0 = never).
    """

    low_dir: str = ""
    clean_dir: str = ""
    recursive: bool = False
    splits: list[SplitSpec] = field(default_factory=list)
    val_splits: list[SplitSpec] = field(default_factory=list)
    val_low_dir: str = ""
    val_high_dir: str = ""
    val_count: int = 16
    resize_short: int = 0

    def __post_init__(self) -> None:
        if bool(self.low_dir) == bool(self.clean_dir):
            raise ValueError(
                "set exactly one of low_dir (real low-light images) and clean_dir (synthetic lows)"
            )
        if bool(self.val_low_dir) != bool(self.val_high_dir):
            raise ValueError("val_low_dir and val_high_dir go together")
        if self.val_splits and not self.clean_dir:
            raise ValueError("val_splits need clean_dir (the references of the validation pairs)")
        if self.resize_short < 0 or self.val_count < 1:
            raise ValueError("resize_short must be >= 0, val_count >= 1")


@dataclass(frozen=True)
class UnpairedOptions(LowsOptions):
    """``lows`` options plus the unrelated normal-light images: ``normal_dir`` (relative to the data root),
    ``normal_recursive`` and ``normal_splits`` (as ``recursive``/``splits``). No image may be both a low
    and a normal one."""

    normal_dir: str = ""
    normal_recursive: bool = False
    normal_splits: list[SplitSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.normal_dir:
            raise ValueError("normal_dir (a folder of normal-light images) is required")


def _shrink(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    if not short or min(h, w) <= short:
        return img
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _folder(
    root: Path, rel: str, what: str, recursive: bool = False, keep: list[SplitSpec] = ()
) -> list[Path]:
    """The images of ``root/rel`` (sub-folders too when ``recursive``) in the chosen part of every split."""
    folder = root / rel
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder does not exist (relative to the data root {root})")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted((p for p in found if p.is_file() and is_image(p)), key=lambda p: (p.stem, str(p)))
    stems = [p.stem for p in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise DataError(f"{folder}: duplicate image ids {dupes[:5]} (two files share a stem)")
    for spec in keep:
        chosen = set(splits.select(stems, {}, spec))
        files = [p for p in files if p.stem in chosen]
        stems = [p.stem for p in files]
    if not files:
        raise DataError(f"{folder}: no images in the {what} folder" + (" after the splits" if keep else ""))
    return files


@dataclass
class _Image:
    """A training image: ``load()`` -> uint8 ``(H, W, 3)`` low (and the clean reference or None)."""

    sample_id: str
    load: Callable[[], tuple[np.ndarray, np.ndarray | None]]


class CropItems(torch.utils.data.Dataset):
    """Random crops (and flips) of low images, drawn from ``(seed, step, slot)`` as in CropDataset; with
    ``normals``, a crop of the normal image drawn from ``(seed, step, slot, 1)``. Decoded images are cached
    per process when ``cache`` is set."""

    def __init__(
        self,
        lows: list[_Image],
        crop: int,
        flips: bool,
        seed: int,
        resize_short: int = 0,
        normals: list[Path] | None = None,
        cache: bool = True,
    ) -> None:
        self.lows, self.crop, self.flips, self.seed = lows, crop, flips, seed
        self.resize_short, self.normals = resize_short, normals
        self.cache: dict[Any, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.lows)

    def _cached(self, key: Any, load: Callable[[], np.ndarray]) -> np.ndarray:
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        img = load()
        if self.cache is not None:
            self.cache[key] = img
        return img

    def _crop(self, img: np.ndarray, rng: np.random.Generator, where: str) -> torch.Tensor:
        h, w = img.shape[:2]
        c = self.crop
        if h < c or w < c:
            raise DataError(f"{where}: image {w}x{h} is smaller than the {c}x{c} training crop")
        top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        flip_h, flip_v = (bool(b) for b in rng.random(2) < 0.5)
        out = img[top : top + c, left : left + c]
        if self.flips and flip_h:
            out = out[:, ::-1]
        if self.flips and flip_v:
            out = out[::-1]
        return to_tensor(np.ascontiguousarray(out))

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        index, step, slot = key
        entry = self.lows[index]
        low = self._cached(("low", index), lambda: _shrink(entry.load()[0], self.resize_short))
        out = self._crop(low, np.random.default_rng([self.seed, step, slot]), entry.sample_id)
        normal = None
        if self.normals:
            rng = np.random.default_rng([self.seed, step, slot, 1])
            k = int(rng.integers(0, len(self.normals)))
            path = self.normals[k]
            img = self._cached(("normal", k), lambda: _shrink(read_rgb(path), self.resize_short))
            normal = self._crop(img, rng, str(path))
        return item(out, None, normal=normal, id=entry.sample_id)


def _at_most(samples: list[Sample], count: int, seed: int) -> list[Sample]:
    if len(samples) <= count:
        return samples
    order = sorted(samples, key=lambda s: s.sample_id)
    pick = set(np.random.default_rng([seed, 0x7A1]).permutation(len(order))[:count].tolist())
    return [s for i, s in enumerate(order) if i in pick]


def _paired_val(root: Path, opts: LowsOptions, split_seed: int) -> list[Sample]:
    ds = DatasetSpec(layout="paired", low_dir=opts.val_low_dir, high_dir=opts.val_high_dir)
    proto = Protocol(name="validation-data", version=1, title="validation", dataset=ds, metrics=["psnr"])
    _, samples = load_samples(proto, root)
    bad = [s for s in samples if s.error]
    if bad:
        raise DataError(f"{bad[0].error} ({len(bad)} validation pair(s) incomplete)")
    return _at_most(samples, opts.val_count, split_seed)


def _synthetic_pair(path: Path, data: Any) -> Sample:
    """The seeded low-light version of a clean image and the image itself (uint8), as a core Sample."""
    sid = path.stem

    def loader() -> tuple[np.ndarray, np.ndarray]:
        clean = read_rgb(path)
        return degrade(clean, data.degradation, data.degradation_seed, sid)[0], clean

    return Sample(sid, {}, lambda: sid, loader, None, path)


def _lows(data: Any, opts: LowsOptions, data_root: str | Path | None) -> tuple[Path, str, list[_Image], list]:
    if not data_root:
        raise DataError("training needs a data root (--data-root DIR)")
    root = Path(data_root)
    if opts.low_dir:
        files = _folder(root, opts.low_dir, "low-light image", opts.recursive, opts.splits)
        lows = [_Image(p.stem, lambda p=p: (read_rgb(p), None)) for p in files]
        val = _paired_val(root, opts, data.split_seed) if opts.val_low_dir else []
        return root, f"low-light images in {opts.low_dir} (no references)", lows, val
    files = _folder(root, opts.clean_dir, "clean image", opts.recursive, opts.splits)
    samples = [_synthetic_pair(p, data) for p in files]
    if opts.val_splits:
        train = samples
        val_files = _folder(root, opts.clean_dir, "validation image", opts.recursive, opts.val_splits)
        val = [_synthetic_pair(p, data) for p in val_files]
        overlap = {s.sample_id for s in val} & {s.sample_id for s in train}
        if overlap:
            raise DataError(f"{len(overlap)} image(s) are in both the training and the validation splits")
    else:
        train, val = split_validation(samples, data.val_fraction, data.split_seed)
    val = _at_most(val, opts.val_count, data.split_seed) if val else val
    if opts.val_low_dir:
        val = _paired_val(root, opts, data.split_seed)
    lows = [_Image(s.sample_id, lambda s=s: (s.load()[0], None)) for s in train]
    desc = f"synthetic lows of the clean images in {opts.clean_dir} (references not used in training)"
    return root, desc, lows, val


@register_source("lows", options=LowsOptions, summary="low-light images without references")
def lows_source(data: Any, opts: LowsOptions, data_root: str | Path | None, seed: int) -> SourceData:
    """Low-light images without references (zero-reference training), as random crops."""
    root, desc, lows, val = _lows(data, opts, data_root)
    dataset = CropItems(lows, data.crop, data.flips, seed, opts.resize_short, None, data.cache_images)
    return SourceData(root, desc, [x.sample_id for x in lows], dataset, val)


@register_source(
    "unpaired", options=UnpairedOptions, summary="low-light images + unrelated normal-light images"
)
def unpaired_source(data: Any, opts: UnpairedOptions, data_root: str | Path | None, seed: int) -> SourceData:
    """Low-light images and a separate set of normal-light images (unpaired training, e.g. EnlightenGAN)."""
    root, desc, lows, val = _lows(data, opts, data_root)
    normals = _folder(root, opts.normal_dir, "normal-light image", opts.normal_recursive, opts.normal_splits)
    low_folder = (root / (opts.low_dir or opts.clean_dir)).resolve()
    low_ids = {x.sample_id for x in lows} | {s.sample_id for s in val}
    shared = sorted(p.stem for p in normals if p.stem in low_ids and low_folder in p.resolve().parents)
    if shared:
        raise DataError(
            f"{len(shared)} normal-light image(s) are also low-light training or validation images "
            f"(e.g. {shared[0]}); choose disjoint normal_splits"
        )
    dataset = CropItems(lows, data.crop, data.flips, seed, opts.resize_short, normals, data.cache_images)
    info = {"normal_dir": opts.normal_dir, "normal_count": len(normals)}
    return SourceData(
        root, f"{desc}; unpaired normal-light images in {opts.normal_dir}", [x.sample_id for x in lows],
        dataset, val, info,
    )  # fmt: skip
