"""Shared building blocks of the Nix-TTS student: depthwise-separable dilated 1-D convolutions.

Nix-TTS (Chevi et al. 2022, arXiv 2203.15643) replaces the teacher's transformer and WaveNet
stacks with depthwise-separable convolutions: a depthwise (per-channel, ``groups=channels``)
dilated convolution followed by pointwise (1x1) convolutions. The blocks here are masked so
that padded frames never leak into valid ones (padding invariance), and every block really uses
the dilation it was built with (the unofficial port ignored its configured dilations).

This module is shared by the encoder and the decoder; its public names are stable:
:func:`sequence_mask` and :func:`durations_to_path` (from :mod:`nixdistill.nn`), :class:`ChannelLayerNorm`,
:class:`DepthwiseSeparableConv1d`, :class:`DSConvBlock`, :class:`DSConvStack`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nixdistill.nn import durations_to_path, sequence_mask

__all__ = [
    "sequence_mask",
    "durations_to_path",
    "ChannelLayerNorm",
    "DepthwiseSeparableConv1d",
    "DSConvBlock",
    "DSConvStack",
]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, T] tensor (learnable gain and bias).

    Args:
        channels: ``C``.
        eps: variance floor.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T] -> [B, C, T]."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class DepthwiseSeparableConv1d(nn.Module):
    """Depthwise dilated convolution (``groups=in_channels``) followed by a 1x1 convolution.

    Length-preserving ("same") padding of ``dilation * (kernel_size - 1) // 2`` on each side;
    ``kernel_size`` must be odd.

    Args:
        in_channels / out_channels: ``C_in`` / ``C_out``.
        kernel_size: depthwise kernel width in frames (odd).
        dilation: depthwise dilation in frames.
    Raises:
        ValueError: for an even kernel size or a non-positive dilation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for same padding, got {kernel_size}")
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, kernel_size, dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2, groups=in_channels,
        )
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, T]."""
        return self.pointwise(self.depthwise(x))


class DSConvBlock(nn.Module):
    """Residual depthwise-separable block (inverted bottleneck, ConvNeXt-like).

    ``y = x + Dropout(PW2(GELU(PW1(LN(DW(x · mask))))))``, then masked. ``DW`` is the dilated
    depthwise convolution, ``PW1``/``PW2`` are 1x1 convolutions ``C -> filter_channels -> C``.

    Args:
        channels: ``C``.
        filter_channels: hidden width of the pointwise bottleneck.
        kernel_size: depthwise kernel width in frames (odd).
        dilation: depthwise dilation in frames.
        dropout: dropout probability.
        gin_channels: speaker-embedding channels (0: unconditioned); ``g`` is added after DW.
    """

    def __init__(
        self, channels: int, filter_channels: int, kernel_size: int, dilation: int,
        dropout: float = 0.0, gin_channels: int = 0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for same padding, got {kernel_size}")
        self.conv = nn.Conv1d(
            channels, channels, kernel_size, dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2, groups=channels,
        )
        self.norm = ChannelLayerNorm(channels)
        self.pw1 = nn.Conv1d(channels, filter_channels, 1)
        self.pw2 = nn.Conv1d(filter_channels, channels, 1)
        self.drop = nn.Dropout(dropout)
        self.cond = nn.Conv1d(gin_channels, channels, 1) if gin_channels > 0 else None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, C, T]; mask: [B, 1, T] or None; g: [B, gin, 1] or None -> [B, C, T]."""
        if mask is not None:
            x = x * mask
        y = self.conv(x)
        if self.cond is not None and g is not None:
            y = y + self.cond(g)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        x = x + self.drop(y)
        return x * mask if mask is not None else x


class DSConvStack(nn.Module):
    """A stack of :class:`DSConvBlock`, one per entry of ``dilations``.

    Args:
        channels: ``C``.
        filter_channels: bottleneck width of every block.
        kernel_size: depthwise kernel width in frames (odd).
        dilations: one dilation per block, e.g. ``[1, 2, 4, 1, 2, 4]``; block ``i`` is built with
            ``dilations[i]`` (checked by the tests through ``block.conv.dilation``).
        dropout: dropout probability.
        gin_channels: speaker-embedding channels (0: unconditioned).
    """

    def __init__(
        self, channels: int, filter_channels: int, kernel_size: int, dilations: Sequence[int],
        dropout: float = 0.0, gin_channels: int = 0,
    ) -> None:
        super().__init__()
        if len(dilations) == 0:
            raise ValueError("dilations must name at least one block")
        self.blocks = nn.ModuleList(
            DSConvBlock(channels, filter_channels, kernel_size, int(d), dropout, gin_channels)
            for d in dilations
        )
        self.norm = ChannelLayerNorm(channels)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, C, T]; mask: [B, 1, T] or None; g: [B, gin, 1] or None -> [B, C, T]."""
        for block in self.blocks:
            x = block(x, mask, g)
        x = self.norm(x)
        return x * mask if mask is not None else x
