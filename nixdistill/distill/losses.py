"""Training losses, as pure functions of tensors (no state, no modules).

Sources:
    * LSGAN adversarial and feature-matching losses: jik876/hifi-gan ``models.py`` and
      jaywalnut310/vits ``losses.py`` (Mao et al. 2017, "Least Squares GANs").
    * KL between posterior sample and prior: jaywalnut310/vits ``losses.kl_loss`` (VITS eq. 3-4,
      Kim et al. 2021).
    * Multi-resolution STFT loss (spectral convergence + log-magnitude L1): kan-bayashi
      ParallelWaveGAN ``parallel_wavegan/losses/stft_loss.py`` (Yamamoto et al. 2020, eq. 1-4).
    * Compressed complex spectral loss: Braun & Tashev 2021, "A consolidated view of loss
      functions for supervised deep learning-based speech enhancement", eq. 6 (c = 0.3).

All losses are computed in float32 whatever the autocast dtype of their inputs.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from nixdistill.errors import LossError
from nixdistill.nn.stft import (MAGNITUDE_FLOOR, REFERENCE_RESOLUTIONS, REFERENCE_SAMPLE_RATE,
                      STFTResolution, scaled_resolutions, stft_complex, stft_magnitude)

__all__ = [
    "LossError",
    "DiscriminatorLoss",
    "GeneratorLoss",
    "STFTLoss",
    "STFTResolution",
    "REFERENCE_SAMPLE_RATE",
    "REFERENCE_RESOLUTIONS",
    "discriminator_loss",
    "generator_loss",
    "feature_loss",
    "kl_loss",
    "mel_l1",
    "scaled_resolutions",
    "stft_magnitude",
    "mr_stft_loss",
    "complex_stft_loss",
    "stft_consistency_loss",
    "SpectralLosses",
    "spectral_losses",
]


class DiscriminatorLoss(NamedTuple):
    """``total`` = Σ_k (real_k + fake_k); ``real``/``fake`` hold one scalar per discriminator."""

    total: torch.Tensor
    real: list[torch.Tensor]
    fake: list[torch.Tensor]


class GeneratorLoss(NamedTuple):
    """``total`` = Σ_k per_discriminator_k."""

    total: torch.Tensor
    per_discriminator: list[torch.Tensor]


class STFTLoss(NamedTuple):
    """Multi-resolution STFT loss; ``total`` = spectral_convergence + log_magnitude, each
    averaged over the resolutions."""

    total: torch.Tensor
    spectral_convergence: torch.Tensor
    log_magnitude: torch.Tensor


def discriminator_loss(
    real_outputs: Sequence[torch.Tensor], fake_outputs: Sequence[torch.Tensor]
) -> DiscriminatorLoss:
    """LSGAN discriminator loss, Σ_k mean((1 - D_k(y))²) + mean(D_k(ŷ)²).

    Args:
        real_outputs: per-discriminator scores on real audio, each [B, ...].
        fake_outputs: per-discriminator scores on generated audio (detached), same shapes.
    Returns:
        DiscriminatorLoss(total scalar, real [K scalars], fake [K scalars]).
    Source: jaywalnut310/vits ``losses.discriminator_loss``.
    """
    real_losses, fake_losses = [], []
    for d_real, d_fake in zip(real_outputs, fake_outputs, strict=True):
        real_losses.append(torch.mean((1.0 - d_real.float()) ** 2))
        fake_losses.append(torch.mean(d_fake.float() ** 2))
    total = torch.stack(real_losses).sum() + torch.stack(fake_losses).sum()
    return DiscriminatorLoss(total, real_losses, fake_losses)


def generator_loss(fake_outputs: Sequence[torch.Tensor]) -> GeneratorLoss:
    """LSGAN generator loss, Σ_k mean((1 - D_k(ŷ))²).

    Args:
        fake_outputs: per-discriminator scores on generated audio, each [B, ...].
    Returns:
        GeneratorLoss(total scalar, per_discriminator [K scalars]).
    Source: jaywalnut310/vits ``losses.generator_loss``.
    """
    losses = [torch.mean((1.0 - d.float()) ** 2) for d in fake_outputs]
    return GeneratorLoss(torch.stack(losses).sum(), losses)


def feature_loss(
    real_fmaps: Sequence[Sequence[torch.Tensor]], fake_fmaps: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Feature-matching loss, Σ_k Σ_l mean(|F_kl(y) - F_kl(ŷ)|), real features detached.

    Unlike jaywalnut310/vits and jik876/hifi-gan, this does *not* multiply by 2: the factor is
    the loss weight (``loss_weights["fm"]``, default 2 in the teach stage), so that every weight
    is visible in the config.

    Args:
        real_fmaps: per discriminator, a list of feature maps on real audio.
        fake_fmaps: the same on generated audio.
    Returns:
        scalar tensor.
    """
    terms = [
        torch.mean(torch.abs(r.float().detach() - g.float()))
        for fr, fg in zip(real_fmaps, fake_fmaps, strict=True)
        for r, g in zip(fr, fg, strict=True)
    ]
    return torch.stack(terms).sum()


def kl_loss(
    z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor,
    z_mask: torch.Tensor,
) -> torch.Tensor:
    """KL(q(z|x) ‖ p(z|c)) estimated at the flowed posterior sample ``z_p = f(z)``.

    ``kl = logs_p - logs_q - 1/2 + 1/2 (z_p - m_p)² exp(-2 logs_p)``, summed over valid
    elements and divided by the number of valid mask entries (VITS eq. 3-4).

    Args:
        z_p: flowed posterior sample, [B, inter, T_frames].
        logs_q: posterior log-std, [B, inter, T_frames].
        m_p / logs_p: prior mean and log-std expanded to frames, [B, inter, T_frames].
        z_mask: validity mask, [B, 1, T_frames] (1 valid, 0 padding).
    Returns:
        scalar tensor (nats per masked frame; the channel sum is *not* averaged, as in VITS).
    Source: jaywalnut310/vits ``losses.kl_loss``.
    """
    z_p, logs_q, m_p, logs_p = z_p.float(), logs_q.float(), m_p.float(), logs_p.float()
    z_mask = z_mask.float()
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)


def mel_l1(mel_hat: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between log-mel spectrograms, [B, n_mels, T_frames] each.

    Source: jaywalnut310/vits ``train.py`` (``F.l1_loss(y_mel, y_hat_mel)``).
    """
    return F.l1_loss(mel_hat.float(), mel.float())


class SpectralLosses(NamedTuple):
    """Both spectral losses of one pass (:func:`spectral_losses`); ``None`` where not asked."""

    stft: STFTLoss | None
    complex: torch.Tensor | None


def _spectrum_and_magnitude(y: torch.Tensor,
                            res: STFTResolution) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, |X|)`` of one STFT: complex [B, F, T] and its magnitude floored as in
    :func:`stft_magnitude` (``sqrt(clamp(|X|², 1e-7))``), [B, F, T]."""
    spec = stft_complex(y, res)
    return spec, torch.clamp(spec.abs(), min=MAGNITUDE_FLOOR ** 0.5)


def spectral_losses(
    y_hat: torch.Tensor, y: torch.Tensor, resolutions: Sequence[STFTResolution],
    stft: bool = True, complex: bool = True, power: float = 0.3,
) -> SpectralLosses:
    """The multi-resolution STFT loss and the compressed complex loss from one STFT per signal
    and resolution.

    Both losses read the same spectra, so computing them together halves the STFTs and shares
    the magnitude and its logarithm: on a 2-core CPU this is most of a reconstruction-only
    decoder step (16 x 8192 samples, three resolutions). The results equal
    :func:`mr_stft_loss` and :func:`complex_stft_loss`, which call this.

    Args:
        y_hat: generated waveform, [B, 1, T_samples] or [B, T_samples].
        y: target waveform, same shape, sample-aligned with ``y_hat`` (no gradient needed).
        resolutions: (n_fft, hop_length, win_length) in samples.
        stft / complex: which losses to compute.
        power: compression exponent ``c`` of the complex loss.
    Returns:
        SpectralLosses(stft: STFTLoss or None, complex: scalar or None).
    Raises:
        LossError: for an empty resolution list or a signal shorter than an STFT.
    Source: see :func:`mr_stft_loss` and :func:`complex_stft_loss`.
    """
    if not resolutions:
        raise LossError("spectral losses need at least one STFT resolution")
    sc_terms, mag_terms, complex_terms = [], [], []
    for res in resolutions:
        spec_hat, mag_hat = _spectrum_and_magnitude(y_hat, res)
        with torch.no_grad():
            spec, mag = _spectrum_and_magnitude(y.detach(), res)
            log_mag = torch.log(mag)
        log_mag_hat = torch.log(mag_hat)
        if stft:
            sc_terms.append(torch.linalg.norm(mag - mag_hat) / torch.linalg.norm(mag))
            mag_terms.append(F.l1_loss(log_mag_hat, log_mag))
        if complex:
            # X_c = X · |X|^(c-1); the mean of |.|² over complex bins is twice the mean of the
            # squared real and imaginary parts
            diff = (spec_hat * torch.exp((power - 1.0) * log_mag_hat)
                    - spec * torch.exp((power - 1.0) * log_mag))
            complex_terms.append(2.0 * torch.view_as_real(diff).pow(2).mean())
    stft_loss = None
    if stft:
        sc, mag_loss = torch.stack(sc_terms).mean(), torch.stack(mag_terms).mean()
        stft_loss = STFTLoss(sc + mag_loss, sc, mag_loss)
    return SpectralLosses(stft_loss, torch.stack(complex_terms).mean() if complex else None)


def mr_stft_loss(
    y_hat: torch.Tensor, y: torch.Tensor, resolutions: Sequence[STFTResolution]
) -> STFTLoss:
    """Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN eq. 1-4).

    For each resolution: spectral convergence ``‖|Y| - |Ŷ|‖_F / ‖|Y|‖_F`` and log-magnitude
    ``mean(|log|Y| - log|Ŷ||)``; each term is averaged over the resolutions. ``y`` is the
    target: no gradient flows into it.

    Args:
        y_hat: generated waveform, [B, 1, T_samples] or [B, T_samples].
        y: target waveform, same shape.
        resolutions: (n_fft, hop_length, win_length) in samples, e.g. ``scaled_resolutions(sr)``.
    Returns:
        STFTLoss(total, spectral_convergence, log_magnitude), scalars.
    Raises:
        LossError: for an empty resolution list or a signal shorter than an STFT.
    Source: kan-bayashi ParallelWaveGAN ``losses/stft_loss.py``.
    """
    return spectral_losses(y_hat, y, resolutions, stft=True, complex=False).stft


def complex_stft_loss(
    y_hat: torch.Tensor, y: torch.Tensor, resolutions: Sequence[STFTResolution],
    power: float = 0.3,
) -> torch.Tensor:
    """Compressed complex spectral loss: ``mean |Ŷ_c - Y_c|²`` with ``X_c = |X|^c e^{i∠X}``.

    Unlike the magnitude losses it also constrains the phase, which matters when the target is
    one deterministic waveform for the input (the teacher's decoder output for the same ``z``);
    the power-law compression keeps loud bins from dominating. Averaged over the resolutions;
    ``|X|`` is floored as in :func:`stft_magnitude` so the gradient stays finite at 0.

    Args:
        y_hat: generated waveform, [B, 1, T_samples] or [B, T_samples].
        y: target waveform, same shape, sample-aligned with ``y_hat``.
        resolutions: (n_fft, hop_length, win_length) in samples.
        power: compression exponent ``c`` (0.3 in the source).
    Returns:
        scalar loss.
    Raises:
        LossError: for an empty resolution list or a signal shorter than an STFT.
    Source: Braun & Tashev 2021 (arXiv:2009.12286), eq. 6 with the magnitude term left to
        :func:`mr_stft_loss`.
    """
    return spectral_losses(y_hat, y, resolutions, stft=False, complex=True, power=power).complex


def stft_consistency_loss(spec: torch.Tensor, spec_of_output: torch.Tensor,
                          power: float = 0.3) -> torch.Tensor:
    """STFT consistency loss of an iSTFT decoder: ``mean |S_c - S̃_c|²``, ``X_c = |X|^c e^{i∠X}``.

    ``S`` is the spectrum the decoder predicted and ``S̃`` the STFT (same frames and window) of
    the waveform its iSTFT made from ``S``. With 75 % frame overlap most predicted spectra are
    not the spectrum of any signal, and a decoder trained on reconstruction losses alone learns
    to rely on overlapping frames cancelling each other; this term asks each predicted frame to
    be the output's own frame. Gradients flow into both arguments, as in the source. The
    power-law compression is that of :func:`complex_stft_loss`.

    Args:
        spec: predicted complex spectrum, [B, F, T_frames].
        spec_of_output: the STFT of the decoder's output waveform, [B, F, T_frames].
        power: compression exponent ``c``.
    Returns:
        scalar loss.
    Raises:
        LossError: when the two spectra differ in shape.
    Source: Ai & Ling 2023, APNet (IEEE/ACM TASLP), the STFT consistency loss, there on
        uncompressed real and imaginary parts.
    """
    if spec.shape != spec_of_output.shape:
        raise LossError(f"consistency loss: spectra of shapes {tuple(spec.shape)} and "
                        f"{tuple(spec_of_output.shape)}")

    def compressed(x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x.abs(), min=MAGNITUDE_FLOOR ** 0.5).pow(power - 1.0)

    diff = compressed(spec_of_output) - compressed(spec)
    return 2.0 * torch.view_as_real(diff).pow(2).mean()
