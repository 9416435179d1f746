"""The typed result of :func:`nixdistill.benchmark.run_benchmark`, its JSON form and headline."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import AudioConfig

__all__ = ["INT8_SUFFIX", "ModelEntry", "BenchmarkResult"]

INT8_SUFFIX = " int8"
"""Name suffix of a student's int8 ONNX Runtime copy in the tables and speed-up keys."""
_NOT_SERIALISED = ("first_clips", "audio")


@dataclass
class ModelEntry:
    """One model's measurements.

    Attributes:
        name / role / kind / path / sample_rate: identity of the model.
        size: ``{"params": {part: n, "total": n}, "params_training_only", "param_mb",
            "file_bytes", "file_mb"}``.
        speed: PyTorch timing ``{threads: {"rtf", "encoder_rtf", "decoder_rtf", "latency_ms":
            stats, "audio_s"}}`` (see :func:`nixdistill.benchmark.speed.time_models`).
        memory: PyTorch synthesis process memory (see
            :func:`nixdistill.benchmark.memory.measure_peak_rss`; ``peak_rss_delta_mb`` is the
            synthesis working memory), or None when not measured.
        quality: noise-0 scores (``asr_metric``, ``asr_error_rate``, ``transcripts``,
            ``dnsmos``, ``mcd_db``, ``mcd_teacher_durations_db``, ``duration_ratio``,
            ``per_sentence``) and ``as_shipped`` (the same at the model's default settings), or
            None without the quality pass.
        speed_onnxruntime / memory_onnxruntime: the same in ONNX Runtime, or None.
        int8_onnxruntime: the student's int8 ONNX Runtime copy (``BenchmarkSettings.int8``):
            ``{"quantization": quantize_int8's record, "file_mb", "float_file_mb" (its graphs
            and the float ones), "speed", "memory"}``, or None.
    """

    name: str
    role: str
    kind: str
    path: str | None
    sample_rate: int
    size: dict[str, Any]
    speed: dict[str, dict[str, Any]]
    memory: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    speed_onnxruntime: dict[str, dict[str, Any]] | None = None
    memory_onnxruntime: dict[str, Any] | None = None
    int8_onnxruntime: dict[str, Any] | None = None


@dataclass
class BenchmarkResult:
    """Everything :func:`~nixdistill.benchmark.run_benchmark` measured.

    Attributes:
        meta: ``{command, date, machine, versions, settings}``.
        teacher / students: per-model entries.
        speedup: PyTorch teacher/student ratios ``{student: {threads: {end_to_end, encoder,
            decoder, latency, duration_ratio}}}``; ``speedup_onnxruntime`` the same in ONNX
            Runtime (empty when not measured), with a ``"<student> int8"`` key per student's
            int8 copy when one was timed.
        quality_enabled: whether the quality pass ran.
        lanes: attribution lanes per student (see :mod:`nixdistill.benchmark.quality`).
        noise_sweep: full-student scores per noise scale, per student.
        streaming: ``{student: {"time_to_first_audio_ms", "total_ms", "audio_s"} | {"note"}}``.
        onnxruntime_note: what the ONNX Runtime columns lack and why, and how each student was
            exported ("piper" or "two-graph"), or None.
        plots: plot name -> file, filled by whoever writes them.
        real: scores of real recordings, or None.
        first_clips: noise-0 audio of the first sentence per model (not serialised).
        audio: the teacher's audio settings, for plots (not serialised).
    """

    meta: dict[str, Any]
    teacher: ModelEntry
    students: list[ModelEntry]
    speedup: dict[str, dict[str, dict[str, float | None]]]
    speedup_onnxruntime: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    quality_enabled: bool = False
    lanes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    noise_sweep: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    streaming: dict[str, dict[str, Any]] = field(default_factory=dict)
    onnxruntime_note: str | None = None
    plots: dict[str, str] = field(default_factory=dict)
    real: dict[str, Any] | None = None
    first_clips: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    audio: AudioConfig | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (every field but ``first_clips``; ``real`` only when present)."""
        out = {f.name: copy.deepcopy(getattr(self, f.name))
               for f in dataclasses.fields(self) if f.name not in _NOT_SERIALISED}
        out["teacher"] = dataclasses.asdict(self.teacher)
        out["students"] = [dataclasses.asdict(s) for s in self.students]
        if self.real is None:
            del out["real"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchmarkResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. a ``benchmark.json``)."""
        kw = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        kw["teacher"] = ModelEntry(**d["teacher"])
        kw["students"] = [ModelEntry(**s) for s in d["students"]]
        return cls(**kw)

    def headline(self) -> dict[str, Any]:
        """The numbers a person wants first: parameters, median RTF per runtime and thread
        count, speed-ups (RTF and latency; ``ort_int8_`` for the int8 copy), WER/CER, DNSMOS and MCD (noise 0 and as shipped)
        of the teacher and the first student, and the student's duration ratio as shipped.
        Entries the benchmark did not measure are left out."""
        out: dict[str, Any] = {}
        first = self.students[0] if self.students else None
        for who, e in (("teacher", self.teacher), ("student", first)):
            if e is None:
                continue
            out[f"{who}_params"] = e.size["params"]["total"]
            for runtime, speed in (("", e.speed), ("ort_", e.speed_onnxruntime or {})):
                for threads, sp in speed.items():
                    out[f"{who}_{runtime}rtf_{threads}thr"] = round(sp["rtf"]["median"], 4)
            if e.quality is None:
                continue
            # "as_shipped" is absent from results written before it existed (old run folders)
            shipped = e.quality.get("as_shipped")
            for setting, q in (("", e.quality), ("shipped_", shipped)):
                if q is None:
                    continue
                if q["asr_error_rate"] is not None:
                    out[f"{who}_{setting}{q['asr_metric']}"] = round(q["asr_error_rate"], 3)
                if q["dnsmos"] is not None:
                    out[f"{who}_{setting}dnsmos_ovrl"] = round(q["dnsmos"]["ovrl"], 2)
            if who == "student":
                if e.quality["mcd_db"] is not None:
                    out["student_mcd_db"] = round(e.quality["mcd_db"], 2)
                if e.quality["mcd_teacher_durations_db"] is not None:
                    out["student_mcd_teacher_durations_db"] = round(e.quality["mcd_teacher_durations_db"], 2)
                if shipped is not None:
                    out["duration_ratio"] = round(shipped["duration_ratio"], 3)
        if first is not None:
            for prefix, table, name in (("", self.speedup, first.name),
                                        ("ort_", self.speedup_onnxruntime, first.name),
                                        ("ort_int8_", self.speedup_onnxruntime,
                                         first.name + INT8_SUFFIX)):
                for threads, ratios in table.get(name, {}).items():
                    out[f"{prefix}speedup_{threads}thr"] = round(ratios["end_to_end"], 2)
                    out[f"{prefix}latency_speedup_{threads}thr"] = round(ratios["latency"], 2)
        return out
