"""The one training loop shared by every stage (teach, distil-encoder, distil-decoder).

A *stage* (:class:`~nixdistill.distill.stage.Stage`) declares its train set, its modules,
the parameters of each optimiser, its options and loss weights, and a short ``training_step`` and
``evaluate``; the :class:`Trainer` does everything else: it builds the loader and the AdamW
optimisers, places modules on the device, runs DDP under ``torchrun``, mixed precision,
gradient clipping, NaN/inf guards, per-epoch exponential LR decay (as jaywalnut310/vits) and
an optional linear cooldown at the end of the budget (``train.lr_cooldown``,
:func:`~nixdistill.distill.schedules.cooldown_factor`),
step/time budgets, Rich progress on stderr, TensorBoard logging, periodic evaluation, atomic
checkpoints and *exact* resume.

Weight averaging (``train.ema_power``): the stage's ``averaged`` modules get a
:class:`torch.optim.swa_utils.AveragedModel` with the power-function profile of
:func:`~nixdistill.distill.schedules.power_ema`, updated after every step. Evaluation scores the average, and checkpoints
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

The parts live in modules of their own: the optimisers in :mod:`~nixdistill.distill.optimizers`,
the schedules in :mod:`~nixdistill.distill.schedules`, checkpoints in
:mod:`~nixdistill.distill.checkpointing`, and what a stage sees in
:mod:`~nixdistill.distill.context`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nixdistill.config import TrainConfig
from nixdistill.data import Batch, make_loader
from nixdistill.distill.checkpointing import checkpoint_payload, restore_checkpoint, write_checkpoint
from nixdistill.distill.context import LoopState, StepContext, scalar
from nixdistill.distill.distributed import DistInfo, init_distributed, resolve_autocast_dtype
from nixdistill.distill.optimizers import Optimizers
from nixdistill.distill.rng import capture_rng_state, isolated_rng, seed_everything
from nixdistill.distill.schedules import SECONDS_PER_MINUTE, power_ema
from nixdistill.distill.stage import Stage
from nixdistill.errors import NixdistillError
from nixdistill.runs import (CONFIG_FILENAME, LAST_NAME, CheckpointError, checkpoint_dir,
                             latest_checkpoint, load_checkpoint, write_json_atomic)

__all__ = ["TrainResult", "Trainer", "TrainingError"]

TENSORBOARD_DIRNAME = "tensorboard"


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
        self.state = LoopState()
        self.writer = None
        self.ctx: StepContext | None = None
        self.modules: dict[str, nn.Module] = {}
        self.wrapped: dict[str, nn.Module] = {}
        self.optimizers: Optimizers | None = None
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
        self.optimizers = Optimizers(self.stage.optimized(), self.train_cfg, self.device,
                                     use_scaler, self.dist.world_size)
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
        self.ctx = StepContext(self.state, self.train_cfg, self.dist, self.wrapped,
                               self.optimizers, self.writer, self.autocast_dtype)

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
            obj = checkpoint_payload(self.stage, self.state, self.modules, self.averages,
                                     self.optimizers, rng, self.dist.world_size,
                                     self.config_dict, self.meta)
            path = write_checkpoint(self.run_dir, obj, self.train_cfg.keep_checkpoints,
                                    self.train_cfg.keep_steps)
        self.state.last_checkpoint_step = self.state.step
        if self.dist.world_size > 1:
            dist.barrier()
        return path

    def _load(self, ckpt: dict[str, Any]) -> None:
        restore_checkpoint(ckpt, self.stage, self.modules, self.averages, self.optimizers,
                           self.state, self.dist.rank)

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
        scalars.update(self.optimizers.learning_rates())
        for name, norm in self.optimizers.grad_norms.items():
            scalars[f"grad_norm_{name}"] = scalar(norm)
        scalars["nan_skips"] = self.optimizers.nan_skips
        scalars["steps_per_s"] = steps_per_s
        self.ctx.log_scalars(scalars, "train")

    def _apply_cooldown(self) -> None:
        """The linear LR cooldown (:meth:`Optimizers.apply_cooldown`); under DDP every rank
        applies rank 0's clock, as for the stop."""
        cfg = self.train_cfg
        if cfg.lr_cooldown is None:
            return
        if self.dist.world_size > 1 and cfg.max_minutes:
            seconds = torch.tensor(self.state.trained_seconds, dtype=torch.float64,
                                   device=self.device)
            dist.broadcast(seconds, 0)
            self.state.trained_seconds = float(seconds)
        self.optimizers.apply_cooldown(self.state.step, self.state.epoch,
                                       self.state.trained_seconds)

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
                        if (self.state.step % cfg.checkpoint_interval == 0
                                or self.state.step in cfg.keep_steps):
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
                        self.optimizers.end_epoch()
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
