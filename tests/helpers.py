"""Small builders shared by tests (image folders, model files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_pairs(root: Path, n: int = 4, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """A paired folder root/low + root/high with n random pairs (the low ones darker)."""
    rng = np.random.default_rng(seed)
    (root / "low").mkdir(parents=True, exist_ok=True)
    (root / "high").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        high = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        low = (high // 5).astype(np.uint8)
        Image.fromarray(high).save(root / "high" / f"{i:03d}.png")
        Image.fromarray(low).save(root / "low" / f"{i:03d}.png")
    return root


def write_model(path: Path, body: str, name: str = "user-model") -> Path:
    """A model file defining class Model(Enhancer) whose enhance(x) runs ``body`` (x in scope)."""
    indented = "\n".join("        " + line for line in body.strip().splitlines())
    path.write_text(
        "import torch\n"
        "from cals_bench.enhancer import Enhancer\n\n"
        "class Model(Enhancer):\n"
        f"    name = {name!r}\n\n"
        "    def enhance(self, x):\n"
        f"{indented}\n"
    )
    return path


def skimage_scores(refs, outs) -> tuple[float, float]:
    """Mean PSNR / SSIM of uint8 (H, W, 3) pairs by scikit-image, the independent reference the baseline
    reproduction tests score with (the suite's conventions: RGB, 8-bit, whole image, Gaussian SSIM 11/1.5)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [peak_signal_noise_ratio(r, o, data_range=255) for r, o in zip(refs, outs)]
    ssim = [
        structural_similarity(
            r,
            o,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=2,
        )
        for r, o in zip(refs, outs)
    ]
    return float(np.mean(psnr)), float(np.mean(ssim))


def lol_v1_scores(enhancer, lol_root: Path) -> tuple[float, float]:
    """Run ``enhancer.enhance`` on the 15 LOL-v1 eval15 images and score them with :func:`skimage_scores`
    (outputs clamped and rounded to 8 bits, as the engine does)."""
    import torch

    from cals_bench.data.io import read_rgb, to_tensor, to_uint8

    refs, outs = [], []
    for ref_path in sorted((lol_root / "eval15" / "high").glob("*.png")):
        low = to_tensor(read_rgb(lol_root / "eval15" / "low" / ref_path.name))[None]
        with torch.inference_mode():
            outs.append(to_uint8(enhancer.enhance(low)[0]))
        refs.append(read_rgb(ref_path))
    assert len(refs) == 15
    return skimage_scores(refs, outs)


def tampered_weights(shared_weights: Path, out: Path, names: list[str], tamper: str) -> Path:
    """A weights folder at ``out`` holding copies of the registered files ``names`` from ``shared_weights``,
    with one byte flipped in the middle of ``tamper``'s copy (its sha256 no longer matches the registry)."""
    import shutil

    from cals_bench.weights import get_spec

    for name in names:
        rel = get_spec(name).relpath
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_weights / rel, out / rel)
    target = out / get_spec(tamper).relpath
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return out
