"""Unsupervised text-to-frame aligner used while training the student encoder.

Follows the alignment framework of Badlani et al. 2022, "One TTS Alignment To Rule Them All"
(arXiv 2108.10447), as implemented in RAD-TTS (NVIDIA/radtts ``alignment.py``):

- keys are projected text embeddings, queries are projected mel frames;
- the energy of (frame t, token j) is ``-temperature * ||q_t - k_j||^2`` (isotropic Gaussian);
- ``attn_logprob = log_softmax_j(energy) + log prior`` (Badlani et al. eq. 3 and the
  beta-binomial prior of section 2.3), and the soft attention is its softmax over tokens;
- the hard alignment is MAS on these *log*-probabilities (the unofficial Nix-TTS port ran MAS on
  probabilities).

The aligner is a training-only module: the exported student never contains it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["AlignerOutput", "Aligner", "beta_binomial_log_prior", "LOG_ZERO"]

#: log-probability used for masked (padded) token positions; finite so that no NaN appears in
#: products or gradients, and far below any real log-probability.
LOG_ZERO = -1e4


@functools.lru_cache(maxsize=256)
def _beta_binomial_log_prior_cpu(n_text: int, n_frames: int, scaling: float) -> torch.Tensor:
    k = torch.arange(n_text, dtype=torch.float64)  # token index, support 0..n_text-1
    n = torch.tensor(float(n_text - 1), dtype=torch.float64)
    i = torch.arange(1, n_frames + 1, dtype=torch.float64).unsqueeze(1)  # frame 1..M
    a = scaling * i
    b = scaling * (n_frames + 1 - i)

    def lbeta(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)

    log_binom = torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    logp = log_binom + lbeta(k + a, n - k + b) - lbeta(a, b)  # [n_frames, n_text]
    return logp.float()


def beta_binomial_log_prior(
    n_text: int, n_frames: int, scaling: float = 1.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Log beta-binomial alignment prior (Badlani et al. 2022, section 2.3).

    For frame ``i`` in ``1..M`` (``M = n_frames``) the token index ``k`` in ``0..N-1``
    (``N = n_text``) follows ``BetaBinomial(N - 1, a = s·i, b = s·(M + 1 - i))``, so the prior's
    mass moves along the diagonal. The pmf is computed with ``torch.lgamma`` (no scipy):
    ``log C(n, k) + log B(k + a, n - k + b) - log B(a, b)``. Results are cached per
    ``(n_text, n_frames, scaling)``.

    Args:
        n_text: valid tokens ``N``.
        n_frames: valid frames ``M``.
        scaling: ``s``; larger values make the prior sharper.
        device: where to put the result.
    Returns:
        log_prior: [n_frames, n_text], float32; each row is a log-pmf (logsumexp = 0).
    """
    return _beta_binomial_log_prior_cpu(int(n_text), int(n_frames), float(scaling)).to(device)


class AlignerOutput(NamedTuple):
    """Aligner results, RAD-TTS layout ``[B, 1, T_frames, T_text]``.

    attn_soft: soft alignment, rows sum to 1 over valid tokens.
    attn_logprob: log of the soft alignment (masked tokens = ``LOG_ZERO``); the CTC input.
    attn_hard: MAS path (0/1) on ``attn_logprob``, detached.
    """

    attn_soft: torch.Tensor
    attn_logprob: torch.Tensor
    attn_hard: torch.Tensor


class Aligner(nn.Module):
    """RAD-TTS style aligner between text embeddings (keys) and mel frames (queries).

    Args:
        text_channels: channels of the key input (text embeddings).
        n_mels: mel bands of the query input.
        attention_channels: width of the shared key/query space.
        temperature: scale of the squared distance (RAD-TTS uses 0.0005).
        prior_scaling: beta-binomial prior sharpness ``s`` (0 disables the prior).
        key_kernel_size / query_kernel_size: kernel widths of the first key / query convs (odd).
    """

    def __init__(
        self, text_channels: int, n_mels: int, attention_channels: int, temperature: float,
        prior_scaling: float = 1.0, key_kernel_size: int = 3, query_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.prior_scaling = prior_scaling
        self.key_proj = nn.Sequential(
            nn.Conv1d(text_channels, 2 * text_channels, key_kernel_size,
                      padding=key_kernel_size // 2),
            nn.ReLU(),
            nn.Conv1d(2 * text_channels, attention_channels, 1),
        )
        self.query_proj = nn.Sequential(
            nn.Conv1d(n_mels, 2 * n_mels, query_kernel_size, padding=query_kernel_size // 2),
            nn.ReLU(),
            nn.Conv1d(2 * n_mels, n_mels, 1),
            nn.ReLU(),
            nn.Conv1d(n_mels, attention_channels, 1),
        )

    def log_prior(
        self, x_lengths: torch.Tensor, y_lengths: torch.Tensor, t_text: int, t_frames: int
    ) -> torch.Tensor:
        """Batched log prior, [B, T_frames, T_text] (zero outside each item's valid block)."""
        out = torch.zeros(len(x_lengths), t_frames, t_text, device=x_lengths.device)
        for b, (n_text, n_frames) in enumerate(zip(x_lengths.tolist(), y_lengths.tolist())):
            out[b, :n_frames, :n_text] = beta_binomial_log_prior(
                n_text, n_frames, self.prior_scaling, x_lengths.device
            )
        return out

    def forward(
        self, keys: torch.Tensor, queries: torch.Tensor, x_mask: torch.Tensor,
        y_mask: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor,
    ) -> AlignerOutput:
        """Align text with frames.

        Args:
            keys: text embeddings, [B, text_channels, T_text].
            queries: log-mel frames, [B, n_mels, T_frames].
            x_mask: [B, 1, T_text]; y_mask: [B, 1, T_frames] (float 0/1).
            x_lengths: tokens [B]; y_lengths: frames [B].
        Returns:
            :class:`AlignerOutput` with tensors [B, 1, T_frames, T_text].
        Raises:
            nixdistill.monotonic_align.AlignmentError: an item has more tokens than frames.
        """
        from nixdistill.monotonic_align import maximum_path  # training only: keep it off import

        k = self.key_proj(keys * x_mask)  # [B, A, T_text]
        q = self.query_proj(queries * y_mask)  # [B, A, T_frames]
        # ||q - k||^2 = |q|^2 + |k|^2 - 2 q.k : [B, T_frames, A] x [B, A, T_text] = [B, T_frames, T_text]
        dist = (q.pow(2).sum(1).unsqueeze(2) + k.pow(2).sum(1).unsqueeze(1)
                - 2 * torch.bmm(q.transpose(1, 2), k)).clamp(min=0)
        energy = -self.temperature * dist
        text_valid = x_mask.bool()  # [B, 1, T_text] broadcasts over frames
        energy = energy.masked_fill(~text_valid, LOG_ZERO)
        logprob = torch.log_softmax(energy, dim=2)
        if self.prior_scaling > 0:
            logprob = logprob + self.log_prior(x_lengths, y_lengths, k.shape[2], q.shape[2])
            logprob = torch.log_softmax(logprob.masked_fill(~text_valid, LOG_ZERO), dim=2)
        logprob = logprob.masked_fill(~text_valid, LOG_ZERO)
        attn_soft = torch.softmax(logprob, dim=2) * text_valid
        mask2d = y_mask.transpose(1, 2) * x_mask  # [B, T_frames, T_text]
        with torch.no_grad():
            attn_hard = maximum_path(logprob.detach(), mask2d)
        return AlignerOutput(attn_soft.unsqueeze(1), logprob.unsqueeze(1), attn_hard.unsqueeze(1))
