"""Global RNG state (torch, CUDA, numpy's legacy global RNG, python ``random``) for exact resume.

States are stored as tensors, numbers and lists, so checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state", "isolated_rng", "seed_everything"]


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
