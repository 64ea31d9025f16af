"""Fairness audit: group tables with bootstrap intervals, GPI, significance tests (pure data, no models).

Entry points: ``audit(records, attributes, settings, directions=...)`` -> ``AuditResult``;
``compare(records_a, records_b, attributes, settings, directions=...)`` -> DataFrame; ``AuditSettings``;
``DEFINITIONS`` (what each number means, with its source). See docs/fairness.md.
"""

from cals_bench.fairness.audit import audit
from cals_bench.fairness.definitions import DEFINITIONS
from cals_bench.fairness.frame import group_tables, wide_records
from cals_bench.fairness.gpi import feature_gpi_tables, metric_gpi_tables
from cals_bench.fairness.groups import Grouping, make_grouping
from cals_bench.fairness.result import AuditResult
from cals_bench.fairness.settings import AuditInputError, AuditSettings, AuditSettingsError
from cals_bench.fairness.significance import across_group_tests, compare, holm
from cals_bench.fairness.wasserstein import exact_w1, sliced_scale, sliced_w1, w1_1d

__all__ = [
    "DEFINITIONS",
    "AuditInputError",
    "AuditResult",
    "AuditSettings",
    "AuditSettingsError",
    "Grouping",
    "across_group_tests",
    "audit",
    "compare",
    "exact_w1",
    "feature_gpi_tables",
    "group_tables",
    "holm",
    "make_grouping",
    "metric_gpi_tables",
    "sliced_scale",
    "sliced_w1",
    "w1_1d",
    "wide_records",
]
