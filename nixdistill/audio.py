"""Audio I/O and spectral features (no torchaudio).

I/O uses soundfile, resampling uses soxr, the STFT is ``torch.stft(return_complex=True)`` and
the mel basis comes from ``librosa.filters.mel`` (Slaney-normalised, as in HiFi-GAN/VITS),
cached by its full key. Magnitudes follow jaywalnut310/vits ``mel_processing.py``:
``sqrt(|X|^2 + 1e-6)``, reflect padding of ``(n_fft - hop_length) / 2`` on each side and
``center=False``, so a clip of ``T_samples`` gives ``T_samples // hop_length`` frames.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import NixdistillError

__all__ = [
    "AudioError",
    "load_wav",
    "save_wav",
    "resample",
    "spectrogram",
    "mel_basis",
    "spec_to_mel",
    "mel_spectrogram",
    "dynamic_range_compression",
]


class AudioError(NixdistillError, ValueError):
    """An audio file cannot be read or is unusable; the message names the file."""


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float audio with soxr ("HQ").

    Args:
        y: waveform, [T_samples], float.
        orig_sr / target_sr: rates in Hz.
    Returns:
        float32 waveform, [round(T_samples * target_sr / orig_sr)].
    """
    if orig_sr == target_sr:
        return y.astype(np.float32, copy=False)
    return soxr.resample(y, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_wav(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at ``sample_rate`` Hz.

    Multi-channel audio is averaged to mono; other rates are resampled with soxr.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...).
        sample_rate: target rate in Hz.
    Returns:
        waveform, [T_samples], float32, clipped to [-1, 1].
    Raises:
        AudioError: if the file is missing, unreadable, or empty.
    """
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"cannot read audio {path}: {e}") from None
    if y.shape[0] == 0:
        raise AudioError(f"audio file {path} has no samples")
    y = y.mean(axis=1)
    y = resample(y, int(sr), int(sample_rate))
    return np.clip(y, -1.0, 1.0)


def save_wav(path: str | Path, y: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """Write mono float audio as 16-bit PCM WAV (values are clipped to [-1, 1])."""
    if isinstance(y, torch.Tensor):
        y = y.detach().float().cpu().numpy()
    y = np.clip(np.asarray(y, dtype=np.float32).reshape(-1), -1.0, 1.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, int(sample_rate), subtype="PCM_16")


@functools.lru_cache(maxsize=32)
def _mel_basis_np(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None):
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)


def mel_basis(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
    *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Slaney mel filterbank, [n_mels, n_fft // 2 + 1]; cached by (sample_rate, n_fft, n_mels,
    f_min, f_max) and built with ``librosa.filters.mel`` keyword arguments."""
    basis = _mel_basis_np(int(sample_rate), int(n_fft), int(n_mels), float(f_min),
                          None if f_max is None else float(f_max))
    return torch.from_numpy(basis).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def _hann(win_length: int) -> torch.Tensor:
    return torch.hann_window(win_length)


def spectrogram(
    y: torch.Tensor, n_fft: int, hop_length: int, win_length: int, center: bool = False
) -> torch.Tensor:
    """Linear magnitude spectrogram (VITS ``spectrogram_torch``).

    Args:
        y: waveform in [-1, 1], [B, T_samples] or [B, 1, T_samples].
        n_fft / hop_length / win_length: in samples.
        center: ``False`` (VITS convention, reflect-pad by ``(n_fft - hop_length) // 2``).
    Returns:
        spec: [B, n_fft // 2 + 1, T_frames] with ``T_frames = T_samples // hop_length``.
    """
    if y.dim() == 3:
        y = y.squeeze(1)
    pad = (n_fft - hop_length) // 2
    if not center:
        y = torch.nn.functional.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = _hann(win_length).to(device=y.device, dtype=y.dtype)
    spec = torch.stft(
        y, n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=center, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-6)


def dynamic_range_compression(x: torch.Tensor, clip_val: float = 1e-5) -> torch.Tensor:
    """Natural-log compression used for mels in HiFi-GAN/VITS: ``log(clamp(x, clip_val))``."""
    return torch.log(torch.clamp(x, min=clip_val))


def spec_to_mel(
    spec: torch.Tensor, sample_rate: int, n_fft: int, n_mels: int,
    f_min: float = 0.0, f_max: float | None = None,
) -> torch.Tensor:
    """Linear magnitude spectrogram [B, n_fft//2+1, T_frames] -> log-mel [B, n_mels, T_frames]."""
    basis = mel_basis(sample_rate, n_fft, n_mels, f_min, f_max, dtype=spec.dtype, device=spec.device)
    return dynamic_range_compression(torch.matmul(basis, spec))


def mel_spectrogram(
    y: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int, win_length: int,
    n_mels: int, f_min: float = 0.0, f_max: float | None = None, center: bool = False,
) -> torch.Tensor:
    """Log-mel spectrogram (VITS ``mel_spectrogram_torch``).

    Args:
        y: waveform in [-1, 1], [B, T_samples] or [B, 1, T_samples].
        sample_rate: in Hz. n_fft / hop_length / win_length: in samples.
        n_mels: mel bands. f_min / f_max: band edges in Hz (``None`` = Nyquist).
    Returns:
        mel: natural-log magnitude, [B, n_mels, T_frames], ``T_frames = T_samples // hop_length``.
    """
    spec = spectrogram(y, n_fft, hop_length, win_length, center=center)
    return spec_to_mel(spec, sample_rate, n_fft, n_mels, f_min, f_max)


def audio_kwargs(audio) -> dict:
    """The ``mel_spectrogram`` keyword arguments taken from an :class:`AudioConfig`."""
    return dict(
        sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
        win_length=audio.win_length, n_mels=audio.n_mels, f_min=audio.f_min, f_max=audio.f_max,
    )
