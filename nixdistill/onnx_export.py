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

Either form can be written with int8 weights (``int8=True``, :func:`quantize_int8`):
onnxruntime dynamic quantization of the ``MatMul`` nodes only, recorded in the ``.onnx.json``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from .errors import NixdistillError

__all__ = [
    "ONNX_OPSET", "INT8_OP_TYPES", "OnnxExportError", "OnnxPaths", "EncoderGraph", "PiperGraph",
    "export_onnx", "export_piper", "piper_voice_config", "quantize_int8", "quantize_int8_graphs",
    "teacher_piper_config",
]

ONNX_OPSET = 17
INT8_OP_TYPES = ("MatMul",)
"""Operators :func:`quantize_int8` quantizes by default (see its docstring for why)."""
_PREPROCESS_ADVICE = "Please consider to run pre-processing before quantization"
"""Start of the warning ``quantize_dynamic`` logs for every graph not run through its
pre-processing; the graphs here were measured without it, so the advice is muted."""


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


def _require_onnx(int8: bool = False) -> None:
    """Raise OnnxExportError when ``onnx`` (and, for ``int8``, ``onnxruntime``) is missing."""
    if importlib.util.find_spec("onnx") is None:
        raise OnnxExportError(
            "ONNX export needs the 'onnx' package: pip install 'nixdistill[piper]' (or onnx)"
        )
    if int8 and importlib.util.find_spec("onnxruntime") is None:
        raise OnnxExportError("int8 quantization needs the 'onnxruntime' package: "
                              "pip install 'nixdistill[piper]' (or onnxruntime)")


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_PREPROCESS_ADVICE)


@contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    """Mute only ``quantize_dynamic``'s pre-processing advice (logged on the root logger)."""
    drop = _DropPreprocessAdvice()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _int8_weights(model: Any) -> int:
    """Initializers of ``model`` (an ``onnx.ModelProto``) stored as 8-bit integer tensors with
    more than one element (weights, not the scalar zero points)."""
    import numpy as np
    import onnx

    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return sum(1 for t in model.graph.initializer
               if t.data_type in eight_bit and int(np.prod(t.dims)) > 1)


def quantize_int8(onnx_path: str | Path, op_types: Sequence[str] = INT8_OP_TYPES) -> dict[str, Any]:
    """Quantize an ONNX graph's weights to int8 in place (onnxruntime dynamic quantization).

    ``onnxruntime.quantization.quantize_dynamic`` stores the constant weights of the chosen
    operators as int8 (one scale per tensor) and quantizes their activations to uint8 at run
    time (``DynamicQuantizeLinear`` -> ``MatMulInteger``/``ConvInteger``). Of the ``MatMul``
    nodes, only those whose second input is a constant weight are quantized
    (``MatMulConstBOnly``); a graph without any (e.g. a student with the convolutional ``nix``
    decoder, whose encoder has no ``MatMul`` weights either) comes back numerically unchanged,
    which the returned ``quantized_weights`` (0) shows. The result is written to a temporary
    file in the same folder, then replaces ``onnx_path`` atomically (``os.replace``); the
    graph's inputs, outputs and ``metadata_props`` are kept (onnxruntime adds
    ``onnx.infer``).

    Why ``MatMul`` alone (measured on the earlier 4.2M ``joe-quick`` student's Piper graph, 20
    held-out sentences, 1 thread, interleaved; ``benchmarks/int8_check.py``,
    ``docs/results/int8/joe-quick.json``; on the 2.3M default, ``benchmark --int8`` measured
    47.5 against 50.1 ms, 1.05x): MatMul-only int8 took 62.6 ms per sentence against
    70.0 ms in float (1.12x faster), the file shrank from 20.3 to 16.0 MB, and Whisper-base WER
    was unchanged (0.063). Quantizing ``Conv`` too (``ConvInteger``) made the file 8.5 MB but
    synthesis 1.75x slower (122.8 ms), with the same WER.

    Args:
        onnx_path: an ``.onnx`` file, rewritten in place.
        op_types: operator types to quantize (keys of onnxruntime's ``IntegerOpsRegistry``,
            e.g. ``"MatMul"``, ``"Conv"``, ``"Gather"``); default ``("MatMul",)``.
    Returns:
        the record to store next to the graph: ``{"method": "onnxruntime dynamic",
        "weight_type": "int8", "op_types": [...], "quantized_weights": n (int8 weight
        tensors in the result), "onnxruntime": version}``.
    Raises:
        OnnxExportError: ``onnx`` or ``onnxruntime`` is not installed, ``op_types`` is empty
            or names an operator onnxruntime cannot quantize dynamically, or ``onnx_path`` is
            not a file.
    """
    _require_onnx(int8=True)
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from .runs import atomic_write

    ops = list(op_types)
    unknown = sorted(set(ops) - set(IntegerOpsRegistry))
    if not ops or unknown:
        raise OnnxExportError(
            f"int8: cannot quantize op types {unknown or ops} dynamically; choose among "
            f"{sorted(IntegerOpsRegistry)}")
    path = Path(onnx_path)
    if not path.is_file():
        raise OnnxExportError(f"int8: {path} is not a file")

    def write(tmp: Path) -> None:
        with _without_preprocess_advice():
            quantize_dynamic(path, tmp, op_types_to_quantize=ops, weight_type=QuantType.QInt8)

    before = _int8_weights(onnx.load(str(path), load_external_data=False))
    atomic_write(path, write)
    after = _int8_weights(onnx.load(str(path), load_external_data=False))
    return {"method": "onnxruntime dynamic", "weight_type": "int8", "op_types": ops,
            "quantized_weights": after - before,
            "onnxruntime": importlib.metadata.version("onnxruntime")}


def quantize_int8_graphs(onnx_paths: Sequence[str | Path],
                         op_types: Sequence[str] = INT8_OP_TYPES) -> dict[str, Any]:
    """:func:`quantize_int8` on graphs that run together (e.g. encoder and decoder).

    Returns:
        one record: :func:`quantize_int8`'s, with ``quantized_weights`` summed over the graphs.
    Raises:
        OnnxExportError: as :func:`quantize_int8`, or no graph given.
    """
    if not onnx_paths:
        raise OnnxExportError("int8: no graph to quantize")
    records = [quantize_int8(p, op_types) for p in onnx_paths]
    return {**records[0], "quantized_weights": sum(r["quantized_weights"] for r in records)}


def export_onnx(student_path: str | Path, out_path: str | Path, int8: bool = False) -> OnnxPaths:
    """Write the encoder and decoder graphs of an exported student.

    Args:
        student_path: a ``student.safetensors`` (see :mod:`nixdistill.export`).
        out_path: ``DIR/name.onnx`` (or ``DIR/name``): writes ``DIR/name.encoder.onnx``,
            ``DIR/name.decoder.onnx`` and ``DIR/name.onnx.json``.
        int8: quantize both graphs' ``MatMul`` weights to int8 (:func:`quantize_int8`); the
            sidecar's ``"onnx"`` entry records it under ``"quantization"``.
    Returns:
        OnnxPaths(encoder, decoder, metadata).
    Raises:
        StudentFileError: ``student_path`` is not a student. OnnxExportError: no ``onnx``
        (or, with ``int8``, no ``onnxruntime``).
    """
    from .student import load_student

    _require_onnx(int8)
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
    if int8:
        meta["onnx"]["quantization"] = quantize_int8_graphs([paths.encoder, paths.decoder])
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
                 teacher_config: str | Path | None = None, int8: bool = False) -> PiperPaths:
    """Write a student as a Piper voice: one graph ``out_path`` and ``<out_path>.json``.

    Args:
        student_path: a ``student.safetensors`` (see :mod:`nixdistill.export`).
        out_path: ``DIR/<lang>-<name>-<quality>.onnx`` (Piper's naming, e.g.
            ``en_US-joe_student-medium.onnx``).
        teacher_config: the teacher voice's ``.onnx.json``; default: found next to the
            teacher's ``.onnx`` recorded in the student metadata, if it is still there.
        int8: quantize the graph's ``MatMul`` weights to int8 (:func:`quantize_int8`, before
            the sherpa-onnx ``metadata_props`` are added); the ``.onnx.json`` records it as
            ``config["nixdistill"]["quantization"]``. Piper runtimes load it unchanged.
    Returns:
        PiperPaths(onnx, config).
    Raises:
        StudentFileError: not a student. OnnxExportError: no ``onnx`` package (with ``int8``:
        no ``onnxruntime``), or a student Piper cannot run (see :func:`piper_voice_config`).
    """
    from .student import load_student

    _require_onnx(int8)
    import onnx

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
    if int8:
        config["nixdistill"]["quantization"] = quantize_int8(out)
    model = onnx.load(str(out))
    for key, value in _sherpa_metadata(config).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(out))
    paths.config.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
