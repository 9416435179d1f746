"""VITS / VITS2 synthesizer: the teacher model.

Sources: Kim et al. 2021, "Conditional Variational Autoencoder with Adversarial Learning for
End-to-End Text-to-Speech" (jaywalnut310/vits ``models.SynthesizerTrn``); Kong et al. 2023,
"VITS2" (p0p4k/vits2_pytorch): transformer flow couplings, noise-scaled MAS, speaker-conditioned
text encoder, mel posterior encoder, duration discriminator.

Submodules keep the original names (``enc_p``, ``enc_q``, ``flow``, ``dec``, ``dp``,
``emb_g``), so original checkpoints load after weight-norm key translation. Loading, file
formats and text live in :mod:`nixdistill.teacher.loader`; this module is pure ``torch.nn``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from nixdistill.nn import (durations_to_path, expand_by_durations, remove_weight_norm,
                           sequence_mask)

from .commons import rand_slice_segments
from .duration import DurationPredictor, StochasticDurationPredictor
from .encoders import PosteriorEncoder, TextEncoder
from .flows import FlowTransformerSpec, ResidualCouplingBlock
from .hifigan import Generator
from .vits_config import VITSConfig

#: Added to durations before the log in the duration targets (VITS ``logw_``).
DURATION_LOG_EPS = 1e-6
LOG_2PI = math.log(2 * math.pi)


class InferOutput(NamedTuple):
    """Output of :meth:`VITS.infer`.

    wav [B, 1, T_samples] (``T_samples = T_frames * hop``); w_ceil [B, 1, T_text] (frames per
    token, zero on padding); z, z_p, m_p, logs_p [B, inter, T_frames]; y_mask [B, 1, T_frames].
    The dense alignment is built only when asked for, by :attr:`attn`.
    """

    wav: torch.Tensor
    w_ceil: torch.Tensor
    z: torch.Tensor
    z_p: torch.Tensor
    m_p: torch.Tensor
    logs_p: torch.Tensor
    y_mask: torch.Tensor

    @property
    def attn(self) -> torch.Tensor:
        """Hard alignment from ``w_ceil``, 0/1 [B, 1, T_frames, T_text] (``O(T_frames * T_text)``
        memory: for plots and tests, not for long texts)."""
        mask = self.y_mask.squeeze(1).unsqueeze(-1).expand(-1, -1, self.w_ceil.size(-1))
        return durations_to_path(self.w_ceil.squeeze(1), mask).unsqueeze(1)


class PosteriorOutput(NamedTuple):
    """Output of :meth:`VITS.posterior`: z, m_q, logs_q [B, inter, T_frames]; y_mask [B, 1, T_frames]."""

    z: torch.Tensor
    m_q: torch.Tensor
    logs_q: torch.Tensor
    y_mask: torch.Tensor


class PriorLatents(NamedTuple):
    """Output of :meth:`VITS.prior_latents`.

    z [B, inter, T_frames] (``flow^-1`` of the expanded prior sample, zero on padding);
    w_ceil [B, T_text] int64 frames per token; y_mask [B, 1, T_frames];
    m_p, logs_p expanded to frames, [B, inter, T_frames].
    """

    z: torch.Tensor
    w_ceil: torch.Tensor
    y_mask: torch.Tensor
    m_p: torch.Tensor
    logs_p: torch.Tensor


class TrainOutput(NamedTuple):
    """Output of :meth:`VITS.forward` (one training step of the ``teach`` stage).

    y_hat: decoded segments [B, 1, segment_size * hop].
    l_length: duration loss per item, [B], divided by the batch's token count, so that
        ``l_length.sum()`` is the per-token duration loss (jaywalnut310/vits convention).
    attn: MAS alignment [B, 1, T_frames, T_text].
    ids_slice: start frame of each decoded segment, [B] int64 (multiply by hop for samples).
    x_mask [B, 1, T_text]; y_mask [B, 1, T_frames].
    z, z_p, m_q, logs_q: posterior latent, its flow image and statistics [B, inter, T_frames].
    m_p, logs_p: prior statistics expanded by ``attn``, [B, inter, T_frames].
    logw: predicted log durations [B, 1, T_text] (SDP: a sample; with gradients only when the
        duration discriminator is used); logw_: MAS log durations [B, 1, T_text].
    x: text-encoder hidden states [B, hidden, T_text] (duration-discriminator input).
    """

    y_hat: torch.Tensor
    l_length: torch.Tensor
    attn: torch.Tensor
    ids_slice: torch.Tensor
    x_mask: torch.Tensor
    y_mask: torch.Tensor
    z: torch.Tensor
    z_p: torch.Tensor
    m_p: torch.Tensor
    logs_p: torch.Tensor
    m_q: torch.Tensor
    logs_q: torch.Tensor
    logw: torch.Tensor
    logw_: torch.Tensor
    x: torch.Tensor


def _noise(shape, like: torch.Tensor, scale: float, generator: torch.Generator | None):
    """``scale * N(0, 1)`` of ``shape`` (zeros, and no RNG draw, when ``scale == 0``)."""
    if not scale:
        return torch.zeros(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype) * scale


class VITS(nn.Module):
    """VITS / VITS2 generator (everything but the discriminators).

    Args:
        config: :class:`VITSConfig`.
    """

    def __init__(self, config: VITSConfig):
        super().__init__()
        c = config
        self.config = c
        self.n_speakers = c.n_speakers
        self.segment_size = c.segment_size
        self.hop_length = c.hop_length
        gin = c.gin_channels if c.n_speakers > 1 else 0
        self.enc_gin_channels = gin if c.use_spk_conditioned_encoder else 0
        #: current noise-scaled-MAS scale; the trainer updates it (see :meth:`mas_noise_scale_at`).
        self.current_mas_noise_scale = c.mas_noise_scale_initial

        self.enc_p = TextEncoder(c.n_vocab, c.inter_channels, c.hidden_channels,
                                 c.filter_channels, c.n_heads, c.n_layers, c.kernel_size,
                                 c.p_dropout, gin_channels=self.enc_gin_channels,
                                 cond_layer_idx=c.spk_cond_layer_idx)
        self.dec = Generator(c.inter_channels, c.resblock, c.resblock_kernel_sizes,
                             c.resblock_dilation_sizes, c.upsample_rates,
                             c.upsample_initial_channel, c.upsample_kernel_sizes,
                             gin_channels=gin)
        self.enc_q = (PosteriorEncoder(c.spec_channels, c.inter_channels, c.hidden_channels,
                                       c.posterior_kernel_size, c.posterior_dilation_rate,
                                       c.posterior_n_layers, gin_channels=gin)
                      if c.has_posterior else None)
        spec = FlowTransformerSpec(c.flow_transformer_n_heads, c.flow_transformer_n_layers,
                                   c.flow_transformer_kernel_size, c.flow_transformer_p_dropout)
        self.flow = ResidualCouplingBlock(c.inter_channels, c.hidden_channels, c.flow_kernel_size,
                                          c.flow_dilation_rate, c.flow_n_layers,
                                          n_flows=c.flow_n_flows, gin_channels=gin,
                                          use_transformer=c.use_transformer_flow,
                                          transformer=spec)
        if c.use_sdp:
            self.dp = StochasticDurationPredictor(c.hidden_channels, c.sdp_kernel_size,
                                                  c.sdp_p_dropout, c.sdp_n_flows,
                                                  gin_channels=gin, posterior=c.has_posterior)
        else:
            self.dp = DurationPredictor(c.hidden_channels, c.dp_filter_channels,
                                        c.dp_kernel_size, c.dp_p_dropout, gin_channels=gin)
        self.emb_g = nn.Embedding(c.n_speakers, gin) if c.n_speakers > 1 else None

    # ------------------------------------------------------------------ helpers
    def speaker_embedding(self, sid: torch.Tensor | None) -> torch.Tensor | None:
        """Speaker vector ``g`` [B, gin, 1] from ids [B]; None for single-speaker models.

        Raises:
            ValueError: a multi-speaker model called without ``sid``.
        """
        if self.emb_g is None:
            return None
        if sid is None:
            raise ValueError(f"this teacher has {self.n_speakers} speakers: pass sid")
        return self.emb_g(sid).unsqueeze(-1)

    def mas_noise_scale_at(self, step: int) -> float:
        """Noise-scaled-MAS scale after ``step`` optimiser steps: ``max(initial - delta*step, 0)``."""
        c = self.config
        return max(c.mas_noise_scale_initial - c.mas_noise_scale_delta * step, 0.0)

    def remove_weight_norm(self) -> None:
        """Fold weight norm of ``dec``, ``flow`` and ``enc_q`` into plain weights (inference)."""
        remove_weight_norm(self)

    def _encode_text(self, x, x_lengths, g):
        return self.enc_p(x, x_lengths, g=g if self.enc_gin_channels else None)

    def _expand_prior(self, x, x_lengths, g, noise_scale, length_scale, noise_scale_w,
                      w_ceil, generator, max_frames=None):
        """Text -> durations -> frame-level prior sample. Returns a dict of tensors."""
        h, m_p, logs_p, x_mask = self._encode_text(x, x_lengths, g)
        if w_ceil is None:
            if isinstance(self.dp, StochasticDurationPredictor):
                logw = self.dp(h, x_mask, g=g, reverse=True, noise_scale=noise_scale_w,
                               generator=generator)
            else:
                logw = self.dp(h, x_mask, g=g)
            w = torch.exp(logw) * x_mask * length_scale
            w_ceil = torch.ceil(w)
        else:
            w_ceil = w_ceil.to(device=x_mask.device, dtype=x_mask.dtype)
            if w_ceil.dim() == 2:
                w_ceil = w_ceil.unsqueeze(1)
            if w_ceil.shape != x_mask.shape:
                raise ValueError(f"w_ceil has shape {tuple(w_ceil.shape)}, expected "
                                 f"{tuple(x_mask.shape[::2])} or {tuple(x_mask.shape)}")
            w_ceil = w_ceil * x_mask
        y_lengths = torch.clamp_min(torch.sum(w_ceil, [1, 2]), 1).long()
        t_frames = int(y_lengths.max())
        if max_frames is not None:
            t_frames = min(t_frames, max_frames)
            y_lengths = torch.clamp_max(y_lengths, t_frames)
        y_mask = sequence_mask(y_lengths, t_frames).unsqueeze(1).to(x_mask.dtype)
        # gather each frame's token (O(T_frames) memory, no [T_frames, T_text] path matrix):
        # [b, d, t_x] -> [b, d, t_y]
        m_p = expand_by_durations(m_p, w_ceil, t_frames)
        logs_p = expand_by_durations(logs_p, w_ceil, t_frames)
        z_p = m_p + _noise(m_p.shape, m_p, noise_scale, generator) * torch.exp(logs_p)
        z = self.flow(z_p, y_mask, g=g, reverse=True) * y_mask
        return dict(z=z, z_p=z_p, m_p=m_p, logs_p=logs_p, y_mask=y_mask, w_ceil=w_ceil)

    # ------------------------------------------------------------------ inference API
    @torch.no_grad()
    def infer(self, x: torch.Tensor, x_lengths: torch.Tensor, sid: torch.Tensor | None = None,
              noise_scale: float = 0.667, length_scale: float = 1.0,
              noise_scale_w: float = 0.8, w_ceil: torch.Tensor | None = None,
              max_frames: int | None = None,
              generator: torch.Generator | None = None) -> InferOutput:
        """Text to waveform (VITS inference).

        Args:
            x: token ids, [B, T_text] int64; x_lengths: tokens, [B].
            sid: speaker ids [B] (multi-speaker models only).
            noise_scale: std multiplier of the prior sample (0: its mean).
            length_scale: multiplies predicted durations (> 1 is slower speech).
            noise_scale_w: SDP noise (0: deterministic durations).
            w_ceil: given frames per token, [B, T_text] or [B, 1, T_text]; skips ``dp`` and
                ``length_scale``.
            max_frames: optional cap on ``T_frames``.
            generator: RNG for all noise.
        Returns:
            :class:`InferOutput`; frames past ``y_mask`` decode silence-ish padding.
        """
        g = self.speaker_embedding(sid)
        p = self._expand_prior(x, x_lengths, g, noise_scale, length_scale, noise_scale_w,
                               w_ceil, generator, max_frames)
        wav = self.dec(p["z"], g=g)
        return InferOutput(wav, p["w_ceil"], p["z"], p["z_p"], p["m_p"], p["logs_p"],
                           p["y_mask"])

    @torch.no_grad()
    def prior_latents(self, x: torch.Tensor, x_lengths: torch.Tensor,
                      sid: torch.Tensor | None = None, noise_scale: float = 0.667,
                      length_scale: float = 1.0, noise_scale_w: float = 0.8,
                      w_ceil: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> PriorLatents:
        """Latent ``z = flow^-1(m_p + eps * exp(logs_p) * noise_scale)`` from text only.

        Args: as :meth:`infer`. ``w_ceil`` given (e.g. teacher durations) is used as is and
        returned.
        Returns:
            :class:`PriorLatents` with ``w_ceil`` as int64 [B, T_text].
        """
        g = self.speaker_embedding(sid)
        p = self._expand_prior(x, x_lengths, g, noise_scale, length_scale, noise_scale_w,
                               w_ceil, generator)
        return PriorLatents(p["z"], p["w_ceil"].squeeze(1).long(), p["y_mask"], p["m_p"],
                            p["logs_p"])

    @torch.no_grad()
    def posterior(self, y: torch.Tensor, y_lengths: torch.Tensor,
                  sid: torch.Tensor | None = None, noise_scale: float = 1.0,
                  generator: torch.Generator | None = None) -> PosteriorOutput:
        """Posterior latent ``z ~ q(z | y)`` from audio features.

        Args:
            y: linear spectrogram [B, n_fft//2+1, T_frames] or, with
                ``use_mel_posterior_encoder``, mel [B, n_mels, T_frames].
            y_lengths: frames, [B].
            sid: speaker ids [B] or None.
            noise_scale: multiplies the posterior sampling noise (0: ``z = m_q``).
            generator: RNG.
        Raises:
            RuntimeError: prior-only teacher (no ``enc_q``).
        """
        if self.enc_q is None:
            raise RuntimeError("this teacher has no posterior encoder (enc_q); use prior latents")
        g = self.speaker_embedding(sid)
        z, m_q, logs_q, y_mask = self.enc_q(y, y_lengths, g=g, noise_scale=noise_scale,
                                            generator=generator)
        return PosteriorOutput(z, m_q, logs_q, y_mask)

    def decode(self, z: torch.Tensor, sid: torch.Tensor | None = None) -> torch.Tensor:
        """Latent frames to waveform: z [B, inter, T_frames] -> wav [B, 1, T_frames * hop]."""
        return self.dec(z, g=self.speaker_embedding(sid))

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, y: torch.Tensor,
                y_lengths: torch.Tensor, sid: torch.Tensor | None = None) -> TrainOutput:
        """One VITS training forward: posterior, flow, MAS, duration loss, decoded segment.

        Args:
            x: token ids [B, T_text]; x_lengths: [B].
            y: spectrogram [B, spec_channels, T_frames]; y_lengths: frames [B].
            sid: speaker ids [B] or None.
        Returns:
            :class:`TrainOutput`.
        Raises:
            RuntimeError: prior-only teacher.
            nixdistill.monotonic_align.AlignmentError: an item with ``T_text > T_frames``.
        """
        from nixdistill.monotonic_align import maximum_path

        if self.enc_q is None:
            raise RuntimeError("a prior-only teacher (no enc_q) cannot be trained")
        g = self.speaker_embedding(sid)
        h, m_p, logs_p, x_mask = self._encode_text(x, x_lengths, g)
        z, m_q, logs_q, y_mask = self.enc_q(y, y_lengths, g=g)
        z_p = self.flow(z, y_mask, g=g)

        with torch.no_grad():
            # log N(z_p; m_p, exp(logs_p)) summed over channels, for every (frame, token)
            s_p_sq_r = torch.exp(-2 * logs_p)  # [b, d, t_x]
            neg_cent1 = torch.sum(-0.5 * LOG_2PI - logs_p, [1], keepdim=True)  # [b, 1, t_x]
            # [b, t_y, d] x [b, d, t_x] = [b, t_y, t_x]
            neg_cent2 = torch.matmul(-0.5 * (z_p**2).transpose(1, 2), s_p_sq_r)
            neg_cent3 = torch.matmul(z_p.transpose(1, 2), m_p * s_p_sq_r)
            neg_cent4 = torch.sum(-0.5 * (m_p**2) * s_p_sq_r, [1], keepdim=True)  # [b, 1, t_x]
            neg_cent = neg_cent1 + neg_cent2 + neg_cent3 + neg_cent4
            if self.config.use_noise_scaled_mas and self.current_mas_noise_scale > 0:
                neg_cent = neg_cent + (torch.std(neg_cent) * torch.randn_like(neg_cent)
                                       * self.current_mas_noise_scale)
            attn_mask = x_mask.unsqueeze(2) * y_mask.unsqueeze(-1)  # [b, 1, t_y, t_x]
            attn = maximum_path(neg_cent, attn_mask.squeeze(1)).unsqueeze(1).detach()

        w = attn.sum(2)  # [b, 1, t_x] frames per token
        logw_ = torch.log(w + DURATION_LOG_EPS) * x_mask
        n_tokens = torch.sum(x_mask)
        if isinstance(self.dp, StochasticDurationPredictor):
            l_length = self.dp(h, x_mask, w, g=g) / n_tokens
            with torch.set_grad_enabled(torch.is_grad_enabled()
                                        and self.config.use_duration_discriminator):
                logw = self.dp(h, x_mask, g=g, reverse=True, noise_scale=1.0)
        else:
            logw = self.dp(h, x_mask, g=g)
            l_length = torch.sum((logw - logw_) ** 2, [1, 2]) / n_tokens

        # expand the prior to frames: [b, t_y, t_x] x [b, t_x, d] = [b, t_y, d]
        m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)

        z_slice, ids_slice = rand_slice_segments(z, y_lengths, self.segment_size)
        y_hat = self.dec(z_slice, g=g)
        return TrainOutput(y_hat, l_length, attn, ids_slice, x_mask, y_mask, z, z_p, m_p,
                           logs_p, m_q, logs_q, logw, logw_, h)
