"""GAN discriminators used only during training (teach and distil-decoder stages).

* :class:`PeriodDiscriminator` / :class:`ScaleDiscriminator`: jik876/hifi-gan ``models.py``
  (``DiscriminatorP``, ``DiscriminatorS``), as used by jaywalnut310/vits ``models.py``.
* :class:`CombinedDiscriminator`: VITS' ``MultiPeriodDiscriminator`` (one scale discriminator on
  raw audio plus one period discriminator per period), generalised to ``n_scales`` scale
  discriminators on average-pooled audio as in HiFi-GAN's ``MultiScaleDiscriminator``.
* :class:`ResolutionDiscriminator`: a UnivNet-style (Jang et al. 2021) discriminator on
  log-magnitude spectrograms, combined in :class:`MultiResolutionSTFTDiscriminator`.

Every discriminator takes ``channel_scale`` to shrink all hidden widths (tests use 1/16).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from nixdistill.nn.layers import LRELU_SLOPE
from nixdistill.nn.stft import STFTResolution, stft_magnitude

__all__ = [
    "LRELU_SLOPE",
    "DiscriminatorOutput",
    "PeriodDiscriminator",
    "ScaleDiscriminator",
    "ResolutionDiscriminator",
    "CombinedDiscriminator",
    "MultiResolutionSTFTDiscriminator",
]

# HiFi-GAN DiscriminatorP: (in -> out) widths, kernel 5 stride 3 along the period axis.
PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)
PERIOD_KERNEL = 5
PERIOD_STRIDE = 3
# HiFi-GAN DiscriminatorS: widths, kernels, strides and groups of its six convolutions.
SCALE_CHANNELS = (16, 64, 256, 1024, 1024, 1024)
SCALE_KERNELS = (15, 41, 41, 41, 41, 5)
SCALE_STRIDES = (1, 4, 4, 4, 4, 1)
SCALE_GROUPS = (1, 4, 16, 64, 256, 1)
# HiFi-GAN MultiScaleDiscriminator pooling between scales: AvgPool1d(4, 2, padding=2).
SCALE_POOL = (4, 2, 2)
# UnivNet MRD: 2-D convs of 32 channels.
RESOLUTION_CHANNELS = 32


def _conv_stack(x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module,
                fmap: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The shared discriminator body (HiFi-GAN): leaky-ReLU conv stack, then a 1-channel
    output conv. Appends every activation to ``fmap`` (for feature matching) and returns
    (flattened scores [B, N], fmap)."""
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap

class DiscriminatorOutput(NamedTuple):
    """Scores and feature maps of K sub-discriminators on real (r) and generated (g) audio.

    ``y_d_rs[k]``/``y_d_gs[k]``: [B, N_k] flattened scores; ``fmap_rs[k]``/``fmap_gs[k]``: lists
    of intermediate activations (the input of every leaky ReLU's output and the final conv).
    """

    y_d_rs: list[torch.Tensor]
    y_d_gs: list[torch.Tensor]
    fmap_rs: list[list[torch.Tensor]]
    fmap_gs: list[list[torch.Tensor]]


def _width(base: int, channel_scale: float, multiple: int = 1) -> int:
    """``base * channel_scale`` rounded up to a positive multiple of ``multiple``."""
    return max(multiple, math.ceil(base * channel_scale / multiple) * multiple)


def _norm(use_spectral_norm: bool):
    return spectral_norm if use_spectral_norm else weight_norm


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: audio folded into [B, 1, T/period, period], 2-D convs.

    Args:
        period: fold period in samples.
        channel_scale: multiplier of the hidden widths (1.0 = HiFi-GAN).
        use_spectral_norm: spectral instead of weight normalisation.
    Forward:
        x [B, 1, T_samples] -> (score [B, N], fmap list of [B, C, T', period]).
    Source: jik876/hifi-gan ``DiscriminatorP``.
    """

    def __init__(self, period: int, channel_scale: float = 1.0, use_spectral_norm: bool = False):
        super().__init__()
        self.period = period
        norm = _norm(use_spectral_norm)
        widths = [_width(c, channel_scale) for c in PERIOD_CHANNELS]
        pad = (PERIOD_KERNEL // 2, 0)
        convs, c_in = [], 1
        for i, c_out in enumerate(widths):
            stride = (PERIOD_STRIDE, 1) if i < len(widths) - 1 else (1, 1)
            convs.append(norm(nn.Conv2d(c_in, c_out, (PERIOD_KERNEL, 1), stride, padding=pad)))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        return _conv_stack(x, self.convs, self.conv_post, fmap)


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN scale discriminator: grouped strided 1-D convs on raw audio.

    Args:
        channel_scale: multiplier of the hidden widths (groups shrink with them).
        use_spectral_norm: spectral instead of weight normalisation.
    Forward:
        x [B, 1, T_samples] -> (score [B, N], fmap list of [B, C, T']).
    Source: jik876/hifi-gan ``DiscriminatorS``.
    """

    def __init__(self, channel_scale: float = 1.0, use_spectral_norm: bool = False):
        super().__init__()
        norm = _norm(use_spectral_norm)
        convs, c_in = [], 1
        for c_base, k, s, g_base in zip(SCALE_CHANNELS, SCALE_KERNELS, SCALE_STRIDES, SCALE_GROUPS):
            groups = max(1, min(g_base, round(g_base * channel_scale)))
            groups = math.gcd(groups, c_in)
            c_out = _width(c_base, channel_scale, groups)
            convs.append(norm(nn.Conv1d(c_in, c_out, k, s, groups=groups, padding=k // 2)))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(c_in, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        return _conv_stack(x, self.convs, self.conv_post, fmap)


def _run_all(discs: Sequence[nn.Module], inputs_r: Sequence[torch.Tensor],
             inputs_g: Sequence[torch.Tensor]) -> DiscriminatorOutput:
    out = DiscriminatorOutput([], [], [], [])
    for d, y, y_hat in zip(discs, inputs_r, inputs_g, strict=True):
        # Real and generated share one forward (half the kernel launches); split afterwards.
        score, fmap = d(torch.cat([y, y_hat], dim=0))
        n = y.shape[0]
        out.y_d_rs.append(score[:n])
        out.y_d_gs.append(score[n:])
        out.fmap_rs.append([f[:n] for f in fmap])
        out.fmap_gs.append([f[n:] for f in fmap])
    return out


class CombinedDiscriminator(nn.Module):
    """Scale discriminators plus period discriminators (VITS ``MultiPeriodDiscriminator``).

    The default (``n_scales=1``, periods 2, 3, 5, 7, 11, weight norm) is exactly VITS. With
    ``n_scales > 1`` the s-th scale discriminator sees audio average-pooled s times
    (``AvgPool1d(4, 2, padding=2)``), as in HiFi-GAN's MSD.

    Args:
        periods: fold periods of the period discriminators, in samples.
        n_scales: number of scale discriminators (0 disables them).
        channel_scale: width multiplier for every sub-discriminator (1.0 = original).
        use_spectral_norm: spectral normalisation on every sub-discriminator (VITS: False).
    Forward:
        y, y_hat [B, 1, T_samples] -> DiscriminatorOutput with K = n_scales + len(periods).
    Raises:
        ValueError: when there is no sub-discriminator at all.
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), n_scales: int = 1,
                 channel_scale: float = 1.0, use_spectral_norm: bool = False):
        super().__init__()
        if n_scales + len(periods) == 0:
            raise ValueError("CombinedDiscriminator needs at least one scale or period")
        self.n_scales = n_scales
        self.pool = nn.AvgPool1d(*SCALE_POOL)
        discs: list[nn.Module] = [ScaleDiscriminator(channel_scale, use_spectral_norm)
                                  for _ in range(n_scales)]
        discs += [PeriodDiscriminator(p, channel_scale, use_spectral_norm) for p in periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscriminatorOutput:
        inputs_r, inputs_g = [], []
        r, g = y, y_hat
        for s in range(self.n_scales):
            if s > 0:
                r, g = self.pool(r), self.pool(g)
            inputs_r.append(r)
            inputs_g.append(g)
        inputs_r += [y] * (len(self.discriminators) - self.n_scales)
        inputs_g += [y_hat] * (len(self.discriminators) - self.n_scales)
        return _run_all(self.discriminators, inputs_r, inputs_g)


class ResolutionDiscriminator(nn.Module):
    """UnivNet-style discriminator on a log-magnitude spectrogram [B, 1, T_frames, n_freqs].

    Args:
        resolution: STFT setting in samples.
        channel_scale: width multiplier (32 channels at 1.0).
    Forward:
        x [B, 1, T_samples] -> (score [B, N], fmap list).
    Source: Jang et al. 2021 (UnivNet) MRD; convolution layout as in descript-audio-codec.
    """

    def __init__(self, resolution: STFTResolution, channel_scale: float = 1.0):
        super().__init__()
        self.resolution = resolution
        ch = _width(RESOLUTION_CHANNELS, channel_scale)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, ch, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
        ])
        self.conv_post = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        mag = stft_magnitude(x, self.resolution)  # [B, n_freqs, T_frames]
        x = torch.log(mag).transpose(1, 2).unsqueeze(1).to(x.dtype)  # [B, 1, T_frames, n_freqs]
        fmap = []
        return _conv_stack(x, self.convs, self.conv_post, fmap)


class MultiResolutionSTFTDiscriminator(nn.Module):
    """One :class:`ResolutionDiscriminator` per STFT resolution.

    Forward: y, y_hat [B, 1, T_samples] -> DiscriminatorOutput with K = len(resolutions).
    """

    def __init__(self, resolutions: Sequence[STFTResolution], channel_scale: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [ResolutionDiscriminator(STFTResolution(*r), channel_scale) for r in resolutions])

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscriminatorOutput:
        k = len(self.discriminators)
        return _run_all(self.discriminators, [y] * k, [y_hat] * k)
