"""The submission flows: validate a model spec, submit it (validated, then scored from a sandboxed worker),
and score a folder or .zip of outputs. Every outcome is a row in the store's submissions table."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from cals_bench.errors import CalsBenchError
from cals_bench.jsonfile import write_json_atomic
from cals_bench.store import Store
from cals_bench.submit import naming
from cals_bench.submit.records import Submissions, content_key, submitter_info
from cals_bench.submit.sandbox import (
    Bind,
    Isolation,
    Limits,
    Worker,
    WorkerError,
    check_hidden,
    code_paths,
    detect,
)
from cals_bench.submit.validate import checklist_text, passed, run_checks, to_dicts

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".onnx", ".npz", ".npy", ".h5", ".pkl")
MAX_HASHED_FILES = 2000


class SubmissionFailed(CalsBenchError):
    """A submission was refused or failed; ``lines`` are the problems, one per line."""

    def __init__(self, message: str, lines: list[str] | None = None, record: dict | None = None) -> None:
        super().__init__(message)
        self.lines = list(lines or [])
        self.record = record


@dataclass
class Plan:
    """How a model spec runs in the worker: what is bound, under which spec, with which identity."""

    spec: str  # as given
    inner_spec: str  # as the worker loads it
    kind: str  # code / plugin
    content_hash: str
    binds: list[Bind] = field(default_factory=list)
    sys_paths: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # computed here, never by the model
    files: dict[str, str] = field(default_factory=dict)  # code files hashed into content_hash


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_tree(root: Path, plan: Plan, prefix: str) -> None:
    """Hash the code (.py) of a folder into ``plan.files`` and its weight-like files into ``plan.weights``."""
    paths = (
        [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    )
    if len(paths) > MAX_HASHED_FILES:
        raise CalsBenchError(f"{root} holds {len(paths)} files; give the model a folder of its own")
    for p in paths:
        rel = f"{prefix}{p.name if root.is_file() else p.relative_to(root).as_posix()}"
        if "__pycache__" in p.parts:
            continue
        if p.suffix == ".py":
            plan.files[rel] = _sha256(p)
        elif p.suffix.lower() in WEIGHT_SUFFIXES:
            plan.weights[rel] = _sha256(p)


def _finish_hash(plan: Plan) -> None:
    blob = json.dumps({"spec": plan.inner_spec, "files": plan.files, "weights": plan.weights}, sort_keys=True)
    plan.content_hash = hashlib.sha256(blob.encode()).hexdigest()


def _package_dir(module: str) -> Path | None:
    top = module.split(".", 1)[0]
    spec = importlib.util.find_spec(top)  # top-level only: finding does not execute the package
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve() if spec.origin else None


def _visible(path: Path) -> bool:
    return any(path == p or p in path.parents for p in code_paths())


def plan_for(spec: str, weights: tuple[str, ...] = ()) -> Plan:
    """Resolve a model spec for the worker without running any of its code here."""
    kind = naming.spec_kind(spec)
    plan = Plan(spec, spec, "plugin" if kind == "plugin" else "code", "")
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        file_text, attr = spec.split(":", 1)
        path = Path(file_text).resolve()
        if not path.is_file():
            raise CalsBenchError(f"model file {file_text} does not exist")
        folder = path.parent
        plan.binds.append(Bind(folder, "/submission"))
        plan.inner_spec = f"/submission/{path.name}:{attr}"
        plan.sys_paths.append("/submission")
        _hash_tree(folder, plan, "")
    elif kind == "checkpoint":
        path = Path(spec.split(":", 1)[1]).resolve()
        if not path.is_file():
            raise CalsBenchError(f"checkpoint {path} does not exist")
        plan.binds.append(Bind(path, str(path)))
        plan.inner_spec = f"checkpoint:{path}"
        plan.weights[path.name] = _sha256(path)
    elif kind == "plugin":
        eps = {ep.name: ep for ep in entry_points(group="cals_bench.enhancers")}
        ep = eps[spec.split("@", 1)[0]]
        where = _package_dir(ep.value.split(":", 1)[0])
        if where is None or not _visible(where):
            raise CalsBenchError(f"plugin {spec!r} ({ep.value}) is not installed in this environment")
        _hash_tree(where, plan, f"{ep.value.split(':', 1)[0].split('.', 1)[0]}/")
        plan.files["entry_point"] = hashlib.sha256(ep.value.encode()).hexdigest()
    elif kind == "builtin":
        plan.files["builtin"] = hashlib.sha256(spec.encode()).hexdigest()
    elif ":" in spec:
        module = spec.split(":", 1)[0]
        where = _package_dir(module)
        if where is None:
            raise CalsBenchError(f"cannot find module {module!r} for model {spec!r}")
        if not _visible(where):
            target = f"/submission_pkgs/{where.name}"
            plan.binds.append(Bind(where, target))
            plan.sys_paths.append("/submission_pkgs")
        _hash_tree(where, plan, f"{where.name}/")
    else:
        raise CalsBenchError(
            f"unknown model {spec!r}: give file.py:Class, package.module:Class, checkpoint:PATH or a registered name"
        )
    for w in weights:
        _add_weights(plan, w)
    _finish_hash(plan)
    return plan


def _add_weights(plan: Plan, ref: str) -> None:
    path = Path(ref).expanduser()
    if path.exists():
        path = path.resolve()
        plan.binds.append(Bind(path, str(path)))
        _hash_tree(path, plan, f"{path.name}/" if path.is_dir() else "")
        if path.is_dir():  # every file in a weights folder is a weight, whatever its suffix
            for p in sorted(path.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    plan.weights[f"{path.name}/{p.relative_to(path).as_posix()}"] = _sha256(p)
        else:
            plan.weights[path.name] = _sha256(path)
        return
    from cals_bench import weights as wmod

    resolved = wmod.resolve(ref, download=False)  # a registered weight: sha256-checked here
    rel = wmod.get_spec(ref).relpath
    plan.binds.append(Bind(Path(resolved.path).resolve(), f"/weights/{rel}"))
    plan.env["CALS_BENCH_WEIGHTS"] = "/weights"
    plan.weights[ref] = resolved.sha256


def _protected(store: Store | None, data_root: Path | None) -> dict[str, Path | None]:
    import os

    from cals_bench import weights as wmod
    from cals_bench.store import default_root

    out: dict[str, Path | None] = {
        "data root": data_root,
        "data folder": Path(os.environ["CALS_BENCH_DATA"]) if os.environ.get("CALS_BENCH_DATA") else None,
        "results store": store.root if store else default_root(),
        "weights cache": wmod.cache_dir(),
    }
    for i, d in enumerate(wmod.weight_dirs()):
        out[f"weights folder {i + 1}"] = d
    return out


def _check_binds(plan: Plan, protected: dict[str, Path | None]) -> None:
    check_hidden([b.source for b in plan.binds] + code_paths(), protected)


def _worker(plan: Plan, args: dict[str, Any], folder: Path, isolation: Isolation, limits: Limits) -> Worker:
    spec, paths, env = plan.inner_spec, list(plan.sys_paths), dict(plan.env)
    if isolation.level != "bwrap":  # no mount namespace: the worker sees the files where they are
        import os

        for b in plan.binds:
            spec = spec.replace(b.target, str(b.source), 1) if spec.startswith(("/", "checkpoint:")) else spec
            paths = [
                str(b.source.parent)
                if p == b.target.rsplit("/", 1)[0] and b.target.count("/") > 1
                else str(b.source)
                if p == b.target
                else p
                for p in paths
            ]
        env.pop("CALS_BENCH_WEIGHTS", None)
        if os.environ.get("CALS_BENCH_WEIGHTS"):
            env["CALS_BENCH_WEIGHTS"] = os.environ["CALS_BENCH_WEIGHTS"]
    return Worker(
        spec,
        args,
        folder=folder,
        isolation=isolation,
        limits=limits,
        binds=plan.binds,
        sys_paths=paths,
        env=env,
    )


def _log_tail(folder: Path, n: int = 8) -> list[str]:
    path = folder / "stderr.txt"
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return lines[-n:]


# ---------------------------------------------------------------------------------------------------------
# validate


def validate_spec(
    spec: str,
    args: dict[str, Any],
    *,
    weights: tuple[str, ...] = (),
    limits: Limits | None = None,
    folder: Path | None = None,
) -> tuple[list, Isolation, list[str]]:
    """Run the checklist in a worker; (checks, isolation, last lines of the worker's stderr)."""
    plan = plan_for(spec, weights)
    check_hidden([b.source for b in plan.binds], _protected(None, None))
    isolation = detect()
    own = folder is None
    folder = Path(folder or tempfile.mkdtemp(prefix="cals-bench-validate-"))
    worker = _worker(plan, args, folder, isolation, limits or Limits())
    try:
        worker.start()
        try:
            worker.handshake()
            checks = run_checks(worker)
        except WorkerError as exc:
            checks = run_checks(worker, load_error=exc.reason)
    finally:
        worker.close()
    tail = _log_tail(folder)
    if own:
        shutil.rmtree(folder, ignore_errors=True)
    return checks, isolation, tail


# ---------------------------------------------------------------------------------------------------------
# submit code


@dataclass
class Outcome:
    """What a submission produced: its stored record, the engine result when scored now, and the checks."""

    record: dict[str, Any]
    result: Any = None  # engine RunResult when scored now
    identical: bool = False
    checks: list = field(default_factory=list)


def submit_code(
    protocol_name: str,
    spec: str,
    args: dict[str, Any],
    *,
    store: Store,
    name: str | None = None,
    data_root: str | Path | None = None,
    weights: tuple[str, ...] = (),
    limits: Limits | None = None,
    trusted: bool = False,
    force: bool = False,
    note: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    command: list[str] | None = None,
) -> Outcome:
    """Validate a submitted model (wrapper code or checkpoint), run it isolated on the protocol and store the result."""
    from cals_bench import protocol as protocol_mod
    from cals_bench.data.datasets import load_samples

    proto = protocol_mod.load(protocol_name)
    isolation = detect()
    if not isolation.isolated and not trusted:
        raise CalsBenchError(
            f"refused: no sandbox on this machine ({isolation.detail}); the model would run unisolated. "
            "Install bubblewrap, or pass --trusted to score it anyway (flagged 'unisolated code')"
        )
    plan = plan_for(spec, weights)
    display = naming.check_display_name(name or naming.default_name(spec), spec)
    root, _samples = load_samples(proto, data_root)
    _check_binds(plan, _protected(store, root))
    subs = Submissions(store)
    key = content_key(
        plan.kind, plan.content_hash, args, f"{proto.name}@{proto.version}:{proto.hash}", display
    )
    existing = subs.find_identical(key)
    if existing and not force:
        return Outcome(existing, identical=True)
    limits = limits or Limits()
    sub_id = subs.create(
        name=display,
        kind=plan.kind,
        spec=spec,
        content_hash=plan.content_hash,
        content_key=key,
        args=args,
        protocol=f"{proto.name}@{proto.version}",
        submitter=submitter_info(note),
        isolation=json.dumps(isolation.to_dict()),
        meta={"files": plan.files, "weights": plan.weights, "limits": limits.to_dict()},
    )
    folder = subs.folder(sub_id)
    worker = _worker(plan, args, folder, isolation, limits)

    def fail(reason: str, lines: list[str] | None = None) -> SubmissionFailed:
        subs.update(sub_id, event="failed", detail=reason, status="failed", reason=reason)
        tail = _log_tail(folder)
        return SubmissionFailed(
            f"submission #{sub_id} ({display}) failed: {reason}",
            [*(lines or []), *(["worker stderr (last lines):", *tail] if tail else [])],
            subs.get(sub_id),
        )

    result = None
    try:
        worker.start()
        try:
            worker.handshake()
        except WorkerError as exc:
            raise fail(exc.reason) from None
        checks = run_checks(worker)
        write_json_atomic(folder / "validation.json", to_dicts(checks))
        subs.update(sub_id, event="validated", detail="pass" if passed(checks) else "fail")
        if not passed(checks):
            bad = next(c for c in checks if c.ok is False)
            raise fail(f"validation: {bad.name}: {bad.detail}", checklist_text(checks).splitlines())
        from cals_bench.engine import evaluate

        remote = _remote_model(worker, plan, args, display, sub_id, isolation)
        result = evaluate(
            proto,
            remote,
            {},
            data_root=data_root,
            store=store,
            device=device,
            batch_size=batch_size,
            progress=progress,
            command=command,
        )
    except SubmissionFailed:
        raise
    except CalsBenchError as exc:
        _drop_partial_run(store, sub_id)  # a failed submission leaves no run (none exists before scoring)
        raise fail(str(exc)) from None
    except BaseException as exc:  # interrupted (Ctrl-C) or a bug: never leave the row "running"
        _drop_partial_run(store, sub_id)
        fail(f"interrupted: {type(exc).__name__}: {exc}")
        raise
    finally:
        exit_info = worker.close()
        write_json_atomic(folder / "worker.json", exit_info)
    if result.failures:
        store.delete_run(result.run_id)
        sid, err = result.failures[0]
        raise fail(f"{len(result.failures)} sample(s) failed; first: {sid}: {err}")
    run_logs = result.run_dir / "worker"
    run_logs.mkdir(parents=True, exist_ok=True)
    for fn in ("stdout.txt", "stderr.txt", "validation.json", "worker.json"):
        if (folder / fn).is_file():
            shutil.copyfile(folder / fn, run_logs / fn)
    subs.update(sub_id, event="scored", detail=result.run_id, status="scored", run_id=result.run_id)
    return Outcome(subs.get(sub_id), result, checks=checks)


def _remote_model(worker, plan, args, display, sub_id, isolation):
    """The submitted model as an Enhancer whose batches run in its sandboxed worker, with the submission's
    identity (id, kind, isolation, content hash) in its metadata, so the run records where it came from."""
    from cals_bench.submit.remote import RemoteEnhancer

    meta = {
        "id": sub_id,
        "kind": plan.kind,
        "isolation": isolation.level,
        "isolated": isolation.isolated,
        "content_hash": plan.content_hash,
        "spec": plan.spec,
    }
    return RemoteEnhancer(worker, name=f"{display}", args=args, weights=plan.weights, submission=meta)


def _drop_partial_run(store: Store, sub_id: int) -> None:
    runs = store.list_runs()
    for run_id in runs["run_id"]:
        if (store.get_record(run_id).model.get("submission") or {}).get("id") == sub_id:
            store.delete_run(run_id)  # whatever its status: a failed submission leaves no run


# ---------------------------------------------------------------------------------------------------------
# score outputs


def score_outputs(
    protocol_name: str,
    outputs: str | Path,
    *,
    store: Store,
    name: str,
    data_root: str | Path | None = None,
    force: bool = False,
    note: str | None = None,
    progress: bool = True,
    command: list[str] | None = None,
) -> Outcome:
    """Score a folder of submitted output images against the protocol's hidden references and store the result."""
    from cals_bench import protocol as protocol_mod
    from cals_bench.data.datasets import load_samples
    from cals_bench.engine import evaluate
    from cals_bench.submit.outputs import OutputsEnhancer, match, open_outputs

    proto = protocol_mod.load(protocol_name)
    display = naming.check_display_name(name, None)
    files = open_outputs(outputs)
    _root, samples = load_samples(proto, data_root)
    arrays, problems = match(proto, samples, files)
    chash = files.manifest_hash()
    subs = Submissions(store)
    key = content_key("outputs", chash, {}, f"{proto.name}@{proto.version}:{proto.hash}", display)
    existing = subs.find_identical(key)
    if existing and not force:
        return Outcome(existing, identical=True)
    isolation = {"level": "none", "isolated": True, "detail": "outputs: no submitted code runs"}
    sub_id = subs.create(
        name=display,
        kind="outputs",
        spec=str(Path(outputs).resolve()),
        content_hash=chash,
        content_key=key,
        args={},
        protocol=f"{proto.name}@{proto.version}",
        submitter=submitter_info(note),
        isolation=json.dumps(isolation),
        meta={"source": files.kind, "n_files": len(files.names)},
    )
    folder = Submissions(store).folder(sub_id)
    if problems:
        (folder / "problems.txt").write_text("\n".join(problems) + "\n")
        reason = f"{len(problems)} problem(s) in the outputs; nothing scored"
        subs.update(sub_id, event="failed", detail=reason, status="failed", reason=reason)
        raise SubmissionFailed(
            f"submission #{sub_id} ({display}) failed: {reason}", problems, subs.get(sub_id)
        )
    meta = {
        "id": sub_id,
        "kind": "outputs",
        "isolation": "none",
        "isolated": True,
        "content_hash": chash,
        "spec": str(outputs),
    }
    model = OutputsEnhancer(arrays, name=display, meta=meta)
    try:
        result = evaluate(
            proto, model, {}, data_root=data_root, store=store, progress=progress, command=command
        )
    except CalsBenchError as exc:
        _drop_partial_run(store, sub_id)
        subs.update(sub_id, event="failed", detail=str(exc), status="failed", reason=str(exc))
        raise SubmissionFailed(
            f"submission #{sub_id} ({display}) failed: {exc}", [], subs.get(sub_id)
        ) from None
    if result.failures:
        store.delete_run(result.run_id)
        sid, err = result.failures[0]
        reason = f"{len(result.failures)} sample(s) failed; first: {sid}: {err}"
        subs.update(sub_id, event="failed", detail=reason, status="failed", reason=reason)
        raise SubmissionFailed(f"submission #{sub_id} ({display}) failed: {reason}", [], subs.get(sub_id))
    subs.update(sub_id, event="scored", detail=result.run_id, status="scored", run_id=result.run_id)
    return Outcome(subs.get(sub_id), result)
