"""Turning a protocol's dataset declaration into samples: (sample id, low image, reference image, attributes).

Readers are a registry keyed by the protocol's ``dataset.layout``. Every reader returns :class:`Sample`
objects in a stable order; images are read lazily (``Sample.load``) so a run touches only what it scores.
A low image without its reference becomes a sample with ``error`` set: the run records it as failed and
goes on with the others.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cals_bench.data import splits
from cals_bench.data.io import is_image, read_rgb, sha256_path
from cals_bench.data.splits import SplitSpec
from cals_bench.data.synthetic import degrade
from cals_bench.errors import DataError, SampleError
from cals_bench.protocol import DatasetSpec, PreprocessSpec, Protocol

ENV_DATA = "CALS_BENCH_DATA"


@dataclass
class Sample:
    """One scored sample. ``load()`` returns ``(low, reference)`` as uint8 RGB ``(H, W, 3)``, preprocessed;
    the reference is None for an unpaired sample (layout ``unpaired``)."""

    sample_id: str
    attributes: dict[str, str]
    reference_key: Callable[[], str]
    loader: Callable[[], tuple[np.ndarray, np.ndarray]]
    low_path: Path | None = None
    high_path: Path | None = None
    error: str | None = None
    meta: dict = field(default_factory=dict)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        if self.error:
            raise SampleError(self.error)
        low, high = self.loader()
        if high is None:  # an unpaired sample (dataset layout "unpaired"): no reference image
            return low, high
        if low.shape != high.shape:
            where = f"{self.low_path} vs {self.high_path}" if self.low_path else self.sample_id
            raise SampleError(
                f"{where}: size mismatch between low {low.shape[1]}x{low.shape[0]} and reference "
                f"{high.shape[1]}x{high.shape[0]} (never resized silently)"
            )
        return low, high


# ----------------------------------------------------------------------------------------------------------
# preprocessing


_INTERP = {"area": cv2.INTER_AREA, "bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


def preprocess(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Apply the protocol's explicit resize (``[height, width]``), if any."""
    if spec.resize is None:
        return img
    th, tw = spec.resize
    if spec.resize_mode == "center-crop":
        h, w = img.shape[:2]
        scale = max(th / h, tw / w)
        ch, cw = round(th / scale), round(tw / scale)
        top, left = (h - ch) // 2, (w - cw) // 2
        img = img[top : top + ch, left : left + cw]
    if img.shape[:2] == (th, tw):
        return np.ascontiguousarray(img)
    return np.ascontiguousarray(cv2.resize(img, (tw, th), interpolation=_INTERP[spec.interpolation]))


def preprocess_key(spec: PreprocessSpec) -> str:
    """The preprocessing as a short text key (``native`` or the resize settings), part of cache keys."""
    if spec.resize is None:
        return "native"
    return f"resize={spec.resize[0]}x{spec.resize[1]}:{spec.resize_mode}:{spec.interpolation}"


def _file_key(path: Path, pre: PreprocessSpec) -> Callable[[], str]:
    def key() -> str:
        return f"sha256:{sha256_path(path)}|{preprocess_key(pre)}"

    return key


# ----------------------------------------------------------------------------------------------------------
# data roots


def layout_help(ds: DatasetSpec) -> str:
    """One line telling a user which files the dataset's layout expects under its data root."""
    if ds.layout == "paired":
        expect = f"<root>/{ds.low_dir}/*.png with matching <root>/{ds.high_dir}/*.png"
    elif ds.layout == "synthetic":
        expect = f"clean images in <root>/{ds.clean_dir}" + (
            f" and <root>/{ds.manifest}" if ds.manifest else ""
        )
    elif ds.layout == "unpaired":
        expect = f"images (png, jpg, bmp, tif) in <root>{'/' + ds.low_dir if ds.low_dir else ''}" + (
            f", the {len(ds.files)} files of the published list" if ds.files else ""
        )
    else:
        expect = "the component datasets, each in <root>/<its folder name>"
    src = f"; the official dataset is published at {ds.source}" if ds.source else ""
    return f"expected {expect}{src}"


def resolve_root(protocol: Protocol, data_root: str | Path | None) -> Path | None:
    """The folder holding the protocol's dataset (``--data-root``, else ``$CALS_BENCH_DATA/<name>``)."""
    ds = protocol.dataset
    if ds.layout == "demo":
        return None
    candidates: list[Path] = []
    if data_root:
        base = Path(data_root).expanduser()
        if base.exists() and not base.is_dir():
            raise DataError(f"data root {base} is a file, not a folder ({protocol.name}: {layout_help(ds)})")
        if not base.is_dir():
            raise DataError(f"data root {base} does not exist ({protocol.name}: {layout_help(ds)})")
        candidates = [base, *[base / n for n in ds.root_names]]
    else:
        env = os.environ.get(ENV_DATA)
        if not env:
            raise DataError(
                f"protocol {protocol.name} needs data: pass --data-root DIR or set {ENV_DATA} "
                f"({layout_help(ds)})"
            )
        base = Path(env).expanduser()
        candidates = [base / n for n in ds.root_names] + [base]
    if ds.layout == "composite":
        return candidates[0]
    for cand in candidates:
        if _looks_like(ds, cand):
            return cand
    raise DataError(f"{candidates[0]}: not a {protocol.name} dataset ({layout_help(ds)})")


def _looks_like(ds: DatasetSpec, root: Path) -> bool:
    if ds.layout == "paired":
        return (root / ds.low_dir).is_dir() and (root / ds.high_dir).is_dir()
    if ds.layout == "unpaired":
        folder = root / ds.low_dir if ds.low_dir else root
        return folder.is_dir() and any(is_image(p) for p in folder.iterdir())
    if ds.layout == "synthetic":
        if (root / ds.clean_dir).is_dir() or (root.is_dir() and any(is_image(p) for p in root.iterdir())):
            return True
        return ds.manifest_format in ("auto", "celebamask-hq") and (root / "CelebA-HQ-img").is_dir()
    return root.is_dir()


# ----------------------------------------------------------------------------------------------------------
# readers


def _list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image(p)), key=_natural_key)


def _list_images_recursive(folder: Path) -> list[Path]:
    """The images of ``folder`` and its sub-folders, ordered by file name (then by path)."""
    found = [p for p in folder.rglob("*") if p.is_file() and is_image(p)]
    return sorted(found, key=lambda p: (_natural_key(p), str(p)))


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _pair_name(low: Path, pairing: str) -> str:
    if pairing == "lol-v2-real":
        return re.sub(r"^low", "normal", low.name)
    return low.name


def _paired(protocol: Protocol, root: Path) -> list[Sample]:
    ds, pre = protocol.dataset, protocol.preprocess
    low_dir, high_dir = root / ds.low_dir, root / ds.high_dir
    samples = []
    for low in _list_images(low_dir):
        high = high_dir / _pair_name(low, ds.pairing)
        sid = low.stem
        attrs = dict(ds.attributes)
        if not high.is_file():
            samples.append(
                Sample(
                    sid,
                    attrs,
                    lambda: "",
                    lambda: (None, None),
                    low,
                    high,
                    error=f"{low}: no reference image {high}",
                )
            )
            continue

        def loader(low=low, high=high):
            return preprocess(read_rgb(low), pre), preprocess(read_rgb(high), pre)

        samples.append(Sample(sid, attrs, _file_key(high, pre), loader, low, high))
    return samples


def read_manifest(ds: DatasetSpec, root: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """(image folder, {file name: attributes}) from a manifest in one of the supported formats."""
    fmt = ds.manifest_format
    if fmt == "auto":
        if ds.manifest and (root / ds.manifest).is_file():
            fmt = "csv"
        elif (root / "CelebAMask-HQ-attribute-anno.txt").is_file():
            fmt = "celebamask-hq"
        elif (root / "Data_Entry_2017.csv").is_file():
            fmt = "nih-cxr14"
        else:
            return _image_dir(root, ds), {}
    if fmt == "celebamask-hq":
        return root / "CelebA-HQ-img", _celebamask(root / "CelebAMask-HQ-attribute-anno.txt")
    if fmt == "nih-cxr14":
        return _image_dir(root, ds), _nih(root / "Data_Entry_2017.csv")
    if fmt == "utkface":
        if ds.manifest and (root / ds.manifest).is_file():
            fmt = "csv"
        else:
            folder = _image_dir(root, ds)
            return folder, utkface_labels(_list_images(folder) if folder.is_dir() else [])
    if not ds.manifest:
        return _image_dir(root, ds), {}
    path = root / ds.manifest
    if not path.is_file():
        raise DataError(f"{path}: manifest file missing ({layout_help(ds)})")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or ds.manifest_id_column not in reader.fieldnames:
            raise DataError(f"{path}: manifest has no {ds.manifest_id_column!r} column")
        rows = {}
        for row in reader:
            name = row.pop(ds.manifest_id_column)
            rows[name] = {k: (v or "").strip() for k, v in row.items()}
    return root / ds.clean_dir, rows


def _image_dir(root: Path, ds: DatasetSpec) -> Path:
    """``root/clean_dir``, or the root itself when it holds the images directly (a flat sample folder)."""
    folder = root / ds.clean_dir
    if folder.is_dir() or not any(is_image(p) for p in root.iterdir()):
        return folder
    return root


def _celebamask(path: Path) -> dict[str, dict[str, str]]:
    """CelebAMask-HQ-attribute-anno.txt: count line, attribute names line, then ``name v1 v2 ...`` (+1/-1)."""
    lines = path.read_text().splitlines()
    if len(lines) < 3:
        raise DataError(f"{path}: not a CelebAMask-HQ attribute file")
    names = lines[1].split()
    out = {}
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}: row {parts[0]!r} has {len(parts) - 1} values, expected {len(names)}")
        vals = dict(zip(names, parts[1:]))
        out[parts[0]] = {
            "gender": "male" if vals.get("Male") == "1" else "female",
            "age": "young" if vals.get("Young") == "1" else "not-young",
        }
    return out


UTKFACE_GENDER = {"0": "male", "1": "female"}
UTKFACE_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}


def utkface_labels(files: list[Path]) -> dict[str, dict[str, str]]:
    """UTKFace labels from file names ``age_gender_race_date.jpg.chip.jpg`` (the dataset's own coding:
    gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others), as the published
    attributes.csv spells them. A name lacking a field (a few upstream files) leaves that attribute empty."""
    out = {}
    for path in files:
        parts = path.name.split("_")
        age = parts[0] if parts and parts[0].isdigit() else ""
        gender = UTKFACE_GENDER.get(parts[1], "") if len(parts) > 3 else ""
        race = UTKFACE_RACE.get(parts[2], "") if len(parts) > 3 else ""
        out[path.name] = {"age": age, "gender": gender, "race": race}
    return out


def age_band(age: float) -> str:
    """The age band (``0-39``, ``40-59``, ``60+``) that the fairness protocols group ages by."""
    if age < 40:
        return "0-39"
    if age < 60:
        return "40-59"
    return "60+"


def _nih(path: Path) -> dict[str, dict[str, str]]:
    """NIH ChestX-ray14 ``Data_Entry_2017.csv``: sex from 'Patient Gender', age band from 'Patient Age'."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                age = float(str(row["Patient Age"]).rstrip("Y"))
            except (KeyError, ValueError) as exc:
                raise DataError(f"{path}: bad row {row.get('Image Index')!r}: {exc}") from exc
            out[row["Image Index"]] = {"sex": row.get("Patient Gender", ""), "age_band": age_band(age)}
    return out


def _synthetic(protocol: Protocol, root: Path) -> list[Sample]:
    ds, pre = protocol.dataset, protocol.preprocess
    folder, manifest = read_manifest(ds, root)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder missing ({layout_help(ds)})")
    files = _list_images_recursive(folder) if ds.recursive else _list_images(folder)
    if manifest:
        by_name = {p.name: p for p in files}
        missing = [n for n in manifest if n not in by_name]
        files = [by_name[n] for n in manifest if n in by_name]
    else:
        missing = []
    spec = ds.degradation
    samples = []
    for path in files:
        sid = path.stem
        attrs = {**ds.attributes, **manifest.get(path.name, {})}

        def loader(path=path, sid=sid):
            clean = preprocess(read_rgb(path), pre)
            low, _ = degrade(clean, spec, protocol.seed, sid)
            return low, clean

        samples.append(Sample(sid, attrs, _file_key(path, pre), loader, None, path))
    for name in missing:
        samples.append(
            Sample(
                Path(name).stem,
                {**ds.attributes, **manifest[name]},
                lambda: "",
                lambda: (None, None),
                error=f"{folder / name}: listed in the manifest but missing",
            )
        )
    return samples


def _demo(protocol: Protocol, root: Path | None) -> list[Sample]:
    from cals_bench.data.demo import DEMO_IMAGES, demo_image

    ds, pre = protocol.dataset, protocol.preprocess
    spec = ds.degradation
    samples = []
    for sid, context in DEMO_IMAGES.items():

        def loader(sid=sid):
            clean = preprocess(demo_image(sid), pre)
            low, _ = degrade(clean, spec, protocol.seed, sid)
            return low, clean

        def key(sid=sid):
            raw = demo_image(sid)
            digest = hashlib.sha256(raw.tobytes() + str(raw.shape).encode()).hexdigest()
            return f"skimage:{sid}:{digest}|{preprocess_key(pre)}"

        samples.append(Sample(sid, {**ds.attributes, "context": context}, key, loader))
    return samples


def _composite(protocol: Protocol, root: Path) -> list[Sample]:
    from cals_bench.protocol import load

    samples = []
    for comp_name in protocol.dataset.components:
        comp = load(comp_name)
        comp_root = resolve_root(comp, root)
        # each component keeps its own derived attributes and seeded split (its ids, unprefixed)
        for s in _bands_and_split(comp, READERS[comp.dataset.layout](comp, comp_root)):
            s.sample_id = f"{comp_name}/{s.sample_id}"
            s.attributes = {**s.attributes, **protocol.dataset.attributes}
            s.attributes.setdefault("context", comp_name)
            samples.append(s)
    return samples


def _unpaired(protocol: Protocol, root: Path) -> list[Sample]:
    """Images with no reference: ``load()`` gives ``(image, None)``; ``reference_key`` names the image."""
    ds, pre = protocol.dataset, protocol.preprocess
    folder = root / ds.low_dir if ds.low_dir else root
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder missing ({layout_help(ds)})")
    if ds.files:
        bad = [n for n in ds.files if Path(n).name != n or n in ("", ".", "..")]
        if bad:
            raise DataError(
                f"protocol {protocol.name}: dataset.files entry {bad[0]!r} is not a plain file name"
            )
        paths = [folder / n for n in ds.files]
    else:
        paths = _list_images(folder)
    samples = []
    for path in paths:
        if not path.is_file():
            samples.append(
                Sample(
                    path.stem,
                    dict(ds.attributes),
                    lambda: "",
                    lambda: (None, None),
                    path,
                    error=f"{path}: listed in protocol {protocol.name}'s published file list but missing",
                )
            )
            continue

        def loader(path=path):
            return preprocess(read_rgb(path), pre), None

        samples.append(Sample(path.stem, dict(ds.attributes), _file_key(path, pre), loader, path, None))
    return samples


READERS: dict[str, Callable[[Protocol, Path | None], list[Sample]]] = {
    "paired": _paired,
    "synthetic": _synthetic,
    "demo": _demo,
    "composite": _composite,
    "unpaired": _unpaired,
}


def apply_split(samples: list[Sample], spec: SplitSpec) -> list[Sample]:
    """The samples of ``spec.part`` of the seeded split (balanced by ``per_cell`` when set), order kept."""
    attrs = {s.sample_id: s.attributes for s in samples}
    keep = set(splits.select([s.sample_id for s in samples], attrs, spec))
    return [s for s in samples if s.sample_id in keep]


def _bands_and_split(protocol: Protocol, samples: list[Sample]) -> list[Sample]:
    """The protocol's derived band attributes added, then its seeded split applied (when declared)."""
    for name, band in protocol.dataset.bands.items():
        for s in samples:
            s.attributes = {**s.attributes, name: band.label(s.attributes.get(band.source))}
    if protocol.dataset.split is not None:
        samples = apply_split(samples, protocol.dataset.split)
    return samples


def load_samples(protocol: Protocol, data_root: str | Path | None = None) -> tuple[Path | None, list[Sample]]:
    """Resolve the data root and list the protocol's samples (checksums verified where declared)."""
    root = resolve_root(protocol, data_root)
    samples = _bands_and_split(protocol, READERS[protocol.dataset.layout](protocol, root))
    ids = [s.sample_id for s in samples]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise DataError(f"{root}: duplicate sample ids {dupes[:5]} (two files share a stem)")
    if not samples:
        raise DataError(f"{root}: no images found ({layout_help(protocol.dataset)})")
    return root, samples


def check_checksums(protocol: Protocol, root: Path | None) -> list[str]:
    """Problems with the protocol's declared per-file sha256 (empty when all match)."""
    problems = []
    if root is None:
        return problems
    for rel, expected in sorted(protocol.dataset.checksums.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: missing (declared in protocol {protocol.name})")
            continue
        actual = sha256_path(path)
        if actual != expected:
            problems.append(f"{path}: sha256 {actual} differs from the protocol's {expected}")
    return problems
