"""No-reference metrics: scored on the output alone, and on the model input for a before/after delta.

A :class:`NoReferenceMetric` declares ``needs_reference = False`` and its own columns (``{"niqe": False}``)
and implements :meth:`~NoReferenceMetric.score_image` for one image. Its ``score_batch`` ignores the
reference (``None`` in unpaired protocols) and yields, per declared column ``c``:

- ``c``: the value on the output (as scored: clamped and rounded to 8 bits);
- ``c_delta``: ``c`` minus the value on the model input (the low-light photograph the engine passes in
  the sample's context): the change the model made, with the direction of ``c``. The input's own value
  is ``c - c_delta``.

So a paired protocol may list a no-reference metric next to PSNR (flagged as no-reference in every table
through ``needs_reference``), and an unpaired protocol runs with no reference at all.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from cals_bench.metrics.base import Metric, SampleContext

DELTA_SUFFIX = "_delta"


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` float tensor in [0, 1] -> ``(H, W, 3)`` uint8 (exact on the 8-bit grid)."""
    arr = image.detach().to("cpu", torch.float64).clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return np.ascontiguousarray(arr.permute(1, 2, 0).numpy())


def no_reference_columns(base: dict[str, bool | None]) -> dict[str, bool | None]:
    """The declared columns plus their ``_delta`` companions (same direction)."""
    out: dict[str, bool | None] = dict(base)
    out.update({f"{c}{DELTA_SUFFIX}": hib for c, hib in base.items()})
    return out


NO_REFERENCE_NOTE = (
    "(NR): a no-reference metric, scored on the output alone; <name>_delta is the output's value minus the "
    "model input's (same direction). Arrows give each column's direction; none: descriptive."
)


def is_no_reference_column(column: str) -> bool:
    """True for a column produced by a registered no-reference metric (value or delta)."""
    from cals_bench.metrics.base import metric_registry

    return any(not cls.needs_reference and column in cls.columns for cls in metric_registry().values())


class NoReferenceMetric(Metric):
    """Base of metrics that need no reference. Subclasses set ``name``, ``columns`` (the output columns
    only; the ``_delta`` companions are added) and implement :meth:`score_image`."""

    needs_reference: ClassVar[bool] = False
    # the per-image columns a subclass declares, before the _delta companions are added
    base_columns: ClassVar[dict[str, bool | None]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("columns")
        if declared:
            cls.base_columns = dict(declared)
            cls.columns = no_reference_columns(declared)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.last_reasons: list[str | None] = []

    def score_image(self, image: torch.Tensor) -> tuple[dict[str, float], str | None]:
        """Values of the base columns for one ``(3, H, W)`` image in [0, 1], and a reason when NaN."""
        raise NotImplementedError

    def score_batch(
        self, output: torch.Tensor, reference: torch.Tensor | None, contexts: list[SampleContext]
    ) -> list[dict[str, float]]:
        results: list[dict[str, float]] = []
        self.last_reasons = []
        for i, ctx in enumerate(contexts):
            values, reason = self.score_image(output[i])
            row = dict(values)
            if ctx.low is not None and tuple(ctx.low.shape) == tuple(output[i].shape):
                inp, in_reason = self.score_image(ctx.low)
                for c in self.base_columns:
                    row[f"{c}{DELTA_SUFFIX}"] = values[c] - inp[c]
                reason = reason or in_reason
            else:
                row.update({f"{c}{DELTA_SUFFIX}": float("nan") for c in self.base_columns})
                reason = reason or f"{self.name}: no model input of the output's size to compare with"
            results.append(row)
            self.last_reasons.append(reason)
        return results

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "needs_reference": False}


# ----------------------------------------------------------------------------------------------------------
# engine hooks: a protocol whose samples have no reference (dataset layout "unpaired")


def reference_free(protocol: Any) -> bool:
    """True when the protocol's samples carry no reference image."""
    return protocol.dataset.layout == "unpaired"


def unusable_reason(protocol: Any, metric: Metric) -> str | None:
    """Why ``metric`` cannot score ``protocol`` (a full-reference metric on unpaired data), else None."""
    if metric.needs_reference and reference_free(protocol):
        return (
            f"metric {metric.name!r} needs a reference image and protocol {protocol.name} has none "
            "(unpaired images: only no-reference metrics apply)"
        )
    return None


def check_model(protocol: Any, enhancer: Any) -> None:
    """Refuse a model that reads the ground truth on a protocol that has none."""
    from cals_bench.errors import CalsBenchError

    if getattr(enhancer, "uses_ground_truth", False) and reference_free(protocol):
        raise CalsBenchError(
            f"model {enhancer.name} reads the ground truth at test time; protocol {protocol.name} has no "
            "reference images"
        )


def stack_references(pairs: list[tuple[Any, Any]], device: Any) -> torch.Tensor | None:
    """The batch's references as one tensor, or None when the samples have none (unpaired)."""
    from cals_bench.data.io import to_tensor

    if any(p[1] is None for _, p in pairs):
        return None
    return torch.stack([to_tensor(p[1]) for _, p in pairs]).to(device)
