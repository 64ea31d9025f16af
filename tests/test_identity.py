"""Identity similarity: template and alignment, detection, SFace/insightface backends, CelebA-HQ margins."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cals_bench.cache import FeatureCache
from cals_bench.data.io import read_rgb, to_tensor
from cals_bench.errors import CalsBenchError, WeightsUnavailable
from cals_bench.face import (
    ARCFACE_TEMPLATE_112,
    InsightFaceRecognizer,
    alignment_matrix,
    similarity_transform,
    transform_points,
    warp_face,
)
from cals_bench.face.pipeline import NO_FACE_REASON, FacePipeline, to_uint8_hwc
from cals_bench.features import build_extractor
from cals_bench.metrics import SampleContext, build_metric

SIZE = 256  # the CALS protocols score faces at 256x256
# Two identities appear twice among the 56 faces (CelebA holds several photos per celebrity; checked by eye):
SAME_IDENTITY = {frozenset({"063109.jpg", "113393.jpg"}), frozenset({"020167.jpg", "060259.jpg"})}


def _q(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().div(255)


@pytest.fixture(scope="module")
def celeb(shared_dir: Path) -> tuple[list[str], torch.Tensor]:
    files = sorted((shared_dir / "data" / "celebahq-mini" / "images").glob("*.jpg"))
    assert len(files) == 56
    imgs = []
    for f in files:
        with Image.open(f) as im:
            im.draft("RGB", (SIZE, SIZE))  # JPEG DCT-domain downscale 1024 -> 256: fast decoding
            imgs.append(to_tensor(np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BOX))))
    return [f.name for f in files], torch.stack(imgs)


def _ctxs(n: int, low: torch.Tensor | None = None, tag: str = "") -> list[SampleContext]:
    return [SampleContext(f"s{i}", f"celeb-{i}{tag}", low=None if low is None else low[i]) for i in range(n)]


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(-4, 5, dtype=torch.float32)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, 9).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="reflect"), k, groups=3)
    return F.conv2d(F.pad(x, (0, 0, 4, 4), mode="reflect"), k.transpose(2, 3), groups=3)


# --- template and alignment ----------------------------------------------------------------------------


def test_template_is_the_standard_arcface_one():
    expected = [
        (38.2946, 51.6963),
        (73.5318, 51.5014),
        (56.0252, 71.7366),
        (41.5493, 92.3655),
        (70.7299, 92.2041),
    ]
    assert ARCFACE_TEMPLATE_112.tolist() == [list(p) for p in expected]


def test_similarity_transform_recovers_a_known_similarity():
    theta, s, t = 0.3, 2.7, np.array([140.0, 95.0])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    landmarks = ARCFACE_TEMPLATE_112 @ (s * rot).T + t  # the template placed in a big image
    m = alignment_matrix(landmarks)
    # exact data: the least-squares fit is exact up to float64 rounding (1e-9 px)
    assert np.abs(transform_points(landmarks, m) - ARCFACE_TEMPLATE_112).max() < 1e-9
    assert np.isclose(np.hypot(m[0, 0], m[1, 0]), 1 / s)  # uniform scale, no shear
    # a mirrored face is not "aligned" by a reflection: the fit stays a proper rotation (det > 0)
    mirrored = landmarks * np.array([-1.0, 1.0])
    assert np.linalg.det(similarity_transform(mirrored, ARCFACE_TEMPLATE_112)[:, :2]) > 0


def test_alignment_matches_opencv_aligncrop(celeb, shared_weights):
    """OpenCV's FaceRecognizerSF::alignCrop implements the same template and Umeyama fit independently."""
    _names, imgs = celeb
    rgb = to_uint8_hwc(imgs[0])
    pipe = FacePipeline("sface").load()
    search = pipe.detector.detect(rgb)
    face = search.chosen
    assert search.n_faces == 1
    assert face.score > 0.9
    row = np.concatenate([face.box, face.landmarks.reshape(-1), [face.score]]).astype(np.float32)[None]
    rec = cv2.FaceRecognizerSF.create(
        str(shared_weights / "face" / "face_recognition_sface_2021dec_int8bq.onnx"), ""
    )
    theirs = rec.alignCrop(np.ascontiguousarray(rgb[:, :, ::-1]), row)[:, :, ::-1].astype(int)
    ours = warp_face(rgb, alignment_matrix(face.landmarks)).astype(int)
    # OpenCV fits in float32 with a template mean rounded to 4 decimals; bilinear sampling then differs by
    # at most a grey level or two at a few edge pixels.
    assert np.abs(theirs - ours).max() <= 3
    assert np.abs(theirs - ours).mean() < 0.1


# --- the metric on CelebA-HQ ----------------------------------------------------------------------------


def test_same_person_degraded_scores_high_and_different_people_lower(celeb, tmp_path):
    names, imgs = celeb
    n = len(names)
    metric = build_metric("id_sim")
    metric.attach_cache(FeatureCache(tmp_path))
    g = torch.Generator().manual_seed(0)
    # each face gets one mild degradation, in turn: gamma 1.5, Gaussian noise sigma 0.03, Gaussian blur 1.5
    kinds = np.arange(n) % 3
    degraded = torch.where(
        torch.from_numpy(kinds == 0).view(n, 1, 1, 1),
        imgs**1.5,
        torch.where(
            torch.from_numpy(kinds == 1).view(n, 1, 1, 1),
            imgs + 0.03 * torch.randn(imgs.shape, generator=g),
            _gauss_blur(imgs, 1.5),
        ),
    )
    same = np.array([r["id_sim"] for r in metric.score_batch(_q(degraded), imgs, _ctxs(n))])
    assert metric.last_reasons == [None] * n or all("id_sim_input" in r for r in metric.last_reasons)
    rows = metric.score_batch(imgs.roll(1, 0), imgs, _ctxs(n))  # face i-1 scored against reference i
    diff = np.array(
        [r["id_sim"] for i, r in enumerate(rows) if {names[i], names[i - 1]} not in SAME_IDENTITY]
    )
    # Measured here (SFace, 256x256, seed 0): same person min 0.95, different people max 0.36 / median 0.13
    # (benchmarks/identity_speed.py measures all 56x55 pairs and three degradations per face). The
    # thresholds leave room for OpenCV/onnxruntime and platform differences.
    assert same.min() > 0.9, same.min()
    assert diff.max() < 0.7
    assert np.median(diff) < 0.3
    assert same.min() - diff.max() > 0.3


def test_no_face_gives_nan_with_reason_and_input_rules(celeb, lol_root):
    _names, imgs = celeb
    scene = _q(to_tensor(read_rgb(lol_root / "eval15" / "high" / "1.png"))[:, :SIZE, :SIZE])
    refs = torch.stack([imgs[0], scene, imgs[1], imgs[2]])
    lows = [_q(refs[0] * 0.2), _q(refs[1] * 0.2), None, _q(refs[3, :, :128, :128] * 0.2)]
    ctxs = [SampleContext(f"s{i}", f"r{i}", low=lows[i]) for i in range(4)]
    metric = build_metric("id_sim")
    rows = metric.score_batch(refs, refs, ctxs)
    assert 0.999 < rows[0]["id_sim"] <= 1.0
    assert 0.0 < rows[0]["id_sim_input"] < 1.0
    assert np.isnan(rows[1]["id_sim"])
    assert np.isnan(rows[1]["id_sim_input"])
    assert metric.last_reasons[1] == NO_FACE_REASON
    assert rows[2]["id_sim"] > 0.999
    assert np.isnan(rows[2]["id_sim_input"])
    assert "no model input" in metric.last_reasons[2]
    assert np.isnan(rows[3]["id_sim_input"])
    assert "differ in size" in metric.last_reasons[3]
    assert metric.last_reasons[0] is None


def test_several_faces_use_the_largest(celeb):
    _names, imgs = celeb
    small = F.interpolate(imgs[1:2], size=(128, 128), mode="area")[0]
    canvas = torch.zeros(3, SIZE, SIZE + 128)
    canvas[:, :, :SIZE] = imgs[0]
    canvas[:, 64:192, SIZE:] = small
    canvas = _q(canvas)
    search = FacePipeline("sface").load().detector.detect(to_uint8_hwc(canvas))
    assert search.n_faces == 2
    assert search.chosen.box[0] < SIZE // 2
    assert search.faces[1].box[0] >= SIZE - 8
    metric = build_metric("id_sim")
    # output: the composite with the small face removed; the chosen (big) face is untouched: id_sim ~ 1
    out = canvas.clone()
    out[:, :, SIZE:] = 0
    row = metric.score_batch(out[None], canvas[None], _ctxs(1))[0]
    assert metric.last_face_counts == [2]
    assert row["id_sim"] > 0.99


def test_backend_is_recorded_and_engines_agree(celeb):
    _names, imgs = celeb
    x, ref = _q(imgs[:4] ** 1.3), imgs[:4]
    low = _q(imgs[:4] * 0.3)
    a = build_metric("id_sim")
    b = build_metric("id_sim", backend="sface", engine="onnxruntime")
    assert a.options["backend"] == "sface"
    assert a.options["engine"] == "cv2"
    assert b.metadata()["backend"] == "sface"
    assert b.metadata()["options"]["engine"] == "onnxruntime"
    ra, rb = a.score_batch(x, ref, _ctxs(4, low)), b.score_batch(x, ref, _ctxs(4, low))
    assert set(a.metadata()["weights"]) == {"face/yunet", "face/sface"}
    for u, v in zip(ra, rb):
        # cv2.dnn and onnxruntime run the same int8-dequantised graph: embeddings agree to ~3e-6
        assert abs(u["id_sim"] - v["id_sim"]) < 1e-4
        assert abs(u["id_sim_input"] - v["id_sim_input"]) < 1e-4
    with pytest.raises(CalsBenchError):
        build_metric("id_sim", backend="facenet")
    with pytest.raises(CalsBenchError):
        build_metric("id_sim", engine="onnxruntime", pack="buffalo_l")  # pack is not an sface option


def test_warm_cache_skips_reference_detection_and_embedding(celeb, tmp_path):
    _names, imgs = celeb
    out, ref, low = _q(imgs[:6] ** 1.2), imgs[:6], _q(imgs[:6] * 0.25)
    cold = build_metric("id_sim")
    cold.attach_cache(FeatureCache(tmp_path))
    v_cold = cold.score_batch(out, ref, _ctxs(6, low))
    assert cold.pipeline.detector.calls == 6
    assert cold.pipeline.recognizer.faces_embedded == 18
    warm = build_metric("id_sim")  # another model scored later, in a fresh process
    warm.attach_cache(FeatureCache(tmp_path))
    v_warm = warm.score_batch(out, ref, _ctxs(6, low))
    assert warm.pipeline.detector.calls == 0  # detections and transforms came from the cache
    assert warm.pipeline.recognizer.faces_embedded == 6  # only the outputs; references and inputs cached
    for c, w in zip(v_cold, v_warm):
        assert abs(c["id_sim"] - w["id_sim"]) < 1e-6
        assert abs(c["id_sim_input"] - w["id_sim_input"]) < 1e-6


def test_identity_features_align_outputs_on_their_reference(celeb, tmp_path):
    _names, imgs = celeb
    out, ref = _q(imgs[:3] ** 1.4), imgs[:3]
    ext = build_extractor("identity-sface")
    ext.attach_cache(FeatureCache(tmp_path))
    assert ext.available() == (True, "")
    assert ext.face
    assert ext.dim == 128
    f_ref = ext.extract(ref, _ctxs(3), role="reference")
    f_out = ext.extract(out, _ctxs(3), role="output")
    sims = build_metric("id_sim").score_batch(out, ref, _ctxs(3))
    for i in range(3):
        assert abs(float(f_ref[i] @ f_out[i]) - sims[i]["id_sim"]) < 1e-5  # same alignment, same embeddings
        assert abs(np.linalg.norm(f_ref[i]) - 1) < 1e-5
    with pytest.raises(CalsBenchError):
        ext.extract(out, _ctxs(3), role="input")


# --- missing weights and the insightface backend ---------------------------------------------------------


def test_missing_face_weights_make_it_unavailable_never_a_number(monkeypatch, tmp_path, celeb):
    monkeypatch.setenv("CALS_BENCH_WEIGHTS", str(tmp_path / "empty"))
    metric = build_metric("id_sim")
    ok, reason = metric.available()
    assert not ok
    assert "cals-bench weights fetch face/yunet" in reason
    with pytest.raises(WeightsUnavailable):
        metric.score_batch(celeb[1][:1], celeb[1][:1], _ctxs(1))


def test_insightface_without_model_reports_why(monkeypatch, tmp_path, shared_weights):
    # the face detector (YuNet, ../shared/weights) is checked first; this test is about the recogniser
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    metric = build_metric("id_sim", backend="insightface")
    ok, reason = metric.available()
    assert not ok
    assert "buffalo_l/w600k_r50.onnx not found" in reason
    assert "model_path" in reason
    assert str(tmp_path / "insightface" / "models" / "buffalo_l") in reason
    assert metric.options["backend"] == "insightface"


def _probe_model(path: Path, *, mxnet_style: bool) -> None:
    """An ONNX 'recogniser' that returns its input flattened, to read back the preprocessing. The MXNet-style
    variant starts with Sub and Mul nodes named as converted MXNet models name them."""
    import onnx
    from onnx import TensorProto, helper

    nodes, first = [], "data"
    if mxnet_style:
        nodes += [
            helper.make_node("Sub", ["data", "zero"], ["sub_out"], name="_minus0"),
            helper.make_node("Mul", ["sub_out", "one"], ["mul_out"], name="_mul0"),
        ]
        first = "mul_out"
    nodes.append(helper.make_node("Flatten", [first], ["fc1"], name="flatten", axis=1))
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3 * 112 * 112])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("mxnet_style", [False, True])
def test_insightface_preprocessing_follows_insightface(tmp_path, mxnet_style):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "probe.onnx"
    _probe_model(path, mxnet_style=mxnet_style)
    rec = InsightFaceRecognizer(model_path=path).load()
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(2, 112, 112, 3), dtype=np.uint8)
    faces[0, :, :, 0] = 255  # a pure-red channel, to see the channel order
    faces[0, :, :, 1:] = 0
    raw = rec._embed(faces).reshape(2, 3, 112, 112)
    mean, std = (0.0, 1.0) if mxnet_style else (127.5, 127.5)
    assert (rec.input_mean, rec.input_std) == (mean, std)
    expected = (faces.astype(np.float32) - mean) / std
    assert np.array_equal(raw, expected.transpose(0, 3, 1, 2))  # RGB planes in order, NCHW; exact
    assert raw[0, 0].min() == (255 - mean) / std  # channel 0 is red
    emb = rec.embed(faces)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert rec.weights_used
    assert next(iter(rec.weights_used)).startswith("insightface/")
