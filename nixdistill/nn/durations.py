"""Expansion of token-rate features to frame rate by integer durations.

At inference the hard alignment is a function of the durations alone: frame ``t`` belongs to
token ``j`` when ``cumsum(d)[j-1] <= t < cumsum(d)[j]``. Gathering the token of each frame
(:func:`expand_by_durations`) costs ``O(T_frames)`` memory, where the path matrix
(:func:`durations_to_path`, VITS ``commons.generate_path``) times a matmul costs
``O(T_frames * T_text)``; the result is the same, value for value. Keep the matrix for
training losses and plots.
"""

from __future__ import annotations

import torch

__all__ = ["durations_to_path", "frame_token_index", "expand_by_durations"]


def frame_token_index(durations: torch.Tensor, t_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The token each frame belongs to.

    Args:
        durations: frames per token, [B, T_text] (whole numbers, float or integer; zero on
            padded tokens).
        t_frames: output frames ``T_frames`` (an int, or a 0-d tensor under ONNX export).
    Returns:
        (index [B, T_frames] int64 in ``[0, T_text)``, valid [B, T_frames] bool). ``valid`` is
        False past ``sum(durations[b])``; there ``index`` is clamped to ``T_text - 1``.
    """
    b, t_text = durations.shape
    cum = torch.cumsum(durations.long(), dim=1)  # [B, T_text] end frame (exclusive) per token
    # index[t] = #{j : cum[j] <= t}: mark each token end with a scatter-add, then a running sum
    # over frames. O(T_frames + T_text) per item, and it exports to ONNX (searchsorted does not).
    marks = torch.zeros(b, t_frames + 1, dtype=torch.long, device=durations.device)
    marks = marks.scatter_add(1, cum.clamp(max=t_frames), torch.ones_like(cum))
    index = torch.cumsum(marks, dim=1)[:, :-1]  # tokens ending at or before t
    valid = index < t_text
    return index.clamp_max(t_text - 1), valid


def expand_by_durations(x: torch.Tensor, durations: torch.Tensor, t_frames: int) -> torch.Tensor:
    """Repeat each token's features ``durations`` times along the time axis (``repeat_interleave``
    per item, batched with padding).

    Args:
        x: token features, [B, C, T_text].
        durations: frames per token, [B, T_text] or [B, 1, T_text] (whole numbers, zero on
            padded tokens).
        t_frames: output frames ``T_frames`` (frames past ``sum(durations[b])`` are zero; a sum
            beyond ``T_frames`` is cut).
    Returns:
        [B, C, T_frames], equal to ``path @ x`` with the VITS path matrix.
    """
    if durations.dim() == 3:
        durations = durations.squeeze(1)
    index, valid = frame_token_index(durations, t_frames)
    out = torch.gather(x, 2, index.unsqueeze(1).expand(-1, x.size(1), -1))
    return torch.where(valid.unsqueeze(1), out, torch.zeros((), dtype=x.dtype, device=x.device))


def durations_to_path(durations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment (path matrix) from integer durations.

    Token ``j`` covers frames ``[cumsum(d)[j-1], cumsum(d)[j])``.

    Args:
        durations: frames per token, [B, T_text] (float or integer, whole numbers).
        mask: valid (frame, token) pairs, [B, T_frames, T_text].
    Returns:
        path: 0/1 float, [B, T_frames, T_text]; ``path.sum(1) == durations`` where the frame
        axis is long enough.
    """
    b, t_frames, t_text = mask.shape
    cum = torch.cumsum(durations.float(), dim=1)  # [B, T_text]
    frames = torch.arange(t_frames, device=durations.device, dtype=cum.dtype)
    # frame t belongs to token j iff cum[j-1] <= t < cum[j]
    end = cum.unsqueeze(1)  # [B, 1, T_text]
    start = (cum - durations.float()).unsqueeze(1)
    t = frames.view(1, t_frames, 1)
    path = (t >= start) & (t < end)
    return path.to(mask.dtype if mask.dtype.is_floating_point else torch.float32) * mask
