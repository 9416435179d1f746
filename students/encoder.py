"""Nix-TTS student encoder: text -> latent ``z`` in the teacher's posterior space.

Chevi et al. 2022, "Nix-TTS" (arXiv 2203.15643), section 3: the encoder replaces the VITS
prior path (transformer text encoder, duration predictor, flow) with

- a **text encoder**: embedding + depthwise-separable dilated convolutions;
- an **aligner** (training only, :mod:`nixdistill.students.aligner`) that learns its own
  text-frame alignment (Badlani et al. 2022);
- a **duration predictor**: deterministic (the paper's 5.23M variant) or a compact stochastic,
  flow-based one (the 6.03M variant);
- a **latent encoder**: the text features expanded to frames by durations, then
  depthwise-separable convolutions -> ``(m_s, logs_s)`` and ``z_s = m_s + ε·exp(logs_s)``.

During distillation ``z_s`` is matched to the teacher's latent ``z`` (posterior or prior
sample), so the teacher's (or the student's) decoder turns it into audio.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from nixdistill.errors import ConfigError
from nixdistill.nn import expand_by_durations, sequence_mask

from .aligner import Aligner
from .duration import DurationPredictor, StochasticDurationPredictor, round_durations
from .layers import DSConvStack

__all__ = [
    "NixEncoderConfig",
    "EncoderTrainOutput",
    "EncoderOutput",
    "NixEncoder",
    "DurationPredictor",
    "StochasticDurationPredictor",
    "LatentEncoder",
    "round_durations",
]

DURATION_PREDICTORS = ("deterministic", "stochastic")


@dataclass
class NixEncoderConfig:
    """Hyperparameters of :class:`NixEncoder` (the ``model`` section of an encoder config).

    ``n_vocab``, ``n_mels``, ``inter_channels`` and ``n_speakers`` are normally filled in by the
    distillation stage from the text frontend, the audio config and the teacher.

    Attributes:
        n_vocab: number of token ids.
        inter_channels: latent channels; must equal the teacher's ``inter_channels``.
        hidden_channels: width of the text and latent encoders.
        filter_channels: bottleneck width of every depthwise-separable block.
        kernel_size: depthwise kernel width (odd), in tokens or frames.
        text_dilations: one dilation per text-encoder block.
        latent_dilations: one dilation per latent-encoder block.
        dropout: dropout probability in the encoders.
        duration_predictor: ``"deterministic"`` or ``"stochastic"``.
        dp_channels / dp_filter_channels / dp_kernel_size / dp_dilations / dp_dropout: the
            duration predictor's width, bottleneck, kernel, per-block dilations and dropout.
        sdp_flows: coupling layers of the stochastic duration predictor.
        sdp_flow_dilations: per-block dilations inside each coupling network.
        n_mels: mel bands of the aligner queries.
        attention_channels: aligner key/query width.
        aligner_temperature: scale of the aligner's squared distance (RAD-TTS: 0.0005).
        prior_scaling: beta-binomial prior sharpness (0 disables the prior).
        n_speakers: speakers (<= 1: single-speaker, no embedding).
        gin_channels: speaker-embedding width (required when ``n_speakers > 1``).
        noise_scale: default std multiplier of ``z`` at inference.
        noise_scale_w: default noise multiplier of the stochastic duration predictor.
        length_scale: default duration multiplier at inference (> 1 is slower speech).
    """

    n_vocab: int = 0
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 512
    kernel_size: int = 5
    text_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 1, 2, 4])
    latent_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 1, 2])
    dropout: float = 0.1
    duration_predictor: str = "deterministic"
    dp_channels: int = 192
    dp_filter_channels: int = 256
    dp_kernel_size: int = 3
    dp_dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    dp_dropout: float = 0.5
    sdp_flows: int = 4
    sdp_flow_dilations: list[int] = field(default_factory=lambda: [1, 2])
    n_mels: int = 80
    attention_channels: int = 80
    aligner_temperature: float = 0.0005
    prior_scaling: float = 1.0
    n_speakers: int = 0
    gin_channels: int = 0
    noise_scale: float = 0.667
    noise_scale_w: float = 0.8
    length_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.n_vocab <= 0:
            raise ConfigError(f"encoder n_vocab must be positive, got {self.n_vocab}")
        if self.duration_predictor not in DURATION_PREDICTORS:
            raise ConfigError(
                f"encoder duration_predictor must be one of {DURATION_PREDICTORS}, "
                f"got {self.duration_predictor!r}"
            )
        for name in ("kernel_size", "dp_kernel_size"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"encoder {name} must be odd, got {getattr(self, name)}")
        for name in ("text_dilations", "latent_dilations", "dp_dilations", "sdp_flow_dilations"):
            vals = getattr(self, name)
            if not vals or any(int(d) < 1 for d in vals):
                raise ConfigError(f"encoder {name} must be a non-empty list of ints >= 1, got {vals}")
        if self.n_speakers > 1 and self.gin_channels <= 0:
            raise ConfigError(
                f"encoder has n_speakers={self.n_speakers} but gin_channels={self.gin_channels}; "
                "set gin_channels > 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; ``NixEncoderConfig(**d)`` rebuilds it."""
        return asdict(self)


class EncoderTrainOutput(NamedTuple):
    """Training-time outputs of :meth:`NixEncoder.forward`.

    m_s, logs_s, z_s: student latent mean, log-std and sample, [B, inter, T_frames].
    attn_soft, attn_hard, attn_logprob: aligner outputs, [B, 1, T_frames, T_text] (None when
        the aligner was skipped, ``align=False``).
    logw: predicted log durations, [B, 1, T_text] (stochastic: a detached sample).
    logw_target: log of ``w_target``, [B, 1, T_text].
    x_mask: [B, 1, T_text]; y_mask: [B, 1, T_frames].
    dur_nll: stochastic predictor only: summed NLL per item, [B]; else None.
    w_target: frames per token the latents were expanded with and the duration predictor was
        trained on, [B, 1, T_text]: the given durations (e.g. the teacher's) or else the
        aligner's.
    w_align: frames per token of the aligner's hard (MAS) alignment, [B, 1, T_text] (None
        when the aligner was skipped).
    """

    m_s: torch.Tensor
    logs_s: torch.Tensor
    z_s: torch.Tensor
    attn_soft: torch.Tensor | None
    attn_hard: torch.Tensor | None
    attn_logprob: torch.Tensor | None
    logw: torch.Tensor
    logw_target: torch.Tensor
    x_mask: torch.Tensor
    y_mask: torch.Tensor
    dur_nll: torch.Tensor | None = None
    w_target: torch.Tensor | None = None
    w_align: torch.Tensor | None = None


class EncoderOutput(NamedTuple):
    """Inference outputs of :meth:`NixEncoder.infer`.

    z: latent, [B, inter, T_frames] (zero on padded frames).
    w_ceil: frames per token, [B, T_text], int64.
    y_mask: [B, 1, T_frames].
    """

    z: torch.Tensor
    w_ceil: torch.Tensor
    y_mask: torch.Tensor


class LatentEncoder(nn.Module):
    """Frame-rate DS-conv stack: expanded text features -> ``(m_s, logs_s)``.

    Args:
        hidden_channels / filter_channels / kernel_size / dilations / dropout: the conv stack.
        inter_channels: latent channels.
        gin_channels: speaker conditioning width (0: none).
    """

    def __init__(
        self, hidden_channels: int, filter_channels: int, kernel_size: int, dilations: list[int],
        dropout: float, inter_channels: int, gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.stack = DSConvStack(hidden_channels, filter_channels, kernel_size, dilations, dropout,
                                 gin_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * inter_channels, 1)

    def forward(
        self, h_frames: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_frames: [B, hidden, T_frames]; y_mask [B, 1, T_frames] -> m_s, logs_s [B, inter, T_frames]."""
        stats = self.proj(self.stack(h_frames, y_mask, g)) * y_mask
        m_s, logs_s = stats.chunk(2, dim=1)
        return m_s, logs_s


class NixEncoder(nn.Module):
    """The Nix-TTS student encoder.

    Args:
        config: :class:`NixEncoderConfig`.
        with_aligner: build the training-only aligner (``False`` for an exported, inference-only
            model; then :meth:`forward` is unavailable).
    """

    def __init__(self, config: NixEncoderConfig, with_aligner: bool = True) -> None:
        super().__init__()
        self.config = c = config
        self.emb = nn.Embedding(c.n_vocab, c.hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, c.hidden_channels ** -0.5)
        self.text_encoder = DSConvStack(
            c.hidden_channels, c.filter_channels, c.kernel_size, c.text_dilations, c.dropout
        )
        gin = c.gin_channels if c.n_speakers > 1 else 0
        self.emb_g = nn.Embedding(c.n_speakers, gin) if gin else None
        if c.duration_predictor == "deterministic":
            self.dp: nn.Module = DurationPredictor(
                c.hidden_channels, c.dp_channels, c.dp_filter_channels, c.dp_kernel_size,
                c.dp_dilations, c.dp_dropout, gin,
            )
        else:
            self.dp = StochasticDurationPredictor(
                c.hidden_channels, c.dp_channels, c.dp_filter_channels, c.dp_kernel_size,
                c.dp_dilations, c.dp_dropout, c.sdp_flows, c.sdp_flow_dilations, gin,
            )
        self.latent_encoder = LatentEncoder(
            c.hidden_channels, c.filter_channels, c.kernel_size, c.latent_dilations, c.dropout,
            c.inter_channels, gin,
        )
        self.aligner = (
            Aligner(c.hidden_channels, c.n_mels, c.attention_channels, c.aligner_temperature,
                    c.prior_scaling)
            if with_aligner else None
        )

    @property
    def stochastic(self) -> bool:
        return self.config.duration_predictor == "stochastic"

    # -- pieces ---------------------------------------------------------------------------
    def speaker_embedding(self, sid: torch.Tensor | None, batch: int,
                          device: torch.device) -> torch.Tensor | None:
        """The speaker embedding ``g`` [B, gin_channels, 1] of ids ``sid`` [B]; None for a
        single-speaker encoder.

        Raises:
            ValueError: a multi-speaker encoder and no ``sid``.
        """
        if self.emb_g is None:
            return None
        if sid is None:
            raise ValueError(f"this encoder has {self.config.n_speakers} speakers; pass sid [B]")
        return self.emb_g(sid.to(device).view(batch)).unsqueeze(-1)  # [B, gin, 1]

    def encode_text(
        self, x: torch.Tensor, x_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T_text] ids, x_lengths [B] -> (emb, h) [B, hidden, T_text] and x_mask [B, 1, T_text]."""
        x_mask = sequence_mask(x_lengths, x.shape[1]).unsqueeze(1).to(self.emb.weight.dtype)
        emb = self.emb(x).transpose(1, 2) * math.sqrt(self.config.hidden_channels) * x_mask
        h = self.text_encoder(emb, x_mask)
        return emb, h, x_mask

    # -- training -------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, x_lengths: torch.Tensor, mel: torch.Tensor | None,
        y_lengths: torch.Tensor, sid: torch.Tensor | None = None, noise_scale: float = 1.0,
        w_target: torch.Tensor | None = None, align: bool = True,
    ) -> EncoderTrainOutput:
        """Training pass: the aligner runs unless ``align`` is False; latents follow
        ``w_target`` when given.

        Args:
            x: token ids, [B, T_text], int64. x_lengths: [B].
            mel: log-mel frames (aligner queries), [B, n_mels, T_frames]; may be ``None``
                without ``align`` (text-only teacher latents). y_lengths: frames [B].
            sid: speaker ids [B] (multi-speaker only).
            noise_scale: std multiplier of the ``z_s`` sample.
            w_target: known frames per token, [B, T_text] or [B, 1, T_text] (with prior latents:
                the teacher's own ``w_ceil``, which expanded its ``z``). The latents are expanded
                and the duration predictor is trained with them; ``None`` uses the aligner's hard
                (MAS) durations (posterior latents).
        Returns:
            :class:`EncoderTrainOutput`; ``T_frames`` is that of ``mel`` (without ``mel``: the
            longest of ``y_lengths``).
        Raises:
            RuntimeError: ``align`` and built with ``with_aligner=False``.
            ValueError: ``w_target`` does not sum to ``y_lengths``, ``align`` is False
                without ``w_target``, or ``align`` without ``mel``.
            nixdistill.monotonic_align.AlignmentError: an item has more tokens than frames.
        """
        if align and self.aligner is None:
            raise RuntimeError("this NixEncoder was built without its aligner (inference only)")
        if w_target is not None and not torch.equal(
                w_target.reshape(x.shape[0], -1).sum(1).long(), y_lengths.long()):
            raise ValueError("w_target must sum to y_lengths for every item")
        if not align and w_target is None:
            raise ValueError("align=False needs w_target (known durations)")
        if align and mel is None:
            raise ValueError("align=True needs mel (the aligner's queries)")
        t_frames = mel.shape[2] if mel is not None else int(y_lengths.max())
        emb, h, x_mask = self.encode_text(x, x_lengths)
        y_mask = sequence_mask(y_lengths, t_frames).unsqueeze(1).to(h.dtype)
        g = self.speaker_embedding(sid, x.shape[0], x.device)
        attn_soft = attn_hard = attn_logprob = w_align = None
        if align:
            aligned = self.aligner(emb, mel, x_mask, y_mask, x_lengths, y_lengths)
            attn_soft, attn_logprob = aligned.attn_soft, aligned.attn_logprob
            attn_hard = aligned.attn_hard  # [B, 1, T_frames, T_text]
            w_align = attn_hard.sum(2)  # [B, 1, T_text]
        if w_target is None:
            w = w_align
            h_frames = torch.bmm(h, attn_hard.squeeze(1).transpose(1, 2))  # [B, hidden, T_frames]
        else:
            w = w_target.reshape(x.shape[0], 1, -1).to(h.dtype) * x_mask
            h_frames = expand_by_durations(h, w, t_frames)
        logw_target = torch.log(w.clamp(min=1)) * x_mask
        h_dp = h.detach()
        g_dp = None if g is None else g.detach()
        if self.stochastic:
            dur_nll = self.dp.nll(h_dp, x_mask, w, g_dp)
            with torch.no_grad():
                logw = self.dp(h_dp, x_mask, g_dp, self.config.noise_scale_w)
        else:
            dur_nll = None
            logw = self.dp(h_dp, x_mask, g_dp)
        m_s, logs_s = self.latent_encoder(h_frames * y_mask, y_mask, g)
        z_s = (m_s + torch.randn_like(m_s) * torch.exp(logs_s) * noise_scale) * y_mask
        return EncoderTrainOutput(
            m_s, logs_s, z_s, attn_soft, attn_hard, attn_logprob, logw, logw_target,
            x_mask, y_mask, dur_nll, w, w_align,
        )

    # -- inference ------------------------------------------------------------------------
    def predict_durations(
        self, h: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None,
        length_scale: float | torch.Tensor = 1.0, noise_scale_w: float | torch.Tensor = 0.8,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Integer frames per token from text features (:func:`round_durations`).

        Args:
            h: text features, [B, hidden, T_text]; x_mask: [B, 1, T_text].
            g: speaker embedding [B, gin, 1] or None.
            length_scale: duration multiplier (> 1 is slower speech).
            noise_scale_w: stochastic predictor noise (ignored by the deterministic one).
            generator: RNG of the stochastic predictor.
        Returns:
            w: frames per token, [B, T_text], float with whole values.
        """
        if self.stochastic:
            logw = self.dp(h, x_mask, g, noise_scale_w, generator)
        else:
            logw = self.dp(h, x_mask, g)
        return round_durations(torch.exp(logw) * length_scale, x_mask).squeeze(1)

    @torch.no_grad()
    def infer(
        self, x: torch.Tensor, x_lengths: torch.Tensor, sid: torch.Tensor | None = None,
        noise_scale: float | torch.Tensor | None = None,
        length_scale: float | torch.Tensor | None = None,
        w_ceil: torch.Tensor | None = None, noise_scale_w: float | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> EncoderOutput:
        """Text -> latent, from ids only.

        Args:
            x: token ids, [B, T_text], int64. x_lengths: [B].
            sid: speaker ids [B] (multi-speaker only).
            noise_scale: std multiplier of ``z`` (default ``config.noise_scale``).
            length_scale: duration multiplier (default ``config.length_scale``).
            w_ceil: frames per token, [B, T_text] or [B, 1, T_text]; when given it replaces the
                predicted durations (e.g. the teacher's, for aligned comparisons).
            noise_scale_w: stochastic predictor noise (default ``config.noise_scale_w``).
            generator: RNG for the noise (reproducible synthesis).
        Returns:
            :class:`EncoderOutput` (z [B, inter, T_frames], w_ceil [B, T_text] int64, y_mask).
            Durations are rounded so that the expected length is unbiased
            (:func:`round_durations`); the expansion is an index gather
            (:func:`nixdistill.nn.expand_by_durations`).
        """
        c = self.config
        noise_scale = c.noise_scale if noise_scale is None else noise_scale
        length_scale = c.length_scale if length_scale is None else length_scale
        noise_scale_w = c.noise_scale_w if noise_scale_w is None else noise_scale_w
        _, h, x_mask = self.encode_text(x, x_lengths)
        g = self.speaker_embedding(sid, x.shape[0], x.device)
        if w_ceil is None:
            w = self.predict_durations(h, x_mask, g, length_scale, noise_scale_w, generator)
        else:
            w = w_ceil.reshape(x.shape[0], -1).to(h.dtype) * x_mask.squeeze(1)
        if not torch.onnx.is_in_onnx_export() and not bool((w.sum(1) > 0).all()):
            w = w.clone()  # an empty utterance still gets one frame
            w[:, 0] = torch.where(w.sum(1) > 0, w[:, 0], torch.ones_like(w[:, 0]))
        y_lengths = w.sum(1).long()
        h_frames = expand_by_durations(h, w, y_lengths.max())
        y_mask = sequence_mask(y_lengths, h_frames.shape[2]).unsqueeze(1).to(h.dtype)
        m_s, logs_s = self.latent_encoder(h_frames, y_mask, g)
        if generator is None:
            eps = torch.randn_like(m_s)
        else:
            eps = torch.randn(m_s.shape, device=m_s.device, dtype=m_s.dtype, generator=generator)
        z = (m_s + eps * torch.exp(logs_s) * noise_scale) * y_mask
        return EncoderOutput(z, w.long(), y_mask)

    # -- export helpers -------------------------------------------------------------------
    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the training-only aligner (what export saves)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("aligner.")}

    def n_inference_params(self) -> int:
        """Parameters used at inference (everything but the aligner)."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("aligner."))
