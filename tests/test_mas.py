"""Monotonic Alignment Search: Cython kernel vs the numpy reference, path properties, errors."""

import pytest
import torch

from nixdistill.monotonic_align import AlignmentError, maximum_path, maximum_path_numpy


def _ragged_batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    t_frames = torch.tensor([37, 20, 9, 29])
    t_text = torch.tensor([11, 20, 3, 1])
    neg_cent = torch.randn(4, int(t_frames.max()), int(t_text.max()), generator=g)
    y_mask = (torch.arange(int(t_frames.max()))[None] < t_frames[:, None]).float()
    x_mask = (torch.arange(int(t_text.max()))[None] < t_text[:, None]).float()
    mask = y_mask.unsqueeze(2) * x_mask.unsqueeze(1)  # [B, T_frames, T_text]
    return neg_cent, mask, t_frames, t_text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cython_matches_numpy_on_ragged_batch(seed):
    neg_cent, mask, _, _ = _ragged_batch(seed)
    assert torch.equal(maximum_path(neg_cent, mask), maximum_path_numpy(neg_cent, mask))


def test_path_is_monotonic_surjective_and_masked():
    neg_cent, mask, t_frames, t_text = _ragged_batch(3)
    path = maximum_path(neg_cent, mask)
    assert torch.all(path * (1 - mask) == 0), "path leaks into padding"
    for b in range(path.shape[0]):
        p = path[b, : t_frames[b], : t_text[b]]
        assert torch.all(p.sum(1) == 1), "every frame gets exactly one token"
        assert torch.all(p.sum(0) >= 1), "every token gets at least one frame"
        idx = p.argmax(1)
        assert torch.all(idx[1:] - idx[:-1] >= 0) and torch.all(idx[1:] - idx[:-1] <= 1)
        assert idx[0] == 0 and idx[-1] == t_text[b] - 1


def test_path_maximises_score_against_brute_force():
    # Enumerate every monotonic alignment of 4 tokens over 7 frames and compare scores.
    import itertools

    g = torch.Generator().manual_seed(7)
    neg_cent = torch.randn(1, 7, 4, generator=g)
    mask = torch.ones(1, 7, 4)
    best = -float("inf")
    for cuts in itertools.combinations(range(1, 7), 3):  # token boundaries
        bounds = (0, *cuts, 7)
        score = sum(neg_cent[0, bounds[j]:bounds[j + 1], j].sum() for j in range(4))
        best = max(best, float(score))
    got = float((maximum_path(neg_cent, mask) * neg_cent).sum())
    assert got == pytest.approx(best, abs=1e-5)


def test_more_tokens_than_frames_raises():
    neg_cent = torch.zeros(1, 3, 5)
    with pytest.raises(AlignmentError, match="5 text tokens but only 3 frames"):
        maximum_path(neg_cent, torch.ones(1, 3, 5))
    with pytest.raises(AlignmentError):
        maximum_path_numpy(neg_cent, torch.ones(1, 3, 5))


def test_import_names_resolve_to_this_project():
    import nixdistill.monotonic_align as ma

    assert "nixdistill" in ma.__name__
    from nixdistill.monotonic_align import core

    assert core.__name__ == "nixdistill.monotonic_align.core"
    assert core.__file__.endswith((".so", ".pyd"))


def test_input_is_not_modified():
    neg_cent, mask, _, _ = _ragged_batch(4)
    before = neg_cent.clone()
    maximum_path(neg_cent, mask)
    assert torch.equal(neg_cent, before)
