"""``nixdistill prepare``: validate a dataset and write train/val filelists plus statistics.

Every item is checked before any training run sees it; bad items are skipped and listed with
the reason:

* ``unreadable audio``: missing, corrupt or undecodable file (the whole file is decoded);
* ``non-finite audio``: NaN or infinite samples (float wav/flac files can hold them);
* ``empty text``: nothing left after stripping;
* ``unknown symbol``: a character the text frontend cannot encode (``text.unknown="error"``);
* ``too short`` / ``too long``: outside ``data.min_seconds`` .. ``data.max_seconds``;
* ``more tokens than frames``: ``T_text > T_frames`` at the config's rate and hop; monotonic
  alignment search would silently return an invalid path for such an item.

Outputs in ``out_dir``: ``train.txt`` and ``val.txt`` (``wav|speaker|text`` with absolute wav
paths, or ``id|text`` for text-only data) and ``stats.json``.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import AudioError
from ..config import ExperimentConfig
from ..text import TextError, build_frontend
from ..errors import NixdistillError
from .readers import Utterance, audio_info, detect_kind, read_dataset

__all__ = ["PrepareError", "PrepareReport", "SkippedItem", "prepare_dataset", "HISTOGRAM_BIN_S"]

HISTOGRAM_BIN_S = 1.0
"""Width of the length-histogram bins in seconds."""


class PrepareError(NixdistillError):
    """No usable item is left in a dataset."""


@dataclass
class SkippedItem:
    """An item left out by :func:`prepare_dataset`: ``reason`` is the category, ``detail``
    the specific message."""

    utt_id: str
    wav_path: str | None
    reason: str
    detail: str


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` found and wrote.

    Attributes:
        dataset / kind: input path and detected kind.
        n_total: items read; n_items: items kept (= n_train + n_val).
        total_seconds / hours: audio kept (0 for text-only data).
        histogram_s: ``{"edges": [...], "counts": [...]}`` of kept durations in seconds.
        sample_rates: native rate (Hz) -> item count, over readable files.
        speakers: speaker id -> kept item count.
        skipped: skipped items with reasons; skipped_by_reason: category -> count.
        sample_rate / hop_length / frontend: the training settings the checks used.
        train_path / val_path / stats_path: written files.
    """

    dataset: str
    kind: str
    n_total: int
    n_items: int
    n_train: int
    n_val: int
    total_seconds: float
    hours: float
    histogram_s: dict[str, list[float]]
    sample_rates: dict[int, int]
    speakers: dict[int, int]
    skipped: list[SkippedItem]
    skipped_by_reason: dict[str, int]
    sample_rate: int
    hop_length: int
    frontend: str
    train_path: str
    val_path: str
    stats_path: str
    max_tokens_per_frame: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sample_rates"] = {str(k): v for k, v in self.sample_rates.items()}
        d["speakers"] = {str(k): v for k, v in self.speakers.items()}
        return d


@dataclass
class _Checked:
    utt: Utterance
    duration_s: float
    n_tokens: int
    n_frames: int


def _check_item(u: Utterance, frontend, cfg: ExperimentConfig,
                rates: Counter) -> _Checked | SkippedItem:
    def skip(reason: str, detail: str) -> SkippedItem:
        return SkippedItem(u.utt_id, u.wav_path, reason, detail)

    duration_s, n_frames = 0.0, 0
    if u.wav_path is not None:
        try:
            info = audio_info(u.wav_path)
            with sf.SoundFile(u.wav_path) as f:  # decode everything: catches truncated data
                samples = f.read(dtype="float32", always_2d=True)
        except (AudioError, sf.LibsndfileError, RuntimeError, OSError) as e:
            return skip("unreadable audio", str(e))
        rates[info.sample_rate] += 1
        if len(samples) == 0:
            return skip("unreadable audio", f"{u.wav_path} has no samples")
        n_bad = samples.size - int(np.count_nonzero(np.isfinite(samples)))
        if n_bad:
            return skip("non-finite audio", f"{u.wav_path} has {n_bad} NaN/inf samples")
        duration_s = info.duration_s
        if duration_s < cfg.data.min_seconds:
            return skip("too short", f"{duration_s:.2f} s < data.min_seconds {cfg.data.min_seconds} s")
        if duration_s > cfg.data.max_seconds:
            return skip("too long", f"{duration_s:.2f} s > data.max_seconds {cfg.data.max_seconds} s")
        n_frames = info.samples_at(cfg.audio.sample_rate) // cfg.audio.hop_length
    if not u.text.strip():
        return skip("empty text", "the transcript is empty")
    try:
        n_tokens = len(frontend.encode(u.text, u.utt_id))
    except TextError as e:
        return skip("unknown symbol", str(e))
    if n_tokens == 0:
        return skip("empty text", "no encodable symbol in the transcript")
    if u.wav_path is not None and n_tokens > n_frames:
        return skip("more tokens than frames",
                    f"T_text {n_tokens} > T_frames {n_frames} at {cfg.audio.sample_rate} Hz, "
                    f"hop {cfg.audio.hop_length}")
    return _Checked(u, duration_s, n_tokens, n_frames)


def _histogram(durations: list[float]) -> dict[str, list[float]]:
    if not durations:
        return {"edges": [], "counts": []}
    n_bins = max(1, math.ceil(max(durations) / HISTOGRAM_BIN_S))
    counts, edges = np.histogram(durations, bins=n_bins, range=(0.0, n_bins * HISTOGRAM_BIN_S))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _line(c: _Checked) -> str:
    if c.utt.wav_path is None:
        return f"{c.utt.utt_id}|{c.utt.text}"
    return f"{c.utt.wav_path}|{c.utt.speaker}|{c.utt.text}"


def prepare_dataset(dataset: str | Path, out_dir: str | Path, config: ExperimentConfig,
                    kind: str = "auto", val_size: int | None = None, seed: int | None = None,
                    progress: bool = False) -> PrepareReport:
    """Validate every item of a dataset and write filelists and statistics.

    Args:
        dataset: folder or file (see :func:`nixdistill.data.read_dataset`).
        out_dir: output folder (created).
        config: experiment config; uses ``audio.sample_rate``/``hop_length``, ``text`` and
            ``data.min_seconds``/``max_seconds``/``val_size``.
        kind: dataset kind or ``"auto"``.
        val_size: items held out for validation (default ``config.data.val_size``; at most
            half of the valid items).
        seed: seed of the train/val split (default ``config.train.seed``).
        progress: show a Rich progress bar on stderr.
    Returns:
        :class:`PrepareReport` (also written to ``out_dir/stats.json``).
    Raises:
        DataError: the dataset cannot be read. PrepareError: no valid item is left.
    """
    kind_used = detect_kind(dataset) if kind == "auto" else kind
    utterances = read_dataset(dataset, kind_used)
    frontend = build_frontend(config.text)
    rates: Counter[int] = Counter()
    kept: list[_Checked] = []
    skipped: list[SkippedItem] = []
    for result in _iterate(utterances, progress, lambda u: _check_item(u, frontend, config, rates)):
        (kept if isinstance(result, _Checked) else skipped).append(result)
    if not kept:
        reasons = Counter(s.reason for s in skipped)
        raise PrepareError(f"{dataset}: no valid item among {len(utterances)} "
                              f"(skipped: {dict(reasons)})")
    n_val = min(config.data.val_size if val_size is None else val_size, len(kept) // 2)
    order = list(range(len(kept)))
    random.Random(config.train.seed if seed is None else seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [c for i, c in enumerate(kept) if i not in val_idx]
    val = [c for i, c in enumerate(kept) if i in val_idx]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_path, val_path, stats_path = out / "train.txt", out / "val.txt", out / "stats.json"
    train_path.write_text("".join(_line(c) + "\n" for c in train), encoding="utf-8")
    val_path.write_text("".join(_line(c) + "\n" for c in val), encoding="utf-8")
    durations = [c.duration_s for c in kept if c.utt.wav_path is not None]
    total = float(sum(durations))
    ratios = [c.n_tokens / c.n_frames for c in kept if c.n_frames]
    report = PrepareReport(
        dataset=str(dataset), kind=kind_used, n_total=len(utterances), n_items=len(kept),
        n_train=len(train), n_val=len(val), total_seconds=total, hours=total / 3600.0,
        histogram_s=_histogram(durations), sample_rates=dict(sorted(rates.items())),
        speakers=dict(sorted(Counter(c.utt.speaker for c in kept).items())),
        skipped=skipped, skipped_by_reason=dict(Counter(s.reason for s in skipped)),
        sample_rate=config.audio.sample_rate, hop_length=config.audio.hop_length,
        frontend=config.text.frontend, train_path=str(train_path), val_path=str(val_path),
        stats_path=str(stats_path), max_tokens_per_frame=max(ratios, default=0.0),
    )
    stats_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    return report


def _iterate(utterances: list[Utterance], progress: bool, fn):
    if not progress:
        for u in utterances:
            yield fn(u)
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("checking items", total=len(utterances))
        for u in utterances:
            yield fn(u)
            bar.advance(task)
