"""Process placement under ``torchrun`` (DDP) and the autocast setting of ``train.precision``."""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "resolve_autocast_dtype"]


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
