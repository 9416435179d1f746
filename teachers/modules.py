"""Building blocks of VITS: WaveNet and normalising-flow layers (the HiFi-GAN residual blocks,
``Flip`` and ``ElementwiseAffine`` are shared with the students, in :mod:`nixdistill.nn`).

Source: jaywalnut310/vits ``modules.py`` (architecture and parameter names, so original
checkpoints load key for key). Weight norm uses ``torch.nn.utils.parametrizations.weight_norm``
(state-dict keys ``parametrizations.weight.original0/original1``); the loader in
:mod:`nixdistill.teacher.loader` translates old ``weight_g``/``weight_v`` keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from nixdistill.nn import get_padding, remove_weight_norm
from nixdistill.nn.flows import FlowOutput

from .commons import fused_add_tanh_sigmoid_multiply
from .transforms import unconstrained_rational_quadratic_spline

#: LayerNorm epsilon (VITS ``modules.LayerNorm``).
LAYER_NORM_EPS = 1e-5
#: Floor applied before ``log`` in the duration flow's :class:`Log` layer.
LOG_FLOOR = 1e-5
#: Spline bins and tail bound of :class:`ConvFlow` (VITS defaults).
SPLINE_BINS = 10
SPLINE_TAIL_BOUND = 5.0


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, T]`` tensors (parameters ``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = LAYER_NORM_EPS):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T] -> [B, C, T]."""
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class DDSConv(nn.Module):
    """Dilated depth-separable convolutions (VITS SDP), dilation ``kernel_size ** i``."""

    def __init__(self, channels: int, kernel_size: int, n_layers: int, p_dropout: float = 0.0):
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            self.convs_sep.append(nn.Conv1d(channels, channels, kernel_size, groups=channels,
                                            dilation=dilation,
                                            padding=get_padding(kernel_size, dilation)))
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(LayerNorm(channels))
            self.norms_2.append(LayerNorm(channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None):
        """x: [B, C, T], x_mask: [B, 1, T], g: optional [B, C, T|1] added first -> [B, C, T]."""
        if g is not None:
            x = x + g
        for conv_sep, conv_1x1, norm_1, norm_2 in zip(
            self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2
        ):
            y = F.gelu(norm_1(conv_sep(x * x_mask)))
            y = self.drop(F.gelu(norm_2(conv_1x1(y))))
            x = x + y
        return x * x_mask


class WN(nn.Module):
    """Non-causal WaveNet stack with gated activations and optional global conditioning.

    Used by the posterior encoder ``enc_q`` and the flow couplings (VITS ``modules.WN``).

    Args:
        hidden_channels: residual channels.
        kernel_size: odd kernel size.
        dilation_rate: dilation of layer ``i`` is ``dilation_rate ** i``.
        n_layers: number of gated layers.
        gin_channels: speaker-embedding channels (0: unconditioned).
        p_dropout: dropout on the gated activations.
    """

    def __init__(self, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, gin_channels: int = 0, p_dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)
        if gin_channels:
            self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(weight_norm(nn.Conv1d(
                hidden_channels, 2 * hidden_channels, kernel_size, dilation=dilation,
                padding=get_padding(kernel_size, dilation))))
            # the last layer only feeds the skip path
            res_skip_channels = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, res_skip_channels, 1)))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None):
        """x: [B, H, T], x_mask: [B, 1, T], g: [B, gin, 1] or None -> skip sum [B, H, T]."""
        output = torch.zeros_like(x)
        h = self.hidden_channels
        if g is not None:
            g = self.cond_layer(g)  # [B, 2*H*n_layers, 1]
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            x_in = in_layer(x)
            g_l = g[:, i * 2 * h:(i + 1) * 2 * h] if g is not None else torch.zeros_like(x_in)
            acts = self.drop(fused_add_tanh_sigmoid_multiply(x_in, g_l, h))
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :h]) * x_mask
                output = output + res_skip[:, h:]
            else:
                output = output + res_skip
        return output * x_mask

    def remove_weight_norm(self) -> None:
        """Fold weight norm of every convolution into plain weights (for inference/export)."""
        remove_weight_norm(self)


class Log(nn.Module):
    """Flow ``y = log(x)`` on the duration channel (SDP); logdet ``-sum(y)``."""

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> FlowOutput:
        """x: [B, C, T]; g unused. Forward: (y, logdet [B]); reverse: (``exp(x) * x_mask``, None)."""
        if not reverse:
            y = torch.log(torch.clamp_min(x, LOG_FLOOR)) * x_mask
            return FlowOutput(y, torch.sum(-y, [1, 2]))
        return FlowOutput(torch.exp(x) * x_mask, None)


class ResidualCouplingLayer(nn.Module):
    """Affine coupling ``x1 -> m(x0) + x1 * exp(logs(x0))`` with a WaveNet conditioner.

    VITS uses ``mean_only=True`` (volume preserving), so ``logs = 0``.

    Args:
        channels: total channels (even); each half has ``channels // 2``.
        hidden_channels: WaveNet width.
        kernel_size / dilation_rate / n_layers: WaveNet shape.
        p_dropout: WaveNet dropout.
        gin_channels: speaker conditioning channels (0: none).
        mean_only: predict only the shift.
    """

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, p_dropout: float = 0.0, gin_channels: int = 0,
                 mean_only: bool = False):
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling channels must be even, got {channels}")
        self.half_channels = channels // 2
        self.mean_only = mean_only
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers,
                      gin_channels=gin_channels, p_dropout=p_dropout)
        self.post = nn.Conv1d(hidden_channels, self.half_channels * (2 - mean_only), 1)
        # zero init: the coupling starts as the identity
        self.post.weight.data.zero_()
        self.post.bias.data.zero_()

    def conditioner(self, x0: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None):
        """Hidden features from the first half, [B, hidden, T]."""
        h = self.pre(x0) * x_mask
        return self.enc(h, x_mask, g=g)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> FlowOutput:
        """x: [B, C, T]. Forward: (y, logdet [B]); reverse: (the inverse, None)."""
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        stats = self.post(self.conditioner(x0, x_mask, g)) * x_mask
        if self.mean_only:
            m, logs = stats, torch.zeros_like(stats)
        else:
            m, logs = torch.split(stats, [self.half_channels] * 2, 1)
        if not reverse:
            x1 = m + x1 * torch.exp(logs) * x_mask
            return FlowOutput(torch.cat([x0, x1], 1), torch.sum(logs, [1, 2]))
        x1 = (x1 - m) * torch.exp(-logs) * x_mask
        return FlowOutput(torch.cat([x0, x1], 1), None)

    def remove_weight_norm(self) -> None:
        self.enc.remove_weight_norm()


class ConvFlow(nn.Module):
    """Neural-spline coupling layer of the stochastic duration predictor (VITS ``ConvFlow``).

    Args:
        in_channels: total channels (2 in the SDP).
        filter_channels: conditioner width.
        kernel_size / n_layers: DDSConv conditioner shape.
        num_bins: spline bins.
        tail_bound: spline interval half-width; identity outside.
    """

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, n_layers: int,
                 num_bins: int = SPLINE_BINS, tail_bound: float = SPLINE_TAIL_BOUND):
        super().__init__()
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.half_channels = in_channels // 2
        self.pre = nn.Conv1d(self.half_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers, p_dropout=0.0)
        # per half-channel: K widths, K heights, K - 1 inner slopes
        self.proj = nn.Conv1d(filter_channels, self.half_channels * (num_bins * 3 - 1), 1)
        self.proj.weight.data.zero_()
        self.proj.bias.data.zero_()

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> FlowOutput:
        """x: [B, C, T], g: [B, filter, T]. Forward: (y, logdet [B]); reverse: (x, None)."""
        x0, x1 = torch.split(x, [self.half_channels] * 2, 1)
        h = self.convs(self.pre(x0), x_mask, g=g)
        h = self.proj(h) * x_mask
        b, c, t = x0.shape
        h = h.reshape(b, c, -1, t).permute(0, 1, 3, 2)  # [B, C/2, T, 3K-1]
        scale = math.sqrt(self.filter_channels)
        widths = h[..., : self.num_bins] / scale
        heights = h[..., self.num_bins: 2 * self.num_bins] / scale
        derivatives = h[..., 2 * self.num_bins:]
        x1, logabsdet = unconstrained_rational_quadratic_spline(
            x1, widths, heights, derivatives, inverse=reverse, tail_bound=self.tail_bound)
        x = torch.cat([x0, x1], 1) * x_mask
        if not reverse:
            return FlowOutput(x, torch.sum(logabsdet * x_mask, [1, 2]))
        return FlowOutput(x, None)
