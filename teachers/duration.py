"""Duration predictors of VITS/VITS2.

- :class:`StochasticDurationPredictor` (VITS sec. 2.2.2): a flow-based density over log
  durations, trained by variational dequantisation; sampled at inference.
- :class:`DurationPredictor`: deterministic conv predictor of ``log w`` (Glow-TTS style).
- :class:`DurationDiscriminator` (VITS2 sec. 2.1): judges (text hidden, duration) pairs.

Source: jaywalnut310/vits ``models.py``; p0p4k/vits2_pytorch ``models.DurationDiscriminator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nixdistill.nn.flows import ElementwiseAffine, Flip

from .modules import DDSConv, ConvFlow, LayerNorm, Log

#: Conditioner depth of the SDP's DDSConv stacks and ConvFlows (VITS).
SDP_CONV_LAYERS = 3
#: Number of posterior (dequantisation) flows in the SDP (VITS hard-codes 4).
SDP_POSTERIOR_FLOWS = 4
LOG_2PI = math.log(2 * math.pi)


class StochasticDurationPredictor(nn.Module):
    """Flow-based stochastic duration predictor (VITS).

    Like the original, the conditioner width equals ``in_channels`` (VITS ignores its
    ``filter_channels`` argument), so checkpoints load unchanged.

    Args:
        in_channels: text-encoder hidden channels.
        kernel_size: DDSConv kernel.
        p_dropout: DDSConv dropout.
        n_flows: ConvFlow layers in the main flow.
        gin_channels: speaker conditioning channels (0: none).
        posterior: build the training-only posterior flows (``post_*``); prior-only teachers
            (Piper) leave them out and cannot compute the training loss.
    """

    def __init__(self, in_channels: int, kernel_size: int, p_dropout: float, n_flows: int = 4,
                 gin_channels: int = 0, posterior: bool = True):
        super().__init__()
        filter_channels = in_channels
        self.posterior = posterior
        self.log_flow = Log()
        self.flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(n_flows):
            self.flows.append(ConvFlow(2, filter_channels, kernel_size, n_layers=SDP_CONV_LAYERS))
            self.flows.append(Flip())
        if posterior:
            self.post_pre = nn.Conv1d(1, filter_channels, 1)
            self.post_proj = nn.Conv1d(filter_channels, filter_channels, 1)
            self.post_convs = DDSConv(filter_channels, kernel_size, n_layers=SDP_CONV_LAYERS,
                                      p_dropout=p_dropout)
            self.post_flows = nn.ModuleList([ElementwiseAffine(2)])
            for _ in range(SDP_POSTERIOR_FLOWS):
                self.post_flows.append(ConvFlow(2, filter_channels, kernel_size,
                                                n_layers=SDP_CONV_LAYERS))
                self.post_flows.append(Flip())
        self.pre = nn.Conv1d(in_channels, filter_channels, 1)
        self.proj = nn.Conv1d(filter_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers=SDP_CONV_LAYERS,
                             p_dropout=p_dropout)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, filter_channels, 1)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, w: torch.Tensor | None = None,
                g: torch.Tensor | None = None, reverse: bool = False, noise_scale: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Training NLL bound (``reverse=False``) or sampled log durations (``reverse=True``).

        Args:
            x: text hidden states, [B, H, T_text] (gradients are stopped, as in VITS).
            x_mask: [B, 1, T_text].
            w: target durations in frames, [B, 1, T_text] (training only).
            g: speaker embedding [B, gin, 1] or None.
            noise_scale: std of the sampling noise (0: deterministic).
            generator: RNG for the noise.
        Returns:
            training: ``-log p(w)`` upper bound per item, [B] (nats, summed over tokens);
            reverse: ``logw`` [B, 1, T_text].
        Raises:
            RuntimeError: training mode without posterior flows or without ``w``.
        """
        x = self.pre(torch.detach(x))
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.convs(x, x_mask)
        x = self.proj(x) * x_mask

        if reverse:
            # reversed main flow, skipping the unused first ConvFlow (VITS "useless vflow")
            flows = list(reversed(self.flows))
            flows = flows[:-2] + [flows[-1]]
            shape = (x.size(0), 2, x.size(2))
            if noise_scale:
                z = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
                z = z * noise_scale
            else:
                z = torch.zeros(shape, device=x.device, dtype=x.dtype)
            for flow in flows:
                z, _ = flow(z, x_mask, g=x, reverse=True)
            return z[:, :1]

        if not self.posterior or w is None:
            raise RuntimeError("SDP training needs w and posterior flows (posterior=True)")
        # variational dequantisation: q(u, nu | w, x)
        h_w = self.post_proj(self.post_convs(self.post_pre(w), x_mask)) * x_mask
        e_q = torch.randn(w.size(0), 2, w.size(2), generator=generator, device=x.device,
                          dtype=x.dtype) * x_mask
        z_q = e_q
        logdet_tot_q = 0
        for flow in self.post_flows:
            z_q, logdet_q = flow(z_q, x_mask, g=x + h_w)
            logdet_tot_q = logdet_tot_q + logdet_q
        z_u, z1 = torch.split(z_q, [1, 1], 1)
        u = torch.sigmoid(z_u) * x_mask
        z0 = (w - u) * x_mask
        logdet_tot_q = logdet_tot_q + torch.sum(
            (F.logsigmoid(z_u) + F.logsigmoid(-z_u)) * x_mask, [1, 2])
        logq = torch.sum(-0.5 * (LOG_2PI + e_q**2) * x_mask, [1, 2]) - logdet_tot_q

        z0, logdet_tot = self.log_flow(z0, x_mask)
        z = torch.cat([z0, z1], 1)
        for flow in self.flows:
            z, logdet = flow(z, x_mask, g=x, reverse=False)
            logdet_tot = logdet_tot + logdet
        nll = torch.sum(0.5 * (LOG_2PI + z**2) * x_mask, [1, 2]) - logdet_tot
        return nll + logq


class DurationPredictor(nn.Module):
    """Deterministic duration predictor: two conv/ReLU/LayerNorm blocks -> ``logw``.

    Args:
        in_channels: text hidden channels.
        filter_channels: conv width.
        kernel_size: conv kernel.
        p_dropout: dropout.
        gin_channels: speaker conditioning channels (0: none).
    """

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int,
                 p_dropout: float, gin_channels: int = 0):
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size,
                                padding=kernel_size // 2)
        self.norm_1 = LayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size,
                                padding=kernel_size // 2)
        self.norm_2 = LayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor,
                g: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, H, T_text] (detached), x_mask: [B, 1, T_text] -> logw [B, 1, T_text]."""
        x = torch.detach(x)
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask


class DurationDiscriminator(nn.Module):
    """VITS2 duration discriminator (p0p4k/vits2_pytorch layout; optional, off by default).

    Args:
        in_channels: text hidden channels.
        filter_channels: conv width.
        kernel_size: conv kernel.
        p_dropout: dropout (kept for the layout; unused like the reference).
        gin_channels: accepted for symmetry; unused (as in the reference).
    """

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int,
                 p_dropout: float, gin_channels: int = 0):
        super().__init__()
        pad = kernel_size // 2
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=pad)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=pad)
        self.dur_proj = nn.Conv1d(1, filter_channels, 1)
        self.pre_out_conv_1 = nn.Conv1d(2 * filter_channels, filter_channels, kernel_size,
                                        padding=pad)
        self.pre_out_norm_1 = LayerNorm(filter_channels)
        self.pre_out_conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size,
                                        padding=pad)
        self.pre_out_norm_2 = LayerNorm(filter_channels)
        self.output_layer = nn.Sequential(nn.Linear(filter_channels, 1), nn.Sigmoid())

    def forward_probability(self, x: torch.Tensor, x_mask: torch.Tensor,
                            dur: torch.Tensor) -> torch.Tensor:
        """x: [B, F, T_text], dur: [B, 1, T_text] -> probability "real" [B, T_text, 1]."""
        x = torch.cat([x, self.dur_proj(dur)], dim=1)
        x = self.pre_out_conv_1(x * x_mask)
        x = self.pre_out_conv_2(x * x_mask) * x_mask
        return self.output_layer(x.transpose(1, 2))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, dur_r: torch.Tensor,
                dur_hat: torch.Tensor, g: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x: text hidden [B, H, T_text] (detached); dur_r/dur_hat: real and predicted log
        durations [B, 1, T_text] -> [p_real, p_fake], each [B, T_text, 1]."""
        x = torch.detach(x)
        x = self.conv_2(self.conv_1(x * x_mask) * x_mask)
        return [self.forward_probability(x, x_mask, d) for d in (dur_r, dur_hat)]
