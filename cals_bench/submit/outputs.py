"""Scoring a folder or .zip of enhanced images (a paper's released outputs) against a protocol.

Files are matched to samples by name: ``<sample>.<ext>`` where ``<sample>`` is the sample's output name
(``outputs/<name>.png`` in a run folder) or its low image's file stem, in the archive's top folder or in one
common sub-folder. Every problem gets its own line: a missing sample, an extra file, a file of the wrong
size (never resized), an unreadable file, and, for archives, unsafe members (absolute or ``..`` names,
symbolic links, members or totals over the size limits, compression ratios of a zip bomb). Nothing is
extracted to disk: members are read into memory, bounded. ``__MACOSX/`` and dot files are ignored.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from cals_bench.data.io import IMAGE_SUFFIXES, _to_rgb8, to_tensor
from cals_bench.enhancer import Enhancer
from cals_bench.errors import CalsBenchError

MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 8 * 2**30
MAX_RATIO = 100.0
MAX_MEMBERS = 200_000


@dataclass
class OutputFiles:
    """The image files of a submission, by relative name, read on demand (bounded)."""

    source: Path
    kind: str  # "folder" or "zip"
    names: dict[str, Any] = field(default_factory=dict)  # relative name -> Path or ZipInfo
    problems: list[str] = field(default_factory=list)

    def read(self, name: str) -> bytes:
        ref = self.names[name]
        if self.kind == "folder":
            return Path(ref).read_bytes()
        with zipfile.ZipFile(self.source) as zf, zf.open(ref) as fh:
            data = fh.read(MAX_MEMBER_BYTES + 1)
        if len(data) > ref.file_size or len(data) > MAX_MEMBER_BYTES:
            raise CalsBenchError(f"{self.source}: {name} inflates beyond its declared size (zip bomb?)")
        return data

    def common_folder(self) -> str:
        """The one sub-folder every file sits in ("." when they sit at the top or in several)."""
        prefixes = {str(PurePosixPath(n).parent) for n in self.names}
        return prefixes.pop() if len(prefixes) == 1 else "."

    def relative(self, name: str) -> str:
        pure, top = PurePosixPath(name), self.common_folder()
        return (pure.relative_to(top) if top != "." else pure).as_posix()

    def manifest_hash(self) -> str:
        """sha256 over (name below the common folder, sha256 of bytes) of every file: the identity of the
        outputs, the same for a folder and a .zip of the same files."""
        h = hashlib.sha256()
        for name in sorted(self.names, key=self.relative):
            digest = hashlib.sha256(self.read(name)).hexdigest()
            h.update(self.relative(name).encode() + b"\0" + digest.encode() + b"\n")
        return h.hexdigest()


def _ignored(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def open_outputs(path: str | Path) -> OutputFiles:
    """Index a folder or .zip of outputs; unsafe entries become problems (and are never read)."""
    src = Path(path)
    if src.is_symlink():
        raise CalsBenchError(f"{src}: the outputs may not be a symbolic link")
    if src.is_dir():
        return _index_folder(src)
    if src.is_file() and zipfile.is_zipfile(src):
        return _index_zip(src)
    if src.is_file():
        raise CalsBenchError(f"{src}: not a folder or a .zip archive")
    raise CalsBenchError(f"{src}: no such folder or .zip file")


def _index_folder(root: Path) -> OutputFiles:
    files = OutputFiles(root, "folder")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for sub in list(dirnames):
            if (d / sub).is_symlink():
                files.problems.append(f"{(d / sub).relative_to(root)}: symbolic link refused")
                dirnames.remove(sub)
        for fn in filenames:
            p = d / fn
            rel = p.relative_to(root).as_posix()
            if _ignored(rel):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                files.problems.append(f"{rel}: symbolic link refused")
            elif not stat.S_ISREG(st.st_mode):
                files.problems.append(f"{rel}: not a regular file")
            elif st.st_size > MAX_MEMBER_BYTES:
                files.problems.append(f"{rel}: {st.st_size} bytes, over the {MAX_MEMBER_BYTES}-byte limit")
            else:
                files.names[rel] = p
    return files


def _index_zip(src: Path) -> OutputFiles:
    files = OutputFiles(src, "zip")
    with zipfile.ZipFile(src) as zf:
        infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CalsBenchError(f"{src}: {len(infos)} members, over the limit of {MAX_MEMBERS}")
    total = 0
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        pure = PurePosixPath(name.replace("\\", "/"))
        if name.startswith(("/", "\\")) or pure.is_absolute() or ".." in pure.parts or ":" in pure.parts[0]:
            files.problems.append(f"{name}: unsafe path in archive (absolute or '..') refused")
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            files.problems.append(f"{name}: symbolic link in archive refused")
            continue
        if _ignored(pure.as_posix()):
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            files.problems.append(
                f"{name}: inflates to {info.file_size} bytes, over the {MAX_MEMBER_BYTES}-byte limit"
            )
            continue
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 2**20:
            files.problems.append(
                f"{name}: compression ratio {info.file_size / info.compress_size:.0f}:1 (zip bomb?) refused"
            )
            continue
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise CalsBenchError(f"{src}: members inflate to more than {MAX_TOTAL_BYTES} bytes (zip bomb?)")
        files.names[pure.as_posix()] = info
    return files


def decode(data: bytes, label: str) -> np.ndarray:
    """uint8 RGB (H, W, 3) by the suite's conversion rules; a clear error for anything unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return _to_rgb8(img, Path(label))
    except CalsBenchError:
        raise
    except Exception as exc:  # any decoder failure is one problem line
        raise CalsBenchError(f"{label}: unreadable image ({type(exc).__name__}: {exc})") from exc


def header_size(data: bytes) -> tuple[int, int] | None:
    """An image's (width, height) read from its header only, or None when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size  # (width, height), read from the header only
    except Exception:
        return None


def _expected_size(protocol, sample) -> tuple[int, int]:
    """(width, height) of the sample's input as the engine feeds it."""
    resize = protocol.preprocess.resize if protocol.preprocess else None
    if resize is not None:
        return int(resize[1]), int(resize[0])
    if sample.low_path is not None:
        with Image.open(sample.low_path) as img:
            return img.size
    low, _ = sample.load()
    return low.shape[1], low.shape[0]


def match(protocol, samples: list, files: OutputFiles) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode the output of every sample; ``(arrays by sample id, problem lines)``."""
    from cals_bench.store import output_name

    problems = list(files.problems)
    by_stem: dict[str, list[str]] = {}
    for name in files.names:
        rel = PurePosixPath(files.relative(name))
        if rel.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        by_stem.setdefault(rel.with_suffix("").as_posix(), []).append(name)
    used: set[str] = set()
    arrays: dict[str, np.ndarray] = {}
    for s in samples:
        keys = [output_name(s.sample_id), s.sample_id]
        if s.low_path is not None:
            keys.append(Path(s.low_path).stem)
        found = next((by_stem[k] for k in dict.fromkeys(keys) if k in by_stem), None)
        if not found:
            problems.append(f"missing: no output for sample {s.sample_id!r} (expected {keys[0]}.png)")
            continue
        if len(found) > 1:
            problems.append(f"ambiguous: sample {s.sample_id!r} matches {', '.join(sorted(found))}")
            used.update(found)
            continue
        name = found[0]
        used.add(name)
        try:
            data = files.read(name)
        except (OSError, zipfile.BadZipFile, CalsBenchError) as exc:
            problems.append(f"{name}: unreadable ({exc})")
            continue
        want = _expected_size(protocol, s)
        got = header_size(data)
        if got is None:
            problems.append(f"{name}: unreadable image (not a recognised image format)")
            continue
        if got != want:
            problems.append(
                f"{name}: wrong size {got[0]}x{got[1]}, sample {s.sample_id!r} is {want[0]}x{want[1]} "
                "(outputs are never resized)"
            )
            continue
        try:
            arrays[s.sample_id] = decode(data, name)
        except CalsBenchError as exc:
            problems.append(str(exc))
    for name in sorted(set(files.names) - used):
        problems.append(f"extra: {name} matches no sample of protocol {protocol.name}")
    return arrays, problems


class OutputsEnhancer(Enhancer):
    """Returns the submitted output of each sample of the batch (the engine names them via start_batch)."""

    summary = "submitted outputs (a folder or .zip of images)"

    def __init__(self, arrays: dict[str, np.ndarray], *, name: str, meta: dict[str, Any]) -> None:
        super().__init__()
        self.arrays = arrays
        self.name = name
        self.submission = meta
        self._ids: list[str] = []

    def start_batch(self, sample_ids: list[str]) -> None:
        self._ids = list(sample_ids)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([to_tensor(self.arrays[sid]) for sid in self._ids]).to(x.device)
        if out.shape != x.shape:
            raise CalsBenchError(f"outputs of {self._ids} are {tuple(out.shape)}, inputs {tuple(x.shape)}")
        return out

    def metadata(self) -> dict[str, Any]:
        meta = super().metadata()
        meta.update(
            name=self.name,
            **{"class": f"outputs:{self.submission['id']}:{self.submission['content_hash'][:16]}"},
            submission=self.submission,
            weights={},
        )
        return meta
