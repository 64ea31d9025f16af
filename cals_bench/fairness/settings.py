"""The audit settings, under the fairness package's name (the type lives in :mod:`cals_bench.audit_settings`,
which protocols import without loading the numerical stack)."""

from cals_bench.audit_settings import AuditInputError, AuditSettings, AuditSettingsError

__all__ = ["AuditInputError", "AuditSettings", "AuditSettingsError"]
