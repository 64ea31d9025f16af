"""The ``cals-bench`` command line. Results and tables go to stdout; progress and logs go to stderr.

Every user error (bad data, unknown names, malformed protocol, missing weights) ends with one line on
stderr naming the file or key and the problem, and a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from cals_bench import numbers
from cals_bench.cli_common import EXIT_SAMPLE_FAILURES, EXIT_USER_ERROR, data_root_option, results_option
from cals_bench.cli_lazy import SUBSYSTEM_COMMANDS, LazyGroup
from cals_bench.errors import CalsBenchError


def _store(results: str | None):
    from cals_bench.store import Store

    return Store(results)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(package_name="cals-bench")
def main() -> None:
    """cals-bench: benchmark and fairness-audit image enhancement models on fixed protocols.

    \b
    Quick start (built-in demo, offline):
      cals-bench run
    Score a model on LOL-v1:
      cals-bench run --protocol lol-v1 --model zero-dce --data-root /data/LOL
    """


# ---------------------------------------------------------------------------------------------------------
# run


@main.command()
@click.option(
    "--protocol", "protocol_name", default="demo", show_default=True, help="Protocol name or YAML path."
)
@click.option(
    "--model",
    default="identity",
    show_default=True,
    help="Registered name (sci@difficult for a variant), package.module:Class, file.py:Class, "
    "checkpoint:PATH, or 'all-baselines'.",
)
@click.option("--model-args", default="", help="Constructor arguments, k=v,k2=v2 (YAML scalars).")
@data_root_option
@results_option
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available).")
@click.option("--batch-size", type=int, default=None, help="Override the protocol's batch size.")
@click.option(
    "--batch-timeout",
    type=float,
    default=None,
    help="Seconds one batch may take in the model before it fails (default: the protocol's batch_timeout_s, "
    "else 1800; 0: no limit).",
)
@click.option("--force", is_flag=True, help="Discard a finished run with the same inputs and score again.")
@click.option(
    "--with-gtmean",
    is_flag=True,
    help="Also score the GT-mean diagnostic columns (psnr_gtmean, ssim_gtmean).",
)
@click.option(
    "--no-outputs", is_flag=True, help="Do not save output images (reports then show no image grids)."
)
@click.option("--no-report", is_flag=True, help="Do not render the audit report at the end.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(
    protocol_name,
    model,
    model_args,
    data_root,
    results,
    device,
    batch_size,
    batch_timeout,
    force,
    with_gtmean,
    no_outputs,
    no_report,
    as_json,
    quiet,
):
    """Score a model on a protocol and print per-metric means.

    \b
    Examples:
      cals-bench run                                   # demo protocol, identity model, offline
      cals-bench run --protocol lol-v1 --model identity --data-root ../shared/data/lol-v1
      cals-bench run --protocol lol-v1 --model gamma --model-args gamma=2.5 --json
      cals-bench run --protocol lol-v1 --model all-baselines --data-root DIR
    An interrupted run resumes when the same command is run again; a finished one is reused unless --force.
    """
    from cals_bench import protocol as protocol_mod
    from cals_bench.cli_summary import format_summary
    from cals_bench.engine import pick_device
    from cals_bench.enhancer import parse_model_args
    from cals_bench.streams import stdout_to_stderr

    proto = protocol_mod.load(protocol_name)
    args = parse_model_args(model_args)
    # arguments are checked before the store is opened or anything is scored
    if batch_size is not None and batch_size < 1:
        raise CalsBenchError(f"--batch-size must be >= 1, got {batch_size}")
    if batch_timeout is not None and not batch_timeout >= 0:
        raise CalsBenchError(f"--batch-timeout must be >= 0 seconds (0: no limit), got {batch_timeout}")
    pick_device(device)
    store = _store(results)
    extra = _diagnostic_metrics() if with_gtmean else ()
    models = _expand_models(model)
    outputs = []
    exit_code = 0
    for spec in models:
        # under --json stdout holds the JSON alone: the model's prints (and anything else) go to stderr
        try:
            with stdout_to_stderr() if as_json else contextlib.nullcontext():
                result, audit_text, report_path = _run_one(
                    proto, spec, args if len(models) == 1 else {}, data_root, store, device, batch_size,
                    batch_timeout, force, extra, no_outputs, no_report, as_json, quiet,
                )  # fmt: skip
        except CalsBenchError as exc:
            if len(models) == 1:
                raise
            # all-baselines: a model that cannot run here (e.g. no trained checkpoint) is named, not fatal
            click.echo(f"error: {spec}: {exc} (skipped; the other models are scored)", err=True)
            exit_code = EXIT_USER_ERROR
            continue
        if result.failures or result.metric_failures:
            exit_code = EXIT_SAMPLE_FAILURES
        if as_json:
            payload = result.to_json()
            payload["report"] = str(report_path) if report_path else None
            payload["audit"] = _audit_json(store, result)
            outputs.append(payload)
        else:
            click.echo(format_summary(result))
            if audit_text:
                click.echo("")
                click.echo(audit_text)
            click.echo(f"run {result.run_id}{' (reused; --force to rescore)' if result.reused else ''}")
            click.echo(f"records: {result.run_dir}")
            if report_path:
                click.echo(f"report: {Path(report_path).resolve()}")
    if len(models) > 1 and not as_json:
        click.echo("")
        click.echo(_leaderboard_text(store, proto.name))
    if as_json:
        click.echo(numbers.dumps(outputs[0] if len(outputs) == 1 else outputs))
    sys.exit(exit_code)


def _diagnostic_metrics() -> tuple[str, ...]:
    """The registered metrics marked ``diagnostic`` (the GT-mean variants), for ``--with-gtmean``."""
    from cals_bench.metrics import METRICS

    return tuple(name for name, cls in METRICS.items().items() if cls.diagnostic)


def _run_one(
    proto, spec, args, data_root, store, device, batch_size, batch_timeout, force, extra, no_outputs,
    no_report, as_json, quiet,
):  # fmt: skip
    """Score one model and audit it; (result, audit text or None, report path or None)."""
    from cals_bench.engine import evaluate

    result = evaluate(
        proto,
        spec,
        args,
        data_root=data_root,
        store=store,
        device=device,
        batch_size=batch_size,
        force=force,
        extra_metrics=extra,
        save_outputs=not no_outputs,
        progress=not quiet and not as_json,
        command=sys.argv,
        batch_timeout=batch_timeout,
    )
    from cals_bench import sharding

    if not sharding.is_rank0():  # under torchrun, rank 0 audits and reports the merged records
        return result, None, None
    audit_text = _audit_after_run(store, result)
    report_path = None
    if not no_report:
        report_path = _render_report(store, result.run_id)
    return result, audit_text, report_path


def _audit_after_run(store, result) -> str | None:
    """Compute (or reuse) the run's fairness audit from its stored records; the text to print, if grouped."""
    from cals_bench.audits import load_audit

    audit, _notes = load_audit(store, result.run_id)
    spec = result.record.protocol.spec.get("audit", {})
    return audit.to_text() if spec.get("group_by") else None


def _audit_json(store, result) -> dict:
    """The audit headline (gpi_sum, gpi_gap, p, worst group) for ``run --json``."""
    from cals_bench.audit_headline import audit_headline
    from cals_bench.audits import load_audit

    audit, _notes = load_audit(store, result.run_id)
    order = [c for m in result.record.metrics for c in (m.get("columns") or {})]
    return audit_headline(audit, order)


def _expand_models(model: str) -> list[str]:
    if model != "all-baselines":
        return [model]
    from cals_bench.enhancer import registry

    return [name for name, entry in registry().items() if not entry.name.startswith("checkpoint")]


def _json_safe(obj):
    return str(obj)


def _clean_nan(obj):
    """JSON-ready data by the suite's one rule for non-finite numbers (:mod:`cals_bench.numbers`)."""
    return numbers.json_safe(obj)


def _render_report(store, run_id):
    try:
        from cals_bench.report import render_audit
    except ImportError:
        return None
    return render_audit(store, run_id)


def _leaderboard_text(store, protocol_name: str) -> str:
    df = store.list_runs(protocol_name)
    lines = [f"Runs on {protocol_name}:"]
    for run_id in df["run_id"]:
        rec = store.get_record(run_id)
        cells = "  ".join(
            f"{m}={s['mean']:.4f}" for m, s in (rec.summary or {}).items() if s.get("mean") == s.get("mean")
        )
        lines.append(f"  {rec.model['name']:<24}{cells}")
    return "\n".join(lines)


@main.command()
@click.argument("run_ref", default="latest")
@results_option
@click.option("--recompute", is_flag=True, help="Recompute the audit statistics from the stored records.")
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON (the stored audit.json).")
def audit(run_ref, results, recompute, as_json):
    """Print a run's fairness audit from the store (no model is run).

    \b
    Per-group tables with bootstrap CIs, worst group and gaps, GPI per group, gpi_sum, gpi_gap with CI and
    permutation p-value, Kruskal-Wallis and permutation tests with Holm correction.
    Examples:
      cals-bench audit latest
      cals-bench audit cals-face__gamma --json
    """
    from cals_bench.audits import load_audit

    store = _store(results)
    result, notes = load_audit(store, run_ref, recompute=recompute)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        rec = store.get_record(run_ref)
        click.echo(
            f"audit of run {rec.run_id} ({rec.protocol.name} v{rec.protocol.version}, model {rec.model['name']})"
        )
        click.echo(result.to_text())
        for note in notes:
            click.echo(f"note: {note}")


# ---------------------------------------------------------------------------------------------------------
# protocols


@main.group()
def protocols():
    """List and show the built-in protocols.

    \b
    Examples:
      cals-bench protocols list
      cals-bench protocols show lol-v1
    """


@protocols.command("list")
def protocols_list():
    """List the built-in protocols with version and title.  Example: cals-bench protocols list"""
    from cals_bench import protocol as protocol_mod

    for name in protocol_mod.available():
        p = protocol_mod.load(name)
        click.echo(f"{p.name:<20} v{p.version:<3} {p.title}")


@protocols.command("show")
@click.argument("name")
def protocols_show(name):
    """Print a protocol's validated spec (YAML) and hash.  Example: cals-bench protocols show lol-v1"""
    import yaml

    from cals_bench import protocol as protocol_mod

    p = protocol_mod.load(name)
    click.echo(f"# {p.name} v{p.version}  sha256 {p.hash}")
    click.echo(yaml.safe_dump(p.to_dict(), sort_keys=False, width=110))


# ---------------------------------------------------------------------------------------------------------
# models and metrics


@main.group()
def models():
    """List the registered models (sanity rows, baselines, entry points).  Example: cals-bench models list"""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json):
    """List registered models with variants, licence and paper.  Example: cals-bench models list"""
    from cals_bench.enhancer import describe, import_errors, registry

    rows = [describe(e) for e in registry().values()]
    if as_json:
        click.echo(json.dumps({"models": rows, "import_errors": import_errors()}, indent=1))
        return
    for r in rows:
        variants = (
            f" [variants: {', '.join(r['variants'])}; default {r['default_variant']}]"
            if r["variants"]
            else ""
        )
        gt = "  ** uses ground truth at test time **" if r["uses_ground_truth"] else ""
        if r["ground_truth_variants"]:
            gt = f"  ** variant(s) {', '.join(r['ground_truth_variants'])} read the ground truth at test time **"
        click.echo(f"{r['name']:<24} {r['summary']}{variants}{gt}")
        if r["licence"] or r["paper"]:
            click.echo(f"{'':<24} licence: {r['licence'] or '-'}; paper: {r['paper'] or '-'}")
    for module, err in import_errors().items():
        click.echo(f"(could not import {module}: {err})", err=True)


@main.group()
def metrics():
    """List the available metrics.  Example: cals-bench metrics list"""


@metrics.command("list")
def metrics_list():
    """List metrics with direction and whether they can run here.  Example: cals-bench metrics list"""
    from cals_bench.metrics import METRICS

    for name, cls in METRICS.items().items():
        try:
            ok, reason = cls().available()
        except Exception as exc:
            ok, reason = False, str(exc)
        cols = ", ".join(
            f"{c} {'(no direction)' if hib is None else '(higher better)' if hib else '(lower better)'}"
            for c, hib in cls.columns.items()
        )
        flag = " [diagnostic]" if cls.diagnostic else ""
        flag += "" if cls.needs_reference else " [no reference]"
        click.echo(f"{name:<14}{cols}{flag}  {cls.summary}")
        if not ok:
            click.echo(f"{'':<14}unavailable: {reason}")
    for mod, err in METRICS.import_errors().items():
        click.echo(f"(could not import {mod}: {err})", err=True)


# ---------------------------------------------------------------------------------------------------------
# runs


@main.group()
def runs():
    """Inspect stored runs.

    \b
    Examples:
      cals-bench runs list --protocol lol-v1
      cals-bench runs show latest
      cals-bench runs export latest --format csv --out records.csv
    """


@runs.command("list")
@click.option("--protocol", default=None, help="Only runs of this protocol.")
@results_option
@click.option("--json", "as_json", is_flag=True)
def runs_list(protocol, results, as_json):
    """List stored runs.  Example: cals-bench runs list --protocol lol-v1"""
    df = _store(results).list_runs(protocol)
    if as_json:
        click.echo(df.to_json(orient="records"))
    elif df.empty:
        click.echo("no runs")
    else:
        if "protocol_hash" in df:
            df = df.assign(protocol_hash=df["protocol_hash"].astype(str).str[:12])
        click.echo(df.to_string(index=False))


@runs.command("show")
@click.argument("run_ref")
@results_option
@click.option("--json", "as_json", is_flag=True, help="Print the full run record (run.json) as JSON.")
def runs_show(run_ref, results, as_json):
    """Show a run's provenance and summary (RUN: id, unique prefix or 'latest').  Example: cals-bench runs show latest"""
    from cals_bench.cli_summary import format_summary
    from cals_bench.engine import RunResult
    from cals_bench.run_record import as_record

    store = _store(results)
    meta = store.get_run(run_ref)
    if as_json:
        click.echo(json.dumps(_clean_nan(meta), indent=1, default=str))
        return
    rec = as_record(meta)
    env = rec.environment
    click.echo(f"run {rec.run_id}  status {rec.status}")
    click.echo(format_summary(RunResult(rec, store.run_dir(rec.run_id))))
    click.echo(f"weights: {json.dumps(rec.model.get('weights', {}))}")
    click.echo(f"device: {env.get('device')} ({env.get('device_name')}); git {env.get('git_revision')}")
    click.echo(f"packages: {json.dumps(env.get('packages', {}), sort_keys=True)}")
    click.echo(f"command: {rec.command}")


@runs.command("rebuild")
@results_option
def runs_rebuild(results):
    """Re-index the runs from their folders (after the index was lost or damaged).  Example: cals-bench runs rebuild

    A damaged index is moved aside (index.sqlite.damaged-<time>) first. Scores and failures come back from
    each finished run's run.json and records.parquet; GPI feature vectors do not (audits then use the 1-D GPI).
    """
    from cals_bench.store_rebuild import rebuild_index

    added, moved = rebuild_index(results)
    if moved:
        click.echo(f"damaged index moved to {moved}", err=True)
    click.echo(f"re-indexed {added} run(s)")


@runs.command("cache")
@click.option("--clear", is_flag=True, help="Delete the cached entries (all kinds, or --kind).")
@click.option("--kind", default=None, help="Only this kind of entry (a folder name under cache/).")
@results_option
def runs_cache(clear, kind, results):
    """Size of the results store's feature cache, by kind; --clear deletes it.  Example: cals-bench runs cache --clear --kind decoded-rgb

    The cache holds what a later run may reuse: reference features of the learned metrics (LPIPS maps, face
    embeddings) and the decoded pixels of PNG inputs and references. Deleting it never changes a result:
    the next run recomputes what it needs (the first model on a protocol pays the cold cost again).
    """
    from cals_bench.cache import FeatureCache
    from cals_bench.store import default_root

    cache = FeatureCache((Path(results) if results else default_root()) / "cache")
    usage = cache.usage()
    if kind is not None:
        if kind not in usage:
            raise CalsBenchError(f"{cache.root}: no cache entries of kind {kind!r}")
        usage = {kind: usage[kind]}
    for name, (n, b) in usage.items():
        if clear:
            cache.clear(name)
        click.echo(f"{name:<24} {n:>8} entries {b / 2**20:>10.1f} MiB" + ("  deleted" if clear else ""))
    total_n, total_b = sum(n for n, _ in usage.values()), sum(b for _, b in usage.values())
    click.echo(f"{'total':<24} {total_n:>8} entries {total_b / 2**20:>10.1f} MiB  ({cache.root})")


@runs.command("export")
@click.argument("run_ref")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), default="csv", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Output file (default: in the run folder)."
)
@results_option
def runs_export(run_ref, fmt, out, results):
    """Write a run's per-sample records (sample, metric, value, attributes).  Example: cals-bench runs export latest --format csv"""
    path = _store(results).export(run_ref, fmt, Path(out) if out else None)
    click.echo(str(path))


# ---------------------------------------------------------------------------------------------------------
# data


@main.group()
def data():
    """Check datasets against protocols.  Example: cals-bench data check --protocol lol-v1 --data-root DIR"""


@data.command("check")
@click.option("--protocol", "protocol_name", required=True)
@data_root_option
def data_check(protocol_name, data_root):
    """Verify a dataset's layout, pairs and declared checksums.  Example: cals-bench data check --protocol lol-v1 --data-root DIR"""
    from cals_bench import protocol as protocol_mod
    from cals_bench.data.datasets import check_checksums, load_samples

    proto = protocol_mod.load(protocol_name)
    root, samples = load_samples(proto, data_root)
    problems = [s.error for s in samples if s.error]
    problems += _probe_images(proto, samples)
    problems += check_checksums(proto, root)
    expected = proto.dataset.expected_count
    if expected is not None and len(samples) != expected:
        problems.append(f"{root}: {len(samples)} samples, protocol expects {expected}")
    click.echo(
        f"{proto.name} v{proto.version}: {len(samples)} samples in {root or 'built-in data'}; "
        f"{len(proto.dataset.checksums)} checksums declared"
    )
    for p in problems:
        click.echo(f"problem: {p}")
    if problems:
        sys.exit(EXIT_USER_ERROR)
    click.echo("ok")


def _probe_images(proto, samples) -> list[str]:
    """Problems found by opening every image's header (unreadable, truncated, too large, sizes differ)."""
    from cals_bench.data.io import probe
    from cals_bench.engine import DEFAULT_MAX_PIXELS
    from cals_bench.errors import DataError

    max_pixels = getattr(proto, "max_pixels", None) or DEFAULT_MAX_PIXELS
    problems = []
    for s in samples:
        if s.error:
            continue
        sizes = {}
        for path in dict.fromkeys(p for p in (s.low_path, s.high_path) if p is not None):
            try:
                sizes[path] = probe(path, max_pixels)
            except DataError as exc:
                problems.append(str(exc))
        if len(sizes) == 2 and len(set(sizes.values())) == 2 and proto.preprocess.resize is None:
            (a, sa), (b, sb) = sizes.items()
            problems.append(f"{a} vs {b}: size mismatch {sa[0]}x{sa[1]} and {sb[0]}x{sb[1]}")
    return problems


# ---------------------------------------------------------------------------------------------------------
# weights


@main.group()
def weights():
    """Pretrained files: list, fetch, verify, locate.

    \b
    Examples:
      cals-bench weights list
      cals-bench weights fetch llie/zero-dce
      CALS_BENCH_WEIGHTS=../shared/weights cals-bench weights verify
    """


@weights.command("list")
@click.option("--json", "as_json", is_flag=True)
def weights_list(as_json):
    """List every registered weight file with licence and whether it is present.  Example: cals-bench weights list"""
    from cals_bench import weights as w

    rows = [w.status(s) for s in w.specs().values()]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        for r in rows:
            where = r["where"] if r["present"] else "missing"
            click.echo(f"{r['name']:<28} {r['licence']:<24} {where}")
    for module, err in w.import_errors().items():  # its weight files are missing from the list
        click.echo(f"(could not import {module}: {err})", err=True)


@weights.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Fetch every registered file.")
def weights_fetch(names, fetch_all):
    """Download weight files into the cache (sha256-checked).  Example: cals-bench weights fetch llie/zero-dce"""
    from cals_bench import weights as w

    targets = list(w.specs()) if fetch_all else list(names)
    if not targets:
        raise CalsBenchError("name a weight file (cals-bench weights list) or pass --all")
    for name in targets:
        r = w.fetch(name)
        click.echo(f"{name}: {r.path} ({r.where})")


@weights.command("verify")
def weights_verify():
    """Re-hash every weight file present and report mismatches.  Example: cals-bench weights verify"""
    from cals_bench import weights as w
    from cals_bench.errors import WeightsHashMismatch

    bad = 0
    for name, spec in w.specs().items():
        found = w.find_local(spec)
        if not found:
            click.echo(f"{name:<28} missing")
            continue
        try:
            w.resolve(name, download=False)
            click.echo(f"{name:<28} ok       {found[0]}")
        except WeightsHashMismatch as exc:
            bad += 1
            click.echo(f"{name:<28} MISMATCH {exc}")
    if bad:
        sys.exit(EXIT_USER_ERROR)


@weights.command("path")
@click.argument("name", required=False)
def weights_path(name):
    """Print the search folders, or where NAME resolves.  Example: cals-bench weights path lpips/v0.1-alex"""
    from cals_bench import weights as w

    if name:
        click.echo(str(w.resolve(name, download=False).path))
        return
    for d in w.weight_dirs():
        click.echo(f"CALS_BENCH_WEIGHTS: {d}")
    click.echo(f"cache: {w.cache_dir()}")
    click.echo(f"torch hub: {w.torch_hub_dir()}")


def _register_optional_commands() -> None:
    """Commands that live beside their subsystem (reports, training, submissions): listed in --help from
    :data:`cals_bench.cli_lazy.SUBSYSTEM_COMMANDS`, imported only when used (fast start)."""
    main.lazy.update(SUBSYSTEM_COMMANDS)


_register_optional_commands()

if __name__ == "__main__":
    main()
