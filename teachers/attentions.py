"""Transformer encoder with relative-position self-attention (VITS text encoder).

Source: jaywalnut310/vits ``attentions.py`` (Shaw et al. 2018 relative positions with a window,
post-LayerNorm blocks, convolutional FFN); the optional speaker conditioning at one layer is
from p0p4k/vits2_pytorch (VITS2, Kong et al. 2023, sec. 2.4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .modules import LayerNorm

#: Relative-attention window (VITS default): positions up to this far apart get own embeddings.
DEFAULT_WINDOW_SIZE = 4
#: Score given to masked (padding) positions before the softmax.
MASKED_SCORE = -1e4


class MultiHeadAttention(nn.Module):
    """Multi-head attention with 1x1-conv projections and optional relative positions.

    Args:
        channels: input/model channels (divisible by ``n_heads``).
        out_channels: output channels.
        n_heads: heads.
        p_dropout: dropout on attention weights.
        window_size: relative window (``None``: absolute-free dot-product attention).
    """

    def __init__(self, channels: int, out_channels: int, n_heads: int, p_dropout: float = 0.0,
                 window_size: int | None = None):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.window_size = window_size
        self.k_channels = channels // n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            rel_stddev = self.k_channels**-0.5
            # heads share one table: [1, 2 * window + 1, k_channels]
            self.emb_rel_k = nn.Parameter(
                torch.randn(1, window_size * 2 + 1, self.k_channels) * rel_stddev)
            self.emb_rel_v = nn.Parameter(
                torch.randn(1, window_size * 2 + 1, self.k_channels) * rel_stddev)
        nn.init.xavier_uniform_(self.conv_q.weight)
        nn.init.xavier_uniform_(self.conv_k.weight)
        nn.init.xavier_uniform_(self.conv_v.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None):
        """x: queries [B, C, T_t], c: keys/values [B, C, T_s], attn_mask [B, 1, T_t, T_s]
        -> [B, out, T_t]."""
        q, k, v = self.conv_q(x), self.conv_k(c), self.conv_v(c)
        b, d, t_s = k.shape
        t_t = q.size(2)
        # [B, C, T] -> [B, n_h, T, d_k]
        q = q.view(b, self.n_heads, self.k_channels, t_t).transpose(2, 3)
        k = k.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        v = v.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        q = q / math.sqrt(self.k_channels)
        scores = torch.matmul(q, k.transpose(-2, -1))  # [b,h,t_t,d] x [b,h,d,t_s] = [b,h,t_t,t_s]
        if self.window_size is not None:
            rel_k = self._relative_embeddings(self.emb_rel_k, t_s)  # [1, 2*t_s-1, d]
            # [b,h,t,d] x [1,1,d,2t-1] = [b,h,t,2t-1]
            rel_logits = torch.matmul(q, rel_k.unsqueeze(0).transpose(-2, -1))
            scores = scores + self._relative_to_absolute(rel_logits)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, MASKED_SCORE)
        p_attn = self.drop(F.softmax(scores, dim=-1))  # [b, h, t_t, t_s]
        out = torch.matmul(p_attn, v)  # [b,h,t_t,t_s] x [b,h,t_s,d] = [b,h,t_t,d]
        if self.window_size is not None:
            rel_weights = self._absolute_to_relative(p_attn)  # [b, h, t, 2t-1]
            rel_v = self._relative_embeddings(self.emb_rel_v, t_s)
            out = out + torch.matmul(rel_weights, rel_v.unsqueeze(0))  # [b,h,t,2t-1]x[1,1,2t-1,d]
        out = out.transpose(2, 3).contiguous().view(b, d, t_t)  # [b, h, t, d_k] -> [b, C, t]
        return self.conv_o(out)

    def _relative_embeddings(self, table: torch.Tensor, length: int) -> torch.Tensor:
        """Rows of ``table`` for offsets ``-(length-1) .. length-1``, [1, 2*length-1, d]."""
        pad = max(length - (self.window_size + 1), 0)
        start = max((self.window_size + 1) - length, 0)
        if pad > 0:
            table = F.pad(table, (0, 0, pad, pad))
        return table[:, start: start + 2 * length - 1]

    @staticmethod
    def _relative_to_absolute(x: torch.Tensor) -> torch.Tensor:
        """[b, h, l, 2l-1] relative logits -> [b, h, l, l] absolute (skewing trick)."""
        b, h, length, _ = x.shape
        x = F.pad(x, (0, 1))
        x_flat = F.pad(x.reshape(b, h, length * 2 * length), (0, length - 1))
        return x_flat.view(b, h, length + 1, 2 * length - 1)[:, :, :length, length - 1:]

    @staticmethod
    def _absolute_to_relative(x: torch.Tensor) -> torch.Tensor:
        """[b, h, l, l] absolute weights -> [b, h, l, 2l-1] relative."""
        b, h, length, _ = x.shape
        x = F.pad(x, (0, length - 1))
        x_flat = F.pad(x.reshape(b, h, length**2 + length * (length - 1)), (length, 0))
        return x_flat.view(b, h, length, 2 * length)[:, :, :, 1:]


class FFN(nn.Module):
    """Position-wise feed-forward block of two 'same'-padded convolutions with ReLU."""

    def __init__(self, in_channels: int, out_channels: int, filter_channels: int,
                 kernel_size: int, p_dropout: float = 0.0):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, ((self.kernel_size - 1) // 2, self.kernel_size // 2))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T], x_mask: [B, 1, T] -> [B, C_out, T]."""
        x = self.drop(torch.relu(self.conv_1(self._pad(x * x_mask))))
        return self.conv_2(self._pad(x * x_mask)) * x_mask


class Encoder(nn.Module):
    """Stack of (self-attention, FFN) blocks with residual + post-LayerNorm.

    Args:
        hidden_channels: model width.
        filter_channels: FFN width.
        n_heads / n_layers: attention heads and blocks.
        kernel_size: FFN kernel.
        p_dropout: dropout.
        window_size: relative-attention window (``None`` disables relative positions).
        gin_channels: speaker-embedding channels; > 0 adds ``spk_emb_linear`` (VITS2).
        cond_layer_idx: block before which the projected speaker embedding is added.
    """

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int = 1, p_dropout: float = 0.0,
                 window_size: int | None = DEFAULT_WINDOW_SIZE, gin_channels: int = 0,
                 cond_layer_idx: int = 0):
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        self.cond_layer_idx = cond_layer_idx if gin_channels else None
        if gin_channels:
            if not 0 <= cond_layer_idx < n_layers:
                raise ValueError(f"cond_layer_idx ({cond_layer_idx}) must be < n_layers ({n_layers})")
            self.spk_emb_linear = nn.Linear(gin_channels, hidden_channels)
        for _ in range(n_layers):
            self.attn_layers.append(MultiHeadAttention(hidden_channels, hidden_channels, n_heads,
                                                       p_dropout=p_dropout, window_size=window_size))
            self.norm_layers_1.append(LayerNorm(hidden_channels))
            self.ffn_layers.append(FFN(hidden_channels, hidden_channels, filter_channels,
                                       kernel_size, p_dropout=p_dropout))
            self.norm_layers_2.append(LayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None):
        """x: [B, H, T], x_mask: [B, 1, T], g: speaker embedding [B, gin, 1] or None -> [B, H, T]."""
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)  # [B, 1, T, T]
        x = x * x_mask
        for i in range(self.n_layers):
            if i == self.cond_layer_idx and g is not None:
                x = (x + self.spk_emb_linear(g.transpose(1, 2)).transpose(1, 2)) * x_mask
            y = self.drop(self.attn_layers[i](x, x, attn_mask))
            x = self.norm_layers_1[i](x + y)
            y = self.drop(self.ffn_layers[i](x, x_mask))
            x = self.norm_layers_2[i](x + y)
        return x * x_mask
