"""Audits of stored runs: the one link between runs (the store) and the fairness package.

Every call into ``cals_bench.fairness`` made by the CLI and the reports lives here, so a change in the
fairness API touches this module only. Audits are computed from the store's per-sample records and features
(never from model outputs) and cached as ``runs/<run_id>/audit.json``; the cache key covers the run's
identity and finish time, the settings and the fairness schema, so a rescored run or a changed protocol
section is audited afresh. ``cals-bench audit RUN`` reprints it; reports copy it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cals_bench.fairness import (
    DEFINITIONS,
    AuditInputError,
    AuditResult,
    AuditSettings,
    AuditSettingsError,
    audit,
    compare,
    make_grouping,
)
from cals_bench.run_record import RunRecord, as_record
from cals_bench.store import Store

# ``audit:`` keys of protocol specs stored by older versions, under their current names.
_RENAMED = {"error_metric": "gpi_metric"}

__all__ = [
    "DEFINITIONS",
    "AuditResult",
    "attributes_frame",
    "audit_run",
    "cached_audit",
    "compare_runs",
    "finite_records",
    "group_labels",
    "settings_for",
]


def settings_for(meta: RunRecord | Mapping[str, Any]) -> tuple[AuditSettings, list[str]]:
    """The run's audit settings (the protocol's ``audit`` section, one type: :class:`AuditSettings`), and
    notes on stored keys that were not used. ``meta``: a run record, or any mapping with its
    ``protocol.spec``.

    A stored spec is what the protocol was when the run was made, so it is read leniently: older specs'
    ``error_metric`` is ``gpi_metric`` and, lacking ``gpi_seed``, their sliced-GPI projections are seeded
    with the audit seed; a key the settings no longer know is left out with a note.
    """
    protocol_spec = meta.protocol.spec if isinstance(meta, RunRecord) else meta["protocol"]["spec"]
    spec = dict(protocol_spec.get("audit") or {})
    known = {f.name for f in dataclasses.fields(AuditSettings)}
    values: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in spec.items():
        name = _RENAMED.get(key, key)
        if name in known:
            values[name] = value
        else:
            notes.append(f"protocol audit key {key!r} has no counterpart in the fairness settings (ignored)")
    if "gpi_seed" not in values and "seed" in values:
        values["gpi_seed"] = values["seed"]
    return AuditSettings.from_mapping(values), notes


def attributes_frame(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-sample attributes (index sample_id, one column per attribute, None where missing) of the
    scored samples, from ``Store.samples``."""
    cols = [c for c in samples.columns if c.startswith("attr.")]
    ok = samples[samples["status"] == "ok"]
    attrs = ok.set_index("sample_id")[cols].copy()
    attrs.columns = [c[len("attr.") :] for c in cols]
    return attrs.astype(object).where(attrs.notna(), None)


def finite_records(records: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Records with infinite values set to NaN, and a note per metric that had some.

    The store keeps ``inf`` (PSNR of an output identical to its reference); the audit takes finite values
    or NaN only, so such samples count as undefined there and the report says so.
    """
    values = records["value"].astype(float)
    bad = ~values.isna() & ~np.isfinite(values.to_numpy())
    if not bad.any():
        return records, []
    notes = [
        f"{int(n)} value(s) of {metric} are infinite (e.g. PSNR of an output identical to its reference); "
        "the audit counts them as undefined"
        for metric, n in records.loc[bad, "metric"].value_counts().sort_index().items()
    ]
    out = records.copy()
    out.loc[bad, "value"] = np.nan
    return out, notes


def group_labels(
    attributes: pd.DataFrame, settings: AuditSettings, sample_ids: list[str]
) -> dict[str, pd.Series]:
    """``{grouping name: group label per sample}`` (None where an attribute is missing), as the audit
    groups them."""
    out = {}
    for spec in settings.group_by:
        g = make_grouping(spec, sample_ids, attributes)
        out[g.name] = pd.Series(list(g.labels), index=list(g.sample_ids), dtype=object)
    return out


def _features(
    store: Store, run_id: str, keep: set[str] | None = None
) -> dict[str, tuple[Any, Any, list[str]]]:
    """The run's GPI feature vectors by extractor: (reference, output, sample ids), only ``keep``'s samples
    when given."""
    out = {}
    for name in store.feature_names(run_id):
        ids, ref, outputs = store.features(run_id, name)
        if keep is not None and ids:
            mask = np.array([i in keep for i in ids])
            ref, outputs, ids = ref[mask], outputs[mask], [i for i, m in zip(ids, mask) if m]
        if ids:
            out[name] = (ref, outputs, ids)
    return out


def run_inputs(
    store: Store, run_id: str, where: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[Any, Any, list[str]]], list[str]]:
    """What the audit reads of a stored run: finite records, per-sample attributes, GPI features and the
    notes on infinite values; with ``where`` (e.g. ``{"context": "face"}``) only the samples whose
    attributes all match (an attribute the run does not have matches none)."""
    records, notes = finite_records(store.scores(run_id))
    attrs = attributes_frame(store.samples(run_id))
    if not where:
        return records, attrs, _features(store, run_id), notes
    keep_rows = pd.Series(True, index=attrs.index)
    for k, v in where.items():
        keep_rows &= attrs[k].astype(str) == str(v) if k in attrs.columns else False
    keep = set(attrs.index[keep_rows])
    records = records[records["sample_id"].isin(keep)]
    return records, attrs.loc[sorted(keep)], _features(store, run_id, keep), notes


def _cache_key(meta: RunRecord | Mapping[str, Any], settings: AuditSettings, features: list[str]) -> str:
    record = as_record(meta)
    ident = {
        "run_id": record.run_id,
        "run_key": record.run_key,
        "finished": record.finished,
        "finished_at": record.finished_at,
        "settings": settings.to_dict(),
        "schema": AuditResult.schema,
        "features": sorted(features),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def audit_run(
    store: Store,
    meta: RunRecord | Mapping[str, Any],
    *,
    where: Mapping[str, str] | None = None,
    group_by: tuple[str, ...] | None = None,
) -> tuple[AuditResult, list[str]]:
    """Audit one stored run with its protocol's settings; returns the result and the report's notes.

    ``where`` restricts it to a subset of the samples (:func:`run_inputs`) and ``group_by`` replaces the
    protocol's groupings (e.g. race, gender within the face context of a ``cals-contexts`` run)."""
    record = as_record(meta)
    settings, notes = _settings(record, group_by)
    records, attrs, features, inf_notes = run_inputs(store, record.run_id, where)
    notes += inf_notes
    directions = dict(record.metric_directions)
    try:
        result = audit(records, attrs, settings, directions=directions, features=features or None)
    except (AuditInputError, AuditSettingsError) as exc:
        # A report is still worth having: overall figures only, and the reason on the page.
        notes.append(f"the audit with the protocol's groups and GPI failed ({exc}); overall figures only")
        settings = dataclasses.replace(settings, group_by=(), gpi_metric=None)
        result = audit(records, attrs, settings, directions=directions)
    return result, notes


def cached_audit(
    store: Store, meta: RunRecord | Mapping[str, Any], cache_file: Path
) -> tuple[AuditResult, list[str]]:
    """``audit_run`` through a JSON cache at ``cache_file`` (written atomically)."""
    record = as_record(meta)
    settings, _ = settings_for(record)
    key = _cache_key(record, settings, store.feature_names(record.run_id))
    if cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text())
            if data.get("cache_key") == key:
                return AuditResult.from_dict(data), list(data.get("report_notes", []))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable or from another schema: recompute
    result, notes = audit_run(store, record)
    payload = {**result.to_dict(), "cache_key": key, "run_id": record.run_id, "report_notes": notes}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=False))
    os.replace(tmp, cache_file)
    return result, notes


def compare_runs(
    store: Store,
    meta_a: RunRecord | Mapping[str, Any],
    meta_b: RunRecord | Mapping[str, Any],
    labels: tuple[str, str] = ("A", "B"),
    *,
    where: Mapping[str, str] | None = None,
    group_by: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, AuditSettings]:
    """Paired comparison of two runs (fairness ``compare``) with run A's protocol settings (``where`` and
    ``group_by`` as in :func:`audit_run`)."""
    run_a, run_b = as_record(meta_a), as_record(meta_b)
    settings, _ = _settings(run_a, group_by)
    directions = {**run_b.metric_directions, **run_a.metric_directions}
    rec_a, attrs, _, _ = run_inputs(store, run_a.run_id, where)
    rec_b = run_inputs(store, run_b.run_id, where)[0]
    table = compare(
        rec_a, rec_b, attrs, settings, directions=directions, label_a=labels[0], label_b=labels[1]
    )
    return table, settings


def _settings(record: RunRecord, group_by: tuple[str, ...] | None) -> tuple[AuditSettings, list[str]]:
    settings, notes = settings_for(record)
    if group_by is not None:
        settings = dataclasses.replace(settings, group_by=tuple(group_by))
    return settings, notes


AUDIT_FILE = "audit.json"


def load_audit(store: Store, run_ref: str, *, recompute: bool = False) -> tuple[AuditResult, list[str]]:
    """The run's audit from its cache in the run folder (computed from stored records when stale)."""
    record = store.get_record(run_ref)
    path = store.run_dir(record.run_id) / AUDIT_FILE
    if recompute:
        path.unlink(missing_ok=True)
    return cached_audit(store, record, path)
