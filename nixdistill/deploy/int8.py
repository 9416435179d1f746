"""int8 copies of exported graphs: onnxruntime dynamic quantization of the ``MatMul`` weights.

Quantizing every operator makes VITS-like graphs *slower* in onnxruntime (sherpa-onnx #575,
espnet_onnx #25); quantizing only the ``MatMul`` nodes (attention, pointwise projections) is the
known workaround. The result is recorded in the exported ``.onnx.json``.
"""

from __future__ import annotations

import importlib.metadata
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from nixdistill.deploy.graphs import OnnxExportError, require_onnx
from nixdistill.runs import atomic_write

__all__ = ["INT8_OP_TYPES", "quantize_int8", "quantize_int8_graphs"]


INT8_OP_TYPES = ("MatMul",)
"""Operators :func:`quantize_int8` quantizes by default (see its docstring for why)."""


_PREPROCESS_ADVICE = "Please consider to run pre-processing before quantization"
"""Start of the warning ``quantize_dynamic`` logs for every graph not run through its
pre-processing; the graphs here were measured without it, so the advice is muted."""


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
    held-out sentences, 1 thread, interleaved; ``scripts/int8_check.py``,
    ``docs/results/int8/joe-quick.json``; on the 2.3M ``joe-quick`` student with
    ``encoder_tiny``, ``benchmark --int8`` measured 47.5 against 50.1 ms, 1.05x): MatMul-only
    int8 took 62.6 ms per sentence against 70.0 ms in float (1.12x faster), the file shrank
    from 20.3 to 16.0 MB, and Whisper-base WER was unchanged (0.063). Quantizing ``Conv`` too
    (``ConvInteger``) made the file 8.5 MB but synthesis 1.75x slower (122.8 ms), with the same
    WER.

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
    require_onnx(int8=True)
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

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
