"""Auditing a stored run: stored per-sample records and features in, :class:`AuditResult` out.

Never touches the model: everything comes from the store. The result is saved as ``audit.json`` in the run
folder, so ``cals-bench audit RUN`` and the reports reprint it without recomputation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from cals_bench.fairness import AuditResult, AuditSettings, audit
from cals_bench.store import Store, write_json_atomic

AUDIT_FILE = "audit.json"


def settings_from_protocol(spec: dict[str, Any]) -> AuditSettings:
    """The audit settings declared in a protocol (its validated dict form, as stored in run.json)."""
    audit_spec = {k: v for k, v in (spec.get("audit") or {}).items() if k != "gpi_features"}
    audit_spec["group_by"] = tuple(audit_spec.get("group_by") or ())
    return AuditSettings(**audit_spec)


def attributes_frame(samples: pd.DataFrame) -> pd.DataFrame:
    ok = samples[samples["status"] == "ok"]
    attrs = ok.set_index("sample_id")[[c for c in ok.columns if c.startswith("attr.")]]
    attrs.columns = [c[len("attr.") :] for c in attrs.columns]
    # Missing attribute values stay missing (None), never the string "None"/"nan" (a fake group).
    return attrs.apply(lambda col: col.map(lambda v: None if v is None or v != v else str(v)))


def compute_audit(store: Store, run_ref: str, *, baseline_ref: str | None = None) -> AuditResult:
    meta = store.get_run(run_ref)
    run_id = meta["run_id"]
    settings = settings_from_protocol(meta["protocol"]["spec"])
    records = store.scores(run_id)
    attrs = attributes_frame(store.samples(run_id))
    features = {}
    for name in store.feature_names(run_id):
        ids, ref, out = store.features(run_id, name)
        if ids:
            features[name] = (ref, out, ids)
    # A grouping whose attribute no sample carries (e.g. sex/age on X-rays without their metadata file)
    # is left out with a note instead of failing the audit.
    kept = [g for g in settings.group_by if all(a in attrs.columns for a in g.split("*"))]
    dropped = [g for g in settings.group_by if g not in kept]
    if dropped:
        settings = dataclasses.replace(settings, group_by=tuple(kept))
    baseline = store.scores(baseline_ref) if baseline_ref else None
    labels = (
        (meta["model"]["name"], store.get_run(baseline_ref)["model"]["name"])
        if baseline_ref
        else ("model", "baseline")
    )
    result = audit(
        records,
        attrs,
        settings,
        directions=meta.get("metric_directions", {}),
        features=features or None,
        baseline_records=baseline,
        labels=labels,
    )
    for g in dropped:
        result.notes.append(
            f"grouping {g!r} skipped: no sample has the attribute(s) it needs "
            f"(the dataset's metadata file was not found; attributes present: {sorted(attrs.columns)})"
        )
    return result


def audit_path(store: Store, run_id: str) -> Path:
    return store.run_dir(run_id) / AUDIT_FILE


def save_audit(store: Store, run_id: str, result: AuditResult) -> Path:
    path = audit_path(store, run_id)
    write_json_atomic(path, result.to_dict())
    return path


def load_audit(store: Store, run_ref: str, *, recompute: bool = False) -> AuditResult:
    """The run's stored audit (computed from stored records and saved when absent or ``recompute``)."""
    run_id = store.resolve_run_id(run_ref)
    path = audit_path(store, run_id)
    if path.is_file() and not recompute:
        return AuditResult.from_dict(json.loads(path.read_text()))
    result = compute_audit(store, run_id)
    save_audit(store, run_id, result)
    return result
