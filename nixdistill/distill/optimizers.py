"""The optimisers of a stage, in one object: AdamW per optimiser group, the per-epoch LR
schedulers, the gradient scalers, the last gradient norms and the NaN-skip count.

:meth:`Optimizers.step` is the guarded step every stage takes through
:meth:`~nixdistill.distill.context.StepContext.optimize`.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import torch
import torch.distributed as dist

from nixdistill.config import TrainConfig
from nixdistill.distill.schedules import cooldown_factor

__all__ = ["Optimizers", "make_adamw"]


def make_adamw(params, train_cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the config's learning rate, betas, eps and weight decay (VITS: 2e-4,
    (0.8, 0.99), 1e-9, 0.01). ``params`` may be an iterable of tensors or of param groups."""
    return torch.optim.AdamW(
        params, lr=train_cfg.learning_rate, betas=tuple(train_cfg.betas), eps=train_cfg.eps,
        weight_decay=train_cfg.weight_decay,
    )


class Optimizers:
    """AdamW, an ``ExponentialLR`` and a ``GradScaler`` per optimiser group of a stage.

    Args:
        groups: ``{name: params}`` from ``stage.optimized()`` (tensors or param groups).
        train_cfg: learning rate, betas, decay, clipping.
        device: where the scalers run. use_scaler: fp16 loss scaling (``train.precision``).
        world_size: DDP processes; every rank then takes the same skip decision.
    Attributes:
        grad_norms: ``{name: norm}`` of the last step of each group (before clipping).
        nan_skips: steps skipped for a non-finite loss or gradient norm, in total.
    """

    def __init__(self, groups: dict[str, Iterable[Any]], train_cfg: TrainConfig,
                 device: torch.device, use_scaler: bool, world_size: int = 1) -> None:
        self.train_cfg = train_cfg
        self.device = device
        self.world_size = world_size
        self.optimizers = {n: make_adamw(params, train_cfg) for n, params in groups.items()}
        self.schedulers = {n: torch.optim.lr_scheduler.ExponentialLR(o, gamma=train_cfg.lr_decay)
                           for n, o in self.optimizers.items()}
        self.scalers = {n: torch.amp.GradScaler(device.type, enabled=use_scaler)
                        for n in self.optimizers}
        self.grad_norms: dict[str, torch.Tensor] = {}
        self.nan_skips = 0

    def step(self, name: str, loss: torch.Tensor) -> bool:
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
        Raises:
            KeyError: for a name not in ``stage.optimized()``.
        """
        opt = self.optimizers[name]
        scaler = self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        clip = self.train_cfg.grad_clip
        max_norm = clip if clip is not None else float("inf")
        if params:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            grad_norm = torch.zeros((), device=loss.device)
        ok = torch.isfinite(loss.detach().float()) & torch.isfinite(grad_norm.float())
        if self.world_size > 1:
            flag = ok.to(device=self.device, dtype=torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = flag.bool()
        self.grad_norms[name] = grad_norm.detach()
        if not bool(ok):
            opt.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.update()  # lowers the scale after an overflow
            self.nan_skips += 1
            return False
        scaler.step(opt)
        scaler.update()
        return True

    def apply_cooldown(self, step: int, epoch: int, trained_seconds: float) -> None:
        """Set every group's lr to ``initial_lr * lr_decay^epoch * cooldown``: the per-epoch
        decay's value times :func:`~nixdistill.distill.schedules.cooldown_factor` (nothing
        without ``train.lr_cooldown``). ``trained_seconds``: training wall time, in seconds."""
        cfg = self.train_cfg
        if cfg.lr_cooldown is None:
            return
        factor = cooldown_factor(step, trained_seconds, cfg)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * cfg.lr_decay ** epoch * factor

    def end_epoch(self) -> None:
        """Step every per-epoch LR scheduler."""
        with warnings.catch_warnings():
            # After a resume at an epoch boundary the scheduler legitimately steps before this
            # process's first optimizer.step().
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler")
            for s in self.schedulers.values():
                s.step()

    def learning_rates(self) -> dict[str, float]:
        """``{"lr_<name>": lr}`` of each group's first parameter group."""
        return {f"lr_{n}": o.param_groups[0]["lr"] for n, o in self.optimizers.items()}

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint entries ``optimizers``, ``schedulers``, ``scaler`` and ``nan_skips``."""
        return {"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "scaler": {n: s.state_dict() for n, s in self.scalers.items()},
                "nan_skips": self.nan_skips}

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` wrote (a training checkpoint holds its keys)."""
        for kind, objs in (("optimizers", self.optimizers), ("schedulers", self.schedulers),
                           ("scaler", self.scalers)):
            for name, o in objs.items():
                o.load_state_dict(ckpt[kind][name])
        self.nan_skips = int(ckpt["nan_skips"])
