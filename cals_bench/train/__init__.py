"""The shared training engine: one loop for every reference trainer (IAML, CALS).

- :mod:`~cals_bench.train.config`: YAML training configs validated into frozen dataclasses;
- :mod:`~cals_bench.train.tasks`: the :class:`TrainableModel` contract (``forward(batch)``, phases for
  several optimisers) and the task registry;
- :mod:`~cals_bench.train.batch`: the :class:`Batch` a task receives and the item collate;
- :mod:`~cals_bench.train.sources`: the registry of training data sources (``protocol``, ``lows``,
  ``unpaired``, or one a task registers), chosen by ``data.source``;
- :mod:`~cals_bench.train.data`: training pairs, the held-out validation split, seeded crops and flips;
- :mod:`~cals_bench.train.loop`: :class:`Trainer` (AMP, channels_last, compile, clipping, schedules, EMA,
  validation, checkpoints, exact resume, DDP under torchrun);
- :mod:`~cals_bench.train.checkpoint`: the checkpoint format (``torch.load(weights_only=True)``);
- :mod:`~cals_bench.train.checkpoint_enhancer`: ``checkpoint:PATH`` as an Enhancer for ``cals-bench run``;
- :mod:`~cals_bench.train.cli`: the ``cals-bench train`` commands.

See docs/training.md.
"""
