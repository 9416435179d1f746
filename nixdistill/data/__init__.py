"""Data layer: dataset readers, datasets with on-the-fly features, bucketed batching, prepare.

See ``docs/ARCHITECTURE.md`` ("Data") for the contracts other parts rely on.
"""

from .dataset import AudioTextDataset, Batch, Item, TextOnlyDataset, collate
from .prepare import PrepareError, PrepareReport, SkippedItem, prepare_dataset
from .readers import (
    AudioInfo, DataError, Utterance, audio_info, detect_kind, read_dataset, scan_audio,
)
from .sampler import BucketSampler, make_loader
from .split import DataSplit, split_utterances, train_val_utterances, usable_utterances

__all__ = [
    "AudioInfo", "AudioTextDataset", "Batch", "BucketSampler", "DataError", "DataSplit", "Item",
    "PrepareError", "PrepareReport", "SkippedItem", "TextOnlyDataset", "Utterance",
    "audio_info", "collate", "detect_kind", "make_loader", "prepare_dataset", "read_dataset",
    "scan_audio", "split_utterances", "train_val_utterances", "usable_utterances",
]
