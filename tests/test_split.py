"""The one train/validation split: tiny sets, prepared folders and validation filelists."""

from __future__ import annotations

import pytest

from nixdistill.config import DataConfig
from nixdistill.data import DataError, split_utterances, train_val_utterances


def test_split_holds_out_at_most_half():
    assert split_utterances(list(range(6)), 2) == ([0, 1, 2, 3], [4, 5])
    assert split_utterances(list(range(8)), 100) == (list(range(4)), list(range(4, 8)))
    assert split_utterances(list(range(3)), 8) == ([0, 1], [2])
    assert split_utterances([0, 1], 8) == ([0], [1])
    assert split_utterances([7], 2) == ([7], [7])  # one item serves as both
    assert split_utterances(list(range(5)), 0) == ([0, 1, 2, 3], [4])  # at least one
    with pytest.raises(DataError, match="no usable items"):
        split_utterances([], 2)


def _filelist(path, names):
    path.write_text("".join(f"{n}.wav|text of {n}\n" for n in names), encoding="utf-8")
    return path


def _ids(utts):
    return [u.utt_id for u in utts]


def test_prepared_folder_uses_its_val_list(tmp_path):
    _filelist(tmp_path / "train.txt", ["a", "b", "c", "d"])
    _filelist(tmp_path / "val.txt", ["v"])
    split = train_val_utterances(tmp_path, DataConfig(val_size=2))
    assert (_ids(split.train), _ids(split.val), split.origin) == (
        ["a", "b", "c", "d"], ["v"], "prepared")


def test_val_filelist_wins_over_splitting(tmp_path):
    train = _filelist(tmp_path / "all.txt", ["a", "b", "c", "d"])
    val = _filelist(tmp_path / "held.txt", ["x", "y"])
    split = train_val_utterances(train, DataConfig(val_filelist=str(val), val_size=1))
    assert (_ids(split.train), _ids(split.val), split.origin) == (
        ["a", "b", "c", "d"], ["x", "y"], "val_filelist")
    # without --data the config's train_filelist is read
    split = train_val_utterances(None, DataConfig(train_filelist=str(train), val_size=1))
    assert (_ids(split.train), _ids(split.val), split.origin) == (["a", "b", "c"], ["d"], "split")
    with pytest.raises(DataError, match="--data"):
        train_val_utterances(None, DataConfig())


def test_select_runs_before_the_split(tmp_path):
    data = _filelist(tmp_path / "all.txt", ["a", "b", "c", "d", "e"])
    split = train_val_utterances(data, DataConfig(val_size=2),
                                 lambda utts: [u for u in utts if u.utt_id != "e"])
    assert (_ids(split.train), _ids(split.val)) == (["a", "b"], ["c", "d"])
    with pytest.raises(DataError, match="no usable items"):
        train_val_utterances(data, DataConfig(val_size=2), lambda utts: [])
