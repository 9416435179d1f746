"""The Nix-TTS student encoder: shapes, padding invariance, dilations, export state, sizes."""

from __future__ import annotations

import pytest
import torch

from nixdistill.config import ConfigError, from_dict, load_config
from nixdistill.students.encoder import (
    EncoderTrainOutput, NixEncoder, NixEncoderConfig, round_durations,
)
from nixdistill.students.layers import (
    DepthwiseSeparableConv1d, DSConvStack, durations_to_path, sequence_mask,
)


def tiny_config(**overrides) -> NixEncoderConfig:
    kw = dict(
        n_vocab=20, inter_channels=8, hidden_channels=16, filter_channels=24, kernel_size=3,
        text_dilations=[1, 3], latent_dilations=[2, 1, 5], dropout=0.0, dp_channels=12,
        dp_filter_channels=16, dp_dilations=[1, 2], dp_dropout=0.0, sdp_flows=2,
        sdp_flow_dilations=[1, 3], n_mels=10, attention_channels=8, aligner_temperature=0.05,
    )
    kw.update(overrides)
    return NixEncoderConfig(**kw)


def batch(seed: int = 0, n_vocab: int = 20, n_mels: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, n_vocab, (3, 7), generator=g)
    x_lengths = torch.tensor([7, 5, 4])
    y_lengths = torch.tensor([25, 19, 12])
    mel = torch.randn(3, n_mels, 25, generator=g)
    return x, x_lengths, mel, y_lengths


def stacks(encoder: NixEncoder, config: NixEncoderConfig):
    yield encoder.text_encoder, config.text_dilations
    yield encoder.latent_encoder.stack, config.latent_dilations
    yield encoder.dp.stack if hasattr(encoder.dp, "stack") else encoder.dp.cond_stack, config.dp_dilations


@pytest.mark.parametrize("dp", ["deterministic", "stochastic"])
def test_every_block_uses_its_configured_dilation(dp):
    config = tiny_config(duration_predictor=dp)
    encoder = NixEncoder(config)
    for stack, dilations in stacks(encoder, config):
        got = [block.conv.dilation[0] for block in stack.blocks]
        assert got == list(dilations)
        for block, d in zip(stack.blocks, dilations):
            assert block.conv.padding[0] == d * (block.conv.kernel_size[0] - 1) // 2
            assert block.conv.groups == block.conv.in_channels, "depthwise"
    if dp == "stochastic":
        couplings = [f for f in encoder.dp.flows if hasattr(f, "net")]
        assert len(couplings) == config.sdp_flows
        for f in couplings:
            assert [b.conv.dilation[0] for b in f.net.blocks] == config.sdp_flow_dilations
    ds = DepthwiseSeparableConv1d(4, 6, kernel_size=5, dilation=3)
    assert ds.depthwise.dilation == (3,) and ds.depthwise.padding == (6,)
    assert ds(torch.randn(1, 4, 11)).shape == (1, 6, 11)


@pytest.mark.parametrize("dp", ["deterministic", "stochastic"])
def test_forward_and_infer_shapes(dp):
    torch.manual_seed(0)
    config = tiny_config(duration_predictor=dp)
    encoder = NixEncoder(config)
    x, x_lengths, mel, y_lengths = batch()
    out = encoder(x, x_lengths, mel, y_lengths)
    assert isinstance(out, EncoderTrainOutput)
    b, t_text, t_frames = x.shape[0], x.shape[1], mel.shape[2]
    for name in ("m_s", "logs_s", "z_s"):
        assert getattr(out, name).shape == (b, config.inter_channels, t_frames)
    for name in ("attn_soft", "attn_hard", "attn_logprob"):
        assert getattr(out, name).shape == (b, 1, t_frames, t_text)
    assert out.logw.shape == out.logw_target.shape == out.x_mask.shape == (b, 1, t_text)
    assert out.y_mask.shape == (b, 1, t_frames)
    torch.testing.assert_close(out.attn_hard.sum((2, 3)).squeeze(1), y_lengths.float())
    torch.testing.assert_close(torch.exp(out.logw_target).mul(out.x_mask).sum((1, 2)),
                               y_lengths.float())
    assert (out.dur_nll is not None) == (dp == "stochastic")
    if out.dur_nll is not None:
        assert out.dur_nll.shape == (b,) and torch.isfinite(out.dur_nll).all()
    loss = out.m_s.pow(2).mean() + out.logw.pow(2).mean() + (
        out.dur_nll.mean() if out.dur_nll is not None else 0)
    loss.backward()
    assert encoder.text_encoder.blocks[0].pw1.weight.grad is not None
    encoder.eval()
    inf = encoder.infer(x, x_lengths)
    assert inf.w_ceil.shape == (b, t_text) and inf.w_ceil.dtype == torch.int64
    assert inf.z.shape == (b, config.inter_channels, inf.y_mask.shape[2])
    assert torch.equal(inf.y_mask.sum((1, 2)).long(), inf.w_ceil.sum(1).clamp(min=1))


def test_infer_uses_given_durations():
    torch.manual_seed(0)
    encoder = NixEncoder(tiny_config()).eval()
    x, x_lengths, _, _ = batch()
    w_ceil = torch.randint(1, 4, x.shape) * (torch.arange(x.shape[1])[None] < x_lengths[:, None])
    out = encoder.infer(x, x_lengths, w_ceil=w_ceil, noise_scale=0.0)
    assert torch.equal(out.w_ceil, w_ceil)
    assert out.z.shape[2] == int(w_ceil.sum(1).max())
    assert torch.equal(out.y_mask.sum((1, 2)).long(), w_ceil.sum(1))
    slower = encoder.infer(x, x_lengths, length_scale=2.0, noise_scale=0.0)
    normal = encoder.infer(x, x_lengths, length_scale=1.0, noise_scale=0.0)
    assert slower.w_ceil.sum() > normal.w_ceil.sum()


@pytest.mark.parametrize("dp", ["deterministic", "stochastic"])
def test_padding_does_not_change_outputs(dp):
    torch.manual_seed(0)
    encoder = NixEncoder(tiny_config(duration_predictor=dp)).eval()
    x, x_lengths, mel, y_lengths = batch()
    b = 2
    tl, fl = int(x_lengths[b]), int(y_lengths[b])
    alone = encoder(x[b:b + 1, :tl], x_lengths[b:b + 1], mel[b:b + 1, :, :fl], y_lengths[b:b + 1])
    padded = encoder(x, x_lengths, mel, y_lengths)
    torch.testing.assert_close(padded.m_s[b, :, :fl], alone.m_s[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded.logs_s[b, :, :fl], alone.logs_s[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded.attn_hard[b, 0, :fl, :tl], alone.attn_hard[0, 0])
    assert padded.m_s[b, :, fl:].abs().max() == 0
    if dp == "deterministic":
        torch.testing.assert_close(padded.logw[b, :, :tl], alone.logw[0], atol=1e-5, rtol=1e-4)
    w = torch.randint(1, 4, x.shape) * (torch.arange(x.shape[1])[None] < x_lengths[:, None])
    inf_pad = encoder.infer(x, x_lengths, w_ceil=w, noise_scale=0.0)
    inf_one = encoder.infer(x[b:b + 1, :tl], x_lengths[b:b + 1], w_ceil=w[b:b + 1, :tl],
                            noise_scale=0.0)
    n = int(w[b].sum())
    torch.testing.assert_close(inf_pad.z[b, :, :n], inf_one.z[0], atol=1e-5, rtol=1e-4)


def test_inference_state_dict_excludes_aligner_and_round_trips():
    torch.manual_seed(0)
    config = tiny_config()
    encoder = NixEncoder(config).eval()
    state = encoder.inference_state_dict()
    assert state and not any(k.startswith("aligner.") for k in state)
    assert any(k.startswith("aligner.") for k in encoder.state_dict())
    slim = NixEncoder(NixEncoderConfig(**config.to_dict()), with_aligner=False).eval()
    slim.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in slim.parameters()) == encoder.n_inference_params()
    assert encoder.n_inference_params() < sum(p.numel() for p in encoder.parameters())
    x, x_lengths, mel, y_lengths = batch()
    a = encoder.infer(x, x_lengths, noise_scale=0.5, generator=torch.Generator().manual_seed(1))
    b = slim.infer(x, x_lengths, noise_scale=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.z, b.z) and torch.equal(a.w_ceil, b.w_ceil)
    with pytest.raises(RuntimeError, match="aligner"):
        slim(x, x_lengths, mel, y_lengths)


def test_multi_speaker_conditioning():
    torch.manual_seed(0)
    encoder = NixEncoder(tiny_config(n_speakers=3, gin_channels=4)).eval()
    x, x_lengths, _, _ = batch()
    w = torch.full(x.shape, 2)
    z0 = encoder.infer(x, x_lengths, sid=torch.zeros(3, dtype=torch.long), w_ceil=w, noise_scale=0).z
    z1 = encoder.infer(x, x_lengths, sid=torch.ones(3, dtype=torch.long), w_ceil=w, noise_scale=0).z
    assert not torch.allclose(z0, z1)
    with pytest.raises(ValueError, match="sid"):
        encoder.infer(x, x_lengths)


def test_round_durations_keeps_the_expected_length_unbiased():
    """Synthetic case: continuous durations of Piper-like tokens (1-3 frames). Rounding the
    running total gives round(sum); per-token ceil (VITS inference) adds ~0.5 frame a token."""
    torch.manual_seed(0)
    w = 1.0 + 2.0 * torch.rand(64, 1, 40)
    mask = torch.ones_like(w)
    mask[1::2, :, 30:] = 0  # ragged
    w_int = round_durations(w, mask)
    assert torch.equal(w_int, w_int.round()) and (w_int[mask == 0] == 0).all()
    assert ((w_int - (w * mask).floor()) >= 0).all() and ((w_int - (w * mask).ceil()) <= 0).all()
    total, exact = w_int.sum((1, 2)), (w * mask).sum((1, 2))
    assert (total - exact).abs().max() <= 0.5
    ceil_ratio = float(((w.ceil() * mask).sum() / exact.sum()))
    assert ceil_ratio > 1.2  # the bias this removes
    assert float(total.sum() / exact.sum()) == pytest.approx(1.0, abs=0.01)


def test_predicted_lengths_are_unbiased_when_the_predictor_is():
    """Deterministic predictor trained with the frame-domain loss on a constant 2.4-frame target
    (integers 2 and 3 drawn 60/40) speaks at the target's mean length."""
    from nixdistill.distill.losses_align import duration_loss

    torch.manual_seed(0)
    encoder = NixEncoder(tiny_config())
    x, x_lengths = torch.ones(8, 20, dtype=torch.long), torch.full((8,), 20)
    opt = torch.optim.Adam(encoder.dp.parameters(), lr=1e-2)
    for _ in range(150):
        target = 2.0 + (torch.rand(8, 1, 20) < 0.4).float()
        _, h, x_mask = encoder.encode_text(x, x_lengths)
        loss = duration_loss(encoder.dp(h.detach(), x_mask), target, x_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.eval()
    out = encoder.infer(x, x_lengths, noise_scale=0)
    assert float(out.w_ceil.sum(1).float().mean()) == pytest.approx(2.4 * 20, rel=0.03)


@pytest.mark.parametrize("dp", ["deterministic", "stochastic"])
def test_forward_with_known_durations_trains_on_them(dp):
    torch.manual_seed(0)
    encoder = NixEncoder(tiny_config(duration_predictor=dp))
    x, x_lengths, mel, _ = batch()
    w = torch.randint(1, 3, x.shape) * sequence_mask(x_lengths, x.shape[1])
    y_lengths = w.sum(1)
    mel = mel[..., : int(y_lengths.max())] if mel.shape[2] >= int(y_lengths.max()) else \
        torch.nn.functional.pad(mel, (0, int(y_lengths.max()) - mel.shape[2]))
    out = encoder(x, x_lengths, mel, y_lengths, w_target=w)
    assert torch.equal(out.w_target.squeeze(1).long(), w)
    assert out.w_align.shape == out.w_target.shape
    torch.testing.assert_close(out.w_align.sum((1, 2)), y_lengths.float())
    # the latents follow the given durations: equal to inference with the same durations
    encoder.eval()
    out = encoder(x, x_lengths, mel, y_lengths, noise_scale=0.0, w_target=w)
    ref = encoder.infer(x, x_lengths, noise_scale=0.0, w_ceil=w)
    torch.testing.assert_close(out.z_s[..., : ref.z.shape[2]], ref.z)
    with pytest.raises(ValueError, match="sum to y_lengths"):
        encoder(x, x_lengths, mel, y_lengths - 1, w_target=w)


def test_forward_without_the_aligner_equals_the_aligned_latents():
    torch.manual_seed(0)
    encoder = NixEncoder(tiny_config()).eval()
    x, x_lengths, mel, _ = batch()
    w = torch.randint(1, 3, x.shape) * sequence_mask(x_lengths, x.shape[1])
    y_lengths = w.sum(1)
    mel = torch.nn.functional.pad(mel, (0, max(0, int(y_lengths.max()) - mel.shape[2])))
    mel = mel[..., : int(y_lengths.max())]
    aligned = encoder(x, x_lengths, mel, y_lengths, noise_scale=0.0, w_target=w)
    skipped = encoder(x, x_lengths, mel, y_lengths, noise_scale=0.0, w_target=w, align=False)
    assert skipped.attn_hard is None and skipped.attn_logprob is None and skipped.w_align is None
    torch.testing.assert_close(skipped.m_s, aligned.m_s)
    torch.testing.assert_close(skipped.logw, aligned.logw)
    # no aligner parameter takes part in the pass
    skipped.m_s.sum().backward()
    assert all(p.grad is None for p in encoder.aligner.parameters())
    assert encoder.emb.weight.grad is not None
    with pytest.raises(ValueError, match="needs w_target"):
        encoder(x, x_lengths, mel, y_lengths, align=False)


def test_durations_to_path_expands_by_durations():
    w = torch.tensor([[2, 0, 3], [1, 1, 0]])
    mask = torch.ones(2, 5, 3)
    path = durations_to_path(w, mask)
    assert torch.equal(path.sum(1).long(), w)
    assert torch.equal(path[0].argmax(1), torch.tensor([0, 0, 2, 2, 2]))


@pytest.mark.parametrize("bad", [
    dict(kernel_size=4), dict(duration_predictor="flow"), dict(text_dilations=[1, 0]),
    dict(n_vocab=0), dict(n_speakers=4, gin_channels=0),
])
def test_bad_config_raises_config_error(bad):
    with pytest.raises(ConfigError):
        tiny_config(**bad)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(NixEncoderConfig, {"n_vocab": 5, "dilation_rate": 2})


def test_base_config_inference_size_is_in_the_paper_range(capsys):
    model = load_config("students/encoder_base").model
    sizes = {}
    for dp in ("deterministic", "stochastic"):
        config = from_dict(NixEncoderConfig, {**model, "n_vocab": 178, "duration_predictor": dp})
        assert config.inter_channels == 192
        encoder = NixEncoder(config)
        sizes[dp] = encoder.n_inference_params()
    with capsys.disabled():
        print(f"\nNixEncoder base inference params: {sizes}")
    assert 1.8e6 <= sizes["deterministic"] <= 3.5e6
    assert sizes["stochastic"] > sizes["deterministic"]


def test_ds_stack_rejects_empty_dilations():
    with pytest.raises(ValueError):
        DSConvStack(4, 8, 3, [])
