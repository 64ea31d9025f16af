"""The training loop every trainer uses.

:class:`Trainer` runs a validated :class:`~cals_bench.train.config.TrainConfig`: it lists the training
pairs and holds out the validation split, builds the task's model, optimiser (Adam/AdamW), learning-rate
schedule (linear warm-up, then cosine annealing to ``min_lr`` or constant) and, for fp16, a gradient scaler;
wraps the model in DistributedDataParallel under torchrun, optionally in ``torch.compile``; and steps:
autocast forward, backward, gradient clipping, a non-finite guard, optimiser and scheduler step, EMA
updates. It logs to ``log.csv`` and ``loss_curve.png``, validates on the held-out split, and writes
checkpoints (``step_NNNNNNN.pt``, ``last.pt``, ``best.pt``) from which :meth:`Trainer.fit` resumes exactly.

Output folder layout::

    config.yaml       the validated config (also inside every checkpoint)
    split.json        the training and validation sample ids (validation = held out from the training split)
    log.csv           losses per logging interval and validation metrics
    loss_curve.png    the plot of log.csv
    step_*.pt, last.pt, best.pt   checkpoints (best = highest validation PSNR)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cals_bench.metrics.fidelity import peak_signal_noise_ratio, structural_similarity
from cals_bench.train import checkpoint
from cals_bench.train import distributed as dist_mod
from cals_bench.train.batch import Batch, collate
from cals_bench.train.config import (
    OptimConfig,
    RuntimeConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_json,
    first_difference,
    training_identity,
)
from cals_bench.train.data import StepBatchSampler, validation_images
from cals_bench.train.errors import CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from cals_bench.train.logs import CsvLog, plot_curves
from cals_bench.train.sources import build_source
from cals_bench.train.tasks import EmaPair, TrainableModel, build_model


@dataclass
class TrainResult:
    """What a finished (or stopped) :meth:`Trainer.fit` leaves: the step reached and the checkpoints."""

    out_dir: Path
    step: int
    last: Path | None
    best: Path | None
    val: dict[str, float] = field(default_factory=dict)
    best_val: dict[str, float] = field(default_factory=dict)

    @property
    def selected(self) -> Path | None:
        """The checkpoint chosen on the validation split (``best.pt``), else the last one."""
        return self.best or self.last


# ---------------------------------------------------------------------------------------------------------
# building blocks (shared with benchmarks/train_speed.py)


def resolve_amp(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``runtime.amp`` on ``device`` (None = full precision)."""
    if setting == "fp32":
        return None
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError("runtime.amp: fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    return torch.bfloat16 if setting == "bf16" else torch.float16


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the parameters with the config's learning rate, betas, eps and weight decay."""
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per step: ``warmup_steps`` of linear warm-up from 1e-3 x lr, then cosine to ``min_lr`` or constant."""
    sched = torch.optim.lr_scheduler
    rest = cfg.steps - cfg.warmup_steps
    main = (
        sched.CosineAnnealingLR(opt, T_max=rest, eta_min=cfg.min_lr)
        if cfg.name == "cosine"
        else sched.ConstantLR(opt, factor=1.0, total_iters=0)
    )
    if not cfg.warmup_steps:
        return main
    warm = sched.LinearLR(opt, start_factor=1e-3, total_iters=cfg.warmup_steps)
    return sched.SequentialLR(opt, [warm, main], milestones=[cfg.warmup_steps])


@torch.no_grad()
def ema_update(pair: EmaPair) -> None:
    """``target <- m * target + (1 - m) * source`` for every parameter and floating buffer."""
    tgt = [*pair.target.parameters(), *(b for b in pair.target.buffers() if b.is_floating_point())]
    src = [*pair.source.parameters(), *(b for b in pair.source.buffers() if b.is_floating_point())]
    for t, s in zip(tgt, src):
        t.lerp_(s.detach(), 1.0 - pair.momentum)


def build_phase_optimizers(
    model: TrainableModel, cfg: OptimConfig, schedule: ScheduleConfig
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, torch.optim.lr_scheduler.LRScheduler]]:
    """One optimiser and schedule per phase the model declares (in phase order)."""
    phases = model.phases()
    names = [ph.name for ph in phases]
    if not phases or len(set(names)) != len(names):
        raise ConfigError(f"task {model.task}: phases must be non-empty with distinct names, got {names}")
    seen: set[int] = set()
    optimizers, schedulers = {}, {}
    for ph in phases:
        ids = {id(p) for p in ph.params}
        if not ids or ids & seen:
            raise ConfigError(f"task {model.task}: phase {ph.name} has no parameters or shares them")
        seen |= ids
        ocfg = dataclasses.replace(cfg, lr=cfg.lr * ph.lr_scale, betas=tuple(ph.betas or cfg.betas))
        optimizers[ph.name] = build_optimizer(list(ph.params), ocfg)
        schedulers[ph.name] = build_scheduler(optimizers[ph.name], schedule)
    return optimizers, schedulers


class StepRunner:
    """One optimisation step, split where the loop must look before the weights change.

    For each phase (one, ``"main"``, unless the task declares several): :meth:`forward_backward` zeroes
    the phase optimiser's gradients, runs the autocast forward and the (scaled) backward, then unscales and
    clips that optimiser's parameters; it returns the detached loss terms and their gradient norm.
    :meth:`step_phase` steps that optimiser through the scaler. :meth:`finish` then advances the scaler,
    every schedule and the EMA pairs once. :meth:`apply` is ``step_phase`` + ``finish`` for one phase.

    ``optimizer``/``scheduler``: one of each (a single phase) or mappings ``{phase: ...}`` in phase order.
    """

    def __init__(
        self,
        net: nn.Module,
        model: TrainableModel,
        optimizer: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
        scheduler: torch.optim.lr_scheduler.LRScheduler | dict[str, Any],
        runtime: RuntimeConfig,
        grad_clip: float,
        device: torch.device,
    ) -> None:
        if not isinstance(optimizer, dict):
            optimizer, scheduler = {"main": optimizer}, {"main": scheduler}
        self.net, self.model, self.optimizers, self.schedulers = net, model, optimizer, scheduler
        self.phase_names = tuple(optimizer)
        self.multi = len(self.phase_names) > 1
        self.optimizer = optimizer[self.phase_names[0]]  # the first (the only one for one phase)
        self.scheduler = scheduler[self.phase_names[0]]
        self.device = device
        self.amp_dtype = resolve_amp(runtime.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype is torch.float16)
        self.channels_last = runtime.channels_last
        self.grad_clip = grad_clip
        self.phase_params = {
            name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizer.items()
        }
        self.ema = model.ema_pairs()
        self.ema_updates = 0

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward_backward(
        self, batch: Batch | torch.Tensor, high: torch.Tensor | None = None, phase: str | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``batch``: a :class:`Batch`, or (shorthand for paired tasks) ``low, high`` tensors."""
        if not isinstance(batch, Batch):
            batch = Batch(low=batch, high=high)
        phase = phase or self.phase_names[0]
        opt = self.optimizers[phase]
        opt.zero_grad(set_to_none=True)
        batch = batch.to(self.device, self.channels_last)
        ctx = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            terms = self.net(batch, phase=phase) if self.multi else self.net(batch)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.unscale_(opt)
        params = self.phase_params[phase]
        grads = [p.grad for p in params if p.grad is not None]
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        return {k: v.detach().float() for k, v in terms.items()}, norm.detach().float()

    def step_phase(self, phase: str | None = None) -> None:
        self.scaler.step(self.optimizers[phase or self.phase_names[0]])

    def finish(self) -> None:
        self.scaler.update()
        for sched in self.schedulers.values():
            sched.step()
        for pair in self.ema:
            ema_update(pair)
        self.ema_updates += 1

    def apply(self) -> None:
        """Step the (single) optimiser, then :meth:`finish`."""
        if self.multi:
            raise RuntimeError("apply() is for one phase; call step_phase(name) per phase, then finish()")
        self.step_phase()
        self.finish()

    def merge_terms(self, per_phase: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The logged terms of a step: a phase's own for one phase; for several, ``loss_<phase>`` for each
        phase's ``loss``, their sum as ``loss``, and every other term under its own name."""
        if not self.multi:
            return next(iter(per_phase.values()))
        out: dict[str, torch.Tensor] = {}
        for name, terms in per_phase.items():
            out[f"loss_{name}"] = terms["loss"]
            out.update({k: v for k, v in terms.items() if k != "loss"})
        return {"loss": sum(out[f"loss_{n}"] for n in per_phase), **out}


# ---------------------------------------------------------------------------------------------------------
# the loop


def _ids_sha(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), "?")


class Trainer:
    """Run (or resume) one training config. See the module docstring for what it writes.

    ``resume``: None (fresh run; refused when ``out_dir`` already holds checkpoints), ``"auto"``
    (``out_dir/last.pt``) or a checkpoint path. ``device``: as for ``cals-bench run`` (default cuda when
    available). ``handle_signals``: turn SIGINT/SIGTERM into a checkpoint at the next step boundary.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        data_root: str | Path | None,
        out_dir: str | Path,
        resume: str | Path | None = None,
        device: str | None = None,
        progress: bool = True,
        handle_signals: bool = False,
    ) -> None:
        self.config = config
        self.data_root = data_root
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.device_name = device
        self.progress = progress
        self.handle_signals = handle_signals
        self._stop_requested = False
        self.last_checkpoint: Path | None = None
        self.last_checkpoint_step: int | None = None
        self._resumed_interval: dict[str, Any] | None = None
        self._resumed_val: dict[str, float] = {}
        self.best: dict[str, Any] = {}

    # -- resume -----------------------------------------------------------------------------------------
    def _checkpoint_to_resume(self) -> tuple[Path | None, dict[str, Any] | None]:
        if self.resume is None:
            existing = sorted(self.out_dir.glob("step_*.pt")) + sorted(self.out_dir.glob("last.pt"))
            if existing:
                raise CheckpointError(
                    f"{self.out_dir}: holds checkpoints of an earlier run ({existing[-1].name}); "
                    "pass --resume to continue it or choose another --out"
                )
            return None, None
        path = self.out_dir / "last.pt" if str(self.resume) == "auto" else Path(self.resume)
        ckpt = checkpoint.load(path)
        if ckpt["task"] != self.config.task:
            raise CheckpointError(
                f"{path}: checkpoint is for task {ckpt['task']!r}, not {self.config.task!r}"
            )
        try:
            saved = config_from_json(ckpt["config"], f"{path} (saved config)")
        except ConfigError as exc:
            raise CheckpointError(f"{path}: its saved config no longer validates: {exc}") from exc
        diff = first_difference(training_identity(saved), training_identity(self.config))
        if diff:
            raise CheckpointError(
                f"{path}: the config differs from the checkpoint's at {diff}; an exact resume needs the same "
                "config (only name, runtime.* and log.* may change)"
            )
        return path, ckpt

    # -- main -------------------------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train to ``schedule.steps`` (or stop after global step ``stop_at``, checkpointing there)."""
        cfg = self.config
        ctx = dist_mod.setup(self.device_name)
        torch.backends.cudnn.benchmark = not cfg.runtime.deterministic
        if cfg.runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        resume_path, ckpt = self._checkpoint_to_resume()  # before anything is written
        data = build_source(cfg.data, self.data_root, cfg.seed)
        ids_sha = _ids_sha(data.train_ids)
        if ckpt is not None and ckpt.get("position", {}).get("train_ids_sha256") not in (None, ids_sha):
            raise CheckpointError(
                f"{resume_path}: the training split differs from the checkpoint's "
                f"({len(data.train_ids)} samples now); "
                "an exact resume needs the same training data"
            )

        torch.manual_seed(cfg.seed)
        model = build_model(cfg.task, cfg.model)
        if ckpt is not None:
            checkpoint.check_architecture(resume_path, ckpt, cfg.task, model)
        else:
            model.init_weights()
        model.to(ctx.device)
        if cfg.runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizers, schedulers = build_phase_optimizers(model, cfg.optim, cfg.schedule)
        step = 0
        if ckpt is not None:  # every process reads the same checkpoint
            model.load_state_dict(ckpt["model"])
            _load_optim_state(resume_path, ckpt, optimizers, schedulers)
            checkpoint.set_rng_state(ckpt["rng"])
            step = int(ckpt["step"])
            self.best = dict(ckpt.get("best", {}))
            self.last_checkpoint, self.last_checkpoint_step = resume_path, step
            self._resumed_interval = ckpt.get("log_interval")
            self._resumed_val = dict(ckpt.get("val", {}))
        else:
            torch.manual_seed(cfg.seed + 1)  # the stream after initialisation, identical on every process
        net: nn.Module = model
        if ctx.distributed:
            net = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=len(optimizers) > 1,  # each phase's forward uses part of the model
            )
        if cfg.runtime.compile:
            net = torch.compile(net)
        runner = StepRunner(net, model, optimizers, schedulers, cfg.runtime, cfg.optim.grad_clip, ctx.device)
        optimizer, scheduler = runner.optimizer, runner.scheduler
        if ckpt is not None:
            if ckpt.get("scaler"):
                runner.scaler.load_state_dict(ckpt["scaler"])
            runner.ema_updates = int(next(iter(ckpt.get("ema", {}).values()), {}).get("updates", step))

        stop = cfg.schedule.steps if stop_at is None else min(stop_at, cfg.schedule.steps)
        sampler = StepBatchSampler(
            len(data.train_ids), cfg.optim.batch_size, cfg.seed, step, stop, ctx.rank, ctx.world
        )
        loader = torch.utils.data.DataLoader(
            data.dataset,
            batch_sampler=sampler,
            num_workers=cfg.data.workers,
            pin_memory=ctx.device.type == "cuda",
            collate_fn=collate,
            # its own generator: creating the iterator draws a seed from it, never from the global stream
            # that a task's forward may use (a resumed run creates its iterator at another point of it)
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        terms_names = model.loss_terms()
        log = CsvLog(self.out_dir / "log.csv", terms_names)
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            (self.out_dir / "split.json").write_text(
                json.dumps(
                    {
                        "description": data.description,
                        "root": str(data.root),
                        "train": data.train_ids,
                        "validation": [s.sample_id for s in data.val],
                        **data.info,
                        "note": "validation is held out from the training split; the test split is not read",
                    },
                    indent=1,
                )
            )
            log.start(step if ckpt is not None else None)
        dist_mod.barrier(ctx)
        val_set = validation_images(data.val, cfg.data.val_crop) if ctx.is_main and data.val else []

        state = _LoopState(
            model=model, optimizer=optimizer, scheduler=scheduler, runner=runner, ctx=ctx, sampler=sampler,
            loader=loader, ids_sha=ids_sha, terms=terms_names, log=log, has_val=bool(data.val), val_set=val_set,
        )  # fmt: skip
        with self._signals():
            return self._loop(state, step, stop)

    @contextlib.contextmanager
    def _signals(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            self._stop_requested = True

        old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _loop(self, st: _LoopState, step: int, stop: int) -> TrainResult:
        from tqdm import tqdm

        cfg, ctx = self.config, st.ctx
        bar = tqdm(
            total=cfg.schedule.steps,
            initial=step,
            desc=cfg.name or cfg.task,
            unit="step",
            disable=not (self.progress and ctx.is_main),
            file=sys.stderr,
            dynamic_ncols=True,
        )
        # Loss sums of the current logging interval; a checkpoint holds them (summed over processes, on
        # process 0 after a resume) so that a resumed run logs exactly what an uninterrupted one does.
        sums = torch.zeros(len(st.terms) + 1, device=ctx.device, dtype=torch.float64)
        count, t0 = 0, time.perf_counter()
        if self._resumed_interval:
            count = int(self._resumed_interval["count"])
            if ctx.is_main:
                sums += self._resumed_interval["sums"].to(sums)
        last_val: dict[str, float] = dict(self._resumed_val)
        st.model.train()
        for batch in st.loader:
            per_phase: dict[str, dict[str, torch.Tensor]] = {}
            norms = []
            for phase in st.runner.phase_names:
                terms, gnorm = st.runner.forward_backward(batch, phase=phase)
                per_phase[phase] = terms
                norms.append(gnorm)
                # with fp16 the scaler skips steps with inf gradients by design; otherwise they are divergence
                check_grad = not st.runner.scaler.is_enabled()
                finite = torch.isfinite(terms["loss"]) & (torch.isfinite(gnorm) if check_grad else True)
                flags = torch.stack(
                    [
                        (~finite).double(),
                        torch.tensor(float(self._stop_requested), device=ctx.device, dtype=torch.float64),
                    ]
                )
                flags = dist_mod.all_reduce_sum(flags, ctx).tolist()
                if flags[0]:
                    bar.close()
                    where = f" in phase {phase}" if st.runner.multi else ""
                    self._diverged(step + 1, st.runner.merge_terms(per_phase), gnorm, where)
                st.runner.step_phase(phase)
            st.runner.finish()
            terms = st.runner.merge_terms(per_phase)
            gnorm = norms[0] if len(norms) == 1 else torch.stack(norms).square().sum().sqrt()
            step += 1
            sums += torch.stack([*(terms[k] for k in st.terms), gnorm]).double()
            count += 1
            bar.update(1)
            if step % cfg.log.every == 0 or step == cfg.schedule.steps:
                dist_mod.all_reduce_sum(sums, ctx)
                means = (sums / (count * ctx.world)).tolist()
                rate = count * cfg.optim.batch_size / max(time.perf_counter() - t0, 1e-9)
                row = {
                    "step": step,
                    "epoch": step // st.sampler.steps_per_epoch,
                    "kind": "train",
                    "lr": st.optimizer.param_groups[0]["lr"],
                    "grad_norm": means[-1],
                    "images_per_s": rate,
                    **dict(zip(st.terms, means[:-1])),
                }
                if ctx.is_main:
                    st.log.write(row)
                bar.set_postfix(loss=f"{means[0]:.4g}", lr=f"{row['lr']:.2e}")
                sums.zero_()
                count, t0 = 0, time.perf_counter()
            validate = st.has_val and (step % cfg.log.val_every == 0 or step == cfg.schedule.steps)
            if validate and ctx.is_main:
                last_val = self._validate(st, step)
            stopping = bool(flags[1]) or step == stop
            if validate or step % cfg.log.checkpoint_every == 0 or stopping:
                interval = {"sums": dist_mod.all_reduce_sum(sums.clone(), ctx).cpu(), "count": count}
                self._save(st, step, last_val, interval, improved=validate and self._improved(last_val, step))
                if ctx.is_main and cfg.log.plot:
                    plot_curves(st.log.path, self.out_dir / "loss_curve.png", st.terms)
            if flags[1] and step < stop:
                bar.close()
                raise TrainingInterrupted(
                    f"interrupted at step {step}; checkpoint {self.last_checkpoint}; continue with --resume"
                )
            if stopping:
                break
        bar.close()
        best = self.out_dir / "best.pt"
        return TrainResult(
            self.out_dir,
            step,
            self.last_checkpoint,
            best if best.is_file() else None,
            last_val,
            dict(self.best),
        )

    def _diverged(
        self, step: int, terms: dict[str, torch.Tensor], gnorm: torch.Tensor, where: str = ""
    ) -> None:
        parts = ", ".join(f"{k}={float(v):.6g}" for k, v in terms.items())
        last = (
            f"{self.last_checkpoint} (step {self.last_checkpoint_step})"
            if self.last_checkpoint
            else "none (no checkpoint written yet)"
        )
        raise TrainingDiverged(
            f"step {step}: non-finite loss{where} ({parts}, grad_norm={float(gnorm):.6g}); stopped before "
            f"updating the weights{' of that phase' if where else ''}; last good checkpoint: {last}"
        )

    def _improved(self, val: dict[str, float], step: int) -> bool:
        if not val or not math.isfinite(val.get("psnr", float("nan"))):
            return False
        if not self.best or val["psnr"] > self.best["psnr"]:
            self.best = {"psnr": val["psnr"], "ssim": val["ssim"], "step": step}
            return True
        return False

    @torch.no_grad()
    def _validate(self, st: _LoopState, step: int) -> dict[str, float]:
        enhancer = st.model.enhancer_module()
        st.model.eval()
        psnr, ssim = [], []
        for _sid, low, high in st.val_set:
            out = enhancer(low.to(st.ctx.device)).float().clamp(0, 1).cpu()
            psnr.append(float(peak_signal_noise_ratio(out, high)[0]))
            ssim.append(float(structural_similarity(out, high)[0]))
        st.model.train()
        val = {"psnr": sum(psnr) / len(psnr), "ssim": sum(ssim) / len(ssim)}
        st.log.write(
            {
                "step": step,
                "epoch": step // st.sampler.steps_per_epoch,
                "kind": "val",
                "val_psnr": val["psnr"],
                "val_ssim": val["ssim"],
            }
        )
        return val

    def _save(self, st: _LoopState, step: int, val: dict[str, float], interval: dict, improved: bool) -> None:
        ctx = st.ctx
        if ctx.is_main:
            payload = self._payload(st, step, val)
            payload["log_interval"] = interval
            path = checkpoint.save(payload, self.out_dir / f"step_{step:07d}.pt")
            _copy_atomic(path, self.out_dir / "last.pt")
            if improved:
                _copy_atomic(path, self.out_dir / "best.pt")
            self._prune()
        self.last_checkpoint, self.last_checkpoint_step = self.out_dir / "last.pt", step
        dist_mod.barrier(ctx)

    def _prune(self) -> None:
        keep = self.config.log.keep
        if keep:
            for old in sorted(self.out_dir.glob("step_*.pt"))[:-keep]:
                old.unlink()

    def _payload(self, st: _LoopState, step: int, val: dict[str, float]) -> dict[str, Any]:
        spe = st.sampler.steps_per_epoch
        return {
            "format": checkpoint.FORMAT,
            "task": self.config.task,
            "config": self.config.to_json(),
            "step": step,
            "position": {
                "step": step,
                "epoch": step // spe,
                "batch_in_epoch": step % spe,
                "steps_per_epoch": spe,
                "train_ids_sha256": st.ids_sha,
            },
            "model": st.model.state_dict(),
            "ema": {
                p.name: {
                    "source": _module_name(st.model, p.source),
                    "momentum": p.momentum,
                    "updates": st.runner.ema_updates,
                }
                for p in st.runner.ema
            },
            **_optim_state(st.runner),
            "scaler": st.runner.scaler.state_dict() if st.runner.scaler.is_enabled() else {},
            "rng": checkpoint.rng_state(),
            "val": dict(val),
            "best": dict(self.best),
            "torch": str(torch.__version__),
        }


def _optim_state(runner: StepRunner) -> dict[str, Any]:
    """``optimizer``/``scheduler``: their state dicts (one phase), or ``{phase: state dict}`` (several);
    ``phases``: the phase names in order."""
    if not runner.multi:
        return {
            "optimizer": runner.optimizer.state_dict(),
            "scheduler": runner.scheduler.state_dict(),
            "phases": list(runner.phase_names),
        }
    return {
        "optimizer": {n: o.state_dict() for n, o in runner.optimizers.items()},
        "scheduler": {n: s.state_dict() for n, s in runner.schedulers.items()},
        "phases": list(runner.phase_names),
    }


def _load_optim_state(path: Path | None, ckpt: dict[str, Any], optimizers: dict, schedulers: dict) -> None:
    names = list(optimizers)
    saved = list(ckpt.get("phases", ["main"]))
    if len(saved) != len(names) or (len(names) > 1 and saved != names):
        raise CheckpointError(
            f"{path}: the checkpoint's optimiser phases {saved} are not this task's {names}"
        )
    if len(names) == 1:
        optimizers[names[0]].load_state_dict(ckpt["optimizer"])
        schedulers[names[0]].load_state_dict(ckpt["scheduler"])
        return
    for n in names:
        optimizers[n].load_state_dict(ckpt["optimizer"][n])
        schedulers[n].load_state_dict(ckpt["scheduler"][n])


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


@dataclass
class _LoopState:
    model: TrainableModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    runner: StepRunner
    ctx: dist_mod.DistContext
    sampler: StepBatchSampler
    loader: torch.utils.data.DataLoader
    ids_sha: str
    terms: tuple[str, ...]
    log: CsvLog
    has_val: bool
    val_set: list


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Shorthand: ``Trainer(config, **kwargs).fit(stop_at=...)``."""
    stop_at = kwargs.pop("stop_at", None)
    return Trainer(config, **kwargs).fit(stop_at=stop_at)
