"""Alignment, duration and latent-distillation losses of the student encoder (pure functions).

Sources:
- Badlani et al. 2022, "One TTS Alignment To Rule Them All" (arXiv 2108.10447): forward-sum
  (CTC) loss, eq. 5-6, and binarization loss, eq. 8; RAD-TTS (NVIDIA/radtts ``loss.py``)
  prepends a constant blank log-probability before the CTC.
- Chevi et al. 2022, Nix-TTS (arXiv 2203.15643): encoder distillation with a KL term on the
  teacher latents plus the alignment and duration losses.

The unofficial Nix-TTS port started the binarization loss at step 18k and did not normalise the
duration loss by the token count; here the bin loss ramps in early (:func:`bin_loss_weight`) and
every loss is a per-token / per-frame mean.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = [
    "forward_sum_loss",
    "bin_loss",
    "bin_loss_weight",
    "duration_loss",
    "duration_nll_loss",
    "gaussian_kl_loss",
    "gaussian_nll_loss",
]

_LOG_2PI = math.log(2 * math.pi)


def forward_sum_loss(
    attn_logprob: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor,
    blank_logprob: float = -1.0,
) -> torch.Tensor:
    """Forward-sum (CTC) alignment loss, Badlani et al. 2022 eq. 5-6.

    Each item is a CTC problem whose target is the token sequence ``1..T_text`` and whose
    "emissions" are the attention log-probabilities of every frame, with a constant blank
    (class 0, value ``blank_logprob``) prepended and a log-softmax over blank + tokens. The loss
    is CTC's default per-target-length mean, averaged over the batch.

    Args:
        attn_logprob: [B, 1, T_frames, T_text] log attention (padded tokens may hold any value).
        x_lengths: valid tokens, [B].
        y_lengths: valid frames, [B].
        blank_logprob: log-probability of the blank before renormalisation.
    Returns:
        scalar loss (nats per token).
    """
    logprob = F.pad(attn_logprob.squeeze(1), (1, 0), value=blank_logprob)  # [B, T_frames, 1+T_text]
    total = attn_logprob.new_zeros(())
    for b in range(logprob.shape[0]):
        n_text, n_frames = int(x_lengths[b]), int(y_lengths[b])
        item = logprob[b, :n_frames, : n_text + 1].unsqueeze(1)  # [T_frames, 1, 1+T_text]
        item = torch.log_softmax(item, dim=2)
        target = torch.arange(1, n_text + 1, device=logprob.device).unsqueeze(0)
        total = total + F.ctc_loss(
            item, target,
            input_lengths=torch.tensor([n_frames], device=logprob.device),
            target_lengths=torch.tensor([n_text], device=logprob.device),
            blank=0, reduction="mean", zero_infinity=True,
        )
    return total / logprob.shape[0]


def bin_loss(hard_attn: torch.Tensor, soft_attn: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Binarization loss, Badlani et al. 2022 eq. 8: ``-Σ log soft[hard = 1] / Σ hard``.

    Pulls the soft alignment towards the MAS path.

    Args:
        hard_attn: 0/1 path, [B, 1, T_frames, T_text] (no gradient needed).
        soft_attn: soft attention, same shape, rows are probabilities.
        eps: floor inside the log.
    Returns:
        scalar loss (nats per aligned frame).
    """
    selected = soft_attn[hard_attn == 1]
    return -torch.log(selected.clamp(min=eps)).sum() / hard_attn.sum().clamp(min=1)


def bin_loss_weight(step: int, start: int = 0, ramp: int = 1000) -> float:
    """Schedule of the binarization-loss weight: 0 before ``start``, then a linear ramp to 1
    over ``ramp`` steps (``ramp = 0`` switches it on at once).

    Args:
        step: optimiser step.
        start: first step with a non-zero weight.
        ramp: ramp length in steps.
    Returns:
        weight in [0, 1].
    """
    if step < start:
        return 0.0
    if ramp <= 0:
        return 1.0
    return min(1.0, (step - start + 1) / ramp)


def duration_loss(logw_pred: torch.Tensor, w_target: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of durations in frames, normalised by the number of valid tokens.

    The loss is taken on ``exp(logw)`` in frames, not on ``log w``: its minimiser is the mean
    duration, so with :func:`nixdistill.students.encoder.round_durations` at inference the
    expected utterance length is unbiased (an MSE on ``log w`` predicts the geometric mean, and
    ``ceil`` adds half a frame per token on top).

    Args:
        logw_pred: predicted log frames per token, [B, 1, T_text].
        w_target: target frames per token (integers), [B, 1, T_text].
        x_mask: [B, 1, T_text].
    Returns:
        scalar loss (squared frames per token).
    """
    err = (torch.exp(logw_pred) - w_target) * x_mask
    return torch.sum(err ** 2) / x_mask.sum().clamp(min=1)


def duration_nll_loss(dur_nll: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """Stochastic duration predictor loss: summed NLL per item [B] divided by the token count."""
    return dur_nll.sum() / x_mask.sum().clamp(min=1)


def gaussian_kl_loss(
    m_s: torch.Tensor, logs_s: torch.Tensor, m_t: torch.Tensor, logs_t: torch.Tensor,
    y_mask: torch.Tensor,
) -> torch.Tensor:
    """KL(N(m_s, e^logs_s) ‖ N(m_t, e^logs_t)) summed over channels and valid frames, divided by
    the number of valid frames (nats per frame).

    Args:
        m_s / logs_s: student mean and log-std, [B, C, T_frames].
        m_t / logs_t: teacher mean and log-std, [B, C, T_frames].
        y_mask: [B, 1, T_frames].
    """
    kl = (logs_t - logs_s
          + (torch.exp(2 * logs_s) + (m_s - m_t) ** 2) * 0.5 * torch.exp(-2 * logs_t) - 0.5)
    return torch.sum(kl * y_mask) / y_mask.sum().clamp(min=1)


def gaussian_nll_loss(
    z: torch.Tensor, m_s: torch.Tensor, logs_s: torch.Tensor, y_mask: torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of target latents ``z`` under the student's N(m_s, e^logs_s),
    summed over channels and valid frames, divided by the number of valid frames.

    Args:
        z: teacher latents, [B, C, T_frames].
        m_s / logs_s: student mean and log-std, [B, C, T_frames].
        y_mask: [B, 1, T_frames].
    """
    nll = 0.5 * _LOG_2PI + logs_s + 0.5 * (z - m_s) ** 2 * torch.exp(-2 * logs_s)
    return torch.sum(nll * y_mask) / y_mask.sum().clamp(min=1)


def latent_mse_loss(
    z: torch.Tensor, m_s: torch.Tensor, logs_s: torch.Tensor, y_mask: torch.Tensor
) -> torch.Tensor:
    """Squared error of the student mean plus the NLL of its spread with the mean held fixed.

    ``Σ_c ½(z − m_s)² + NLL(z; sg(m_s), e^logs_s)`` per valid frame, averaged over frames.
    Every latent channel pulls ``m_s`` with the same weight; the plain Gaussian NLL weights each
    error by ``e^{-2 logs_s}``, so the well-fitted channels dominate and the hard ones are
    neglected (Seitzer et al. 2022, "On the pitfalls of heteroscedastic uncertainty
    estimation", ICLR, §3). ``logs_s`` still learns the residual spread, for sampling at a
    noise scale above 0.

    Args:
        z: target latents, [B, C, T_frames] (deterministic teacher latents: noise 0).
        m_s / logs_s: student mean and log-std, [B, C, T_frames].
        y_mask: [B, 1, T_frames].
    """
    sq = 0.5 * (z - m_s) ** 2
    return (torch.sum(sq * y_mask) / y_mask.sum().clamp(min=1)
            + gaussian_nll_loss(z, m_s.detach(), logs_s, y_mask))
