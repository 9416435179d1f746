"""Aligner (RAD-TTS style) and the alignment / duration / distillation losses."""

from __future__ import annotations

import math

import pytest
import torch

from nixdistill.distill.losses_align import (
    bin_loss, bin_loss_weight, duration_loss, duration_nll_loss, forward_sum_loss,
    gaussian_kl_loss, gaussian_nll_loss,
)
from nixdistill.monotonic_align import maximum_path_numpy
from nixdistill.students.aligner import Aligner, beta_binomial_log_prior


def synthetic_problem(seed: int = 0, batch: int = 4, t_text: int = 8, n_mels: int = 12,
                      vocab: int = 10, noise: float = 0.1):
    """Mel frames = noisy copies of per-token vectors repeated by known durations.

    Tokens inside an item are distinct, so the true alignment is unambiguous.
    """
    g = torch.Generator().manual_seed(seed)
    table = 2 * torch.randn(vocab, n_mels, generator=g)
    x = torch.stack([torch.randperm(vocab, generator=g)[:t_text] for _ in range(batch)])
    x_lengths = torch.arange(t_text, t_text - batch, -1)
    valid = torch.arange(t_text)[None] < x_lengths[:, None]
    dur = torch.randint(2, 6, (batch, t_text), generator=g) * valid
    y_lengths = dur.sum(1)
    mel = torch.zeros(batch, n_mels, int(y_lengths.max()))
    for b in range(batch):
        frames = table[x[b, : x_lengths[b]]].repeat_interleave(dur[b, : x_lengths[b]], 0)
        mel[b, :, : y_lengths[b]] = frames.T + noise * torch.randn(frames.T.shape, generator=g)
    x_mask = valid.float().unsqueeze(1)
    y_mask = (torch.arange(mel.shape[2])[None] < y_lengths[:, None]).float().unsqueeze(1)
    return table, x, x_lengths, dur, mel, y_lengths, x_mask, y_mask


def test_beta_binomial_prior_is_a_pmf_moving_along_the_diagonal():
    logp = beta_binomial_log_prior(7, 20, scaling=1.0)
    assert logp.shape == (20, 7)
    torch.testing.assert_close(torch.logsumexp(logp, dim=1), torch.zeros(20), atol=1e-5, rtol=0)
    modes = logp.argmax(1)
    assert modes[0] == 0 and modes[-1] == 6
    assert torch.all(modes[1:] >= modes[:-1])
    torch.testing.assert_close(beta_binomial_log_prior(7, 20), logp)


def test_beta_binomial_prior_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    n_text, n_frames, s = 5, 9, 1.0
    logp = beta_binomial_log_prior(n_text, n_frames, s)
    for i in range(1, n_frames + 1):
        ref = stats.betabinom(n_text - 1, s * i, s * (n_frames + 1 - i)).logpmf(range(n_text))
        torch.testing.assert_close(logp[i - 1], torch.tensor(ref, dtype=torch.float32),
                                   atol=1e-4, rtol=0)


def test_hard_alignment_is_mas_on_log_probs_monotonic_and_surjective():
    _, x, x_lengths, _, mel, y_lengths, x_mask, y_mask = synthetic_problem()
    torch.manual_seed(0)
    aligner = Aligner(text_channels=6, n_mels=mel.shape[1], attention_channels=4, temperature=0.05)
    keys = torch.randn(x.shape[0], 6, x.shape[1])
    out = aligner(keys, mel, x_mask, y_mask, x_lengths, y_lengths)
    mask2d = y_mask.transpose(1, 2) * x_mask
    ref = maximum_path_numpy(out.attn_logprob.squeeze(1), mask2d)
    torch.testing.assert_close(out.attn_hard.squeeze(1), ref)
    hard = out.attn_hard.squeeze(1)
    for b in range(x.shape[0]):
        tf, tt = int(y_lengths[b]), int(x_lengths[b])
        block = hard[b, :tf, :tt]
        assert torch.all(block.sum(1) == 1), "every valid frame has exactly one token"
        assert torch.all(block.sum(0) >= 1), "every token gets at least one frame"
        idx = block.argmax(1)
        assert idx[0] == 0 and idx[-1] == tt - 1 and torch.all(idx[1:] - idx[:-1] >= 0)
        assert hard[b, tf:].sum() == 0 and hard[b, :, tt:].sum() == 0
    soft = out.attn_soft.squeeze(1)
    torch.testing.assert_close(soft.sum(2), torch.ones_like(soft.sum(2)))
    assert soft[x_mask.squeeze(1)[:, None, :].expand_as(soft) == 0].abs().max() == 0


def test_aligner_with_oracle_projections_recovers_known_durations():
    table, x, x_lengths, dur, mel, y_lengths, x_mask, y_mask = synthetic_problem(seed=3)
    aligner = Aligner(table.shape[1], mel.shape[1], table.shape[1], temperature=1.0)
    aligner.key_proj = torch.nn.Identity()
    aligner.query_proj = torch.nn.Identity()
    out = aligner(table[x].transpose(1, 2), mel, x_mask, y_mask, x_lengths, y_lengths)
    assert torch.equal(out.attn_hard.squeeze(1).sum(1).long(), dur)


def test_forward_sum_loss_drops_when_learning_a_synthetic_alignment():
    _, x, x_lengths, _, mel, y_lengths, x_mask, y_mask = synthetic_problem()
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 16)
    aligner = Aligner(16, mel.shape[1], 8, temperature=0.05)
    opt = torch.optim.Adam([*aligner.parameters(), *emb.parameters()], lr=3e-3)
    losses = []
    for _ in range(60):
        out = aligner(emb(x).transpose(1, 2), mel, x_mask, y_mask, x_lengths, y_lengths)
        loss = forward_sum_loss(out.attn_logprob, x_lengths, y_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.6 * losses[0], losses[::10]


def test_forward_sum_loss_prefers_the_true_alignment_and_ignores_padding():
    _, _, x_lengths, dur, _, y_lengths, _, _ = synthetic_problem()
    t_frames, t_text = int(y_lengths.max()), dur.shape[1]
    truth = torch.zeros(len(dur), 1, t_frames, t_text)
    for b in range(len(dur)):
        idx = torch.arange(t_text).repeat_interleave(dur[b])
        truth[b, 0, torch.arange(len(idx)), idx] = 1
    sharp = torch.log(truth * 0.98 + 0.02 / t_text)
    flat = torch.full_like(sharp, -math.log(t_text))
    assert forward_sum_loss(sharp, x_lengths, y_lengths) < forward_sum_loss(flat, x_lengths, y_lengths)
    padded = torch.nn.functional.pad(sharp, (0, 3, 0, 5), value=123.0)
    torch.testing.assert_close(forward_sum_loss(padded, x_lengths, y_lengths),
                               forward_sum_loss(sharp, x_lengths, y_lengths))


def test_bin_loss_is_mean_neg_log_soft_at_hard_positions():
    torch.manual_seed(0)
    soft = torch.softmax(torch.randn(2, 1, 6, 4), dim=3)
    hard = torch.zeros_like(soft)
    hard[..., torch.arange(6), torch.tensor([0, 0, 1, 2, 2, 3])] = 1
    expected = -(torch.log(soft) * hard).sum() / hard.sum()
    torch.testing.assert_close(bin_loss(hard, soft), expected)
    assert bin_loss(hard, hard).item() == pytest.approx(0.0, abs=1e-6)


def test_bin_loss_weight_starts_early_and_ramps():
    assert bin_loss_weight(0) > 0, "default schedule starts at step 0 (not 18k)"
    assert bin_loss_weight(999) == 1.0 and bin_loss_weight(10**6) == 1.0
    assert bin_loss_weight(99, start=100, ramp=50) == 0.0
    ramp = [bin_loss_weight(s, start=100, ramp=50) for s in range(100, 160)]
    assert all(b >= a for a, b in zip(ramp, ramp[1:]))
    assert 0 < ramp[0] < ramp[24] < 1 and ramp[49] == 1.0
    assert bin_loss_weight(5, start=5, ramp=0) == 1.0


def test_duration_loss_is_normalised_by_token_count():
    torch.manual_seed(0)
    pred, target = torch.randn(1, 1, 5), torch.randint(1, 5, (1, 1, 5)).float()
    mask = torch.ones(1, 1, 5)
    ref = ((pred.exp() - target) ** 2).mean()
    torch.testing.assert_close(duration_loss(pred, target, mask), ref)
    padded = [torch.nn.functional.pad(t, (0, 7), value=9.0) for t in (pred, target)]
    pmask = torch.nn.functional.pad(mask, (0, 7))
    torch.testing.assert_close(duration_loss(*padded, pmask), ref)
    nll = torch.tensor([3.0, 5.0])
    # its minimiser is the mean duration in frames (unbiased lengths), not the geometric mean
    targets = torch.tensor([[[1.0, 2.0, 6.0]]])
    logw = torch.zeros(1, 1, 1, requires_grad=True)
    opt = torch.optim.SGD([logw], lr=0.02)
    for _ in range(500):
        opt.zero_grad()
        duration_loss(logw.expand(1, 1, 3), targets, torch.ones(1, 1, 3)).backward()
        opt.step()
    assert float(logw.detach().exp()) == pytest.approx(3.0, abs=1e-3)
    assert duration_nll_loss(nll, torch.ones(2, 1, 4)).item() == pytest.approx(1.0)


def test_gaussian_kl_and_nll_match_closed_forms():
    torch.manual_seed(0)
    m_s, logs_s, m_t, logs_t, z = (torch.randn(2, 3, 7) * 0.5 for _ in range(5))
    y_mask = torch.ones(2, 1, 7)
    y_mask[1, :, 5:] = 0
    n_frames = y_mask.sum()
    p = torch.distributions.Normal(m_s, logs_s.exp())
    q = torch.distributions.Normal(m_t, logs_t.exp())
    ref_kl = (torch.distributions.kl_divergence(p, q) * y_mask).sum() / n_frames
    torch.testing.assert_close(gaussian_kl_loss(m_s, logs_s, m_t, logs_t, y_mask), ref_kl)
    ref_nll = (-p.log_prob(z) * y_mask).sum() / n_frames
    torch.testing.assert_close(gaussian_nll_loss(z, m_s, logs_s, y_mask), ref_nll)
    assert gaussian_kl_loss(m_s, logs_s, m_s, logs_s, y_mask).abs().item() < 1e-6
