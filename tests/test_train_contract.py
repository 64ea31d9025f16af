"""The engine contract: Batch and collate, the data-source registry (lows, unpaired), and tasks with two
optimisers (phases): alternating updates equal to a hand-written loop, exact resume with both optimisers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cals_bench.errors import DataError
from cals_bench.train import checkpoint
from cals_bench.train.batch import Batch, collate, item
from cals_bench.train.config import ConfigError, config_from_dict, merge
from cals_bench.train.data import StepBatchSampler
from cals_bench.train.logs import read_rows
from cals_bench.train.loop import Trainer
from cals_bench.train.sources import build_source
from cals_bench.train.tasks import Phase, TrainableModel, register_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(frozen=True)
class TwoPhaseConfig:
    width: int = 4
    critic_lr_scale: float = 0.5


@register_task("test-two-phase")
class TwoPhase(TrainableModel):
    """A small real two-player model: a 1x1-conv generator and a conv critic, least-squares losses."""

    config_cls = TwoPhaseConfig
    summary = "test task with two optimisers"

    def __init__(self, config: TwoPhaseConfig) -> None:
        super().__init__()
        self.config = config
        self.gen = nn.Conv2d(3, 3, 1)
        self.critic = nn.Sequential(
            nn.Conv2d(3, config.width, 3, padding=1), nn.ReLU(), nn.Conv2d(config.width, 1, 1)
        )
        self._fake: torch.Tensor | None = None

    def phases(self) -> list[Phase]:
        return [
            Phase("generator", list(self.gen.parameters())),
            Phase(
                "critic",
                list(self.critic.parameters()),
                lr_scale=self.config.critic_lr_scale,
                betas=(0.5, 0.9),
            ),
        ]

    def loss_terms(self) -> tuple[str, ...]:
        return ("loss", "loss_generator", "loss_critic", "adv", "mean_fake", "real", "fake")

    def forward(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        if phase == "generator":
            fake = torch.sigmoid(self.gen(batch.low))
            self._fake = fake.detach()
            adv = (self.critic(fake) - 1).pow(2).mean()
            return {"loss": adv, "adv": adv, "mean_fake": fake.mean()}
        real = (self.critic(batch.normal) - 1).pow(2).mean()
        fake = self.critic(self._fake).pow(2).mean()
        return {"loss": 0.5 * (real + fake), "real": real, "fake": fake}

    def enhancer_module(self) -> nn.Module:
        return nn.Sequential(self.gen, nn.Sigmoid())


def _images(folder: Path, n: int, size: tuple[int, int], seed: int, scale: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = (rng.integers(0, 256, size=(*size, 3)) * scale).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("unpaired")
    _images(r / "lows", 6, (40, 44), 1, 0.2)
    _images(r / "normals", 3, (36, 50), 2, 1.0)
    _images(r / "clean", 5, (40, 40), 3, 1.0)
    return r


CFG = {
    "task": "test-two-phase",
    "name": "two",
    "data": {"source": "unpaired", "options": {"low_dir": "lows", "normal_dir": "normals"}, "crop": 24},
    "optim": {"lr": 1e-2, "batch_size": 2, "betas": [0.9, 0.99]},
    "schedule": {"steps": 7, "warmup_steps": 1},
    "runtime": {"amp": "fp32"},
    "log": {"every": 2, "checkpoint_every": 3, "keep": 0, "plot": False},
}


def test_collate_batch_and_device_move():
    a = item(torch.zeros(3, 4, 4), None, normal=torch.ones(3, 5, 5), context=2, attributes={"g": "x"}, id="a")
    b = item(torch.ones(3, 4, 4), None, normal=torch.zeros(3, 5, 5), context=0, id="b")
    batch = collate([a, b])
    assert batch.high is None
    assert batch.low.shape == (2, 3, 4, 4)
    assert batch.normal.shape == (2, 3, 5, 5)
    assert batch.context.tolist() == [2, 0]
    assert batch.context.dtype == torch.int64
    assert batch.attributes == [{"g": "x"}, {}]
    assert batch.ids == ["a", "b"]
    assert len(batch) == 2
    moved = batch.to("cpu", channels_last=True)
    assert moved.low.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved.low, batch.low)
    with pytest.raises(ValueError, match="high is missing for b"):
        collate([item(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), id="a"), b])


def test_sources_are_seeded_by_step_and_slot(root):
    cfg = config_from_dict(CFG)
    data = build_source(cfg.data, root, seed=5)
    assert data.train_ids == [f"{i:03d}" for i in range(6)]
    assert data.val == []
    x, y = data.dataset[(2, 9, 1)], build_source(cfg.data, root, seed=5).dataset[(2, 9, 1)]
    assert torch.equal(x["low"], y["low"])
    assert torch.equal(x["normal"], y["normal"])
    assert x["high"] is None
    # the crop is the source image's pixels: find it in the decoded image
    src = np.asarray(Image.open(root / "lows" / "002.png"), dtype=np.float32) / 255
    crop = x["low"].permute(1, 2, 0).numpy()
    hits = [
        (t, l)
        for t in range(40 - 24 + 1)
        for l in range(44 - 24 + 1)
        for c in (src[t : t + 24, l : l + 24], src[t : t + 24, l : l + 24][:, ::-1])
        for c in (c, c[::-1])
        if np.array_equal(c, crop)
    ]
    assert hits
    assert not torch.equal(x["low"], data.dataset[(2, 10, 1)]["low"])
    data_cfg = {"source": "lows", "options": {"clean_dir": "clean"}, "crop": 24, "val_fraction": 0.2}
    lows = config_from_dict({**CFG, "data": data_cfg}).data
    data = build_source(lows, root, seed=5)
    # 5 clean images: one held out (with its clean reference) for validation, four zero-reference lows
    assert len(data.train_ids) == 4
    assert len(data.val) == 1
    assert data.val[0].sample_id not in data.train_ids
    low_val, clean_val = data.val[0].load()
    assert np.array_equal(clean_val, np.asarray(Image.open(root / "clean" / f"{data.val[0].sample_id}.png")))
    assert low_val.mean() < 0.5 * clean_val.mean()  # the seeded degradation darkens
    it = data.dataset[(0, 0, 0)]
    assert it["high"] is None
    assert it["normal"] is None
    assert it["low"].shape == (3, 24, 24)


def test_source_options_are_validated():
    with pytest.raises(ConfigError, match=r"data\.options\.normal_dri: unknown key; did you mean normal_dir"):
        config_from_dict(merge(CFG, {"data": {"options": {"normal_dri": "x"}}}))
    with pytest.raises(ConfigError, match=r"normal_dir .* is required"):
        config_from_dict(merge(CFG, {"data": {"options": {"normal_dir": ""}}}))
    with pytest.raises(ConfigError, match="belong to source protocol"):
        config_from_dict(merge(CFG, {"data": {"low_dir": "lows"}}))


def test_two_phases_match_a_hand_written_alternating_loop(root, tmp_path):
    cfg = config_from_dict(merge(CFG, {"schedule": {"steps": 3, "warmup_steps": 0, "name": "constant"}}))
    Trainer(cfg, data_root=root, out_dir=tmp_path / "run", progress=False, device="cpu").fit()
    got = checkpoint.load(tmp_path / "run" / "last.pt")
    # reference: the same model and batches, two torch Adams stepped by hand, generator then critic
    torch.manual_seed(cfg.seed)
    ref = TwoPhase(TwoPhaseConfig())
    opt_g = torch.optim.Adam(ref.gen.parameters(), lr=1e-2, betas=(0.9, 0.99))
    opt_c = torch.optim.Adam(ref.critic.parameters(), lr=0.5e-2, betas=(0.5, 0.9))
    data = build_source(cfg.data, root, cfg.seed)
    sampler = StepBatchSampler(len(data.train_ids), 2, cfg.seed, 0, 3)
    for keys in sampler:
        batch = collate([data.dataset[k] for k in keys])
        for opt, phase in ((opt_g, "generator"), (opt_c, "critic")):
            opt.zero_grad()
            ref(batch, phase)["loss"].backward()
            opt.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(got["model"][k], v, rtol=0, atol=1e-7)
    assert got["phases"] == ["generator", "critic"]
    assert got["optimizer"]["critic"]["param_groups"][0]["lr"] == pytest.approx(0.5e-2)
    assert got["optimizer"]["critic"]["param_groups"][0]["betas"] == (0.5, 0.9)
    assert int(got["optimizer"]["generator"]["state"][0]["step"]) == 3


def test_exact_resume_with_two_optimisers(root, tmp_path):
    cfg = config_from_dict(CFG)
    Trainer(cfg, data_root=root, out_dir=tmp_path / "full", progress=False).fit()
    out = tmp_path / "cut"
    Trainer(cfg, data_root=root, out_dir=out, progress=False).fit(stop_at=4)
    Trainer(cfg, data_root=root, out_dir=out, resume="auto", progress=False).fit()
    a, b = checkpoint.load(tmp_path / "full" / "last.pt"), checkpoint.load(out / "last.pt")
    for key in ("step", "position", "model", "optimizer", "scheduler", "phases"):
        assert _same(a[key], b[key]), key
    rows_a, rows_b = read_rows(tmp_path / "full" / "log.csv"), read_rows(out / "log.csv")
    for r in rows_a + rows_b:
        r.pop("images_per_s")
    assert rows_a == rows_b
    assert len(rows_a) == 4
    first = rows_a[0]
    # the logged total is the sum of the phase losses (6 significant digits in the log)
    total = float(first["loss_generator"]) + float(first["loss_critic"])
    assert float(first["loss"]) == pytest.approx(total, rel=1e-5)
    single = merge(CFG, {"task": "iaml", "model": {"width": 4, "depth": 3}})
    with pytest.raises(DataError, match="paired data"):
        Trainer(config_from_dict(single), data_root=root, out_dir=tmp_path / "iaml", progress=False).fit()


def test_missing_folders_are_named(root):
    cfg = config_from_dict(merge(CFG, {"data": {"options": {"normal_dir": "nope"}}}))
    with pytest.raises(DataError, match="nope: normal-light image folder does not exist"):
        build_source(cfg.data, root, 0)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
