"""Monotonic Alignment Search (MAS).

``maximum_path`` finds, for each item, the monotonic, surjective alignment between text
tokens and spectrogram frames that maximises the summed log-likelihood ``neg_cent``
(Kim et al. 2020, Glow-TTS, Algorithm 1; layout as in jaywalnut310/vits
``monotonic_align.maximum_path``). The Cython kernel lives in ``core.pyx`` and is built by the
normal ``pip install``; ``maximum_path_numpy`` is the readable reference used by the tests.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["maximum_path", "maximum_path_numpy", "AlignmentError"]

_NEG = -1e9


class AlignmentError(ValueError):
    """Raised when no monotonic path exists (more text tokens than frames)."""


def _lengths(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    t_frames = mask.sum(1)[:, 0].to(torch.int32).cpu().numpy()
    t_text = mask.sum(2)[:, 0].to(torch.int32).cpu().numpy()
    bad = np.nonzero(t_text > t_frames)[0]
    if bad.size:
        i = int(bad[0])
        raise AlignmentError(
            f"item {i} has {int(t_text[i])} text tokens but only {int(t_frames[i])} frames; "
            "MAS needs T_text <= T_frames (filter such items, e.g. with `nixdistill prepare`)"
        )
    return np.ascontiguousarray(t_frames), np.ascontiguousarray(t_text)


def maximum_path(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Most likely monotonic alignment, computed by the Cython kernel.

    Args:
        neg_cent: log-likelihood of frame t given token j, [B, T_frames, T_text], float.
        mask: valid positions, [B, T_frames, T_text] (outer product of frame and token masks).

    Returns:
        path: 0/1 alignment of the same shape, dtype and device as ``neg_cent``. Every valid
        frame is assigned exactly one token; token indices never decrease over frames.

    Raises:
        AlignmentError: if an item has more valid tokens than valid frames.
    """
    from . import core  # compiled extension

    device, dtype = neg_cent.device, neg_cent.dtype
    t_frames, t_text = _lengths(mask)
    values = np.array(neg_cent.detach().float().cpu().numpy(), dtype=np.float32, order="C", copy=True)
    paths = np.zeros(values.shape, dtype=np.int32)
    core.maximum_path_batch(paths, values, t_frames, t_text)
    return torch.from_numpy(paths).to(device=device, dtype=dtype)


def maximum_path_numpy(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pure-numpy reference of :func:`maximum_path` (same arguments, result and errors)."""
    t_frames, t_text = _lengths(mask)
    values = neg_cent.detach().float().cpu().numpy().astype(np.float64)
    paths = np.zeros(values.shape, dtype=np.float32)
    for b in range(values.shape[0]):
        ty, tx = int(t_frames[b]), int(t_text[b])
        v = values[b, :ty, :tx].copy()
        acc = np.full((ty, tx), _NEG)
        for y in range(ty):
            for x in range(max(0, tx + y - ty), min(tx, y + 1)):
                stay = acc[y - 1, x] if (y > 0 and x != y) else _NEG
                move = (0.0 if y == 0 else _NEG) if x == 0 else acc[y - 1, x - 1]
                acc[y, x] = v[y, x] + max(stay, move)
        x = tx - 1
        for y in range(ty - 1, -1, -1):
            paths[b, y, x] = 1.0
            if x != 0 and (x == y or acc[y - 1, x] < acc[y - 1, x - 1]):
                x -= 1
    return torch.from_numpy(paths).to(device=neg_cent.device, dtype=neg_cent.dtype)
