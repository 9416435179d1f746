"""What a stage sees of the training loop: :class:`StepContext` (module lookup, autocast, the
guarded optimiser step and TensorBoard logging), and :class:`LoopState`, the loop's counters.

The context is built from explicit parts that the :class:`~nixdistill.distill.loop.Trainer`
hands it; it imports nothing from the loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nixdistill.config import TrainConfig
from nixdistill.distill.distributed import DistInfo
from nixdistill.distill.optimizers import Optimizers

__all__ = ["LoopState", "StepContext", "scalar"]


def scalar(v: Any) -> float:
    """A Python float of a number or a one-element tensor."""
    return float(v.detach().float().item()) if isinstance(v, torch.Tensor) else float(v)


@dataclass
class LoopState:
    """The loop's counters, saved in every checkpoint.

    Attributes:
        step: optimizer steps completed. epoch: epochs completed.
        batch_in_epoch: batches consumed in the current epoch (exact resume).
        last_eval_step / last_checkpoint_step: the step of the last evaluation / checkpoint.
        trained_seconds: training wall time, in seconds (the ``max_minutes`` budget).
        recent: the last logged training scalars (the progress line).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    last_eval_step: int = -1
    last_checkpoint_step: int = -1
    trained_seconds: float = 0.0
    recent: dict[str, float] = field(default_factory=dict)


class StepContext:
    """What a stage sees of the loop during ``training_step`` and ``evaluate``.

    Args:
        state: the loop's counters (read only here).
        train_cfg: the :class:`~nixdistill.config.TrainConfig`.
        dist: DDP placement of this process (device, rank, world size).
        modules: ``{name: module}`` to call in ``training_step``: DDP-wrapped under torchrun
            when trainable, else the plain module.
        optimizers: the stage's :class:`~nixdistill.distill.optimizers.Optimizers`.
        writer: the TensorBoard ``SummaryWriter`` (``None`` on other ranks).
        autocast_dtype: the autocast dtype of ``train.precision`` (``None`` for fp32).
    Attributes:
        step: optimizer steps completed before the current one (0 during the first step;
            during ``evaluate``, the steps completed so far). Use it for schedules.
        device / is_main / rank / world_size: from ``dist``.
    """

    def __init__(self, state: LoopState, train_cfg: TrainConfig, dist: DistInfo,
                 modules: dict[str, nn.Module], optimizers: Optimizers, writer: Any = None,
                 autocast_dtype: torch.dtype | None = None) -> None:
        self._state = state
        self.train_cfg = train_cfg
        self._dist = dist
        self._modules = modules
        self.optimizers = optimizers
        self.writer = writer
        self.autocast_dtype = autocast_dtype

    @property
    def step(self) -> int:
        return self._state.step

    @property
    def device(self) -> torch.device:
        return self._dist.device

    @property
    def is_main(self) -> bool:
        return self._dist.rank == 0

    @property
    def rank(self) -> int:
        return self._dist.rank

    @property
    def world_size(self) -> int:
        return self._dist.world_size

    @property
    def nan_skips(self) -> int:
        return self.optimizers.nan_skips

    def model(self, name: str) -> nn.Module:
        """The module ``name`` to call in ``training_step``: DDP-wrapped under torchrun when it
        has trainable parameters, else the plain module.

        Raises:
            KeyError: for a name not in ``stage.modules()``.
        """
        return self._modules[name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for ``train.precision`` (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def optimize(self, name: str, loss: torch.Tensor) -> bool:
        """One guarded optimizer step (:meth:`Optimizers.step
        <nixdistill.distill.optimizers.Optimizers.step>`): backward, clip, and step unless the
        loss or the gradient norm is NaN/inf.

        Args:
            name: key in ``stage.optimized()``.
            loss: scalar tensor (fp32 recommended; compute losses outside autocast).
        Returns:
            True when the optimizer stepped.
        """
        return self.optimizers.step(name, loss)

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
