"""The contract between the training engine and a trainable method, and the registry of methods ("tasks").

A task is an ``nn.Module`` subclass of :class:`TrainableModel` registered with ``@register_task("name")``.
The engine knows nothing about any one method: it builds the task's model from the validated ``model:``
section of the config, calls ``model(batch)`` (a :class:`~cals_bench.train.batch.Batch`) for the loss
terms, steps the optimiser, applies the EMA pairs the model declares, validates with
:meth:`TrainableModel.enhancer_module` and saves everything.

A task with several optimisers (a GAN: generator and discriminator) declares them as *phases*
(:meth:`TrainableModel.phases`): each step the engine runs the phases in order, and for each one zeroes its
optimiser's gradients, calls ``model(batch, phase=name)`` under autocast, back-propagates that phase's
``"loss"``, clips and steps its optimiser (through the shared gradient scaler). Then the scaler, every
learning-rate schedule and the EMA pairs advance once. The default is one phase, ``"main"``, with one
optimiser over all trainable parameters: ``model(batch)``, exactly one forward/backward per step.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cals_bench.errors import CalsBenchError
from cals_bench.registry import Registry
from cals_bench.train.batch import Batch

# Modules whose import registers the built-in tasks (imported on the first lookup).
TASK_MODULES = (
    "cals_bench.reference_models.iaml.trainer",
    "cals_bench.reference_models.cals.trainer",
    "cals_bench.reference_models.zero_dce.trainer",
    "cals_bench.reference_models.enlightengan.trainer",
)


@dataclass(frozen=True)
class Phase:
    """One optimiser and the part of a step that updates it.

    ``params``: the parameters its optimiser steps (disjoint between phases). The optimiser is the config's
    ``optim`` section with ``lr * lr_scale`` and, when set, these ``betas`` (EnlightenGAN: 0.5, 0.999).
    """

    name: str
    params: list[nn.Parameter]
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None


@dataclass(frozen=True)
class EmaPair:
    """``target <- momentum * target + (1 - momentum) * source``, parameter by parameter, after each step.

    ``name`` is the target's attribute path in the model (it is saved with the model's state dict).
    """

    name: str
    target: nn.Module
    source: nn.Module
    momentum: float


class TrainableModel(nn.Module, abc.ABC):
    """What a task provides. Images are float RGB ``(B, 3, H, W)`` in [0, 1].

    Class attributes: ``task`` (registry name), ``config_cls`` (frozen dataclass for the config's ``model:``
    section), ``config_dir`` (folder of the task's built-in config YAMLs), ``summary``.
    The constructor takes one ``config_cls`` instance. Everything the model needs at inference must be a
    sub-module, so that the state dict alone restores it.
    """

    task: ClassVar[str] = ""
    config_cls: ClassVar[type]
    config_dir: ClassVar[Path | None] = None
    summary: ClassVar[str] = ""

    @abc.abstractmethod
    def forward(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        """Loss terms for a batch: scalar tensors, ``"loss"`` (the total this phase minimises) among them.

        Single-phase tasks are called ``model(batch)``; multi-phase tasks ``model(batch, phase=name)``.
        """

    @abc.abstractmethod
    def loss_terms(self) -> tuple[str, ...]:
        """Names of the logged terms, ``"loss"`` first (the columns of the training log).

        One phase: the keys :meth:`forward` returns. Several: the engine logs each phase's ``"loss"`` as
        ``"loss_<phase>"`` and their sum as ``"loss"``; every other key keeps its name (distinct across
        phases), so the list is ``"loss"``, the ``"loss_<phase>"`` names and the other keys.
        """

    def init_weights(self) -> None:
        """Called once by the engine for a fresh run, after construction (never on resume, nor when a
        checkpoint is loaded for scoring): the place for a paper's initialisation or a pretrained start."""

    def phases(self) -> list[Phase]:
        """The optimisers, in the order their updates run within a step (default: one, over everything)."""
        return [Phase("main", [p for p in self.parameters() if p.requires_grad])]

    @abc.abstractmethod
    def enhancer_module(self) -> nn.Module:
        """The module that enhances: ``(B, 3, H, W)`` in [0, 1] of any H, W -> same shape, in [0, 1]."""

    def ema_pairs(self) -> list[EmaPair]:
        """Sub-modules that follow others by EMA (none by default)."""
        return []


# name -> TrainableModel class: the built-ins, then what other packages declare in the entry-point group
# ``cals_bench.tasks`` (imported when used)
TASKS: Registry[type[TrainableModel]] = Registry(
    "training task", builtin_modules=TASK_MODULES, entry_point_group="cals_bench.tasks"
)


def register_task(name: str):
    """Class decorator: ``@register_task("iaml")`` makes the model trainable as ``task: iaml``.

    A second, different class under a name already taken is refused (ValueError naming both)."""

    def wrap(cls: type[TrainableModel]) -> type[TrainableModel]:
        TASKS.register(name, cls)
        cls.task = name
        return cls

    return wrap


def tasks() -> dict[str, type[TrainableModel]]:
    """All registered tasks by name (the built-in task modules and entry points imported)."""
    return TASKS.items()


def get_task(name: str) -> type[TrainableModel]:
    """The task registered as ``name``; an unknown name gets the closest ones and any task module that
    failed to import (its task is then missing)."""
    if name not in TASKS and TASKS.import_errors():
        failed = "; ".join(f"{m}: {' '.join(e.split())}" for m, e in TASKS.import_errors().items())
        raise CalsBenchError(f"{TASKS.unknown_message(name)} (task modules that failed to import: {failed})")
    return TASKS.get(name)


def build_model(task: str, config: Any) -> TrainableModel:
    """The task's model for a validated ``model:`` section."""
    return get_task(task)(config)
