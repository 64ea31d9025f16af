"""The reference-feature cache: deep features of reference images, computed once and reused by every run.

Scoring N models on one protocol sees the same reference images N times. Learned metrics (LPIPS backbone
features, face detections, alignment transforms and identity embeddings) store what they compute from a
reference here, so that each later pair costs one backbone pass (the model output's) instead of two.

An entry is a set of named numpy arrays, keyed by a :class:`CacheKey`:
- ``kind``: what the arrays are (``lpips-features/alex``, ``face-detection``, ``face-embedding/sface``);
- ``reference_key``: the reference content and preprocessing (``SampleContext.reference_key``);
- ``weights``: ``{weight name: content hash}`` of every weight file the arrays depend on;
- ``preprocessing``: a string naming every convention that changes the arrays (input range, layer list,
  normalisation, detector thresholds, code version).
The file name is the sha256 of all four, so any change to any of them is a different entry (the old one
is simply never read again; :meth:`FeatureCache.clear` removes it). The full key is also stored inside
the file and compared on read, so a file can never be taken for another key.

On disk: ``root/<kind>/<2 hex>/<sha256>.npz`` (the uncompressed format of ``np.savez``). Writes go to a temporary file
in the same folder and are renamed into place (``os.replace``, atomic on POSIX and Windows), so concurrent
readers and writers (several engine processes sharing a results root) see either no entry or a complete
one; two writers of the same key write the same content and the last rename wins. A damaged entry is
treated as a miss and rewritten. An in-memory LRU (bounded in bytes) sits in front of the disk.

On POSIX an entry of 256 kB or more is read by mapping its file (the members are stored uncompressed, so each array is a
read-only view of the page cache: no copy, and each member's CRC-32 is checked as ``zipfile`` would), and
a written entry goes into the LRU as such a mapping of the file just written rather than as a private copy
(10 MB of LPIPS maps per 600x400 reference: a warm read 9.3 -> 3.2 ms CPU; a write copies nothing).
Smaller entries, and every entry elsewhere (Windows, where a mapped file cannot be replaced), are read
with ``np.load`` and copied.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import struct
import tempfile
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT = 1
_KEY_ARRAY = "__cache_key__"
DEFAULT_MEMORY_BYTES = 512 * 2**20


@dataclass(frozen=True)
class CacheKey:
    """What identifies one cache entry (see the module docstring). ``digest`` is its file name."""

    kind: str
    reference_key: str
    weights: tuple[tuple[str, str], ...]
    preprocessing: str

    @classmethod
    def make(cls, kind: str, reference_key: str, weights: Mapping[str, str], preprocessing: str) -> CacheKey:
        if not kind or not reference_key:
            raise ValueError("a cache key needs a kind and a reference_key")
        return cls(
            kind, reference_key, tuple(sorted((str(k), str(v)) for k, v in weights.items())), preprocessing
        )

    def canonical(self) -> str:
        return json.dumps(
            {
                "format": CACHE_FORMAT,
                "kind": self.kind,
                "reference_key": self.reference_key,
                "weights": [list(w) for w in self.weights],
                "preprocessing": self.preprocessing,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


@dataclass
class CacheStats:
    """Counts of a FeatureCache's lookups (memory and disk hits, misses, damaged files) and writes."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    writes: int = 0
    damaged: int = 0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits


@dataclass
class _Lru:
    capacity: int
    items: OrderedDict[str, dict[str, np.ndarray]] = field(default_factory=OrderedDict)
    nbytes: int = 0

    def get(self, digest: str) -> dict[str, np.ndarray] | None:
        arrays = self.items.get(digest)
        if arrays is not None:
            self.items.move_to_end(digest)
        return arrays

    def put(self, digest: str, arrays: dict[str, np.ndarray]) -> None:
        size = sum(a.nbytes for a in arrays.values())
        if size > self.capacity:
            return
        old = self.items.pop(digest, None)
        if old is not None:
            self.nbytes -= sum(a.nbytes for a in old.values())
        self.items[digest] = arrays
        self.nbytes += size
        while self.nbytes > self.capacity and self.items:
            _, evicted = self.items.popitem(last=False)
            self.nbytes -= sum(a.nbytes for a in evicted.values())

    def clear(self) -> None:
        self.items.clear()
        self.nbytes = 0


class FeatureCache:
    """On-disk cache of reference features with an in-memory LRU in front (see the module docstring).

    ``root`` is created on first write. ``memory_bytes`` bounds the arrays held in memory (0 disables the
    LRU). Arrays handed out are read-only views: callers must copy before modifying.
    """

    def __init__(self, root: str | Path, *, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.root = Path(root)
        self.stats = CacheStats()
        self._lru = _Lru(int(memory_bytes))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    def path(self, key: CacheKey) -> Path:
        digest = key.digest
        kind_dir = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.kind)
        return self.root / kind_dir / digest[:2] / f"{digest}.npz"

    def get(self, key: CacheKey) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (a miss; damaged or foreign files count as misses)."""
        digest = key.digest
        with self._lock:
            arrays = self._lru.get(digest)
            if arrays is not None:
                self.stats.memory_hits += 1
                return arrays
        path = self.path(key)
        arrays = self._read(path, key)
        with self._lock:
            if arrays is None:
                self.stats.misses += 1
                return None
            self.stats.disk_hits += 1
            self._lru.put(digest, arrays)
        return arrays

    def put(self, key: CacheKey, arrays: Mapping[str, np.ndarray]) -> None:
        """Store ``arrays`` (name -> array; names must not start with ``__``) under ``key``, atomically."""
        for name in arrays:
            if name.startswith("__"):
                raise ValueError(f"cache array names must not start with '__' ({name!r})")
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                _write_npz(f, {**arrays, _KEY_ARRAY: np.frombuffer(key.canonical().encode(), dtype=np.uint8)})
            # the memory copy: a mapping of the file just written (POSIX, large entries), else a private copy
            big = sum(np.asarray(a).nbytes for a in arrays.values()) >= _MAP_MIN_BYTES
            kept = _map_npz(tmp_name, check_crc=False, resident=False) if _MAP_FILES and big else None
            os.replace(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        if kept is None:
            kept = {name: np.array(arr, copy=True) for name, arr in arrays.items()}
        else:
            kept.pop(_KEY_ARRAY, None)
        for a in kept.values():
            a.flags.writeable = False
        with self._lock:
            self.stats.writes += 1
            self._lru.put(key.digest, kept)

    def _read(self, path: Path, key: CacheKey) -> dict[str, np.ndarray] | None:
        try:
            if _MAP_FILES and path.stat().st_size >= _MAP_MIN_BYTES:
                arrays = _map_npz(path, check_crc=True)
                stored = arrays.pop(_KEY_ARRAY, None)
                stored_key = None if stored is None else stored.tobytes().decode()
            else:
                with np.load(path, allow_pickle=False) as npz:
                    stored_key = npz[_KEY_ARRAY].tobytes().decode() if _KEY_ARRAY in npz.files else None
                    arrays = {name: npz[name] for name in npz.files if name != _KEY_ARRAY}
            if stored_key != key.canonical():
                raise ValueError("stored key differs")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
            with self._lock:
                self.stats.damaged += 1
            return None  # the next put() replaces the damaged file
        for a in arrays.values():
            a.flags.writeable = False
        return arrays

    def clear_memory(self) -> None:
        """Drop the in-memory LRU (the disk entries stay)."""
        with self._lock:
            self._lru.clear()

    def clear(self, kind: str | None = None) -> int:
        """Delete every entry (or those of one ``kind``) on disk and in memory; returns the files removed."""
        self.clear_memory()
        if not self.root.is_dir():
            return 0
        n = 0
        dirs = [self.root] if kind is None else [self.path(CacheKey.make(kind, "x", {}, "")).parent.parent]
        for d in dirs:
            for p in sorted(d.rglob("*.npz")):
                p.unlink(missing_ok=True)
                n += 1
        return n

    def disk_bytes(self) -> int:
        """Total size of the entries on disk."""
        return sum(b for _, b in self.usage().values())

    def usage(self) -> dict[str, tuple[int, int]]:
        """``{kind folder: (entries, bytes)}`` of the entries on disk."""
        if not self.root.is_dir():
            return {}
        out = {}
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = list(d.rglob("*.npz"))
            out[d.name] = (len(files), sum(f.stat().st_size for f in files))
        return out


# A mapped file cannot be replaced or deleted on Windows while mapped; there entries are copied instead.
_MAP_FILES = os.name == "posix"
# Smaller entries (face detections, embeddings, pooled features) are copied: a mapping per tiny entry would
# cost more than the copy, and thousands of them in the LRU would approach the kernel's limit on mappings.
_MAP_MIN_BYTES = 256 * 1024
_LOCAL_HEADER = b"PK\x03\x04"


def _write_npz(f: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """What ``np.savez(f, **arrays)`` writes (a zip64 of stored ``.npy`` members, each array's data aligned
    to 64 bytes within its member), written from the arrays' own memory: ``np.savez`` first copies each
    array into a bytes object (1.2 ms of the 11 ms a 10 MB entry took to write)."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            a = np.asarray(arr)
            if not a.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
                a = np.ascontiguousarray(a)
            if a.dtype.hasobject:
                raise ValueError(f"cache array {name!r} holds Python objects")
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                header = np.lib.format.header_data_from_array_1_0(a)
                try:
                    np.lib.format.write_array_header_1_0(member, header)
                except ValueError:  # a header too long for format 1.0
                    np.lib.format.write_array_header_2_0(member, header)
                member.write(a.reshape(-1).view(np.uint8).data)


def _map_npz(path: str | Path, *, check_crc: bool, resident: bool = True) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` as read-only views of a mapping of the file (no copy).

    Raises ``ValueError`` (or ``zipfile.BadZipFile`` / ``OSError``) for anything that is not such a file:
    a compressed or truncated member, a bad header, object arrays, or (``check_crc``) a CRC-32 mismatch.
    An array whose data would be misaligned in the file is copied (torch and NumPy kernels expect aligned
    data); ``np.savez`` aligns the data of each member to 64 bytes within it, so that is rare.
    ``resident=False`` drops the pages that reading the headers mapped (the arrays fault them in again
    when read).
    """
    with open(path, "rb") as f:
        members = zipfile.ZipFile(f).infolist()  # the central directory: truncation fails here
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError("empty file")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    out: dict[str, np.ndarray] = {}
    for info in members:
        if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
            raise ValueError(f"member {info.filename!r} is not a stored .npy")
        off = info.header_offset
        if off + 30 > size or view[off : off + 4] != _LOCAL_HEADER:
            raise ValueError(f"member {info.filename!r}: no local header")
        name_len, extra_len = struct.unpack("<HH", view[off + 26 : off + 30])
        start = off + 30 + name_len + extra_len
        end = start + info.file_size
        if end > size:
            raise ValueError(f"member {info.filename!r} is truncated")
        if check_crc and zlib.crc32(view[start:end]) != info.CRC:
            raise ValueError(f"member {info.filename!r}: CRC-32 mismatch")
        head = io.BytesIO(view[start : min(end, start + 65536)])
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"member {info.filename!r}: .npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects")
        count = int(np.prod(shape, dtype=np.int64))
        data = start + head.tell()
        if data + count * dtype.itemsize != end:
            raise ValueError(f"member {info.filename!r}: size does not match its header")
        arr = np.frombuffer(mapped, dtype=dtype, count=count, offset=data)
        if data % max(1, dtype.alignment):
            arr = arr.copy()
        arr = arr.reshape(shape, order="F" if fortran else "C")
        arr.flags.writeable = False
        out[info.filename[: -len(".npy")]] = arr
    view.release()
    if not resident and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        # unmap the pages read for the headers (and their neighbours, which the kernel maps along): an
        # entry kept in memory after a write then holds no resident pages until it is read
        mapped.madvise(mmap.MADV_DONTNEED)
    return out
