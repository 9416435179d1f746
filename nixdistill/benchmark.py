"""Student vs teacher, side by side: size, speed, memory and quality (``nixdistill benchmark``).

Method (written into every report):

* **Size.** Inference parameters per module, counted as ``sum(p.numel())``. Student: text
  encoder (embedding + convolution stack + speaker embedding), duration predictor, latent
  encoder, decoder; the training-only aligner is excluded. Teacher: ``enc_p``, ``dp``,
  ``flow``, ``dec`` (+ ``emb_g``); ``enc_q`` (training only) is reported apart. File size is
  ``os.path.getsize`` of the model file.
* **Speed.** Real-time factor ``RTF = synthesis seconds / audio seconds`` over the same
  sentences, one sentence per call (batch 1), noise scales 0. End to end is token ids ->
  waveform; the stages are the encoder (ids -> latent ``z``; teacher: ``enc_p + dp + flow`` via
  ``prior_latents``) and the decoder (``z`` -> waveform; teacher: ``dec`` via ``decode``).
  After ``warmup`` passes, ``repeats`` timed passes run with the models **interleaved** (the
  order rotates each pass), so a noisy machine slows all models alike and the speed-up
  (teacher RTF / student RTF, ratio of medians) stays meaningful. Each pass gives one RTF; we
  report median, quartiles, min and max. Every thread count runs under
  ``torch.set_num_threads``. On CUDA the device is synchronised around every timed stage.
* **Memory.** In-process: a sampling thread reads the resident set size (``/proc/self/statm``)
  while one model synthesises all sentences; the peak minus the RSS just before is the
  synthesis working memory. Freed heap is returned to the OS (``malloc_trim``) before each
  model so that one model's allocations do not hide the next one's. Short spikes between two
  samples can be missed. On CUDA, ``torch.cuda.max_memory_allocated`` is reported too.
* **Quality vs teacher.** Mel-cepstral distance with DTW between teacher and student audio of
  the same sentence, once with the student's own durations and once with the teacher's
  (``w_ceil`` from the teacher fed to the student encoder), which separates duration errors
  from spectral ones.
* **Absolute quality** (``nixdistill[eval]``): WER (CER for Korean) of Whisper-base transcripts
  against the input text, and DNSMOS P.835; optionally for real recordings too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import gc
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .config import AudioConfig, TextConfig
from .errors import NixdistillError
from .eval_quality import (
    EVAL_HINT,
    Transcriber,
    dnsmos,
    error_rate,
    language_of,
    mcd_dtw,
    missing_extras,
    normalize_transcript,
    uses_cer,
)

__all__ = [
    "BenchmarkError",
    "BenchModel",
    "DEFAULT_N_SENTENCES",
    "count_params",
    "teacher_view",
    "student_view",
    "parse_threads",
    "read_texts",
    "default_texts",
    "time_models",
    "measure_memory",
    "quality_vs_teacher",
    "absolute_quality",
    "machine_info",
    "run_benchmark",
    "write_report",
    "render_tables",
]

DEFAULT_N_SENTENCES = 20
"""Sentences used when ``--texts`` is not given (first N of the bundled benchmark list)."""
MB = 1 << 20
"""Bytes per MiB (sizes are reported in MiB and labelled "MB")."""
RSS_SAMPLE_INTERVAL_S = 0.002
"""Period of the RSS sampling thread, in seconds."""
QUARTILES = (0.25, 0.75)
BENCH_TEXT_FILES = {"en": "bench_en.txt", "ko": "bench_ko.txt"}
"""Bundled sentence lists (``nixdistill.resources``) by teacher language."""
MEL_PLOT_DPI = 100
RTF_PLOT_MIN_WIDTH_IN = 6.0
"""Smallest width of the RTF bar chart, in inches."""


class BenchmarkError(NixdistillError, ValueError):
    """Bad benchmark arguments or inputs (thread spec, texts file, mismatched models)."""


# --------------------------------------------------------------------------------------------
# Uniform view of teacher and students
# --------------------------------------------------------------------------------------------
@dataclass
class BenchModel:
    """One model as the benchmark sees it: ids -> z -> wav, plus what to count.

    Attributes:
        name: unique display name ("teacher", or the student file's stem).
        role: ``"teacher"`` or ``"student"``.
        kind: teacher kind ("piper", "vits", ...) or student decoder kind.
        path: model file (``None`` when built in memory).
        audio: audio settings of the model's output.
        language: ISO 639-1 code of the text the model speaks.
        encode_text: transcript -> token ids (list of int).
        encode: ``(x [1, T_text] int64, x_lengths [1], w_ceil [1, T_text] | None) ->
            (z [1, inter, T_frames], w_ceil [1, T_text] int64)``; noise scales 0.
        decode: ``z [1, inter, T_frames] -> wav [1, 1, T_frames * hop_length]``.
        parts: inference modules by report name (several modules are summed).
        apart: training-only modules reported separately (e.g. the teacher's ``enc_q``).
        device: torch device of the parameters.
    """

    name: str
    role: str
    kind: str
    path: str | None
    audio: AudioConfig
    language: str
    encode_text: Callable[[str], list[int]]
    encode: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]
    decode: Callable[[torch.Tensor], torch.Tensor]
    parts: dict[str, list[nn.Module]]
    apart: dict[str, list[nn.Module]] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def count_params(modules: Sequence[nn.Module | None]) -> int:
    """``sum(p.numel())`` over the parameters of ``modules`` (``None`` entries count 0).

    A parameter shared by two modules is counted once.
    """
    seen: set[int] = set()
    total = 0
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def _param_bytes(modules: Sequence[nn.Module | None]) -> int:
    tensors = {id(t): t for m in modules if m is not None for t in (*m.parameters(), *m.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _sid_for(n_speakers: int, device: torch.device) -> torch.Tensor | None:
    return torch.zeros(1, dtype=torch.long, device=device) if n_speakers > 1 else None


def teacher_view(teacher: Any, name: str = "teacher") -> BenchModel:
    """Wrap a :class:`nixdistill.teacher.Teacher` (``model`` is a ``VITS``).

    Encoder stage: ``model.prior_latents`` (``enc_p``, ``dp``, ``flow``); decoder stage:
    ``model.decode`` (``dec``). Speaker 0 for multi-speaker teachers.
    """
    model = teacher.model
    device = next(model.parameters()).device
    sid = _sid_for(int(getattr(teacher, "n_speakers", 0) or 0), device)

    def encode(x, x_lengths, w_ceil=None):
        p = model.prior_latents(x, x_lengths, sid=sid, noise_scale=0.0, length_scale=1.0,
                                noise_scale_w=0.0, w_ceil=w_ceil)
        return p.z, p.w_ceil

    def decode(z):
        return model.decode(z, sid=sid)

    parts = {
        "enc_p": [model.enc_p],
        "dp": [model.dp],
        "flow": [model.flow],
        "dec": [model.dec],
    }
    if getattr(model, "emb_g", None) is not None:
        parts["emb_g"] = [model.emb_g]
    apart = {"enc_q": [model.enc_q]} if getattr(model, "enc_q", None) is not None else {}
    source = getattr(teacher, "source", None)
    return BenchModel(
        name=name, role="teacher", kind=str(getattr(teacher, "kind", "vits")),
        path=str(source) if source is not None and Path(str(source)).is_file() else None,
        audio=teacher.audio, language=language_of(teacher.text),
        encode_text=teacher.frontend.encode, encode=encode, decode=decode,
        parts=parts, apart=apart, device=device,
    )


def student_view(student: Any, name: str, path: str | Path | None = None) -> BenchModel:
    """Wrap a :class:`nixdistill.student.Student` (``NixEncoder`` + decoder).

    Encoder stage: ``encoder.infer`` (text encoder, duration predictor or the given
    ``w_ceil``, latent encoder); decoder stage: ``decoder(z, g)``.
    """
    enc, dec = student.encoder, student.decoder
    device = next(dec.parameters()).device
    n_speakers = int(getattr(getattr(enc, "config", None), "n_speakers", 0) or 0)
    sid = _sid_for(n_speakers, device)
    g_fn = getattr(student, "speaker_embedding", None)

    def encode(x, x_lengths, w_ceil=None):
        out = enc.infer(x, x_lengths, sid=sid, noise_scale=0.0, length_scale=1.0, w_ceil=w_ceil,
                        noise_scale_w=0.0)
        return out.z, out.w_ceil

    def decode(z):
        g = g_fn(sid) if g_fn is not None else None
        return dec(z, g)

    parts = {
        "text_encoder": [getattr(enc, "emb", None), getattr(enc, "text_encoder", None),
                         getattr(enc, "emb_g", None)],
        "duration_predictor": [getattr(enc, "dp", None)],
        "latent_encoder": [getattr(enc, "latent_encoder", None)],
        "decoder": [dec],
    }
    # anything else the encoder holds at inference (never the training-only aligner)
    named = {id(m) for ms in parts.values() for m in ms if m is not None}
    other = [m for n, m in enc.named_children() if id(m) not in named and n != "aligner"]
    if count_params(other):
        parts["other"] = other
    apart = {"aligner": [enc.aligner]} if getattr(enc, "aligner", None) is not None else {}
    decoder_cfg = (getattr(student, "metadata", None) or {}).get("decoder_config") or {}
    frontend = student.frontend
    text_cfg = _text_config_of(frontend)
    return BenchModel(
        name=name, role="student", kind=str(decoder_cfg.get("kind", type(dec).__name__)),
        path=str(path) if path is not None else None, audio=student.audio,
        language=language_of(text_cfg), encode_text=frontend.encode, encode=encode,
        decode=decode, parts=parts, apart=apart, device=device,
    )


def _text_config_of(frontend: Any) -> TextConfig:
    """The frontend kind and espeak language of a frontend, as a :class:`TextConfig`."""
    d = frontend.to_dict()
    return TextConfig(frontend=d.get("frontend", "english_chars"), language=d.get("language", "en-us"))


def size_report(m: BenchModel) -> dict[str, Any]:
    """Parameter counts (per part + total, training-only parts apart) and file size."""
    params = {k: count_params(v) for k, v in m.parts.items()}
    params["total"] = count_params([x for v in m.parts.values() for x in v])
    file_bytes = os.path.getsize(m.path) if m.path else None
    return {
        "params": params,
        "params_training_only": {k: count_params(v) for k, v in m.apart.items()},
        "param_mb": _param_bytes([x for v in m.parts.values() for x in v]) / MB,
        "file_bytes": file_bytes,
        "file_mb": None if file_bytes is None else file_bytes / MB,
    }


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def parse_threads(spec: str | Sequence[int] | None) -> list[int]:
    """``"1,2"``, ``"all"``, ``"1,all"`` or a list of ints -> sorted unique thread counts.

    ``all`` is ``os.cpu_count()``.

    Raises:
        BenchmarkError: for a non-positive or non-integer entry.
    """
    n_all = os.cpu_count() or 1
    if spec is None:
        items: list[Any] = [1, "all"]
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = list(spec)
    out = set()
    for item in items:
        if item == "all":
            out.add(n_all)
            continue
        try:
            n = int(item)
        except (TypeError, ValueError):
            raise BenchmarkError(f"--threads: {item!r} is not a number or 'all'") from None
        if n < 1:
            raise BenchmarkError(f"--threads: thread counts must be >= 1, got {n}")
        out.add(n)
    if not out:
        raise BenchmarkError("--threads: no thread count given")
    return sorted(out)


def read_texts(path: str | Path) -> list[str]:
    """Sentences from a UTF-8 file, one per line; blank lines and ``#`` comments skipped.

    Raises:
        BenchmarkError: missing file or no sentences.
    """
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"texts file {p} does not exist")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    texts = [ln for ln in lines if ln and not ln.startswith("#")]
    if not texts:
        raise BenchmarkError(f"texts file {p} has no sentences")
    return texts


def default_texts(language: str) -> list[str]:
    """The bundled benchmark sentences for ``language`` (English for unknown languages)."""
    from .resources import read_sentences

    return list(read_sentences(BENCH_TEXT_FILES.get(language, BENCH_TEXT_FILES["en"])))


@dataclass
class _Prepared:
    """Token ids of every sentence for one model, on its device."""

    x: list[torch.Tensor]  # [1, T_text] each
    x_lengths: list[torch.Tensor]  # [1] each


def _prepare(m: BenchModel, texts: Sequence[str]) -> _Prepared:
    xs, ls = [], []
    for t in texts:
        ids = m.encode_text(t)
        if not ids:
            raise BenchmarkError(f"{m.name}: sentence {t!r} gives no tokens")
        xs.append(torch.tensor([ids], dtype=torch.long, device=m.device))
        ls.append(torch.tensor([len(ids)], dtype=torch.long, device=m.device))
    return _Prepared(xs, ls)


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_pass(m: BenchModel, prep: _Prepared) -> dict[str, float]:
    """Synthesise every sentence once; seconds per stage and audio seconds."""
    enc_s = dec_s = total_s = audio_s = 0.0
    with torch.inference_mode():
        for x, x_len in zip(prep.x, prep.x_lengths):
            _sync(m.device)
            t0 = time.perf_counter()
            z, _ = m.encode(x, x_len, None)
            _sync(m.device)
            t1 = time.perf_counter()
            wav = m.decode(z)
            _sync(m.device)
            t2 = time.perf_counter()
            enc_s += t1 - t0
            dec_s += t2 - t1
            total_s += t2 - t0
            audio_s += wav.shape[-1] / m.audio.sample_rate
    return {"encoder_s": enc_s, "decoder_s": dec_s, "total_s": total_s, "audio_s": audio_s}


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    q1, q3 = np.quantile(arr, QUARTILES)
    return {
        "median": float(np.median(arr)), "q1": float(q1), "q3": float(q3),
        "min": float(arr.min()), "max": float(arr.max()), "runs": [float(v) for v in arr],
    }


def time_models(
    models: Sequence[BenchModel], texts: Sequence[str], repeats: int, warmup: int,
    threads: Sequence[int],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Interleaved RTF measurement of several models on the same sentences.

    For each thread count: ``warmup`` untimed passes of every model, then ``repeats`` timed
    passes in which every model synthesises all sentences once, the model order rotating by
    one each pass. ``torch.get_num_threads()`` is restored afterwards.

    Args:
        models: the models (unique names).
        texts: sentences, each synthesised alone (batch 1).
        repeats: timed passes (>= 1). warmup: untimed passes (>= 0).
        threads: intra-op thread counts.
    Returns:
        ``{model_name: {str(threads): {"rtf", "encoder_rtf", "decoder_rtf", "latency_ms"
        (per sentence, end to end): stats, "audio_s": seconds per pass}}}`` where stats is
        ``{median, q1, q3, min, max, runs}``.
    Raises:
        BenchmarkError: repeats < 1 or warmup < 0.
    """
    if repeats < 1 or warmup < 0:
        raise BenchmarkError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    prepared = {m.name: _prepare(m, texts) for m in models}
    previous_threads = torch.get_num_threads()
    results: dict[str, dict[str, dict[str, Any]]] = {m.name: {} for m in models}
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for _ in range(warmup):
                for m in models:
                    _one_pass(m, prepared[m.name])
            runs: dict[str, list[dict[str, float]]] = {m.name: [] for m in models}
            for r in range(repeats):
                k = r % len(models)
                for m in [*models[k:], *models[:k]]:
                    runs[m.name].append(_one_pass(m, prepared[m.name]))
            for m in models:
                rs = runs[m.name]
                results[m.name][str(n_threads)] = {
                    "rtf": _stats([p["total_s"] / p["audio_s"] for p in rs]),
                    "encoder_rtf": _stats([p["encoder_s"] / p["audio_s"] for p in rs]),
                    "decoder_rtf": _stats([p["decoder_s"] / p["audio_s"] for p in rs]),
                    "latency_ms": _stats([1000.0 * p["total_s"] / len(texts) for p in rs]),
                    "audio_s": rs[0]["audio_s"],
                }
    finally:
        torch.set_num_threads(previous_threads)
    return results


def speedups(speed: dict[str, dict[str, dict[str, Any]]], teacher: str,
             students: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Teacher RTF / student RTF (ratio of medians) per student and thread count.

    Returns:
        ``{student: {threads: {"end_to_end", "encoder", "decoder"}}}``.
    """
    keys = {"end_to_end": "rtf", "encoder": "encoder_rtf", "decoder": "decoder_rtf"}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for s in students:
        out[s] = {}
        for th, st in speed[s].items():
            te = speed[teacher][th]
            out[s][th] = {k: te[v]["median"] / st[v]["median"] for k, v in keys.items()}
    return out


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------
def _rss_bytes() -> int | None:
    """Current resident set size of this process (Linux ``/proc/self/statm``), or None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
    except OSError:
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> None:
    """Return freed heap to the OS (glibc only; a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


class _RssSampler:
    """Background thread recording the peak RSS (bytes) until stopped."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.peak = _rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() or 0)
            time.sleep(self.interval_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes() or 0)


def measure_memory(m: BenchModel, texts: Sequence[str]) -> dict[str, Any]:
    """Synthesis working memory of one model (see the module docstring for the method).

    Returns:
        ``{"method", "rss_before_mb", "peak_rss_delta_mb", "cuda_peak_mb"}``; RSS fields are
        ``None`` where ``/proc/self/statm`` does not exist, ``cuda_peak_mb`` off CUDA.
    """
    prep = _prepare(m, texts)
    gc.collect()
    _malloc_trim()
    before = _rss_bytes()
    if m.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(m.device)
    with _RssSampler(RSS_SAMPLE_INTERVAL_S) as sampler:
        _one_pass(m, prep)
    cuda_peak = (torch.cuda.max_memory_allocated(m.device) / MB) if m.device.type == "cuda" else None
    return {
        "method": f"in-process RSS sampled every {RSS_SAMPLE_INTERVAL_S * 1000:g} ms, "
                  "peak minus RSS before synthesis, after malloc_trim",
        "rss_before_mb": None if before is None else before / MB,
        "peak_rss_delta_mb": None if before is None else max(0, sampler.peak - before) / MB,
        "cuda_peak_mb": cuda_peak,
    }


# --------------------------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------------------------
def _synth(m: BenchModel, text: str, w_ceil: torch.Tensor | None = None
           ) -> tuple[np.ndarray, torch.Tensor]:
    prep = _prepare(m, [text])
    with torch.inference_mode():
        if w_ceil is not None:
            w_ceil = w_ceil.to(m.device)
        z, w = m.encode(prep.x[0], prep.x_lengths[0], w_ceil)
        wav = m.decode(z)
    return wav.reshape(-1).float().cpu().numpy(), w.cpu()


def _nanmean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(statistics.fmean(finite)) if finite else None


def quality_vs_teacher(teacher: BenchModel, students: Sequence[BenchModel], texts: Sequence[str]
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """MCD-DTW of each student against the teacher, with own and with teacher durations.

    Args:
        teacher / students: wrapped models (same sample rate expected).
        texts: sentences.
    Returns:
        ``({student: {"mcd_db", "mcd_teacher_durations_db", "per_sentence": [...],
        "missing"?}}, {model name: waveforms of the first sentence}``. Values are ``None`` with a
        ``"missing"`` hint when ``mel-cepstral-distance`` is not installed, and the
        teacher-duration MCD is ``None`` with a ``"note"`` when token ids differ.
    """
    teacher_out = [_synth(teacher, t) for t in texts]
    first = {teacher.name: teacher_out[0][0]}
    result: dict[str, dict[str, Any]] = {}
    can_mcd = not missing_extras("mcd")
    a = teacher.audio
    for s in students:
        if s.audio.sample_rate != a.sample_rate:
            raise BenchmarkError(
                f"{s.name} speaks at {s.audio.sample_rate} Hz but the teacher at {a.sample_rate} Hz"
            )
        rows: list[dict[str, Any]] = []
        same_ids = True
        for text, (t_wav, t_w) in zip(texts, teacher_out):
            s_wav, _ = _synth(s, text)
            same = s.encode_text(text) == teacher.encode_text(text)
            same_ids &= same
            forced = _synth(s, text, t_w)[0] if same else None
            rows.append({
                "text": text,
                "teacher_s": len(t_wav) / a.sample_rate,
                "student_s": len(s_wav) / a.sample_rate,
                "mcd_db": mcd_dtw(t_wav, s_wav, a.sample_rate, a.n_fft, a.hop_length) if can_mcd else None,
                "mcd_teacher_durations_db": (
                    mcd_dtw(t_wav, forced, a.sample_rate, a.n_fft, a.hop_length)
                    if can_mcd and forced is not None else None
                ),
            })
            if len(rows) == 1:
                first[s.name] = s_wav
        entry: dict[str, Any] = {
            "mcd_db": _nanmean([r["mcd_db"] for r in rows]),
            "mcd_teacher_durations_db": _nanmean([r["mcd_teacher_durations_db"] for r in rows]),
            "duration_ratio": sum(r["student_s"] for r in rows) / sum(r["teacher_s"] for r in rows),
            "per_sentence": rows,
        }
        if not can_mcd:
            entry["missing"] = EVAL_HINT
        if not same_ids:
            entry["note"] = "student and teacher encode some sentences differently; no forced durations"
        result[s.name] = entry
    return result, first


def absolute_quality(
    models: Sequence[BenchModel], texts: Sequence[str], language: str,
    real: Sequence[tuple[str, np.ndarray, int]] = (),
) -> dict[str, dict[str, Any]]:
    """Intelligibility (ASR) and DNSMOS for every model, and for real recordings if given.

    Args:
        models: wrapped models; each speaks every sentence (noise scales 0).
        texts: sentences (the ASR references).
        language: ISO 639-1; Korean/Japanese/Chinese are scored by CER, others by WER.
        real: ``(transcript, waveform [T_samples], sample_rate)`` of real recordings.
    Returns:
        ``{name: {"asr_metric": "wer"|"cer", "asr_error_rate", "dnsmos": {"ovrl", "sig", "bak",
        "p808"} (means), "transcripts": [...]}}`` with a ``"real"`` entry when ``real`` is
        given. Metrics whose package is missing are ``None`` with ``"missing": EVAL_HINT``.
    """
    metric = "cer" if uses_cer(language) else "wer"
    clips: dict[str, list[tuple[str, np.ndarray, int]]] = {
        m.name: [(t, _synth(m, t)[0], m.audio.sample_rate) for t in texts] for m in models
    }
    if real:
        clips["real"] = list(real)
    asr_ok, mos_ok = not missing_extras("asr"), not missing_extras("dnsmos")
    transcriber = Transcriber(language=language) if asr_ok else None
    out: dict[str, dict[str, Any]] = {}
    for name, items in clips.items():
        entry: dict[str, Any] = {"asr_metric": metric, "asr_error_rate": None, "dnsmos": None}
        if transcriber is not None:
            hyps = [transcriber.transcribe(w, sr) for _, w, sr in items]
            refs_n = [normalize_transcript(t, language) for t, _, _ in items]
            hyps_n = [normalize_transcript(h, language) for h in hyps]
            entry["asr_error_rate"] = error_rate(refs_n, hyps_n, "char" if metric == "cer" else "word")
            entry["transcripts"] = hyps
        if mos_ok:
            scores = [dnsmos(w, sr) for _, w, sr in items]
            entry["dnsmos"] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        if not (asr_ok and mos_ok):
            entry["missing"] = EVAL_HINT
        out[name] = entry
    return out


def _read_real(filelist: str | Path, sample_rate: int, limit: int) -> list[tuple[str, np.ndarray, int]]:
    from .audio import load_wav
    from .data import read_dataset

    utts = [u for u in read_dataset(filelist) if u.wav_path is not None][:limit]
    if not utts:
        raise BenchmarkError(f"{filelist}: no utterances with audio")
    return [(u.text, load_wav(u.wav_path, sample_rate), sample_rate) for u in utts]


# --------------------------------------------------------------------------------------------
# Meta, plots, report
# --------------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """Platform, CPU model, core count, default torch threads and GPU name (if CUDA)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "device": device,
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "nixdistill": _version("nixdistill"),
        "onnxruntime": _version("onnxruntime"),
    }


def _plot_mels(waves: dict[str, np.ndarray], audio: AudioConfig, text: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .audio import audio_kwargs, mel_spectrogram

    fig, axes = plt.subplots(len(waves), 1, figsize=(10, 2.6 * len(waves)), squeeze=False)
    for ax, (name, wav) in zip(axes[:, 0], waves.items()):
        y = torch.from_numpy(np.asarray(wav, np.float32)).reshape(1, -1)
        mel = mel_spectrogram(y, **audio_kwargs(audio))[0].numpy()
        ax.imshow(mel, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(f"{name}: {len(wav) / audio.sample_rate:.2f} s")
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    # The default matplotlib font has no Hangul (or other non-Latin) glyphs: title with the
    # sentence only when it can be drawn, otherwise the report carries the text.
    if text.isascii():
        fig.suptitle(text[:100])
    fig.tight_layout()
    fig.savefig(path, dpi=MEL_PLOT_DPI)
    plt.close(fig)


def _plot_rtf(speed: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(speed)
    thread_keys = list(next(iter(speed.values())))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(RTF_PLOT_MIN_WIDTH_IN, 1.2 * len(thread_keys) * len(names)), 4))
    for i, name in enumerate(names):
        xs = np.arange(len(thread_keys)) + i * width
        enc = [speed[name][k]["encoder_rtf"]["median"] for k in thread_keys]
        dec = [speed[name][k]["decoder_rtf"]["median"] for k in thread_keys]
        tot = [speed[name][k]["rtf"] for k in thread_keys]
        err = np.array([[t["median"] - t["q1"] for t in tot], [t["q3"] - t["median"] for t in tot]])
        bars = ax.bar(xs, enc, width, label=f"{name} encoder")
        ax.bar(xs, dec, width, bottom=enc, label=f"{name} decoder", color=bars[0].get_facecolor(),
               alpha=0.55, yerr=err, capsize=3)
    ax.set_xticks(np.arange(len(thread_keys)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([f"{k} thread(s)" for k in thread_keys])
    ax.set_ylabel("RTF (lower is faster)")
    ax.set_title("RTF median: encoder + decoder (whiskers: IQR)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=MEL_PLOT_DPI)
    plt.close(fig)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [result["teacher"], *result["students"]]


def _tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every report table, shared by Markdown and Rich output."""
    tables = []
    rows = []
    for e in _entries(result):
        parts = ", ".join(f"{k} {_fmt(v)}" for k, v in e["size"]["params"].items() if k != "total")
        apart = ", ".join(f"{k} {_fmt(v)}" for k, v in e["size"]["params_training_only"].items())
        rows.append([e["name"], e["kind"], _fmt(e["size"]["params"]["total"]), parts,
                     apart or "–", _fmt(e["size"]["file_mb"], 2)])
    tables.append(("Size (inference parameters)",
                   ["model", "kind", "params", "per module", "training only", "file MB"], rows))
    rows = []
    for e in _entries(result):
        for th, s in e["speed"].items():
            rows.append([e["name"], th,
                         f"{_fmt(s['rtf']['median'])} [{_fmt(s['rtf']['q1'])}–{_fmt(s['rtf']['q3'])}]",
                         _fmt(s["encoder_rtf"]["median"]), _fmt(s["decoder_rtf"]["median"]),
                         _fmt(s["latency_ms"]["median"], 1)])
    tables.append(("Speed (RTF median [IQR], lower is faster)",
                   ["model", "threads", "RTF end to end", "encoder RTF", "decoder RTF",
                    "ms / sentence"], rows))
    rows = [[s, th, f"{_fmt(v['end_to_end'], 2)}×", f"{_fmt(v['encoder'], 2)}×", f"{_fmt(v['decoder'], 2)}×"]
            for s, per in result["speedup"].items() for th, v in per.items()]
    if rows:
        tables.append(("Speed-up (teacher RTF / student RTF)",
                       ["student", "threads", "end to end", "encoder", "decoder"], rows))
    rows = [[e["name"], _fmt(e["memory"]["peak_rss_delta_mb"], 1), _fmt(e["size"]["param_mb"], 1),
             _fmt(e["memory"]["cuda_peak_mb"], 1)] for e in _entries(result) if e.get("memory")]
    if rows:
        tables.append(("Memory (MB)", ["model", "synthesis peak RSS Δ", "weights", "CUDA peak"], rows))
    if result.get("quality_enabled"):
        rows = []
        real = result.get("real")
        for e in [*_entries(result), *([real] if real else [])]:
            q = e.get("quality") or {}
            mos = q.get("dnsmos") or {}
            rows.append([e["name"], _fmt(q.get("mcd_db"), 2), _fmt(q.get("mcd_teacher_durations_db"), 2),
                         f"{q.get('asr_metric', '')} {_fmt(q.get('asr_error_rate'))}".strip(),
                         _fmt(mos.get("ovrl"), 2), q.get("missing", "")])
        tables.append(("Quality", ["model", "MCD dB", "MCD dB (teacher durations)", "ASR error",
                                   "DNSMOS ovrl", "missing"], rows))
    return tables


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    """Write the Markdown report: command, machine, versions, date, method, tables, plots.

    Image links are relative to the report's folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = result["meta"]
    lines = [
        "# nixdistill benchmark", "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['platform']}" + (f", GPU {meta['machine']['gpu']}" if meta["machine"].get("gpu") else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- sentences: {meta['settings']['n_sentences']} ({meta['settings']['language']}), "
        f"warm-up {meta['settings']['warmup']}, repeats {meta['settings']['repeats']}, "
        f"threads {meta['settings']['threads']}, device {meta['settings']['device']}",
        "",
    ]
    for title, header, rows in _tables(result):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    if result.get("plots"):
        lines += ["## Plots", ""]
        for name, p in result["plots"].items():
            rel = os.path.relpath(p, path.parent)
            lines += [f"![{name}]({Path(rel).as_posix()})", ""]
    lines += ["## Method", "", (__doc__ or "").split("Method (written into every report):", 1)[-1].strip(), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def render_tables(result: dict[str, Any], console: Any) -> None:
    """Print the report tables with Rich on ``console`` (normally stderr)."""
    from rich.table import Table

    for title, header, rows in _tables(result):
        table = Table(title=title)
        for h in header:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        console.print(table)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def _unique_names(paths: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for i, p in enumerate(paths):
        base = Path(str(p)).stem if isinstance(p, (str, Path)) else f"student{i + 1}"
        name = base if base not in names and base != "teacher" else f"{base}-{i + 1}"
        names.append(name)
    return names


def _load_teacher(ref: Any, device: str) -> Any:
    if not isinstance(ref, (str, Path)):
        return ref
    from .teacher import load_teacher

    return load_teacher(str(ref), device=device)


def _load_student(ref: Any, device: str) -> Any:
    if not isinstance(ref, (str, Path)):
        return ref
    from .student import load_student

    return load_student(ref, device=device)


def run_benchmark(
    teacher_ref: Any,
    student_paths: Sequence[Any] = (),
    texts: Sequence[str] | None = None,
    repeats: int = 5,
    warmup: int = 1,
    threads: str | Sequence[int] | None = None,
    eval_quality: bool = True,
    out_json: str | Path | None = None,
    out_report: str | Path | None = None,
    plots_dir: str | Path | None = None,
    device: str = "cpu",
    n_sentences: int = DEFAULT_N_SENTENCES,
    real_filelist: str | Path | None = None,
    measure_mem: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Benchmark a teacher and its students side by side (see the module docstring).

    Args:
        teacher_ref: any teacher reference :func:`nixdistill.teacher.load_teacher` resolves, or
            an already loaded ``Teacher``.
        student_paths: exported ``student.safetensors`` files (or loaded ``Student`` objects);
            empty for a teacher-only run.
        texts: sentences; ``None`` uses the first ``n_sentences`` bundled benchmark sentences of
            the teacher's language.
        repeats / warmup: timed and untimed passes per thread count.
        threads: thread counts (``"1,2"``, ``"all"``, list); default ``1`` and all cores.
        eval_quality: compute MCD vs teacher and, with the eval extra, WER/CER and DNSMOS.
        out_json: write the result as JSON here (``"-"``: stdout).
        out_report: write the Markdown report here.
        plots_dir: write ``mel.png`` (first sentence, teacher vs students) and ``rtf.png`` here.
        device: torch device.
        n_sentences: how many sentences to use (from ``texts`` or the bundled list).
        real_filelist: dataset/filelist of real recordings to score alongside (quality only).
        measure_mem: measure synthesis memory per model.
        command: command line to record (default: ``sys.argv``).
    Returns:
        ``{"meta": {command, date, machine, versions, settings}, "teacher": entry,
        "students": [entry, ...], "speedup": {student: {threads: {end_to_end, encoder,
        decoder}}}, "quality_enabled", "real"?, "plots"}`` where an entry is ``{name, role,
        kind, path, sample_rate, size, speed, memory, quality}``.
    Raises:
        BenchmarkError: bad arguments; NixdistillError from the loaders.
    """
    if n_sentences < 1:
        raise BenchmarkError(f"n_sentences must be >= 1, got {n_sentences}")
    thread_list = parse_threads(threads)
    teacher_obj = _load_teacher(teacher_ref, device)
    t_model = teacher_view(teacher_obj)
    names = _unique_names(list(student_paths))
    s_models = [
        student_view(_load_student(p, device), name, p if isinstance(p, (str, Path)) else None)
        for p, name in zip(student_paths, names)
    ]
    sentences = list(texts) if texts is not None else default_texts(t_model.language)
    sentences = sentences[:n_sentences]
    if not sentences:
        raise BenchmarkError("no sentences to benchmark")
    models = [t_model, *s_models]

    speed = time_models(models, sentences, repeats, warmup, thread_list)
    entries: dict[str, dict[str, Any]] = {}
    for m in models:
        entries[m.name] = {
            "name": m.name, "role": m.role, "kind": m.kind, "path": m.path,
            "sample_rate": m.audio.sample_rate, "size": size_report(m), "speed": speed[m.name],
            "memory": measure_memory(m, sentences) if measure_mem else None,
            "quality": None,
        }

    first_waves: dict[str, np.ndarray] = {}
    real_entry = None
    if eval_quality:
        vs_teacher, first_waves = quality_vs_teacher(t_model, s_models, sentences)
        absolute = absolute_quality(
            models, sentences, t_model.language,
            _read_real(real_filelist, t_model.audio.sample_rate, n_sentences) if real_filelist else (),
        )
        for m in models:
            entries[m.name]["quality"] = {**absolute[m.name], **vs_teacher.get(m.name, {})}
        if "real" in absolute:
            real_entry = {"name": "real", "role": "real", "quality": absolute["real"]}

    plots: dict[str, str] = {}
    if plots_dir is not None:
        pdir = Path(plots_dir)
        pdir.mkdir(parents=True, exist_ok=True)
        if not first_waves:
            first_waves = {m.name: _synth(m, sentences[0])[0] for m in models}
        _plot_mels(first_waves, t_model.audio, sentences[0], pdir / "mel.png")
        _plot_rtf(speed, pdir / "rtf.png")
        plots = {"mel": str(pdir / "mel.png"), "rtf": str(pdir / "rtf.png")}

    result: dict[str, Any] = {
        "meta": {
            "command": command if command is not None else shlex.join(sys.argv),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(device),
            "versions": _versions(),
            "settings": {
                "n_sentences": len(sentences), "language": t_model.language,
                "repeats": repeats, "warmup": warmup, "threads": thread_list, "device": device,
                "noise_scale": 0.0, "batch_size": 1,
            },
        },
        "teacher": entries[t_model.name],
        "students": [entries[m.name] for m in s_models],
        "speedup": speedups(speed, t_model.name, [m.name for m in s_models]),
        "quality_enabled": bool(eval_quality),
        "plots": plots,
    }
    if real_entry is not None:
        result["real"] = real_entry
    if out_report is not None:
        write_report(result, out_report)
        result["report"] = str(out_report)
    if out_json is not None:
        text = json.dumps(result, indent=2, ensure_ascii=False)
        if str(out_json) == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(out_json).parent.mkdir(parents=True, exist_ok=True)
            Path(out_json).write_text(text + "\n", encoding="utf-8")
    return result
