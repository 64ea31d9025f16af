"""The settings of a fairness audit: which groups, how many resamples, which confidence, which seed.

One type for both places that hold them: a protocol's ``audit:`` section is validated straight into
:class:`AuditSettings` by the schema code (:func:`cals_bench.schema.build`, as every protocol section is), and
the fairness package (:mod:`cals_bench.fairness`) takes the same object. ``AuditSettings.from_mapping`` goes
through the same builder and rejects unknown keys, so a misspelt key fails loudly instead of being ignored.
This module imports no numerical stack, so loading a protocol stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cals_bench.errors import CalsBenchError
from cals_bench.schema import SchemaError, added_field, build


class AuditSettingsError(CalsBenchError, ValueError):
    """An audit setting has a wrong type or value, or a mapping holds an unknown key."""


class AuditInputError(CalsBenchError, ValueError):
    """The records, attributes or features handed to the audit are malformed (one line says which)."""


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuditSettingsError(f"audit setting {name!r} must be an integer, got {value!r}")
    if value < minimum:
        raise AuditSettingsError(f"audit setting {name!r} must be >= {minimum}, got {value}")


def _check_open_unit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise AuditSettingsError(f"audit setting {name!r} must be a number in (0, 1), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    """How an audit groups samples and quantifies uncertainty.

    Fields (YAML keys of the same names):

    - ``group_by``: attributes to group by, in order; an intersection is written ``"gender*age_band"``.
      Empty means: overall figures only.
    - ``min_group_size``: groups with fewer valid values are kept in every table, flagged ``small_group``,
      and left out of worst/best, gaps, GPI sums and tests.
    - ``bootstrap``: percentile-bootstrap resamples for every confidence interval (0 = no intervals).
    - ``permutations``: label permutations for every permutation test (0 = no permutation p-values).
    - ``confidence``: two-sided confidence level of the intervals, e.g. 0.95.
    - ``alpha``: significance level at which adjusted p-values are called significant.
    - ``seed``: seed of every bootstrap and permutation draw (GPI projections use ``gpi_seed``).
    - ``correction``: multiple-comparison correction applied within each test family (``"holm"``).
    - ``distance_interval``: bootstrap interval of the statistics whose plug-in estimate is biased upwards
      (GPI, gpi_sum, gpi_gap, 1-D GPI, metric difference and ratio): ``"basic"`` (reverse percentile,
      default; corrects the bias shift, see docs/fairness.md for measured coverage) or ``"percentile"``.
      Means and medians always use percentile intervals.
    - ``gpi_metric``: the per-image metric of the 1-D GPI variant (``None`` skips it; ``"lpips"`` default;
      skipped with a note when the records lack it).
    - ``gpi_exact_max_n``: exact EMD when the largest group of a grouping has at most this many samples,
      sliced Wasserstein above it (0 = always sliced).
    - ``gpi_projections``: number of random directions of the sliced estimate (50, POT's default). The
      relative Monte-Carlo error for a translation-type difference is about 0.76 / sqrt(K) (11% at 50,
      7.5% at 100); an isotropic change has none; all groups share the directions.
    - ``gpi_seed``: seed of the sliced projections.
    - ``gpi_bootstrap`` / ``gpi_permutations``: resamples for the GPI intervals and the GPI gap test;
      ``None`` means the same as ``bootstrap`` / ``permutations``. Exact EMD costs one transport problem
      per group per resample, so a protocol with large exact groups may want fewer.
    - ``cluster_by``: an attribute naming clusters of dependent samples (``patientid``): intervals then
      resample whole clusters within each group and permutation tests permute group labels between whole
      clusters (:mod:`cals_bench.fairness.clusters`); ``None`` (default) resamples samples.
    - ``gpi_features``: the feature extractors (:mod:`cals_bench.features`) whose reference/output
      embeddings the feature GPI compares; the engine computes them during a run and the audit reads them
      from the store (a list, as written in the protocol).
    """

    group_by: tuple[str, ...] = ()
    min_group_size: int = 20
    bootstrap: int = 1000
    permutations: int = 1000
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0
    correction: Literal["holm", "none"] = "holm"
    distance_interval: Literal["basic", "percentile"] = "basic"
    gpi_metric: str | None = "lpips"
    gpi_exact_max_n: int = 100
    gpi_projections: int = 50
    gpi_seed: int = 0
    gpi_bootstrap: int | None = None
    gpi_permutations: int | None = None
    gpi_features: list[str] = field(default_factory=list)
    # added after the first protocols: left out of a protocol's hashed form at its default
    cluster_by: str | None = added_field(None)

    def __post_init__(self) -> None:
        group_by = self.group_by
        if isinstance(group_by, str):
            group_by = (group_by,)
        if not isinstance(group_by, (list, tuple)):
            raise AuditSettingsError(f"audit setting 'group_by' must be a list of strings, got {group_by!r}")
        cleaned: list[str] = []
        for spec in group_by:
            if not isinstance(spec, str) or not spec.strip():
                raise AuditSettingsError(
                    f"audit setting 'group_by' holds a non-string or empty entry {spec!r}"
                )
            parts = [p.strip() for p in spec.split("*")]
            if any(not p for p in parts):
                raise AuditSettingsError(f"group_by entry {spec!r} has an empty attribute name")
            if len(set(parts)) != len(parts):
                raise AuditSettingsError(f"group_by entry {spec!r} repeats an attribute")
            canonical = "*".join(parts)
            if canonical in cleaned:
                raise AuditSettingsError(f"group_by lists {canonical!r} twice")
            cleaned.append(canonical)
        object.__setattr__(self, "group_by", tuple(cleaned))

        _check_int("min_group_size", self.min_group_size, 1)
        _check_int("bootstrap", self.bootstrap, 0)
        _check_int("permutations", self.permutations, 0)
        _check_open_unit("confidence", self.confidence)
        _check_open_unit("alpha", self.alpha)
        object.__setattr__(self, "confidence", float(self.confidence))
        object.__setattr__(self, "alpha", float(self.alpha))
        _check_int("seed", self.seed, 0)
        _check_int("gpi_seed", self.gpi_seed, 0)
        if self.correction not in ("holm", "none"):
            raise AuditSettingsError(
                f"audit setting 'correction' must be 'holm' or 'none', got {self.correction!r}"
            )
        if self.gpi_metric is not None and (not isinstance(self.gpi_metric, str) or not self.gpi_metric):
            raise AuditSettingsError(
                f"audit setting 'gpi_metric' must be a metric name or null, got {self.gpi_metric!r}"
            )
        if self.distance_interval not in ("basic", "percentile"):
            raise AuditSettingsError(
                "audit setting 'distance_interval' must be 'basic' or 'percentile', "
                f"got {self.distance_interval!r}"
            )
        _check_int("gpi_exact_max_n", self.gpi_exact_max_n, 0)
        _check_int("gpi_projections", self.gpi_projections, 1)
        if self.gpi_bootstrap is not None:
            _check_int("gpi_bootstrap", self.gpi_bootstrap, 0)
        if self.gpi_permutations is not None:
            _check_int("gpi_permutations", self.gpi_permutations, 0)
        if self.cluster_by is not None and (
            not isinstance(self.cluster_by, str) or not self.cluster_by.strip()
        ):
            raise AuditSettingsError(
                f"audit setting 'cluster_by' must be an attribute name or null, got {self.cluster_by!r}"
            )
        features = self.gpi_features
        if isinstance(features, str) or not isinstance(features, (list, tuple)):
            raise AuditSettingsError(
                f"audit setting 'gpi_features' must be a list of names, got {features!r}"
            )
        if not all(isinstance(f, str) and f for f in features):
            raise AuditSettingsError(
                f"audit setting 'gpi_features' holds a non-string or empty entry: {features!r}"
            )
        object.__setattr__(self, "gpi_features", list(features))

    @property
    def n_gpi_bootstrap(self) -> int:
        """Resamples used for GPI intervals."""
        return self.bootstrap if self.gpi_bootstrap is None else self.gpi_bootstrap

    @property
    def n_gpi_permutations(self) -> int:
        """Permutations used for the GPI gap test."""
        return self.permutations if self.gpi_permutations is None else self.gpi_permutations

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> AuditSettings:
        """Build from a mapping (a protocol's YAML section) with the protocol schema's checks: unknown keys
        and wrong types are an error naming the key."""
        try:
            return build(cls, dict(mapping), "audit settings")
        except SchemaError as exc:
            raise AuditSettingsError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable mapping (``from_mapping`` reads it back)."""
        out = dataclasses.asdict(self)
        out["group_by"] = list(self.group_by)
        for key in ("cluster_by", "gpi_features"):  # absent at their defaults, so stored cache keys hold
            if not out[key]:
                del out[key]
        return out
