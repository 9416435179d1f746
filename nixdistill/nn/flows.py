"""Volume-preserving and elementwise flow layers shared by the duration predictors.

Source: jaywalnut310/vits ``modules.Flip`` / ``modules.ElementwiseAffine`` (the student's
stochastic duration predictor uses the same two layers). Every flow layer of the model packages
follows one convention: ``forward(x, x_mask, g=None, reverse=False) -> FlowOutput``, with the
log-determinant in the forward direction and ``None`` in reverse.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["FlowOutput", "Flip", "ElementwiseAffine"]


class FlowOutput(NamedTuple):
    """x: the transformed tensor [B, C, T]; logdet: ``log|det ∂y/∂x|`` per item [B] in the
    forward direction, None in reverse."""

    x: torch.Tensor
    logdet: torch.Tensor | None


class Flip(nn.Module):
    """Reverse the channel order (swaps the halves of a coupling layer); volume preserving."""

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None,
                g: torch.Tensor | None = None, reverse: bool = False) -> FlowOutput:
        """x: [B, C, T] -> flipped [B, C, T]; logdet zeros [B] (forward). Mask and g unused."""
        x = torch.flip(x, [1])
        if reverse:
            return FlowOutput(x, None)
        return FlowOutput(x, torch.zeros(x.size(0), dtype=x.dtype, device=x.device))


class ElementwiseAffine(nn.Module):
    """Per-channel affine flow ``y = m + exp(logs) * x`` (parameters ``m``, ``logs``: [C, 1]).

    Args:
        channels: ``C``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> FlowOutput:
        """x: [B, C, T]; x_mask: [B, 1, T]; g unused. Forward: (y, logdet [B]); reverse: (x, None)."""
        if not reverse:
            y = (self.m + torch.exp(self.logs) * x) * x_mask
            return FlowOutput(y, torch.sum(self.logs * x_mask, [1, 2]))
        return FlowOutput((x - self.m) * torch.exp(-self.logs) * x_mask, None)
