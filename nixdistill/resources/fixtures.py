"""Small speech datasets in real on-disk layouts, spoken by espeak-ng, for tests and smoke runs.

The audio is synthetic (the espeak-ng library that the ``espeakng-loader`` wheel ships, driven
through its C API with ctypes; no system package) and the text comes from the sentences
shipped in :mod:`nixdistill.resources`, so building a fixture needs no download.

Layouts
-------
LJSpeech (``make_ljspeech_fixture``)::

    root/metadata.csv          LJ001-0001|text|normalized text
    root/wavs/LJ001-0001.wav   mono, 16-bit PCM, ``sample_rate`` Hz

KSS (``make_kss_fixture``), as in the KSS 1.4 archive::

    root/transcript.v.1.4.txt  1/1_0000.wav|text|expanded|decomposed jamo|seconds|english
    root/kss/1/1_0000.wav      mono, 16-bit PCM, 44.1 kHz
    root/kss/2/2_0000.wav      ...

Transcript paths are relative to ``root/kss``. Items are spread in contiguous blocks over up to
four numbered folders, each numbered from ``0000``, as in the real corpus.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re
import threading
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from jamo import h2j

from . import CORPUS_KO, DISTILL_CORPUS_EN, read_sentences

__all__ = [
    "KSS_SAMPLE_RATE",
    "KSS_TRANSCRIPT",
    "KSS_WAV_DIR",
    "LJSPEECH_METADATA",
    "LJSPEECH_WAV_DIR",
    "espeak_available",
    "speak",
    "make_ljspeech_fixture",
    "make_kss_fixture",
]

KSS_SAMPLE_RATE = 44100  # Hz, the rate of the real KSS recordings
KSS_TRANSCRIPT = "transcript.v.1.4.txt"
KSS_WAV_DIR = "kss"
KSS_NUM_FOLDERS = 4  # the real KSS archive has folders 1..4
LJSPEECH_METADATA = "metadata.csv"
LJSPEECH_WAV_DIR = "wavs"
LJSPEECH_DEFAULT_SAMPLE_RATE = 22050  # Hz, the rate of the real LJSpeech recordings
FIXTURE_MAX_WORDS = 12  # keep fixture clips short (a few seconds each)
_DIGIT = re.compile(r"\d")


# espeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)
_ESPEAK_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _espeak_library() -> tuple[ctypes.CDLL, int] | None:
    """The espeak-ng library that the ``espeakng-loader`` wheel ships, initialised for
    synchronous synthesis, and its output rate in Hz; None when it cannot be loaded."""
    try:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path()
    except (ImportError, OSError, RuntimeError):
        return None
    lib.espeak_Initialize.restype = ctypes.c_int
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(),
                                 _INITIALIZE_DONT_EXIT)
    return (lib, rate) if rate > 0 else None


def espeak_available() -> bool:
    """Whether espeak-ng can speak: the library of the ``espeakng-loader`` wheel (a dependency)
    loads. No system ``espeak-ng`` binary is needed."""
    return _espeak_library() is not None


def speak(text: str, voice: str, sample_rate: int) -> np.ndarray:
    """Speak ``text`` with the espeak-ng library shipped by ``espeakng-loader``.

    Args:
        text: the sentence, UTF-8.
        voice: espeak-ng voice name, e.g. ``"en-us"`` or ``"ko"``.
        sample_rate: output rate in Hz; espeak's own rate is resampled with soxr.
    Returns:
        Mono float32 audio in [-1, 1], [T_samples].
    Raises:
        RuntimeError: the library cannot be loaded, the voice is unknown or synthesis fails.
    """
    loaded = _espeak_library()
    if loaded is None:
        raise RuntimeError("the espeak-ng library of the espeakng-loader package cannot be loaded")
    lib, espeak_rate = loaded
    pieces: list[np.ndarray] = []

    def collect(wav, n_samples, _events):
        if n_samples > 0:
            pieces.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0

    callback = _SYNTH_CALLBACK(collect)
    data = text.encode("utf-8") + b"\0"
    with _ESPEAK_LOCK:
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
    if status != 0 or not pieces:
        raise RuntimeError(f"espeak-ng -v {voice} failed (status {status}) on {text!r}")
    audio = np.concatenate(pieces).astype(np.float32) / 32768.0
    if espeak_rate != sample_rate:
        audio = soxr.resample(audio, espeak_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def _pick_sentences(name: str, n: int, max_words: int) -> list[str]:
    """The first ``n`` sentences of a shipped file with at most ``max_words`` words and no digits."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    pool = [s for s in read_sentences(name) if len(s.split()) <= max_words and not _DIGIT.search(s)]
    if n > len(pool):
        raise ValueError(f"n={n} is more than the {len(pool)} short sentences available in {name}")
    return pool[:n]


def make_ljspeech_fixture(root: str | Path, n: int = 8, sample_rate: int = LJSPEECH_DEFAULT_SAMPLE_RATE) -> Path:
    """Write a small LJSpeech-layout dataset of English sentences spoken by espeak-ng (en-us).

    Args:
        root: dataset folder; created if missing.
        n: number of utterances.
        sample_rate: rate of the written WAVs in Hz.
    Returns:
        ``root`` as a Path, holding ``metadata.csv`` and ``wavs/``.
    Raises:
        RuntimeError: ``espeak-ng`` is missing or fails.
        ValueError: ``n`` is out of range.
    """
    root = Path(root)
    sentences = _pick_sentences(DISTILL_CORPUS_EN, n, FIXTURE_MAX_WORDS)
    wav_dir = root / LJSPEECH_WAV_DIR
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, text in enumerate(sentences, start=1):
        utt_id = f"LJ001-{index:04d}"
        audio = speak(text, "en-us", sample_rate)
        sf.write(wav_dir / f"{utt_id}.wav", audio, sample_rate, subtype="PCM_16")
        # The sentences hold no digits or abbreviations to expand, so normalized == text.
        rows.append(f"{utt_id}|{text}|{text}")
    (root / LJSPEECH_METADATA).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def make_kss_fixture(root: str | Path, n: int = 8) -> Path:
    """Write a small KSS-layout dataset of Korean sentences spoken by espeak-ng (ko).

    The audio is 44.1 kHz 16-bit mono, as in KSS; espeak's Korean is barely intelligible, which is
    fine for pipeline tests. The decomposed column is ``jamo.h2j`` of the text, the seconds column
    is the clip duration rounded to 0.1 s, and the english column is left empty.

    Args:
        root: dataset folder; created if missing.
        n: number of utterances.
    Returns:
        ``root`` as a Path, holding ``transcript.v.1.4.txt`` and ``kss/<folder>/*.wav``.
    Raises:
        RuntimeError: ``espeak-ng`` is missing or fails.
        ValueError: ``n`` is out of range.
    """
    root = Path(root)
    sentences = _pick_sentences(CORPUS_KO, n, FIXTURE_MAX_WORDS)
    per_folder = math.ceil(n / KSS_NUM_FOLDERS)
    rows = []
    for index, text in enumerate(sentences):
        folder = index // per_folder + 1
        rel_path = f"{folder}/{folder}_{index % per_folder:04d}.wav"
        wav_path = root / KSS_WAV_DIR / rel_path
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        audio = speak(text, "ko", KSS_SAMPLE_RATE)
        sf.write(wav_path, audio, KSS_SAMPLE_RATE, subtype="PCM_16")
        duration_s = len(audio) / KSS_SAMPLE_RATE
        # The sentences hold no digits, so the expanded column equals the text.
        rows.append(f"{rel_path}|{text}|{text}|{h2j(text)}|{duration_s:.1f}|")
    (root / KSS_TRANSCRIPT).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root
