"""``cals-bench train``: train, resume, ablate and grid-search the reference models.

The click group is :data:`train`; ``cals_bench.cli`` registers it under the main command. It also runs on
its own as ``python -m cals_bench.train``, which is the form to give ``torchrun``::

    torchrun --nproc_per_node 2 -m cals_bench.train iaml --data-root /data/LOL --out runs/x
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import click

from cals_bench.cli_common import CliGroup
from cals_bench.errors import CalsBenchError

# Paper Table IV: (row label, built-in config)
ABLATION = (
    ("MSE", "ablation-mse"),
    ("MSE + SSIM", "ablation-mse-ssim"),
    ("MSE + SSIM + cosine mirror", "ablation-cosine"),
    ("MSE + SSIM + standardised-L2 mirror", "ablation-std-l2"),
    ("MSE + SSIM + IAML", "ablation-iaml"),
)
DEFAULT_LAMBDAS = "0.01,0.05,0.1,0.5,1.0"


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _echo(text: str = "") -> None:
    if _is_main_process():
        click.echo(text)


def _common(fn):
    """Options shared by the commands that train."""
    options = [
        click.option(
            "--data-root",
            type=click.Path(),
            required=True,
            help="Training data root (e.g. the LOL folder holding our485/, or a folder of clean images).",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override a config value, e.g. --set optim.lr=1e-3 --set model.width=16 (repeatable).",
        ),
        click.option(
            "--device",
            default=None,
            help="cpu, cuda (default: cuda when available; cuda:LOCAL_RANK under torchrun).",
        ),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def train() -> None:
    """Train the reference models with the shared engine (checkpoints, exact resume, torchrun/DDP).

    \b
    Train IAML on LOL-v1 (our485; 5% held out for validation), then score it on the test split:
      cals-bench train iaml --config iaml-lol-v1 --data-root /data/LOL --out runs/iaml
      cals-bench run --protocol lol-v1 --model checkpoint:runs/iaml/best.pt --data-root /data/LOL
    Two GPUs (or two CPU processes with gloo): only the launch command changes:
      torchrun --nproc_per_node 2 -m cals_bench.train iaml --data-root /data/LOL --out runs/iaml
    """


def _fit(config, data_root, out, resume, resume_from, device, stop_at, quiet):
    from cals_bench.train.loop import Trainer

    if resume and resume_from:
        raise CalsBenchError("pass either --resume or --resume-from, not both")
    how = resume_from if resume_from else ("auto" if resume else None)
    trainer = Trainer(
        config,
        data_root=data_root,
        out_dir=out,
        resume=how,
        device=device,
        progress=not quiet,
        handle_signals=True,
    )
    return trainer.fit(stop_at=stop_at)


def _report(result) -> None:
    _echo(f"step {result.step}: last checkpoint {result.last}")
    if result.best:
        b = result.best_val
        _echo(
            f"best on the validation split: {result.best} (step {b.get('step')}, "
            f"PSNR {b.get('psnr', math.nan):.3f} dB, SSIM {b.get('ssim', math.nan):.4f})"
        )
    _echo(f"log: {result.out_dir / 'log.csv'}  plot: {result.out_dir / 'loss_curve.png'}")
    if result.selected:
        _echo(
            f"score it: cals-bench run --protocol PROTOCOL --model checkpoint:{result.selected} "
            "--data-root DIR"
        )


def _train_command(name: str, default_config: str | None, task: str | None, doc: str):
    @train.command(name, help=doc)
    @click.option(
        "--config",
        "config_name",
        default=default_config,
        required=default_config is None,
        show_default=True,
        help="Built-in config name or YAML path (`cals-bench train configs` lists them).",
    )
    @_common
    @click.option(
        "--out",
        type=click.Path(file_okay=False),
        default=None,
        help="Output folder (default runs/train/<config name>).",
    )
    @click.option("--resume", is_flag=True, help="Continue exactly from <out>/last.pt.")
    @click.option(
        "--resume-from", type=click.Path(dir_okay=False), default=None, help="Continue from this checkpoint."
    )
    @click.option(
        "--stop-at",
        type=int,
        default=None,
        help="Stop after this global step with a checkpoint (the schedule still spans schedule.steps).",
    )
    def command(config_name, data_root, overrides, device, quiet, out, resume, resume_from, stop_at):
        from cals_bench.train.config import load_config

        config = load_config(config_name, overrides)
        if task and config.task != task:
            raise CalsBenchError(
                f"config {config_name} is for task {config.task!r}; use `cals-bench train run`"
            )
        out = out or str(Path("runs") / "train" / config.name)
        _report(_fit(config, data_root, out, resume, resume_from, device, stop_at, quiet))

    return command


_train_command("run", None, None, "Train any registered task from a config (`task:` names it).")
_train_command("iaml", "iaml-lol-v1", "iaml", "Train IAML (U-Net + CBAM student, EMA teacher, IAML loss).")
_train_command(
    "zero-dce",
    "zero-dce-cpu",
    "zero-dce",
    "Train Zero-DCE (DCE-Net, the four zero-reference losses; no references).",
)
_train_command(
    "enlightengan",
    "enlightengan-cpu",
    "enlightengan",
    "Train an EnlightenGAN-style generator (unpaired: lows + normal-light images; global + local LSGAN Ds).",
)
_train_command(
    "cals",
    "cals-cpu",
    "cals",
    "Train CALS (U-Net, context-scheduled losses); --config cals-cpu-baseline is its fixed-weight baseline.",
)


@train.command("configs")
def list_configs() -> None:
    """List the built-in training configs."""
    from cals_bench.train.config import builtin_configs

    for name, path in builtin_configs().items():
        first = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), ""
        )
        click.echo(f"{name:<22} {first}")


@train.command("ablation")
@click.option(
    "--protocol",
    "protocol_name",
    default="lol-v1",
    show_default=True,
    help="Protocol to score on; its training split (train_low_dir/train_high_dir) is the training data.",
)
@_common
@click.option(
    "--test-data-root", type=click.Path(), default=None, help="Data root for scoring (default: --data-root)."
)
@click.option("--out", type=click.Path(file_okay=False), default="runs/ablation", show_default=True)
@click.option(
    "--results",
    type=click.Path(file_okay=False),
    default=None,
    envvar="CALS_BENCH_RESULTS",
    help="Results folder for the scoring runs (default ./results).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def ablation(protocol_name, data_root, overrides, device, quiet, test_data_root, out, results, as_json):
    """Train and score the five loss variants of the paper's Table IV, then print the table.

    Each variant trains from its built-in config (ablation-*.yaml) with the --set overrides, on the
    protocol's training split; its checkpoint is chosen on the held-out validation split (best.pt) and
    scored on the protocol's test split. Re-running continues unfinished variants and reuses finished ones.
    """
    from cals_bench.train.config import load_config, parse_overrides

    over = parse_overrides(overrides)
    data = over.setdefault("data", {})
    if "protocol" not in data:  # train on the protocol's training split unless --set names other data
        data["protocol"] = "" if ("low_dir" in data or "clean_dir" in data) else protocol_name
    rows = []
    for label, cfg_name in ABLATION:
        config = load_config(cfg_name, over)
        result = _train_or_continue(config, data_root, Path(out) / cfg_name, device, quiet)
        rows.append({"variant": label, "config": cfg_name, **_selected(result)})
    if not _is_main_process():
        return
    scored = _score_rows(rows, protocol_name, test_data_root or data_root, results, device, quiet)
    if as_json:
        click.echo(json.dumps(scored, indent=1))
    else:
        click.echo(_table(scored, protocol_name))


def _train_or_continue(config, data_root, run_dir: Path, device, quiet):
    """Train ``config`` in ``run_dir``, continuing from its last.pt when there is one (a finished run
    returns at once): the multi-run commands can be re-run after an interruption."""
    from cals_bench.train.loop import Trainer

    resume = "auto" if (run_dir / "last.pt").is_file() else None
    trainer = Trainer(config, data_root=data_root, out_dir=run_dir, resume=resume, device=device,
                      progress=not quiet, handle_signals=True)  # fmt: skip
    return trainer.fit()


def _selected(result) -> dict:
    """The checkpoint chosen on the validation split and its validation scores."""
    b = result.best_val
    return {"checkpoint": str(result.selected), "val_psnr": b.get("psnr"), "val_ssim": b.get("ssim"),
            "step": b.get("step")}  # fmt: skip


def _score_rows(rows, protocol_name, data_root, results, device, quiet):
    from cals_bench import protocol as protocol_mod
    from cals_bench.engine import evaluate
    from cals_bench.store import Store
    from cals_bench.train.checkpoint_enhancer import CheckpointEnhancer

    proto = protocol_mod.load(protocol_name)
    store = Store(results)
    for row in rows:
        result = evaluate(
            proto,
            CheckpointEnhancer(row["checkpoint"]),
            data_root=data_root,
            store=store,
            device=device,
            save_outputs=False,
            progress=not quiet,
        )
        row["test"] = {m: v["mean"] for m, v in result.summary.items()}
        row["run_id"] = result.run_id
    return rows


def _table(rows, protocol_name) -> str:
    metrics = list(dict.fromkeys(m for r in rows for m in r["test"]))
    head = f"{'variant':<38}{'val PSNR':>10}{'val SSIM':>10}" + "".join(f"{'test ' + m:>13}" for m in metrics)
    lines = [
        f"Ablation (paper Table IV) on {protocol_name}: checkpoints chosen on the validation split",
        head,
        "-" * len(head),
    ]
    for r in rows:
        vals = "".join(f"{r['test'].get(m, math.nan):>13.4f}" for m in metrics)
        lines.append(f"{r['variant']:<38}{_f(r['val_psnr'], 3):>10}{_f(r['val_ssim'], 4):>10}{vals}")
    return "\n".join(lines)


def _f(v, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


@train.command("grid")
@click.option("--config", "config_name", default="iaml-lol-v1", show_default=True, help="Base IAML config.")
@click.option("--lambdas", default=DEFAULT_LAMBDAS, show_default=True, help="Comma-separated mirror weights.")
@_common
@click.option("--out", type=click.Path(file_okay=False), default="runs/lambda-grid", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def grid(config_name, lambdas, data_root, overrides, device, quiet, out, as_json):
    """Grid search of lambda (model.mirror_weight), selected on the validation split (never the test split).

    Each value trains from the base config in <out>/lambda_<value>; the table gives each run's best
    validation PSNR/SSIM and marks the selected lambda. Re-running continues unfinished runs.
    """
    from cals_bench.train.config import load_config, merge, parse_overrides

    try:
        values = [float(v) for v in lambdas.split(",") if v.strip()]
    except ValueError as exc:
        raise CalsBenchError(f"--lambdas {lambdas!r}: expected comma-separated numbers") from exc
    if not values:
        raise CalsBenchError("--lambdas: give at least one value")
    base = load_config(config_name, overrides)
    rows = []
    for lam in values:
        config = load_config(
            config_name,
            merge(
                parse_overrides(overrides),
                {"model": {"mirror_weight": lam}, "name": f"{base.name}-lambda{lam:g}"},
            ),
        )
        result = _train_or_continue(config, data_root, Path(out) / f"lambda_{lam:g}", device, quiet)
        rows.append({"lambda": lam, **_selected(result)})
    scored = [r for r in rows if r["val_psnr"] is not None]
    best = max(scored, key=lambda r: r["val_psnr"]) if scored else None
    for r in rows:
        r["selected"] = r is best
    if as_json:
        _echo(json.dumps(rows, indent=1))
        return
    _echo("lambda grid (model.mirror_weight), selected on the validation split")
    _echo(f"{'lambda':>8}{'val PSNR':>10}{'val SSIM':>10}{'step':>8}  checkpoint")
    for r in rows:
        mark = "  <- selected" if r["selected"] else ""
        _echo(
            f"{r['lambda']:>8g}{_f(r['val_psnr'], 3):>10}{_f(r['val_ssim'], 4):>10}{r['step'] or '':>8}  "
            f"{r['checkpoint']}{mark}"
        )


def _add_commands() -> None:
    """Commands defined beside what they run: several seeds, the CALS context predictor's head."""
    from cals_bench.reference_models.cals.cli import context_command
    from cals_bench.train.seeds import seeds_command

    train.add_command(seeds_command)
    train.add_command(context_command)


_add_commands()

# What `cals-bench` registers under its main group (cals_bench/cli.py: _register_optional_commands).
COMMANDS = (train,)
