"""CALS reference trainer on tiny synthetic data: scheduler, loss terms, gradients, engine integration
(training lowers the loss, checkpoint -> Enhancer, exact resume). No weight files needed: the frozen loss
networks are random here (``model.pretrained: false``); tests/test_cals_real.py uses the real ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cals_bench.enhancer import load_enhancer
from cals_bench.reference_models.cals.losses import (
    batch_groups,
    edge_per_sample,
    fairness_terms,
    sliced_w1,
    ssim_per_sample,
    struct_per_sample,
)
from cals_bench.reference_models.cals.scheduler import (
    CONTEXTS,
    TERMS,
    fixed_row,
    scheduled_weights,
    weight_table,
)
from cals_bench.reference_models.cals.trainer import CALSConfig, CALSModel, applied_weights
from cals_bench.train.batch import Batch
from cals_bench.train.config import config_from_dict, merge
from cals_bench.train.loop import Trainer
from cals_bench.train.seeds import across_seeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")

W = {
    "medical": {"rec": 1.0, "perc": 0.5, "struct": 2.0, "id": 0.0, "fair": 1.0},
    "face": {"rec": 1.0, "perc": 0.5, "struct": 0.5, "id": 1.0, "fair": 1.0},
    "general": {"rec": 1.5, "perc": 1.5, "struct": 0.5, "id": 0.0, "fair": 0.0},
}
# Without the face identity weight: L_id needs the YuNet detector's weights file, which these tests do not
# assume (tests/test_cals_real.py runs L_id on real faces with the real networks).
W_NOID = {c: {**r, "id": 0.0} for c, r in W.items()}


# ---------------------------------------------------------------------------------------------------------
# scheduler


def test_one_hot_contexts_get_their_configured_rows():
    table = weight_table(W)
    got = scheduled_weights(torch.eye(3), table)
    for k, c in enumerate(CONTEXTS):
        assert got[k].tolist() == [W[c][t] for t in TERMS]


def test_soft_contexts_get_the_mixture_of_rows():
    table = weight_table(W)
    p = torch.tensor([[0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    got = scheduled_weights(p, table)
    for i in range(2):
        want = [sum(float(p[i, k]) * W[c][t] for k, c in enumerate(CONTEXTS)) for t in TERMS]
        assert got[i].tolist() == pytest.approx(want, abs=1e-12)
    # the uniform mixture is the baseline's mean row
    assert got[1].tolist() == pytest.approx(fixed_row(table, "mean").tolist(), abs=1e-12)
    assert fixed_row(table, "face").tolist() == [W["face"][t] for t in TERMS]


def test_weight_table_refuses_bad_rows():
    bad = {c: dict(r) for c, r in W.items()}
    bad["face"]["identity"] = 1.0
    with pytest.raises(ValueError, match="unknown loss term"):
        weight_table(bad)
    with pytest.raises(ValueError, match="no row"):
        weight_table({"face": W["face"], "general": W["general"]})


def test_model_applies_fixed_or_scheduled_weights():
    cals = CALSModel(CALSConfig(width=4, depth=2, pretrained=False, weights=W, context="oracle"))
    base = CALSModel(CALSConfig(width=4, depth=2, pretrained=False, weights=W, scheduler="fixed"))
    p = torch.eye(3)
    assert torch.allclose(cals.sample_weights(p), weight_table(W).float())
    mean = weight_table(W).mean(0).float()
    assert torch.allclose(base.sample_weights(p), mean.expand(3, -1))


# ---------------------------------------------------------------------------------------------------------
# loss terms


def test_sliced_w1_is_zero_for_identical_sets_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g, dtype=torch.float64)
    dirs = torch.randn(32, 8, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    assert float(sliced_w1(a, a.clone(), dirs)) == 0.0
    v = torch.randn(8, generator=g, dtype=torch.float64)
    v = v / v.norm()
    values = []
    for t in (0.5, 1.0, 2.0):
        # a translation keeps the sorted order along every direction: SW1 = t * mean_k |theta_k . v| exactly
        got = float(sliced_w1(a, a + t * v, dirs))
        assert got == pytest.approx(t * float((dirs @ v).abs().mean()), rel=1e-12)
        values.append(got)
    assert values[0] < values[1] < values[2]


def test_fairness_sums_over_groups_present_in_the_batch():
    attrs = [{"gender": "f", "race": "A"}, {"gender": "f", "race": "B"}, {"gender": "m", "race": "A"},
             {"gender": "m", "race": ""}]  # fmt: skip
    groups = batch_groups(attrs, ["gender", "race"], min_size=2)
    assert [(g.attribute, g.value, g.members) for g in groups] == [
        ("gender", "f", (0, 1)),
        ("gender", "m", (2, 3)),
        ("race", "A", (0, 2)),
    ]
    ref = torch.randn(4, 6, dtype=torch.float64)
    dirs = torch.eye(6, dtype=torch.float64)
    assert [float(t) for t in fairness_terms(ref, ref.clone(), groups, dirs)] == [0.0, 0.0, 0.0]
    shifted = ref.clone()
    shifted[0] += 1.0  # only sample 0 changes: groups gender=f and race=A, not gender=m
    terms = [float(t) for t in fairness_terms(ref, shifted, groups, dirs)]
    assert terms[0] > 0
    assert terms[1] == 0.0
    assert terms[2] > 0


def test_ssim_and_edge_terms_match_independent_references():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 24, 24))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    got = ssim_per_sample(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    for i in range(2):
        want = structural_similarity(x[i].transpose(1, 2, 0), y[i].transpose(1, 2, 0), data_range=1.0,
                                     channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)  # fmt: skip
        assert got[i] == pytest.approx(want, abs=2e-3)  # skimage pads (reflect) the border; we do not
    t = torch.from_numpy(x)
    assert float(edge_per_sample(t, t).max()) == 0.0
    # a constant offset changes no gradient: only 1 - SSIM moves
    assert float(edge_per_sample(t, t + 0.1).max()) < 1e-6
    assert float(struct_per_sample(t, t).max()) < 1e-6


# ---------------------------------------------------------------------------------------------------------
# gradients and a training step on a hand-made batch


def _batch(b: int = 6, size: int = 32, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    blocks = torch.rand(b, 3, size // 8, size // 8, generator=g)
    high = torch.nn.functional.interpolate(blocks, scale_factor=8, mode="nearest")  # structure, not noise
    low = (high * 0.15).clamp(0, 1)
    ctx = torch.tensor([k % 3 for k in range(b)])
    attrs = [
        {"context": CONTEXTS[k % 3], "gender": "female" if k % 2 else "male", "sex": "F" if k % 2 else "M"}
        for k in range(b)
    ]
    return Batch(low=low, high=high, context=ctx, attributes=attrs, ids=[f"s{k}" for k in range(b)])


@pytest.mark.parametrize("term", ["rec", "perc", "struct", "fair"])
def test_each_term_alone_reaches_the_enhancer(term):
    only = {c: {t: (1.0 if t == term else 0.0) for t in TERMS} for c in CONTEXTS}
    torch.manual_seed(0)
    model = CALSModel(CALSConfig(width=4, depth=2, pretrained=False, weights=only, context="oracle"))
    out = model(_batch())
    out["loss"].backward()
    grads = [p.grad for p in model.unet.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # nothing frozen receives a gradient
    assert all(p.grad is None for p in model.alex.parameters())
    assert all(p.grad is None for p in model.identity.parameters())


def test_identity_term_reaches_the_enhancer_through_the_aligned_crop():
    """L_id's differentiable part (warp + MobileFaceNet) with a fixed alignment: the detector only chooses
    the matrix (tests/test_cals_real.py runs it on real faces)."""
    from cals_bench.face.align import ARCFACE_TEMPLATE_112, similarity_transform

    torch.manual_seed(0)
    model = CALSModel(CALSConfig(width=4, depth=2, pretrained=False, context="oracle"))
    batch = _batch(b=2, size=64)
    out = model.unet(batch.low)
    # landmarks of a face filling the 64x64 image, mapped onto the template
    lm = ARCFACE_TEMPLATE_112 * (64 / 112)
    m = similarity_transform(lm, ARCFACE_TEMPLATE_112)
    e_out = model.identity.embed(out, [m, m])
    e_ref = model.identity.embed(batch.high, [m, m]).detach()
    loss = (1 - (e_out * e_ref).sum(1)).mean()
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in model.unet.parameters()) > 0


def test_a_few_steps_lower_the_total_loss():
    torch.manual_seed(0)
    model = CALSModel(CALSConfig(width=8, depth=2, pretrained=False, weights=W_NOID, context="oracle"))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = _batch()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out = model(batch)
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.8 * losses[0]  # measured: 1.35 -> 0.97


def test_logged_weights_per_context_are_the_applied_ones():
    model = CALSModel(CALSConfig(width=4, depth=2, pretrained=False, weights=W_NOID, context="oracle"))
    out = model(_batch(b=6))
    for c in CONTEXTS:
        assert float(out[f"n_{c}"]) == 2.0
        for t in TERMS:
            assert float(out[f"w_{t}_{c}"]) == pytest.approx(2 * W_NOID[c][t])
    assert set(out) == set(model.loss_terms())


# ---------------------------------------------------------------------------------------------------------
# engine integration: a tiny three-context data root with protocols of our own


def _write_images(folder: Path, names: list[str], seed: int, grey: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        base = rng.random((8, 8, 1 if grey else 3))
        img = np.kron(base, np.ones((6, 6, 1)))  # blocky 48x48: structure for SSIM and edges
        img = np.repeat(img, 3, axis=2) if grey else img
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / n)


PROTO = """name: {name}
version: 1
title: tiny {ctx}
dataset:
  layout: synthetic
  root_names: [{folder}]
  clean_dir: images
  {manifest}
  attributes: {{context: {ctx}}}
  recursive: {recursive}
  split: {{part: test, seed: 0, unit: "{unit}"}}
metrics: [psnr]
"""


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("cals-root")
    protos = {}
    faces = [f"f{i:02d}.png" for i in range(14)]
    _write_images(root / "faces" / "images", faces, 1)
    rows = ["image,gender,race,age"] + [f"{n},{'female' if i % 2 else 'male'},{'AB'[i % 3 == 0]},{20 + i}"
                                        for i, n in enumerate(faces)]  # fmt: skip
    (root / "faces" / "attributes.csv").write_text("\n".join(rows) + "\n")
    xr = [f"x{i:02d}.png" for i in range(14)]
    _write_images(root / "xray" / "images", xr, 2, grey=True)
    rows = ["image,patientid,sex,age"] + [
        f"{n},p{i // 2},{'FM'[i % 2]},{30 + 3 * i}" for i, n in enumerate(xr)
    ]
    (root / "xray" / "metadata.csv").write_text("\n".join(rows) + "\n")
    _write_images(root / "general" / "images" / "a", [f"g{i:02d}.png" for i in range(7)], 3)
    _write_images(root / "general" / "images" / "b", [f"g{i:02d}.png" for i in range(7, 14)], 4)
    for ctx, folder, manifest, unit, rec in (
        ("face", "faces", "manifest: attributes.csv", "", "false"),
        ("medical", "xray", "manifest: metadata.csv", "patientid", "false"),
        ("general", "general", "", "", "true"),
    ):
        path = root / folder / f"tiny-{ctx}.yaml"
        path.write_text(
            PROTO.format(
                name=f"tiny-{ctx}", ctx=ctx, folder=folder, manifest=manifest, unit=unit, recursive=rec
            )
        )
        protos[ctx] = str(path)
    return root, protos


def _config(protos: dict[str, str], **over) -> dict:
    base = {
        "task": "cals",
        "name": "tiny-cals",
        "data": {
            "source": "cals-contexts",
            "options": {"protocols": protos, "per_context": 4, "val_per_context": 1},
            "crop": 32,
        },
        "model": {"width": 4, "depth": 2, "pretrained": False, "context": "oracle", "weights": W_NOID},
        "optim": {"lr": 1e-3, "batch_size": 3},
        "schedule": {"steps": 6, "warmup_steps": 1},
        "runtime": {"amp": "fp32"},
        "log": {"every": 2, "val_every": 3, "checkpoint_every": 2, "keep": 0, "plot": False},
    }
    return merge(base, over)


def _sources(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.png")]


def test_source_reads_only_train_and_val_parts(tiny_root):
    from cals_bench.data import splits
    from cals_bench.protocol import load_file
    from cals_bench.train.sources import build_source

    root, protos = tiny_root
    cfg = config_from_dict(_config(protos))
    src = build_source(cfg.data, root, seed=0)
    test_ids = set()
    for ctx, path in protos.items():  # the test part, from the split rule itself
        spec = load_file(path).dataset.split
        folder = {"face": "faces", "medical": "xray", "general": "general"}[ctx]
        ids = sorted(p.stem for p in (root / folder).rglob("*.png"))
        attrs = {i: {"patientid": f"p{int(i[1:]) // 2}"} for i in ids}
        test_ids |= {f"{ctx}/{i}" for i, part in splits.assign(ids, attrs, spec).items() if part == "test"}
    assert test_ids
    assert not (set(src.train_ids) & test_ids)
    assert not ({s.sample_id for s in src.val} & test_ids)
    assert len(src.train_ids) == 12  # 4 per context (cycled where a context has fewer)
    it = src.dataset[(0, 0, 0)]
    assert it["low"].shape == (3, 32, 32)
    assert it["context"] in (0, 1, 2)
    assert "context" in it["attributes"]
    # patients never straddle parts
    medical = src.info["splits"]["medical"]
    assert medical["spec"]["unit"] == "patientid"


def test_training_checkpoint_enhancer_and_exact_resume(tiny_root, tmp_path):
    root, protos = tiny_root
    cfg = config_from_dict(_config(protos))
    full = tmp_path / "full"
    res = Trainer(cfg, data_root=root, out_dir=full, progress=False).fit()
    assert res.step == 6
    assert (full / "last.pt").is_file()
    split = (full / "split.json").read_text()
    assert '"splits"' in split
    assert '"ids"' in split
    rows = applied_weights(full / "log.csv")
    assert rows
    assert all(r["context"] in CONTEXTS for r in rows)
    for r in rows:  # oracle contexts: the applied weights are W's rows
        assert [r[t] for t in TERMS] == pytest.approx([W_NOID[r["context"]][t] for t in TERMS])

    enh = load_enhancer(f"checkpoint:{full / 'last.pt'}")
    x = torch.rand(1, 3, 40, 52)
    y = enh.enhance(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0
    assert float(y.max()) <= 1
    from cals_bench.train.checkpoint_enhancer import load_trained_model

    _, model, _ = load_trained_model(full / "last.pt")
    with torch.no_grad():
        assert torch.equal(model.unet(x), enh.net(x))

    part = tmp_path / "part"
    Trainer(cfg, data_root=root, out_dir=part, progress=False).fit(stop_at=3)
    Trainer(cfg, data_root=root, out_dir=part, resume="auto", progress=False).fit()
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(part / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"])


def test_predicted_context_needs_a_trained_head(tiny_root, tmp_path):
    root, protos = tiny_root
    cfg = config_from_dict(_config(protos, model={"context": "predicted"}))
    with pytest.raises(ValueError, match="no trained head"):
        Trainer(cfg, data_root=root, out_dir=tmp_path / "x", progress=False).fit()


def test_across_seeds_matches_the_t_interval():
    s = across_seeds([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0
    assert s["sd"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((2.0 - half, 2.0 + half))
    one = across_seeds([5.0])
    assert one["mean"] == 5.0
    assert math.isnan(one["sd"])
    assert math.isnan(one["ci_low"])


def test_input_gain_starts_from_the_exposure_corrected_input():
    from cals_bench.reference_models.cals.network import UNet

    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 28) * 0.1
    want = (x * (0.45 / x.mean(dim=(1, 2, 3), keepdim=True))).clamp(1e-3, 1 - 1e-3)
    net = UNet(4, 3, input_gain=True)
    assert torch.allclose(net(x), want, atol=1e-6)
    # it trains like any U-Net: one step moves the output
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = (net(x) - 0.3).abs().mean()
    loss.backward()
    opt.step()
    assert not torch.allclose(net(x), want, atol=1e-4)


def test_seeds_command_trains_scores_and_summarises(tiny_root, tmp_path):
    import json

    import yaml
    from click.testing import CliRunner

    from cals_bench.train.seeds import seeds_command

    root, protos = tiny_root
    cfg = _config(protos, schedule={"steps": 2, "warmup_steps": 0}, log={"every": 1, "val_every": 2})
    path = tmp_path / "tiny-cals.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "seeds"
    args = ["--config", str(path), "--seeds", "0,1", "--data-root", str(root), "--protocol", protos["general"],
            "--out", str(out), "--results", str(tmp_path / "results"), "--quiet", "--json"]  # fmt: skip
    res = CliRunner().invoke(seeds_command, args, catch_exceptions=False)
    record = json.loads(res.output)
    assert sorted(record["runs"]) == ["0", "1"]
    assert (out / "seed-1" / "last.pt").is_file()
    psnr = record["summary"]["tiny-general v1"]["overall"]["psnr"]
    per_seed = [psnr["per_seed"][s] for s in ("0", "1")]
    assert psnr["k"] == 2
    assert psnr["mean"] == pytest.approx(sum(per_seed) / 2)
    assert psnr["sd"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / math.sqrt(2))
    assert (out / "seeds.txt").read_text().startswith("tiny-cals: 2 seed(s) [0, 1]")
