"""Shared fixtures. Tests that need ../shared (real data and official weights) skip clearly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CALS_BENCH_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder with real data and weights is absent)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def lol_root() -> Path:
    """The LOL-v1 test split root (holds eval15/low and eval15/high)."""
    return _need(SHARED / "data" / "lol-v1")


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    return _need(SHARED / "weights")


@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory):
    """The same isolation for session- and module-scoped fixtures (which run before per-test fixtures)."""
    saved = dict(os.environ)
    if (SHARED / "weights").exists():
        os.environ["CALS_BENCH_WEIGHTS"] = str(SHARED / "weights")
    os.environ["CALS_BENCH_OFFLINE"] = "1"
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ["TORCH_HOME"] = str(cache / "torch")
    os.environ.pop("CALS_BENCH_RESULTS", None)
    os.environ.pop("CALS_BENCH_DATA", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """Every test: weights from ../shared, no downloads, a private cache and results folder."""
    if (SHARED / "weights").exists():
        monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(SHARED / "weights"))
    monkeypatch.setenv("CALS_BENCH_OFFLINE", "1")
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))


@pytest.fixture(scope="module")
def flush_denormals():
    """A module's tests run models as the engine does on the CPU, subnormals flushed (Zero-DCE's and IAT's
    official weights hold subnormals that cost 30-50x the CPU time otherwise, for byte-identical 8-bit
    outputs; see ``engine.flush_denormals``)."""
    import torch

    from cals_bench.engine import flush_denormals as flushing

    with flushing(torch.device("cpu")):
        yield


@pytest.fixture(autouse=True)
def _baselines_as_the_engine_runs_them(request):
    """Baseline tests call ``enhance`` directly: give every one of them the engine's CPU conditions."""
    if request.module.__name__.startswith("test_baselines"):
        request.getfixturevalue("flush_denormals")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module's tests: on two shared, busy cores a second thread only adds
    contention, and runs compared for bit-identity need the same thread count (CPU convolution kernels
    sum in a thread-dependent order)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
