"""A Vocos-style decoder (gemelo-ai/vocos): ConvNeXt blocks at frame rate and a Fourier head
predicting log-magnitude and phase, inverted by an iSTFT (``irfft`` + strided overlap-add in
PyTorch, an inverse-DFT matmul under ONNX export; see :class:`~nixdistill.nn.stft.InverseSTFT`).

``forward(z [B, inter_channels, T_frames], g=None) -> wav [B, 1, T_frames * hop_length]``.
"""

from __future__ import annotations

import torch
from torch import nn

from nixdistill.errors import ConfigError
from nixdistill.nn.stft import InverseSTFT

from .decoder_config import ISTFTDecoderConfig

__all__ = ["ConvNeXtBlock", "ISTFTDecoder"]


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
        x = x.transpose(1, 2).float()  # [B, 2F, r * T]; the Fourier head in fp32 under autocast
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
