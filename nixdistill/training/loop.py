"""The one training loop shared by every stage (teach, distil-encoder, distil-decoder).

A *stage* supplies modules, optimizers, a loader and a short ``training_step``; the
:class:`Trainer` does everything else: device placement, DDP under ``torchrun``, mixed
precision, gradient clipping, NaN/inf guards, per-epoch exponential LR decay (as
jaywalnut310/vits), step/time budgets, Rich progress on stderr, TensorBoard logging,
periodic evaluation, atomic checkpoints and *exact* resume.

Stage protocol (duck-typed, see docs/ARCHITECTURE.md "Training loop")::

    name: str
    modules() -> dict[str, nn.Module]            # everything that is checkpointed
    optimizers() -> dict[str, Optimizer]         # build with make_adamw(params, train_cfg)
    loader() -> DataLoader                       # batch_sampler has set_epoch / start_batch
    training_step(batch, ctx) -> dict[str, float | Tensor]
    evaluate(ctx) -> dict[str, float]            # rank 0 only, under no_grad, modules in eval()
    state_dict() / load_state_dict(d)            # optional extra state
    finalize(run_dir)                            # optional, called once at the end (rank 0)
    find_unused_parameters: bool                 # optional DDP flag (default True)

Inside ``training_step`` call trainable modules through ``ctx.model(name)``: it is the
DDP-wrapped module under ``torchrun`` (so gradients are averaged across processes) and the
plain module otherwise. Build the loader lazily in ``loader()``: the process group exists only
once :class:`Trainer` has started.

Exact resume: a checkpoint stores step, epoch, batches consumed in the epoch, every optimizer,
scheduler and grad scaler, the RNG states of every rank (torch, CUDA, numpy, python) and the
stage's extra state. Creating the loader iterator and running ``evaluate`` never consume the
training RNG, so a resumed run replays the uninterrupted one bit for bit (with
``num_workers=0``; worker processes draw their own seeds).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import TrainConfig
from ..errors import NixdistillError
from .checkpoint import (
    CHECKPOINT_FORMAT,
    LAST_NAME,
    CheckpointError,
    checkpoint_dir,
    latest_checkpoint,
    link_or_copy_atomic,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoint_name,
)

__all__ = [
    "TrainResult",
    "DistInfo",
    "StepContext",
    "Trainer",
    "TrainingError",
    "make_adamw",
    "init_distributed",
    "resolve_autocast_dtype",
    "capture_rng_state",
    "restore_rng_state",
    "isolated_rng",
]

TENSORBOARD_DIRNAME = "tensorboard"
CONFIG_FILENAME = "config.json"
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


class DistInfo(NamedTuple):
    """Process placement: ``rank``/``world_size`` (1 without torchrun), ``local_rank``, the
    device this process trains on, and whether this call created the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    created_group: bool


def init_distributed(device: str | torch.device) -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (idempotent).

    Uses NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``) and gloo on CPU.

    Args:
        device: the requested device, e.g. ``"cpu"`` or ``"cuda"``.
    Returns:
        DistInfo; ``world_size == 1`` and ``rank == 0`` outside torchrun.
    """
    dev = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(0, 1, 0, dev, False)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        created = True
    return DistInfo(rank, world_size, local_rank, dev, created)


def make_adamw(params, train_cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the config's learning rate, betas, eps and weight decay (VITS: 2e-4,
    (0.8, 0.99), 1e-9, 0.01). ``params`` may be an iterable of tensors or of param groups."""
    return torch.optim.AdamW(
        params, lr=train_cfg.learning_rate, betas=tuple(train_cfg.betas), eps=train_cfg.eps,
        weight_decay=train_cfg.weight_decay,
    )


def resolve_autocast_dtype(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Map ``train.precision`` to (autocast dtype or None, whether a GradScaler is needed).

    fp16 is only used on CUDA; elsewhere it falls back to bf16 with a warning.
    """
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if device.type == "cuda":
        return torch.float16, True
    warnings.warn(f"train.precision fp16 is not supported on {device.type}; using bf16 autocast",
                  stacklevel=3)
    return torch.bfloat16, False


# ---------------------------------------------------------------------------------------------
# RNG state (stored as tensors / lists so checkpoints load with weights_only=True)

def capture_rng_state() -> dict[str, Any]:
    """Torch, CUDA, numpy (legacy global) and python ``random`` states as plain containers."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    npd = state["numpy"]
    np.random.set_state((npd["name"], npd["keys"].numpy().astype(np.uint32), npd["pos"],
                         npd["has_gauss"], npd["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block without disturbing any global RNG (torch, CUDA, numpy, python)."""
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _to_device(batch: Any, device: torch.device) -> Any:
    if hasattr(batch, "to") and not isinstance(batch, nn.Module):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _scalar(v: Any) -> float:
    return float(v.detach().float().item()) if isinstance(v, torch.Tensor) else float(v)


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
    recent: dict[str, float] = field(default_factory=dict)


class StepContext:
    """What a stage sees of the loop during ``training_step`` and ``evaluate``.

    Attributes:
        step: optimizer steps completed before the current one (0 during the first step;
            during ``evaluate``, the steps completed so far). Use it for schedules.
        device: torch device of this process.
        train_cfg: the :class:`~nixdistill.config.TrainConfig`.
        is_main: True on rank 0 (the only rank that logs and checkpoints).
        rank / world_size: DDP placement (0 / 1 without torchrun).
        writer: the TensorBoard ``SummaryWriter`` (``None`` on other ranks).
    """

    def __init__(self, trainer: "Trainer"):
        self._trainer = trainer

    @property
    def step(self) -> int:
        return self._trainer.state.step

    @property
    def device(self) -> torch.device:
        return self._trainer.device

    @property
    def train_cfg(self) -> TrainConfig:
        return self._trainer.train_cfg

    @property
    def is_main(self) -> bool:
        return self._trainer.dist.rank == 0

    @property
    def rank(self) -> int:
        return self._trainer.dist.rank

    @property
    def world_size(self) -> int:
        return self._trainer.dist.world_size

    @property
    def writer(self):
        return self._trainer.writer

    @property
    def nan_skips(self) -> int:
        return self._trainer.state.nan_skips

    def model(self, name: str) -> nn.Module:
        """The module ``name`` to call in ``training_step``: DDP-wrapped under torchrun when it
        has trainable parameters, else the plain module.

        Raises:
            KeyError: for a name not in ``stage.modules()``.
        """
        return self._trainer.wrapped[name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for ``train.precision`` (a no-op for fp32)."""
        dtype = self._trainer.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def optimize(self, name: str, loss: torch.Tensor) -> bool:
        """One guarded optimizer step: zero_grad, (scaled) backward, unscale, clip to
        ``train.grad_clip``, then step unless the loss or the gradient norm is NaN/inf.

        A skipped step leaves the parameters and optimizer state untouched, clears the
        gradients and increments ``nan_skips`` (fp16 overflow counts as a skip too). Under DDP
        every rank takes the same decision.

        Args:
            name: key in ``stage.optimizers()``.
            loss: scalar tensor (fp32 recommended; compute losses outside autocast).
        Returns:
            True when the optimizer stepped.
        """
        t = self._trainer
        opt = t.optimizers[name]
        scaler = t.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        max_norm = t.train_cfg.grad_clip if t.train_cfg.grad_clip is not None else float("inf")
        if params:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            grad_norm = torch.zeros((), device=loss.device)
        ok = torch.isfinite(loss.detach().float()) & torch.isfinite(grad_norm.float())
        if t.dist.world_size > 1:
            flag = ok.to(device=t.device, dtype=torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = flag.bool()
        t.last_grad_norms[name] = grad_norm.detach()
        if not bool(ok):
            opt.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.update()  # lowers the scale after an overflow
            t.state.nan_skips += 1
            return False
        scaler.step(opt)
        scaler.update()
        return True

    def log_scalars(self, scalars: dict[str, Any], prefix: str = "train") -> None:
        """Write ``{prefix}/{key}`` scalars at the current step (rank 0 only)."""
        w = self.writer
        if w is None:
            return
        for k, v in scalars.items():
            w.add_scalar(f"{prefix}/{k}" if prefix else k, _scalar(v), self.step)

    def log_image(self, tag: str, image: Any) -> None:
        """Log a matplotlib Figure, an [H, W, 3] RGB array (uint8 or float in [0, 1]) or a 2-D
        array (grayscale, min-max normalised) at the current step (rank 0 only)."""
        w = self.writer
        if w is None:
            return
        from matplotlib.figure import Figure

        from .logging import figure_to_array

        if isinstance(image, Figure):
            image = figure_to_array(image)
        if isinstance(image, torch.Tensor):
            image = image.detach().float().cpu().numpy()
        image = np.asarray(image)
        if image.ndim == 2:
            lo, hi = float(image.min()), float(image.max())
            image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image, dtype=np.float32)
            w.add_image(tag, image, self.step, dataformats="HW")
        else:
            w.add_image(tag, image, self.step, dataformats="HWC")

    def log_audio(self, tag: str, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
        """Log a mono waveform in [-1, 1] (any shape with T_samples elements), rate in Hz."""
        w = self.writer
        if w is None:
            return
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().float().cpu().numpy()
        wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
        w.add_audio(tag, wav, self.step, sample_rate=int(sample_rate))


class Trainer:
    """Runs a stage until ``max_steps`` or ``max_minutes`` (see module docstring).

    Args:
        stage: the stage object (protocol in the module docstring).
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

    def __init__(self, stage: Any, run_dir: str | Path, train_cfg: TrainConfig,
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
        find_unused = bool(getattr(self.stage, "find_unused_parameters", True))
        for name, m in self.modules.items():
            m.to(self.device)
            trainable = _is_trainable(m)
            m.train(trainable)
            if self.dist.world_size > 1 and trainable:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.wrapped[name] = DistributedDataParallel(
                    m, device_ids=ids, find_unused_parameters=find_unused)
            else:
                self.wrapped[name] = m
        self.optimizers = dict(self.stage.optimizers())
        self.schedulers = {
            n: torch.optim.lr_scheduler.ExponentialLR(o, gamma=self.train_cfg.lr_decay)
            for n, o in self.optimizers.items()
        }
        self.scalers = {n: torch.amp.GradScaler(self.device.type, enabled=use_scaler)
                        for n in self.optimizers}
        self.loader = self.stage.loader()
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
                (self.run_dir / CONFIG_FILENAME).write_text(
                    json.dumps(self.config_dict, indent=2, default=str), encoding="utf-8")
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
                "models": {n: m.state_dict() for n, m in self.modules.items()},
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "scaler": {n: s.state_dict() for n, s in self.scalers.items()},
                "rng": rng,
                "nan_skips": self.state.nan_skips,
                "world_size": self.dist.world_size,
                "config": self.config_dict,
                "meta": self.meta,
                "stage_state": self.stage.state_dict() if hasattr(self.stage, "state_dict") else {},
            }
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
            m.load_state_dict(ckpt["models"][name])
        for kind, objs in (("optimizers", self.optimizers), ("schedulers", self.schedulers),
                           ("scaler", self.scalers)):
            for name, o in objs.items():
                o.load_state_dict(ckpt[kind][name])
        if hasattr(self.stage, "load_state_dict") and ckpt.get("stage_state") is not None:
            self.stage.load_state_dict(ckpt["stage_state"])
        self.state.step = int(ckpt["step"])
        self.state.epoch = int(ckpt["epoch"])
        self.state.batch_in_epoch = int(ckpt["batch_in_epoch"])
        self.state.nan_skips = int(ckpt["nan_skips"])
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
            try:
                with isolated_rng(), torch.no_grad():
                    metrics = dict(self.stage.evaluate(self.ctx) or {})
            finally:
                for n, m in self.modules.items():
                    m.train(modes[n])
            self.ctx.log_scalars(metrics, "val")
        self.state.last_eval_step = self.state.step
        if self.dist.world_size > 1:
            dist.barrier()
        return metrics

    def _log_train(self, out: dict[str, Any], steps_per_s: float) -> None:
        scalars = {k: _scalar(v) for k, v in out.items()}
        self.state.recent = scalars
        if not self.is_main:
            return
        for name, opt in self.optimizers.items():
            scalars[f"lr_{name}"] = opt.param_groups[0]["lr"]
        for name, norm in self.last_grad_norms.items():
            scalars[f"grad_norm_{name}"] = _scalar(norm)
        scalars["nan_skips"] = self.state.nan_skips
        scalars["steps_per_s"] = steps_per_s
        self.ctx.log_scalars(scalars, "train")

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
        sampler = getattr(self.loader, "batch_sampler", None)
        skip = self.state.batch_in_epoch
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.state.epoch)
        native_skip = hasattr(sampler, "start_batch")
        if native_skip:
            sampler.start_batch = skip
        with isolated_rng():  # DataLoader draws a base seed from the global RNG
            it = iter(self.loader)
        if not native_skip:
            for _ in range(skip):
                next(it, None)
        return it

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
                        out = self.stage.training_step(_to_device(batch, self.device), self.ctx)
                        self.state.step += 1
                        self.state.batch_in_epoch += 1
                        window_steps += 1
                        if self.state.step % cfg.log_interval == 0:
                            now = time.monotonic()
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
        if self.is_main and hasattr(self.stage, "finalize"):
            self.stage.finalize(self.run_dir)
        return TrainResult(self.state.step, reason, path if self.is_main else None)
