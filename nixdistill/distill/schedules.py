"""Learning-rate schedules and weight averaging of the training loop.

* :func:`cooldown_factor`: the linear cooldown at the end of a step or time budget
  (``train.lr_cooldown``), on top of the per-epoch exponential decay of jaywalnut310/vits.
* :func:`power_ema`: the power-function EMA profile of ``train.ema_power`` for
  :class:`torch.optim.swa_utils.AveragedModel`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from nixdistill.config import TrainConfig

__all__ = ["SECONDS_PER_MINUTE", "cooldown_factor", "power_ema"]

SECONDS_PER_MINUTE = 60.0


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
