"""The adversarial part shared by ``teach`` and ``distil-decoder``: one discriminator settings
schema, the discriminator module built from it, and the LSGAN step (discriminator first, then the
generator's adversarial and feature-matching terms), as in jaywalnut310/vits ``train.py`` and
jik876/hifi-gan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from nixdistill.config import from_dict
from nixdistill.errors import ConfigError
from nixdistill.distill.discriminators import (CombinedDiscriminator, DiscriminatorOutput,
                              MultiResolutionSTFTDiscriminator)
from nixdistill.distill.losses import STFTResolution, discriminator_loss, feature_loss, generator_loss
from nixdistill.distill.context import StepContext

__all__ = ["DiscriminatorSettings", "Discriminators", "discriminator_step", "adversarial_terms"]


@dataclass
class DiscriminatorSettings:
    """``train.extra.discriminator`` of the teach and distil-decoder stages.

    Attributes:
        periods: MPD periods in samples (HiFi-GAN / VITS: 2, 3, 5, 7, 11).
        n_scales: MSD scale discriminators (VITS: 1; HiFi-GAN: 3).
        channel_scale: width multiplier of every sub-discriminator (tests: 1/16).
        use_spectral_norm: spectral instead of weight norm (VITS: False).
        mrstft: add a multi-resolution STFT discriminator at the MR-STFT loss resolutions.
            With ``periods: []`` and ``n_scales: 0`` it is the only one, on log magnitudes.
            On a CPU it is not the cheap choice: at 1/4 width a decoder step costs about 12x a
            reconstruction-only step, against 3x with MPD and MSD at 1/16 width
            (docs/EXPERIMENTS.md, "A discriminator on STFT magnitudes alone").
    """

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    n_scales: int = 1
    channel_scale: float = 1.0
    use_spectral_norm: bool = False
    mrstft: bool = False

    def __post_init__(self) -> None:
        if self.channel_scale <= 0:
            raise ConfigError("train.extra.discriminator.channel_scale must be positive")
        if not (self.periods or self.n_scales or self.mrstft):
            raise ConfigError("train.extra.discriminator needs periods, n_scales > 0 or mrstft")

    @classmethod
    def parse(cls, value: DiscriminatorSettings | dict[str, Any]) -> DiscriminatorSettings:
        """The settings from their JSON object (``train.extra.discriminator``), or as given.

        Raises:
            ConfigError: unknown keys or bad values.
        """
        if isinstance(value, cls):
            return value
        return from_dict(cls, value, "train.extra.discriminator")


class Discriminators(nn.Module):
    """:class:`CombinedDiscriminator` (MPD + MSD) and an optional MR-STFT discriminator, their
    outputs joined; without periods and scales, the MR-STFT discriminator alone.

    Forward: ``y, y_hat [B, 1, T_samples] -> DiscriminatorOutput`` over all sub-discriminators.
    """

    def __init__(self, settings: DiscriminatorSettings, resolutions: Sequence[STFTResolution]):
        super().__init__()
        waveform = bool(settings.periods) or settings.n_scales > 0
        self.combined = (CombinedDiscriminator(settings.periods, settings.n_scales,
                                               settings.channel_scale, settings.use_spectral_norm)
                         if waveform else None)
        self.mrstft = (MultiResolutionSTFTDiscriminator(resolutions, settings.channel_scale)
                       if settings.mrstft else None)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscriminatorOutput:
        parts = [d(y, y_hat) for d in (self.combined, self.mrstft) if d is not None]
        out = parts[0]
        for extra in parts[1:]:
            for mine, theirs in zip(out, extra):
                mine.extend(theirs)
        return out


def discriminator_step(ctx: StepContext, name: str, y: torch.Tensor,
                       y_hat: torch.Tensor) -> torch.Tensor:
    """One LSGAN discriminator step of module/optimiser ``name``: real ``y`` against the
    detached ``y_hat`` (both [B, 1, T_samples]).

    Returns:
        the discriminator loss (detached scalar).
    """
    with ctx.autocast():
        d = ctx.model(name)(y, y_hat.detach())
    loss = discriminator_loss(d.y_d_rs, d.y_d_gs).total
    ctx.optimize(name, loss)
    return loss.detach()


def adversarial_terms(ctx: StepContext, name: str, y: torch.Tensor, y_hat: torch.Tensor,
                      adv: bool = True, fm: bool = True) -> dict[str, torch.Tensor]:
    """The generator's ``adv`` (LSGAN) and ``fm`` (feature matching) terms against the
    discriminator ``name`` (call after :func:`discriminator_step`).

    Returns:
        ``{"adv": ..., "fm": ...}`` (unweighted scalars; a term switched off is left out).
    """
    with ctx.autocast():
        d = ctx.model(name)(y, y_hat)
    terms: dict[str, torch.Tensor] = {}
    if adv:
        terms["adv"] = generator_loss(d.y_d_gs).total
    if fm:
        terms["fm"] = feature_loss(d.fmap_rs, d.fmap_gs)
    return terms
