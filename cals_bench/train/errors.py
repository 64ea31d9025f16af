"""Training errors; each message is the one line the CLI prints (subclasses of CalsBenchError)."""

from __future__ import annotations

from cals_bench.errors import CalsBenchError


class ConfigError(CalsBenchError):
    """A training config is malformed, has an unknown key or a wrong type (the message names the key)."""


class CheckpointError(CalsBenchError):
    """A checkpoint is unreadable, corrupted, not a cals-bench checkpoint, or from another architecture."""


class TrainingDiverged(CalsBenchError):
    """A loss became NaN or infinite; the message names the step, the loss terms and the last checkpoint."""


class TrainingInterrupted(CalsBenchError):
    """SIGINT/SIGTERM stopped training between two steps; a checkpoint of the last finished step was saved."""
