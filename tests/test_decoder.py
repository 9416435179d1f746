"""Student decoders: shapes, hop checks, weight-norm removal, iSTFT vs torch.istft."""

from __future__ import annotations

import math

import pytest
import torch

from nixdistill.config import ConfigError
from nixdistill.students.decoder import (
    InverseSTFT,
    ISTFTDecoderConfig,
    NixDecoderConfig,
    build_decoder,
    decoder_config_from_dict,
)

HOP = 16
TINY_NIX = NixDecoderConfig(
    inter_channels=8, gin_channels=0, upsample_initial_channel=16, upsample_rates=[4, 4],
    upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
)
TINY_ISTFT = ISTFTDecoderConfig(inter_channels=8, dim=16, intermediate_dim=32, n_layers=2)


@pytest.mark.parametrize("kind,cfg", [("nix", TINY_NIX), ("istft", TINY_ISTFT)])
@pytest.mark.parametrize("n_frames", [1, 7])
def test_output_length_is_frames_times_hop(kind, cfg, n_frames):
    torch.manual_seed(0)
    dec = build_decoder(kind, cfg, HOP)
    wav = dec(torch.randn(2, 8, n_frames))
    assert wav.shape == (2, 1, n_frames * HOP)
    assert torch.isfinite(wav).all()


@pytest.mark.parametrize("kind,cfg", [("nix", TINY_NIX), ("istft", TINY_ISTFT)])
def test_speaker_conditioning_changes_output(kind, cfg):
    torch.manual_seed(0)
    d = dict(vars(cfg), gin_channels=4)
    dec = build_decoder(kind, decoder_config_from_dict(kind, d), HOP)
    z = torch.randn(1, 8, 5)
    a = dec(z, torch.randn(1, 4, 1))
    b = dec(z, torch.randn(1, 4, 1))
    assert a.shape == b.shape == (1, 1, 5 * HOP)
    assert not torch.allclose(a, b)


def test_nix_hop_mismatch_raises():
    with pytest.raises(ConfigError, match="hop_length"):
        build_decoder("nix", TINY_NIX, 32)


def test_istft_n_fft_too_small_raises():
    with pytest.raises(ConfigError, match="n_fft"):
        build_decoder("istft", ISTFTDecoderConfig(inter_channels=8, n_fft=16), HOP)


def test_bad_kind_and_bad_kernel_raise():
    with pytest.raises(ConfigError, match="kind"):
        build_decoder("wavenet", TINY_NIX, HOP)
    with pytest.raises(ConfigError, match="even difference"):
        NixDecoderConfig(upsample_rates=[4], upsample_kernel_sizes=[7])
    with pytest.raises(ConfigError, match="unknown key"):
        decoder_config_from_dict("istft", {"dimension": 3})


def test_remove_weight_norm_keeps_output_and_drops_parametrizations():
    torch.manual_seed(0)
    dec = build_decoder("nix", TINY_NIX, HOP).eval()
    z = torch.randn(1, 8, 6)
    with torch.no_grad():
        before = dec(z)
        dec.remove_weight_norm()
        after = dec(z)
    keys = list(dec.state_dict())
    assert not any("parametrizations" in k for k in keys)
    assert "conv_pre.weight" in keys
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)


def test_nix_default_size_is_paper_scale():
    """The paper-style decoder is ~1.3M parameters (port: 1.30M); far below HiFi-GAN V1."""
    dec = build_decoder("nix", NixDecoderConfig(), math.prod(NixDecoderConfig().upsample_rates))
    dec.remove_weight_norm()
    n = sum(p.numel() for p in dec.parameters())
    assert 0.8e6 < n < 2.0e6


@pytest.mark.parametrize("n_fft,hop", [(64, 16), (32, 16), (48, 8)])
def test_inverse_stft_matches_torch_istft(n_fft, hop):
    torch.manual_seed(0)
    n_frames = 9
    spec = torch.randn(2, n_fft // 2 + 1, n_frames, dtype=torch.complex128)
    ours = InverseSTFT(n_fft, hop, padding="center").double()(spec.real, spec.imag)
    ref = torch.istft(spec, n_fft, hop, n_fft, torch.hann_window(n_fft, dtype=torch.float64),
                      center=True, length=n_frames * hop)
    assert ours.shape == (2, 1, n_frames * hop)
    torch.testing.assert_close(ours[:, 0], ref, atol=1e-6, rtol=1e-5)


def test_inverse_stft_round_trips_a_signal():
    n_fft, hop, n_frames = 64, 16, 12
    y = torch.randn(1, n_frames * hop, dtype=torch.float64)
    spec = torch.stft(y, n_fft, hop, n_fft, torch.hann_window(n_fft, dtype=torch.float64),
                      center=True, return_complex=True)[..., :n_frames]
    rec = InverseSTFT(n_fft, hop, padding="center").double()(spec.real, spec.imag)
    # Only the final frame's right half is missing; everything before it is reconstructed.
    keep = (n_frames - 1) * hop
    torch.testing.assert_close(rec[0, 0, :keep], y[0, :keep], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n_fft,hop", [(64, 16), (48, 8), (40, 16)])
def test_inverse_stft_same_padding_round_trips_the_teachers_frame_convention(n_fft, hop):
    """VITS spectrograms pad (n_fft - hop) / 2 on both sides with center=False, so STFT frame t
    is centred on sample t * hop + hop / 2. The "same" iSTFT inverts exactly that framing."""
    n_frames = 14
    y = torch.randn(1, n_frames * hop, dtype=torch.float64)
    pad_l = (n_fft - hop) // 2
    padded = torch.nn.functional.pad(y.unsqueeze(1), (pad_l, n_fft - hop - pad_l), mode="reflect")
    spec = torch.stft(padded.squeeze(1), n_fft, hop, n_fft,
                      torch.hann_window(n_fft, dtype=torch.float64), center=False,
                      return_complex=True)
    assert spec.shape[-1] == n_frames
    rec = InverseSTFT(n_fft, hop, padding="same").double()(spec.real, spec.imag)
    assert rec.shape == (1, 1, n_frames * hop)
    torch.testing.assert_close(rec[0, 0], y[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("padding,offset", [("same", 0.5), ("center", 0.0)])
def test_inverse_stft_puts_a_frame_where_its_convention_says(padding, offset):
    """A frame holding a centred impulse comes out at sample t * hop + offset * hop."""
    n_fft, hop, n_frames, t = 64, 16, 10, 4
    n_freqs = n_fft // 2 + 1
    real = torch.zeros(1, n_freqs, n_frames, dtype=torch.float64)
    # linear phase exp(-i pi k) moves the impulse to the middle of the frame (window peak)
    real[0, :, t] = torch.cos(torch.pi * torch.arange(n_freqs, dtype=torch.float64))
    imag = torch.zeros_like(real)
    wav = InverseSTFT(n_fft, hop, padding).double()(real, imag)[0, 0]
    energy = wav.pow(2)
    centroid = float((energy * torch.arange(len(wav), dtype=torch.float64)).sum() / energy.sum())
    assert centroid == pytest.approx(t * hop + offset * hop, abs=1e-6)


@pytest.mark.parametrize("n_fft,hop", [(64, 16), (40, 16)])
def test_inverse_stft_fast_and_onnx_paths_agree(n_fft, hop, monkeypatch):
    """irfft (PyTorch) and the inverse-DFT matmul (ONNX export) give the same samples."""
    torch.manual_seed(0)
    spec = torch.randn(2, n_fft // 2 + 1, 11, dtype=torch.complex64)
    istft = InverseSTFT(n_fft, hop)
    fast = istft(spec.real, spec.imag)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    matmul = istft(spec.real, spec.imag)
    torch.testing.assert_close(fast, matmul, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("r", [2, 4])
def test_istft_frames_per_latent_keeps_length_and_head_width(r):
    """r iSTFT frames per latent frame: T_frames * hop samples, a hop of hop / r, and a head
    about as wide as the r = 1 head (r * (n_fft / r + 2) outputs)."""
    torch.manual_seed(0)
    cfg = ISTFTDecoderConfig(inter_channels=8, dim=16, intermediate_dim=32, n_layers=2,
                             frames_per_latent=r)
    dec = build_decoder("istft", cfg, HOP)
    assert dec.istft.hop_length == HOP // r and dec.n_fft == 4 * HOP // r
    assert dec.head.out_features == r * (4 * HOP // r + 2)
    wav = dec(torch.randn(2, 8, 7))
    assert wav.shape == (2, 1, 7 * HOP) and torch.isfinite(wav).all()


def test_istft_frames_per_latent_orders_sub_frames_in_time():
    """Sub-frame j of latent frame t is iSTFT frame r * t + j (which the iSTFT, at a hop of
    hop / r, centres on sample t * hop + (j + 1/2) * hop / r: see the convention test above)."""
    r, n_frames = 4, 5
    cfg = ISTFTDecoderConfig(inter_channels=8, dim=16, intermediate_dim=32, n_layers=1,
                             frames_per_latent=r)
    dec = build_decoder("istft", cfg, HOP)
    n_freqs = dec.n_freqs
    for j in range(r):
        with torch.no_grad():
            dec.head.weight.zero_()
            bias = torch.zeros(r, 2 * n_freqs)
            bias[:, :n_freqs] = -30.0  # log|S|: silent ...
            bias[j, :n_freqs] = 0.0  # ... but for sub-frame j
            dec.head.bias.copy_(bias.reshape(-1))
            real, imag = dec.spectrum(torch.randn(1, 8, n_frames))
        loud = (real.pow(2) + imag.pow(2)).sum(1)[0] > 1.0  # [r * T_frames]
        assert loud.shape == (r * n_frames,)
        assert loud.tolist() == [k % r == j for k in range(r * n_frames)]


def test_istft_frames_per_latent_must_divide_the_hop():
    with pytest.raises(ConfigError, match="frames_per_latent"):
        build_decoder("istft", ISTFTDecoderConfig(inter_channels=8, frames_per_latent=3), HOP)
    with pytest.raises(ConfigError, match="frames_per_latent"):
        ISTFTDecoderConfig(frames_per_latent=0)


@pytest.mark.parametrize("n_fft,hop", [(64, 16), (1024, 256)])
def test_inverse_stft_analysis_is_its_own_stft(n_fft, hop):
    """``InverseSTFT.stft`` frames a signal as the inverse overlap-adds it: the inverse of the
    STFT of a signal is that signal, and the STFT of the inverse of a consistent spectrum is
    that spectrum, while a random spectrum is far from consistent."""
    torch.manual_seed(0)
    istft = InverseSTFT(n_fft, hop).double()
    wav = torch.randn(2, 1, 12 * hop, dtype=torch.float64)
    spec = istft.stft(wav)
    assert spec.shape == (2, n_fft // 2 + 1, 12)
    assert torch.allclose(istft(spec.real, spec.imag), wav, atol=1e-10)
    again = istft.stft(istft(spec.real, spec.imag))
    assert (again - spec).abs().max() < 1e-6 * spec.abs().max()
    noise = torch.complex(torch.randn_like(spec.real), torch.randn_like(spec.real))
    back = istft.stft(istft(noise.real, noise.imag))
    assert (back - noise).abs().pow(2).sum() > 0.3 * noise.abs().pow(2).sum()


def test_istft_decoder_can_return_the_spectrum_it_inverted():
    torch.manual_seed(0)
    decoder = build_decoder("istft", TINY_ISTFT, HOP).eval()
    z = torch.randn(2, TINY_ISTFT.inter_channels, 9)
    with torch.no_grad():
        wav, spec = decoder(z, return_spectrum=True)
        assert torch.equal(wav, decoder(z))
        real, imag = decoder.spectrum(z)
    assert torch.equal(spec, torch.complex(real, imag))
    assert torch.allclose(decoder.istft(spec.real, spec.imag), wav)


def test_istft_decoder_trains_under_bf16_autocast_with_an_fp32_fourier_head():
    """``train.precision: bf16`` on CPU: the backbone runs in bfloat16, the spectrum and its
    inverse in float32 (torch has no bfloat16 complex FFT), and the gradients are finite."""
    torch.manual_seed(0)
    decoder = build_decoder("istft", TINY_ISTFT, HOP)
    z = torch.randn(2, 8, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        wav, spec = decoder(z, return_spectrum=True)
    assert wav.dtype == torch.float32 and spec.dtype == torch.complex64
    assert wav.shape == (2, 1, 6 * HOP)
    wav.pow(2).mean().backward()
    grads = [p.grad for p in decoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():  # the bf16 backbone stays close to the fp32 one
        torch.testing.assert_close(wav.detach(), decoder(z), atol=0.05, rtol=0.0)
