"""Small tensor helpers shared by the teacher modules.

Source: jaywalnut310/vits ``commons.py`` (``sequence_mask``, ``generate_path``,
``rand_slice_segments``, ``fused_add_tanh_sigmoid_multiply``), rewritten with shapes documented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Standard deviation of the normal init used for HiFi-GAN convolutions (jaywalnut310/vits).
INIT_STD = 0.01


def init_weights(module: nn.Module, mean: float = 0.0, std: float = INIT_STD) -> None:
    """Normal init of every ``Conv*`` weight (HiFi-GAN / VITS ``init_weights``)."""
    if "Conv" not in type(module).__name__:
        return
    if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
        # weight norm: draw v, then set g = ||v|| so the effective weight equals v
        v = module.parametrizations.weight.original1
        v.data.normal_(mean, std)
        dims = tuple(range(1, v.dim()))
        module.parametrizations.weight.original0.data.copy_(
            torch.linalg.vector_norm(v.data, dim=dims, keepdim=True)
        )
    else:
        module.weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding for an odd ``kernel_size`` at ``dilation``, in samples."""
    return (kernel_size * dilation - dilation) // 2


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask ``[B, T]`` with ``mask[b, t] = t < lengths[b]``.

    Args:
        lengths: valid lengths, [B], integer or float.
        max_length: ``T``; defaults to ``lengths.max()``.
    """
    if max_length is None:
        max_length = int(lengths.max())
    positions = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def generate_path(duration: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment from integer durations (VITS ``commons.generate_path``).

    Args:
        duration: frames per token, [B, 1, T_text] (already ceiled, zero on padding).
        mask: valid (frame, token) pairs, [B, 1, T_frames, T_text].
    Returns:
        attn: 0/1 path, [B, 1, T_frames, T_text]; frame ``t`` belongs to token ``j`` when
        ``cumsum(d)[j-1] <= t < cumsum(d)[j]``.
    """
    b, _, t_frames, t_text = mask.shape
    cum_duration = torch.cumsum(duration, -1).view(b * t_text)
    path = sequence_mask(cum_duration, t_frames).to(mask.dtype).view(b, t_text, t_frames)
    path = path - F.pad(path, (0, 0, 1, 0))[:, :-1]  # keep frames new to each token
    return path.unsqueeze(1).transpose(2, 3) * mask


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
