"""Export a student to ONNX: two graphs, ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx``.

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
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .errors import NixdistillError

__all__ = ["ONNX_OPSET", "OnnxPaths", "EncoderGraph", "export_onnx"]

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

    Forward: ``(x [B, T_text] int64, x_lengths [B] int64, scales [2] float, sid [B] | None) ->
    (z [B, inter, T_frames], w_ceil [B, T_text] int64, y_mask [B, 1, T_frames])``.
    Mirrors ``NixEncoder.infer`` (Nix-TTS encoder) but keeps ``T_frames`` a tensor.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, scales: torch.Tensor,
                sid: torch.Tensor | None = None):
        out = self.encoder.infer(x, x_lengths, sid, noise_scale=scales[0],
                                 length_scale=scales[1])
        z, w_ceil, y_mask = out
        return z, w_ceil.long(), y_mask


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
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; it is chosen on purpose (no
        # onnxscript dependency), so that one warning category is muted here only.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            EncoderGraph(student.encoder).eval(), args, str(paths.encoder), input_names=names,
            output_names=["z", "w_ceil", "y_mask"], dynamic_axes=axes, opset_version=ONNX_OPSET,
            dynamo=False,
        )
        n_frames = math.ceil(student.audio.sample_rate / student.audio.hop_length / 4)
        z = torch.zeros(1, int(enc_cfg["inter_channels"]), n_frames)
        torch.onnx.export(
            student.decoder, (z,), str(paths.decoder), input_names=["z"], output_names=["wav"],
            dynamic_axes={"z": {0: "batch", 2: "frames"}, "wav": {0: "batch", 2: "samples"}},
            opset_version=ONNX_OPSET, dynamo=False,
        )
    meta = dict(student.metadata)
    meta["onnx"] = {"encoder": paths.encoder.name, "decoder": paths.decoder.name,
                    "opset": ONNX_OPSET, "encoder_inputs": names}
    paths.metadata.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
