"""CALS with the real networks and data of ../shared: MobileFaceNet loads strictly and recognises people,
L_id equals the identity metric's cosine where both apply, the context head trains above chance on a tiny
real set, and the trainer's data source never reads a test image (checked on the real split ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(shared_dir) -> Path:
    root = shared_dir / "data"
    for name in ("utkface", "covid-cxr-256", "bsds500"):
        if not (root / name).is_dir():
            pytest.skip(f"needs {root / name}")
    return root


def _faces(root: Path, names: list[str]) -> torch.Tensor:
    import cv2

    from cals_bench.data.io import read_rgb, to_tensor

    imgs = [
        cv2.resize(read_rgb(root / "utkface" / "images" / n), (256, 256), interpolation=cv2.INTER_AREA)
        for n in names
    ]
    return torch.stack([to_tensor(i) for i in imgs])


FACES = [  # three different people (UTKFace file names: age_gender_race_date)
    "26_0_2_20170103181248536.jpg.chip.jpg",
    "35_1_0_20170103163357623.jpg.chip.jpg",
    "60_0_1_20170111171747543.jpg.chip.jpg",
]


def test_mobilefacenet_loads_strictly_and_separates_people(shared_weights, data_root):
    from cals_bench.face.mobilefacenet import MobileFaceNet
    from cals_bench.metrics.identity import IdentitySimilarity

    net, used = MobileFaceNet.from_registry()  # load_state_dict(strict=True) inside
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.99e6, rel=0.03)
    assert next(iter(used.values())) == "e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99"
    imgs = _faces(data_root, FACES)
    metric = IdentitySimilarity(backend="mobilefacenet")
    ctx = _contexts(imgs)
    same = metric.score_batch(imgs, imgs, ctx)
    assert [r["id_sim"] for r in same] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    # another person's face (aligned on the reference's landmarks) is far less similar
    other = metric.score_batch(imgs[[1, 2, 0]], imgs, ctx)
    assert max(r["id_sim"] for r in other) < 0.6


def _contexts(imgs: torch.Tensor):
    from cals_bench.metrics.base import SampleContext

    return [
        SampleContext(sample_id=f"s{i}", reference_key=f"test-face-{i}", low=None) for i in range(len(imgs))
    ]


def test_identity_loss_is_one_minus_the_metric_cosine(shared_weights, data_root):
    """L_id (torch: grid_sample warp, float) vs the id_sim metric with the same network (cv2 warp, 8-bit):
    both align on the reference's YuNet landmarks; they differ by interpolation and 8-bit rounding only."""
    from cals_bench.metrics.identity import IdentitySimilarity
    from cals_bench.reference_models.cals.losses import IdentityLoss

    ref = _faces(data_root, FACES)
    g = torch.Generator().manual_seed(0)
    out = (ref * 0.8 + 0.1 * torch.rand(ref.shape, generator=g)).clamp(0, 1)
    out = (out * 255).round() / 255  # on the 8-bit grid, as the metric sees it
    loss_fn = IdentityLoss(pretrained=True)
    loss, mask = loss_fn(out, ref, torch.ones(3, dtype=torch.bool))
    assert mask.tolist() == [True, True, True]
    metric = IdentitySimilarity(backend="mobilefacenet")
    sims = [r["id_sim"] for r in metric.score_batch(out, ref, _contexts(ref))]
    assert (1 - loss).tolist() == pytest.approx(sims, abs=0.02)
    assert all(0 < float(v) < 1 for v in loss)


def test_context_head_trains_above_chance_on_a_tiny_real_set(shared_weights, data_root):
    from cals_bench.data.io import to_tensor
    from cals_bench.reference_models.cals.context import CONTEXTS, ContextPredictor, fit_head
    from cals_bench.reference_models.cals.data import DEFAULT_PROTOCOLS, context_parts, subsample
    from cals_bench.reference_models.cals.losses import AlexFeatures

    pred = ContextPredictor(AlexFeatures(pretrained=True))
    feats = {"train": [], "val": []}
    labels = {"train": [], "val": []}
    for k, ctx in enumerate(CONTEXTS):
        parts, _ = context_parts(DEFAULT_PROTOCOLS[ctx], data_root)
        for part, n in (("train", 6), ("val", 4)):
            for s in subsample(parts[part], n, 0):
                low, _ = s.load()
                feats[part].append(
                    pred.features(to_tensor(np.ascontiguousarray(low[64:192, 64:192]))[None])[0]
                )
                labels[part].append(k)
    x, y = torch.stack(feats["train"]), torch.tensor(labels["train"])
    fit_head(pred, x, y, epochs=200)
    acc = float(
        (pred.logits_from_features(torch.stack(feats["val"])).argmax(1) == torch.tensor(labels["val"]))
        .float()
        .mean()
    )
    assert acc > 2 / 3  # chance is 1/3 (12 held-out low-light crops, 4 per context)
    p = pred(torch.rand(2, 3, 64, 64))
    assert torch.allclose(p.sum(1), torch.ones(2))


def test_source_never_reads_a_test_image(shared_weights, data_root, monkeypatch):
    import cals_bench.data.datasets as datasets
    from cals_bench.data import splits
    from cals_bench.data.datasets import read_manifest
    from cals_bench.protocol import load
    from cals_bench.train.config import load_config
    from cals_bench.train.sources import build_source

    read: list[Path] = []
    real = datasets.read_rgb
    monkeypatch.setattr(datasets, "read_rgb", lambda p, *a, **k: (read.append(Path(p)), real(p, *a, **k))[1])
    cfg = load_config("cals-cpu", ["data.options.per_context=4", "data.options.val_per_context=2"])
    src = build_source(cfg.data, data_root, seed=0)
    for i in range(len(src.train_ids)):
        src.dataset[(i, 0, 0)]
    for s in src.val:
        s.load()
    test_ids: dict[str, set[str]] = {}
    for ctx, name in (("face", "cals-face"), ("medical", "cals-medical"), ("general", "cals-general")):
        proto = load(name)
        spec = proto.dataset.split
        root = data_root / proto.dataset.root_names[0]
        if ctx == "general":
            ids = [p.stem for p in (root / "images").rglob("*.jpg")]
            attrs: dict = {}
        else:  # the split rule applied to the manifest's ids, independently of the trainer's code
            _, rows = read_manifest(proto.dataset, root)
            ids = [Path(n).stem for n in rows]
            attrs = {Path(n).stem: r for n, r in rows.items()}
        test_ids[ctx] = {i for i, part in splits.assign(ids, attrs, spec).items() if part == "test"}
    assert len(test_ids["face"]) > 1800
    assert len(test_ids["medical"]) > 100
    assert len(test_ids["general"]) > 80
    listed = {tuple(i.split("/", 1)) for i in src.train_ids} | {
        tuple(s.sample_id.split("/", 1)) for s in src.val
    }
    assert not any(sid in test_ids[ctx] for ctx, sid in listed)
    assert read, "the source read no image at all"
    all_test = set().union(*test_ids.values())
    assert not [p for p in read if p.stem in all_test]
    # and the full train parts on the real ids (not just what was read here)
    info = src.info["splits"]
    for ctx in ("face", "medical", "general"):
        assert not (set(info[ctx]["ids"]["train"]) & test_ids[ctx])
        assert set(info[ctx]["ids"]["test"]) == test_ids[ctx]
