"""HiFi-GAN generator ``dec`` (Kong et al. 2020) as used by VITS: latent frames -> waveform.

Source: jaywalnut310/vits ``models.Generator``. ``ups`` and the residual blocks use weight norm
(``torch.nn.utils.parametrizations.weight_norm``); ``conv_pre``/``conv_post`` do not.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from nixdistill.nn import ResBlock1, ResBlock2, hifigan_upsample, init_weights, remove_weight_norm

#: Kernel size of ``conv_pre`` and ``conv_post`` (HiFi-GAN).
PRE_POST_KERNEL = 7


class Generator(nn.Module):
    """Upsampling convolutional vocoder.

    Args:
        initial_channel: input latent channels (``inter_channels``).
        resblock: ``"1"`` (HiFi-GAN V1 blocks) or ``"2"`` (V3 blocks).
        resblock_kernel_sizes / resblock_dilation_sizes: one block per (kernel, dilations).
        upsample_rates: stride of each transposed conv; their product is the hop length.
        upsample_initial_channel: channels after ``conv_pre``; halved at each upsampling.
        upsample_kernel_sizes: kernel of each transposed conv.
        gin_channels: speaker conditioning channels (0: none).
    """

    def __init__(self, initial_channel: int, resblock: str, resblock_kernel_sizes: list[int],
                 resblock_dilation_sizes: list[list[int]], upsample_rates: list[int],
                 upsample_initial_channel: int, upsample_kernel_sizes: list[int],
                 gin_channels: int = 0):
        super().__init__()
        if resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {resblock!r}")
        self.num_upsamples = len(upsample_rates)
        pad = PRE_POST_KERNEL // 2
        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, PRE_POST_KERNEL, 1,
                                  padding=pad)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            self.ups.append(weight_norm(nn.ConvTranspose1d(
                upsample_initial_channel // (2**i), upsample_initial_channel // (2 ** (i + 1)),
                k, u, padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, k, tuple(d)))
        self.conv_post = nn.Conv1d(ch, 1, PRE_POST_KERNEL, 1, padding=pad, bias=False)
        self.ups.apply(init_weights)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x: latent [B, inter, T_frames], g: [B, gin, 1] or None
        -> waveform in [-1, 1], [B, 1, T_frames * prod(upsample_rates)]."""
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        return hifigan_upsample(x, self.ups, self.resblocks, self.conv_post)

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (inference/export; Piper does this)."""
        remove_weight_norm(self)
