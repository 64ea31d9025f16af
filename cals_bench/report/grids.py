"""Image grids: low / output / reference thumbnails and a zoomed crop where the output's error is largest.

Outputs are the PNGs the engine saved as it scored them (``<run>/outputs``); low and reference images are
re-read from the dataset named in the run record (never recomputed by a model). Thumbnails are JPEGs with
their longer side at most ``THUMB_PX``; crops are PNGs scaled up with nearest-neighbour so pixels stay
visible. The number of samples shown is capped (``MAX_GRID_SAMPLES``) whatever the protocol's size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from cals_bench.data.io import read_rgb
from cals_bench.errors import CalsBenchError
from cals_bench.run_record import RunRecord
from cals_bench.store import output_name, slug

THUMB_PX = 240
CROP_PX = 160
MAX_GRID_SAMPLES = 24
MAX_GRID_GROUPS = 6
BOX_COLOUR = (255, 200, 0)


@dataclass
class GridItem:
    """One sample in a grid section: why it is shown (``best``/``median``/``worst``) and its values."""

    role: str
    sample_id: str
    value: float
    images: dict[str, str] = field(default_factory=dict)  # kind -> path relative to the page
    crop_note: str = ""


@dataclass
class GridSection:
    """A titled row of image-grid items in a report."""

    title: str
    items: list[GridItem]


def pick_samples(
    values: Mapping[str, float],
    higher_is_better: bool,
    sections: Sequence[tuple[str, Sequence[str]]],
    cap: int = MAX_GRID_SAMPLES,
) -> tuple[list[GridSection], int]:
    """Best, median and worst samples by ``values`` within each ``(title, sample ids)`` section.

    NaN values are skipped. The median is the lower median of the sorted valid values. Sections are filled
    in order until ``cap`` distinct samples are used; returns the sections and the distinct sample count.
    """
    out: list[GridSection] = []
    used: set[str] = set()
    for title, ids in sections:
        valid = [(float(values[s]), s) for s in ids if s in values and not math.isnan(float(values[s]))]
        if not valid:
            continue
        valid.sort(key=lambda t: (t[0], t[1]))
        if higher_is_better:
            valid.reverse()
        picks = [("best", valid[0]), ("median", valid[(len(valid) - 1) // 2]), ("worst", valid[-1])]
        items: list[GridItem] = []
        seen: set[str] = set()
        for role, (v, sid) in picks:
            if sid in seen:
                continue
            if sid not in used and len(used) >= cap:
                continue
            seen.add(sid)
            used.add(sid)
            items.append(GridItem(role, sid, v))
        if items:
            out.append(GridSection(title, items))
    return out, len(used)


# ------------------------------------------------------------------------------------------------------------
# images


def protocol_from_record(record: RunRecord):
    """A Protocol holding the run's stored dataset, preprocessing and seed: what the readers need.

    Only those sections are rebuilt, so a run stored under an older protocol schema (other audit keys,
    say) still finds its images; the metrics and audit sections play no part in reading images.
    """
    from cals_bench.protocol import DatasetSpec, PreprocessSpec, Protocol
    from cals_bench.schema import build

    spec = record.protocol.spec
    where = f"run {record.run_id} (run.json)"
    return Protocol(
        name=spec["name"],
        version=int(spec["version"]),
        title=spec.get("title", ""),
        dataset=build(DatasetSpec, dict(spec["dataset"]), where),
        preprocess=build(PreprocessSpec, dict(spec.get("preprocess") or {}), where),
        metrics=list(spec.get("metrics") or ["psnr"]),
        seed=int(spec.get("seed", 0)),
    )


def load_pairs(record: RunRecord, sample_ids: Sequence[str]) -> tuple[dict[str, tuple], str]:
    """``{sample_id: (low, reference)}`` uint8 RGB ``(H, W, 3)`` for the requested samples, and a note
    (empty when all loaded) saying why some could not be read."""
    from cals_bench.data.datasets import load_samples

    try:
        proto = protocol_from_record(record)
        _, samples = load_samples(proto, record.data_root)
    except (CalsBenchError, ValueError, TypeError, KeyError, OSError) as exc:
        return {}, f"low and reference images unavailable ({exc})"
    wanted = set(sample_ids)
    pairs: dict[str, tuple] = {}
    problems: list[str] = []
    for s in samples:
        if s.sample_id not in wanted:
            continue
        try:
            pairs[s.sample_id] = s.load()
        except (CalsBenchError, OSError, ValueError) as exc:
            problems.append(f"{s.sample_id}: {exc}")
    missing = wanted - set(pairs) - {p.split(":")[0] for p in problems}
    if missing:
        where = record.data_root or "the built-in data"
        problems.append(f"{len(missing)} sample(s) not found in {where}")
    return pairs, "; ".join(problems[:3])


def read_output(run_dir: Path, sample_id: str) -> np.ndarray | None:
    """The scored output of ``sample_id`` as saved by the engine (uint8 RGB), or None if not saved."""
    path = run_dir / "outputs" / f"{output_name(sample_id)}.png"
    if not path.is_file():
        return None
    try:
        return read_rgb(path)
    except CalsBenchError:
        return None


def error_box(output: np.ndarray, reference: np.ndarray) -> tuple[int, int, int]:
    """``(top, left, size)`` of the square window with the largest mean absolute error.

    Error is the per-pixel mean over RGB of ``|output - reference|`` (8-bit units), averaged over a square
    window of side ``max(16, min(H, W) // 6)`` (clipped to the image); ties go to the first maximum in
    row-major order.
    """
    h, w = output.shape[:2]
    size = min(h, w, max(16, min(h, w) // 6))
    err = np.abs(output.astype(np.float32) - reference.astype(np.float32)).mean(axis=2)
    # Mean over every full window: an integral image, so the cost is O(H W) whatever the window size.
    ii = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), int(size)


def thumbnail(img: np.ndarray, max_px: int = THUMB_PX) -> tuple[np.ndarray, float]:
    """Area-downscaled copy with the longer side at most ``max_px`` (never upscaled), and its scale."""
    h, w = img.shape[:2]
    scale = min(1.0, max_px / max(h, w))
    if scale >= 1.0:
        return img, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), scale


def _crop(img: np.ndarray, box: tuple[int, int, int], px: int = CROP_PX) -> np.ndarray:
    top, left, size = box
    patch = img[top : top + size, left : left + size]
    factor = max(1, px // size)
    return cv2.resize(patch, (size * factor, size * factor), interpolation=cv2.INTER_NEAREST)


def _save_jpeg(img: np.ndarray, path: Path) -> None:
    Image.fromarray(img).save(path, format="JPEG", quality=85)


def _save_png(img: np.ndarray, path: Path) -> None:
    Image.fromarray(img).save(path, format="PNG", optimize=False)


def write_sample_images(
    sample_id: str,
    index: int,
    output: np.ndarray | None,
    pair: tuple[np.ndarray, np.ndarray] | None,
    folder: Path,
) -> tuple[dict[str, Path], str]:
    """Write the thumbnails and crops of one sample into ``folder``; returns ``{kind: path}`` and a note.

    Kinds: ``low``, ``output`` (with the crop box drawn), ``reference``, ``crop_output``, ``crop_reference``,
    ``crop_low``. File names start with ``index`` so that two ids with the same slug cannot collide.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{index:03d}-{slug(sample_id, 40)}"
    paths: dict[str, Path] = {}
    note = ""
    low, ref = pair if pair is not None else (None, None)
    box = None
    if output is not None and ref is not None:
        if output.shape == ref.shape:
            box = error_box(output, ref)
        else:
            oh, ow, rh, rw = *output.shape[:2], *ref.shape[:2]
            note = f"output {ow}x{oh} and reference {rw}x{rh} differ"
    for kind, img in (("low", low), ("output", output), ("reference", ref)):
        if img is None:
            continue
        thumb, scale = thumbnail(img)
        if kind == "output" and box is not None:
            pil = Image.fromarray(thumb)
            top, left, size = box
            x0, y0 = left * scale, top * scale
            ImageDraw.Draw(pil).rectangle(
                [x0, y0, x0 + size * scale, y0 + size * scale], outline=BOX_COLOUR, width=2
            )
            thumb = np.asarray(pil)
        path = folder / f"{stem}-{kind}.jpg"
        _save_jpeg(thumb, path)
        paths[kind] = path
    if box is not None:
        for kind, img in (("crop_low", low), ("crop_output", output), ("crop_reference", ref)):
            if img is None or img.shape != output.shape:
                continue
            path = folder / f"{stem}-{kind}.png"
            _save_png(_crop(img, box), path)
            paths[kind] = path
        top, left, size = box
        note = note or f"crop: {size}x{size} px at x={left}, y={top} (largest mean |output - reference|)"
    return paths, note


def write_thumbnails(images: Mapping[str, np.ndarray | None], stem: str, folder: Path) -> dict[str, Path]:
    """Write a JPEG thumbnail per named image (None entries skipped); returns ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, img in images.items():
        if img is None:
            continue
        path = folder / f"{stem}-{slug(kind, 20)}.jpg"
        _save_jpeg(thumbnail(img)[0], path)
        paths[kind] = path
    return paths
