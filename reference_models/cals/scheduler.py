"""The context-aware loss scheduler: ``w_i(C) = sum_c p(c | I) W[c, i]``, per sample.

``W`` is the context x loss table of the config (rows medical, face, general; columns rec, perc, struct,
id, fair). The paper's rules: structure up for medical images, identity up for faces, reconstruction and
perceptual quality for general scenes. The fixed-weight baseline applies one row to every sample: the mean
row of ``W`` or a named row.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

CONTEXTS = ("medical", "face", "general")
TERMS = ("rec", "perc", "struct", "id", "fair")

# The default table (the paper's rules; the magnitudes are ours: see docs/cals.md).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "medical": {"rec": 1.0, "perc": 0.5, "struct": 2.0, "id": 0.0, "fair": 1.0},
    "face": {"rec": 1.0, "perc": 0.5, "struct": 0.5, "id": 1.0, "fair": 1.0},
    "general": {"rec": 1.5, "perc": 1.5, "struct": 0.5, "id": 0.0, "fair": 0.0},
}


def weight_table(weights: Mapping[str, Mapping[str, float]]) -> torch.Tensor:
    """``W`` as a ``(3, 5)`` float64 tensor (rows CONTEXTS, columns TERMS); missing entries are refused."""
    rows = []
    for c in CONTEXTS:
        if c not in weights:
            raise ValueError(f"weights: no row for context {c!r}")
        row = weights[c]
        unknown = sorted(set(row) - set(TERMS))
        if unknown:
            raise ValueError(f"weights.{c}: unknown loss term(s) {unknown}; terms are {list(TERMS)}")
        missing = [t for t in TERMS if t not in row]
        if missing:
            raise ValueError(f"weights.{c}: missing term(s) {missing}")
        if any(float(row[t]) < 0 for t in TERMS):
            raise ValueError(f"weights.{c}: weights must be >= 0")
        rows.append([float(row[t]) for t in TERMS])
    return torch.tensor(rows, dtype=torch.float64)


def fixed_row(table: torch.Tensor, row: str) -> torch.Tensor:
    """The baseline's one row: ``mean`` (of W's rows) or a context's row."""
    if row == "mean":
        return table.mean(0)
    if row not in CONTEXTS:
        raise ValueError(f"fixed_row must be 'mean' or one of {list(CONTEXTS)}, got {row!r}")
    return table[CONTEXTS.index(row)]


def scheduled_weights(probs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``(B, 5)`` per-sample weights ``p @ W`` for context probabilities ``probs`` ``(B, 3)``."""
    if probs.ndim != 2 or probs.shape[1] != table.shape[0]:
        raise ValueError(f"probs must be (B, {table.shape[0]}), got {tuple(probs.shape)}")
    return probs.to(table.dtype) @ table


def fixed_weights(batch_size: int, row: torch.Tensor) -> torch.Tensor:
    """One fixed row of loss weights repeated for every sample of a batch, ``(B, terms)``."""
    return row.unsqueeze(0).expand(batch_size, -1).clone()
