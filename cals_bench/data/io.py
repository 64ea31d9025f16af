"""Reading images into the suite's one in-memory form: uint8 RGB, (H, W, 3), C-contiguous.

Conversion rules (documented in the README and applied to every dataset):
- grey (L, I;16, I) images are replicated to three channels (X-rays, the demo's phantom);
- 16-bit images are reduced to 8 bits by ``round(v * 255 / 65535)``, since every metric scores 8-bit data
  (16-bit RGB/RGBA PNGs, which Pillow would cut to their high byte, are decoded by OpenCV for this);
- palette (P) images are expanded through their palette;
- RGBA / LA images are accepted only when fully opaque (alpha dropped); any transparency is refused, since
  compositing onto a chosen background would invent content;
- CMYK / YCbCr and other modes are converted by Pillow to RGB.
A missing, unreadable or truncated file raises :class:`DataError` naming the file, as does an image above
Pillow's decompression-bomb limit (its header is read, its pixels never decoded).
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cals_bench.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    """True when the file name has one of the image suffixes the suite reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES


# The cache that read_rgb keeps decoded PNG pixels in while decoded_images() is active (None: no cache).
_DECODED: ContextVar[Any] = ContextVar("cals_bench_decoded_images", default=None)
# Part of every decoded-pixels cache key: bump when read_rgb's conversion rules change what it returns.
DECODED_TAG = "read_rgb uint8 RGB (H, W, 3) v1"


@contextlib.contextmanager
def decoded_images(cache: Any) -> Iterator[None]:
    """While active, :func:`read_rgb` keeps the pixels of each PNG it decodes in ``cache`` (a
    :class:`cals_bench.cache.FeatureCache`; None: no caching), keyed by the sha256 of the file's bytes, and
    reads them from there when the same bytes come again (the next model scored on a protocol reads the
    same inputs and references): hashing the file and mapping the stored pixels costs ~1 ms instead of
    ~7 ms to decode a 600x400 PNG. The pixels returned are equal either way (a private, writable copy).
    Only PNGs: other formats decode fast for their size, and their raw pixels would take far more room
    on disk than the files."""
    token = _DECODED.set(cache)
    try:
        yield
    finally:
        _DECODED.reset(token)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``(H, W, 3)`` by the module's conversion rules."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    cache = _DECODED.get()
    if cache is not None and path.suffix.lower() == ".png":
        return _read_cached(path, cache)
    return _decode(path)


def _read_cached(path: Path, cache: Any) -> np.ndarray:
    """:func:`_decode`, through the decoded-pixels cache (see :func:`decoded_images`)."""
    from cals_bench.cache import CacheKey

    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    key = CacheKey.make("decoded-rgb", f"sha256:{digest}", {}, DECODED_TAG)
    hit = cache.get(key)
    rgb = None if hit is None else hit.get("rgb")
    if rgb is not None and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3:
        return np.array(rgb, order="C")  # writable and private: the cached one is a read-only mapping
    rgb = _decode(path)
    with contextlib.suppress(OSError):  # a cache that cannot be written (full disk) only costs speed
        cache.put(key, {"rgb": rgb})
    return rgb


def _decode(path: Path) -> np.ndarray:
    """:func:`read_rgb` of an existing file, without the decoded-pixels cache."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if _is_png_rgb16(path):
                    return _read_png_rgb16(path)
                if img.format == "PNG" and img.mode == "RGB":
                    return _read_png_rgb8(path)
                img.load()
                return _to_rgb8(img, path)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused, too many pixels for an image ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def probe(path: str | Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image from its header, after checking the file's structure (``verify``,
    which reads chunks and checksums without decoding pixels). Raises :class:`DataError` naming the file
    for a missing, unreadable or truncated file, or one above the decompression-bomb limit or
    ``max_pixels``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
                img.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused, too many pixels for an image ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc
    if max_pixels and size[0] * size[1] > max_pixels:
        raise DataError(
            f"{path}: image is {size[0]}x{size[1]} = {size[0] * size[1]} pixels, above max_pixels {max_pixels}"
        )
    return size


def _is_png_rgb16(path: Path) -> bool:
    """True for a PNG with 16-bit RGB or RGBA samples (IHDR bit depth 16, colour type 2 or 6)."""
    with open(path, "rb") as f:
        head = f.read(26)
    return (
        head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)
    )


def _read_png_rgb16(path: Path) -> np.ndarray:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"{path}: unreadable or truncated image (16-bit PNG)")
    if arr.shape[2] == 4:
        if int(arr[..., 3].min()) < 65535:
            raise DataError(f"{path}: image has transparent pixels (alpha < 65535); save it without alpha")
        arr = arr[..., :3]
    rgb = arr[..., ::-1].astype(np.float64) * (255.0 / 65535.0)
    return np.ascontiguousarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))


def _read_png_rgb8(path: Path) -> np.ndarray:
    """An 8-bit RGB PNG (Pillow has read its header) decoded by OpenCV: the same pixels as Pillow's (both
    ignore gAMA, iCCP and a tRNS colour key), 15% less CPU time on 600x400 photographs."""
    import cv2

    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10; before, BGR and a flip
    arr = cv2.imread(str(path), (rgb_flag or cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: unreadable or truncated image (PNG)")
    return arr if rgb_flag is not None else np.ascontiguousarray(arr[..., ::-1])


def _to_rgb8(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        if mode == "I" and arr.max() <= 255:
            grey = arr.astype(np.uint8)
        else:
            grey = np.clip(np.round(arr * 255.0 / 65535.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if mode == "F":
        raise DataError(f"{path}: floating-point images are not supported (save as 8- or 16-bit)")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            raise DataError(f"{path}: image has transparent pixels (alpha < 255); save it without alpha")
        img = img.convert("RGB")
    elif mode in ("L", "1"):
        grey = np.asarray(img.convert("L"))
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    elif mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: unsupported image layout {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write uint8 RGB ``(H, W, 3)`` as PNG, atomically (temporary file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    # lossless, fast over small: zlib level 1, Huffman coding only, on the "up" row filter (OpenCV) takes
    # under half the time of Pillow's level 1 with adaptive filters, and the files are ~10% smaller (string
    # matching, even run-length only, finds almost nothing in filtered photographs: 8.2 vs 7.0 ms per
    # 600x400 image for the same 305 KB)
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    planes = rgb.transpose(2, 0, 1)  # to_uint8's arrays are channel planes underneath: interleave them as BGR
    bgr = cv2.merge([planes[2], planes[1], planes[0]]) if planes.flags.c_contiguous else rgb[..., ::-1]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr), params)
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1]."""
    arr = rgb if rgb.flags.writeable and rgb.flags.c_contiguous else np.array(rgb, order="C")
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``(3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``: clamp then round, as a saved PNG would be.

    Computed as round(x * 255) clamped to [0, 255] on one new tensor (the same numbers: the bounds are on
    the grid), a view of channel planes underneath."""
    return x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def sha256_path(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
