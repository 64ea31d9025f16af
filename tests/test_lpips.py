"""LPIPS v0.1 against the published known answers and the lpips package; the derived backbone weights."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from cals_bench import weights
from cals_bench.data.io import read_rgb, to_tensor
from cals_bench.errors import CalsBenchError, WeightsHashMismatch, WeightsUnavailable
from cals_bench.metrics import SampleContext, build_metric
from cals_bench.metrics.lpips import (
    LAYOUTS,
    LearnedPerceptualImagePatchSimilarity,
    learned_perceptual_image_patch_similarity,
)


@pytest.fixture(scope="module")
def examples(shared_dir: Path) -> dict[str, torch.Tensor]:
    d = shared_dir / "data" / "lpips-examples"
    return {name: to_tensor(read_rgb(d / f"{name}.png"))[None] for name in ("ex_ref", "ex_p0", "ex_p1")}


def _ctx(i: int = 0) -> SampleContext:
    return SampleContext(sample_id=f"s{i}", reference_key=f"ref-{i}")


def test_alex_known_answers(examples):
    d0 = learned_perceptual_image_patch_similarity(examples["ex_ref"], examples["ex_p0"]).item()
    d1 = learned_perceptual_image_patch_similarity(examples["ex_ref"], examples["ex_p1"]).item()
    # The LPIPS README publishes 0.722 and 0.137 (3 decimals); 1e-3 covers the rounding (<= 5e-4) with margin.
    assert abs(d0 - 0.722) < 1e-3
    assert abs(d1 - 0.137) < 1e-3
    # The lpips package 0.1.4 (LPIPS(net="alex") with these backbone tensors loaded into its slices, images
    # through its load_image/im2tensor) gives 0.7218806743621826 and 0.13756555318832397. Same float32
    # operations in a different order (head applied after the spatial mean): 1e-5 absolute.
    assert abs(d0 - 0.7218806743621826) < 1e-5
    assert abs(d1 - 0.13756555318832397) < 1e-5


def test_vgg_variant_runs_and_matches_lpips_package(examples):
    metric = build_metric("lpips", net="vgg")
    assert metric.available() == (True, "")
    vals = metric.score_batch(
        torch.cat([examples["ex_p0"], examples["ex_p1"]]),
        torch.cat([examples["ex_ref"], examples["ex_ref"]]),
        [_ctx(0), _ctx(1)],
    )
    d0, d1 = vals[0]["lpips"], vals[1]["lpips"]
    # lpips package 0.1.4, LPIPS(net="vgg"), same backbone tensors: 0.568612813949585 and 0.4216642677783966.
    # Tolerance 1e-5 as for alex (float32 summation order).
    assert abs(d0 - 0.568612813949585) < 1e-5
    assert abs(d1 - 0.4216642677783966) < 1e-5
    assert set(metric.weights_used) == {"backbone/vgg16-features", "lpips/v0.1-vgg"}


def test_metric_equals_functional_symmetric_and_zero_on_identical(examples):
    metric = build_metric("lpips")
    assert metric.options == {"net": "alex"}
    assert metric.columns == {"lpips": False}
    ref, p0 = examples["ex_ref"], examples["ex_p0"]
    v = metric.score_batch(p0, ref, [_ctx()])[0]["lpips"]
    # Same model and inputs, the metric concatenates output and reference in one pass: 1e-6.
    assert abs(v - learned_perceptual_image_patch_similarity(ref, p0).item()) < 1e-6
    assert abs(v - metric.score_batch(ref, p0, [_ctx()])[0]["lpips"]) < 1e-6  # symmetric up to float order
    assert metric.score_batch(ref, ref, [_ctx()])[0]["lpips"] == 0.0  # identical features give exactly 0
    assert metric.last_reasons == [None]


def test_unknown_net_and_shape_mismatch_are_errors(examples):
    with pytest.raises(CalsBenchError, match="net must be one of"):
        LearnedPerceptualImagePatchSimilarity(net="squeeze")
    with pytest.raises(CalsBenchError):
        build_metric("lpips", size=3)
    metric = build_metric("lpips")
    with pytest.raises(CalsBenchError, match="differ"):
        metric.score_batch(examples["ex_ref"], examples["ex_ref"][..., :32], [_ctx()])


def test_missing_weights_make_it_unavailable_never_a_number(monkeypatch, tmp_path, examples):
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "empty"))
    metric = build_metric("lpips")
    ok, reason = metric.available()
    assert not ok
    assert "cals-bench weights fetch" in reason
    assert "backbone/alexnet-features" in reason
    with pytest.raises(WeightsUnavailable):
        metric.score_batch(examples["ex_p0"], examples["ex_ref"], [_ctx()])


def test_backbone_layouts_follow_torchvision_indices(shared_weights):
    for net, fname in (("alex", "alexnet-features-imagenet.pth"), ("vgg", "vgg16-features-imagenet.pth")):
        state = torch.load(shared_weights / "lpips" / fname, map_location="cpu", weights_only=True)
        conv_idx = sorted({int(k.split(".")[1]) for k in state})
        layout = LAYOUTS[net]
        assert conv_idx == [i for i, op in enumerate(layout.ops) if op[0] == "conv"]
        assert all(layout.ops[t] == ("relu",) for t in layout.taps)


# --- derived backbone weights: verified by tensor content, since torch.save is not byte-deterministic ----


def _fake_torchvision_checkpoint(path_dir: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-style classification checkpoint (features.* + classifier.*) named like torchvision's
    hub files, ``<arch>-<first 8 hex of its sha256>.pth``."""
    g = torch.Generator().manual_seed(0)
    state = {
        "features.0.weight": torch.randn(8, 3, 3, 3, generator=g),
        "features.0.bias": torch.randn(8, generator=g),
        "features.3.weight": torch.randn(4, 8, 3, 3, generator=g),
        "features.3.bias": torch.randn(4, generator=g),
        "classifier.1.weight": torch.randn(10, 16, generator=g),
        "classifier.1.bias": torch.randn(10, generator=g),
    }
    path_dir.mkdir(parents=True, exist_ok=True)
    tmp = path_dir / "fakenet.tmp"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = path_dir / f"fakenet-{digest[:8]}.pth"
    tmp.rename(final)
    return final, {k: v for k, v in state.items() if k.startswith("features.")}


def _content_hash(state: dict[str, torch.Tensor], tmp: Path) -> str:
    p = tmp / "content-probe.pth"
    torch.save(state, p)
    return weights.tensor_content_sha256(p)


@pytest.fixture
def use_spec():
    """Registers throw-away weight specs for one test (replacing one of the same name) and removes them after."""
    names: list[str] = []

    def use(spec: weights.WeightSpec) -> weights.WeightSpec:
        weights.REGISTRY.unregister(spec.name)
        names.append(spec.name)
        return weights.register(spec)

    yield use
    for name in names:
        weights.REGISTRY.unregister(name)


def _fake_spec(
    monkeypatch, tmp_path: Path, use_spec
) -> tuple[weights.WeightSpec, Path, dict[str, torch.Tensor]]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a fresh cache and hub per test
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = weights.torch_hub_dir()
    ckpt, features = _fake_torchvision_checkpoint(hub)
    # The "stored" file of the spec: the features saved under another name, as the shared copy would be.
    stored = tmp_path / "stored" / "fake-features.pth"
    stored.parent.mkdir(parents=True)
    torch.save(features, stored)
    spec = weights.WeightSpec(
        name="test/fake-features",
        relpath="test/fake-features.pth",
        sha256=weights.sha256_file(stored),
        size=stored.stat().st_size,
        licence="test",
        origin="built in tmp",
        url="http://invalid.example/fakenet.pth",
        hub_filename=ckpt.name,
        source_sha256_prefix=ckpt.stem.split("-")[-1],
        convert="torchvision-features",
        content_sha256=_content_hash(features, tmp_path),
    )
    use_spec(spec)
    return spec, ckpt, features


def test_converted_torchvision_checkpoint_is_verified_by_content(monkeypatch, tmp_path, use_spec):
    spec, _ckpt, features = _fake_spec(monkeypatch, tmp_path, use_spec)
    resolved = weights.resolve(spec.name)
    assert resolved.where == "torch-hub"
    assert resolved.path == weights.cache_dir() / spec.relpath
    # the converted copy's bytes differ from the stored file's (different archive name inside the zip) ...
    assert resolved.sha256 != spec.sha256
    # ... yet it holds exactly the features, and resolving it again (now from the cache) re-verifies it
    loaded, again = weights.load_torch(spec.name)
    assert set(loaded) == set(features)
    assert all(torch.equal(loaded[k], features[k]) for k in features)
    assert again.where == "cache"
    assert again.identity == f"tensors:{spec.content_sha256}"
    assert again.record()["content_sha256"] == spec.content_sha256


def test_tampered_converted_copy_is_refused(monkeypatch, tmp_path, use_spec):
    spec, _, features = _fake_spec(monkeypatch, tmp_path, use_spec)
    path = weights.resolve(spec.name).path
    tampered = dict(features)
    tampered["features.0.bias"] = features["features.0.bias"].clone()
    tampered["features.0.bias"][0] += 1e-3
    torch.save(tampered, path)
    with pytest.raises(WeightsHashMismatch, match="tensor content sha256"):
        weights.resolve(spec.name)


def test_upstream_with_wrong_hash_prefix_is_refused(monkeypatch, tmp_path, use_spec):
    spec, _ckpt, _ = _fake_spec(monkeypatch, tmp_path, use_spec)
    use_spec(dataclasses.replace(spec, source_sha256_prefix="00000000"))
    with pytest.raises(WeightsHashMismatch, match="upstream file"):
        weights.resolve(spec.name)
    assert not (weights.cache_dir() / spec.relpath).exists()


def test_shared_backbone_resaved_is_accepted_by_content_and_tampering_refused(shared_weights, tmp_path):
    src = shared_weights / "lpips" / "alexnet-features-imagenet.pth"
    state = torch.load(src, map_location="cpu", weights_only=True)
    resaved = tmp_path / "resaved.pth"
    torch.save(state, resaved)
    assert weights.sha256_file(resaved) != weights.sha256_file(src)
    assert weights.resolve("backbone/alexnet-features", path=resaved).identity.startswith("tensors:699078bd")
    state["features.10.bias"].view(torch.int32)[3] += 1  # one float32 ulp in one tensor
    tampered = tmp_path / "tampered.pth"
    torch.save(state, tampered)
    with pytest.raises(WeightsHashMismatch, match="tensor content"):
        weights.resolve("backbone/alexnet-features", path=tampered)


def test_tampered_head_file_is_refused(shared_weights, tmp_path):
    data = bytearray((shared_weights / "lpips" / "lpips-v0.1-alex.pth").read_bytes())
    data[-100] ^= 0x01
    bad = tmp_path / "alex.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsHashMismatch, match="fails its checksum"):
        weights.resolve("lpips/v0.1-alex", path=bad)


def test_verify_rehashes_every_present_file(shared_weights):
    """What `cals-bench weights verify` does: resolve each spec found locally, re-hashing it."""
    present = [s for s in weights.specs().values() if weights.find_local(s)]
    expected = {"lpips/v0.1-alex", "backbone/alexnet-features", "face/yunet", "face/sface"}
    assert expected <= {s.name for s in present}
    for spec in present:
        assert weights.resolve(spec.name, download=False).sha256 == spec.sha256
