"""VITS encoders: the prior text encoder ``enc_p`` and the posterior encoder ``enc_q``.

Source: jaywalnut310/vits ``models.TextEncoder`` / ``models.PosteriorEncoder``; speaker
conditioning of the text encoder from p0p4k/vits2_pytorch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from nixdistill.nn import sequence_mask

from .attentions import Encoder
from .modules import WN


class PriorOutput(NamedTuple):
    """Output of :class:`TextEncoder`.

    x: hidden states [B, hidden, T_text]; m_p/logs_p: prior mean and log-std
    [B, inter, T_text]; x_mask: [B, 1, T_text].
    """

    x: torch.Tensor
    m_p: torch.Tensor
    logs_p: torch.Tensor
    x_mask: torch.Tensor


class EncQOutput(NamedTuple):
    """Output of :class:`PosteriorEncoder`: z, m_q, logs_q [B, inter, T_frames]; y_mask [B, 1, T_frames]."""

    z: torch.Tensor
    m_q: torch.Tensor
    logs_q: torch.Tensor
    y_mask: torch.Tensor


class TextEncoder(nn.Module):
    """Token embedding + relative-position transformer + projection to prior statistics.

    Args:
        n_vocab: symbols.
        out_channels: latent channels (``inter_channels``).
        hidden_channels / filter_channels / n_heads / n_layers / kernel_size / p_dropout:
            transformer shape.
        gin_channels: speaker conditioning channels (0: none; VITS2 only).
        cond_layer_idx: transformer block that receives the speaker embedding.
    """

    def __init__(self, n_vocab: int, out_channels: int, hidden_channels: int,
                 filter_channels: int, n_heads: int, n_layers: int, kernel_size: int,
                 p_dropout: float, gin_channels: int = 0, cond_layer_idx: int = 0):
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.emb = nn.Embedding(n_vocab, hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, hidden_channels**-0.5)
        self.encoder = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size,
                               p_dropout, gin_channels=gin_channels,
                               cond_layer_idx=cond_layer_idx)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor,
                g: torch.Tensor | None = None) -> PriorOutput:
        """x: token ids [B, T_text] int64; x_lengths: [B]; g: [B, gin, 1] or None."""
        h = self.emb(x) * math.sqrt(self.hidden_channels)  # [B, T_text, H]
        h = h.transpose(1, -1)  # [B, H, T_text]
        x_mask = sequence_mask(x_lengths, h.size(2)).unsqueeze(1).to(h.dtype)
        h = self.encoder(h * x_mask, x_mask, g=g)
        stats = self.proj(h) * x_mask
        m_p, logs_p = torch.split(stats, self.out_channels, dim=1)
        return PriorOutput(h, m_p, logs_p, x_mask)


class PosteriorEncoder(nn.Module):
    """WaveNet over a linear (VITS) or mel (VITS2) spectrogram -> posterior q(z | y).

    Args:
        in_channels: spectrogram bins (``n_fft // 2 + 1`` or ``n_mels``).
        out_channels: latent channels.
        hidden_channels: WaveNet width.
        kernel_size / dilation_rate / n_layers: WaveNet shape (VITS: 5, 1, 16).
        gin_channels: speaker conditioning channels.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int,
                 kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int = 0):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers,
                      gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, y: torch.Tensor, y_lengths: torch.Tensor, g: torch.Tensor | None = None,
                noise_scale: float = 1.0,
                generator: torch.Generator | None = None) -> EncQOutput:
        """y: spectrogram [B, in, T_frames]; y_lengths: frames [B]; g: [B, gin, 1] or None.

        ``z = m_q + noise_scale * eps * exp(logs_q)`` (``noise_scale=0`` returns the mean).
        """
        y_mask = sequence_mask(y_lengths, y.size(2)).unsqueeze(1).to(y.dtype)
        h = self.pre(y) * y_mask
        h = self.enc(h, y_mask, g=g)
        stats = self.proj(h) * y_mask
        m_q, logs_q = torch.split(stats, self.out_channels, dim=1)
        z = m_q
        if noise_scale:
            eps = torch.randn(m_q.shape, generator=generator, device=m_q.device, dtype=m_q.dtype)
            z = m_q + eps * torch.exp(logs_q) * noise_scale
        return EncQOutput(z * y_mask, m_q, logs_q, y_mask)

    def remove_weight_norm(self) -> None:
        self.enc.remove_weight_norm()
