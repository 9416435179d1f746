"""The Nix-TTS decoder (Chevi et al., SLT 2022, arXiv 2203.15643): a HiFi-GAN generator
(jik876/hifi-gan, V1 layout) whose dilated residual convolutions are depthwise-separable.

``forward(z [B, inter_channels, T_frames], g=None) -> wav [B, 1, T_frames * hop_length]``.
Transposed-convolution upsampling to audio rate, so most of its work runs at the sample rate.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from nixdistill.nn import (
    ResBlock1,
    check_upsampling,
    get_padding,
    hifigan_upsample,
    remove_weight_norm,
)

from .decoder_config import NixDecoderConfig
from .layers import DepthwiseSeparableConv1d

__all__ = ["NixDecoder", "init_normal"]


def init_normal(module: nn.Module, std: float) -> None:
    """HiFi-GAN ``init_weights``: conv weights ~ N(0, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            m.weight.data.normal_(0.0, std)


def _ds_conv(channels: int, kernel_size: int, dilation: int) -> DepthwiseSeparableConv1d:
    """Weight-normed depthwise-separable conv from :mod:`students.layers`, [B, C, T] -> same."""
    conv = DepthwiseSeparableConv1d(channels, channels, kernel_size, dilation)
    conv.depthwise = weight_norm(conv.depthwise)
    conv.pointwise = weight_norm(conv.pointwise)
    return conv


# HiFi-GAN (jik876) initialises its convolutions from N(0, 0.01).
_HIFIGAN_INIT_STD = 0.01


class NixDecoder(nn.Module):
    """Nix-TTS decoder: lightweight HiFi-GAN generator (Chevi et al. 2022; jik876/hifi-gan).

    ``conv_pre -> [lrelu -> ConvTranspose(rate) -> mean(DS resblocks)] x stages -> lrelu ->
    conv_post -> tanh``. Weight norm is on during training; call :meth:`remove_weight_norm`
    before export.

    Args:
        cfg: :class:`NixDecoderConfig`.
        hop_length: the teacher's hop in samples; must equal ``prod(cfg.upsample_rates)``.
    Raises:
        ConfigError: if the hop length does not match.
    """

    def __init__(self, cfg: NixDecoderConfig, hop_length: int) -> None:
        super().__init__()
        check_upsampling(cfg.upsample_rates, hop_length, "decoder (nix)")
        self.cfg = cfg
        self.hop_length = hop_length
        self.slope = cfg.leaky_relu_slope
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        c0 = cfg.upsample_initial_channel
        self.conv_pre = weight_norm(
            nn.Conv1d(cfg.inter_channels, c0, cfg.pre_kernel_size,
                      padding=get_padding(cfg.pre_kernel_size))
        )
        self.cond = nn.Conv1d(cfg.gin_channels, c0, 1) if cfg.gin_channels > 0 else None
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = c0
        for rate, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            self.ups.append(weight_norm(
                nn.ConvTranspose1d(ch, ch // 2, k, rate, padding=(k - rate) // 2)
            ))
            ch //= 2
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, rk, rd, self.slope, conv=_ds_conv, init=None))
        self.conv_post = weight_norm(
            nn.Conv1d(ch, 1, cfg.post_kernel_size, padding=get_padding(cfg.post_kernel_size),
                      bias=False)
        )
        init_normal(self.ups, _HIFIGAN_INIT_STD)
        init_normal(self.resblocks, _HIFIGAN_INIT_STD)

    def forward(self, z: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """Decode latents to audio.

        Args:
            z: latent, [B, inter_channels, T_frames].
            g: speaker embedding, [B, gin_channels, 1], or None.
        Returns:
            wav in [-1, 1], [B, 1, T_frames * hop_length].
        """
        x = self.conv_pre(z)
        if self.cond is not None and g is not None:
            x = x + self.cond(g)
        return hifigan_upsample(x, self.ups, self.resblocks, self.conv_post, self.slope)

    def remove_weight_norm(self) -> NixDecoder:
        """Fold weight norm into plain weights (in place) for inference/export."""
        remove_weight_norm(self)
        return self
