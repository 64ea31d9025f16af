"""Exceptions whose message is the one line a user sees (the CLI prints it and exits non-zero)."""

from __future__ import annotations


class CalsBenchError(Exception):
    """Base class: the message names the file, sample or key and the problem, on one line."""


class ProtocolError(CalsBenchError):
    """A protocol YAML is malformed, has an unknown key or a wrong type, or names an unknown protocol."""


class DataError(CalsBenchError):
    """The data root, a file or a pair is missing, unreadable or inconsistent."""


class SampleError(CalsBenchError):
    """One sample cannot be scored (bad image, size mismatch, bad model output); the run goes on."""


class ModelOutputError(SampleError):
    """The model returned the wrong shape, dtype or range, or NaN/Inf."""


class WeightsError(CalsBenchError):
    """A weight file is unavailable or fails its checksum."""


class WeightsUnavailable(WeightsError):
    """A weight file is not present and cannot be downloaded (offline)."""


class WeightsHashMismatch(WeightsError):
    """A weight file's sha256 differs from the registry's."""
