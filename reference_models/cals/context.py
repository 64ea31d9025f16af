"""The semantic context predictor C(I) -> p(c | I) over (medical, face, general), on low-light inputs.

Backbone: the LPIPS AlexNet (ImageNet-pretrained, frozen; the one :mod:`.losses` uses for L_perc). The
input is first brought to a fixed mean brightness (a per-image gain ``0.4 / mean(I)``, clipped to [0, 1]),
since the predictor sees dark images. Features: for each of the five channel-normalised ReLU activations,
the spatial mean and the spatial standard deviation of every channel (2 x 1152 = 2304 numbers). Head: the
features standardised by the training set's mean and standard deviation, then one linear layer to the
three logits (multinomial logistic regression), trained with class-balanced cross-entropy and weight
decay on the *train* split's low-light images (a full 256x256 image and one random training-size crop of
each), never on test images. :func:`train_head` writes the head (``context_head.pt``) and its evaluation
on the test split (accuracy, confusion matrix) to ``context_eval.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cals_bench.reference_models.cals.losses import AlexFeatures

CONTEXTS = ("medical", "face", "general")
FEATURE_DIM = 2 * 1152
TARGET_MEAN = 0.4


def brighten(x: torch.Tensor) -> torch.Tensor:
    """Per-image gain to mean brightness 0.4, clipped to [0, 1]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (x * (TARGET_MEAN / mean)).clamp(0, 1)


class ContextPredictor(nn.Module):
    """``forward(low) -> p (B, 3)`` (softmax probabilities, rows sum to 1). Frozen backbone shared with the
    perceptual loss; ``head`` and the feature standardisation are buffers and parameters restored from the
    head file or from a training checkpoint. ``ready`` (a buffer) is 1 once trained weights are loaded."""

    def __init__(self, alex: AlexFeatures) -> None:
        super().__init__()
        self.alex = [alex]  # shared, not a sub-module here (the task owns it)
        self.head = nn.Linear(FEATURE_DIM, len(CONTEXTS))
        self.register_buffer("feat_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("feat_std", torch.ones(FEATURE_DIM))
        self.register_buffer("ready", torch.zeros((), dtype=torch.int64))
        self.head.requires_grad_(False)

    @torch.no_grad()
    def features(self, low: torch.Tensor) -> torch.Tensor:
        f = self.alex[0].normalized(brighten(low.float()))
        return torch.cat([t.mean(dim=(2, 3)) for t in f] + [t.std(dim=(2, 3)) for t in f], dim=1)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head((feats - self.feat_mean) / self.feat_std)

    @torch.no_grad()
    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.logits_from_features(self.features(low)), dim=1)

    def head_state(self) -> dict[str, torch.Tensor]:
        return {
            "weight": self.head.weight.detach().clone(),
            "bias": self.head.bias.detach().clone(),
            "feat_mean": self.feat_mean.clone(),
            "feat_std": self.feat_std.clone(),
        }

    def load_head(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.head.weight.copy_(state["weight"])
            self.head.bias.copy_(state["bias"])
            self.feat_mean.copy_(state["feat_mean"])
            self.feat_std.copy_(state["feat_std"])
            self.ready.fill_(1)

    def load_head_file(self, path: str | Path) -> None:
        self.load_head(torch.load(Path(path), map_location="cpu", weights_only=True))


def fit_head(
    predictor: ContextPredictor,
    feats: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Fit the standardisation and the linear head on ``feats (N, D)`` / ``labels (N,)`` (full batch Adam,
    class-balanced cross-entropy). Returns the loss per epoch."""
    with torch.no_grad():
        predictor.feat_mean.copy_(feats.mean(0))
        predictor.feat_std.copy_(feats.std(0).clamp_min(1e-6))
    g = torch.Generator().manual_seed(seed)
    head = predictor.head
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.01)
        head.bias.zero_()
    head.requires_grad_(True)
    counts = torch.bincount(labels, minlength=len(CONTEXTS)).float().clamp_min(1)
    class_w = counts.sum() / (len(CONTEXTS) * counts)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.cross_entropy(predictor.logits_from_features(feats), labels, weight=class_w)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    head.requires_grad_(False)
    predictor.ready.fill_(1)
    return losses


def confusion(labels: np.ndarray, predicted: np.ndarray, k: int = len(CONTEXTS)) -> np.ndarray:
    """``m[i, j]`` = number of samples of true class i predicted as j.

    >>> confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), k=3).tolist()
    [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    """
    m = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(labels, predicted):
        m[int(t), int(p)] += 1
    return m


# ---------------------------------------------------------------------------------------------------------
# stage 1: train the head on the train split, evaluate on the test split


@dataclass(frozen=True)
class HeadSettings:
    """Training and test settings of the CALS context predictor's head."""

    per_context: int = 400  # training images per context (all when fewer); faces are subsampled
    crop: int = 160  # one random crop of this size per training image, besides the full image
    epochs: int = 300
    seed: int = 0
    test_per_context: int = 0  # 0 = the whole test split; else at most this many per context (hash order)
    test_views: tuple[str, ...] = ("full", "crop")  # full 256x256 images; one training-size crop of each


def _low_tensors(samples, crop: int, seed: int, with_crop: bool) -> list[torch.Tensor]:
    from cals_bench.data.io import to_tensor

    out = []
    for s in samples:
        low, _ = s.load()
        out.append(to_tensor(np.ascontiguousarray(low)))
        if with_crop:
            h, w = low.shape[:2]
            rng = np.random.default_rng([seed, len(out)])
            top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            out.append(to_tensor(np.ascontiguousarray(low[top : top + crop, left : left + crop])))
    return out


def _features(pred: ContextPredictor, images: list[torch.Tensor], batch: int = 16) -> torch.Tensor:
    feats = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        by_shape: dict[tuple, list[int]] = {}
        for j, t in enumerate(chunk):
            by_shape.setdefault(tuple(t.shape), []).append(j)
        rows: list[torch.Tensor | None] = [None] * len(chunk)
        for idx in by_shape.values():
            f = pred.features(torch.stack([chunk[j] for j in idx]))
            for j, r in zip(idx, f):
                rows[j] = r
        feats.extend(rows)  # type: ignore[arg-type]
    return torch.stack(feats)  # type: ignore[arg-type]


def train_head(
    data_root: str | Path,
    out_dir: str | Path,
    settings: HeadSettings = HeadSettings(),
    protocols: dict[str, str] | None = None,
    alex: AlexFeatures | None = None,
    log=print,
) -> dict[str, Any]:
    """Train the head on the train parts of the context protocols, evaluate on their test parts, write
    ``context_head.pt`` and ``context_eval.json`` into ``out_dir``; returns the evaluation record."""
    from cals_bench.reference_models.cals.data import DEFAULT_PROTOCOLS, context_samples, subsample

    protocols = protocols or DEFAULT_PROTOCOLS
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    pred = ContextPredictor(alex or AlexFeatures(pretrained=True))
    t0 = time.perf_counter()
    train_x, train_y, counts = [], [], {}
    for k, ctx in enumerate(CONTEXTS):
        samples = subsample(
            context_samples(protocols[ctx], data_root, "train"), settings.per_context, settings.seed
        )
        imgs = _low_tensors(samples, settings.crop, settings.seed, with_crop=True)
        counts[ctx] = len(samples)
        train_x.append(_features(pred, imgs))
        train_y += [k] * len(imgs)
        log(f"context head: {ctx}: {len(samples)} training images ({len(imgs)} views)")
    feats, labels = torch.cat(train_x), torch.tensor(train_y)
    losses = fit_head(pred, feats, labels, epochs=settings.epochs, seed=settings.seed)
    torch.save(pred.head_state(), out / "context_head.pt")  # usable before the (slower) test evaluation
    with torch.no_grad():
        train_acc = float((pred.logits_from_features(feats).argmax(1) == labels).float().mean())
    record: dict[str, Any] = {
        "contexts": list(CONTEXTS),
        "backbone": "LPIPS AlexNet (ImageNet), frozen; head: standardised 2304-d pooled features -> linear",
        "settings": settings.__dict__,
        "train_counts": counts,
        "train_views": len(labels),
        "train_loss_first_last": [losses[0], losses[-1]],
        "train_accuracy": train_acc,
    }
    for view in settings.test_views:
        ys, ps = [], []
        for k, ctx in enumerate(CONTEXTS):
            samples = context_samples(protocols[ctx], data_root, "test")
            if settings.test_per_context:
                samples = subsample(samples, settings.test_per_context, settings.seed)
            imgs = _low_tensors(samples, settings.crop, settings.seed + 1, with_crop=view == "crop")
            if view == "crop":
                imgs = imgs[1::2]
            with torch.no_grad():
                p = pred.logits_from_features(_features(pred, imgs)).argmax(1).numpy()
            ys += [k] * len(imgs)
            ps += p.tolist()
        m = confusion(np.array(ys), np.array(ps))
        record[f"test_{view}"] = {
            "n": len(ys),
            "accuracy": float(np.trace(m) / m.sum()),
            "balanced_accuracy": float(np.mean(np.diag(m) / m.sum(1).clip(min=1))),
            "confusion": m.tolist(),
        }
        log(
            f"context head: test ({view} {'256x256' if view == 'full' else f'{settings.crop}x{settings.crop} crops'}): "
            f"accuracy {record[f'test_{view}']['accuracy']:.4f} on {len(ys)}"
        )
    record["seconds"] = time.perf_counter() - t0
    (out / "context_eval.json").write_text(json.dumps(record, indent=1))
    return record
