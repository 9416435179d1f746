"""Audio layer: I/O, resampling, spectrogram shapes, mel bin placement."""

import numpy as np
import pytest
import soundfile as sf
import torch

from nixdistill.audio import AudioError, load_wav, mel_basis, mel_spectrogram, spectrogram


def test_load_wav_resamples_and_scales(tmp_path):
    sr_in, sr_out = 16000, 8000
    t = np.arange(sr_in) / sr_in
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([y, y], axis=1)
    path = tmp_path / "a.wav"
    sf.write(path, stereo, sr_in, subtype="PCM_16")
    out = load_wav(path, sr_out)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - sr_out) <= 1
    assert np.abs(out).max() <= 1.0
    assert np.abs(out).max() == pytest.approx(0.5, abs=0.02)


def test_load_wav_errors(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        load_wav(bad, 8000)
    with pytest.raises(AudioError, match="missing.wav"):
        load_wav(tmp_path / "missing.wav", 8000)


def test_spectrogram_shape():
    n_fft, hop, win = 64, 16, 64
    y = torch.randn(3, 1, 16 * 40)
    spec = spectrogram(y, n_fft, hop, win)
    assert spec.shape == (3, n_fft // 2 + 1, 40)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0])
def test_sine_energy_lands_in_right_mel_bin(freq):
    sr, n_fft, hop, n_mels = 8000, 256, 64, 40
    t = torch.arange(sr) / sr
    y = (0.5 * torch.sin(2 * torch.pi * freq * t))[None]
    mel = mel_spectrogram(y, sample_rate=sr, n_fft=n_fft, hop_length=hop, win_length=n_fft,
                          n_mels=n_mels, f_min=0.0, f_max=None)
    assert mel.shape == (1, n_mels, sr // hop)
    peak_bin = int(mel[0].mean(1).argmax())
    # Independent expectation: the filter whose centre (argmax over FFT bins) is nearest freq.
    basis = mel_basis(sr, n_fft, n_mels, 0.0, None)
    centres = basis.argmax(1).float() * sr / n_fft
    expected = int((centres - freq).abs().argmin())
    assert abs(peak_bin - expected) <= 1


def test_mel_basis_is_cached_by_full_key():
    a = mel_basis(8000, 256, 40, 0.0, None)
    b = mel_basis(8000, 256, 40, 0.0, 3000.0)
    assert not torch.equal(a, b)
    assert torch.equal(a, mel_basis(8000, 256, 40, 0.0, None))
