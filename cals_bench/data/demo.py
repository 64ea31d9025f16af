"""The built-in demo set: scikit-image's bundled sample images (no network), each tagged with a context.

The clean images are the references; the protocol's seeded degradation makes the low inputs. Grey images
(camera, shepp_logan_phantom) are replicated to RGB by the suite's grey rule; the phantom (float in [0, 1])
is rounded to 8 bits.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# sample id -> context attribute (the CALS paper's contexts: general / face / medical)
DEMO_IMAGES: dict[str, str] = {
    "astronaut": "face",
    "coffee": "general",
    "chelsea": "general",
    "rocket": "general",
    "camera": "general",
    "retina": "medical",
    "shepp_logan_phantom": "medical",
    "immunohistochemistry": "medical",
}


@cache
def demo_image(name: str) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` of a scikit-image sample image (read from the installed package)."""
    import skimage.data

    if name not in DEMO_IMAGES:
        raise KeyError(f"unknown demo image {name!r}")
    img = getattr(skimage.data, name)()
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    img.setflags(write=False)
    return img
