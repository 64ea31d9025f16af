"""A seeded low-light degradation model that turns any clean image into a (low, reference) pair.

For a clean uint8 RGB image ``c`` scaled to ``x = c / 255`` and per-sample draws from a generator seeded
by ``(seed, crc32(sample_id))``:

1. gamma (darkens mid-tones as a camera response would):         ``y = x ** gamma``
2. exposure scaling (the light that reached the sensor):         ``y = exposure * y``
3. signal-dependent shot noise (Poisson, ``photons`` at full scale): ``y = Poisson(y * photons) / photons``
4. signal-independent read noise (Gaussian):                      ``y = y + N(0, read_noise^2)``
5. clip to [0, 1] and 8-bit quantisation:                         ``low = round(255 * clip(y))``

``gamma``, ``exposure``, ``photons`` and ``read_noise`` are drawn uniformly from the ranges in
:class:`DegradationSpec` (a range with equal ends is a constant). The draws depend only on the seed and the
sample id, never on the order samples are visited, so the same seed gives byte-identical pairs across
runs and machines (for a given NumPy major version: NumPy's ``Generator`` streams are what is pinned).
The defaults give LOL-like darkness (mean brightness roughly 5-15% of the clean image).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DegradationSpec:
    """Parameter ranges ``(low, high)`` of the low-light model; each is drawn uniformly per sample."""

    gamma: tuple[float, float] = (1.2, 1.6)
    exposure: tuple[float, float] = (0.08, 0.2)
    photons: tuple[float, float] = (300.0, 1000.0)
    read_noise: tuple[float, float] = (0.002, 0.008)

    def __post_init__(self) -> None:
        for name, (lo, hi) in asdict(self).items():
            if not (lo <= hi):
                raise ValueError(f"degradation.{name}: range low {lo} > high {hi}")
        if self.gamma[0] <= 0 or self.exposure[0] <= 0 or self.photons[0] <= 0 or self.read_noise[0] < 0:
            raise ValueError("degradation: gamma, exposure and photons must be > 0, read_noise >= 0")


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """The per-sample generator: independent of visiting order."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([int(seed), zlib.crc32(sample_id.encode())]))
    )


def draw_parameters(spec: DegradationSpec, seed: int, sample_id: str) -> dict[str, float]:
    """The degradation parameters of one sample, drawn uniformly from the spec's ranges by (seed, sample id)."""
    rng = sample_rng(seed, sample_id)
    return {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in asdict(spec).items()}


def degrade(clean: np.ndarray, spec: DegradationSpec, seed: int, sample_id: str) -> tuple[np.ndarray, dict]:
    """Low-light version of a clean uint8 RGB image ``(H, W, 3)``; returns ``(low uint8, parameters)``.

    Example:
        >>> import numpy as np
        >>> clean = np.full((4, 4, 3), 200, np.uint8)
        >>> a, _ = degrade(clean, DegradationSpec(), 0, "x")
        >>> b, _ = degrade(clean, DegradationSpec(), 0, "x")
        >>> bool((a == b).all()), bool(a.mean() < 60)
        (True, True)
    """
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"degrade expects uint8 (H, W, 3), got {clean.dtype} {clean.shape}")
    params = draw_parameters(spec, seed, sample_id)
    # A second stream for the noise, derived from the same key, so parameters and noise never interleave.
    noise_rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([int(seed), zlib.crc32(sample_id.encode()), 1]))
    )
    x = clean.astype(np.float64) / 255.0
    y = params["exposure"] * np.power(x, params["gamma"])
    y = noise_rng.poisson(y * params["photons"]).astype(np.float64) / params["photons"]
    y = y + noise_rng.normal(0.0, params["read_noise"], size=y.shape)
    low = np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    return low, params
