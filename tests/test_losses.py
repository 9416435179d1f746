"""Losses (against independent references) and discriminator shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nixdistill.distill.discriminators import (
    CombinedDiscriminator,
    MultiResolutionSTFTDiscriminator,
)
from nixdistill.distill.losses import (
    REFERENCE_RESOLUTIONS,
    LossError,
    STFTResolution,
    complex_stft_loss,
    discriminator_loss,
    feature_loss,
    generator_loss,
    kl_loss,
    mel_l1,
    mr_stft_loss,
    scaled_resolutions,
    spectral_losses,
    stft_consistency_loss,
    stft_magnitude,
)





def test_lsgan_on_constant_scores():
    a, b = 0.3, -0.6
    real = [torch.full((2, 5), a), torch.full((2, 3), a)]
    fake = [torch.full((2, 5), b), torch.full((2, 3), b)]
    d = discriminator_loss(real, fake)
    assert d.total.item() == pytest.approx(2 * ((1 - a) ** 2 + b**2))
    assert [x.item() for x in d.fake] == pytest.approx([b**2, b**2])
    g = generator_loss(fake)
    assert g.total.item() == pytest.approx(2 * (1 - b) ** 2)
    assert generator_loss([torch.ones(4, 7)]).total.item() == 0.0


def test_feature_loss_is_mean_abs_sum_and_detaches_real():
    r = [[torch.zeros(2, 3), torch.ones(1, 4)]]
    g = [[torch.full((2, 3), 2.0, requires_grad=True), torch.zeros(1, 4, requires_grad=True)]]
    r[0][0].requires_grad_(True)
    loss = feature_loss(r, g)
    assert loss.item() == pytest.approx(2.0 + 1.0)
    loss.backward()
    assert r[0][0].grad is None and g[0][0].grad is not None


def test_kl_matches_closed_form_per_element():
    torch.manual_seed(0)
    b, c, t = 2, 3, 5
    z_p, logs_q, m_p, logs_p = (torch.randn(b, c, t) for _ in range(4))
    mask = torch.ones(b, 1, t)
    mask[1, :, 3:] = 0
    got = kl_loss(z_p, logs_q, m_p, logs_p, mask)
    total, count = 0.0, 0
    for i in range(b):
        for k in range(t):
            if mask[i, 0, k] == 0:
                continue
            count += 1
            for j in range(c):
                lp, lq = logs_p[i, j, k].item(), logs_q[i, j, k].item()
                diff = z_p[i, j, k].item() - m_p[i, j, k].item()
                total += lp - lq - 0.5 + 0.5 * diff**2 / math.exp(2 * lp)
    assert got.item() == pytest.approx(total / count, rel=1e-5)


def test_mel_l1():
    a, b = torch.zeros(1, 4, 6), torch.full((1, 4, 6), -0.5)
    assert mel_l1(a, b).item() == pytest.approx(0.5)


def test_scaled_resolutions():
    assert scaled_resolutions(22050) == list(REFERENCE_RESOLUTIONS)
    assert scaled_resolutions(16000) == list(REFERENCE_RESOLUTIONS)
    eight = scaled_resolutions(8000)
    assert eight[0] == STFTResolution(512, 64, 512)
    assert all(n_fft & (n_fft - 1) == 0 for n_fft, _, _ in eight)
    assert scaled_resolutions(44100)[1] == STFTResolution(4096, 512, 4096)
    with pytest.raises(LossError):
        scaled_resolutions(0)


def test_mr_stft_identical_zero_and_numpy_reference():
    torch.manual_seed(0)
    y = torch.randn(2, 1, 1024)
    res = [STFTResolution(128, 32, 128), STFTResolution(256, 64, 200)]
    same = mr_stft_loss(y, y, res)
    assert same.total.item() == pytest.approx(0.0, abs=1e-6)
    y_hat = 0.5 * y
    out = mr_stft_loss(y_hat, y, res)
    # halving the signal: SC = 0.5 exactly and log-magnitude L1 = log 2 (up to the 1e-7 floor)
    assert out.spectral_convergence.item() == pytest.approx(0.5, rel=1e-3)
    assert out.log_magnitude.item() == pytest.approx(math.log(2.0), rel=1e-3)
    # independent numpy STFT for the first resolution
    n_fft, hop, win = res[0]
    x = np.pad(y[0, 0].numpy().astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    frames = np.stack([x[i:i + n_fft] * window for i in range(0, len(x) - n_fft + 1, hop)])
    mag_np = np.abs(np.fft.rfft(frames, axis=1)).T
    mag_t = stft_magnitude(y[:1], res[0])[0].numpy()
    np.testing.assert_allclose(mag_t, mag_np, rtol=1e-3, atol=1e-3)


def test_complex_stft_loss_sees_phase_that_magnitude_losses_miss():
    torch.manual_seed(0)
    y = torch.randn(2, 1, 2048)
    res = [STFTResolution(256, 64, 256), STFTResolution(512, 128, 512)]
    assert complex_stft_loss(y, y, res).item() == pytest.approx(0.0, abs=1e-9)
    # -y has the same magnitudes (MR-STFT ~ 0) but every phase turned by pi: with
    # X_c = |X|^c e^{i phase}, |(-X_c) - X_c|^2 = 4 |X|^(2c).
    assert mr_stft_loss(-y, y, res).total.item() == pytest.approx(0.0, abs=1e-5)
    flipped = complex_stft_loss(-y, y, res, power=0.3).item()
    expected = np.mean([4 * (stft_magnitude(y, r) ** 0.6).mean().item() for r in res])
    assert flipped == pytest.approx(expected, rel=1e-3)
    # gradients are finite on silence (the magnitude floor)
    y_hat = torch.zeros(1, 1, 2048, requires_grad=True)
    complex_stft_loss(y_hat, y[:1], res).backward()
    assert torch.isfinite(y_hat.grad).all()
    with pytest.raises(LossError, match="resolution"):
        complex_stft_loss(y, y, [])


def test_spectral_losses_in_one_pass_equal_the_direct_formulas():
    torch.manual_seed(1)
    y = torch.randn(2, 1, 2048)
    res = [STFTResolution(256, 64, 256), STFTResolution(512, 128, 400)]
    y_hat = (0.7 * y + 0.1 * torch.randn_like(y)).requires_grad_()
    both = spectral_losses(y_hat, y, res, power=0.3)
    total = both.stft.total + 3.0 * both.complex
    total.backward()
    grad_joint = y_hat.grad.clone()
    # the definitions written out directly, with autograd through them
    y_hat.grad = None
    sc, logmag, cx = [], [], []
    for r in res:
        s_hat, s = torch.stft(y_hat.squeeze(1), r.n_fft, r.hop_length, r.win_length,
                              torch.hann_window(r.win_length), return_complex=True), \
            torch.stft(y.squeeze(1), r.n_fft, r.hop_length, r.win_length,
                       torch.hann_window(r.win_length), return_complex=True)
        m_hat = torch.sqrt(torch.clamp(s_hat.abs() ** 2, min=1e-7))
        m = torch.sqrt(torch.clamp(s.abs() ** 2, min=1e-7))
        sc.append(torch.linalg.norm(m - m_hat) / torch.linalg.norm(m))
        logmag.append((torch.log(m) - torch.log(m_hat)).abs().mean())
        cx.append((s_hat * m_hat ** -0.7 - s * m ** -0.7).abs().pow(2).mean())
    direct_stft = torch.stack(sc).mean() + torch.stack(logmag).mean()
    direct_cx = torch.stack(cx).mean()
    (direct_stft + 3.0 * direct_cx).backward()
    assert both.stft.total.item() == pytest.approx(direct_stft.item(), rel=1e-5)
    assert both.complex.item() == pytest.approx(direct_cx.item(), rel=1e-5)
    torch.testing.assert_close(grad_joint, y_hat.grad, rtol=1e-4, atol=1e-7)
    # the single-loss entry points are the same computation
    assert mr_stft_loss(y_hat, y, res).total.item() == pytest.approx(both.stft.total.item())
    assert complex_stft_loss(y_hat, y, res).item() == pytest.approx(both.complex.item())
    only = spectral_losses(y_hat, y, res, stft=False)
    assert only.stft is None and only.complex is not None


def test_mr_stft_too_short_raises():
    with pytest.raises(LossError, match="segment"):
        mr_stft_loss(torch.zeros(1, 1, 300), torch.zeros(1, 1, 300), REFERENCE_RESOLUTIONS)


@pytest.mark.parametrize("n_scales", [1, 3])
def test_combined_discriminator_shapes_and_grads(n_scales):
    torch.manual_seed(0)
    periods = (2, 3, 5)
    disc = CombinedDiscriminator(periods, n_scales=n_scales, channel_scale=1 / 16)
    y, y_hat = torch.randn(2, 1, 500), torch.randn(2, 1, 500, requires_grad=True)
    out = disc(y, y_hat)
    k = n_scales + len(periods)
    assert len(out.y_d_rs) == len(out.y_d_gs) == len(out.fmap_rs) == k
    for r, g in zip(out.y_d_rs, out.y_d_gs):
        assert r.shape == g.shape and r.shape[0] == 2
    # real and generated halves are independent: changing y_hat leaves real scores unchanged
    out2 = disc(y, torch.randn(2, 1, 500))
    for a, b in zip(out.y_d_rs, out2.y_d_rs):
        torch.testing.assert_close(a, b)
    generator_loss(out.y_d_gs).total.backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0


def test_vits_default_layout():
    disc = CombinedDiscriminator()
    assert len(disc.discriminators) == 6  # DiscriminatorS + 5 DiscriminatorP (VITS)
    period = disc.discriminators[1]
    assert [c.out_channels for c in period.convs] == [32, 128, 512, 1024, 1024]
    assert [p.period for p in disc.discriminators[1:]] == [2, 3, 5, 7, 11]


def test_mrstft_discriminator():
    disc = MultiResolutionSTFTDiscriminator([STFTResolution(64, 16, 64)] * 2, channel_scale=0.25)
    out = disc(torch.randn(1, 1, 400), torch.randn(1, 1, 400))
    assert len(out.y_d_rs) == 2 and out.y_d_rs[0].shape == out.y_d_gs[0].shape


def test_stft_consistency_loss_is_zero_only_for_a_consistent_spectrum():
    """The STFT of a signal is consistent (loss 0); a random spectrum is not, and the loss
    pulls on the prediction; spectra of different shapes are refused."""
    from nixdistill.nn.stft import InverseSTFT

    torch.manual_seed(0)
    istft = InverseSTFT(256, 64)
    spec = istft.stft(torch.randn(2, 1, 40 * 64))
    out = istft.stft(istft(spec.real, spec.imag))
    assert stft_consistency_loss(spec, out).item() == pytest.approx(0.0, abs=1e-8)
    real = torch.randn(2, 129, 40, requires_grad=True)
    imag = torch.randn(2, 129, 40)
    pred = torch.complex(real, imag)
    loss = stft_consistency_loss(pred, istft.stft(istft(pred.real, pred.imag)))
    assert loss.item() > 0.1
    loss.backward()
    assert real.grad is not None and real.grad.abs().sum() > 0
    with pytest.raises(LossError, match="shapes"):
        stft_consistency_loss(spec, out[..., :-1])


def test_discriminators_on_magnitudes_alone():
    """Without periods and scales, only the MR-STFT discriminator judges (one output per
    resolution, gradients reach the generated audio); no discriminator at all is refused."""
    from nixdistill.distill.gan import Discriminators, DiscriminatorSettings
    from nixdistill.errors import ConfigError

    res = [STFTResolution(64, 16, 64), STFTResolution(128, 32, 128)]
    settings = DiscriminatorSettings.parse(
        {"periods": [], "n_scales": 0, "mrstft": True, "channel_scale": 0.25})
    disc = Discriminators(settings, res)
    assert disc.combined is None and len(disc.mrstft.discriminators) == 2
    y_hat = torch.randn(2, 1, 512, requires_grad=True)
    out = disc(torch.randn(2, 1, 512), y_hat)
    assert len(out.y_d_rs) == len(out.y_d_gs) == 2
    sum(g.pow(2).mean() for g in out.y_d_gs).backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0
    both = Discriminators(DiscriminatorSettings.parse({"periods": [2], "n_scales": 0,
                                                       "mrstft": True}), res)
    assert len(both(torch.randn(1, 1, 512), torch.randn(1, 1, 512)).y_d_rs) == 3
    with pytest.raises(ConfigError, match="periods"):
        DiscriminatorSettings.parse({"periods": [], "n_scales": 0})
