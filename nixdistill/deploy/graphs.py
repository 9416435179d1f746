"""The traceable student graphs and the one ``torch.onnx.export`` call that every ONNX export uses.

:class:`EncoderGraph` wraps ``NixEncoder.infer`` with symbolic shapes; :class:`PiperGraph` joins
encoder and decoder into one Piper-compatible graph. :func:`trace_graph` uses the legacy
TorchScript exporter (``dynamo=False``), which needs no ``onnxscript``.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from nixdistill.errors import NixdistillError

__all__ = ["ONNX_OPSET", "OnnxExportError", "OnnxPaths", "EncoderGraph", "PiperGraph",
           "require_onnx", "trace_graph"]


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


def trace_graph(module: nn.Module, args: tuple, path: Path, input_names: list[str],
           output_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    """``torch.onnx.export`` with the legacy TorchScript exporter (no ``onnxscript`` needed)."""
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; it is chosen on purpose, so that
        # one warning category is muted here only.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), args, str(path), input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=ONNX_OPSET, dynamo=False)


def require_onnx(int8: bool = False) -> None:
    """Raise OnnxExportError when ``onnx`` (and, for ``int8``, ``onnxruntime``) is missing."""
    if importlib.util.find_spec("onnx") is None:
        raise OnnxExportError(
            "ONNX export needs the 'onnx' package: pip install 'nixdistill[piper]' (or onnx)"
        )
    if int8 and importlib.util.find_spec("onnxruntime") is None:
        raise OnnxExportError("int8 quantization needs the 'onnxruntime' package: "
                              "pip install 'nixdistill[piper]' (or onnxruntime)")
