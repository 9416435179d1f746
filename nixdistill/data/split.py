"""Which items a training stage uses: the train/validation split and the usable-item filter.

A validation list given explicitly wins over splitting:

1. a folder written by ``nixdistill prepare`` (``train.txt`` and ``val.txt``);
2. ``data.val_filelist`` of the config (with ``--data`` or ``data.train_filelist`` as the
   training list);
3. otherwise the last ``data.val_size`` items of the dataset are held out, at most half of it
   (as ``nixdistill prepare`` does); a single item serves as both.

:func:`usable_utterances` drops items a stage cannot train on (duration range, shorter than a
training segment, more tokens than frames: monotonic alignment search has no path then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple, Sequence, TypeVar

from ..config import AudioConfig, DataConfig
from .dataset import AudioTextDataset
from .readers import DataError, Utterance, read_dataset

__all__ = ["DataSplit", "split_utterances", "train_val_utterances", "usable_utterances",
           "PREPARED_TRAIN", "PREPARED_VAL"]

T = TypeVar("T")
PREPARED_TRAIN = "train.txt"
PREPARED_VAL = "val.txt"


class DataSplit(NamedTuple):
    """Training and validation utterances, and where the validation list came from
    (``"prepared"``, ``"val_filelist"`` or ``"split"``)."""

    train: list[Utterance]
    val: list[Utterance]
    origin: str


def split_utterances(items: Sequence[T], val_size: int) -> tuple[list[T], list[T]]:
    """Hold out the last ``val_size`` items, at most half of them (at least one).

    With a single item, it is used for both training and validation.

    Raises:
        DataError: for an empty dataset.
    """
    if not items:
        raise DataError("the dataset has no usable items")
    if len(items) == 1:
        return list(items), list(items)
    n_val = max(1, min(val_size, len(items) // 2))
    return list(items[:-n_val]), list(items[-n_val:])


def _prepared(folder: Path) -> bool:
    return folder.is_dir() and (folder / PREPARED_TRAIN).is_file() \
        and (folder / PREPARED_VAL).is_file()


def train_val_utterances(
    data_ref: str | Path | None, data: DataConfig,
    select: Callable[[list[Utterance]], list[Utterance]] | None = None,
) -> DataSplit:
    """Read a dataset and its validation list (see the module docstring for the order).

    Args:
        data_ref: dataset folder or file (:func:`~nixdistill.data.read_dataset`), a folder
            written by ``nixdistill prepare``, or ``None`` for ``data.train_filelist``.
        data: the config's ``data`` section (``train_filelist``, ``val_filelist``,
            ``val_size``).
        select: keeps the usable items; applied to the whole dataset before a split, or to
            each list when both are given.
    Returns:
        DataSplit(train, val, origin).
    Raises:
        DataError: no dataset given, an unreadable one, or no item left.
    """
    keep = select or (lambda utts: utts)
    ref = data_ref if data_ref is not None else data.train_filelist
    if ref is None:
        raise DataError("no dataset: pass --data or set data.train_filelist")
    ref = Path(ref)
    if _prepared(ref):
        train = keep(read_dataset(ref / PREPARED_TRAIN, "filelist"))
        val = keep(read_dataset(ref / PREPARED_VAL, "filelist"))
        origin = "prepared"
    elif data.val_filelist is not None:
        train, val = keep(read_dataset(ref)), keep(read_dataset(data.val_filelist))
        origin = "val_filelist"
    else:
        train, val = split_utterances(keep(read_dataset(ref)), data.val_size)
        origin = "split"
    if not train or not val:
        raise DataError(f"{ref}: {len(train)} training and {len(val)} validation item(s) left; "
                        "both lists need at least one")
    return DataSplit(train, val, origin)


def usable_utterances(
    utterances: list[Utterance], frontend, audio: AudioConfig,
    seconds: tuple[float, float] | None = None, min_frames: int = 0,
) -> tuple[list[Utterance], dict[str, int]]:
    """The items with audio a stage can train on, and how many were dropped for each reason.

    Args:
        utterances: items with audio.
        frontend: the text frontend (token counts).
        audio: audio settings (frames at the training rate).
        seconds: ``(min_seconds, max_seconds)`` to keep, or ``None`` for any duration.
        min_frames: fewest frames an item needs (a training segment).
    Returns:
        (kept items in order, ``{"duration", "shorter_than_segment",
        "text_longer_than_audio"}`` counts).
    """
    probe = AudioTextDataset(utterances, frontend, audio)
    kept: list[Utterance] = []
    dropped = {"duration": 0, "shorter_than_segment": 0, "text_longer_than_audio": 0}
    for u, frames, duration_s in zip(utterances, probe.lengths, probe.durations_s):
        if seconds is not None and not seconds[0] <= duration_s <= seconds[1]:
            dropped["duration"] += 1
        elif frames < min_frames:
            dropped["shorter_than_segment"] += 1
        elif len(frontend.encode(u.text, u.utt_id)) > frames:
            dropped["text_longer_than_audio"] += 1
        else:
            kept.append(u)
    return kept, dropped
