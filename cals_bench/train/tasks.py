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
import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cals_bench.errors import CalsBenchError
from cals_bench.train.batch import Batch

# Modules whose import registers the built-in tasks.
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


_TASKS: dict[str, type[TrainableModel]] = {}
_loaded = False


def register_task(name: str):
    """Class decorator: ``@register_task("iaml")`` makes the model trainable as ``task: iaml``."""

    def wrap(cls: type[TrainableModel]) -> type[TrainableModel]:
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"task {name!r} registered twice ({_TASKS[name]} and {cls})")
        cls.task = name
        _TASKS[name] = cls
        return cls

    return wrap


def tasks() -> dict[str, type[TrainableModel]]:
    """All registered tasks by name (imports the built-in task modules once)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in TASK_MODULES:
            importlib.import_module(module)
    return dict(sorted(_TASKS.items()))


def get_task(name: str) -> type[TrainableModel]:
    known = tasks()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else f"; known tasks: {', '.join(known) or 'none'}"
        raise CalsBenchError(f"unknown training task {name!r}{hint}")
    return known[name]


def build_model(task: str, config: Any) -> TrainableModel:
    """The task's model for a validated ``model:`` section."""
    return get_task(task)(config)
