"""Commands: ``validate``, ``submit``, ``score --outputs`` and ``submissions list|show|remove``."""

from __future__ import annotations

import json
import sys
import time

import click

from cals_bench.cli_common import EXIT_USER_ERROR, data_root_option, results_option


def _store(results):
    from cals_bench.store import Store

    return Store(results)


def _limits(batch_timeout, memory_gb, log_mb):
    from cals_bench.submit.sandbox import Limits

    return Limits(
        batch_timeout_s=float(batch_timeout),
        memory_bytes=int(memory_gb * 2**30),
        log_bytes=int(log_mb * 2**20),
    )


_limit_options = [
    click.option("--batch-timeout", type=float, default=600.0, show_default=True, help="Seconds per batch."),
    click.option(
        "--memory-gb", type=float, default=8.0, show_default=True, help="Address-space limit of the worker."
    ),
    click.option(
        "--log-mb", type=float, default=1.0, show_default=True, help="Cap on captured stdout/stderr each."
    ),
    click.option(
        "--weights",
        "weights",
        multiple=True,
        help="A weight file or folder the model needs (bound read-only, sha256 recorded), or a registered "
        "weight name; repeatable.",
    ),
]


def _with_limits(fn):
    for opt in reversed(_limit_options):
        fn = opt(fn)
    return fn


def _fail(exc) -> None:
    for line in exc.lines:
        click.echo(line, err=True)
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_USER_ERROR)


@click.command()
@click.argument("spec")
@click.option("--model-args", default="", help="Constructor arguments, k=v,k2=v2 (YAML scalars).")
@_with_limits
@click.option("--json", "as_json", is_flag=True, help="Print the checklist as JSON.")
def validate(spec, model_args, batch_timeout, memory_gb, log_mb, weights, as_json):
    """Check a model against the contract on probe batches (no data needed) and print a pass/fail checklist.

    \b
    SPEC: file.py:Class, package.module:Class, checkpoint:PATH or a registered/plugin name. A Class may be an
    Enhancer, a plain torch.nn.Module or a callable mapping (B, 3, H, W) in [0, 1] to the same.
    The model runs in its own sandboxed process, as under `submit`.
    Examples:
      cals-bench validate my_model.py:MyNet
      cals-bench validate my_model.py:MyNet --model-args strength=2 --weights my_weights.pt
    """
    from cals_bench.enhancer import parse_model_args
    from cals_bench.submit.flow import validate_spec
    from cals_bench.submit.validate import checklist_text, passed, to_dicts

    checks, isolation, tail = validate_spec(
        spec,
        parse_model_args(model_args),
        weights=tuple(weights),
        limits=_limits(batch_timeout, memory_gb, log_mb),
    )
    ok = passed(checks)
    if as_json:
        click.echo(json.dumps({"passed": ok, "isolation": isolation.to_dict(), "checks": to_dicts(checks)}))
    else:
        click.echo(f"validate {spec}  (isolation: {isolation.level})")
        click.echo(checklist_text(checks))
        if not ok and tail:
            click.echo("worker stderr (last lines):", err=True)
            for line in tail:
                click.echo(f"  {line}", err=True)
        click.echo("passed" if ok else "FAILED")
    sys.exit(0 if ok else EXIT_USER_ERROR)


@click.command()
@click.argument("spec")
@click.option("--protocol", "protocol_name", required=True, help="Protocol name or YAML path.")
@click.option("--name", default=None, help="Display name (never a registered model's name).")
@click.option("--model-args", default="", help="Constructor arguments, k=v,k2=v2 (YAML scalars).")
@data_root_option
@results_option
@_with_limits
@click.option(
    "--trusted", is_flag=True, help="Run without a sandbox where none works (flagged 'unisolated code')."
)
@click.option("--force", is_flag=True, help="Score again even if an identical submission exists.")
@click.option("--note", default=None, help="Submitter note kept with the submission (e.g. name <email>).")
@click.option("--batch-size", type=int, default=None, help="Override the protocol's batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the submission record as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def submit(
    spec,
    protocol_name,
    name,
    model_args,
    data_root,
    results,
    batch_timeout,
    memory_gb,
    log_mb,
    weights,
    trusted,
    force,
    note,
    batch_size,
    as_json,
    quiet,
):
    """Validate a model, then score it from its own sandboxed process that never sees the references.

    \b
    The model receives only the low-light inputs over a pipe; this process computes the metrics and writes
    the store. Data root, results and weights cache are out of the model's view; no network; wall-time limit
    per batch; memory limit; stdout/stderr captured (capped) in the submission folder.
    Examples:
      cals-bench submit my_model.py:MyNet --protocol lol-v1 --data-root DIR --name my-net
      cals-bench submit my_model.py:MyNet --protocol lol-v1 --weights ckpt.pth --model-args depth=4
    """
    from cals_bench.enhancer import parse_model_args
    from cals_bench.submit.flow import SubmissionFailed, submit_code

    store = _store(results)
    try:
        outcome = submit_code(
            protocol_name,
            spec,
            parse_model_args(model_args),
            store=store,
            name=name,
            data_root=data_root,
            weights=tuple(weights),
            limits=_limits(batch_timeout, memory_gb, log_mb),
            trusted=trusted,
            force=force,
            note=note,
            batch_size=batch_size,
            progress=not quiet and not as_json,
            command=sys.argv,
        )
    except SubmissionFailed as exc:
        _fail(exc)
    _report(outcome, as_json)


@click.command()
@click.option("--protocol", "protocol_name", required=True, help="Protocol name or YAML path.")
@click.option("--outputs", required=True, type=click.Path(), help="Folder or .zip of enhanced images.")
@click.option("--name", required=True, help="Display name (never a registered model's name).")
@data_root_option
@results_option
@click.option("--force", is_flag=True, help="Score again even if an identical submission exists.")
@click.option("--note", default=None, help="Submitter note kept with the submission.")
@click.option("--json", "as_json", is_flag=True, help="Print the submission record as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def score(protocol_name, outputs, name, data_root, results, force, note, as_json, quiet):
    """Score a folder or .zip of outputs named like the protocol's samples (nothing is resized).

    \b
    Missing, extra, wrongly sized and unreadable files are each reported on a line of their own; archives
    with absolute or '..' names, symbolic links or zip-bomb ratios are refused.
    Example:
      cals-bench score --protocol lol-v1 --outputs results_lol.zip --name "MyNet (paper outputs)"
    """
    from cals_bench.submit.flow import SubmissionFailed, score_outputs

    try:
        outcome = score_outputs(
            protocol_name,
            outputs,
            store=_store(results),
            name=name,
            data_root=data_root,
            force=force,
            note=note,
            progress=not quiet and not as_json,
            command=sys.argv,
        )
    except SubmissionFailed as exc:
        _fail(exc)
    _report(outcome, as_json)


def _report(outcome, as_json: bool) -> None:
    rec = outcome.record
    if as_json:
        click.echo(json.dumps({**rec, "identical": outcome.identical}, default=str))
        return
    if outcome.identical:
        click.echo(
            f"identical to submission #{rec['id']} ({rec['name']}, status {rec['status']}"
            + (f", run {rec['run_id']}" if rec.get("run_id") else "")
            + (f": {rec['reason']}" if rec.get("reason") else "")
            + "); nothing done (--force to score again)"
        )
        return
    if outcome.result is not None:
        from cals_bench.cli_summary import format_summary

        click.echo(format_summary(outcome.result))
    iso = rec["isolation"]["level"] if isinstance(rec["isolation"], dict) else rec["isolation"]
    click.echo(f"submission #{rec['id']} {rec['name']} ({rec['kind']}, isolation {iso}): {rec['status']}")
    click.echo(f"run {rec['run_id']}")


@click.group()
def submissions():
    """List, show and remove submissions (removal keeps an audit trail).

    \b
    Examples:
      cals-bench submissions list
      cals-bench submissions show 3
      cals-bench submissions remove 3 --reason "withdrawn by the authors"
    """


@submissions.command("list")
@results_option
@click.option("--json", "as_json", is_flag=True)
def submissions_list(results, as_json):
    """One line per submission: id, status, kind, isolation, name, protocol, run."""
    from cals_bench.submit.records import Submissions

    rows = Submissions(_store(results)).list()
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    if not rows:
        click.echo("no submissions")
        return
    click.echo(f"{'id':>4}  {'status':<8} {'kind':<8} {'isolation':<9} {'name':<28} {'protocol':<18} run")
    for r in rows:
        iso = r["isolation"]["level"] if isinstance(r["isolation"], dict) else r["isolation"]
        click.echo(
            f"{r['id']:>4}  {r['status']:<8} {r['kind']:<8} {iso:<9} {r['name'][:28]:<28} {r['protocol']:<18} "
            f"{r['run_id'] or '-'}"
        )


@submissions.command("show")
@click.argument("sub_id")
@results_option
@click.option("--json", "as_json", is_flag=True)
def submissions_show(sub_id, results, as_json):
    """Everything recorded about one submission, with its events."""
    from cals_bench.submit.records import Submissions

    subs = Submissions(_store(results))
    rec = subs.get(sub_id)
    if as_json:
        click.echo(json.dumps(rec, default=str, indent=1))
        return
    for k in ("id", "name", "kind", "spec", "content_hash", "protocol", "status", "reason", "run_id"):
        click.echo(f"{k:<13} {rec.get(k)}")
    click.echo(f"{'args':<13} {json.dumps(rec['args'], sort_keys=True)}")
    click.echo(f"{'isolation':<13} {json.dumps(rec['isolation'], sort_keys=True)}")
    click.echo(f"{'submitter':<13} {json.dumps(rec['submitter'], sort_keys=True)}")
    click.echo(f"{'weights':<13} {json.dumps((rec['meta'] or {}).get('weights', {}), sort_keys=True)}")
    click.echo(f"{'folder':<13} {subs.folder(rec['id'])}")
    for e in rec["events"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        click.echo(f"  {when}  {e['event']:<10} {e['detail'] or ''}")


@submissions.command("remove")
@click.argument("sub_id")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@results_option
def submissions_remove(sub_id, reason, results):
    """Delete a submission's run from the store; its row and events stay (status 'removed')."""
    from cals_bench.submit.records import Submissions

    rec = Submissions(_store(results)).remove(sub_id, reason)
    click.echo(f"submission #{rec['id']} removed; audit trail kept (cals-bench submissions show {rec['id']})")


COMMANDS = (validate, submit, score, submissions)
