"""Throughput rules: one backbone pass per image per run, no features that no audit reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cals_bench import protocol as protocol_mod
from cals_bench.data.io import read_rgb, to_tensor
from cals_bench.engine import evaluate
from cals_bench.metrics.lpips import LpipsBackbone, LpipsModel
from cals_bench.store import Store, output_name

DEMO = Path(protocol_mod.__file__).resolve().parents[1] / "protocols" / "demo.yaml"


def _demo_variant(tmp_path: Path, **changes) -> protocol_mod.Protocol:
    """The demo protocol with PSNR + LPIPS only (no face metric), and ``changes`` to its audit."""
    spec = yaml.safe_load(DEMO.read_text())
    spec["name"] = "demo-throughput"
    spec["metrics"] = ["psnr", "lpips"]
    spec.pop("face_samples", None)
    spec["metric_options"] = {"lpips": {"net": "alex"}}
    spec["audit"] = {**spec["audit"], "bootstrap": 50, **changes}
    path = tmp_path / "demo-throughput.yaml"
    path.write_text(yaml.safe_dump(spec))
    return protocol_mod.load_file(path)


@pytest.fixture
def count_backbone(monkeypatch):
    """Counts the images that go through every LPIPS backbone instance (the real forward pass runs)."""
    seen = {"images": 0}
    real = LpipsBackbone.forward

    def counted(self, x):
        seen["images"] += int(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(LpipsBackbone, "forward", counted)
    return seen


def test_lpips_and_gpi_features_share_one_backbone_pass(tmp_path, shared_weights, count_backbone):
    proto = _demo_variant(tmp_path)
    store = Store(tmp_path / "results")
    result = evaluate(proto, "identity", {}, store=store, progress=False)
    n = result.meta["n_samples"]
    assert n == 8
    # cold reference cache: each output and each reference once (before: the outputs twice more, as the
    # alexnet-pooled extractor ran the backbone again on what LPIPS had just computed)
    assert count_backbone["images"] == 2 * n

    # the stored GPI features equal an independent pass of a fresh model over the saved outputs and the
    # references: 1e-6 absolute (features in [0, 1]; batch composition may change float32 summation order)
    ids, ref, out = store.features(result.run_id, "alexnet-pooled")
    assert len(ids) == n
    assert np.asarray(ref).shape == (n, 1152)
    model = LpipsModel.from_registry("alex")
    # the identity model's 8-bit outputs, as scored and saved
    outputs = torch.stack(
        [to_tensor(read_rgb(result.run_dir / "outputs" / f"{output_name(sid)}.png")) for sid in ids]
    )
    with torch.inference_mode():
        direct = torch.cat([f.mean(dim=(2, 3)) for f in model.normalized_features(outputs)], 1).numpy()
    assert np.abs(np.asarray(out) - direct).max() < 1e-6

    # a later model (same references, warm cache): one pass per pair, the outputs'
    count_backbone["images"] = 0
    again = evaluate(proto, "identity", {}, store=store, progress=False, force=True)
    assert count_backbone["images"] == n
    _, ref2, out2 = store.features(again.run_id, "alexnet-pooled")
    assert np.array_equal(np.asarray(ref2), np.asarray(ref))
    assert np.abs(np.asarray(out2) - direct).max() < 1e-6


def test_no_groups_no_gpi_features(tmp_path, shared_weights, count_backbone):
    proto = _demo_variant(tmp_path, group_by=[])
    assert proto.audit.gpi_features == ["alexnet-pooled"]
    store = Store(tmp_path / "results")
    result = evaluate(proto, "identity", {}, store=store, progress=False)
    assert result.meta["features"] == []
    assert count_backbone["images"] == 2 * result.meta["n_samples"]
    assert store.feature_names(result.run_id) == []


def test_id_sim_and_identity_features_embed_each_crop_once(tmp_path, shared_weights, monkeypatch):
    from cals_bench.face.recognize import FaceRecognizer
    from cals_bench.features import build_extractor
    from cals_bench.metrics import SampleContext

    crops = {"n": 0}
    real = FaceRecognizer.embed

    def counted(self, faces):
        crops["n"] += len(faces)
        return real(self, faces)

    monkeypatch.setattr(FaceRecognizer, "embed", counted)
    proto = _demo_variant(tmp_path, gpi_features=["identity-sface"])
    spec = yaml.safe_load((tmp_path / "demo-throughput.yaml").read_text())
    spec["metrics"] = ["id_sim"]
    spec["metric_options"] = {"id_sim": {"backend": "sface"}}
    spec["face_samples"] = {"context": ["face"]}
    (tmp_path / "demo-throughput.yaml").write_text(yaml.safe_dump(spec))
    proto = protocol_mod.load_file(tmp_path / "demo-throughput.yaml")
    store = Store(tmp_path / "results")
    result = evaluate(proto, "gamma", {"gamma": 2.0}, store=store, progress=False)  # output != input
    ids, ref, out = store.features(result.run_id, "identity-sface")
    n_faces = len(ids)
    assert n_faces == 1  # the demo's one face sample (astronaut)
    # reference, output and input crop, once each (before: the extractor embedded the output again)
    assert crops["n"] == 3 * n_faces

    # the shared embedding equals an extractor of its own on the saved output (1e-6: batch composition)
    ext = build_extractor("identity-sface")
    assert ext.available()[0]
    sid = ids[0]
    high = next(s for s in proto_samples(proto) if s.sample_id == sid)
    ctx = [SampleContext(sid, "own-reference-key", None, {})]
    own_ref = ext.extract(to_tensor(high.load()[1])[None], ctx, role="reference")
    own_out = ext.extract(
        to_tensor(read_rgb(result.run_dir / "outputs" / f"{output_name(sid)}.png"))[None], ctx
    )
    assert np.abs(own_ref - np.asarray(ref)).max() < 1e-6
    assert np.abs(own_out - np.asarray(out)).max() < 1e-6


def proto_samples(proto):
    from cals_bench.data.datasets import load_samples

    return load_samples(proto, None)[1]


# The SSIM map is summed in row blocks of one channel plane (fidelity._ssim_maps): several rows per block
# at 600 wide; one row per block when a row alone reaches the single-thread grain.
@pytest.mark.parametrize("shape", [(200, 600), (23, 16400)])
def test_cpu_ssim_paths_equal_scikit_image(shape):
    from skimage.metrics import structural_similarity as sk_ssim

    from cals_bench.metrics.fidelity import _TORCH_GRAIN, structural_similarity

    valid_h, valid_w = shape[0] - 10, shape[1] - 10  # the 11-tap window's valid part
    rows = max(1, min(valid_h, _TORCH_GRAIN // valid_w))
    assert -(-valid_h // rows) > 1  # several blocks, so the blockwise sum is exercised
    assert (rows == 1) == (shape[1] == 16400)
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    ours = float(structural_similarity(to_tensor(a)[None], to_tensor(b)[None])[0])
    ref = sk_ssim(
        a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert abs(ours - ref) < 1e-12  # the tolerance of tests/test_fidelity.py (float64 throughout)
