"""Duration predictors of the Nix-TTS student encoder and their rounding to frames.

- :class:`DurationPredictor`: deterministic, a depthwise-separable conv stack on the (detached)
  text features -> ``log w`` (the Nix-TTS paper's 5.23M variant, Chevi et al. 2022 §3.1);
- :class:`StochasticDurationPredictor`: a compact flow in the spirit of VITS's SDP (Kim et al.
  2021 §2.3; the paper's 6.03M variant);
- :func:`round_durations`: integer frames per token with an unbiased utterance length.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nixdistill.nn import ElementwiseAffine, Flip

from .layers import DSConvStack

__all__ = ["DurationPredictor", "StochasticDurationPredictor", "round_durations"]

_LOG_2PI = math.log(2 * math.pi)


class DurationPredictor(nn.Module):
    """Deterministic duration predictor: DS-conv stack on (detached) text features -> log w.

    Args:
        in_channels: text-feature channels.
        channels / filter_channels / kernel_size / dilations / dropout: the conv stack.
        gin_channels: speaker conditioning width (0: none).
    """

    def __init__(
        self, in_channels: int, channels: int, filter_channels: int, kernel_size: int,
        dilations: list[int], dropout: float, gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.pre = nn.Conv1d(in_channels, channels, 1)
        self.stack = DSConvStack(channels, filter_channels, kernel_size, dilations, dropout, gin_channels)
        self.proj = nn.Conv1d(channels, 1, 1)

    def forward(self, h: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """h: [B, in, T_text]; x_mask: [B, 1, T_text]; g: [B, gin, 1] -> logw [B, 1, T_text]."""
        y = self.stack(self.pre(h) * x_mask, x_mask, g)
        return self.proj(y) * x_mask

    @torch.no_grad()
    def rescale(self, factor: float) -> None:
        """Multiply every predicted duration by ``factor`` (> 0): adds ``log factor`` to the
        output bias, so ``logw`` of every valid token shifts by it.

        Raises:
            ValueError: ``factor`` is not positive.
        """
        if not factor > 0:
            raise ValueError(f"duration factor must be > 0, got {factor}")
        self.proj.bias.add_(math.log(factor))


class _AffineCoupling(nn.Module):
    """Affine coupling on a 2-channel variable: channel 1 is shifted/scaled by a DS-conv net of
    (channel 0, condition); the output projection starts at zero (identity flow)."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.pre = nn.Conv1d(1, channels, 1)
        self.net = DSConvStack(channels, filter_channels, kernel_size, dilations)
        self.proj = nn.Conv1d(channels, 2, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, x_mask, cond, reverse=False):
        x0, x1 = x[:, :1], x[:, 1:]
        h = self.net((self.pre(x0) + cond) * x_mask, x_mask)
        m, logs = self.proj(h).chunk(2, dim=1)
        if not reverse:
            x1 = (m + x1 * torch.exp(logs)) * x_mask
            return torch.cat([x0, x1], 1), torch.sum(logs * x_mask, dim=[1, 2])
        x1 = (x1 - m) * torch.exp(-logs) * x_mask
        return torch.cat([x0, x1], 1), None


class StochasticDurationPredictor(nn.Module):
    """Compact flow-based stochastic duration predictor (in the spirit of VITS's SDP).

    The variable is ``[y, e]`` with ``y = log(w + 1/2 - u)``, ``u ~ U[0, 1)`` (uniform
    dequantisation of the integer durations ``w`` centred on ``w``, so ``round(exp(y)) = w`` and
    ``E[exp(y)] = w``: :func:`round_durations` then keeps lengths unbiased) and ``e ~ N(0, 1)``
    an augmentation channel. An elementwise affine flow and ``n_flows`` conditional affine
    couplings (each followed by a channel flip) map it to a standard normal. The training loss is
    the variational bound ``-log p(y, e) + log q(e) + y`` (the last term is the Jacobian of
    ``y = log d``), per item.

    Args:
        in_channels: text-feature channels.
        channels / filter_channels / kernel_size / dilations / dropout: condition encoder.
        n_flows: coupling layers.
        flow_dilations: per-block dilations of each coupling network.
        gin_channels: speaker conditioning width (0: none).
    """

    def __init__(
        self, in_channels: int, channels: int, filter_channels: int, kernel_size: int,
        dilations: list[int], dropout: float, n_flows: int, flow_dilations: list[int],
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.pre = nn.Conv1d(in_channels, channels, 1)
        self.cond_stack = DSConvStack(channels, filter_channels, kernel_size, dilations, dropout,
                                      gin_channels)
        flows: list[nn.Module] = [ElementwiseAffine(2)]
        for _ in range(n_flows):
            flows += [_AffineCoupling(channels, filter_channels, kernel_size, flow_dilations), Flip()]
        self.flows = nn.ModuleList(flows)

    def _cond(self, h, x_mask, g):
        return self.cond_stack(self.pre(h) * x_mask, x_mask, g)

    def nll(
        self, h: torch.Tensor, x_mask: torch.Tensor, w: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed negative log-likelihood bound per item.

        Args:
            h: text features, [B, in, T_text]; x_mask: [B, 1, T_text].
            w: target durations in frames (integers >= 1 on valid tokens), [B, 1, T_text].
            g: speaker embedding [B, gin, 1] or None.
        Returns:
            nll: [B] (nats, summed over valid tokens).
        """
        cond = self._cond(h, x_mask, g)
        u = torch.rand_like(w)
        y = torch.log((w + 0.5 - u).clamp(min=torch.finfo(w.dtype).tiny)) * x_mask
        e = torch.randn_like(w) * x_mask
        z = torch.cat([y, e], 1)
        logdet = torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
        for flow in self.flows:
            z, ld = flow(z, x_mask, cond)
            logdet = logdet + ld
        log_pz = torch.sum(-0.5 * (_LOG_2PI + z ** 2) * x_mask, dim=[1, 2])
        log_qe = torch.sum(-0.5 * (_LOG_2PI + e ** 2) * x_mask, dim=[1, 2])
        return -(log_pz + logdet) + log_qe + torch.sum(y * x_mask, dim=[1, 2])

    def forward(
        self, h: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
        noise_scale_w: float = 1.0, generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample log durations: h [B, in, T_text], x_mask [B, 1, T_text] -> logw [B, 1, T_text]."""
        cond = self._cond(h, x_mask, g)
        b, _, t = x_mask.shape
        z = torch.randn(b, 2, t, device=h.device, dtype=h.dtype, generator=generator)
        z = z * noise_scale_w * x_mask
        for flow in reversed(self.flows):
            z, _ = flow(z, x_mask, cond, reverse=True)
        return z[:, :1] * x_mask


def round_durations(w: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """Integer frames per token whose running total is the rounded running total of ``w``.

    ``w_int[j] = round(Σ_{i<=j} w[i]) - round(Σ_{i<j} w[i])``, so every token gets ``floor`` or
    ``ceil`` of its continuous duration and the utterance length is ``round(Σ w)``: unbiased
    whenever ``w`` is (``ceil`` per token, as in VITS inference, adds about half a frame per
    token -- 20-28 % for Piper ids with a blank between phonemes). Tokens may get 0 frames.

    Args:
        w: continuous frames per token, >= 0, [B, T_text] or [B, 1, T_text].
        x_mask: valid tokens, same shape as ``w`` (or broadcastable).
    Returns:
        w_int: frames per token, same shape as ``w``, float with whole values (0 on padding).
    """
    cum = torch.round(torch.cumsum(w * x_mask, dim=-1))
    prev = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], dim=-1)
    return (cum - prev) * x_mask
