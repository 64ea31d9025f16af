"""The reference-feature cache: keys, atomic files, concurrency, and one backbone pass per pair when warm."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cals_bench.cache import CacheKey, FeatureCache
from cals_bench.data.io import read_rgb, to_tensor
from cals_bench.features import build_extractor
from cals_bench.metrics import SampleContext, build_metric

KEY = CacheKey.make("lpips-features/alex", "ref-abc", {"backbone/alexnet-features": "tensors:1"}, "prep-v1")


def test_every_key_component_changes_the_entry():
    variants = [
        CacheKey.make("lpips-features/vgg", "ref-abc", {"backbone/alexnet-features": "tensors:1"}, "prep-v1"),
        CacheKey.make(
            "lpips-features/alex", "ref-abd", {"backbone/alexnet-features": "tensors:1"}, "prep-v1"
        ),
        CacheKey.make(
            "lpips-features/alex", "ref-abc", {"backbone/alexnet-features": "tensors:2"}, "prep-v1"
        ),
        CacheKey.make("lpips-features/alex", "ref-abc", {"backbone/vgg16-features": "tensors:1"}, "prep-v1"),
        CacheKey.make(
            "lpips-features/alex", "ref-abc", {"backbone/alexnet-features": "tensors:1"}, "prep-v2"
        ),
    ]
    digests = {KEY.digest, *(v.digest for v in variants)}
    assert len(digests) == 1 + len(variants)
    # weight order does not matter
    a = CacheKey.make("k", "r", {"x": "1", "y": "2"}, "p")
    b = CacheKey.make("k", "r", {"y": "2", "x": "1"}, "p")
    assert a.digest == b.digest


def test_roundtrip_across_instances_and_read_only(tmp_path):
    arrays = {"layer0": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.array(3)}
    FeatureCache(tmp_path).put(KEY, arrays)
    fresh = FeatureCache(tmp_path)  # a new process would start like this: nothing in memory
    got = fresh.get(KEY)
    assert got is not None
    assert fresh.stats.disk_hits == 1
    assert np.array_equal(got["layer0"], arrays["layer0"])
    assert int(got["n"]) == 3
    assert not got["layer0"].flags.writeable
    assert fresh.get(KEY) is got
    assert fresh.stats.memory_hits == 1
    other = CacheKey.make(KEY.kind, KEY.reference_key, dict(KEY.weights), "prep-v2")
    assert fresh.get(other) is None
    assert fresh.stats.misses == 1
    # nothing but the entry itself is left on disk (no temporary files)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{KEY.digest}.npz"]


def test_memory_lru_is_bounded_in_bytes(tmp_path):
    cache = FeatureCache(tmp_path, memory_bytes=3 * 4000)
    keys = [CacheKey.make("k", f"r{i}", {}, "p") for i in range(5)]
    for k in keys:
        cache.put(k, {"a": np.zeros(1000, dtype=np.float32)})  # 4000 bytes each
    assert cache._lru.nbytes <= 3 * 4000
    assert len(cache._lru.items) == 3
    assert cache.get(keys[0]) is not None
    assert cache.stats.disk_hits == 1
    assert cache.get(keys[4]) is not None
    assert cache.stats.memory_hits == 1


def test_damaged_or_foreign_files_are_misses_and_get_rewritten(tmp_path):
    cache = FeatureCache(tmp_path, memory_bytes=0)
    cache.put(KEY, {"a": np.ones(4)})
    path = cache.path(KEY)
    path.write_bytes(path.read_bytes()[:50])  # truncated
    assert cache.get(KEY) is None
    assert cache.stats.damaged == 1
    cache.put(KEY, {"a": np.ones(4)})
    assert cache.get(KEY) is not None
    # a valid file stored under another key's name is refused (the full key is checked, not just the name)
    other = CacheKey.make("k", "other", {}, "p")
    cache.put(other, {"a": np.zeros(4)})
    os.replace(cache.path(other), path)
    assert cache.get(KEY) is None


def _hammer(root: str, seed: int, n: int) -> int:
    """Write and read the same few keys many times; return how many reads saw a wrong or partial entry."""
    cache = FeatureCache(root, memory_bytes=0)
    rng = np.random.default_rng(seed)
    bad = 0
    for _ in range(n):
        i = int(rng.integers(0, 3))
        key = CacheKey.make("k", f"r{i}", {}, "p")
        expected = np.full(50_000, i, dtype=np.float32)  # 200 kB: big enough for writes to interleave
        if rng.random() < 0.5:
            cache.put(key, {"a": expected})
        else:
            got = cache.get(key)
            if got is not None and not np.array_equal(got["a"], expected):
                bad += 1
        bad += cache.stats.damaged
        cache.stats.damaged = 0
    return bad


def test_concurrent_writers_and_readers_never_see_partial_entries(tmp_path):
    # fork (where available) avoids re-importing torch in each worker; the workers only use numpy
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(3) as pool:
        bad = pool.starmap(_hammer, [(str(tmp_path), s, 60) for s in range(3)])
    assert bad == [0, 0, 0]
    assert not list(tmp_path.rglob("*.tmp"))


# --- learned metrics on a warm cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lol_pairs(lol_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    names = sorted(p.name for p in (lol_root / "eval15" / "high").iterdir())[:2]
    # a 200x300 crop keeps this file fast; the cache logic does not depend on the size
    high = torch.stack([to_tensor(read_rgb(lol_root / "eval15" / "high" / n))[:, :200, :300] for n in names])
    low = torch.stack([to_tensor(read_rgb(lol_root / "eval15" / "low" / n))[:, :200, :300] for n in names])
    out = (low * 4).clamp(0, 1).mul(255).round().div(255)  # a crude "enhancement", on the 8-bit grid
    return out, high


def _ctxs(n: int, tag: str = "") -> list[SampleContext]:
    return [SampleContext(sample_id=f"s{i}", reference_key=f"lol-{i}{tag}") for i in range(n)]


def test_lpips_second_scoring_runs_the_backbone_on_outputs_only(tmp_path, lol_pairs):
    out, high = lol_pairs
    b = out.shape[0]
    cold = build_metric("lpips")
    cold.attach_cache(FeatureCache(tmp_path))
    v_cold = cold.score_batch(out, high, _ctxs(b))
    assert cold.model.backbone.images_seen == 2 * b  # outputs and references, once each
    # a second model scored on the same references, in a fresh process (nothing in memory)
    warm = build_metric("lpips")
    warm.attach_cache(FeatureCache(tmp_path))
    v_warm = warm.score_batch(out, high, _ctxs(b))
    assert warm.model.backbone.images_seen == b  # one backbone pass per scored pair
    assert warm.cache.stats.disk_hits == b
    # cached float32 features are the same numbers: equal to 1e-6 (only float summation order may differ)
    for c, w in zip(v_cold, v_warm):
        assert abs(c["lpips"] - w["lpips"]) < 1e-6
    # and the same instance scoring again hits memory, not disk
    warm.score_batch(out, high, _ctxs(b))
    assert warm.model.backbone.images_seen == 2 * b
    assert warm.cache.stats.memory_hits == b


def test_lpips_cache_invalidated_by_reference_key_net_and_weights(tmp_path, lol_pairs):
    out, high = lol_pairs
    cache = FeatureCache(tmp_path)
    m = build_metric("lpips")
    m.attach_cache(cache)
    m.score_batch(out[:1], high[:1], _ctxs(1))
    m.score_batch(out[:1], high[:1], _ctxs(1, tag="-other-preprocessing"))
    assert m.model.backbone.images_seen == 4  # a new reference_key is a new entry
    m.model.weights_identity["backbone/alexnet-features"] = "tensors:changed"
    m.score_batch(out[:1], high[:1], _ctxs(1))
    assert m.model.backbone.images_seen == 6  # other backbone weights: not reused
    vgg = build_metric("lpips", net="vgg")
    vgg.attach_cache(cache)
    vgg.score_batch(out[:1, :, :64, :64], high[:1, :, :64, :64], _ctxs(1, tag="-crop"))
    assert vgg.model.backbone.images_seen == 2
    kinds = sorted(p.name for p in tmp_path.iterdir())
    assert kinds == ["lpips-features_alex", "lpips-features_vgg"]


def test_lpips_cache_entry_of_wrong_size_is_not_trusted(tmp_path, lol_pairs):
    out, high = lol_pairs
    m = build_metric("lpips")
    m.attach_cache(FeatureCache(tmp_path))
    m.score_batch(out[:1], high[:1], _ctxs(1))
    small_out, small_high = out[:1, :, :96, :96], high[:1, :, :96, :96]
    with pytest.warns(UserWarning, match="wrong shape"):
        v = m.score_batch(small_out, small_high, _ctxs(1))[0]["lpips"]
    fresh = build_metric("lpips").score_batch(small_out, small_high, _ctxs(1))[0]["lpips"]
    assert abs(v - fresh) < 1e-6  # recomputed from the image given, not read from the stale entry


def test_alexnet_pooled_reuses_lpips_reference_maps(tmp_path, lol_pairs):
    out, high = lol_pairs
    b = out.shape[0]
    cache = FeatureCache(tmp_path)
    lp = build_metric("lpips")
    lp.attach_cache(cache)
    lp.score_batch(out, high, _ctxs(b))
    ext = build_extractor("alexnet-pooled")
    ext.attach_cache(cache)
    assert ext.available() == (True, "")
    assert ext.dim == 1152
    ref = ext.extract(high, _ctxs(b), role="reference")
    assert ext._metric().model.backbone.images_seen == 0  # pooled from the cached LPIPS maps
    direct = build_extractor("alexnet-pooled").extract(high, _ctxs(b), role="output")
    # same maps averaged by numpy vs torch: 1e-6 absolute on values in [0, 1]
    assert ref.shape == (b, 1152)
    assert np.abs(ref - direct).max() < 1e-6
    assert ext.metadata()["weights"] == {
        "backbone/alexnet-features": lp.weights_used["backbone/alexnet-features"]
    }
