"""The evaluation loop: a model x a protocol -> per-sample records in the store.

The engine owns everything the model should not: device choice (CUDA when present), batching of same-size
samples, reflect padding to the model's ``pad_multiple`` and cropping back, a fixed seed per batch,
``torch.inference_mode``, per-sample timing, validation of what the model returns, 8-bit quantisation
before scoring, the reference-feature cache, and writing records as it goes (one transaction per batch) so
that an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shlex
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cals_bench import limits, numbers, provenance, run_record, sharding
from cals_bench.data.datasets import Sample, check_checksums, load_samples
from cals_bench.data.io import decoded_images, to_tensor, to_uint8, write_png
from cals_bench.enhancer import Enhancer, load_enhancer
from cals_bench.errors import CalsBenchError, DataError, ModelOutputError, SampleError
from cals_bench.metrics import Metric, SampleContext, build_metric, noreference, quantize
from cals_bench.padding import pad_to_multiple
from cals_bench.protocol import Protocol
from cals_bench.run_record import ProtocolRef, RunRecord
from cals_bench.store import Store, output_name, slug

# Outputs may exceed [0, 1] by this much (float rounding) before the engine calls them out of range.
RANGE_TOLERANCE = 1e-3
# A model that fails on this many batches in a row, with nothing scored, stops the run.
MAX_LEADING_FAILURES = 3
# Images above this many pixels fail their sample unless the protocol sets max_pixels (SSIM and LPIPS
# of one 8000x8000 pair need tens of GiB; 4096x4096 fits every metric in a few GiB).
DEFAULT_MAX_PIXELS = 4096 * 4096


@dataclass
class RunResult:
    """A scored (or reused) run: its typed record (:class:`cals_bench.run_record.RunRecord`), its folder,
    and whether an earlier identical run was reused instead of scoring."""

    record: RunRecord
    run_dir: Path
    reused: bool = False

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def meta(self) -> dict[str, Any]:
        """The record's JSON form (what run.json holds)."""
        return self.record.to_json()

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        return self.record.summary or {}

    @property
    def failures(self) -> list[tuple[str, str]]:
        """(sample_id, error) of every failed sample."""
        return [tuple(f) for f in self.record.failures or []]

    @property
    def metric_failures(self) -> list[tuple[str, str, str]]:
        """(sample_id, metric column, reason) where a metric raised."""
        return [tuple(f) for f in self.record.metric_failures or []]

    def to_json(self) -> dict[str, Any]:
        """What ``cals-bench run --json`` prints for this run."""
        rec = self.record
        return {
            "run_id": rec.run_id,
            "run_dir": str(self.run_dir),
            "protocol": {
                "name": rec.protocol.name,
                "version": rec.protocol.version,
                "hash": rec.protocol.hash,
            },
            "model": {k: rec.model.get(k) for k in ("name", "spec", "args", "weights")},
            "metrics": self.summary,
            "n_samples": rec.n_samples,
            "n_failed": len(self.failures),
            "failures": [{"sample_id": s, "error": e} for s, e in self.failures],
            "unavailable_metrics": rec.unavailable_metrics,
            "metric_failures": [
                {"sample_id": s, "metric": m, "error": e} for s, m, e in self.metric_failures
            ],
            "reused": self.reused,
            "status": rec.status,
        }


@dataclass
class Scoring:
    """What the scoring loop of one session works with: the protocol, the model, metrics and feature
    extractors on their device, the store, and the run being scored (its record and folder)."""

    protocol: Protocol
    enhancer: Enhancer
    metrics: list[Metric]
    extractors: list[Any]
    store: Store
    device: torch.device
    batch_size: int
    save_outputs: bool
    progress: bool
    record: RunRecord
    run_dir: Path


@dataclass
class _Plan:
    """A run as worked out before its lock is taken: the inputs that name it (its key) and the rest of
    what its record will say."""

    samples: list[Sample]
    root: Path | None
    key: str
    base_id: str
    model_meta: dict[str, Any]
    metrics_meta: list[dict[str, Any]]
    unavailable: dict[str, str]
    batch_size: int
    batch_timeout_s: float
    command: list[str] | None
    force: bool
    save_outputs: bool
    progress: bool


def pick_device(requested: str | None = None) -> torch.device:
    """The torch device to run on: the one requested (refused with a one-line error when unusable here), else CUDA when available, else the CPU."""
    if requested:
        try:
            dev = torch.device(requested)
        except (RuntimeError, ValueError) as exc:
            raise CalsBenchError(
                f"device {requested!r} is not a device name (cpu, cuda, cuda:N, mps)"
            ) from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise CalsBenchError(f"device {requested!r} requested but CUDA is not available")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise CalsBenchError(
                    f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) (cuda:0...)"
                )
        elif dev.type == "mps":
            if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
                raise CalsBenchError(f"device {requested!r} requested but MPS is not available")
        elif dev.type != "cpu":
            raise CalsBenchError(f"device {requested!r} cannot run models here (cpu, cuda, cuda:N, mps)")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _validate_output(out: Any, expected: tuple[int, ...], model: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(f"model {model} returned {type(out).__name__}, expected a torch.Tensor")
    if tuple(out.shape) != expected:
        raise ModelOutputError(f"model {model} returned shape {tuple(out.shape)}, expected {expected}")
    if not out.is_floating_point():
        raise ModelOutputError(f"model {model} returned dtype {out.dtype}, expected a float tensor in [0, 1]")
    return out.float()


def _check_values(out: torch.Tensor, model: str) -> str | None:
    """The reason one image is invalid (NaN/Inf or out of range), or None."""
    lo_hi = torch.aminmax(out)  # one pass (was four); NaN propagates to both, +-Inf shows in one
    lo, hi = float(lo_hi.min), float(lo_hi.max)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n = int((~torch.isfinite(out)).sum())
        return f"model {model} returned {n} NaN/Inf values"
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        return f"model {model} returned values in [{lo:.4g}, {hi:.4g}], outside [0, 1]"
    return None


def _batches(
    samples: list[Sample], batch_size: int, max_pixels: int | None = None, pixel_cache: Any = None
) -> Iterator[list[tuple[Sample, Any]]]:
    """Load samples in order and group consecutive same-size ones; failed loads come as 1-item groups.
    ``pixel_cache`` (the store's feature cache) keeps decoded PNG pixels for the next model
    (:func:`cals_bench.data.io.decoded_images`)."""
    batch: list[tuple[Sample, Any]] = []
    shape = None
    for s in samples:
        try:
            with decoded_images(pixel_cache):
                pair = s.load()
            h, w = pair[0].shape[:2]
            if max_pixels and h * w > max_pixels:
                where = s.low_path or s.high_path or s.sample_id
                raise SampleError(
                    f"{where}: image is {w}x{h} = {h * w} pixels, above the protocol's max_pixels {max_pixels}"
                )
        except (SampleError, DataError) as exc:
            if batch:
                yield batch
                batch, shape = [], None
            yield [(s, exc)]
            continue
        if batch and (pair[0].shape != shape or len(batch) >= batch_size):
            yield batch
            batch = []
        batch.append((s, pair))
        shape = pair[0].shape
    if batch:
        yield batch


def _face_mask(protocol: Protocol, samples: list[Sample]) -> list[bool]:
    rule = protocol.face_samples
    if not rule:
        return [True] * len(samples)
    return [all(s.attributes.get(k) in set(v) for k, v in rule.items()) for s in samples]


def build_metrics(protocol: Protocol, extra: tuple[str, ...] = ()) -> tuple[list[Metric], dict[str, str]]:
    """The protocol's metrics that can run here, and {name: reason} for those that cannot."""
    metrics, unavailable = [], {}
    from cals_bench.metrics import METRICS

    for name in dict.fromkeys([*protocol.all_metrics, *extra]):
        if name not in METRICS and METRICS.import_errors():
            failed = "; ".join(f"{m}: {e}" for m, e in METRICS.import_errors().items())
            unavailable[name] = (
                f"metric {name!r} is not registered because a metric module failed to import ({failed})"
            )
            continue
        metric = build_metric(name, **protocol.metric_options.get(name, {}))
        unusable = noreference.unusable_reason(protocol, metric)
        ok, reason = (False, unusable) if unusable else metric.available()
        if ok:
            metrics.append(metric)
        else:
            unavailable[name] = reason
    return metrics, unavailable


def build_extractors(protocol: Protocol) -> tuple[list[Any], dict[str, str]]:
    """Feature extractors for the GPI audit (identity embeddings, pooled backbone features)."""
    extractors, unavailable = [], {}
    if not protocol.audit.gpi_features or not protocol.audit.group_by:
        return extractors, unavailable  # GPI compares groups: without group_by no audit reads features
    try:
        from cals_bench import features
    except ImportError as exc:
        return [], {name: f"feature extractors unavailable: {exc}" for name in protocol.audit.gpi_features}
    for name in protocol.audit.gpi_features:
        try:
            ext = features.build_extractor(name)
        except Exception as exc:  # reported in the run record
            unavailable[name] = str(exc)
            continue
        ok, reason = ext.available()
        if ok:
            extractors.append(ext)
        else:
            unavailable[name] = reason
    return extractors, unavailable


def summarise(
    scores: list[tuple[str, str, float]], directions: dict[str, bool]
) -> dict[str, dict[str, float]]:
    """Per metric column: mean, median, sd, count and undefined count (NaN and +-inf are left out)."""
    by: dict[str, list[float]] = {}
    for _sid, metric, value in scores:
        by.setdefault(metric, []).append(value)
    out = {}
    for metric, values in by.items():
        arr = np.asarray(values, dtype=float)
        finite = numbers.defined_values(arr)  # NaN and +-inf are undefined (cals_bench.numbers)
        out[metric] = {
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "median": float(np.median(finite)) if finite.size else float("nan"),
            "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
            "count": int(finite.size),
            "undefined": int(arr.size - finite.size),
            "higher_is_better": directions.get(metric),
        }
    return out


def evaluate(
    protocol: Protocol,
    model: str | Enhancer,
    model_args: dict[str, Any] | None = None,
    *,
    data_root: str | Path | None = None,
    store: Store | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    force: bool = False,
    extra_metrics: tuple[str, ...] = (),
    save_outputs: bool = True,
    progress: bool = True,
    command: list[str] | None = None,
    batch_timeout: float | None = None,
) -> RunResult:
    """Score ``model`` on ``protocol``; resume an interrupted run with the same inputs; reuse a finished one.

    ``force`` scores again and replaces the finished run only once the new one has finished (until then the
    old run, its records and outputs stay). ``batch_timeout`` (seconds, 0: none) overrides the protocol's
    ``batch_timeout_s``. A model's ``sys.exit``/``os._exit`` fails its batch (:mod:`cals_bench.limits`).
    """
    if batch_size is not None and batch_size < 1:
        raise CalsBenchError(f"--batch-size must be >= 1, got {batch_size}")
    if batch_timeout is not None and not batch_timeout >= 0:
        raise CalsBenchError(f"--batch-timeout must be >= 0 seconds (0: no limit), got {batch_timeout}")
    pick_device(device)  # an invalid device is refused before anything is read or stored
    with limits.exit_guard():
        return _evaluate(
            protocol,
            model,
            model_args,
            data_root=data_root,
            store=store,
            device=device,
            batch_size=batch_size,
            force=force,
            extra_metrics=extra_metrics,
            save_outputs=save_outputs,
            progress=progress,
            command=command,
            batch_timeout=batch_timeout,
        )


def _evaluate(
    protocol: Protocol,
    model: str | Enhancer,
    model_args: dict[str, Any] | None,
    *,
    data_root: str | Path | None,
    store: Store | None,
    device: str | None,
    batch_size: int | None,
    force: bool,
    extra_metrics: tuple[str, ...],
    save_outputs: bool,
    progress: bool,
    command: list[str] | None,
    batch_timeout: float | None,
) -> RunResult:
    store = store or Store()
    root, samples = load_samples(protocol, data_root)
    problems = check_checksums(protocol, root)
    if problems:
        raise DataError(f"{problems[0]} ({len(problems)} file(s) differ from protocol {protocol.name})")
    expected = protocol.dataset.expected_count
    if expected is not None and len(samples) != expected:
        raise DataError(f"{root}: found {len(samples)} samples, protocol {protocol.name} expects {expected}")

    if isinstance(model, Enhancer):
        enhancer = model
    else:
        try:
            with limits.model_code():
                enhancer = load_enhancer(model, model_args)
        except limits.ModelExit as exc:
            raise CalsBenchError(f"model {model} {exc} while loading") from exc
    spec = model if isinstance(model, str) else enhancer.name
    metrics, unavailable = build_metrics(protocol, extra_metrics)
    noreference.check_model(protocol, enhancer)
    extractors, unavailable_features = build_extractors(protocol)
    if extractors:  # one backbone pass per image: extractors reuse the metrics' features of a batch
        from cals_bench.features import share_backbones

        share_backbones(metrics, extractors)
    dev = pick_device(device)
    shard = sharding.current()  # under torchrun: this rank's share of the samples (cals_bench.sharding)
    if shard:
        dev = shard.place(dev)

    from cals_bench.submit.naming import inprocess_provenance

    # user code run here is labelled "unisolated code" and cannot pass for a registered model
    model_meta = {**enhancer.metadata(), "spec": spec, **inprocess_provenance(model, enhancer)}
    metrics_meta = [m.metadata() for m in metrics]
    key = provenance.run_key(protocol, model_meta, metrics_meta, provenance.data_identity(protocol, root))

    base_id = f"{slug(protocol.name)}__{slug(enhancer.name)}__{key[:10]}"
    plan = _Plan(
        samples=samples,
        root=root,
        key=key,
        base_id=base_id,
        model_meta=model_meta,
        metrics_meta=metrics_meta,
        unavailable={**unavailable, **unavailable_features},
        batch_size=batch_size or protocol.batch_size,
        batch_timeout_s=_batch_timeout(protocol, batch_timeout),
        command=command,
        force=force,
        save_outputs=save_outputs,
        progress=progress,
    )
    lock = f"{base_id}-{key[10:26]}"
    with store.run_lock(shard.lock_name(lock) if shard else lock, base_id):
        return _evaluate_locked(protocol, enhancer, metrics, extractors, store, dev, plan)


def _new_record(
    protocol: Protocol,
    metrics: list[Metric],
    extractors: list[Any],
    dev: torch.device,
    run_id: str,
    plan: _Plan,
) -> RunRecord:
    """The record of a run about to start (the summary and timing come when it finishes)."""
    return RunRecord(
        run_id=run_id,
        run_key=plan.key,
        protocol=ProtocolRef(
            protocol.name, protocol.version, protocol.hash, protocol.title, protocol.to_dict()
        ),
        model=plan.model_meta,
        metrics=plan.metrics_meta,
        metric_directions={c: hib for m in metrics for c, hib in m.columns.items()},
        features=[e.metadata() for e in extractors],
        unavailable_metrics=plan.unavailable,
        data_root=str(plan.root) if plan.root else None,
        n_samples=len(plan.samples),
        seed=protocol.seed,
        environment=provenance.environment(dev),
        command=shlex.join(plan.command) if plan.command else None,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        sessions=[],
        batch_size=plan.batch_size,
    )


def _check_resume_settings(record: RunRecord, dev: torch.device, batch_size: int) -> None:
    """Refuse to resume a run on another kind of device or with another batch size: one run's records
    must come from one setting (a GPU's float results differ from a CPU's; batching can change a model's
    numbers), and the run key deliberately leaves both out so that the same run is found again."""
    started_on = str(record.environment.get("device") or "")
    was = torch.device(started_on).type if started_on else None
    mixed = []
    if was is not None and was != dev.type:
        mixed.append(f"device {was} (now {dev.type})")
    if record.batch_size is not None and record.batch_size != batch_size:
        mixed.append(f"batch size {record.batch_size} (now {batch_size})")
    if mixed:
        raise CalsBenchError(
            f"run {record.run_id} was started with {' and '.join(mixed)}; resuming it would mix settings in "
            f"one run's records: resume with --device {was or dev.type} --batch-size "
            f"{record.batch_size or batch_size}"
        )


def _evaluate_locked(
    protocol: Protocol,
    enhancer: Enhancer,
    metrics: list[Metric],
    extractors: list[Any],
    store: Store,
    dev: torch.device,
    plan: _Plan,
) -> RunResult:
    shard = sharding.current()
    if shard:
        shard.wait_for_rank0()  # rank 0 looks the run up and creates it first
    runs = store.runs_with_key(plan.key)
    finished = [r for r, status in runs if status in run_record.FINISHED]
    unfinished = [r for r, status in runs if status not in run_record.FINISHED]
    if finished and not plan.force:
        if shard:
            shard.rank0_ready()
        existing = store.get_record(finished[0])
        return RunResult(existing, store.run_dir(existing.run_id), reused=True)
    # --force: the finished run stays until its replacement has finished (then replace_run drops it)
    replaces = finished[0] if finished else None
    if unfinished:
        record = store.get_record(unfinished[0])
        _check_resume_settings(record, dev, plan.batch_size)
    else:
        taken = {r for r, _ in runs}
        run_id = plan.base_id
        n = 2
        while run_id in taken:
            run_id, n = f"{plan.base_id}-{n}", n + 1
        record = _new_record(protocol, metrics, extractors, dev, run_id, plan)
    run_id = record.run_id
    if replaces:
        record.replaces = replaces
    record.batch_timeout_s = plan.batch_timeout_s
    if shard:
        shard.annotate(record.extra)  # the launch's world size: a key this record version does not type
    run_dir = store.run_dir(run_id) if unfinished else store.create_run(run_id, plan.key, record)
    if shard:
        shard.rank0_ready()

    done = store.done_ids(run_id)
    pending = [s for s in plan.samples if s.sample_id not in done]
    if shard:
        pending = shard.mine(plan.samples, pending)
    enhancer.to(dev)
    for m in metrics:
        m.to(dev)
        m.attach_cache(store.feature_cache())
    for e in extractors:
        e.to(dev)
        e.attach_cache(store.feature_cache())

    session = Scoring(
        protocol, enhancer, metrics, extractors, store, dev, plan.batch_size, plan.save_outputs, plan.progress,
        record, run_dir,
    )  # fmt: skip
    session_start = time.time()
    try:
        failures = _score(session, pending, len(done), len(plan.samples))
    except CalsBenchError as exc:  # the model failed every batch tried: the run is stopped, with the reason
        record.stopped_reason = str(exc)
        record.status = "stopped"
        store.update_meta(run_id, record, status="stopped")
        if shard:
            shard.finished(False, 0)
        raise
    if shard:  # every rank has scored its shard; rank 0 alone finalises from the merged records
        all_ok, scored_all = shard.finished(True, len(pending) - len(failures))
        if not all_ok:
            raise CalsBenchError(
                f"stopping: another rank of run {run_id} stopped (run the command again to resume)"
            )
        if shard.rank != 0:  # this rank's failures only; rank 0 writes the run's
            return RunResult(dataclasses.replace(record, summary={}, failures=failures), run_dir)

    scores_df = store.scores(run_id)
    summary = summarise(list(scores_df.itertuples(index=False, name=None)), record.metric_directions)
    samples_df = store.samples(run_id)
    failed = samples_df[samples_df["status"] != "ok"]
    all_failures = list(zip(failed["sample_id"], failed["error"]))
    record.sessions = [
        *record.sessions,
        {
            "start": session_start,
            "seconds": time.time() - session_start,
            "scored": len(pending) - len(failures),
            "device": str(dev),
            "batch_size": plan.batch_size,
        },
    ]
    if shard:
        record.sessions[-1].update(scored=scored_all, world_size=shard.world_size)
    ok_times = samples_df.loc[samples_df["status"] == "ok", "time_ms"].astype(float)
    record.timing = {
        "model_ms_per_sample_mean": float(ok_times.mean()) if len(ok_times) else None,
        "model_ms_per_sample_median": float(ok_times.median()) if len(ok_times) else None,
        "wall_seconds": sum(s["seconds"] for s in record.sessions),
    }
    record.summary = summary
    record.failures = all_failures
    record.undefined_reasons = _undefined_reasons(samples_df)
    record.metric_failures = _metric_failures(samples_df)
    status = "finished" if not all_failures and not record.metric_failures else "finished-with-failures"
    record.status = status
    record.stopped_reason = None  # a stopped run that was resumed to the end
    record.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    store.export(run_id, "parquet", run_dir / "records.parquet")
    store.update_meta(run_id, record, status=status)
    if replaces:
        store.replace_run(replaces, run_id)
    return RunResult(record, run_dir)


def _batch_timeout(protocol: Protocol, override: float | None) -> float:
    """Seconds one batch may take in the model: the CLI's value, else the protocol's, else the default."""
    if override is not None:
        return float(override)
    value = getattr(protocol, "batch_timeout_s", None)
    return float(limits.DEFAULT_BATCH_TIMEOUT_S if value is None else value)


def _metric_failures(samples_df) -> list[tuple[str, str, str]]:
    """(sample, metric column, reason) where a metric raised (recorded as "<metric> failed: ..."), as
    opposed to a value that is undefined by definition (no face found)."""
    out = []
    for sid, notes in zip(samples_df.get("sample_id", []), samples_df.get("notes", [])):
        for col, reason in (json.loads(notes) if notes else {}).items():
            if isinstance(reason, str) and _METRIC_FAILED in reason:
                out.append((sid, col, reason))
    return out


_METRIC_FAILED = " failed: "


def _undefined_reasons(samples_df) -> dict[str, int]:
    counts: dict[str, int] = {}
    for notes in samples_df.get("notes", []):
        for _metric, reason in (json.loads(notes) if notes else {}).items():
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def batch_seed(seed: int, first_sample_id: str) -> int:
    """The seed of one batch, from the protocol's seed and the batch's first sample id (the same batch gets the same seed on every resume)."""
    return (int(seed) * 1_000_003 + zlib.crc32(first_sample_id.encode())) % (2**31 - 1)


def _score(session: Scoring, pending: list[Sample], n_done: int, n_total: int) -> list[tuple[str, str]]:
    """Score ``pending`` samples in batches, writing each batch's records; the samples that failed."""
    protocol, enhancer, store, dev = session.protocol, session.enhancer, session.store, session.device
    metrics, extractors, run_id = session.metrics, session.extractors, session.record.run_id
    from tqdm import tqdm

    failures: list[tuple[str, str]] = []
    leading_failures = 0
    scored_any = n_done > 0
    bar = tqdm(
        total=n_total,
        initial=n_done,
        desc=f"{protocol.name} x {enhancer.name}",
        unit="img",
        disable=not session.progress,
        file=sys.stderr,
    )

    def fail(s: Sample, error: str) -> None:
        failures.append((s.sample_id, error))
        store.write_batch(
            run_id,
            [{"sample_id": s.sample_id, "status": "failed", "error": error, "attributes": s.attributes}],
            [],
        )
        bar.write(f"[cals-bench] {s.sample_id}: {error}", file=sys.stderr)

    max_pixels = getattr(protocol, "max_pixels", None) or DEFAULT_MAX_PIXELS
    timeout = float(session.record.batch_timeout_s or 0.0)

    def hard_timeout(batch: list[Sample]):
        def stop(reason: str) -> None:  # runs in the watchdog thread; the main thread is stuck in C code
            msg = f"model {enhancer.name} {reason}"
            rows = [
                {"sample_id": s.sample_id, "status": "failed", "error": msg, "attributes": s.attributes}
                for s in batch
            ]
            store.write_batch(run_id, rows, [])
            stopped = dataclasses.replace(session.record, stopped_reason=msg, status="stopped")
            store.update_meta(run_id, stopped, status="stopped")
            limits.hard_stop(f"stopping: {msg}; the run is marked stopped (rerun to resume)")

        return stop

    for group in _batches(pending, session.batch_size, max_pixels, store.feature_cache()):
        if len(group) == 1 and isinstance(group[0][1], Exception):
            fail(group[0][0], str(group[0][1]))
            bar.update(1)
            continue
        batch = [s for s, _ in group]
        low = torch.stack([to_tensor(p[0]) for _, p in group]).to(dev)
        high = noreference.stack_references(group, dev)  # None: unpaired samples
        try:
            if hasattr(enhancer, "start_batch"):  # scored outputs (cals_bench.submit.outputs) need the ids
                enhancer.start_batch([s.sample_id for s in batch])
            with limits.model_call(timeout, hard_timeout(batch)):
                out, ms = _run_model(enhancer, low, high, batch_seed(protocol.seed, batch[0].sample_id), dev)
        except (Exception, limits.ModelTimeout) as exc:  # a model that raises fails its samples
            if isinstance(exc, ModelOutputError):
                msg = exc.args[0]
            elif isinstance(exc, (limits.ModelExit, limits.ModelTimeout)):
                msg = f"model {enhancer.name} {exc}"
            else:
                msg = f"model {enhancer.name} raised {type(exc).__name__}: {exc}"
            for s in batch:
                fail(s, msg)
            bar.update(len(batch))
            leading_failures += 1
            if not scored_any and leading_failures >= MAX_LEADING_FAILURES:
                bar.close()
                raise CalsBenchError(f"stopping: {msg} (on every sample tried so far)") from exc
            continue
        # Per-image validation: a bad image fails alone.
        good = []
        for i, s in enumerate(batch):
            reason = _check_values(out[i], enhancer.name)
            if reason:
                fail(s, reason)
            else:
                good.append(i)
        if not good:
            bar.update(len(batch))
            continue
        out_q = quantize(_rows(out, good))
        high_g = None if high is None else _rows(high, good)
        low_g = _rows(low, good)
        gsamples = [batch[i] for i in good]
        contexts = [
            SampleContext(s.sample_id, s.reference_key(), low_g[j], s.attributes)
            for j, s in enumerate(gsamples)
        ]
        rows, scores, feats = _score_group(protocol, metrics, extractors, gsamples, contexts, out_q, high_g)
        for j, s in enumerate(gsamples):
            rows[j].update(time_ms=ms / len(batch), height=int(out_q.shape[-2]), width=int(out_q.shape[-1]))
            if session.save_outputs:
                write_png(session.run_dir / "outputs" / f"{output_name(s.sample_id)}.png", to_uint8(out_q[j]))
        store.write_batch(run_id, rows, scores, feats)
        scored_any = True
        leading_failures = 0
        bar.update(len(batch))
    bar.close()
    return failures


@contextlib.contextmanager
def flush_denormals(dev: torch.device):
    """Run a model on the CPU with subnormal floats flushed to zero, then restore torch's default.

    Published weights can hold subnormal values (Zero-DCE's Epoch99.pth has 19,267) that make x86 CPUs
    take a slow path on every multiply: 83 s vs 1.8 s CPU for three LOL-v1 images, with byte-identical
    8-bit outputs. GPUs flush by default; this makes the CPU do the same while the model runs.
    """
    if dev.type != "cpu":
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _run_model(enhancer: Enhancer, low: torch.Tensor, high: torch.Tensor, seed: int, dev: torch.device):
    torch.manual_seed(seed)
    multiple = max(1, int(enhancer.pad_multiple))
    x = pad_to_multiple(low, multiple)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    with torch.inference_mode(), flush_denormals(dev):
        if enhancer.uses_ground_truth:
            out = enhancer.enhance_with_reference(x, pad_to_multiple(high, multiple))
        else:
            out = enhancer.enhance(x)
        out = _validate_output(out, tuple(x.shape), enhancer.name)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    ms = (time.perf_counter() - t0) * 1000.0
    h, w = low.shape[-2:]
    return out[..., :h, :w], ms


def _rows(t: torch.Tensor, sel: list[int]) -> torch.Tensor:
    """``t``'s rows ``sel``: ``t`` itself when that is every row (no copy, no index tensor)."""
    if len(sel) == t.shape[0] and sel == list(range(len(sel))):
        return t
    return t.index_select(0, torch.tensor(sel, device=t.device))


def _score_group(protocol, metrics, extractors, samples, contexts, out_q, high):
    face = _face_mask(protocol, samples)
    rows = [
        {"sample_id": s.sample_id, "status": "ok", "attributes": s.attributes, "notes": {}} for s in samples
    ]
    scores: list[tuple[str, str, float]] = []
    for metric in metrics:
        sel = [i for i in range(len(samples)) if face[i]] if metric.face else list(range(len(samples)))
        if not sel or (high is None and metric.needs_reference):
            continue
        try:
            values = metric.score_batch(  # metrics read their inputs and never modify them (Metric contract)
                _rows(out_q, sel),
                None if high is None else _rows(high, sel),
                [contexts[i] for i in sel],
            )
            reasons = getattr(metric, "last_reasons", None) or [None] * len(sel)
        except Exception as exc:  # recorded as NaN with the reason, never a silent zero
            values = [{c: float("nan") for c in metric.columns} for _ in sel]
            reasons = [f"{metric.name} failed: {type(exc).__name__}: {exc}"] * len(sel)
        for k, i in enumerate(sel):
            for col, v in values[k].items():
                scores.append((samples[i].sample_id, col, float(v)))
                if not numbers.is_defined(v):  # NaN/inf: undefined, with the reason (cals_bench.numbers)
                    rows[i]["notes"][col] = reasons[k] or f"{col} is {float(v)} (not finite)"
    feats = []
    for ext in extractors:
        sel = (
            [i for i in range(len(samples)) if face[i]]
            if getattr(ext, "face", False)
            else list(range(len(samples)))
        )
        if not sel or high is None:  # GPI compares reference and output features
            continue
        idx = torch.tensor(sel, device=out_q.device)
        ctx = [contexts[i] for i in sel]
        ref_f = ext.extract(high.index_select(0, idx), ctx, role="reference")
        out_f = ext.extract(out_q.index_select(0, idx), ctx, role="output")
        for k, i in enumerate(sel):
            if np.all(np.isfinite(ref_f[k])) and np.all(np.isfinite(out_f[k])):
                feats.append((samples[i].sample_id, ext.name, "reference", ref_f[k]))
                feats.append((samples[i].sample_id, ext.name, "output", out_f[k]))
    return rows, scores, feats
