"""Export a student to ONNX as two graphs (:func:`export_onnx`).

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
``onnxscript``. ``int8=True`` quantizes the ``MatMul`` weights (:mod:`nixdistill.deploy.int8`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from nixdistill.deploy.graphs import ONNX_OPSET, EncoderGraph, OnnxPaths, require_onnx, trace_graph
from nixdistill.deploy.int8 import quantize_int8_graphs

__all__ = ["export_onnx"]


def export_onnx(student_path: str | Path, out_path: str | Path, int8: bool = False) -> OnnxPaths:
    """Write the encoder and decoder graphs of an exported student.

    Args:
        student_path: a ``student.safetensors`` (see :mod:`nixdistill.deploy.export`).
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
    from nixdistill.deploy.student import load_student

    require_onnx(int8)
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
    trace_graph(EncoderGraph(student.encoder).eval(), args, paths.encoder, names,
           ["z", "w_ceil", "y_mask"], axes)
    n_frames = math.ceil(student.audio.sample_rate / student.audio.hop_length / 4)
    z = torch.zeros(1, int(enc_cfg["inter_channels"]), n_frames)
    trace_graph(student.decoder, (z,), paths.decoder, ["z"], ["wav"],
           {"z": {0: "batch", 2: "frames"}, "wav": {0: "batch", 2: "samples"}})
    meta = dict(student.metadata)
    meta["onnx"] = {"encoder": paths.encoder.name, "decoder": paths.decoder.name,
                    "opset": ONNX_OPSET, "encoder_inputs": names}
    if int8:
        meta["onnx"]["quantization"] = quantize_int8_graphs([paths.encoder, paths.decoder])
    paths.metadata.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
