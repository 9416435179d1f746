"""The VITS/VITS2 teacher modules: shapes, padding invariance, determinism, training, flags."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nixdistill.config import ConfigError, load_config
from nixdistill.teacher.loader import build_vits_config
from nixdistill.teachers.modules import ConvFlow
from nixdistill.teachers.vits import VITS, VITSConfig
from nixdistill.text import build_frontend

N_TEXT = 9


@pytest.fixture(scope="module")
def tiny_exp():
    return load_config("tiny/teacher")


@pytest.fixture(scope="module")
def tiny_cfg(tiny_exp) -> VITSConfig:
    return build_vits_config(tiny_exp, build_frontend(tiny_exp.text).n_vocab)


def make_model(cfg: VITSConfig, seed: int = 0, **changes) -> VITS:
    torch.manual_seed(seed)
    return VITS(dataclasses.replace(cfg, **changes)).eval()


def batch(cfg: VITSConfig, seed: int = 1, t_frames: int = 40):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, cfg.n_vocab, (2, N_TEXT), generator=g)
    x_lengths = torch.tensor([N_TEXT, N_TEXT - 3])
    y = torch.randn(2, cfg.spec_channels, t_frames, generator=g).abs()
    y_lengths = torch.tensor([t_frames, t_frames - 8])
    return x, x_lengths, y, y_lengths


def test_tiny_config_is_derived_from_audio_and_train(tiny_exp, tiny_cfg):
    assert tiny_cfg.hop_length == tiny_exp.audio.hop_length
    assert tiny_cfg.spec_channels == tiny_exp.audio.n_fft // 2 + 1
    assert tiny_cfg.segment_size * tiny_exp.audio.hop_length == tiny_exp.train.segment_size
    mel = build_vits_config(tiny_exp, 10, {"use_mel_posterior_encoder": True})
    assert mel.spec_channels == tiny_exp.audio.n_mels


def test_inference_api_shapes(tiny_cfg):
    m = make_model(tiny_cfg)
    x, x_lengths, y, y_lengths = batch(tiny_cfg)
    hop, inter = tiny_cfg.hop_length, tiny_cfg.inter_channels
    out = m.infer(x, x_lengths)
    t_frames = out.z.size(2)
    assert out.wav.shape == (2, 1, t_frames * hop)
    assert out.attn.shape == (2, 1, t_frames, N_TEXT)
    assert out.w_ceil.shape == (2, 1, N_TEXT)
    for t in (out.z, out.z_p, out.m_p, out.logs_p):
        assert t.shape == (2, inter, t_frames)
    assert out.y_mask.shape == (2, 1, t_frames)
    # every valid frame is aligned to exactly one token; durations sum to the frame count
    assert torch.equal(out.attn.sum(3), out.y_mask)
    assert torch.equal(out.w_ceil.sum((1, 2)).long().clamp_min(1), out.y_mask.sum((1, 2)).long())

    post = m.posterior(y, y_lengths)
    assert post.z.shape == post.m_q.shape == post.logs_q.shape == (2, inter, y.size(2))
    assert torch.equal(post.y_mask.sum((1, 2)).long(), y_lengths)
    assert float(post.z[1, :, y_lengths[1]:].abs().max()) == 0.0

    prior = m.prior_latents(x, x_lengths)
    assert prior.w_ceil.shape == (2, N_TEXT) and prior.w_ceil.dtype == torch.long
    assert prior.z.shape[:2] == (2, inter)
    assert prior.m_p.shape == prior.logs_p.shape == prior.z.shape
    assert torch.equal(prior.w_ceil.sum(1).clamp_min(1), prior.y_mask.sum((1, 2)).long())

    wav = m.decode(post.z)
    assert wav.shape == (2, 1, y.size(2) * hop)
    assert float(wav.detach().abs().max()) <= 1.0


def test_given_durations_are_used_and_returned(tiny_cfg):
    m = make_model(tiny_cfg)
    x, x_lengths, _, _ = batch(tiny_cfg)
    w = torch.randint(1, 4, (2, N_TEXT))
    w[1, x_lengths[1]:] = 0
    prior = m.prior_latents(x, x_lengths, w_ceil=w, noise_scale=0)
    assert torch.equal(prior.w_ceil, w)
    assert torch.equal(prior.y_mask.sum((1, 2)).long(), w.sum(1))
    out = m.infer(x, x_lengths, w_ceil=w.unsqueeze(1), noise_scale=0)
    assert torch.allclose(out.z, prior.z)


def test_inference_gathers_the_prior_as_the_dense_path_would(tiny_cfg):
    """``infer``/``prior_latents`` expand m_p/logs_p by an index gather; the result equals the
    VITS path-matrix product (value for value) on a ragged batch, with a given and a predicted
    w_ceil, and with ``max_frames`` cutting the longer item."""
    m = make_model(tiny_cfg)
    x, x_lengths, _, _ = batch(tiny_cfg)
    _, m_p, logs_p, x_mask = m.enc_p(x, x_lengths)
    w = torch.randint(1, 4, (2, N_TEXT))
    w[1, x_lengths[1]:] = 0
    runs = [m.infer(x, x_lengths, noise_scale=0, noise_scale_w=0),
            m.infer(x, x_lengths, w_ceil=w, noise_scale=0),
            m.infer(x, x_lengths, w_ceil=w, noise_scale=0, max_frames=int(w.sum(1).min()) + 2)]
    for out in runs:
        # the alignment VITS builds (commons.generate_path): frame t belongs to token j iff
        # cumsum(w)[j-1] <= t < cumsum(w)[j], masked by x_mask and y_mask
        end = torch.cumsum(out.w_ceil, -1).transpose(1, 2)  # [B, T_text, 1]
        t = torch.arange(out.y_mask.size(2)).view(1, 1, -1)
        path = ((t >= end - out.w_ceil.transpose(1, 2)) & (t < end)).float().transpose(1, 2)
        attn = path.unsqueeze(1) * x_mask.unsqueeze(2) * out.y_mask.unsqueeze(-1)
        assert torch.equal(out.attn, attn)
        # [b, t_y, t_x] x [b, t_x, d] = [b, t_y, d] -> [b, d, t_y]
        dense_m = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        dense_logs = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(out.m_p, dense_m, rtol=0, atol=1e-6)
        assert torch.allclose(out.logs_p, dense_logs, rtol=0, atol=1e-6)
        z = m.flow(dense_m, out.y_mask, reverse=True) * out.y_mask
        assert torch.allclose(out.z, z, rtol=0, atol=1e-6)
        # padded frames of the shorter item stay zero
        n1 = int(out.y_mask[1].sum())
        assert float(out.m_p[1, :, n1:].abs().sum()) == 0.0
    assert runs[0].y_mask[0].sum() != runs[0].y_mask[1].sum()  # ragged in frames too
    prior = m.prior_latents(x, x_lengths, w_ceil=w, noise_scale=0)
    assert torch.equal(prior.m_p, runs[1].m_p) and torch.equal(prior.z, runs[1].z)


def test_zero_noise_is_deterministic_and_seeded_noise_reproducible(tiny_cfg):
    m = make_model(tiny_cfg)
    x, x_lengths, y, y_lengths = batch(tiny_cfg)
    torch.manual_seed(123)
    a = m.infer(x, x_lengths, noise_scale=0, noise_scale_w=0)
    torch.manual_seed(456)
    b = m.infer(x, x_lengths, noise_scale=0, noise_scale_w=0)
    assert torch.equal(a.wav, b.wav) and torch.equal(a.w_ceil, b.w_ceil)
    p0 = m.posterior(y, y_lengths, noise_scale=0)
    assert torch.equal(p0.z, p0.m_q * p0.y_mask)

    def seeded():
        return m.infer(x, x_lengths, generator=torch.Generator().manual_seed(7)).wav

    s1, s2 = seeded(), seeded()
    assert torch.equal(s1, s2)
    assert not torch.equal(s1[:, :, : a.wav.size(2)], a.wav[:, :, : s1.size(2)])


def test_padding_does_not_change_outputs(tiny_cfg):
    m = make_model(tiny_cfg)
    x, x_lengths, y, y_lengths = batch(tiny_cfg)
    n = int(x_lengths[1])
    full = m.infer(x, x_lengths, noise_scale=0, noise_scale_w=0)
    alone = m.infer(x[1:, :n], x_lengths[1:], noise_scale=0, noise_scale_w=0)
    t = alone.z.size(2)
    assert torch.equal(full.w_ceil[1:, :, :n], alone.w_ceil)
    assert float(full.w_ceil[1, :, n:].abs().max()) == 0.0
    assert torch.allclose(full.z[1:, :, :t], alone.z, atol=1e-5)
    assert torch.allclose(full.m_p[1:, :, :t], alone.m_p, atol=1e-5)
    # the decoder sees zeros past the item in both cases except near the end, where the
    # padded batch continues with masked frames: compare away from that edge
    edge = 4 * tiny_cfg.hop_length
    assert torch.allclose(full.wav[1:, :, : alone.wav.size(2) - edge],
                          alone.wav[:, :, :-edge], atol=1e-5)

    ny = int(y_lengths[1])
    p_full = m.posterior(y, y_lengths, noise_scale=0)
    p_alone = m.posterior(y[1:, :, :ny], y_lengths[1:], noise_scale=0)
    assert torch.allclose(p_full.m_q[1:, :, :ny], p_alone.m_q, atol=1e-5)
    assert torch.allclose(p_full.logs_q[1:, :, :ny], p_alone.logs_q, atol=1e-5)


def test_training_forward_and_backward(tiny_cfg):
    torch.manual_seed(0)
    m = VITS(tiny_cfg).train()
    x, x_lengths, y, y_lengths = batch(tiny_cfg)
    out = m(x, x_lengths, y, y_lengths)
    seg = tiny_cfg.segment_size
    assert out.y_hat.shape == (2, 1, seg * tiny_cfg.hop_length)
    assert out.l_length.shape == (2,) and bool(torch.isfinite(out.l_length).all())
    assert out.attn.shape == (2, 1, y.size(2), N_TEXT)
    # MAS: each valid frame aligned to one token, durations equal the frame counts
    assert torch.equal(out.attn.sum((2, 3)).squeeze(1).long(), y_lengths)
    assert torch.equal(out.attn.sum(3), out.y_mask)
    assert bool((out.ids_slice >= 0).all())
    assert out.m_p.shape == out.z_p.shape == out.m_q.shape == (2, tiny_cfg.inter_channels, y.size(2))
    assert out.logw.shape == out.logw_.shape == (2, 1, N_TEXT)
    loss = (out.y_hat.abs().mean() + out.l_length.sum()
            + ((out.z_p - out.m_p) ** 2 * out.y_mask).mean() + out.logs_q.mean())
    loss.backward()
    for name in ("enc_p", "enc_q", "flow", "dec", "dp"):
        grads = [p.grad for p in getattr(m, name).parameters()]
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_remove_weight_norm_keeps_outputs(tiny_cfg):
    m = make_model(tiny_cfg)
    x, x_lengths, _, _ = batch(tiny_cfg)
    before = m.infer(x, x_lengths, noise_scale=0, noise_scale_w=0).wav
    m.remove_weight_norm()
    assert not any("parametrizations" in k for k in m.state_dict())
    after = m.infer(x, x_lengths, noise_scale=0, noise_scale_w=0).wav
    assert torch.allclose(before, after, atol=1e-5)


def test_spline_flow_inverts():
    torch.manual_seed(0)
    flow = ConvFlow(2, 8, 3, n_layers=2).double()  # float64: steep random splines stay exact
    torch.nn.init.normal_(flow.proj.weight, std=1.0)
    torch.nn.init.normal_(flow.proj.bias, std=1.0)
    x = torch.randn(2, 2, 11, dtype=torch.float64) * 3  # includes values beyond the tail bound
    mask = torch.ones(2, 1, 11, dtype=torch.float64)
    y, logdet = flow(x, mask)
    assert not torch.allclose(y, x)
    assert torch.allclose(flow(y, mask, reverse=True).x, x, atol=1e-8)
    # log|det J| against autograd: y1[t] depends on x1[t] only, so J is diagonal in x1
    xi = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(flow(xi, mask)[0][:, 1].sum(), xi)
    assert torch.allclose(torch.log(grad[:, 1]).sum(-1), logdet, atol=1e-8)
    assert bool(torch.isfinite(logdet).all())


@pytest.mark.parametrize("changes", [
    {"use_transformer_flow": True},
    {"use_noise_scaled_mas": True},
    {"use_mel_posterior_encoder": True},
    {"use_spk_conditioned_encoder": True, "n_speakers": 3, "gin_channels": 8,
     "spk_cond_layer_idx": 0},
    {"use_sdp": False},
    {"resblock": "2", "resblock_dilation_sizes": [[1, 2]]},
], ids=["transformer_flow", "noise_mas", "mel_posterior", "spk_encoder", "dp", "resblock2"])
def test_vits2_and_variant_flags_construct_and_run(tiny_exp, tiny_cfg, changes):
    if changes.get("use_mel_posterior_encoder"):
        changes = {**changes, "spec_channels": tiny_exp.audio.n_mels}
    torch.manual_seed(0)
    m = VITS(dataclasses.replace(tiny_cfg, **changes)).train()
    x, x_lengths, y, y_lengths = batch(m.config)
    sid = torch.tensor([0, 2]) if m.emb_g is not None else None
    if m.config.use_noise_scaled_mas:
        m.current_mas_noise_scale = m.mas_noise_scale_at(10)
        assert m.current_mas_noise_scale < m.config.mas_noise_scale_initial
    out = m(x, x_lengths, y, y_lengths, sid=sid)
    assert torch.equal(out.attn.sum(3), out.y_mask)
    (out.y_hat.abs().mean() + out.l_length.sum() + out.m_p.mean()).backward()
    assert m.enc_p.emb.weight.grad is not None
    m.eval()
    a = m.infer(x, x_lengths, sid=sid, noise_scale=0, noise_scale_w=0)
    b = m.infer(x, x_lengths, sid=sid, noise_scale=0, noise_scale_w=0)
    assert torch.equal(a.wav, b.wav)
    if changes.get("use_transformer_flow"):
        assert any(".pre_transformer." in k for k in m.state_dict())
    if changes.get("use_spk_conditioned_encoder"):
        assert "enc_p.encoder.spk_emb_linear.weight" in m.state_dict()
        other = m.infer(x, x_lengths, sid=torch.tensor([1, 1]), noise_scale=0, noise_scale_w=0)
        assert not torch.equal(other.m_p[:, :, :3], a.m_p[:, :, :3])


@pytest.mark.parametrize("changes", [
    {"inter_channels": 15},
    {"hidden_channels": 15},
    {"upsample_kernel_sizes": [7, 8]},
    {"resblock": "3"},
    {"n_speakers": 4, "gin_channels": 0},
    {"use_spk_conditioned_encoder": True, "n_speakers": 2, "gin_channels": 4,
     "spk_cond_layer_idx": 5},
])
def test_invalid_config_raises(tiny_cfg, changes):
    with pytest.raises(ConfigError):
        dataclasses.replace(tiny_cfg, **changes)


def test_hop_mismatch_raises(tiny_exp):
    bad = dataclasses.replace(tiny_exp, model={**tiny_exp.model, "upsample_rates": [4, 2],
                                               "upsample_kernel_sizes": [8, 4]})
    with pytest.raises(ConfigError, match="hop_length"):
        build_vits_config(bad, 10)
