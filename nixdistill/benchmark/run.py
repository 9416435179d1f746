"""``run_benchmark``: load the models, measure, and return a :class:`BenchmarkResult`."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .adapters import (
    OrtModel,
    TorchModel,
    int8_copies,
    size_report,
    student_onnx_graphs,
    student_view,
    teacher_view,
)
from .memory import measure_peak_rss
from .quality import first_sentence_clips, quality_pass
from .result import INT8_SUFFIX, BenchmarkResult, ModelEntry
from .settings import BenchmarkError, BenchmarkSettings, default_texts
from .speed import speedups, time_models

__all__ = ["run_benchmark", "machine_info", "streaming_latency"]

ORT_SUFFIX = "@onnxruntime"
"""Timing key of a model's ONNX Runtime twin."""
STREAM_SENTENCES = 5
"""Sentences joined into the one paragraph of the streaming measurement."""


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
        "platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(), "device": device,
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "nixdistill": _version("nixdistill"), "onnxruntime": _version("onnxruntime")}


def _unique_names(refs: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for i, p in enumerate(refs):
        base = Path(str(p)).stem if isinstance(p, (str, Path)) else f"student{i + 1}"
        names.append(base if base not in names and base != "teacher" else f"{base}-{i + 1}")
    return names


def streaming_latency(student: Any, text: str) -> dict[str, Any]:
    """Time to first audio and total time of ``student.stream(text)`` at 1 thread.

    ``Student.stream`` is a generator of waveform chunks (one per sentence); a student object
    without it (an older API) gets a note instead of times.
    """
    stream = getattr(type(student), "stream", None)
    if stream is None:
        return {"note": "Student.stream does not exist yet"}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        first_s, n_samples = None, 0
        for chunk in student.stream(text):
            first_s = first_s if first_s is not None else time.perf_counter() - t0
            n_samples += int(np.asarray(chunk).size)
        total_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)
    return {"time_to_first_audio_ms": 1000.0 * (first_s or total_s), "total_ms": 1000.0 * total_s,
            "audio_s": n_samples / student.sample_rate, "threads": 1}


def _read_real(filelist: str | Path, sample_rate: int, limit: int) -> list[tuple[str, np.ndarray, int]]:
    from ..audio import load_wav
    from ..data import read_dataset

    utts = [u for u in read_dataset(filelist) if u.wav_path is not None][:limit]
    if not utts:
        raise BenchmarkError(f"{filelist}: no utterances with audio")
    return [(u.text, load_wav(u.wav_path, sample_rate), sample_rate) for u in utts]


def _mb(paths: Sequence[str]) -> float:
    return sum(os.path.getsize(p) for p in paths) / (1 << 20)


def _ort_models(teacher: Any, t_model: TorchModel, s_models: Sequence[TorchModel],
                s_refs: Sequence[Any], tmp: Path,
                int8: bool = False) -> tuple[list[OrtModel], dict[str, dict[str, Any]], str | None]:
    """ONNX Runtime twins: the teacher's own Piper graph (Piper voices only) and each student
    file's exported graph(s), plus with ``int8`` a MatMul-int8 copy of those (named
    ``<student> int8``); the int8 copies' facts by student name; the note says what is
    missing and why, and how each student was exported."""
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return [], {}, f"{' and '.join(missing)} not installed (pip install 'nixdistill[piper]')"
    out, int8_info, note = [], {}, None
    if teacher.kind == "piper" and t_model.path is not None:
        out.append(OrtModel(t_model.name + ORT_SUFFIX, "teacher", [t_model.path], t_model.audio,
                            t_model.encode_text))
    else:
        note = "the teacher is not a Piper .onnx voice: no ONNX Runtime teacher, no speed-up"
    formats = []
    for m, ref in zip(s_models, s_refs):
        if not isinstance(ref, (str, Path)):
            continue
        graphs, fmt = student_onnx_graphs(ref, tmp / m.name)
        formats.append(f"{m.name}: {fmt}")
        out.append(OrtModel(m.name + ORT_SUFFIX, "student", graphs, m.audio, m.encode_text))
        if int8:
            q_graphs, record = int8_copies(graphs, tmp / f"{m.name}-int8")
            int8_info[m.name] = {"quantization": record, "file_mb": _mb(q_graphs),
                                 "float_file_mb": _mb(graphs)}
            formats.append(f"{m.name}{INT8_SUFFIX}: {record['quantized_weights']} "
                           f"{'+'.join(record['op_types'])} weights int8, "
                           f"{_mb(q_graphs):.2f} MB (float {_mb(graphs):.2f} MB)")
            out.append(OrtModel(m.name + INT8_SUFFIX + ORT_SUFFIX, "student", q_graphs, m.audio,
                                m.encode_text))
    exported = f"student export {', '.join(formats)}" if formats else None
    return out, int8_info, "; ".join(n for n in (note, exported) if n) or None


def _absolute(ref: Any) -> str:
    """``ref`` as the child process must see it: an existing file or folder as an absolute
    path (the child runs in a neutral working directory), anything else (a voice package
    name) unchanged."""
    return str(Path(ref).resolve()) if Path(str(ref)).exists() else str(ref)


def _memory(m: TorchModel | OrtModel, ref: Any, texts: Sequence[str], device: str) -> dict[str, Any] | None:
    """Peak RSS of ``m`` speaking ``texts`` in a fresh process, or None where it cannot be
    measured: an in-memory model, or a child process that failed (a warning says why, and the
    rest of the benchmark goes on)."""
    if isinstance(m, TorchModel) and not isinstance(ref, (str, Path)):
        return None  # an in-memory model cannot be reloaded in a fresh process
    spec = {"role": m.role, "runtime": m.runtime, "ref": _absolute(ref),
            "graphs": [_absolute(g) for g in getattr(m, "graphs", [])],
            "ids": [m.encode_text(t) for t in texts], "threads": 1, "device": device}
    try:
        mem = measure_peak_rss(spec)
    except RuntimeError as exc:
        warnings.warn(f"memory of {m.name} ({m.runtime}) not measured: {exc}", stacklevel=2)
        return None
    return {**mem, "peak_rss_delta_mb": mem["synthesis_peak_delta_mb"], "cuda_peak_mb": None}


def speaker_quality(teacher: Any, student: Any, name: str, sentences: Sequence[str],
                    cfg: BenchmarkSettings, asr_and_mos: bool = True) -> dict[str, Any] | None:
    """A multi-speaker student scored over ``cfg.speakers`` of its speakers, each against the
    teacher speaking as that speaker; None for a single-speaker student.

    Sentence ``i`` is said by the ``i mod K``-th speaker (``K`` spread evenly over the set).
    Returns ``{"per_speaker": {speaker name: {asr_error_rate, dnsmos_ovrl, duration_ratio,
    mcd_db, mcd_teacher_durations_db, n_sentences}}, "mean": {the same, averaged}}``; WER and
    DNSMOS are None where their packages are missing, or with ``asr_and_mos`` False.
    """
    speakers = student.metadata.get("speakers")
    n = len((speakers or {}).get("teacher_ids", []))
    if n < 2:
        return None
    k = min(cfg.speakers, n, len(sentences))
    per_speaker: dict[str, dict[str, Any]] = {}
    for j in range(k):
        sid = j * n // k
        texts = list(sentences[j::k])
        t_view = teacher_view(teacher, speaker=int(speakers["teacher_ids"][sid]))
        s_view = student_view(student, name, speaker=sid)
        q = quality_pass(t_view, [s_view], texts, (), cfg.seed, draws=1,
                         asr_and_mos=asr_and_mos).entries[name]
        per_speaker[str(speakers["names"][sid])] = {
            "n_sentences": len(texts), "asr_error_rate": q.get("asr_error_rate"),
            "dnsmos_ovrl": (q.get("dnsmos") or {}).get("ovrl"),
            "duration_ratio": q.get("duration_ratio"), "mcd_db": q.get("mcd_db"),
            "mcd_teacher_durations_db": q.get("mcd_teacher_durations_db")}
    keys = ("asr_error_rate", "dnsmos_ovrl", "duration_ratio", "mcd_db", "mcd_teacher_durations_db")
    mean = {key: (None if any(v[key] is None for v in per_speaker.values())
                  else sum(v[key] for v in per_speaker.values()) / len(per_speaker))
            for key in keys}
    return {"per_speaker": per_speaker, "mean": mean}


def run_benchmark(
    teacher_ref: Any,
    student_refs: Sequence[Any] = (),
    texts: Sequence[str] | None = None,
    settings: BenchmarkSettings | None = None,
    device: str = "cpu",
    real_filelist: str | Path | None = None,
    command: str | None = None,
) -> BenchmarkResult:
    """Benchmark a teacher and its students side by side (see :mod:`nixdistill.benchmark`).

    Args:
        teacher_ref: any reference :func:`nixdistill.teacher.loader.load_teacher` resolves, or a
            loaded ``Teacher``.
        student_refs: ``student.safetensors`` files (or loaded ``Student`` objects; those get
            no ONNX Runtime column and no memory figure); empty for a teacher-only run.
        texts: sentences; None uses the bundled sentences of the teacher's language.
        settings: what to measure (default :class:`BenchmarkSettings`).
        device: torch device.
        real_filelist: dataset/filelist of real recordings to score alongside.
        command: command line to record (default ``sys.argv``).
    Returns:
        :class:`BenchmarkResult` (nothing is written; see :mod:`nixdistill.benchmark.report`).
    Raises:
        BenchmarkError: bad arguments; NixdistillError from the loaders.
    """
    from nixdistill.deploy.student import load_student
    from nixdistill.teacher.loader import load_teacher

    cfg = settings or BenchmarkSettings()
    teacher = load_teacher(str(teacher_ref), device=device) if isinstance(teacher_ref, (str, Path)) else teacher_ref
    t_model = teacher_view(teacher)
    students = [load_student(r, device=device) if isinstance(r, (str, Path)) else r for r in student_refs]
    s_models = [student_view(s, name, r if isinstance(r, (str, Path)) else None)
                for s, r, name in zip(students, student_refs, _unique_names(student_refs))]
    sentences = list(texts if texts is not None else default_texts(t_model.language))[:cfg.n_sentences]
    if not sentences:
        raise BenchmarkError("no sentences to benchmark")
    models = [t_model, *s_models]
    refs = [teacher_ref, *student_refs]

    with tempfile.TemporaryDirectory(prefix="nixdistill-bench-") as tmp:
        ort_models, int8_info, ort_note = ([], {}, "disabled") if not cfg.onnxruntime else \
            _ort_models(teacher, t_model, s_models, student_refs, Path(tmp), cfg.int8)
        speed = time_models([*models, *ort_models], sentences, cfg.repeats, cfg.warmup, cfg.thread_list)
        ort_speed = {m.name.removesuffix(ORT_SUFFIX): speed.pop(m.name) for m in ort_models}
        entries = {
            m.name: ModelEntry(m.name, m.role, m.kind, m.path, m.audio.sample_rate, size_report(m),
                               speed[m.name])
            for m in models}
        for name, info in int8_info.items():
            entries[name].int8_onnxruntime = {**info, "speed": ort_speed[name + INT8_SUFFIX],
                                              "memory": None}
        for name, sp in ort_speed.items():
            if name in entries:
                entries[name].speed_onnxruntime = sp
        if cfg.measure_memory:
            for m, ref in zip(models, refs):
                entries[m.name].memory = _memory(m, ref, sentences, device)
            for om in ort_models:
                name = om.name.removesuffix(ORT_SUFFIX)
                mem = _memory(om, None, sentences, device)
                if name in entries:
                    entries[name].memory_onnxruntime = mem
                else:  # "<student> int8"
                    entries[name.removesuffix(INT8_SUFFIX)].int8_onnxruntime["memory"] = mem

    quality = None
    if cfg.eval_quality:
        real = _read_real(real_filelist, t_model.audio.sample_rate, cfg.n_sentences) if real_filelist else ()
        quality = quality_pass(t_model, s_models, sentences, cfg.noise_list, cfg.seed, real,
                               draws=cfg.draws)
        for name, q in quality.entries.items():
            entries[name].quality = q
        for m, student in zip(s_models, students):
            by_speaker = speaker_quality(teacher, student, m.name, sentences, cfg)
            if by_speaker is not None:
                entries[m.name].quality["speakers"] = by_speaker
    s_names = [m.name for m in s_models]
    streaming = {m.name: streaming_latency(s, " ".join(sentences[:STREAM_SENTENCES]))
                 for m, s in zip(s_models, students)}
    return BenchmarkResult(
        meta={
            "command": command if command is not None else shlex.join(sys.argv),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(device), "versions": _versions(),
            "settings": {"n_sentences": len(sentences), "language": t_model.language,
                         "repeats": cfg.repeats, "warmup": cfg.warmup,
                         "threads": cfg.thread_list, "device": device, "noise_scale": 0.0,
                         "batch_size": 1, "seed": cfg.seed, "draws": cfg.draws,
                         "noise_scales": cfg.noise_list},
            "texts": sentences,
        },
        teacher=entries[t_model.name],
        students=[entries[n] for n in s_names],
        speedup=speedups(speed, t_model.name, s_names),
        speedup_onnxruntime=speedups(ort_speed, t_model.name, [
            n for name in s_names for n in (name, name + INT8_SUFFIX) if n in ort_speed])
        if t_model.name in ort_speed else {},
        quality_enabled=cfg.eval_quality,
        lanes=quality.lanes if quality else {},
        noise_sweep=quality.noise_sweep if quality else {},
        streaming=streaming,
        onnxruntime_note=ort_note,
        real=quality.real if quality else None,
        first_clips=quality.first_clips if quality else first_sentence_clips(models, sentences[0]),
        audio=t_model.audio,
    )
