"""Teacher and students as the benchmark sees them, in PyTorch and in ONNX Runtime.

Every model offers ``prepare(ids)``, ``set_threads(n)`` and ``timed(prepared)``; the PyTorch
ones also ``encode``/``decode`` (ids -> ``z`` -> waveform) for the quality lanes. The adapters
use only public inference methods: ``teacher.model.prior_latents`` / ``decode`` and
``student.encoder.infer`` / ``student.decoder`` / ``student.speaker_embedding``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from ..config import AudioConfig
from nixdistill.benchmark.metrics import language_of
from .ort_runner import feed_for, make_sessions, run_graphs

__all__ = [
    "Scales",
    "NOISE0",
    "VITS_DEFAULTS",
    "StageTimes",
    "TorchModel",
    "OrtModel",
    "count_params",
    "teacher_view",
    "student_view",
    "size_report",
    "student_onnx_graphs",
    "int8_copies",
]

MB = 1 << 20
"""Bytes per MiB (sizes are reported in MiB and labelled "MB")."""
TEACHER_TRAINING_ONLY = ("enc_q",)
"""Teacher submodules used only in training (reported apart from the inference size)."""


class Scales(NamedTuple):
    """Sampling settings of one synthesis: latent noise, duration multiplier, duration noise."""

    noise_scale: float
    length_scale: float
    noise_scale_w: float


NOISE0 = Scales(0.0, 1.0, 0.0)
"""Deterministic synthesis (speed runs, attribution lanes)."""
VITS_DEFAULTS = Scales(0.667, 1.0, 0.8)
"""``VITS.infer`` defaults (Kim et al. 2021), the teacher's "as shipped" when it has no
``.onnx.json``."""


class StageTimes(NamedTuple):
    """Seconds of one synthesis; ``encoder_s``/``decoder_s`` None where not separable."""

    total_s: float
    encoder_s: float | None
    decoder_s: float | None
    n_samples: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TorchModel:
    """A teacher or student in PyTorch eager.

    Attributes:
        name / role / kind: display name, ``"teacher"``/``"student"``, model kind.
        path: model file (None when built in memory).
        audio / language: output audio settings; ISO 639-1 code of the text.
        encode_text: transcript -> token ids.
        encode: ``(x [1, T_text], x_lengths [1], scales, w_ceil [1, T_text] | None, generator)
            -> (z [1, inter, T_frames], w_ceil [1, T_text] int64)``.
        decode: ``z [1, inter, T_frames] -> wav [1, 1, T_frames * hop_length]``.
        shipped: the settings users get by default (student metadata, teacher ``.onnx.json``).
        parts / apart: inference modules by report name; training-only modules.
        device: torch device of the parameters.
        symbols: the frontend's symbol of each token id (phoneme classes), or None.
    """

    name: str
    role: str
    kind: str
    path: str | None
    audio: AudioConfig
    language: str
    encode_text: Callable[[str], list[int]]
    encode: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    decode: Callable[[torch.Tensor], torch.Tensor]
    shipped: Scales
    parts: dict[str, list[nn.Module]]
    apart: dict[str, list[nn.Module]] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    runtime: str = "pytorch"
    symbols: list[str] | None = None

    def prepare(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor([ids], dtype=torch.long, device=self.device),
                torch.tensor([len(ids)], dtype=torch.long, device=self.device))

    def set_threads(self, n: int) -> None:
        torch.set_num_threads(n)

    @torch.inference_mode()
    def timed(self, prepared: tuple[torch.Tensor, torch.Tensor]) -> StageTimes:
        """One deterministic synthesis (noise 0), timed per stage."""
        _sync(self.device)
        t0 = time.perf_counter()
        z, _ = self.encode(*prepared, NOISE0, None, None)
        _sync(self.device)
        t1 = time.perf_counter()
        wav = self.decode(z)
        _sync(self.device)
        t2 = time.perf_counter()
        return StageTimes(t2 - t0, t1 - t0, t2 - t1, int(wav.shape[-1]))


@dataclass
class OrtModel:
    """A teacher or student as ONNX graphs in onnxruntime (end to end only).

    The graphs run in order; each is fed, by input name, the token ids (``input``), their
    count (``input_lengths``), ``scales`` (``[noise, length]`` or Piper's ``[noise, length,
    noise_w]``, all deterministic), speaker 0 (``sid``) and the previous graph's outputs
    (e.g. ``z``). The last graph's first output is the waveform.
    """

    name: str
    role: str
    graphs: list[str]
    audio: AudioConfig
    encode_text: Callable[[str], list[int]]
    runtime: str = "onnxruntime"
    _sessions: list[Any] = field(default_factory=list, repr=False)

    def set_threads(self, n: int) -> None:
        """New sessions with ``n`` intra-op threads (see :func:`ort_runner.session_options`)."""
        self._sessions = make_sessions(self.graphs, n)

    def prepare(self, ids: list[int]) -> dict[str, np.ndarray]:
        return feed_for(ids)

    def timed(self, prepared: dict[str, np.ndarray]) -> StageTimes:
        if not self._sessions:
            self.set_threads(1)
        t0 = time.perf_counter()
        wav = run_graphs(self._sessions, prepared)
        return StageTimes(time.perf_counter() - t0, None, None, int(wav.size))


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


def _param_bytes(modules: Sequence[nn.Module]) -> int:
    tensors = {id(t): t for m in modules for t in (*m.parameters(), *m.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def size_report(m: TorchModel) -> dict[str, Any]:
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


def _sid(n_speakers: int, device: torch.device, speaker: int = 0) -> torch.Tensor | None:
    return torch.tensor([speaker], dtype=torch.long, device=device) if n_speakers > 1 else None


def teacher_shipped(teacher: Any) -> Scales:
    """The teacher's default settings: a Piper voice's ``.onnx.json`` ``inference`` section
    (``noise_scale``, ``length_scale``, ``noise_w``), else :data:`VITS_DEFAULTS`."""
    sidecar = Path(f"{teacher.source}.json")
    if teacher.kind != "piper" or not sidecar.is_file():
        return VITS_DEFAULTS
    inf = json.loads(sidecar.read_text(encoding="utf-8")).get("inference") or {}
    return Scales(float(inf.get("noise_scale", VITS_DEFAULTS.noise_scale)),
                  float(inf.get("length_scale", VITS_DEFAULTS.length_scale)),
                  float(inf.get("noise_w", VITS_DEFAULTS.noise_scale_w)))


def teacher_view(teacher: Any, name: str = "teacher", speaker: int = 0) -> TorchModel:
    """Wrap a :class:`nixdistill.teacher.loader.Teacher`: ``model.prior_latents`` (``enc_p``, ``dp``,
    ``flow``) then ``model.decode`` (``dec``). ``speaker``: the teacher speaker id of a
    multi-speaker teacher."""
    model = teacher.model
    device = teacher.device
    sid = _sid(teacher.n_speakers, device, speaker)

    def encode(x, x_lengths, scales: Scales, w_ceil=None, generator=None):
        p = model.prior_latents(x, x_lengths, sid=sid, noise_scale=scales.noise_scale,
                                length_scale=scales.length_scale,
                                noise_scale_w=scales.noise_scale_w, w_ceil=w_ceil,
                                generator=generator)
        return p.z, p.w_ceil

    children = dict(model.named_children())
    parts = {n: [m] for n, m in children.items() if n not in TEACHER_TRAINING_ONLY}
    apart = {n: [children[n]] for n in TEACHER_TRAINING_ONLY if children.get(n) is not None}
    source = Path(str(teacher.source))
    return TorchModel(
        name=name, role="teacher", kind=teacher.kind,
        path=str(source) if source.is_file() else None, audio=teacher.audio,
        language=language_of(teacher.text), encode_text=teacher.frontend.encode, encode=encode,
        decode=lambda z: model.decode(z, sid=sid), shipped=teacher_shipped(teacher),
        parts=parts, apart=apart, device=device, symbols=list(teacher.frontend.symbols),
    )


def student_shipped(student: Any) -> Scales:
    """The student's defaults from its metadata (``encoder_config`` noise/length scales;
    missing keys fall back to the encoder config's defaults)."""
    from ..students.encoder import NixEncoderConfig

    cfg = student.metadata.get("encoder_config") or {}
    return Scales(float(cfg.get("noise_scale", NixEncoderConfig.noise_scale)),
                  float(cfg.get("length_scale", NixEncoderConfig.length_scale)),
                  float(cfg.get("noise_scale_w", NixEncoderConfig.noise_scale_w)))


def student_view(student: Any, name: str, path: str | Path | None = None,
                 speaker: int = 0) -> TorchModel:
    """Wrap a :class:`nixdistill.deploy.student.Student`: ``encoder.infer`` then ``decoder(z, g)``
    (``speaker``: the student speaker id of a multi-speaker student).

    Sizes are grouped by the encoder's top-level modules among its inference weights
    (``encoder.inference_state_dict()``, so never the training-only aligner) plus the decoder.
    """
    enc, dec = student.encoder, student.decoder
    device = next(dec.parameters()).device
    n_speakers = int((student.metadata.get("encoder_config") or {}).get("n_speakers", 0))
    sid = _sid(n_speakers, device, speaker)
    g = student.speaker_embedding(sid)

    def encode(x, x_lengths, scales: Scales, w_ceil=None, generator=None):
        out = enc.infer(x, x_lengths, sid=sid, noise_scale=scales.noise_scale,
                        length_scale=scales.length_scale, w_ceil=w_ceil,
                        noise_scale_w=scales.noise_scale_w, generator=generator)
        return out.z, out.w_ceil

    inference_keys = {k.split(".", 1)[0] for k in enc.inference_state_dict()}
    parts: dict[str, list[nn.Module]] = {
        n: [m] for n, m in enc.named_children() if n in inference_keys and count_params([m])}
    parts["decoder"] = [dec]
    apart = {n: [m] for n, m in enc.named_children() if n not in inference_keys and count_params([m])}
    kind = str((student.metadata.get("decoder_config") or {}).get("kind", type(dec).__name__))
    return TorchModel(
        name=name, role="student", kind=kind, path=str(path) if path is not None else None,
        audio=student.audio, language=language_of(_text_config(student.frontend)),
        encode_text=student.frontend.encode, encode=encode, decode=lambda z: dec(z, g),
        shipped=student_shipped(student), parts=parts, apart=apart, device=device,
        symbols=list(student.frontend.symbols),
    )


def _text_config(frontend: Any) -> Any:
    from ..config import TextConfig

    d = frontend.to_dict()
    return TextConfig(frontend=d.get("frontend", "english_chars"), language=d.get("language", "en-us"))


def student_onnx_graphs(student_path: str | Path, out_dir: str | Path) -> tuple[list[str], str]:
    """Export a student for onnxruntime the way users deploy it.

    First as a Piper voice (:func:`nixdistill.deploy.piper_voice.export_piper`, one graph with
    Piper's inputs); a student Piper cannot run (e.g. a non-Piper text frontend) falls back to
    the two graphs of :func:`nixdistill.deploy.onnx.export_onnx` (encoder, then decoder).

    Returns:
        (graph files in run order, ``"piper"`` or ``"two-graph"``).
    Raises:
        OnnxExportError: ``onnx`` missing; StudentFileError: not a student.
    """
    from nixdistill.deploy.graphs import OnnxExportError
    from nixdistill.deploy.onnx import export_onnx
    from nixdistill.deploy.piper_voice import export_piper

    out = Path(out_dir)
    try:
        return [str(export_piper(student_path, out / "student-piper.onnx").onnx)], "piper"
    except OnnxExportError as e:
        if importlib.util.find_spec("onnx") is None:
            raise e
    paths = export_onnx(student_path, out / "student.onnx")
    return [str(paths.encoder), str(paths.decoder)], "two-graph"


def int8_copies(graphs: Sequence[str | Path], out_dir: str | Path) -> tuple[list[str], dict[str, Any]]:
    """Copies of ``graphs`` in ``out_dir`` with int8 ``MatMul`` weights
    (:func:`nixdistill.deploy.int8.quantize_int8_graphs`); the originals are untouched.

    Returns:
        (the copies in the same order, the quantization record).
    Raises:
        OnnxExportError: ``onnx`` or ``onnxruntime`` missing.
    """
    from nixdistill.deploy.int8 import quantize_int8_graphs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    copies = [str(shutil.copy(g, out / Path(g).name)) for g in graphs]
    return copies, quantize_int8_graphs(copies)
