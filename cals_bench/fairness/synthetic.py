"""Seeded synthetic audit inputs: a simulated enhancer that degrades one group, or none.

Used by the tests (power and false-positive rate of the gap tests) and by benchmarks/fairness_speed.py.
Reference "features" of sample i in group g are ``ref_i ~ N(mu_g, I_d)`` (groups differ in content); the
simulated enhancer returns ``out_i = ref_i + sigma_g * eps_i``, ``eps_i ~ N(0, I_d)``, with
``sigma_g = noise`` for every group, except ``sigma_g = noise * degradation`` for ``biased_group``.
Per-image metrics follow from the same features: ``psnr = -10 log10(mean((out - ref)^2))`` (higher is
better) and ``lpips = ||out - ref|| / sqrt(d)`` (lower is better; a stand-in scale, not real LPIPS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DIRECTIONS = {"psnr": True, "lpips": False}


@dataclass
class SyntheticAudit:
    """Inputs of ``audit``: long records, attributes, features ``{"face": (ref, out, ids)}``, directions."""

    records: pd.DataFrame
    attributes: pd.DataFrame
    features: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]
    directions: dict[str, bool]


def simulated_enhancer_data(
    *,
    n: int,
    groups: tuple[str, ...] = ("a", "b", "c", "d"),
    dim: int = 32,
    noise: float = 0.3,
    biased_group: str | None = None,
    degradation: float = 1.0,
    content_shift: float = 0.5,
    nan_fraction: float = 0.0,
    seed: int = 0,
) -> SyntheticAudit:
    """``n`` samples spread evenly over ``groups`` (attribute ``group``); see the module docstring."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:06d}" for i in range(n)]
    labels = np.array(groups)[np.arange(n) % len(groups)]
    centres = {g: content_shift * rng.standard_normal(dim) / np.sqrt(dim) for g in groups}
    ref = np.stack([centres[g] for g in labels]) + rng.standard_normal((n, dim))
    sigma = np.where(labels == biased_group, noise * degradation, noise)
    out = ref + sigma[:, None] * rng.standard_normal((n, dim))
    err = out - ref
    psnr = -10.0 * np.log10(np.mean(err**2, axis=1))
    lpips = np.linalg.norm(err, axis=1) / np.sqrt(dim)
    if nan_fraction > 0:
        k = round(nan_fraction * n)
        lpips[rng.choice(n, size=k, replace=False)] = np.nan
    records = pd.concat(
        [
            pd.DataFrame({"sample_id": ids, "metric": "psnr", "value": psnr}),
            pd.DataFrame({"sample_id": ids, "metric": "lpips", "value": lpips}),
        ],
        ignore_index=True,
    )
    attributes = pd.DataFrame({"group": labels}, index=pd.Index(ids, name="sample_id"))
    return SyntheticAudit(records, attributes, {"face": (ref, out, ids)}, dict(DIRECTIONS))
