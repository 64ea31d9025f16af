"""One audit-settings type: a protocol's ``audit:`` section is the object the fairness audit takes."""

from __future__ import annotations

import pytest

from cals_bench import protocol
from cals_bench.audits import settings_for
from cals_bench.errors import ProtocolError
from cals_bench.fairness import AuditSettings, AuditSettingsError


@pytest.mark.parametrize("name", sorted(protocol.available()))
def test_protocol_audit_is_the_fairness_settings(name):
    proto = protocol.load(name)
    assert type(proto.audit) is AuditSettings
    # a run stores the validated spec; reading it back gives the same settings, with no notes
    settings, notes = settings_for({"protocol": {"spec": proto.to_dict()}})
    assert settings == proto.audit
    assert notes == []


def test_audit_section_is_validated_by_the_schema(tmp_path):
    base = f"include: {protocol.protocol_dir() / 'lol-v1.yaml'}"
    bad = tmp_path / "p.yaml"
    bad.write_text(base + "\naudit:\n  bootstrap: many\n")
    with pytest.raises(ProtocolError, match=r"audit\.bootstrap: expected an integer"):
        protocol.load_file(bad)
    bad.write_text(base + "\naudit:\n  bootstraps: 10\n")
    with pytest.raises(ProtocolError, match=r"audit\.bootstraps: unknown key; did you mean bootstrap\?"):
        protocol.load_file(bad)
    bad.write_text(base + "\naudit:\n  confidence: 1.5\n")  # a value check of the type itself
    with pytest.raises(ProtocolError, match="'confidence' must be a number in \\(0, 1\\)"):
        protocol.load_file(bad)


def test_from_mapping_uses_the_same_checks():
    s = AuditSettings.from_mapping({"group_by": ["a"], "gpi_features": ["alexnet-pooled"], "bootstrap": 5})
    assert s.gpi_features == ["alexnet-pooled"]
    assert s.group_by == ("a",)
    assert AuditSettings.from_mapping(s.to_dict()) == s
    assert "gpi_features" not in AuditSettings().to_dict()  # absent at its default: stored cache keys hold
    with pytest.raises(AuditSettingsError, match="bootstrap: expected an integer"):
        AuditSettings.from_mapping({"bootstrap": "10"})
