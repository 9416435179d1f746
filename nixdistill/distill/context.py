"""What a stage sees of the training loop: :class:`StepContext` (module lookup, autocast, the
guarded optimiser step and TensorBoard logging)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nixdistill.config import TrainConfig

if TYPE_CHECKING:
    from nixdistill.distill.loop import Trainer

__all__ = ["StepContext", "scalar"]


def scalar(v: Any) -> float:
    return float(v.detach().float().item()) if isinstance(v, torch.Tensor) else float(v)


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

    def __init__(self, trainer: Trainer):
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
            name: key in ``stage.optimized()``.
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
            w.add_scalar(f"{prefix}/{k}" if prefix else k, scalar(v), self.step)

    def log_image(self, tag: str, image: Any) -> None:
        """Log a matplotlib Figure, an [H, W, 3] RGB array (uint8 or float in [0, 1]) or a 2-D
        array (grayscale, min-max normalised) at the current step (rank 0 only)."""
        w = self.writer
        if w is None:
            return
        from matplotlib.figure import Figure

        from nixdistill.distill.logging import figure_to_array

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
