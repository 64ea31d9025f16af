"""CALS as a training task for the shared engine (``task: cals``).

Per step, for a batch of low-light crops with references, context labels and attributes:

1. the U-Net enhances the low-light crops;
2. the context predictor gives ``p(c | I)`` on the low-light input (``context: predicted``; ``oracle`` uses
   the data's one-hot labels instead, an upper bound for the predictor);
3. the scheduler turns it into per-sample loss weights ``w_i = sum_c p(c | I) W[c, i]`` (``scheduler:
   context``), or applies one fixed row of W to every sample (``scheduler: fixed``: the baseline);
4. total = ``mean_s sum_{i in rec, perc, struct, id} w_i(s) L_i(s) + sum_g wbar_fair(g) SW1_g``, where
   ``wbar_fair(g)`` is the mean fairness weight of group g's members.

Logged per step besides the total and the five (unweighted) terms: ``id_n`` (faces aligned for L_id),
``ctx_acc`` (predicted context = label), and, for the weights actually applied, ``w_<term>_<context>``
(the *sum* over the batch's samples of that context) with ``n_<context>`` (their count): the mean weight
applied to a context over a logging interval is ``w_<term>_<context> / n_<context>`` of the logged row
(both are interval means of per-step sums). :func:`applied_weights` turns log.csv into that table.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from cals_bench.reference_models.cals import data as _data  # noqa: F401  (registers the cals-contexts source)
from cals_bench.reference_models.cals.context import ContextPredictor
from cals_bench.reference_models.cals.losses import (
    AlexFeatures,
    IdentityLoss,
    batch_groups,
    fairness_terms,
    l1_per_sample,
    random_directions,
    struct_per_sample,
)
from cals_bench.reference_models.cals.network import UNet
from cals_bench.reference_models.cals.scheduler import (
    CONTEXTS,
    DEFAULT_WEIGHTS,
    TERMS,
    fixed_row,
    fixed_weights,
    scheduled_weights,
    weight_table,
)
from cals_bench.train.batch import Batch
from cals_bench.train.tasks import TrainableModel, register_task

FACE = CONTEXTS.index("face")


def _default_weights() -> dict[str, dict[str, float]]:
    return {c: dict(r) for c, r in DEFAULT_WEIGHTS.items()}


@dataclass(frozen=True)
class CALSConfig:
    """The ``model:`` section of a CALS config.

    - ``width``, ``depth``: the U-Net (stage widths ``width * 2**k``); the paper's network is a U-Net of
      the usual size (32, 4); the CPU config uses (16, 4).
    - ``input_gain``: the U-Net's global exposure skip (see :mod:`.network`); on in the CPU configs.
    - ``scheduler``: ``context`` (CALS) or ``fixed`` (the baseline: the row ``fixed_row`` of ``weights``,
      ``mean`` = the mean row, for every sample).
    - ``context``: ``predicted`` (the context predictor on the low-light input) or ``oracle`` (labels).
    - ``context_head``: the head file written by ``cals-bench train cals-context`` (needed to train with
      ``context: predicted``; a training checkpoint carries the head itself).
    - ``weights``: the context x term table W (rows medical, face, general; terms rec, perc, struct, id,
      fair).
    - ``edge_weight``: weight of the Sobel edge term inside L_struct.
    - ``fair_attributes``: attributes whose values form the groups of L_fair (those present in a batch);
      ``fair_min_group``: the fewest members a group needs in a batch; ``fair_projections``: directions of
      the sliced W1.
    - ``pretrained``: load the frozen AlexNet/LPIPS and MobileFaceNet weights (false only in tests).
    """

    width: int = 32
    depth: int = 4
    input_gain: bool = False
    scheduler: Literal["context", "fixed"] = "context"
    fixed_row: str = "mean"
    context: Literal["predicted", "oracle"] = "predicted"
    context_head: str = ""
    weights: dict[str, dict[str, float]] = field(default_factory=_default_weights)
    edge_weight: float = 1.0
    fair_attributes: list[str] = field(default_factory=lambda: ["gender", "race", "sex", "age_band"])
    fair_min_group: int = 2
    fair_projections: int = 64
    pretrained: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 2:
            raise ValueError("width must be >= 1 and depth >= 2")
        weight_table(self.weights)  # validates the table
        fixed_row(weight_table(self.weights), self.fixed_row)
        if self.edge_weight < 0 or self.fair_min_group < 1 or self.fair_projections < 1:
            raise ValueError("edge_weight must be >= 0, fair_min_group and fair_projections >= 1")


@register_task("cals")
class CALSModel(TrainableModel):
    """U-Net enhancer + frozen loss networks + context predictor + scheduler."""

    config_cls = CALSConfig
    config_dir = Path(__file__).resolve().parent / "configs"
    summary = "CALS: U-Net, context-scheduled L_rec/L_perc/L_struct/L_id/L_fair"

    def __init__(self, config: CALSConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet(config.width, config.depth, config.input_gain)
        self.alex = AlexFeatures(pretrained=config.pretrained)
        self.identity = IdentityLoss(pretrained=config.pretrained)
        self.context = ContextPredictor(self.alex)
        if config.context_head and Path(config.context_head).is_file():
            self.context.load_head_file(config.context_head)
        self.register_buffer("weight_table", weight_table(config.weights).float())
        self.register_buffer("fixed", fixed_row(weight_table(config.weights), config.fixed_row).float())
        # training forwards so far: seeds L_fair's projections (in the state dict, so resume is exact)
        self.register_buffer("forwards", torch.zeros((), dtype=torch.int64))

    # -- contract -----------------------------------------------------------------------------------------
    def loss_terms(self) -> tuple[str, ...]:
        weights = [f"w_{t}_{c}" for c in CONTEXTS for t in TERMS]
        return ("loss", *TERMS, "id_n", "ctx_acc", *(f"n_{c}" for c in CONTEXTS), *weights)

    def enhancer_module(self) -> UNet:
        return self.unet

    # -- the step -------------------------------------------------------------------------------------------
    def probabilities(self, batch: Batch) -> torch.Tensor:
        """``p(c | I)`` ``(B, 3)``: predicted from the low-light input, or the labels (``oracle``; also what
        the fixed-weight baseline logs by, since it schedules nothing)."""
        if self.config.context == "oracle" or (
            self.config.scheduler == "fixed" and batch.context is not None
        ):
            if batch.context is None:
                raise ValueError("context: oracle needs batches with context labels")
            return F.one_hot(batch.context, len(CONTEXTS)).float()
        if not int(self.context.ready):
            raise ValueError(
                "the context predictor has no trained head: run `cals-bench train cals-context` and set "
                "model.context_head to its context_head.pt (or use model.context: oracle)"
            )
        return self.context(batch.low)

    def sample_weights(self, probs: torch.Tensor) -> torch.Tensor:
        if self.config.scheduler == "fixed":
            return fixed_weights(probs.shape[0], self.fixed).to(probs.device)
        return scheduled_weights(probs, self.weight_table.to(probs.dtype)).float()

    def forward(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        if batch.high is None:
            raise ValueError("CALS trains on paired data (batches need references)")
        out = self.unet(batch.low)
        if self.training:
            self.forwards += 1
        with torch.autocast(batch.low.device.type, enabled=False):
            return self._losses(batch, out.float(), batch.high.float())

    def _losses(self, batch: Batch, out: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        b = out.shape[0]
        probs = self.probabilities(batch).float()
        w = self.sample_weights(probs)  # (B, 5), columns TERMS
        rec = l1_per_sample(out, ref)
        with torch.no_grad():
            f_ref = self.alex.normalized(ref)
        f_out = self.alex.normalized(out)
        perc = self.alex.lpips(f_out, f_ref)
        struct = struct_per_sample(out, ref, cfg.edge_weight)
        labels = batch.context
        candidates = (
            labels == FACE if labels is not None else torch.ones(b, dtype=torch.bool, device=out.device)
        )
        if float(w[:, TERMS.index("id")].max()) > 0 and bool(candidates.any()):
            ident, mask = self.identity(out, ref, candidates)
        else:
            ident, mask = out.new_zeros(b), torch.zeros(b, dtype=torch.bool, device=out.device)
        per_sample = torch.stack([rec, perc, struct, ident], dim=1)  # (B, 4)
        total = (per_sample * w[:, :4]).sum(1).mean()
        groups = batch_groups(batch.attributes, cfg.fair_attributes, cfg.fair_min_group)
        fair = out.new_zeros(())
        if groups:
            dirs = random_directions(cfg.fair_projections, 1152, int(self.forwards), out.device, out.dtype)
            terms = fairness_terms(self.alex.pooled(f_ref), self.alex.pooled(f_out), groups, dirs)
            for g, t in zip(groups, terms):
                total = total + w[list(g.members), 4].mean() * t
                fair = fair + t.detach()
        result = {
            "loss": total,
            "rec": rec.mean().detach(),
            "perc": perc.mean().detach(),
            "struct": struct.mean().detach(),
            "id": (ident[mask].mean() if bool(mask.any()) else out.new_zeros(())).detach(),
            "fair": fair,
            "id_n": mask.float().sum(),
        }
        pred = probs.argmax(1)
        if labels is not None:
            result["ctx_acc"] = (pred == labels).float().mean()
            ctx = labels
        else:
            result["ctx_acc"] = out.new_zeros(())
            ctx = pred
        wd = w.detach()
        for k, c in enumerate(CONTEXTS):
            sel = ctx == k
            result[f"n_{c}"] = sel.float().sum()
            for j, t in enumerate(TERMS):
                result[f"w_{t}_{c}"] = wd[sel, j].sum() if bool(sel.any()) else out.new_zeros(())
        return result


def applied_weights(log_csv: str | Path) -> list[dict[str, float | str]]:
    """Rows ``{step, context, n, rec, perc, struct, id, fair}``: the mean weights applied to each context's
    samples in each logging interval of a CALS ``log.csv`` (``w_<term>_<context> / n_<context>``)."""
    rows = []
    with open(log_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("kind") != "train":
                continue
            for c in CONTEXTS:
                n = float(r.get(f"n_{c}") or 0)
                if n <= 0:
                    continue
                row: dict[str, float | str] = {"step": int(r["step"]), "context": c, "n_per_step": n}
                for t in TERMS:
                    row[t] = float(r[f"w_{t}_{c}"]) / n
                rows.append(row)
    return rows
