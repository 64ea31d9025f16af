"""read_rgb's decoded-pixels cache (cals_bench.data.io.decoded_images): same pixels, keyed by content."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cals_bench.cache import FeatureCache
from cals_bench.data.io import decoded_images, read_rgb


def _png(path, seed: int, shape=(23, 31, 3)) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def test_second_read_comes_from_the_cache_with_the_same_pixels(tmp_path):
    arr = _png(tmp_path / "a.png", 0)
    with decoded_images(FeatureCache(tmp_path / "cache")):
        first = read_rgb(tmp_path / "a.png")
    fresh = FeatureCache(tmp_path / "cache")  # a later process: nothing in memory
    with decoded_images(fresh):
        second = read_rgb(tmp_path / "a.png")
    assert fresh.stats.disk_hits == 1
    assert fresh.stats.misses == 0
    for got in (first, second):
        assert np.array_equal(got, arr)
        assert got.dtype == np.uint8
        assert got.flags.c_contiguous
        assert got.flags.writeable
    second[:] = 0  # the caller's copy is private: the cached pixels do not change
    with decoded_images(fresh):
        assert np.array_equal(read_rgb(tmp_path / "a.png"), arr)


def test_new_bytes_under_the_same_name_are_decoded_again(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    _png(tmp_path / "a.png", 0)
    with decoded_images(cache):
        read_rgb(tmp_path / "a.png")
        changed = _png(tmp_path / "a.png", 1)
        assert np.array_equal(read_rgb(tmp_path / "a.png"), changed)
    assert cache.stats.misses == 2
    assert cache.stats.hits == 0


def test_only_pngs_and_only_inside_the_context(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    arr = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "b.bmp")
    _png(tmp_path / "a.png", 0)
    read_rgb(tmp_path / "a.png")  # no context: no cache
    with decoded_images(cache):
        assert np.array_equal(read_rgb(tmp_path / "b.bmp"), arr)
    assert cache.stats.writes == 0
    assert cache.stats.misses == 0
    with decoded_images(None):  # None: no caching
        read_rgb(tmp_path / "a.png")
    assert not (tmp_path / "cache").exists()
    with decoded_images(cache):  # the context caches the PNG ...
        read_rgb(tmp_path / "a.png")
    assert cache.stats.writes == 1
    read_rgb(tmp_path / "a.png")  # ... and once it has ended, read_rgb neither looks the pixels up nor writes
    assert (cache.stats.writes, cache.stats.misses, cache.stats.hits) == (1, 1, 0)
