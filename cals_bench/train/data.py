"""The seeded training data pipeline: training pairs from the core readers, a held-out validation split,
random crops and flips that depend only on ``(seed, step, slot)``, and a step-indexed batch sampler.

Pairs are listed by :func:`cals_bench.data.datasets.load_samples` (the same readers the benchmark uses), on
a dataset declaration that points at the *training* folders: a protocol's ``train_low_dir`` /
``train_high_dir`` (LOL-v1 our485, LOL-v2 Train), a pair of folders, or a folder of clean images turned
into pairs by the seeded degradation of :mod:`cals_bench.data.synthetic`.

Determinism: the order of epoch ``e`` is a permutation drawn from ``(seed, e)``; global step ``s`` takes
the ``s mod steps_per_epoch``-th batch of epoch ``s // steps_per_epoch``; the crop and flips of the sample
in slot ``j`` of that batch are drawn from ``(seed, s, j)``. A batch is therefore a function of the step
alone: a resumed run, a run with data-loader workers, and a run split over processes (process ``r`` of
``W`` takes slots ``r, r + W, ...``) all see exactly the same samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cals_bench.data.datasets import Sample, load_samples
from cals_bench.data.io import to_tensor
from cals_bench.errors import DataError
from cals_bench.protocol import DatasetSpec, PreprocessSpec, Protocol
from cals_bench.protocol import load as load_protocol
from cals_bench.train.config import DataConfig


@dataclass
class TrainingData:
    """The listed pairs, split: ``train`` and ``val`` are disjoint lists of core :class:`Sample` objects."""

    root: Path
    description: str
    train: list[Sample]
    val: list[Sample]

    @property
    def train_ids(self) -> list[str]:
        return [s.sample_id for s in self.train]


def _training_protocol(data: DataConfig) -> tuple[Protocol, str]:
    """A protocol whose dataset declaration points at the training folders (no checksums, no resize)."""
    if data.protocol:
        proto = load_protocol(data.protocol)
        ds = proto.dataset
        if not (ds.train_low_dir and ds.train_high_dir):
            raise DataError(
                f"protocol {proto.name} declares no training split (train_low_dir/train_high_dir)"
            )
        train_ds = dataclasses.replace(
            ds,
            low_dir=ds.train_low_dir,
            high_dir=ds.train_high_dir,
            expected_count=None,
            checksums={},
            manifest="",
        )
        desc = f"the {proto.name} training split ({ds.train_low_dir}, {ds.train_high_dir})"
        return dataclasses.replace(proto, dataset=train_ds, preprocess=PreprocessSpec()), desc
    if data.clean_dir:
        ds = DatasetSpec(layout="synthetic", clean_dir=data.clean_dir, degradation=data.degradation)
        desc = f"clean images in {data.clean_dir} with the seeded low-light degradation"
        seed = data.degradation_seed
    else:
        ds = DatasetSpec(layout="paired", low_dir=data.low_dir, high_dir=data.high_dir, pairing=data.pairing)
        desc = f"paired folders {data.low_dir} and {data.high_dir}"
        seed = 0
    proto = Protocol(name="training-data", version=1, title=desc, dataset=ds, metrics=["psnr"], seed=seed)
    return proto, desc


def load_training_data(data: DataConfig, data_root: str | Path | None) -> TrainingData:
    """List the training pairs under ``data_root`` and hold out the validation split.

    Raises :class:`DataError` when the root lacks the expected layout, a low image lacks its reference,
    the training folders are the protocol's test folders, or fewer than 2 pairs are found with a split.
    """
    if not data_root:
        raise DataError("training needs a data root (--data-root DIR)")
    proto, desc = _training_protocol(data)
    try:
        root, samples = load_samples(proto, data_root)
    except DataError as exc:
        raise DataError(f"no training data: {exc}") from exc
    if data.protocol:
        test = load_protocol(data.protocol).dataset
        if (root / test.low_dir).resolve() == (root / proto.dataset.low_dir).resolve():
            raise DataError(
                f"{root}: the training folder {test.low_dir} is the protocol's test split; refusing"
            )
    bad = [s for s in samples if s.error]
    if bad:
        raise DataError(f"{bad[0].error} ({len(bad)} training pair(s) incomplete)")
    train, val = split_validation(samples, data.val_fraction, data.split_seed)
    return TrainingData(Path(root), desc, train, val)


def split_validation(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out ``round(fraction * n)`` samples (at least 1 when ``fraction > 0``), drawn by ``seed``.

    The draw depends on the sorted sample ids and the split seed only (not on the training seed), so runs
    with different training seeds validate on the same images. Both lists keep the input order.
    """
    n = len(samples)
    if fraction <= 0:
        return list(samples), []
    n_val = max(1, round(fraction * n))
    if n - n_val < 1:
        raise DataError(
            f"{n} training pair(s) cannot be split into training and validation (val_fraction {fraction})"
        )
    order = sorted(range(n), key=lambda i: samples[i].sample_id)
    picked = {order[i] for i in np.random.default_rng([seed, 0x5A11]).permutation(n)[:n_val]}
    return [s for i, s in enumerate(samples) if i not in picked], [
        s for i, s in enumerate(samples) if i in picked
    ]


class CropDataset(torch.utils.data.Dataset):
    """Random crops (and flips) of training pairs. Indexed by ``(sample index, step, slot)``.

    Returns ``(low, high)`` float32 ``(3, crop, crop)`` in [0, 1]. Decoded images are cached per process
    when ``cache`` is set (LOL-v1 our485 is about 0.7 GB as uint8).
    """

    def __init__(self, samples: list[Sample], crop: int, flips: bool, seed: int, cache: bool = True) -> None:
        self.samples = samples
        self.crop = crop
        self.flips = flips
        self.seed = seed
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        low, high = self.samples[index].load()
        if self.cache is not None:
            self.cache[index] = (low, high)
        return low, high

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, step, slot = key
        low, high = self.images(index)
        h, w = low.shape[:2]
        c = self.crop
        if h < c or w < c:
            where = self.samples[index].high_path or self.samples[index].sample_id
            raise DataError(f"{where}: image {w}x{h} is smaller than the {c}x{c} training crop")
        rng = np.random.default_rng([self.seed, step, slot])
        top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        flip_h, flip_v = (bool(b) for b in rng.random(2) < 0.5)
        lo, hi = low[top : top + c, left : left + c], high[top : top + c, left : left + c]
        if self.flips and flip_h:
            lo, hi = lo[:, ::-1], hi[:, ::-1]
        if self.flips and flip_v:
            lo, hi = lo[::-1], hi[::-1]
        return to_tensor(np.ascontiguousarray(lo)), to_tensor(np.ascontiguousarray(hi))


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for each global step in ``[start, stop)``, this process's keys ``(index, step, slot)``.

    The global batch of ``batch_size`` is drawn as described in the module docstring; process ``rank`` of
    ``world`` takes the slots ``rank, rank + world, ...`` (``batch_size`` must be a multiple of ``world``).
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1
    ):
        if n < batch_size:
            raise DataError(f"{n} training pair(s) is fewer than the batch size {batch_size}")
        if batch_size % world:
            raise DataError(f"the global batch {batch_size} does not split over {world} processes")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.steps_per_epoch = n // batch_size
        self._perm: tuple[int, np.ndarray] | None = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 0xE90C]).permutation(self.n))
        return self._perm[1]

    def global_batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        return [int(i) for i in self.epoch_order(epoch)[k * self.batch_size : (k + 1) * self.batch_size]]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start, self.stop):
            batch = self.global_batch(step)
            yield [(batch[j], step, j) for j in range(self.rank, self.batch_size, self.world)]


def validation_images(
    samples: list[Sample], crop: int | None
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(sample id, low, high)`` float32 ``(1, 3, H, W)`` in [0, 1]; centre-cropped to ``crop`` when set."""
    out = []
    for s in samples:
        low, high = s.load()
        if crop is not None:
            h, w = low.shape[:2]
            ch, cw = min(crop, h), min(crop, w)
            top, left = (h - ch) // 2, (w - cw) // 2
            low, high = low[top : top + ch, left : left + cw], high[top : top + ch, left : left + cw]
        out.append(
            (
                s.sample_id,
                to_tensor(np.ascontiguousarray(low))[None],
                to_tensor(np.ascontiguousarray(high))[None],
            )
        )
    return out
