"""STFT and its inverse: magnitude STFTs at several resolutions, shared by the losses and the
discriminators, and the exportable inverse STFT of the iSTFT decoder (:class:`InverseSTFT`).

Source: kan-bayashi ParallelWaveGAN ``parallel_wavegan/losses/stft_loss.py`` (``stft`` and the
multi-resolution settings of Yamamoto et al. 2020), the resolutions the Nix-TTS decoder uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nixdistill.errors import ConfigError, LossError

__all__ = [
    "ISTFT_PADDINGS",
    "InverseSTFT",
    "overlap_add",
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


# ------------------------------------------------------------------------ inverse STFT
ISTFT_PADDINGS = ("same", "center")
"""Frame placements of :class:`InverseSTFT`: ``same`` (Vocos) or ``center`` (``torch.stft``)."""

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
