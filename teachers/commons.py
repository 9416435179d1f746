"""Small tensor helpers of the teacher modules (those shared with the students live in
:mod:`nixdistill.nn`).

Source: jaywalnut310/vits ``commons.py`` (``rand_slice_segments``,
``fused_add_tanh_sigmoid_multiply``), rewritten with shapes documented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def slice_segments(x: torch.Tensor, ids_str: torch.Tensor, segment_size: int) -> torch.Tensor:
    """Cut ``x[b, :, ids_str[b] : ids_str[b] + segment_size]`` for each item.

    Args:
        x: [B, C, T] (``T >= ids_str.max() + segment_size``).
        ids_str: start index per item, [B], int64.
        segment_size: length of each slice in frames (or samples, matching ``x``).
    Returns:
        [B, C, segment_size].
    """
    offsets = torch.arange(segment_size, device=x.device)
    index = (ids_str.unsqueeze(1) + offsets.unsqueeze(0)).unsqueeze(1).expand(-1, x.size(1), -1)
    return torch.gather(x, 2, index)


def rand_slice_segments(
    x: torch.Tensor, x_lengths: torch.Tensor, segment_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random segments of ``segment_size`` frames inside each item's valid length.

    Items shorter than the segment start at 0 and are right-padded with zeros.

    Args:
        x: [B, C, T].
        x_lengths: valid lengths, [B].
        segment_size: frames per segment.
    Returns:
        (segments [B, C, segment_size], ids_str [B] int64 start frames).
    """
    if x.size(2) < segment_size:
        x = F.pad(x, (0, segment_size - x.size(2)))
    ids_str_max = torch.clamp_min(x_lengths.to(x.device) - segment_size + 1, 1)
    ids_str = (torch.rand(x.size(0), device=x.device) * ids_str_max).long()
    return slice_segments(x, ids_str, segment_size), ids_str


def fused_add_tanh_sigmoid_multiply(
    a: torch.Tensor, b: torch.Tensor, n_channels: int
) -> torch.Tensor:
    """WaveNet gate ``tanh(z[:, :n]) * sigmoid(z[:, n:])`` with ``z = a + b``, [B, n, T]."""
    z = a + b
    return torch.tanh(z[:, :n_channels]) * torch.sigmoid(z[:, n_channels:])
