"""Training checkpoints of the loop: what one holds, writing it, and restoring a stage from it.

A checkpoint is a plain dict (see :mod:`nixdistill.runs`): the stage name, the loop counters,
every module's weights (the averaged ones under ``models`` when ``train.ema_power`` is set,
the live ones under ``live_models``), every optimiser, scheduler and grad scaler, the RNG
states of every rank, the resolved config and the stage's own state. Restoring all of it lets
a resumed run replay the uninterrupted one bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from torch import nn

from nixdistill.distill.context import LoopState
from nixdistill.distill.optimizers import Optimizers
from nixdistill.distill.rng import restore_rng_state
from nixdistill.distill.stage import Stage
from nixdistill.runs import (CHECKPOINT_FORMAT, LAST_NAME, CheckpointError, checkpoint_dir,
                             link_or_copy_atomic, prune_checkpoints, save_checkpoint,
                             step_checkpoint_name)

__all__ = ["checkpoint_payload", "restore_checkpoint", "write_checkpoint"]


def checkpoint_payload(stage: Stage, state: LoopState, modules: dict[str, nn.Module],
                       averages: dict[str, Any], optimizers: Optimizers, rng: list[dict],
                       world_size: int, config: dict[str, Any] | None,
                       meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict of a stage at ``state.step``.

    Args:
        averages: ``{name: AveragedModel}`` of the averaged modules (may be empty).
        rng: the RNG states of every rank, rank order.
        config: the resolved experiment config. meta: JSON-able extras (e.g. the frontend).
    """
    obj = {
        "format": CHECKPOINT_FORMAT,
        "stage": stage.name,
        "step": state.step,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "models": {n: (averages[n].module if n in averages else m).state_dict()
                   for n, m in modules.items()},
        **optimizers.state_dict(),
        "rng": rng,
        "trained_seconds": state.trained_seconds,
        "world_size": world_size,
        "config": config,
        "meta": meta,
        "stage_state": stage.state_dict(),
    }
    if averages:
        obj["live_models"] = {n: modules[n].state_dict() for n in averages}
        obj["averaged_updates"] = {n: int(a.n_averaged) for n, a in averages.items()}
    return obj


def write_checkpoint(run_dir: str | Path, obj: dict[str, Any], keep: int,
                     protect: Iterable[int] = ()) -> Path:
    """Write ``RUN/checkpoints/step_XXXXXXXX.pt`` atomically, point ``last.pt`` at it and keep
    the newest ``keep`` step checkpoints and those of the steps in ``protect``. Returns the
    path of ``last.pt``."""
    folder = checkpoint_dir(run_dir)
    step_path = save_checkpoint(folder / step_checkpoint_name(int(obj["step"])), obj)
    path = link_or_copy_atomic(step_path, folder / LAST_NAME)
    prune_checkpoints(run_dir, keep, protect)
    return path


def restore_checkpoint(ckpt: dict[str, Any], stage: Stage, modules: dict[str, nn.Module],
                       averages: dict[str, Any], optimizers: Optimizers, state: LoopState,
                       rank: int) -> None:
    """Load a checkpoint written by :func:`checkpoint_payload` into a freshly set-up stage.

    Raises:
        CheckpointError: the checkpoint belongs to another stage or lacks a module's weights.
    """
    if ckpt.get("stage") != stage.name:
        raise CheckpointError(
            f"{ckpt.get('path')} belongs to stage {ckpt.get('stage')!r}, not {stage.name!r}")
    for name, m in modules.items():
        if name not in ckpt["models"]:
            raise CheckpointError(f"{ckpt.get('path')} has no weights for module {name!r}")
        live = (ckpt.get("live_models") or {}).get(name)
        m.load_state_dict(ckpt["models"][name] if live is None else live)
        if name in averages and live is not None:
            averages[name].module.load_state_dict(ckpt["models"][name])
            averages[name].n_averaged.fill_(int(ckpt["averaged_updates"][name]))
    optimizers.load_state_dict(ckpt)
    if ckpt.get("stage_state") is not None:
        stage.load_state_dict(ckpt["stage_state"])
    state.step = int(ckpt["step"])
    state.epoch = int(ckpt["epoch"])
    state.batch_in_epoch = int(ckpt["batch_in_epoch"])
    state.trained_seconds = float(ckpt.get("trained_seconds", 0.0))
    state.last_checkpoint_step = state.step
    rng = ckpt["rng"]
    restore_rng_state(rng[rank] if rank < len(rng) else rng[0])
