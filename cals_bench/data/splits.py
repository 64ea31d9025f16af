"""Seeded train / val / test splits that protocols score and trainers read, drawn once and never by order.

A split assigns each *unit* (a sample, or every sample sharing the value of ``unit``, e.g. ``patientid``
so that no patient straddles train and test) to a part by a hash of ``(seed, unit)``: a unit's part depends
only on the seed and its own id, never on which other files a copy of the dataset holds or the order they
are listed in. A copy missing a few files, or holding a few more, keeps every other unit in its part, so a
trainer reading ``train`` can never see a ``test`` image of the same seed. The fractions are met in
expectation (and to within a few units on thousands of samples), not exactly.

``per_cell`` draws a balanced subsample of the chosen part: at most that many samples per cell of
``cell_by`` (e.g. race x gender), the samples with the smallest hash of ``(seed, "cell", sample id)``:
again independent of order and of the other cells.

Example:
    >>> spec = SplitSpec(part="test", seed=0)
    >>> parts = assign([f"s{i}" for i in range(1000)], {}, spec)
    >>> sorted(set(parts.values()))
    ['test', 'train', 'val']
    >>> round(sum(p == "train" for p in parts.values()) / 1000, 1)
    0.7
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSpec:
    """Which part of a seeded split a protocol scores or a trainer reads.

    ``fractions`` are (train, val, test) and sum to 1. ``unit`` names the attribute that keeps samples
    together (empty: each sample is its own unit). ``per_cell`` keeps at most that many samples of the part
    per cell of ``cell_by`` (a balanced protocol); samples lacking a ``cell_by`` attribute are dropped then.
    """

    part: Literal["train", "val", "test"] = "test"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    unit: str = ""
    per_cell: int | None = None
    cell_by: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-9:
            raise ValueError(f"split.fractions must be >= 0 and sum to 1, got {list(self.fractions)}")
        if self.per_cell is not None and (self.per_cell < 1 or not self.cell_by):
            raise ValueError("split.per_cell needs a positive count and split.cell_by attributes")


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from ``(seed, key)``: sha256, first 8 bytes."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def part_of(unit: str, spec: SplitSpec) -> str:
    """The part (``train``, ``val`` or ``test``) a unit falls in."""
    u = unit_hash(spec.seed, unit)
    train, val, _ = spec.fractions
    if u < train:
        return "train"
    if u < train + val:
        return "val"
    return "test"


def assign(
    sample_ids: Sequence[str], attributes: Mapping[str, Mapping[str, str]], spec: SplitSpec
) -> dict[str, str]:
    """``{sample id: part}`` for every sample; ``attributes[sample_id][spec.unit]`` names its unit.

    A sample without a value for ``unit`` is its own unit (and the caller may prefer to refuse it).
    """
    out = {}
    for sid in sample_ids:
        unit = (attributes.get(sid, {}).get(spec.unit) if spec.unit else None) or sid
        out[sid] = part_of(f"{spec.unit}={unit}" if spec.unit else unit, spec)
    return out


def select(
    sample_ids: Sequence[str], attributes: Mapping[str, Mapping[str, str]], spec: SplitSpec
) -> list[str]:
    """The ids of ``spec.part`` (then balanced by ``per_cell``), in the order given."""
    parts = assign(sample_ids, attributes, spec)
    chosen = [sid for sid in sample_ids if parts[sid] == spec.part]
    if spec.per_cell is None:
        return chosen
    cells: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for sid in chosen:
        attrs = attributes.get(sid, {})
        cell = tuple(attrs.get(a, "") for a in spec.cell_by)
        if all(cell):
            cells[cell].append(sid)
    keep: set[str] = set()
    for members in cells.values():
        members.sort(key=lambda s: unit_hash(spec.seed, f"cell:{s}"))
        keep.update(members[: spec.per_cell])
    return [sid for sid in chosen if sid in keep]


def summary(
    sample_ids: Sequence[str], attributes: Mapping[str, Mapping[str, str]], spec: SplitSpec
) -> dict[str, object]:
    """A JSON-able record of a split (spec, per-part ids and unit counts): what a trainer writes beside its run."""
    parts = assign(sample_ids, attributes, spec)
    ids = {p: sorted(s for s, q in parts.items() if q == p) for p in PARTS}
    units = {
        p: len({(attributes.get(s, {}).get(spec.unit) if spec.unit else None) or s for s in ids[p]})
        for p in PARTS
    }
    return {
        "spec": {
            "fractions": list(spec.fractions),
            "seed": spec.seed,
            "unit": spec.unit,
            "per_cell": spec.per_cell,
            "cell_by": list(spec.cell_by),
        },
        "counts": {p: len(ids[p]) for p in PARTS},
        "units": units,
        "ids": ids,
    }
