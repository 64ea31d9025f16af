"""The training data pipeline: layouts, the held-out validation split, seeded crops/flips, the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cals_bench.data.io import read_rgb
from cals_bench.data.synthetic import DegradationSpec, degrade
from cals_bench.errors import DataError
from cals_bench.train.config import DataConfig
from cals_bench.train.data import CropDataset, StepBatchSampler, load_training_data, split_validation
from tests.helpers import make_pairs


def test_protocol_root_without_training_split_names_the_layout(tmp_path):
    (tmp_path / "eval15" / "low").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load_training_data(DataConfig(protocol="lol-v1"), tmp_path)
    msg = str(err.value)
    assert "our485/low" in msg
    assert "our485/high" in msg
    assert "\n" not in msg


def test_missing_root_and_missing_reference(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_training_data(DataConfig(low_dir="low", high_dir="high"), tmp_path / "nope")
    root = make_pairs(tmp_path / "d", n=3)
    (root / "high" / "001.png").unlink()
    with pytest.raises(DataError, match=r"001\.png: no reference image"):
        load_training_data(DataConfig(low_dir="low", high_dir="high"), root)


def test_refuses_to_train_on_the_test_split(tmp_path):
    proto = tmp_path / "p.yaml"
    proto.write_text(
        "name: p\nversion: 1\ntitle: t\nmetrics: [psnr]\n"
        "dataset: {layout: paired, low_dir: low, high_dir: high, train_low_dir: low, train_high_dir: high}\n"
    )
    root = make_pairs(tmp_path / "d", n=3)
    with pytest.raises(DataError, match="test split; refusing"):
        load_training_data(DataConfig(protocol=str(proto)), root)


def test_validation_split_is_held_out_and_fixed(tmp_path):
    root = make_pairs(tmp_path / "d", n=20, size=(24, 24))
    data = load_training_data(DataConfig(low_dir="low", high_dir="high", val_fraction=0.1), root)
    train_ids, val_ids = set(data.train_ids), {s.sample_id for s in data.val}
    assert len(val_ids) == 2
    assert len(train_ids) == 18
    assert not train_ids & val_ids
    again = load_training_data(DataConfig(low_dir="low", high_dir="high", val_fraction=0.1), root)
    assert [s.sample_id for s in again.val] == [s.sample_id for s in data.val]
    other = split_validation(data.train + data.val, 0.1, seed=1)[1]
    assert {s.sample_id for s in other} != val_ids  # the split seed, and only it, moves the split
    with pytest.raises(DataError, match="cannot be split"):
        split_validation(data.val[:1], 0.5, 0)


def test_crops_are_seeded_and_low_high_stay_aligned(tmp_path):
    # make_pairs writes low = high // 5: any crop/flip applied to both keeps that identity exactly
    root = make_pairs(tmp_path / "d", n=2, size=(40, 56))
    data = load_training_data(DataConfig(low_dir="low", high_dir="high", val_fraction=0.0), root)
    ds = CropDataset(data.train, crop=16, flips=True, seed=3)
    flips_seen = set()
    for step in range(12):
        low, high = ds[(0, step, 0)]
        lo8, hi8 = (low * 255).round().byte(), (high * 255).round().byte()
        assert low.shape == (3, 16, 16)
        assert np.array_equal(lo8.numpy(), (hi8 // 5).numpy())
        full = read_rgb(root / "high" / "000.png")
        found = _locate(hi8.permute(1, 2, 0).numpy(), full)
        flips_seen.add(found)
    assert flips_seen == {(False, False), (True, False), (False, True), (True, True)}
    a, b = ds[(1, 7, 2)], ds[(1, 7, 2)]
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))
    c = CropDataset(data.train, crop=16, flips=True, seed=4)[(1, 7, 2)]
    assert not np.array_equal(a[0].numpy(), c[0].numpy())  # another seed, another crop


def _locate(crop: np.ndarray, full: np.ndarray) -> tuple[bool, bool]:
    """Which flips of ``crop`` occur in ``full`` (exactly one for random-noise images)."""
    c = crop.shape[0]
    hits = set()
    for fh in (False, True):
        for fv in (False, True):
            t = crop[:, ::-1] if fh else crop
            t = t[::-1] if fv else t
            for y in range(full.shape[0] - c + 1):
                for x in range(full.shape[1] - c + 1):
                    if np.array_equal(full[y : y + c, x : x + c], t):
                        hits.add((fh, fv))
    assert len(hits) == 1
    return hits.pop()


def test_step_sampler_epochs_and_process_slots():
    one = StepBatchSampler(n=10, batch_size=4, seed=0, start=0, stop=6)
    assert one.steps_per_epoch == 2
    epoch0 = one.global_batch(0) + one.global_batch(1)
    assert len(set(epoch0)) == 8  # no repeats within an epoch
    assert one.global_batch(2) + one.global_batch(3) != epoch0  # epochs reshuffle
    ranks = [list(StepBatchSampler(10, 4, 0, 0, 6, rank=r, world=2)) for r in range(2)]
    for step, (b0, b1) in enumerate(zip(*ranks)):
        assert sorted(b0 + b1) == sorted((i, step, j) for j, i in enumerate(one.global_batch(step)))
    resumed = list(StepBatchSampler(10, 4, 0, start=3, stop=6))
    assert resumed == list(one)[3:]  # a batch is a function of the step alone
    with pytest.raises(DataError, match="does not split over 3"):
        StepBatchSampler(10, 4, 0, 0, 1, rank=0, world=3)
    with pytest.raises(DataError, match="fewer than the batch size"):
        StepBatchSampler(3, 4, 0, 0, 1)


def test_clean_folder_pairs_use_the_core_degradation(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "clean").mkdir()
    for i in range(3):
        img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "clean" / f"c{i}.png")
    cfg = DataConfig(clean_dir="clean", degradation_seed=7, val_fraction=0.0)
    data = load_training_data(cfg, tmp_path)
    low, high = data.train[1].load()
    clean = read_rgb(tmp_path / "clean" / "c1.png")
    expected, _ = degrade(clean, DegradationSpec(), 7, "c1")
    assert np.array_equal(high, clean)
    assert np.array_equal(low, expected)


def test_loader_workers_give_the_same_batches(tmp_path):
    root = make_pairs(tmp_path / "d", n=6, size=(40, 48))
    data = load_training_data(DataConfig(low_dir="low", high_dir="high", val_fraction=0.0), root)
    ds = CropDataset(data.train, crop=16, flips=True, seed=0)
    batches = {}
    for workers in (0, 2):
        sampler = StepBatchSampler(6, batch_size=2, seed=0, start=0, stop=7)
        batches[workers] = list(torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers))
    assert len(batches[2]) == 7
    for (lo_a, hi_a), (lo_b, hi_b) in zip(batches[0], batches[2]):
        assert torch.equal(lo_a, lo_b)
        assert torch.equal(hi_a, hi_b)
