"""The VITS / VITS2 hyperparameters (:class:`VITSConfig`), as the original configs' ``model``
section names them, with the invariants checked at construction.

Sources: jaywalnut310/vits ``configs/ljs_base.json``; p0p4k/vits2_pytorch (the VITS2 flags).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nixdistill.errors import ConfigError

__all__ = ["VITSConfig"]


@dataclass
class VITSConfig:
    """Hyperparameters of :class:`VITS` (defaults: jaywalnut310/vits ``ljs_base.json``).

    Attributes:
        n_vocab: text symbols.
        spec_channels: posterior-encoder input bins: ``n_fft // 2 + 1`` (linear) or ``n_mels``
            (VITS2 mel posterior).
        inter_channels: latent ``z`` channels (even).
        hidden_channels: text-encoder / WaveNet width.
        filter_channels: text-encoder FFN width.
        n_heads / n_layers / kernel_size / p_dropout: text-encoder transformer shape.
        window_size: relative-attention window of the text encoder.
        resblock: HiFi-GAN block type ``"1"`` or ``"2"``.
        resblock_kernel_sizes / resblock_dilation_sizes: HiFi-GAN residual blocks.
        upsample_rates / upsample_kernel_sizes / upsample_initial_channel: HiFi-GAN upsampling;
            ``prod(upsample_rates)`` is the hop length in samples.
        n_speakers: speakers (``> 1`` adds ``emb_g``).
        gin_channels: speaker-embedding channels (required when ``n_speakers > 1``).
        use_sdp: stochastic (True) or deterministic duration predictor.
        sdp_kernel_size / sdp_p_dropout / sdp_n_flows: SDP shape (VITS: 3, 0.5, 4).
        dp_filter_channels / dp_kernel_size / dp_p_dropout: deterministic DP (VITS: 256, 3, 0.5).
        posterior_kernel_size / posterior_dilation_rate / posterior_n_layers: ``enc_q`` WaveNet
            (hard-coded 5, 1, 16 in the original).
        flow_n_flows / flow_kernel_size / flow_dilation_rate / flow_n_layers: flow couplings
            (original: 4 couplings of WN k=5, dilation 1, 4 layers).
        segment_size: decoder training segment in frames (``train.segment_size // hop``).
        use_transformer_flow: VITS2 transformer couplings (vits2 ``pre_conv`` type).
        flow_transformer_n_heads / _n_layers / _kernel_size / _p_dropout: their transformer.
        use_noise_scaled_mas: add ``std(neg_cent) * randn * scale`` before MAS (VITS2).
        mas_noise_scale_initial: initial scale; mas_noise_scale_delta: decrease per step.
        use_spk_conditioned_encoder: add the speaker embedding inside the text encoder (VITS2).
        spk_cond_layer_idx: text-encoder block receiving it (vits2: 2).
        use_mel_posterior_encoder: ``enc_q`` reads a mel spectrogram (VITS2).
        use_duration_discriminator: train a VITS2 duration discriminator (held by the trainer).
        has_posterior: build ``enc_q`` and the SDP posterior flows (False: prior-only, Piper).
    """

    n_vocab: int = 178
    spec_channels: int = 513
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    window_size: int = 4
    resblock: str = "1"
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    n_speakers: int = 0
    gin_channels: int = 0
    use_sdp: bool = True
    sdp_kernel_size: int = 3
    sdp_p_dropout: float = 0.5
    sdp_n_flows: int = 4
    dp_filter_channels: int = 256
    dp_kernel_size: int = 3
    dp_p_dropout: float = 0.5
    posterior_kernel_size: int = 5
    posterior_dilation_rate: int = 1
    posterior_n_layers: int = 16
    flow_n_flows: int = 4
    flow_kernel_size: int = 5
    flow_dilation_rate: int = 1
    flow_n_layers: int = 4
    segment_size: int = 32
    use_transformer_flow: bool = False
    flow_transformer_n_heads: int = 2
    flow_transformer_n_layers: int = 2
    flow_transformer_kernel_size: int = 3
    flow_transformer_p_dropout: float = 0.1
    use_noise_scaled_mas: bool = False
    mas_noise_scale_initial: float = 0.01
    mas_noise_scale_delta: float = 2e-6
    use_spk_conditioned_encoder: bool = False
    spk_cond_layer_idx: int = 2
    use_mel_posterior_encoder: bool = False
    use_duration_discriminator: bool = False
    has_posterior: bool = True

    def __post_init__(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"model: {msg}")

        self.resblock = str(self.resblock)
        self.resblock_dilation_sizes = [list(d) for d in self.resblock_dilation_sizes]
        for name in ("n_vocab", "spec_channels", "inter_channels", "hidden_channels",
                     "filter_channels", "n_heads", "n_layers", "upsample_initial_channel",
                     "segment_size", "flow_n_flows", "flow_n_layers", "posterior_n_layers"):
            if getattr(self, name) <= 0:
                raise bad(f"{name} must be positive, got {getattr(self, name)}")
        if self.inter_channels % 2:
            raise bad(f"inter_channels must be even (flow halves), got {self.inter_channels}")
        if self.hidden_channels % self.n_heads:
            raise bad(f"hidden_channels ({self.hidden_channels}) must be divisible by "
                      f"n_heads ({self.n_heads})")
        if self.resblock not in ("1", "2"):
            raise bad(f"resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise bad("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if not self.upsample_rates or len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise bad("upsample_rates and upsample_kernel_sizes must be non-empty and equally long")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if k < u or (k - u) % 2:
                raise bad(f"upsample kernel {k} must be >= rate {u} with k - u even, "
                          "or the output length is not T_frames * rate")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise bad(f"upsample_initial_channel ({self.upsample_initial_channel}) must be "
                      f"divisible by 2**{len(self.upsample_rates)}")
        for name in ("posterior_kernel_size", "flow_kernel_size"):
            if getattr(self, name) % 2 != 1:
                raise bad(f"{name} must be odd, got {getattr(self, name)}")
        if self.n_speakers > 1 and self.gin_channels <= 0:
            raise bad(f"n_speakers={self.n_speakers} needs gin_channels > 0")
        if self.use_spk_conditioned_encoder and self.gin_channels > 0 and not (
                0 <= self.spk_cond_layer_idx < self.n_layers):
            raise bad(f"spk_cond_layer_idx ({self.spk_cond_layer_idx}) must be < n_layers "
                      f"({self.n_layers})")
        if self.use_transformer_flow and (self.inter_channels // 2) % self.flow_transformer_n_heads:
            raise bad("inter_channels // 2 must be divisible by flow_transformer_n_heads")
        if self.mas_noise_scale_initial < 0 or self.mas_noise_scale_delta < 0:
            raise bad("mas_noise_scale_initial and mas_noise_scale_delta must be >= 0")

    @property
    def hop_length(self) -> int:
        """Samples per latent frame, ``prod(upsample_rates)``."""
        return math.prod(self.upsample_rates)
