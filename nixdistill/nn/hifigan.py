"""HiFi-GAN pieces shared by the teacher generator and the student ``nix`` decoder.

Source: jik876/hifi-gan ``models.py`` (``ResBlock1``, ``ResBlock2``, ``Generator.forward``),
as used by jaywalnut310/vits. The residual blocks take a convolution factory, so the teacher
builds them from weight-normed ``Conv1d`` and the student from depthwise-separable convolutions
(Nix-TTS, Chevi et al. 2022) with the same state-dict layout (``convs1.N``, ``convs2.N``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .layers import LRELU_SLOPE, get_padding, init_weights

__all__ = ["ConvFactory", "weight_norm_conv1d", "ResBlock1", "ResBlock2", "hifigan_upsample"]

#: ``(channels, kernel_size, dilation) -> module`` mapping [B, C, T] to [B, C, T] ("same" padding).
ConvFactory = Callable[[int, int, int], nn.Module]
#: An init applied with ``Module.apply`` after the block is built (None: keep torch's init).
ConvInit = Callable[[nn.Module], None]


def weight_norm_conv1d(channels: int, kernel_size: int, dilation: int) -> nn.Module:
    """Weight-normed ``Conv1d(channels, channels)`` with "same" padding (HiFi-GAN)."""
    return weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=dilation,
                                 padding=get_padding(kernel_size, dilation)))


class ResBlock1(nn.Module):
    """HiFi-GAN V1 residual block: per dilation ``d``, ``x += c2(lrelu(c1_d(lrelu(x))))``.

    Args:
        channels: ``C``.
        kernel_size: kernel of every convolution (odd).
        dilation: dilation of each ``convs1`` layer; ``convs2`` layers use dilation 1.
        slope: leaky-ReLU negative slope.
        conv: convolution factory (:data:`ConvFactory`).
        init: init applied to the convolutions after construction, or None.
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5),
                 slope: float = LRELU_SLOPE, conv: ConvFactory = weight_norm_conv1d,
                 init: ConvInit | None = init_weights):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(conv(channels, kernel_size, d) for d in dilation)
        self.convs2 = nn.ModuleList(conv(channels, kernel_size, 1) for _ in dilation)
        if init is not None:
            self.convs1.apply(init)
            self.convs2.apply(init)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, C, T]; x_mask: [B, 1, T] or None -> [B, C, T]."""
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, self.slope)
            if x_mask is not None:
                xt = xt * x_mask
            xt = F.leaky_relu(c1(xt), self.slope)
            if x_mask is not None:
                xt = xt * x_mask
            x = c2(xt) + x
        return x * x_mask if x_mask is not None else x


class ResBlock2(nn.Module):
    """HiFi-GAN V3 residual block: per dilation ``d``, ``x += c_d(lrelu(x))``.

    Args: as :class:`ResBlock1` (default dilations ``(1, 3)``).
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3),
                 slope: float = LRELU_SLOPE, conv: ConvFactory = weight_norm_conv1d,
                 init: ConvInit | None = init_weights):
        super().__init__()
        self.slope = slope
        self.convs = nn.ModuleList(conv(channels, kernel_size, d) for d in dilation)
        if init is not None:
            self.convs.apply(init)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, C, T]; x_mask: [B, 1, T] or None -> [B, C, T]."""
        for c in self.convs:
            xt = F.leaky_relu(x, self.slope)
            if x_mask is not None:
                xt = xt * x_mask
            x = c(xt) + x
        return x * x_mask if x_mask is not None else x


def hifigan_upsample(x: torch.Tensor, ups: nn.ModuleList, resblocks: nn.ModuleList,
                     conv_post: nn.Module, slope: float = LRELU_SLOPE) -> torch.Tensor:
    """The HiFi-GAN generator after ``conv_pre``: upsampling stages, then ``conv_post`` and tanh.

    Stage ``i`` is ``x = mean_k(resblocks[i * K + k](ups[i](lrelu(x))))`` with
    ``K = len(resblocks) // len(ups)`` parallel blocks (multi-receptive-field fusion).

    Args:
        x: features after ``conv_pre`` (and speaker conditioning), [B, C0, T_frames].
        ups: one transposed convolution per stage; stage ``i`` multiplies the length by its
            stride ``u_i``.
        resblocks: ``K`` blocks per stage, stage by stage.
        conv_post: final convolution to one channel.
        slope: leaky-ReLU slope before each upsampling (the one before ``conv_post`` keeps
            torch's default 0.01, as in HiFi-GAN and VITS).
    Returns:
        waveform in [-1, 1], [B, 1, T_frames * prod(u_i)].
    """
    num_kernels = len(resblocks) // len(ups)
    for i, up in enumerate(ups):
        x = up(F.leaky_relu(x, slope))
        blocks = resblocks[i * num_kernels:(i + 1) * num_kernels]
        xs = blocks[0](x)
        for block in blocks[1:]:
            xs = xs + block(x)
        x = xs / num_kernels
    x = conv_post(F.leaky_relu(x))
    return torch.tanh(x)
