"""Dataset readers: LJSpeech folders, KSS folders, filelists and plain text files.

Every reader returns a list of :class:`Utterance`; nothing is decoded here (audio is read by
:class:`~nixdistill.data.dataset.AudioTextDataset`, headers by :func:`audio_info`).

Formats:

* ``ljspeech``: a folder with ``metadata.csv`` (``id|text|normalized``) and ``wavs/<id>.wav``
  (Keith Ito, LJ Speech 1.1). The normalized column is used when present.
* ``kss``: a folder with ``transcript.v.1.x.txt`` (``path|text|expanded|decomposed|seconds|
  english``; Park, Korean Single Speaker Speech). The ``expanded`` column (numbers spelled out)
  is used. Audio is 44.1 kHz and is resampled to the training rate when loaded.
* ``filelist``: ``wav|text`` or ``wav|speaker|text`` lines (VITS filelists, and what
  ``nixdistill prepare`` writes); relative wav paths are resolved against the filelist's folder.
* ``text``: one sentence per line, or ``id|text`` lines (e.g. LJSpeech transcripts); no audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

from ..audio import AudioError
from ..errors import NixdistillError

__all__ = ["DataError", "Utterance", "AudioInfo", "read_dataset", "detect_kind", "audio_info",
           "scan_audio", "KINDS", "AUDIO_EXTENSIONS"]

KINDS = ("ljspeech", "kss", "filelist", "text")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
_SEP = "|"
_KSS_GLOB = "transcript.v.1.*.txt"


class DataError(NixdistillError, ValueError):
    """A dataset folder or list cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    """One dataset item.

    Attributes:
        utt_id: unique id (file stem or the dataset's id column).
        text: transcript as given (the frontend normalises it).
        wav_path: absolute audio path, or ``None`` for text-only data.
        speaker: speaker index (0 for single-speaker data).
    """

    utt_id: str
    text: str
    wav_path: str | None = None
    speaker: int = 0


class AudioInfo(NamedTuple):
    """Audio header facts: ``frames`` samples at ``sample_rate`` Hz, ``duration_s`` seconds."""

    frames: int
    sample_rate: int
    channels: int
    duration_s: float

    def samples_at(self, sample_rate: int) -> int:
        """Length in samples after resampling to ``sample_rate`` Hz (soxr rounding)."""
        return round(self.frames * sample_rate / self.sample_rate)


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio header with ``soundfile.info`` (no decoding; fast).

    Raises:
        AudioError: the file is missing or not audio libsndfile can read.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"cannot read audio header {path}: {e}") from None
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels),
                     info.frames / info.samplerate if info.samplerate else 0.0)


def scan_audio(utterances: list[Utterance]) -> list[AudioInfo | None]:
    """Header of every utterance's audio (``None`` for text-only items).

    Raises:
        AudioError: for the first unreadable file (``nixdistill prepare`` filters those).
    """
    return [None if u.wav_path is None else audio_info(u.wav_path) for u in utterances]


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return [(n, line.rstrip("\r\n")) for n, line in enumerate(text.splitlines(), 1)
            if line.strip()]


def _kss_transcript(folder: Path) -> Path | None:
    found = sorted(folder.glob(_KSS_GLOB))
    return found[-1] if found else None


def _looks_like_audio(field: str) -> bool:
    return field.strip().lower().endswith(AUDIO_EXTENSIONS)


def detect_kind(path: str | Path) -> str:
    """Guess the dataset kind of ``path`` (see the module docstring).

    A folder with ``metadata.csv`` is ``ljspeech``, one with ``transcript.v.1.x.txt`` is
    ``kss``; a file whose first field names an audio file is a ``filelist``, otherwise ``text``.

    Raises:
        DataError: the path does not exist or a folder has neither file.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "metadata.csv").is_file():
            return "ljspeech"
        if _kss_transcript(p) is not None:
            return "kss"
        raise DataError(f"{p}: a dataset folder needs metadata.csv (LJSpeech) or "
                        "transcript.v.1.x.txt (KSS)")
    if not p.is_file():
        raise DataError(f"dataset {p} does not exist")
    if p.name == "metadata.csv":
        return "ljspeech"
    if p.match(_KSS_GLOB):
        return "kss"
    lines = _read_lines(p)
    if lines and _looks_like_audio(lines[0][1].split(_SEP, 1)[0]):
        return "filelist"
    return "text"


def read_ljspeech(path: Path) -> list[Utterance]:
    """LJSpeech folder (or its ``metadata.csv``) -> utterances with ``wavs/<id>.wav``."""
    meta = path if path.is_file() else path / "metadata.csv"
    root = meta.parent
    out = []
    for n, line in _read_lines(meta):
        fields = line.split(_SEP)
        if len(fields) < 2:
            raise DataError(f"{meta}:{n}: expected 'id|text|normalized', got {line!r}")
        utt_id = fields[0].strip()
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        out.append(Utterance(utt_id, text.strip(), str((root / "wavs" / f"{utt_id}.wav").resolve())))
    return out


def read_kss(path: Path) -> list[Utterance]:
    """KSS folder (or its transcript) -> utterances (``expanded`` column, 44.1 kHz wavs)."""
    transcript = path if path.is_file() else _kss_transcript(path)
    if transcript is None:
        raise DataError(f"{path}: no {_KSS_GLOB} found")
    root = transcript.parent
    out = []
    for n, line in _read_lines(transcript):
        fields = line.split(_SEP)
        if len(fields) < 2:
            raise DataError(f"{transcript}:{n}: expected 'path|text|expanded|...', got {line!r}")
        rel = fields[0].strip()
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        wav = root / rel
        if not wav.exists() and (root / "kss" / rel).exists():  # the Kaggle zip nests kss/kss/
            wav = root / "kss" / rel
        out.append(Utterance(Path(rel).stem, text.strip(), str(wav.resolve())))
    return out


def read_filelist(path: Path) -> list[Utterance]:
    """``wav|text`` or ``wav|speaker|text`` filelist -> utterances (paths made absolute)."""
    root = path.parent
    out = []
    seen: dict[str, int] = {}
    for n, line in _read_lines(path):
        fields = line.split(_SEP)
        speaker = 0
        if len(fields) >= 3 and fields[1].strip().isdigit():
            wav, speaker, text = fields[0], int(fields[1]), _SEP.join(fields[2:])
        elif len(fields) >= 2:
            wav, text = fields[0], _SEP.join(fields[1:])
        else:
            raise DataError(f"{path}:{n}: expected 'wav|text' or 'wav|speaker|text', got {line!r}")
        wav_path = Path(wav.strip())
        if not wav_path.is_absolute():
            wav_path = root / wav_path
        utt_id = wav_path.stem
        if utt_id in seen:  # same stem in two folders (e.g. digits/1 and 1): keep ids unique
            seen[utt_id] += 1
            utt_id = f"{utt_id}#{seen[utt_id]}"
        else:
            seen[utt_id] = 0
        out.append(Utterance(utt_id, text.strip(), str(wav_path.resolve()), speaker))
    return out


def read_text(path: Path) -> list[Utterance]:
    """Sentences, one per line, or ``id|text`` lines -> text-only utterances. Lines that start
    with ``#`` are comments (the shipped corpora's headers); ids keep their line numbers."""
    out = []
    for n, line in _read_lines(path):
        if line.lstrip().startswith("#"):
            continue
        utt_id, sep, text = line.partition(_SEP)
        if not sep or " " in utt_id.strip():
            utt_id, text = f"{path.stem}_{n:06d}", line
        out.append(Utterance(utt_id.strip(), text.strip()))
    return out


_READERS = {"ljspeech": read_ljspeech, "kss": read_kss, "filelist": read_filelist,
            "text": read_text}


def read_dataset(path: str | Path, kind: str = "auto") -> list[Utterance]:
    """Read a dataset into utterances.

    Args:
        path: dataset folder or file.
        kind: ``"auto"`` (see :func:`detect_kind`), ``"ljspeech"``, ``"kss"``, ``"filelist"``
            or ``"text"``.
    Returns:
        list of :class:`Utterance` in file order.
    Raises:
        DataError: unknown kind, missing path, malformed line.
    """
    p = Path(path)
    if kind == "auto":
        kind = detect_kind(p)
    if kind not in _READERS:
        raise DataError(f"dataset kind must be auto or one of {KINDS}, got {kind!r}")
    if not p.exists():
        raise DataError(f"dataset {p} does not exist")
    return _READERS[kind](p)
