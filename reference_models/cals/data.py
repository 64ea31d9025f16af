"""The ``cals-contexts`` training data source: the three CALS contexts, from the train parts of the very
splits the ``cals-*`` protocols score (their test parts).

Each context is a protocol (``cals-medical``, ``cals-face``, ``cals-general`` by default): its dataset, its
256x256 preprocessing, its seeded low-light degradation (``protocol.seed``, per sample id) and its seeded
split (``dataset.split``; seed 0, 0.7/0.1/0.2; by ``patientid`` for the X-rays). The source reads the
protocol with ``split.part`` set to ``train`` (training) and ``val`` (validation): no sample of the test
part is ever listed, so no test image is ever decoded by the trainer. Attributes (gender, race, age_band;
sex, age_band) and the context label travel with every item.

Balance: the contexts differ in size by 20x (about 6,850 training faces, 345 X-rays, 350 photographs).
``per_context`` (> 0) makes every context contribute exactly that many items to an epoch: the first
``per_context`` of its samples in the order of a seeded hash of their ids, cycling when it has fewer.
Crops: a random ``data.crop`` square and a horizontal flip (``data.flips``), from ``(seed, step, slot)``;
no vertical flips (upside-down faces and radiographs are not a context the predictor should learn).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cals_bench.data import splits
from cals_bench.data.datasets import Sample, apply_split, load_samples
from cals_bench.data.io import to_tensor
from cals_bench.errors import DataError
from cals_bench.protocol import load as load_protocol
from cals_bench.train.batch import item
from cals_bench.train.sources import SourceData, register_source

CONTEXTS = ("medical", "face", "general")
DEFAULT_PROTOCOLS = {"medical": "cals-medical", "face": "cals-face", "general": "cals-general"}


def context_parts(name: str, data_root: str | Path | None) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """``({part: samples}, split summary)`` of a context protocol: its whole dataset listed once (bands
    applied; nothing decoded), divided by the protocol's split spec. The summary is
    :func:`cals_bench.data.splits.summary` (the ids of every part: the test ids are listed, never read)."""
    proto = load_protocol(name)
    spec = proto.dataset.split
    if spec is None:
        raise DataError(
            f"protocol {name} declares no seeded split (dataset.split); CALS trains on split data"
        )
    spec = dataclasses.replace(spec, per_cell=None, cell_by=[])
    full = dataclasses.replace(proto, dataset=dataclasses.replace(proto.dataset, split=None))
    _, samples = load_samples(full, data_root)
    bad = [s for s in samples if s.error]
    if bad:
        raise DataError(f"{bad[0].error} ({len(bad)} sample(s) of {name} incomplete)")
    parts = {p: apply_split(samples, dataclasses.replace(spec, part=p)) for p in splits.PARTS}
    attrs = {s.sample_id: s.attributes for s in samples}
    summary = {"protocol": f"{proto.name} v{proto.version}", **splits.summary(list(attrs), attrs, spec)}
    return parts, summary


def context_samples(name: str, data_root: str | Path | None, part: str) -> list[Sample]:
    """The samples of one part (``train``, ``val``, ``test``) of a context protocol's split."""
    return context_parts(name, data_root)[0][part]


def subsample(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    """The first ``n`` samples in the order of ``unit_hash(seed, "cals-pool:" + id)`` (all when n <= 0)."""
    order = sorted(samples, key=lambda s: splits.unit_hash(seed, f"cals-pool:{s.sample_id}"))
    return order if n <= 0 else order[:n]


@dataclass(frozen=True)
class CALSDataOptions:
    """``data.options`` of the ``cals-contexts`` source.

    ``protocols``: context -> protocol whose train/val parts are read (defaults: cals-medical, cals-face,
    cals-general). ``per_context``: items per context per epoch (0 = every training sample once).
    ``val_per_context``: validation images per context (from the val part, by seeded hash order).
    ``contexts``: which contexts to train on (all three by default).
    ``face_jitter``: when >= 0, face crops are centred (UTKFace faces are aligned and centred) and shifted
    by at most this many pixels, so that the whole face, and with it L_id, is in most crops; -1 draws face
    crops uniformly like the others.
    """

    protocols: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROTOCOLS))
    contexts: list[str] = field(default_factory=lambda: list(CONTEXTS))
    per_context: int = 0
    val_per_context: int = 8
    face_jitter: int = -1

    def __post_init__(self) -> None:
        unknown = [c for c in self.contexts if c not in CONTEXTS]
        if unknown or not self.contexts:
            raise ValueError(f"contexts must be among {list(CONTEXTS)}, got {self.contexts}")
        missing = [c for c in self.contexts if c not in self.protocols]
        if missing:
            raise ValueError(f"protocols: no protocol for context(s) {missing}")
        if self.per_context < 0 or self.val_per_context < 0 or self.face_jitter < -1:
            raise ValueError("per_context and val_per_context must be >= 0, face_jitter >= -1")


class ContextCrops(torch.utils.data.Dataset):
    """Items ``(index, step, slot) -> low/high crop, context label, attributes, id``."""

    def __init__(
        self,
        entries: list[tuple[int, Sample]],
        crop: int,
        flips: bool,
        seed: int,
        cache: bool = True,
        face_jitter: int = -1,
    ) -> None:
        self.entries, self.crop, self.flips, self.seed = entries, crop, flips, seed
        self.face_jitter = face_jitter
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.entries)

    def images(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None and s.sample_id in self.cache:
            return self.cache[s.sample_id]
        pair = s.load()
        if self.cache is not None:
            self.cache[s.sample_id] = pair
        return pair

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        index, step, slot = key
        ctx, s = self.entries[index]
        low, high = self.images(s)
        h, w = low.shape[:2]
        c = self.crop
        if h < c or w < c:
            raise DataError(f"{s.sample_id}: image {w}x{h} is smaller than the {c}x{c} training crop")
        rng = np.random.default_rng([self.seed, step, slot])
        top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        if ctx == CONTEXTS.index("face") and self.face_jitter >= 0:
            j = self.face_jitter
            top = min(max((h - c) // 2 + int(rng.integers(-j, j + 1)), 0), h - c)
            left = min(max((w - c) // 2 + int(rng.integers(-j, j + 1)), 0), w - c)
        flip = bool(rng.random() < 0.5) and self.flips
        lo, hi = low[top : top + c, left : left + c], high[top : top + c, left : left + c]
        if flip:
            lo, hi = lo[:, ::-1], hi[:, ::-1]
        return item(
            to_tensor(np.ascontiguousarray(lo)),
            to_tensor(np.ascontiguousarray(hi)),
            context=ctx,
            attributes=s.attributes,
            id=f"{CONTEXTS[ctx]}/{s.sample_id}",
        )


def _cycle(samples: list[Sample], n: int) -> list[Sample]:
    if n <= 0:
        return samples
    if not samples:
        return []
    return [samples[i % len(samples)] for i in range(n)]


@register_source(
    "cals-contexts", options=CALSDataOptions, summary="CALS: three contexts, protocol train splits"
)
def cals_contexts_source(
    data: Any, opts: CALSDataOptions, data_root: str | Path | None, seed: int
) -> SourceData:
    """The train parts of the context protocols (see the module docstring)."""
    if not data_root:
        raise DataError("training needs a data root (--data-root DIR: the folder holding utkface/, ...)")
    entries: list[tuple[int, Sample]] = []
    val: list[Sample] = []
    info: dict[str, Any] = {"splits": {}, "counts": {}}
    for ctx in opts.contexts:
        k = CONTEXTS.index(ctx)
        name = opts.protocols[ctx]
        parts, summary = context_parts(name, data_root)
        train = subsample(parts["train"], 0, data.split_seed)
        if not train:
            raise DataError(f"protocol {name}: the train part of its split is empty")
        entries += [(k, s) for s in _cycle(train, opts.per_context)]
        if opts.val_per_context:
            vs = subsample(parts["val"], opts.val_per_context, data.split_seed)
            for s in vs:
                s.sample_id = f"{ctx}/{s.sample_id}"
            val += vs
        info["splits"][ctx] = summary
        info["counts"][ctx] = {
            "train_available": len(train),
            "items_per_epoch": opts.per_context or len(train),
        }
    ids = [f"{CONTEXTS[k]}/{s.sample_id}" for k, s in entries]
    desc = (
        "CALS contexts: train parts of "
        + ", ".join(f"{opts.protocols[c]} ({c})" for c in opts.contexts)
        + "; the test parts are never read"
    )
    root = Path(data_root)
    dataset = ContextCrops(entries, data.crop, data.flips, seed, data.cache_images, opts.face_jitter)
    return SourceData(root, desc, ids, dataset, val, info)
