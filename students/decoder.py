"""Student decoders: latent ``z`` (frame rate) -> waveform.

Two interchangeable decoders, both ``forward(z [B, inter_channels, T_frames], g=None) ->
wav [B, 1, T_frames * hop_length]``:

* ``nix``   -- :class:`NixDecoder`, the Nix-TTS decoder (Chevi et al., SLT 2022,
  arXiv 2203.15643): a HiFi-GAN generator (jik876/hifi-gan, V1 layout) whose dilated residual
  convolutions are depthwise-separable. Transposed-convolution upsampling to audio rate, so
  most of its work runs at the sample rate.
* ``istft`` -- :class:`ISTFTDecoder`, a Vocos-style decoder (gemelo-ai/vocos): ConvNeXt blocks
  at frame rate and a Fourier head predicting log-magnitude and phase, inverted by an iSTFT
  (``irfft`` + strided overlap-add in PyTorch, an inverse-DFT matmul under ONNX export; see
  :class:`InverseSTFT`).

The hop length is the teacher's (``audio.hop_length``) and is checked at construction:
``prod(upsample_rates)`` for ``nix``; the iSTFT hop for ``istft``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from nixdistill.errors import ConfigError
from nixdistill.nn import (ResBlock1, check_upsampling, folded_state_dict, from_dict, get_padding,
                           hifigan_upsample, remove_weight_norm)

from .layers import DepthwiseSeparableConv1d

ISTFT_PADDINGS = ("same", "center")

__all__ = [
    "DECODER_KINDS",
    "NixDecoderConfig",
    "ISTFTDecoderConfig",
    "NixDecoder",
    "ISTFTDecoder",
    "InverseSTFT",
    "decoder_config_from_dict",
    "build_decoder",
    "remove_weight_norm",
    "folded_state_dict",
]


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@dataclass
class NixDecoderConfig:
    """Nix-TTS decoder (HiFi-GAN generator with depthwise-separable residual blocks).

    Attributes:
        kind: ``"nix"`` (names this config in JSON: ``{"kind": "nix", ...}``).
        inter_channels: channels of the latent ``z`` (the teacher's ``inter_channels``).
        gin_channels: speaker-embedding channels of ``g`` (0: single speaker).
        upsample_initial_channel: channels after the pre-convolution; halved at every
            upsampling stage.
        upsample_rates: per-stage upsampling factors; their product must equal the teacher's
            ``hop_length`` (samples per latent frame).
        upsample_kernel_sizes: transposed-convolution kernels; ``k - rate`` must be even and
            non-negative so that each stage multiplies the length exactly by ``rate``.
        resblock_kernel_sizes: kernel of each parallel residual block (outputs are averaged).
        resblock_dilation_sizes: dilations of each residual block, one list per kernel.
        pre_kernel_size / post_kernel_size: kernels of the first and last convolutions.
        leaky_relu_slope: negative slope of the LeakyReLUs inside the network.
    """

    kind: str = "nix"
    inter_channels: int = 192
    gin_channels: int = 0
    upsample_initial_channel: int = 256
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )
    pre_kernel_size: int = 7
    post_kernel_size: int = 7
    leaky_relu_slope: float = 0.1

    def __post_init__(self) -> None:
        if self.kind != "nix":
            raise ConfigError(f"decoder: a NixDecoderConfig has kind 'nix', got {self.kind!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(
                f"decoder: upsample_rates {self.upsample_rates} and upsample_kernel_sizes "
                f"{self.upsample_kernel_sizes} must have the same length"
            )
        for rate, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if k < rate or (k - rate) % 2:
                raise ConfigError(
                    f"decoder: upsample kernel {k} for rate {rate} must be >= rate with an even "
                    "difference, so each stage multiplies the length exactly by its rate"
                )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(
                "decoder: resblock_kernel_sizes and resblock_dilation_sizes must have the same "
                "length"
            )
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ConfigError(
                f"decoder: upsample_initial_channel ({self.upsample_initial_channel}) must be "
                f"divisible by 2**{len(self.upsample_rates)} (it is halved at every stage)"
            )
        for k in (self.pre_kernel_size, self.post_kernel_size, *self.resblock_kernel_sizes):
            if k % 2 == 0:
                raise ConfigError(f"decoder: kernel sizes must be odd, got {k}")

    @property
    def hop_length(self) -> int:
        """Samples per latent frame, ``prod(upsample_rates)``."""
        return math.prod(self.upsample_rates)


@dataclass
class ISTFTDecoderConfig:
    """Vocos-style decoder: ConvNeXt backbone at frame rate + iSTFT Fourier head.

    Attributes:
        kind: ``"istft"`` (names this config in JSON: ``{"kind": "istft", ...}``).
        inter_channels: channels of the latent ``z``.
        gin_channels: speaker-embedding channels of ``g`` (0: single speaker).
        dim: backbone channels.
        intermediate_dim: hidden width of each ConvNeXt pointwise MLP.
        n_layers: ConvNeXt blocks.
        kernel_size: depthwise kernel of each block and of the input embedding (odd).
        layer_scale_init: initial layer-scale value; ``None`` uses ``1 / n_layers`` (Vocos).
        n_fft: iSTFT size in samples; ``None`` uses ``4 * hop_length / frames_per_latent``.
            Must be even and at least twice the iSTFT hop (Hann window, no NOLA gaps).
        max_magnitude: the predicted linear magnitude is clipped at this value (Vocos: 100).
        layer_norm_eps: LayerNorm epsilon.
        padding: iSTFT frame convention, ``"same"`` (frame ``t`` centred on sample
            ``t * hop + hop / 2``, like the teacher; Vocos) or ``"center"`` (centred on
            ``t * hop``; students exported before 0.2). See :class:`InverseSTFT`.
        frames_per_latent: iSTFT frames per latent frame, ``r``. The head predicts ``r``
            spectra from each latent frame and the iSTFT hop is ``hop_length / r`` samples, so
            the overlap-add works at ``r`` times the frame rate with a window of ``n_fft``
            (default ``4 * hop_length / r``); the head's width, ``r * (n_fft + 2)``, stays about
            the same. 1 is the Vocos head.
    """

    kind: str = "istft"
    inter_channels: int = 192
    gin_channels: int = 0
    dim: int = 256
    intermediate_dim: int = 768
    n_layers: int = 6
    kernel_size: int = 7
    layer_scale_init: float | None = None
    n_fft: int | None = None
    max_magnitude: float = 100.0
    layer_norm_eps: float = 1e-6
    padding: str = "same"
    frames_per_latent: int = 1

    def __post_init__(self) -> None:
        if self.frames_per_latent < 1:
            raise ConfigError(f"decoder: frames_per_latent must be >= 1, got {self.frames_per_latent}")
        if self.kind != "istft":
            raise ConfigError(f"decoder: an ISTFTDecoderConfig has kind 'istft', got {self.kind!r}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"decoder: kernel_size must be odd, got {self.kernel_size}")
        if self.n_layers <= 0:
            raise ConfigError(f"decoder: n_layers must be positive, got {self.n_layers}")
        if self.padding not in ISTFT_PADDINGS:
            raise ConfigError(f"decoder: padding must be one of {ISTFT_PADDINGS}, "
                              f"got {self.padding!r}")

    def istft_hop(self, hop_length: int) -> int:
        """The iSTFT hop in samples, ``hop_length / frames_per_latent``.

        Raises:
            ConfigError: if ``frames_per_latent`` does not divide ``hop_length``.
        """
        if hop_length % self.frames_per_latent:
            raise ConfigError(f"decoder: frames_per_latent ({self.frames_per_latent}) must divide "
                              f"hop_length ({hop_length})")
        return hop_length // self.frames_per_latent

    def resolved_n_fft(self, hop_length: int) -> int:
        """iSTFT size for a latent hop of ``hop_length`` samples, checked.

        Raises:
            ConfigError: if ``n_fft`` is odd or smaller than twice the iSTFT hop, or
                ``frames_per_latent`` does not divide ``hop_length``.
        """
        hop_length = self.istft_hop(hop_length)
        n_fft = 4 * hop_length if self.n_fft is None else self.n_fft
        if n_fft % 2 or n_fft < 2 * hop_length:
            raise ConfigError(
                f"decoder: n_fft ({n_fft}) must be even and >= 2 * hop_length ({2 * hop_length})"
            )
        return n_fft


DECODER_KINDS: dict[str, type] = {"nix": NixDecoderConfig, "istft": ISTFTDecoderConfig}


def decoder_config_from_dict(
    kind: str, d: dict[str, Any], where: str = "decoder"
) -> NixDecoderConfig | ISTFTDecoderConfig:
    """Parse a decoder config section (its ``kind`` key, when present, must equal ``kind``).

    Raises:
        ConfigError: unknown kind, unknown keys, wrong types or broken invariants.
    """
    if kind not in DECODER_KINDS:
        raise ConfigError(f"{where}: decoder kind must be one of {sorted(DECODER_KINDS)}, got {kind!r}")
    return from_dict(DECODER_KINDS[kind], d, where)


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _init_normal(module: nn.Module, std: float) -> None:
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


# --------------------------------------------------------------------------------------------
# Nix decoder
# --------------------------------------------------------------------------------------------

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
        _init_normal(self.ups, _HIFIGAN_INIT_STD)
        _init_normal(self.resblocks, _HIFIGAN_INIT_STD)

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


# --------------------------------------------------------------------------------------------
# iSTFT decoder
# --------------------------------------------------------------------------------------------

# The OLA window envelope is clamped to at least this before dividing (torch.istft's NOLA bound).
_ENVELOPE_FLOOR = 1e-11


def overlap_add(frames: torch.Tensor, hop_length: int, n_fft: int | None = None) -> torch.Tensor:
    """Overlap-add frames with a stride of ``hop_length`` samples.

    When ``n_fft`` is a multiple of the hop (the default ``n_fft = 4 * hop_length``) the sum is
    ``n_fft / hop_length`` shifted adds of reshaped frames: no matmul, and the same ops in
    PyTorch and ONNX. Otherwise ``F.fold`` (col2im) does it.

    Args:
        frames: time-domain frames, [B, n_fft, T_frames].
        hop_length: frame shift in samples.
        n_fft: frame length (default ``frames.shape[1]``; pass it to keep it a constant under
            tracing).
    Returns:
        signal, [B, 1, (T_frames - 1) * hop_length + n_fft].
    """
    b, _, t = frames.shape
    n_fft = int(frames.shape[1]) if n_fft is None else n_fft
    if n_fft % hop_length:
        out = F.fold(frames, output_size=(1, (t - 1) * hop_length + n_fft),
                     kernel_size=(1, n_fft), stride=(1, hop_length))
        return out.view(b, 1, -1)
    r = n_fft // hop_length
    parts = frames.reshape(b, r, hop_length, t)  # sample j of frame t = part j//hop, row j%hop
    # part i of frame t lands in output block t + i: [B, hop, T_frames + r - 1]
    out = sum(F.pad(parts[:, i], (i, r - 1 - i)) for i in range(r))
    return out.transpose(1, 2).reshape(b, 1, (t + r - 1) * hop_length)


class InverseSTFT(nn.Module):
    """Inverse STFT of a one-sided spectrogram (Hann window), fast in PyTorch and in ONNX.

    Frames come from ``torch.fft.irfft`` in PyTorch; under ONNX export (no FFT op in the
    exporter) from a fixed windowed inverse-DFT matmul, equal to 1e-5. Frames are overlap-added
    with strided adds (:func:`overlap_add`), divided by the overlap-added squared window, and
    trimmed so that ``T_frames`` frames give exactly ``T_frames * hop_length`` samples.

    Padding conventions (frame ``t`` is the window centred on the given sample):

    - ``"same"`` (Vocos ``ISTFTHead(padding="same")``, gemelo-ai/vocos): trims
      ``(n_fft - hop_length) / 2`` at both ends, so frame ``t`` is centred on sample
      ``t * hop_length + hop_length / 2`` -- the middle of the hop that frame ``t`` of the
      teacher's upsampling decoder produces, and of STFT frame ``t`` of its audio.
    - ``"center"``: equal to ``torch.istft(center=True)`` truncated to ``T_frames * hop_length``;
      frame ``t`` is centred on sample ``t * hop_length`` (students exported before 0.2).

    Args:
        n_fft: FFT size in samples (even, ``>= 2 * hop_length``).
        hop_length: frame shift in samples.
        padding: ``"same"`` or ``"center"``.
    Raises:
        ConfigError: bad ``n_fft`` or padding.
    """

    def __init__(self, n_fft: int, hop_length: int, padding: str = "same") -> None:
        super().__init__()
        if n_fft % 2 or n_fft < 2 * hop_length:
            raise ConfigError(f"iSTFT: n_fft ({n_fft}) must be even and >= 2 * hop ({hop_length})")
        if padding not in ISTFT_PADDINGS:
            raise ConfigError(f"iSTFT: padding must be one of {ISTFT_PADDINGS}, got {padding!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = padding
        n_freqs = n_fft // 2 + 1
        window = torch.hann_window(n_fft, dtype=torch.float64)
        k = torch.arange(n_freqs, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
        angle = 2.0 * math.pi * k * n / n_fft  # [F, N]
        # Hermitian weights: DC and Nyquist once, the other bins twice.
        scale = torch.full((n_freqs, 1), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        scale[-1] = 1.0
        cos_basis = scale * torch.cos(angle) * window / n_fft
        sin_basis = -scale * torch.sin(angle) * window / n_fft
        # [2F, N]: frames = [Re; Im]^T @ basis (the ONNX path).
        self.register_buffer("basis", torch.cat([cos_basis, sin_basis]).float(), persistent=False)
        self.register_buffer("window", window.float().view(1, n_fft, 1), persistent=False)
        self.register_buffer("window_sq", window.pow(2).float().view(1, n_fft, 1), persistent=False)
        if padding == "same":
            self.trim_start = (n_fft - hop_length) // 2
            self.trim_end = n_fft - hop_length - self.trim_start
        else:
            self.trim_start = n_fft // 2
            self.trim_end = n_fft // 2 - hop_length

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """The STFT that this inverse undoes, with the same frames and window.

        Frame ``t`` is the Hann-windowed slice ``[t * hop_length, t * hop_length + n_fft)`` of
        ``wav`` padded with ``trim_start`` zeros in front and ``trim_end`` behind, so
        ``self(S.real, S.imag)`` with ``S = self.stft(wav)`` equals ``wav``, and a spectrogram ``S`` is consistent
        (the spectrogram of some signal) exactly when ``self.stft(self(S))`` equals ``S``.

        Args:
            wav: [B, 1, T_frames * hop_length] or [B, T_frames * hop_length].
        Returns:
            complex [B, n_fft // 2 + 1, T_frames].
        """
        padded = F.pad(wav.reshape(wav.shape[0], -1), (self.trim_start, self.trim_end))
        frames = padded.unfold(-1, self.n_fft, self.hop_length) * self.window.reshape(-1)
        return torch.fft.rfft(frames, dim=-1).transpose(1, 2)

    def frames(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """Windowed time-domain frames, [B, n_fft, T_frames], from real/imag [B, F, T_frames]."""
        if torch.onnx.is_in_onnx_export():
            spec = torch.cat([real, imag], dim=1)  # [B, 2F, T]
            # [b, t, 2F] x [2F, N] = [b, t, N] -> [b, N, t]
            return torch.matmul(spec.transpose(1, 2), self.basis).transpose(1, 2)
        frames = torch.fft.irfft(torch.complex(real, imag), n=self.n_fft, dim=1)
        return frames * self.window.to(frames.dtype)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """Invert a one-sided complex spectrogram given as real and imaginary parts.

        Args:
            real / imag: [B, n_fft // 2 + 1, T_frames].
        Returns:
            wav, [B, 1, T_frames * hop_length].
        """
        wav = overlap_add(self.frames(real, imag), self.hop_length, self.n_fft)
        ones = torch.ones_like(real[:1, :1, :])  # [1, 1, T]: the envelope follows T_frames
        envelope = overlap_add(self.window_sq.to(wav.dtype) * ones, self.hop_length, self.n_fft)
        wav = wav / envelope.clamp_min(_ENVELOPE_FLOOR)
        end = wav.shape[-1] - self.trim_end
        return wav[..., self.trim_start:end] if self.trim_end else wav[..., self.trim_start:]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Vocos): depthwise conv, LayerNorm, Linear-GELU-Linear, layer scale.

    Shapes: ``[B, dim, T_frames] -> [B, dim, T_frames]``.
    """

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int,
                 layer_scale_init: float, eps: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.dwconv(x).transpose(1, 2)  # [B, T, dim]
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        return residual + (self.gamma * x).transpose(1, 2)


class ISTFTDecoder(nn.Module):
    """Vocos-style decoder (gemelo-ai/vocos ``VocosBackbone`` + ``ISTFTHead``).

    ``embed conv -> LayerNorm -> ConvNeXt x n_layers -> LayerNorm -> Linear -> (log|S|, phase)
    -> S = clip(exp(log|S|)) * (cos(phase) + i sin(phase)) -> iSTFT``. All layers run at frame
    rate; only the fixed iSTFT touches audio rate.

    Args:
        cfg: :class:`ISTFTDecoderConfig`.
        hop_length: the teacher's hop in samples (= the iSTFT hop).
    Raises:
        ConfigError: if ``n_fft`` does not suit the hop.
    """

    def __init__(self, cfg: ISTFTDecoderConfig, hop_length: int) -> None:
        super().__init__()
        if hop_length <= 0:
            raise ConfigError(f"decoder (istft): hop_length must be positive, got {hop_length}")
        self.cfg = cfg
        self.hop_length = hop_length
        self.n_fft = cfg.resolved_n_fft(hop_length)
        self.n_freqs = self.n_fft // 2 + 1
        self.max_magnitude = cfg.max_magnitude
        self.frames_per_latent = cfg.frames_per_latent
        self.embed = nn.Conv1d(cfg.inter_channels, cfg.dim, cfg.kernel_size,
                               padding=cfg.kernel_size // 2)
        self.cond = nn.Conv1d(cfg.gin_channels, cfg.dim, 1) if cfg.gin_channels > 0 else None
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        scale = cfg.layer_scale_init if cfg.layer_scale_init is not None else 1.0 / cfg.n_layers
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, scale, cfg.layer_norm_eps)
            for _ in range(cfg.n_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(cfg.dim, 2 * self.n_freqs * cfg.frames_per_latent)
        self.istft = InverseSTFT(self.n_fft, cfg.istft_hop(hop_length), cfg.padding)

    def spectrum(
        self, z: torch.Tensor, g: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted complex spectrum as (real, imag), each [B, n_fft // 2 + 1, r * T_frames]
        (``r = frames_per_latent``; the ``r`` spectra of latent frame ``t`` are iSTFT frames
        ``r * t .. r * t + r - 1``)."""
        x = self.embed(z)
        if self.cond is not None and g is not None:
            x = x + self.cond(g)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.final_norm(x.transpose(1, 2)))  # [B, T, r * 2F]
        if self.frames_per_latent > 1:
            x = x.reshape(x.shape[0], -1, 2 * self.n_freqs)  # [B, r * T, 2F]
        x = x.transpose(1, 2)  # [B, 2F, r * T]
        log_mag, phase = x[:, :self.n_freqs], x[:, self.n_freqs:]
        mag = torch.clamp(torch.exp(log_mag), max=self.max_magnitude)
        return mag * torch.cos(phase), mag * torch.sin(phase)

    def forward(self, z: torch.Tensor, g: torch.Tensor | None = None,
                return_spectrum: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Decode latents to audio.

        Args:
            z: latent, [B, inter_channels, T_frames].
            g: speaker embedding, [B, gin_channels, 1], or None.
            return_spectrum: also return the predicted spectrum (training losses on it).
        Returns:
            wav, [B, 1, T_frames * hop_length] (not clipped); with ``return_spectrum``,
            ``(wav, spec)`` where ``spec`` is complex [B, n_fft // 2 + 1, r * T_frames], the
            spectrum the iSTFT inverted (:meth:`spectrum`).
        """
        real, imag = self.spectrum(z, g)
        wav = self.istft(real, imag)
        return (wav, torch.complex(real.float(), imag.float())) if return_spectrum else wav

    def remove_weight_norm(self) -> ISTFTDecoder:
        """No weight norm here; present for a uniform decoder interface."""
        return self


def build_decoder(
    kind: str, cfg: NixDecoderConfig | ISTFTDecoderConfig | dict[str, Any], hop_length: int
) -> NixDecoder | ISTFTDecoder:
    """Build a student decoder.

    Args:
        kind: ``"nix"`` or ``"istft"``.
        cfg: the matching config dataclass, or its dict (without ``kind``).
        hop_length: the teacher's ``audio.hop_length`` in samples.
    Returns:
        module with ``forward(z [B, inter, T_frames], g=None) -> wav [B, 1, T_frames*hop]``.
    Raises:
        ConfigError: unknown kind, config of the wrong kind, or a hop length mismatch.
    """
    if isinstance(cfg, dict):
        cfg = decoder_config_from_dict(kind, cfg)
    if kind not in DECODER_KINDS:
        raise ConfigError(f"decoder kind must be one of {sorted(DECODER_KINDS)}, got {kind!r}")
    if not isinstance(cfg, DECODER_KINDS[kind]):
        raise ConfigError(f"decoder kind {kind!r} needs a {DECODER_KINDS[kind].__name__}")
    if kind == "nix":
        return NixDecoder(cfg, hop_length)
    return ISTFTDecoder(cfg, hop_length)
