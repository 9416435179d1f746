"""The one training loop shared by every stage (teach, distil-encoder, distil-decoder).

A *stage* (:class:`~nixdistill.distill.stage.Stage`) declares its train set, its modules,
the parameters of each optimiser, its options and loss weights, and a short ``training_step`` and
``evaluate``; the :class:`Trainer` does everything else: it builds the loader and the AdamW
optimisers, places modules on the device, runs DDP under ``torchrun``, mixed precision,
gradient clipping, NaN/inf guards, per-epoch exponential LR decay (as jaywalnut310/vits) and
an optional linear cooldown at the end of the budget (``train.lr_cooldown``, :func:`cooldown_factor`),
step/time budgets, Rich progress on stderr, TensorBoard logging, periodic evaluation, atomic
checkpoints and *exact* resume.

Weight averaging (``train.ema_power``): the stage's ``averaged`` modules get a
:class:`torch.optim.swa_utils.AveragedModel` with the power-function profile of
:func:`power_ema`, updated after every step. Evaluation scores the average, and checkpoints
store it under ``models`` (what export, ``--init`` and the encoder's calibration read) with the
live weights under ``live_models`` (what resume reads).

Inside ``training_step`` call trainable modules through ``ctx.model(name)``: it is the
DDP-wrapped module under ``torchrun`` (so gradients are averaged across processes) and the
plain module otherwise.

Exact resume: a checkpoint stores step, epoch, batches consumed in the epoch, every optimizer,
scheduler and grad scaler, the RNG states of every rank (torch, CUDA, numpy, python) and the
stage's extra state. Creating the loader iterator and running ``evaluate`` never consume the
training RNG, so a resumed run replays the uninterrupted one bit for bit (with
``num_workers=0``; worker processes draw their own seeds).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nixdistill.config import TrainConfig
from nixdistill.data import Batch, make_loader
from nixdistill.errors import NixdistillError
from nixdistill.runs import (
    CHECKPOINT_FORMAT,
    CONFIG_FILENAME,
    LAST_NAME,
    CheckpointError,
    checkpoint_dir,
    latest_checkpoint,
    link_or_copy_atomic,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoint_name,
    write_json_atomic,
)
from nixdistill.distill.context import StepContext, scalar
from nixdistill.distill.distributed import DistInfo, init_distributed, resolve_autocast_dtype
from nixdistill.distill.rng import capture_rng_state, isolated_rng, restore_rng_state, seed_everything
from nixdistill.distill.stage import Stage

__all__ = [
    "TrainResult",
    "Trainer",
    "TrainingError",
    "make_adamw",
    "power_ema",
]

TENSORBOARD_DIRNAME = "tensorboard"
SECONDS_PER_MINUTE = 60.0


class TrainingError(NixdistillError):
    """The training setup is unusable (empty loader, wrong stage for a checkpoint, ...)."""


class TrainResult(NamedTuple):
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        step: optimizer steps completed in total (including before a resume).
        reason: why training stopped: ``"max_steps"``, ``"max_minutes"`` or ``"interrupted"``.
        checkpoint: ``RUN/checkpoints/last.pt`` (``None`` on ranks other than 0).
    """

    step: int
    reason: str
    checkpoint: Path | None


def make_adamw(params, train_cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the config's learning rate, betas, eps and weight decay (VITS: 2e-4,
    (0.8, 0.99), 1e-9, 0.01). ``params`` may be an iterable of tensors or of param groups."""
    return torch.optim.AdamW(
        params, lr=train_cfg.learning_rate, betas=tuple(train_cfg.betas), eps=train_cfg.eps,
        weight_decay=train_cfg.weight_decay,
    )


def cooldown_factor(step: int, trained_seconds: float, train_cfg: TrainConfig) -> float:
    """Learning-rate multiplier of the linear cooldown (``train.lr_cooldown``, ``c``).

    ``progress`` is the larger of ``step / max_steps`` and ``trained_seconds / (60 *
    max_minutes)`` (either budget may be unset); the factor is 1 until ``progress = 1 - c`` and
    then falls linearly to 0 at ``progress = 1``.

    Args:
        step: optimiser steps done. trained_seconds: training wall time so far, in seconds.
        train_cfg: the stage's :class:`TrainConfig`.
    Returns:
        the factor in [0, 1]; 1 without a cooldown or without any budget.
    Source: Hägele et al. 2024 (arXiv:2405.18392), the linear cooldown of sec. 3.
    """
    c = train_cfg.lr_cooldown
    if c is None:
        return 1.0
    progress = 0.0
    if train_cfg.max_steps:
        progress = step / train_cfg.max_steps
    if train_cfg.max_minutes:
        progress = max(progress, trained_seconds / (train_cfg.max_minutes * SECONDS_PER_MINUTE))
    return min(1.0, max(0.0, (1.0 - progress) / c))


def power_ema(gamma: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """``multi_avg_fn`` of a power-function EMA for :class:`~torch.optim.swa_utils.AveragedModel`.

    Update ``t`` (1-based; the first one copies the weights) sets
    ``avg = beta_t * avg + (1 - beta_t) * w`` with ``beta_t = (1 - 1/t)^(gamma + 1)``, so that
    after ``T`` updates the weights of step ``tau`` count
    ``(tau^(gamma+1) - (tau-1)^(gamma+1)) / T^(gamma+1)``, about ``tau^gamma``; ``gamma = 0`` is
    the plain mean. Source: Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
    Diffusion Models" (EDM2), eq. 3.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        t = float(num_averaged) + 1.0  # AveragedModel passes the updates made so far
        beta = (1.0 - 1.0 / t) ** (gamma + 1.0)
        torch._foreach_lerp_(averaged, current, 1.0 - beta)

    return update


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, (torch.Tensor, Batch)):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _is_trainable(m: nn.Module) -> bool:
    return any(p.requires_grad for p in m.parameters())


# ---------------------------------------------------------------------------------------------

@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    nan_skips: int = 0
    last_eval_step: int = -1
    last_checkpoint_step: int = -1
    trained_seconds: float = 0.0
    recent: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Runs a stage until ``max_steps`` or ``max_minutes`` (see module docstring).

    Args:
        stage: the :class:`~nixdistill.distill.stage.Stage` to train.
        run_dir: run folder; receives ``config.json``, ``checkpoints/`` and ``tensorboard/``.
        train_cfg: loop settings (intervals, budgets, precision, clipping, seed).
        device: ``"cpu"``, ``"cuda"``...; under torchrun CUDA becomes ``cuda:LOCAL_RANK``.
        resume: continue exactly from ``RUN/checkpoints/last.pt``.
        config_dict: the resolved experiment config, written to ``RUN/config.json`` and stored
            in every checkpoint.
        meta: extra JSON-able information stored in every checkpoint (e.g. frontend).
    Raises (from ``fit``):
        CheckpointError: ``resume`` without a checkpoint, or one from another stage.
        TrainingError: the loader yields no batches.
    """

    def __init__(self, stage: Stage, run_dir: str | Path, train_cfg: TrainConfig,
                 device: str | torch.device = "cpu", resume: bool = False,
                 config_dict: dict[str, Any] | None = None, meta: dict[str, Any] | None = None):
        self.stage = stage
        self.run_dir = Path(run_dir)
        self.train_cfg = train_cfg
        self.requested_device = device
        self.resume = resume
        self.config_dict = config_dict
        self.meta = meta or {}
        self.state = _State()
        self.writer = None
        self.ctx = StepContext(self)
        self.modules: dict[str, nn.Module] = {}
        self.wrapped: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.last_grad_norms: dict[str, torch.Tensor] = {}
        self.averages: dict[str, torch.optim.swa_utils.AveragedModel] = {}
        self.dist = DistInfo(0, 1, 0, torch.device(device), False)
        self.device = self.dist.device
        self.autocast_dtype: torch.dtype | None = None

    # -- setup ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        self.dist = init_distributed(self.requested_device)
        self.device = self.dist.device
        self.autocast_dtype, use_scaler = resolve_autocast_dtype(self.train_cfg.precision,
                                                                 self.device)
        self.modules = dict(self.stage.modules())
        for name, m in self.modules.items():
            m.to(self.device)
            trainable = _is_trainable(m)
            m.train(trainable)
            if self.dist.world_size > 1 and trainable:
                ids = [self.device.index] if self.device.type == "cuda" else None
                # Stages skip loss terms (weight 0, frozen parts), so some parameters may get
                # no gradient in a step.
                self.wrapped[name] = DistributedDataParallel(
                    m, device_ids=ids, find_unused_parameters=True)
            else:
                self.wrapped[name] = m
        if self.train_cfg.ema_power is not None:
            from torch.optim.swa_utils import AveragedModel

            self.averages = {n: AveragedModel(self.modules[n], use_buffers=False,
                                              multi_avg_fn=power_ema(self.train_cfg.ema_power))
                             for n in self.stage.averaged if n in self.modules}
        self.optimizers = {n: make_adamw(params, self.train_cfg)
                           for n, params in self.stage.optimized().items()}
        self.schedulers = {
            n: torch.optim.lr_scheduler.ExponentialLR(o, gamma=self.train_cfg.lr_decay)
            for n, o in self.optimizers.items()
        }
        self.scalers = {n: torch.amp.GradScaler(self.device.type, enabled=use_scaler)
                        for n in self.optimizers}
        cfg = self.train_cfg
        self.loader = make_loader(self.stage.train_set, cfg.batch_size, seed=cfg.seed,
                                  shuffle=True, num_workers=cfg.num_workers, ddp=True,
                                  collate_fn=self.stage.collate_fn)
        if self.resume:
            if latest_checkpoint(self.run_dir) is None:
                raise CheckpointError(
                    f"cannot resume: no checkpoint in {checkpoint_dir(self.run_dir)}")
            self._load(load_checkpoint(self.run_dir, map_location="cpu"))
        else:
            seed_everything(self.train_cfg.seed + self.dist.rank)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.config_dict is not None:
                write_json_atomic(self.run_dir / CONFIG_FILENAME, self.config_dict)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIRNAME))

    @property
    def is_main(self) -> bool:
        return self.dist.rank == 0

    # -- checkpoints ---------------------------------------------------------------------------
    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = capture_rng_state()
        if self.dist.world_size == 1:
            return [mine]
        everyone: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(everyone, mine)
        return everyone

    def _checkpoint(self) -> Path | None:
        rng = self._gather_rng()
        path = None
        if self.is_main:
            obj = {
                "format": CHECKPOINT_FORMAT,
                "stage": self.stage.name,
                "step": self.state.step,
                "epoch": self.state.epoch,
                "batch_in_epoch": self.state.batch_in_epoch,
                "models": {n: (self.averages[n].module if n in self.averages else m).state_dict()
                           for n, m in self.modules.items()},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "scaler": {n: s.state_dict() for n, s in self.scalers.items()},
                "rng": rng,
                "nan_skips": self.state.nan_skips,
                "trained_seconds": self.state.trained_seconds,
                "world_size": self.dist.world_size,
                "config": self.config_dict,
                "meta": self.meta,
                "stage_state": self.stage.state_dict(),
            }
            if self.averages:
                obj["live_models"] = {n: self.modules[n].state_dict() for n in self.averages}
                obj["averaged_updates"] = {n: int(a.n_averaged) for n, a in self.averages.items()}
            folder = checkpoint_dir(self.run_dir)
            step_path = save_checkpoint(folder / step_checkpoint_name(self.state.step), obj)
            path = link_or_copy_atomic(step_path, folder / LAST_NAME)
            prune_checkpoints(self.run_dir, self.train_cfg.keep_checkpoints)
        self.state.last_checkpoint_step = self.state.step
        if self.dist.world_size > 1:
            dist.barrier()
        return path

    def _load(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("stage") != self.stage.name:
            raise CheckpointError(
                f"{ckpt.get('path')} belongs to stage {ckpt.get('stage')!r}, not "
                f"{self.stage.name!r}")
        for name, m in self.modules.items():
            if name not in ckpt["models"]:
                raise CheckpointError(f"{ckpt.get('path')} has no weights for module {name!r}")
            live = (ckpt.get("live_models") or {}).get(name)
            m.load_state_dict(ckpt["models"][name] if live is None else live)
            if name in self.averages and live is not None:
                self.averages[name].module.load_state_dict(ckpt["models"][name])
                self.averages[name].n_averaged.fill_(int(ckpt["averaged_updates"][name]))
        for kind, objs in (("optimizers", self.optimizers), ("schedulers", self.schedulers),
                           ("scaler", self.scalers)):
            for name, o in objs.items():
                o.load_state_dict(ckpt[kind][name])
        if ckpt.get("stage_state") is not None:
            self.stage.load_state_dict(ckpt["stage_state"])
        self.state.step = int(ckpt["step"])
        self.state.epoch = int(ckpt["epoch"])
        self.state.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.state.nan_skips = int(ckpt["nan_skips"])
        self.state.trained_seconds = float(ckpt.get("trained_seconds", 0.0))
        self.state.last_checkpoint_step = self.state.step
        rng = ckpt["rng"]
        restore_rng_state(rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0])

    # -- evaluation and logging ----------------------------------------------------------------
    def _evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.is_main:
            modes = {n: m.training for n, m in self.modules.items()}
            for m in self.modules.values():
                m.eval()
            # score what a checkpoint exports: the averaged weights (live ones put back after)
            live = {n: {k: v.clone() for k, v in self.modules[n].state_dict().items()}
                    for n, a in self.averages.items() if int(a.n_averaged) > 0}
            for n in live:
                self.modules[n].load_state_dict(self.averages[n].module.state_dict())
            try:
                with isolated_rng(), torch.no_grad():
                    metrics = dict(self.stage.evaluate(self.ctx) or {})
            finally:
                for n, state in live.items():
                    self.modules[n].load_state_dict(state)
                for n, m in self.modules.items():
                    m.train(modes[n])
            self.ctx.log_scalars(metrics, "val")
        self.state.last_eval_step = self.state.step
        if self.dist.world_size > 1:
            dist.barrier()
        return metrics

    def _log_train(self, out: dict[str, Any], steps_per_s: float) -> None:
        scalars = {k: scalar(v) for k, v in out.items()}
        self.state.recent = scalars
        if not self.is_main:
            return
        for name, opt in self.optimizers.items():
            scalars[f"lr_{name}"] = opt.param_groups[0]["lr"]
        for name, norm in self.last_grad_norms.items():
            scalars[f"grad_norm_{name}"] = scalar(norm)
        scalars["nan_skips"] = self.state.nan_skips
        scalars["steps_per_s"] = steps_per_s
        self.ctx.log_scalars(scalars, "train")

    def _apply_cooldown(self) -> None:
        """Set every optimiser group's lr to ``initial_lr * lr_decay^epoch * cooldown``, the
        per-epoch decay's value times :func:`cooldown_factor` (nothing without a cooldown)."""
        cfg = self.train_cfg
        if cfg.lr_cooldown is None:
            return
        if self.dist.world_size > 1 and cfg.max_minutes:
            # every rank must apply the same lr: rank 0's clock decides, as for the stop
            seconds = torch.tensor(self.state.trained_seconds, dtype=torch.float64,
                                   device=self.device)
            dist.broadcast(seconds, 0)
            self.state.trained_seconds = float(seconds)
        factor = cooldown_factor(self.state.step, self.state.trained_seconds, cfg)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * cfg.lr_decay ** self.state.epoch * factor

    def _stop_reason(self, started: float) -> str | None:
        cfg = self.train_cfg
        if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
            return "max_steps"
        if cfg.max_minutes is not None:
            elapsed = time.monotonic() - started
            stop = elapsed >= cfg.max_minutes * SECONDS_PER_MINUTE
            if self.dist.world_size > 1:  # every rank must stop at the same step
                flag = torch.tensor(int(stop), device=self.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag)
            if stop:
                return "max_minutes"
        return None

    def _progress(self):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)

        return Progress(
            TextColumn(f"[bold]{self.stage.name}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} it/s"), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True), disable=not self.is_main, transient=False,
        )

    def _epoch_batches(self) -> Iterator[Any]:
        sampler = self.loader.batch_sampler  # a BucketSampler (make_loader)
        sampler.set_epoch(self.state.epoch)
        sampler.start_batch = self.state.batch_in_epoch
        with isolated_rng():  # DataLoader draws a base seed from the global RNG
            return iter(self.loader)

    # -- main loop -----------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until a budget is reached, then evaluate and checkpoint once more.

        Returns:
            TrainResult(step, reason, checkpoint).
        """
        try:
            self._setup()
            return self._run()
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.dist.created_group and dist.is_initialized():
                dist.destroy_process_group()

    def _run(self) -> TrainResult:
        cfg = self.train_cfg
        started = time.monotonic()
        reason = self._stop_reason(started)
        window_t, window_steps = time.monotonic(), 0
        step_t = window_t
        rate = 0.0
        if cfg.eval_at_start and self.state.step == 0:
            self._evaluate()  # the untrained baseline, logged at step 0
        with self._progress() as progress:
            task = progress.add_task("train", total=cfg.max_steps, completed=self.state.step,
                                     rate=0.0, info="")
            try:
                while reason is None:
                    n_batches = 0
                    resumed_at = self.state.batch_in_epoch
                    for batch in self._epoch_batches():
                        n_batches += 1
                        self._apply_cooldown()
                        out = self.stage.training_step(_to_device(batch, self.device), self.ctx)
                        for name, average in self.averages.items():
                            average.update_parameters(self.modules[name])
                        self.state.step += 1
                        self.state.batch_in_epoch += 1
                        now = time.monotonic()
                        self.state.trained_seconds += now - step_t
                        step_t = now
                        window_steps += 1
                        if self.state.step % cfg.log_interval == 0:
                            rate = window_steps / max(now - window_t, 1e-9)
                            window_t, window_steps = now, 0
                            self._log_train(out or {}, rate)
                            info = "  ".join(f"{k} {v:.4g}" for k, v in
                                             list(self.state.recent.items())[:3])
                            progress.update(task, info=info)
                        progress.update(task, completed=self.state.step, rate=rate)
                        if self.state.step % cfg.eval_interval == 0:
                            self._evaluate()
                        if self.state.step % cfg.checkpoint_interval == 0:
                            self._checkpoint()
                        reason = self._stop_reason(started)
                        if reason is not None:
                            break
                    else:
                        if n_batches == 0 and resumed_at == 0:
                            raise TrainingError(
                                f"stage {self.stage.name!r}: the training loader yields no "
                                "batches (dataset empty, or batch_size larger than the data)")
                        self.state.epoch += 1
                        self.state.batch_in_epoch = 0
                        with warnings.catch_warnings():
                            # After a resume at an epoch boundary the scheduler legitimately
                            # steps before this process's first optimizer.step().
                            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler")
                            for s in self.schedulers.values():
                                s.step()
            except KeyboardInterrupt:
                if self.dist.world_size > 1:
                    raise
                reason = "interrupted"
        if self.state.last_eval_step != self.state.step:
            self._evaluate()
        if self.state.last_checkpoint_step != self.state.step:
            self._checkpoint()
        path = checkpoint_dir(self.run_dir) / LAST_NAME
        return TrainResult(self.state.step, reason, path if self.is_main else None)
