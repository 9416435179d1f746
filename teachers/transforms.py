"""Monotonic rational-quadratic spline with linear tails (Durkan et al. 2019, "Neural Spline
Flows"), as used by the VITS stochastic duration predictor's ``ConvFlow``.

Source of the algorithm: jaywalnut310/vits ``transforms.py`` (itself from bayesiains/nflows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Lower bounds that keep bins and slopes away from zero (nflows defaults).
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
#: Tolerance added to the last knot so the right edge falls into the last bin.
SEARCH_EPS = 1e-6


def _searchsorted(bin_locations: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Index of the bin holding each input, [...]; ``bin_locations`` is [..., K + 1]."""
    bin_locations = bin_locations.clone()
    bin_locations[..., -1] += SEARCH_EPS
    return torch.sum(inputs[..., None] >= bin_locations, dim=-1) - 1


def unconstrained_rational_quadratic_spline(
    inputs: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    inverse: bool = False,
    tail_bound: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spline on ``[-tail_bound, tail_bound]``, identity outside ("linear" tails).

    Args:
        inputs: values, [...].
        unnormalized_widths / unnormalized_heights: bin logits, [..., K].
        unnormalized_derivatives: inner-knot slopes before softplus, [..., K - 1].
        inverse: evaluate the inverse transform.
        tail_bound: half-width of the spline interval.
    Returns:
        (outputs [...], logabsdet [...]) of the (inverse) transform at each input.
    """
    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    outputs = torch.where(inside, torch.zeros_like(inputs), inputs)
    logabsdet = torch.zeros_like(inputs)
    # boundary slopes fixed so that softplus(constant) + MIN_DERIVATIVE == 1 (matches the tails)
    constant = math.log(math.exp(1 - MIN_DERIVATIVE) - 1)
    derivatives = F.pad(unnormalized_derivatives, (1, 1), value=constant)
    if inside.any():
        out_in, lad_in = rational_quadratic_spline(
            inputs[inside],
            unnormalized_widths[inside, :],
            unnormalized_heights[inside, :],
            derivatives[inside, :],
            inverse=inverse,
            left=-tail_bound,
            right=tail_bound,
            bottom=-tail_bound,
            top=tail_bound,
        )
        outputs = outputs.masked_scatter(inside, out_in)
        logabsdet = logabsdet.masked_scatter(inside, lad_in)
    return outputs, logabsdet


def _knots(unnormalized: torch.Tensor, low: float, high: float, min_size: float):
    """Cumulative knot positions [..., K + 1] and bin sizes [..., K] on ``[low, high]``."""
    num_bins = unnormalized.shape[-1]
    sizes = min_size + (1 - min_size * num_bins) * torch.softmax(unnormalized, dim=-1)
    cum = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0)
    cum = (high - low) * cum + low
    cum = torch.cat([torch.full_like(cum[..., :1], low), cum[..., 1:-1],
                     torch.full_like(cum[..., :1], high)], dim=-1)
    return cum, cum[..., 1:] - cum[..., :-1]


def rational_quadratic_spline(
    inputs: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    inverse: bool = False,
    left: float = 0.0,
    right: float = 1.0,
    bottom: float = 0.0,
    top: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rational-quadratic spline on ``[left, right] -> [bottom, top]`` (Durkan et al. eq. 4-6).

    Args:
        inputs: [N] values inside the interval.
        unnormalized_widths / unnormalized_heights: [N, K].
        unnormalized_derivatives: [N, K + 1] knot slopes before softplus.
    Returns:
        (outputs [N], logabsdet [N]).
    """
    cumwidths, widths = _knots(unnormalized_widths, left, right, MIN_BIN_WIDTH)
    cumheights, heights = _knots(unnormalized_heights, bottom, top, MIN_BIN_HEIGHT)
    derivatives = MIN_DERIVATIVE + F.softplus(unnormalized_derivatives)

    bin_idx = _searchsorted(cumheights if inverse else cumwidths, inputs)[..., None]

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, bin_idx)[..., 0]

    in_cumwidths, in_widths = pick(cumwidths), pick(widths)
    in_cumheights, in_heights = pick(cumheights), pick(heights)
    delta = heights / widths
    in_delta = pick(delta)
    in_d0 = pick(derivatives)
    in_d1 = derivatives[..., 1:].gather(-1, bin_idx)[..., 0]
    slope_sum = in_d0 + in_d1 - 2 * in_delta

    if inverse:
        dy = inputs - in_cumheights
        a = dy * slope_sum + in_heights * (in_delta - in_d0)
        b = in_heights * in_d0 - dy * slope_sum
        c = -in_delta * dy
        discriminant = b.pow(2) - 4 * a * c
        theta = (2 * c) / (-b - torch.sqrt(discriminant))
        outputs = theta * in_widths + in_cumwidths
    else:
        theta = (inputs - in_cumwidths) / in_widths

    theta_one_minus_theta = theta * (1 - theta)
    denominator = in_delta + slope_sum * theta_one_minus_theta
    derivative_numerator = in_delta.pow(2) * (
        in_d1 * theta.pow(2) + 2 * in_delta * theta_one_minus_theta + in_d0 * (1 - theta).pow(2)
    )
    logabsdet = torch.log(derivative_numerator) - 2 * torch.log(denominator)
    if inverse:
        return outputs, -logabsdet
    numerator = in_heights * (in_delta * theta.pow(2) + in_d0 * theta_one_minus_theta)
    return in_cumheights + numerator / denominator, logabsdet
