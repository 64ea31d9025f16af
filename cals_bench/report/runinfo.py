"""Facts about a stored run that every page shows the same way: flags, model arguments, sample counts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cals_bench.report.formatting import diagnostic_columns, metric_label
from cals_bench.run_record import FINISHED, RunRecord, as_record

__all__ = ["FINISHED", "Flag", "model_args_text", "run_flags", "submission_flags"]


@dataclass(frozen=True)
class Flag:
    """A badge: ``kind`` picks its style (sanity, gt, gtmean, missing, failed), ``title`` explains it."""

    kind: str
    text: str
    title: str


def model_args_text(meta: Mapping[str, Any] | RunRecord) -> str:
    """The model's constructor arguments as compact JSON (keys sorted), empty when there are none.
    ``meta``: a run record, or any mapping with a record's ``model``."""
    model = meta.model if isinstance(meta, RunRecord) else (meta.get("model") or {})
    args = model.get("args") or {}
    return json.dumps(args, sort_keys=True, ensure_ascii=False) if args else ""


def run_flags(meta: Mapping[str, Any] | RunRecord) -> list[Flag]:
    """Flags a reader must see before comparing this run with others."""
    record = as_record(meta)
    model = record.model
    flags: list[Flag] = []
    if model.get("sanity"):
        flags.append(
            Flag(
                "sanity",
                "sanity row",
                "a trivial reference model (identity, gamma, ...): the score of doing "
                "(almost) nothing, kept on every leaderboard as a floor",
            )
        )
    if model.get("uses_ground_truth"):
        flags.append(
            Flag(
                "gt",
                "GT-guided",
                "this model reads the ground-truth reference at test time; its scores are "
                "not comparable with blind methods",
            )
        )
    flags += submission_flags(model)
    gtm = [c for c in diagnostic_columns() if c in (record.summary or {})]
    if gtm:
        flags.append(
            Flag(
                "gtmean",
                "GT-mean columns",
                f"{', '.join(metric_label(c) for c in gtm)}: the output's mean is "
                "rescaled to the reference's before scoring (a diagnostic that uses the ground truth; "
                "inflates LOL PSNR by 2-5 dB); never the headline",
            )
        )
    missing = record.unavailable_metrics or {}
    if missing:
        reasons = "; ".join(f"{k}: {v}" for k, v in missing.items())
        flags.append(Flag("missing", f"missing: {', '.join(missing)}", f"not scored in this run ({reasons})"))
    failures = record.failures or []
    if failures:
        flags.append(
            Flag(
                "failed",
                f"{len(failures)} failed",
                f"{len(failures)} sample(s) could not be scored; means are over the others",
            )
        )
    if not record.is_finished:
        flags.append(
            Flag("missing", f"status: {record.status}", "the run has not finished; figures are partial")
        )
    return flags


def submission_flags(model: Mapping[str, Any]) -> list[Flag]:
    """Kind (code / plugin / outputs) and isolation of a submitted run; 'unisolated code' for user code
    run in the scoring process (``run --model file.py:Class``) or submitted with ``--trusted``."""
    sub = model.get("submission") or {}
    if sub:
        kind = sub.get("kind", "code")
        level = sub.get("isolation", "")
        if kind == "outputs":
            return [
                Flag("small", "outputs", f"submission #{sub.get('id')}: released outputs scored; no code run")
            ]
        if sub.get("isolated"):
            return [
                Flag(
                    "small",
                    f"{kind} \u00b7 sandboxed",
                    f"submission #{sub.get('id')}: {kind} run in its own {level} sandbox that never saw the references",
                )
            ]
        return [
            Flag(
                "gt",
                f"{kind} \u00b7 unisolated code",
                f"submission #{sub.get('id')}: {kind} run without a sandbox (--trusted); it could read files",
            )
        ]
    if model.get("code") == "unisolated":
        return [
            Flag(
                "gt",
                "unisolated code",
                f"{model.get('kind', 'code')} run in the scoring process: it could read the references and "
                "patch the metrics; not comparable with submitted runs",
            )
        ]
    return []
