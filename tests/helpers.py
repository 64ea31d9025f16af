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
