"""Magnitude STFTs at several resolutions, shared by the losses and the discriminators.

Source: kan-bayashi ParallelWaveGAN ``parallel_wavegan/losses/stft_loss.py`` (``stft`` and the
multi-resolution settings of Yamamoto et al. 2020), the resolutions the Nix-TTS decoder uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from nixdistill.errors import LossError

__all__ = [
    "STFTResolution",
    "REFERENCE_SAMPLE_RATE",
    "REFERENCE_RESOLUTIONS",
    "scaled_resolutions",
    "stft_complex",
    "stft_magnitude",
]

# Magnitude floor inside the square root, as in kan-bayashi ``stft()`` (clamp(min=1e-7)).
MAGNITUDE_FLOOR = 1e-7


class STFTResolution(NamedTuple):
    """One STFT analysis setting, all in samples."""

    n_fft: int
    hop_length: int
    win_length: int


# kan-bayashi ParallelWaveGAN / Nix-TTS decoder resolutions, defined for 22.05 kHz audio.
REFERENCE_SAMPLE_RATE = 22050
REFERENCE_RESOLUTIONS: tuple[STFTResolution, ...] = (
    STFTResolution(1024, 128, 1024),
    STFTResolution(2048, 256, 2048),
    STFTResolution(512, 64, 512),
)


def scaled_resolutions(
    sample_rate: int,
    resolutions: Sequence[STFTResolution] = REFERENCE_RESOLUTIONS,
    reference_sample_rate: int = REFERENCE_SAMPLE_RATE,
) -> list[STFTResolution]:
    """Scale STFT resolutions defined at ``reference_sample_rate`` to ``sample_rate``.

    All sizes are multiplied by one power of two, ``2 ** round(log2(sample_rate / reference))``,
    so they stay powers of two and keep the same ratios: 22.05/16/24 kHz keep the reference,
    8 kHz halves it ((512, 64, 512), (1024, 128, 1024), (256, 32, 256)), 44.1/48 kHz double it.

    Args:
        sample_rate: target rate in Hz.
    Returns:
        list of STFTResolution (samples).
    Raises:
        LossError: for a non-positive sample rate.
    """
    if sample_rate <= 0:
        raise LossError(f"sample_rate must be positive, got {sample_rate}")
    exponent = round(math.log2(sample_rate / reference_sample_rate))

    def scale(n: int) -> int:
        return max(1, int(n * 2.0**exponent))

    return [STFTResolution(scale(r.n_fft), scale(r.hop_length), scale(r.win_length))
            for r in resolutions]


def stft_complex(y: torch.Tensor, resolution: STFTResolution) -> torch.Tensor:
    """Complex STFT with a Hann window and ``center=True`` (reflect padding).

    Args:
        y: waveform, [B, T_samples] or [B, 1, T_samples].
    Returns:
        complex64 [B, n_fft // 2 + 1, 1 + T_samples // hop_length].
    Raises:
        LossError: when the signal is too short for this ``n_fft`` (reflect padding needs
            ``T_samples > n_fft // 2``).
    Source: kan-bayashi ParallelWaveGAN ``losses/stft_loss.stft``.
    """
    if y.dim() == 3:
        y = y.squeeze(1)
    y = y.float()
    if y.shape[-1] <= resolution.n_fft // 2:
        raise LossError(
            f"STFT n_fft={resolution.n_fft} needs more than {resolution.n_fft // 2} samples, "
            f"the segment has {y.shape[-1]}; use smaller resolutions (scaled_resolutions) or a "
            "longer train.segment_size"
        )
    window = torch.hann_window(resolution.win_length, device=y.device, dtype=y.dtype)
    return torch.stft(
        y, resolution.n_fft, hop_length=resolution.hop_length, win_length=resolution.win_length,
        window=window, center=True, pad_mode="reflect", return_complex=True,
    )


def stft_magnitude(y: torch.Tensor, resolution: STFTResolution) -> torch.Tensor:
    """Magnitude STFT, ``sqrt(clamp(|X|², 1e-7))`` of :func:`stft_complex`.

    Args:
        y: waveform, [B, T_samples] or [B, 1, T_samples].
    Returns:
        [B, n_fft // 2 + 1, 1 + T_samples // hop_length].
    Raises:
        LossError: when the signal is too short for this ``n_fft``.
    Source: kan-bayashi ParallelWaveGAN ``losses/stft_loss.stft``.
    """
    spec = stft_complex(y, resolution)
    return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=MAGNITUDE_FLOOR))
