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

from typing import Any

from nixdistill.errors import ConfigError
from nixdistill.nn import folded_state_dict, remove_weight_norm
from nixdistill.nn.stft import InverseSTFT

from .decoder_config import (
    DECODER_KINDS,
    ISTFTDecoderConfig,
    NixDecoderConfig,
    decoder_config_from_dict,
)
from .istft_decoder import ISTFTDecoder
from .nix_decoder import NixDecoder

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
