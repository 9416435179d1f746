"""Shared layers of nixdistill.nn: duration expansion and the HiFi-GAN pieces."""

from __future__ import annotations

import pytest
import torch

from nixdistill.nn import (ResBlock1, expand_by_durations, frame_token_index, hifigan_upsample,
                           remove_weight_norm, sequence_mask)


def dense_path(durations: torch.Tensor, t_frames: int) -> torch.Tensor:
    """Reference alignment [B, T_frames, T_text]: frame t belongs to token j iff
    cumsum(d)[j-1] <= t < cumsum(d)[j]."""
    end = torch.cumsum(durations, 1).unsqueeze(1)
    start = end - durations.unsqueeze(1)
    t = torch.arange(t_frames).view(1, -1, 1)
    return ((t >= start) & (t < end)).float()


@pytest.mark.parametrize("t_frames", [3, 9, 14])  # cuts item 0, exact, padded
def test_expand_by_durations_equals_the_path_matrix_product(t_frames):
    durations = torch.tensor([[2, 0, 3, 4, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    x = torch.randn(3, 4, 5)
    out = expand_by_durations(x, durations.float(), t_frames)
    # [b, t_y, t_x] x [b, t_x, d] = [b, t_y, d] -> [b, d, t_y]
    ref = torch.matmul(dense_path(durations, t_frames), x.transpose(1, 2)).transpose(1, 2)
    assert out.shape == (3, 4, t_frames)
    assert torch.equal(out, ref)
    assert torch.equal(expand_by_durations(x, durations.unsqueeze(1), t_frames), out)
    index, valid = frame_token_index(durations, t_frames)
    assert torch.equal(valid, sequence_mask(durations.sum(1), t_frames))
    assert torch.equal(index[0, :min(t_frames, 9)], torch.tensor([0, 0, 2, 2, 2, 3, 3, 3, 3])[:t_frames])


def test_expand_by_durations_is_repeat_interleave_per_item():
    durations = torch.tensor([[3, 1, 2], [2, 2, 0]])
    x = torch.randn(2, 5, 3)
    out = expand_by_durations(x, durations, 6)
    for b in range(2):
        n = int(durations[b].sum())
        assert torch.equal(out[b, :, :n], torch.repeat_interleave(x[b], durations[b], dim=1))
        assert float(out[b, :, n:].abs().sum()) == 0.0


def test_resblock_with_a_conv_factory_keeps_its_layout_and_folds_weight_norm():
    torch.manual_seed(0)
    block = ResBlock1(4, 3, (1, 3)).eval()
    keys = set(block.state_dict())
    assert "convs1.1.parametrizations.weight.original1" in keys and len(block.convs2) == 2
    ups = torch.nn.ModuleList([torch.nn.ConvTranspose1d(4, 4, 4, 2, padding=1)])
    post = torch.nn.Conv1d(4, 1, 3, padding=1)
    x = torch.randn(2, 4, 7)
    with torch.no_grad():
        wav = hifigan_upsample(x, ups, torch.nn.ModuleList([block]), post)
        assert wav.shape == (2, 1, 14) and float(wav.abs().max()) <= 1.0
        before = block(x)
        assert remove_weight_norm(block) is block
        assert "convs1.1.weight" in block.state_dict()
        assert torch.allclose(block(x), before, atol=1e-6)


def test_shared_flows_invert_and_share_one_return_convention():
    from nixdistill.nn import ElementwiseAffine, Flip

    torch.manual_seed(0)
    affine = ElementwiseAffine(2)
    torch.nn.init.normal_(affine.m)
    torch.nn.init.normal_(affine.logs)
    x = torch.randn(3, 2, 5)
    mask = torch.ones(3, 1, 5)
    mask[2, :, 3:] = 0
    for flow in (affine, Flip()):
        y, logdet = flow(x * mask, mask)
        assert logdet.shape == (3,)
        back, none = flow(y, mask, reverse=True)
        assert none is None
        assert torch.allclose(back, x * mask, atol=1e-6)
    assert torch.allclose(affine(x, mask).logdet, (affine.logs * mask).sum((1, 2)))
