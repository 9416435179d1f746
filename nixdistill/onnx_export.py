"""Export a student to ONNX: two graphs (:func:`export_onnx`) or one Piper voice (:func:`export_piper`).

Two graphs, ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx``:

* **encoder** -- inputs ``input`` int64 ``[B, T_text]``, ``input_lengths`` int64 ``[B]``,
  ``scales`` float32 ``[2]`` = ``[noise_scale, length_scale]`` (+ ``sid`` int64 ``[B]`` for
  multi-speaker models); outputs ``z`` ``[B, inter, T_frames]``, ``w_ceil`` ``[B, T_text]``
  (frames per token) and ``y_mask`` ``[B, 1, T_frames]``. The stochastic duration predictor's
  noise is drawn inside the graph (``noise_scale_w`` from the encoder config).
* **decoder** -- input ``z`` ``[B, inter, T_frames]``; output ``wav`` ``[B, 1, T_frames·hop]``.

Batch, text and frame axes are dynamic. The iSTFT decoder exports because its iSTFT is a fixed
matmul plus ``conv_transpose1d`` overlap-add (no ``torch.istft``). A JSON sidecar
``<stem>.onnx.json`` carries the student metadata (frontend, audio, configs) like Piper's
``.onnx.json``. The legacy TorchScript exporter is used (``dynamo=False``): it needs no
``onnxscript``.

One Piper voice, ``<lang>-<name>-<quality>.onnx`` + ``.onnx.json`` (DESIGN.md section 5,
"Piper's voice format"; OHF-Voice/piper1-gpl ``train/export_onnx.py`` and ``config.py``):

* inputs ``input`` int64 ``[1, T_text]``, ``input_lengths`` int64 ``[1]``, ``scales`` float32
  ``[3]`` = ``[noise_scale, length_scale, noise_w]`` (+ ``sid`` int64 ``[1]`` only for
  multi-speaker students);
* outputs ``output`` float32 ``[1, 1, T_samples]`` and ``durations`` ``[1, T_text]`` (frames per
  id, Piper's alignment output);
* the ``.onnx.json`` holds every field Piper runtimes read, the teacher voice's own fields when
  the teacher was a Piper voice, and the student's metadata under ``"nixdistill"``;
* ONNX ``metadata_props`` let sherpa-onnx recognise a Piper VITS voice.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .errors import NixdistillError

__all__ = [
    "ONNX_OPSET", "OnnxExportError", "OnnxPaths", "EncoderGraph", "PiperGraph", "export_onnx",
    "export_piper", "piper_voice_config", "teacher_piper_config",
]

ONNX_OPSET = 17


class OnnxExportError(NixdistillError, RuntimeError):
    """The ONNX export cannot run (e.g. the ``onnx`` package is missing)."""


class OnnxPaths(NamedTuple):
    """Files written by :func:`export_onnx`."""

    encoder: Path
    decoder: Path
    metadata: Path


class EncoderGraph(nn.Module):
    """Trace-friendly wrapper of ``NixEncoder.infer`` (shapes stay symbolic in the graph).

    Forward: ``(x [B, T_text] int64, x_lengths [B] int64, scales [2] or [3] float,
    sid [B] | None) ->
    (z [B, inter, T_frames], w_ceil [B, T_text] int64, y_mask [B, 1, T_frames])``.
    Mirrors ``NixEncoder.infer`` (Nix-TTS encoder) but keeps ``T_frames`` a tensor.
    ``noise_w_input``: ``scales`` has a third entry, the duration noise (Piper's ``noise_w``).
    """

    def __init__(self, encoder: nn.Module, noise_w_input: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.noise_w_input = noise_w_input

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, scales: torch.Tensor,
                sid: torch.Tensor | None = None):
        # With noise_w_input, a third scale (Piper's noise_w) drives the stochastic duration
        # predictor; the two-scale encoder graph keeps the config's value.
        noise_w = scales[2] if self.noise_w_input else None
        z, w_ceil, y_mask = self.encoder.infer(x, x_lengths, sid, noise_scale=scales[0],
                                               length_scale=scales[1], noise_scale_w=noise_w)
        return z, w_ceil.long(), y_mask


class PiperGraph(nn.Module):
    """Encoder + decoder as one Piper-compatible graph.

    Forward: ``(x [1, T_text] int64, x_lengths [1] int64, scales [3] float =
    [noise_scale, length_scale, noise_w], sid [1] | None) -> (wav [1, 1, T_frames * hop],
    durations [1, T_text] int64 frames per id)``. Batch 1 has no padding, so the waveform needs
    no mask.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = EncoderGraph(encoder, noise_w_input=True)
        self.decoder = decoder
        # The decoder takes a speaker embedding only when it is speaker-conditioned.
        self.speaker_conditioned = (getattr(encoder, "emb_g", None) is not None
                                    and getattr(decoder, "cond", None) is not None)

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, scales: torch.Tensor,
                sid: torch.Tensor | None = None):
        z, w_ceil, _ = self.encoder(x, x_lengths, scales, sid)
        g = None
        if sid is not None and self.speaker_conditioned:
            g = self.encoder.encoder.emb_g(sid).unsqueeze(-1)
        return self.decoder(z, g), w_ceil


def _trace(module: nn.Module, args: tuple, path: Path, input_names: list[str],
           output_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    """``torch.onnx.export`` with the legacy TorchScript exporter (no ``onnxscript`` needed)."""
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; it is chosen on purpose, so that
        # one warning category is muted here only.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), args, str(path), input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=ONNX_OPSET, dynamo=False)


def _require_onnx() -> None:
    if importlib.util.find_spec("onnx") is None:
        raise OnnxExportError(
            "ONNX export needs the 'onnx' package: pip install 'nixdistill[piper]' (or onnx)"
        )


def export_onnx(student_path: str | Path, out_path: str | Path) -> OnnxPaths:
    """Write the encoder and decoder graphs of an exported student.

    Args:
        student_path: a ``student.safetensors`` (see :mod:`nixdistill.export`).
        out_path: ``DIR/name.onnx`` (or ``DIR/name``): writes ``DIR/name.encoder.onnx``,
            ``DIR/name.decoder.onnx`` and ``DIR/name.onnx.json``.
    Returns:
        OnnxPaths(encoder, decoder, metadata).
    Raises:
        StudentFileError: ``student_path`` is not a student. OnnxExportError: no ``onnx``.
    """
    from .student import load_student

    _require_onnx()
    student = load_student(student_path)
    out = Path(out_path)
    stem = out.name[: -len(".onnx")] if out.name.endswith(".onnx") else out.stem
    base = out.parent / stem
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = OnnxPaths(Path(f"{base}.encoder.onnx"), Path(f"{base}.decoder.onnx"),
                      Path(f"{base}.onnx.json"))
    enc_cfg = student.metadata["encoder_config"]
    multi = int(enc_cfg.get("n_speakers", 0)) > 1
    n_tokens = 8
    x = torch.ones(1, n_tokens, dtype=torch.long)
    x_lengths = torch.tensor([n_tokens], dtype=torch.long)
    scales = torch.tensor([0.0, 1.0])
    args: tuple = (x, x_lengths, scales)
    names = ["input", "input_lengths", "scales"]
    axes = {"input": {0: "batch", 1: "text"}, "input_lengths": {0: "batch"},
            "z": {0: "batch", 2: "frames"}, "w_ceil": {0: "batch", 1: "text"},
            "y_mask": {0: "batch", 2: "frames"}}
    if multi:
        args += (torch.zeros(1, dtype=torch.long),)
        names.append("sid")
        axes["sid"] = {0: "batch"}
    _trace(EncoderGraph(student.encoder).eval(), args, paths.encoder, names,
           ["z", "w_ceil", "y_mask"], axes)
    n_frames = math.ceil(student.audio.sample_rate / student.audio.hop_length / 4)
    z = torch.zeros(1, int(enc_cfg["inter_channels"]), n_frames)
    _trace(student.decoder, (z,), paths.decoder, ["z"], ["wav"],
           {"z": {0: "batch", 2: "frames"}, "wav": {0: "batch", 2: "samples"}})
    meta = dict(student.metadata)
    meta["onnx"] = {"encoder": paths.encoder.name, "decoder": paths.decoder.name,
                    "opset": ONNX_OPSET, "encoder_inputs": names}
    paths.metadata.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths


class PiperPaths(NamedTuple):
    """Files written by :func:`export_piper`."""

    onnx: Path
    config: Path


def teacher_piper_config(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher voice's ``.onnx.json`` when the student's teacher was a Piper voice.

    Args:
        metadata: student metadata (``teacher`` = ``{"kind", "source", ...}``).
    Returns:
        the parsed JSON, or None when the teacher was not a Piper voice or its file is gone.
    """
    teacher = metadata.get("teacher") or {}
    source = teacher.get("source")
    if teacher.get("kind") != "piper" or not source:
        return None
    path = Path(f"{source}.json") if str(source).endswith(".onnx") else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def piper_voice_config(metadata: dict[str, Any],
                       teacher_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``.onnx.json`` of a student exported as a Piper voice.

    Args:
        metadata: the student's metadata (:attr:`nixdistill.student.Student.metadata`).
        teacher_config: the teacher voice's ``.onnx.json`` (its language, dataset and speaker
            map are kept), or None.
    Returns:
        JSON-able dict: Piper's fields plus ``"nixdistill"`` (teacher, steps, version, configs).
    Raises:
        OnnxExportError: the student's frontend does not produce Piper's espeak phoneme ids
            (``korean_jamo``, ``english_chars``, or ``espeak`` without a ``phoneme_id_map``).
    """
    frontend = metadata["text_frontend"]
    if frontend.get("frontend") != "espeak" or not frontend.get("phoneme_id_map"):
        name = frontend.get("frontend")
        detail = "an espeak frontend without a phoneme_id_map" if name == "espeak" else \
            f"the {name!r} text frontend"
        raise OnnxExportError(
            f"Piper cannot run this student: it was trained with {detail}, and Piper runtimes "
            "only feed espeak-ng phoneme ids from a phoneme_id_map. Use --format onnx or "
            "safetensors for it.")
    enc_cfg = metadata["encoder_config"]
    audio = metadata["audio"]
    n_speakers = max(1, int(enc_cfg.get("n_speakers", 0)))
    cfg: dict[str, Any] = dict(teacher_config or {})
    speaker_id_map = cfg.get("speaker_id_map") or {}
    if len(speaker_id_map) != n_speakers or n_speakers == 1:
        speaker_id_map = {} if n_speakers == 1 else {str(i): i for i in range(n_speakers)}
    cfg.update(
        audio={**(cfg.get("audio") or {}), "sample_rate": int(audio["sample_rate"])},
        espeak={"voice": frontend.get("language", "en-us")},
        phoneme_type="espeak",
        phoneme_id_map=frontend["phoneme_id_map"],
        num_symbols=int(frontend.get("n_vocab") or len(frontend.get("symbols", []))),
        num_speakers=n_speakers,
        speaker_id_map=speaker_id_map,
        inference={"noise_scale": float(enc_cfg.get("noise_scale", 0.667)),
                   "length_scale": float(enc_cfg.get("length_scale", 1.0)),
                   "noise_w": float(enc_cfg.get("noise_scale_w", 0.8))},
        hop_length=int(audio["hop_length"]),
        nixdistill=dict(metadata),
    )
    cfg.pop("vowel_clusters", None)  # the student's own, if any, not a stale teacher's
    if frontend.get("vowel_clusters"):
        cfg["vowel_clusters"] = frontend["vowel_clusters"]
    return cfg


def _sherpa_metadata(config: dict[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` sherpa-onnx reads to run a Piper VITS voice."""
    language = config.get("language") or {}
    return {
        "model_type": "vits",
        "comment": "piper",
        "language": str(language.get("name_english") or config["espeak"]["voice"]),
        "voice": str(config["espeak"]["voice"]),
        "has_espeak": "1",
        "n_speakers": str(config["num_speakers"]),
        "sample_rate": str(config["audio"]["sample_rate"]),
    }


def export_piper(student_path: str | Path, out_path: str | Path,
                 teacher_config: str | Path | None = None) -> PiperPaths:
    """Write a student as a Piper voice: one graph ``out_path`` and ``<out_path>.json``.

    Args:
        student_path: a ``student.safetensors`` (see :mod:`nixdistill.export`).
        out_path: ``DIR/<lang>-<name>-<quality>.onnx`` (Piper's naming, e.g.
            ``en_US-joe_student-medium.onnx``).
        teacher_config: the teacher voice's ``.onnx.json``; default: found next to the
            teacher's ``.onnx`` recorded in the student metadata, if it is still there.
    Returns:
        PiperPaths(onnx, config).
    Raises:
        StudentFileError: not a student. OnnxExportError: no ``onnx`` package, or a student
        Piper cannot run (see :func:`piper_voice_config`).
    """
    import onnx

    from .student import load_student

    _require_onnx()
    student = load_student(student_path)
    if teacher_config is not None:
        teacher_cfg = json.loads(Path(teacher_config).read_text(encoding="utf-8"))
    else:
        teacher_cfg = teacher_piper_config(student.metadata)
    config = piper_voice_config(student.metadata, teacher_cfg)
    out = Path(out_path)
    if out.suffix != ".onnx":
        out = out.with_name(out.name + ".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = PiperPaths(out, out.with_name(out.name + ".json"))
    n_tokens = 8
    args: tuple = (torch.ones(1, n_tokens, dtype=torch.long),
                   torch.tensor([n_tokens], dtype=torch.long), torch.tensor([0.0, 1.0, 0.0]))
    names = ["input", "input_lengths", "scales"]
    axes = {"input": {1: "phonemes"}, "output": {2: "time"}, "durations": {1: "phonemes"}}
    if config["num_speakers"] > 1:
        args += (torch.zeros(1, dtype=torch.long),)
        names.append("sid")
    _trace(PiperGraph(student.encoder, student.decoder), args, out, names,
           ["output", "durations"], axes)
    model = onnx.load(str(out))
    for key, value in _sherpa_metadata(config).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(out))
    paths.config.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
