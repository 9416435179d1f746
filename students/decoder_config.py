"""Configs of the two student decoders (``nix`` and ``istft``) and their JSON form.

A decoder config is a dataclass with a ``kind`` field; :func:`decoder_config_from_dict` reads
``{"kind": "nix" | "istft", ...}`` into the right one. Invariants (kernel parity, upsampling
that reaches the teacher's hop length, iSTFT sizes) are checked at construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nixdistill.errors import ConfigError
from nixdistill.nn import from_dict
from nixdistill.nn.stft import ISTFT_PADDINGS

__all__ = ["DECODER_KINDS", "ISTFTDecoderConfig", "NixDecoderConfig", "decoder_config_from_dict"]


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
