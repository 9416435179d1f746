"""Datasets and batching: token ids + waveform per item, padded batches with linear spectrograms.

Features are computed on the fly: the waveform is loaded and resampled to the training rate
when an item is read, and the linear spectrogram is computed batched in :func:`collate` with
:func:`nixdistill.audio.spectrogram` (the same STFT as the teacher). Token ids are computed
once per item and cached in memory, so g2p never runs again in later epochs (the unofficial
Nix-TTS port re-ran g2p and resampling for every item in every epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch

from ..audio import load_wav, spectrogram
from ..config import AudioConfig
from ..text import TextFrontend
from .readers import AudioInfo, DataError, Utterance, scan_audio

__all__ = ["Item", "Batch", "AudioTextDataset", "TextOnlyDataset", "collate"]


@dataclass
class Item:
    """One dataset item before batching.

    Attributes:
        utt_id / text / speaker: from the :class:`Utterance`.
        x: token ids, [T_text], int64.
        y: waveform at the training rate in [-1, 1], [T_samples], float32; ``None`` text-only.
        audio: the training :class:`AudioConfig` (for the batched STFT); ``None`` text-only.
    """

    utt_id: str
    text: str
    speaker: int
    x: torch.Tensor
    y: torch.Tensor | None = None
    audio: AudioConfig | None = None


@dataclass
class Batch:
    """A padded batch.

    Attributes:
        x: token ids, [B, T_text], int64 (0-padded).
        x_lengths: tokens per item, [B], int64.
        y: waveforms, [B, 1, T_samples], float32 (0-padded); ``None`` for text-only batches.
        y_lengths: samples per item, [B]; ``None`` for text-only.
        spec: linear magnitude spectrogram, [B, n_fft // 2 + 1, T_frames]; ``None`` text-only.
        spec_lengths: frames per item, ``y_lengths // hop_length``, [B]; ``None`` text-only.
        sid: speaker ids, [B], int64.
        texts / utt_ids: per-item transcript and id, length B.
    """

    x: torch.Tensor
    x_lengths: torch.Tensor
    y: torch.Tensor | None
    y_lengths: torch.Tensor | None
    spec: torch.Tensor | None
    spec_lengths: torch.Tensor | None
    sid: torch.Tensor
    texts: list[str]
    utt_ids: list[str]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        return Batch(**moved)

    def __len__(self) -> int:
        return int(self.x.shape[0])


class _TextCache:
    """Token ids per item index, computed once with the frontend."""

    def __init__(self, utterances: Sequence[Utterance], frontend: TextFrontend):
        self.utterances = list(utterances)
        self.frontend = frontend
        self._ids: dict[int, torch.Tensor] = {}

    def ids(self, index: int) -> torch.Tensor:
        x = self._ids.get(index)
        if x is None:
            u = self.utterances[index]
            x = torch.tensor(self.frontend.encode(u.text, u.utt_id), dtype=torch.long)
            self._ids[index] = x
        return x


class TextOnlyDataset(torch.utils.data.Dataset):
    """Transcripts only (prior-latent distillation: the teacher makes the audio).

    Args:
        utterances: items (``wav_path`` is ignored).
        frontend: text frontend.

    Attributes:
        lengths: bucketing lengths = characters of each transcript (a proxy known without
            g2p; the token count is cached once an item is read).
    """

    def __init__(self, utterances: Sequence[Utterance], frontend: TextFrontend):
        self.utterances = list(utterances)
        self.frontend = frontend
        self._text = _TextCache(self.utterances, frontend)
        self.lengths = [max(1, len(u.text)) for u in self.utterances]

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Item:
        u = self.utterances[index]
        return Item(u.utt_id, u.text, u.speaker, self._text.ids(index))


class AudioTextDataset(torch.utils.data.Dataset):
    """Audio + transcript pairs; audio is loaded and resampled to ``audio_cfg.sample_rate``.

    Args:
        utterances: items with ``wav_path``.
        frontend: text frontend.
        audio_cfg: training audio parameters (rate, STFT).
        infos: audio headers from :func:`~nixdistill.data.readers.scan_audio`; read here
            when ``None``.

    Attributes:
        lengths: frames per item **at the training rate**
            (``round(frames * sample_rate / native_rate) // hop_length``), for bucketing.
        durations_s: seconds per item.

    Raises:
        AudioError: (at construction) an audio header cannot be read.
        DataError: an utterance has no ``wav_path``.
    """

    def __init__(self, utterances: Sequence[Utterance], frontend: TextFrontend,
                 audio_cfg: AudioConfig, infos: Sequence[AudioInfo] | None = None):
        self.utterances = list(utterances)
        missing = [u.utt_id for u in self.utterances if u.wav_path is None]
        if missing:
            raise DataError(f"AudioTextDataset needs audio, but {len(missing)} item(s) have none "
                            f"(e.g. {missing[:3]}); use TextOnlyDataset for text-only data")
        self.frontend = frontend
        self.audio_cfg = audio_cfg
        self._text = _TextCache(self.utterances, frontend)
        infos = list(infos) if infos is not None else scan_audio(self.utterances)
        self.durations_s = [i.duration_s for i in infos]
        self.lengths = [i.samples_at(audio_cfg.sample_rate) // audio_cfg.hop_length for i in infos]

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Item:
        u = self.utterances[index]
        y = torch.from_numpy(load_wav(u.wav_path, self.audio_cfg.sample_rate))
        return Item(u.utt_id, u.text, u.speaker, self._text.ids(index), y, self.audio_cfg)


def _pad_stack(seqs: list[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[-1] for s in seqs], dtype=torch.long)
    out = torch.zeros(len(seqs), int(lengths.max()) if len(seqs) else 0, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, : s.shape[-1]] = s
    return out, lengths


def collate(items: list[Item]) -> Batch:
    """Pad items into a :class:`Batch`; compute ``spec`` batched when items carry audio.

    The spectrogram of the zero-padded batch equals each item's own spectrogram on its first
    ``spec_lengths[i]`` frames up to the STFT window reaching into the padding.

    Raises:
        ValueError: an empty list, or a mix of audio and text-only items.
    """
    if not items:
        raise ValueError("collate needs at least one item")
    has_audio = [it.y is not None for it in items]
    if any(has_audio) and not all(has_audio):
        raise ValueError("collate: cannot mix audio and text-only items in one batch")
    x, x_lengths = _pad_stack([it.x for it in items], torch.long)
    sid = torch.tensor([it.speaker for it in items], dtype=torch.long)
    y = y_lengths = spec = spec_lengths = None
    if all(has_audio):
        audio = items[0].audio
        y2d, y_lengths = _pad_stack([it.y for it in items], torch.float32)
        if y2d.shape[1] < audio.n_fft:  # reflect padding needs at least one window
            y2d = torch.nn.functional.pad(y2d, (0, audio.n_fft - y2d.shape[1]))
        y = y2d.unsqueeze(1)
        spec = spectrogram(y2d, audio.n_fft, audio.hop_length, audio.win_length)
        spec_lengths = y_lengths // audio.hop_length
    return Batch(x, x_lengths, y, y_lengths, spec, spec_lengths, sid,
                 [it.text for it in items], [it.utt_id for it in items])
