"""The feature cache's mapped entries (POSIX, 256 kB and more): read-only views, CRC-checked, damage is a miss."""

from __future__ import annotations

import numpy as np
import pytest

from cals_bench import cache as cache_mod
from cals_bench.cache import CacheKey, FeatureCache

pytestmark = pytest.mark.skipif(not cache_mod._MAP_FILES, reason="entries are mapped on POSIX only")

KEY = CacheKey.make("lpips-features/alex", "ref-big", {"backbone/alexnet-features": "tensors:1"}, "prep")


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "layer0": rng.random((64, 40, 30), dtype=np.float32),
        "n": np.array(3),
        "u8": np.arange(7, dtype=np.uint8),
    }


def test_big_entry_round_trips_as_read_only_mapping(tmp_path):
    arrays = _arrays()
    assert sum(a.nbytes for a in arrays.values()) >= cache_mod._MAP_MIN_BYTES
    writer = FeatureCache(tmp_path)
    writer.put(KEY, arrays)
    kept = writer.get(KEY)  # the in-memory copy after a write: a mapping of the file
    fresh = FeatureCache(tmp_path)
    got = fresh.get(KEY)
    assert fresh.stats.disk_hits == 1
    for entry in (kept, got):
        for name, a in arrays.items():
            assert np.array_equal(entry[name], a)
            assert entry[name].dtype == a.dtype
            assert entry[name].shape == a.shape
            assert not entry[name].flags.writeable
    with np.load(fresh.path(KEY)) as npz:  # the file is np.savez's format
        assert np.array_equal(npz["layer0"], arrays["layer0"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_big_entry_is_a_miss_and_rewritten(tmp_path, damage):
    cache = FeatureCache(tmp_path, memory_bytes=0)
    cache.put(KEY, _arrays())
    path = cache.path(KEY)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # one bit inside layer0's data: only the CRC-32 can tell
        data[len(data) // 3] ^= 0x01
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert cache.get(KEY) is None
    assert cache.stats.damaged == 1
    cache.put(KEY, _arrays())
    got = cache.get(KEY)
    assert got is not None
    assert np.array_equal(got["layer0"], _arrays()["layer0"])
