"""Pretrained files: one spec each (upstream URL, sha256, size, licence, origin), resolved offline first.

Each :class:`WeightSpec` is declared beside the model that loads it (as timm keeps ``default_cfgs`` beside
its models): a baseline's files in ``baselines/<model>.py``, LPIPS's in ``cals_bench/metrics/lpips.py``, the
face models' in ``cals_bench/face/``. :func:`register` adds one to :data:`REGISTRY`, a
:class:`cals_bench.registry.Registry` that imports the declaring modules (:data:`BUILTIN_MODULES`) on the
first lookup and reads the entry-point group ``cals_bench.weights``, where another package names a
``WeightSpec`` object of its own. ``cals-bench weights list`` shows every spec and the module declaring it.

Resolution order for a registered name:
1. an explicit path (``resolve(name, path=...)``);
2. each folder in ``CALS_BENCH_WEIGHTS`` (``os.pathsep``-separated), at the spec's ``relpath``;
3. the user cache, ``$XDG_CACHE_HOME/cals_bench`` (default ``~/.cache/cals_bench``), at ``relpath``;
4. the torch hub cache (``$TORCH_HOME/hub/checkpoints``) for files torchvision names (``hub_filename``);
5. a download of ``url`` with a progress bar into a temporary file, sha256-checked, renamed into the cache
   (skipped when ``CALS_BENCH_OFFLINE=1``).
A file whose sha256 differs from the spec's is refused (:class:`WeightsHashMismatch`, naming the file and
both hashes). Tensors are read with ``torch.load(..., weights_only=True)``: nothing else is unpickled.

Derived files (``convert``, e.g. the ``features.*`` subset of a torchvision checkpoint) are written with
``torch.save``, whose bytes depend on the file name, the torch version and the pickling order, so a copy
converted on a user's machine rarely has the stored file's sha256. Such specs also carry
``content_sha256``, a hash of the tensors themselves (:func:`tensor_content_sha256`: names, dtypes, shapes
and raw bytes); a file whose byte hash differs is accepted only when its tensor content hash matches. The
upstream download is checked before converting (``source_sha256`` or torchvision's 8-hex-digit
``source_sha256_prefix``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cals_bench.errors import WeightsError, WeightsHashMismatch, WeightsUnavailable
from cals_bench.registry import Registry

ENV_WEIGHTS = "CALS_BENCH_WEIGHTS"
ENV_OFFLINE = "CALS_BENCH_OFFLINE"


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file.

    ``relpath`` is where it lives under a weights folder and the cache (mirrors ``../shared/weights``).
    ``sha256`` and ``size`` are of the file as stored at ``relpath``. When the upstream file differs from
    what is stored (a member of an archive, or a tensor subset of a bigger checkpoint), ``convert`` names a
    function in :data:`CONVERTERS` that turns the downloaded bytes into the stored file and
    ``source_sha256`` is the upstream file's own hash (checked before converting).
    """

    name: str
    relpath: str
    sha256: str
    size: int
    licence: str
    origin: str
    url: str
    paper: str = ""
    used_by: str = ""
    fmt: Literal["torch", "onnx", "other"] = "torch"
    hub_filename: str | None = None
    source_sha256: str | None = None
    source_sha256_prefix: str | None = None
    convert: str | None = None
    # For converted torch files: sha256 of the tensor content (see tensor_content_sha256), which is what a
    # re-converted copy must match when its bytes differ from the stored file's.
    content_sha256: str | None = None
    notes: str = ""

    @classmethod
    def on_github(
        cls,
        name: str,
        relpath: str,
        sha256: str,
        size: int,
        *,
        repo: str,
        commit: str,
        path: str,
        **fields: Any,
    ) -> WeightSpec:
        """A file committed to a GitHub repository, pinned to ``commit``: its ``origin`` reads
        ``repo @ commit : path`` and its ``url`` is the raw file at that commit."""
        return cls(
            name=name,
            relpath=relpath,
            sha256=sha256,
            size=size,
            origin=f"{repo} @ {commit} : {path}",
            url=f"https://raw.githubusercontent.com/{repo}/{commit}/{path}",
            **fields,
        )


@dataclass(frozen=True)
class ResolvedWeight:
    """A weight file found on disk: its spec, path, verified sha256 and where it was found."""

    spec: WeightSpec
    path: Path
    sha256: str
    where: str  # "explicit", "CALS_BENCH_WEIGHTS", "cache", "torch-hub", "download"

    @property
    def identity(self) -> str:
        """A hash naming the weights' content, equal on every machine: the tensor content hash for converted
        files (whose bytes vary with the converting torch), else the file's sha256."""
        return f"tensors:{self.spec.content_sha256}" if self.spec.content_sha256 else self.sha256

    def record(self) -> dict[str, str]:
        out = {"name": self.spec.name, "sha256": self.sha256, "path": str(self.path), "where": self.where}
        if self.spec.content_sha256:
            out["content_sha256"] = self.spec.content_sha256
        return out


# Modules whose import declares the built-in weight files (each beside the model that loads it). They are
# imported on the first lookup, never by ``import cals_bench.weights``.
BUILTIN_MODULES = (
    "cals_bench.baselines",
    "cals_bench.metrics.lpips",
    "cals_bench.metrics.niqe",
    "cals_bench.face",
    "cals_bench.face.mobilefacenet",
)
REGISTRY: Registry[WeightSpec] = Registry(
    "weight file", builtin_modules=BUILTIN_MODULES, entry_point_group="cals_bench.weights"
)
# Functions (downloaded_path, out_path) -> None that derive a stored file from an upstream one.
CONVERTERS: dict[str, Callable[[Path, Path], None]] = {}
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def register(spec: WeightSpec) -> WeightSpec:
    """Add a weight file to :data:`REGISTRY` under ``spec.name`` (a second, different spec of that name is an
    error); returns the spec, so a module can write ``MY_WEIGHTS = register(WeightSpec(...))``."""
    caller = sys._getframe(1).f_globals.get("__name__", "?")
    return REGISTRY.register(spec.name, spec, origin=caller)


def specs() -> dict[str, WeightSpec]:
    """All registered weight specs, by name (the built-in modules and entry points imported)."""
    return {name: _as_spec(name, obj) for name, obj in REGISTRY.items().items()}


def import_errors() -> dict[str, str]:
    """Modules declaring weight files that failed to import (their files are missing from :func:`specs`)."""
    errors = REGISTRY.import_errors()
    baselines = sys.modules.get("cals_bench.baselines")
    errors.update(getattr(baselines, "IMPORT_ERRORS", None) or {})
    return errors


def get_spec(name: str) -> WeightSpec:
    """The registered weight spec ``name`` (unknown names: a one-line error with the closest ones)."""
    if name not in REGISTRY:
        raise WeightsError(f"{REGISTRY.unknown_message(name)} (`cals-bench weights list` shows them)")
    return _as_spec(name, REGISTRY.get(name))


def _as_spec(name: str, obj: object) -> WeightSpec:
    """An entry point may name any object: refuse one that is not a WeightSpec of that very name."""
    if not isinstance(obj, WeightSpec) or obj.name != name:
        raise WeightsError(
            f"weight file {name!r} ({REGISTRY.origin(name)}) is not a WeightSpec named {name!r}"
        )
    return obj


def declared_in(name: str) -> str:
    """The module that declared a weight file (or the entry point naming it)."""
    return REGISTRY.origin(name)


def sha256_file(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def cache_dir() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/cals_bench`` or ``~/.cache/cals_bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cals_bench"


def weight_dirs() -> list[Path]:
    """The folders listed in ``$CALS_BENCH_WEIGHTS`` (path-separator separated)."""
    raw = os.environ.get(ENV_WEIGHTS, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def torch_hub_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where torchvision-format files may already be."""
    torch_home = os.environ.get("TORCH_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def torch_load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, silencing only the TypedStorage deprecation
    warning that legacy-format checkpoints (Zero-DCE's, SGZ's) raise on every load."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
        return torch.load(path, map_location="cpu", weights_only=True)


def tensor_content_sha256(path: Path) -> str:
    """sha256 over a torch state dict's tensors: for each key in sorted order, its name, dtype, shape and
    raw bytes. Independent of how ``torch.save`` laid the file out; memoised like :func:`sha256_file`."""
    import torch

    st = path.stat()
    key = ("tensors:" + str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        state = torch_load_tensors(path)
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise WeightsError(f"weight file {path} is not a flat dict of named tensors")
        h = hashlib.sha256()
        for name in sorted(state):
            t = state[name].detach().cpu().contiguous()
            h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def _checked(spec: WeightSpec, path: Path, where: str) -> ResolvedWeight:
    actual = sha256_file(path)
    if actual == spec.sha256:
        return ResolvedWeight(spec, path, actual, where)
    if spec.content_sha256:
        try:
            content = tensor_content_sha256(path)
        except Exception as exc:  # an unreadable file is a mismatch, reported below
            content = f"unreadable ({type(exc).__name__}: {exc})"
        if content == spec.content_sha256:
            return ResolvedWeight(spec, path, actual, where)
        raise WeightsHashMismatch(
            f"weight file {path} ({spec.name}) fails its checksum: expected sha256 {spec.sha256} or tensor "
            f"content sha256 {spec.content_sha256}, got {actual} (content {content}); delete it and run "
            f"`cals-bench weights fetch {spec.name}`"
        )
    raise WeightsHashMismatch(
        f"weight file {path} ({spec.name}) fails its checksum: expected sha256 {spec.sha256}, "
        f"got {actual}; delete it and run `cals-bench weights fetch {spec.name}`"
    )


def candidates(spec: WeightSpec) -> list[tuple[Path, str]]:
    """Where a spec's file may already be, in resolution order (without the download)."""
    out = [(d / spec.relpath, ENV_WEIGHTS) for d in weight_dirs()]
    out.append((cache_dir() / spec.relpath, "cache"))
    return out


def find_local(spec: WeightSpec) -> tuple[Path, str] | None:
    """The first local copy of a weight file (path, where it was found), or None."""
    for path, where in candidates(spec):
        if path.is_file():
            return path, where
    return None


def offline() -> bool:
    """True when ``$CALS_BENCH_OFFLINE`` forbids downloads."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes"}


def unavailable_message(spec: WeightSpec) -> str:
    """The one-line error for a weight file that is not available offline, with the command that fixes it."""
    dirs = os.pathsep.join(str(d) for d in weight_dirs()) or "unset"
    return (
        f"weights {spec.name!r} not available offline (looked in {ENV_WEIGHTS}={dirs} and {cache_dir()}); "
        f"run `cals-bench weights fetch {spec.name}` with network access, or set {ENV_WEIGHTS} to a folder "
        f"holding {spec.relpath}"
    )


def resolve(name: str, path: str | Path | None = None, *, download: bool = True) -> ResolvedWeight:
    """Find (or fetch) a registered weight file and verify its sha256."""
    spec = get_spec(name)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise WeightsUnavailable(f"weight file {p} ({name}) does not exist")
        return _checked(spec, p, "explicit")
    found = find_local(spec)
    if found:
        return _checked(spec, *found)
    if spec.hub_filename:
        hub = torch_hub_dir() / spec.hub_filename
        if hub.is_file():
            return _install(spec, hub, "torch-hub")
    if not download or offline():
        raise WeightsUnavailable(unavailable_message(spec))
    return fetch(name)


def _install(spec: WeightSpec, source: Path, where: str) -> ResolvedWeight:
    """Verify an upstream-format file and convert it into the cache."""
    if spec.source_sha256 and sha256_file(source) != spec.source_sha256:
        raise WeightsHashMismatch(
            f"upstream file {source} ({spec.name}) fails its checksum: expected sha256 "
            f"{spec.source_sha256}, got {sha256_file(source)}"
        )
    if spec.source_sha256_prefix and not sha256_file(source).startswith(spec.source_sha256_prefix):
        raise WeightsHashMismatch(
            f"upstream file {source} ({spec.name}) fails its checksum: expected a sha256 starting "
            f"{spec.source_sha256_prefix}, got {sha256_file(source)}"
        )
    target = cache_dir() / spec.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
    try:
        if spec.convert:
            CONVERTERS[spec.convert](source, tmp_path)
        else:
            tmp_path.write_bytes(source.read_bytes())
        resolved = _checked(spec, tmp_path, where)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)
    return ResolvedWeight(spec, target, resolved.sha256, where)


def fetch(name: str, *, progress: bool = True) -> ResolvedWeight:
    """Download a weight file into the cache (temporary file, sha256 check, atomic rename)."""
    spec = get_spec(name)
    found = find_local(spec)
    if found:
        return _checked(spec, *found)
    if offline():
        raise WeightsUnavailable(unavailable_message(spec))
    target = cache_dir() / spec.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".download") as tmp:
        tmp_path = Path(tmp.name)
    try:
        _download(spec.url, tmp_path, progress=progress, label=spec.name)
        if spec.convert or spec.source_sha256 or spec.source_sha256_prefix:
            resolved = _install(spec, tmp_path, "download")
        else:
            _checked(spec, tmp_path, "download")
            os.replace(tmp_path, target)
            resolved = ResolvedWeight(spec, target, spec.sha256, "download")
    finally:
        tmp_path.unlink(missing_ok=True)
    return resolved


def _download(url: str, out: Path, *, progress: bool, label: str) -> None:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(out, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsUnavailable(
            f"download of {label} from {url} failed: {exc}; set {ENV_WEIGHTS} to a folder holding the file "
            f"(see `cals-bench weights list`) or run `cals-bench weights fetch {label}` where the network is reachable"
        ) from exc


def load_torch(name: str, path: str | Path | None = None) -> tuple[Any, ResolvedWeight]:
    """Resolve and read a torch file safely (``weights_only=True``) on the CPU."""

    resolved = resolve(name, path)
    try:
        obj = torch_load_tensors(resolved.path)
    except Exception as exc:
        from cals_bench.safe_load import refusal_reason

        raise WeightsError(
            f"weight file {resolved.path} ({name}) cannot be read safely: {refusal_reason(exc)}"
        ) from exc
    return obj, resolved


def status(spec: WeightSpec) -> dict[str, Any]:
    """A weight file's spec, where it is declared, and whether and where a local copy exists."""
    found = find_local(spec)
    return {
        **asdict(spec),
        "declared_in": declared_in(spec.name),
        "present": bool(found),
        "where": str(found[0]) if found else "",
    }


def _torchvision_features(source: Path, out: Path) -> None:
    """Keep only the ``features.*`` tensors of a torchvision classification checkpoint."""
    import torch

    state = torch_load_tensors(source)
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, out)


CONVERTERS["torchvision-features"] = _torchvision_features
