"""What the training engine hands a task: one :class:`Batch` per step, built by :func:`collate` from the
items a data source's dataset returns (see :mod:`cals_bench.train.sources`).

An item is a mapping with the keys of :data:`ITEM_KEYS`:

``low``         float32 ``(3, H, W)`` in [0, 1], the model input (always present)
``high``        float32 ``(3, H, W)`` paired reference, or None (zero-reference and unpaired sources)
``normal``      float32 ``(3, H', W')`` an unrelated normal-light image (unpaired sources), or None
``context``     int context label, or None
``attributes``  ``dict[str, str]`` per-sample attributes (groups such as gender or age band); may be empty
``id``          the sample id

Within one batch a key is either present (not None) for every item or for none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

ITEM_KEYS = ("low", "high", "normal", "context", "attributes", "id")


@dataclass
class Batch:
    """A training batch. Images are float ``(B, 3, H, W)`` in [0, 1]."""

    low: torch.Tensor
    high: torch.Tensor | None = None
    normal: torch.Tensor | None = None
    context: torch.Tensor | None = None  # (B,) int64
    attributes: list[dict[str, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.low.shape[0])

    def to(self, device: torch.device | str, channels_last: bool = False) -> Batch:
        """A copy on ``device`` (images in channels-last memory format when asked)."""

        def move(t: torch.Tensor | None, image: bool) -> torch.Tensor | None:
            if t is None:
                return None
            t = t.to(device, non_blocking=True)
            return t.contiguous(memory_format=torch.channels_last) if image and channels_last else t

        return replace(
            self,
            low=move(self.low, True),
            high=move(self.high, True),
            normal=move(self.normal, True),
            context=move(self.context, False),
        )

    def pin_memory(self) -> Batch:
        """Called by the DataLoader when ``pin_memory`` is set."""
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return replace(
            self, low=pin(self.low), high=pin(self.high), normal=pin(self.normal), context=pin(self.context)
        )


def _stack(items: Sequence[dict[str, Any]], key: str) -> torch.Tensor | None:
    values = [it.get(key) for it in items]
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        missing = next(it.get("id", "?") for it, p in zip(items, present) if not p)
        raise ValueError(f"batch: {key} is missing for {missing} but present for other samples")
    if key == "context":
        return torch.as_tensor([int(v) for v in values], dtype=torch.int64)
    return torch.stack(values)


def collate(items: Sequence[dict[str, Any]]) -> Batch:
    """The :class:`Batch` of a list of items (the DataLoader's ``collate_fn``)."""
    if not items:
        raise ValueError("batch: no items")
    unknown = set(items[0]) - set(ITEM_KEYS)
    if unknown:
        raise ValueError(f"batch: unknown item key(s) {', '.join(sorted(unknown))}; items have {ITEM_KEYS}")
    low = _stack(items, "low")
    if low is None:
        raise ValueError("batch: items carry no low image")
    return Batch(
        low=low,
        high=_stack(items, "high"),
        normal=_stack(items, "normal"),
        context=_stack(items, "context"),
        attributes=[dict(it.get("attributes") or {}) for it in items],
        ids=[str(it.get("id", "")) for it in items],
    )


def item(
    low: torch.Tensor,
    high: torch.Tensor | None = None,
    *,
    normal: torch.Tensor | None = None,
    context: int | None = None,
    attributes: dict[str, str] | None = None,
    id: str = "",
) -> dict[str, Any]:
    """One dataset item with every key of :data:`ITEM_KEYS`."""
    return {
        "low": low,
        "high": high,
        "normal": normal,
        "context": context,
        "attributes": dict(attributes or {}),
        "id": id,
    }
