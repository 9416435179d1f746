"""Interleaved speed measurement: RTF and latency per stage, thread count and runtime."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .adapters import OrtModel, TorchModel
from .settings import BenchmarkError

__all__ = ["time_models", "speedups"]

QUARTILES = (0.25, 0.75)

Model = TorchModel | OrtModel


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    q1, q3 = np.quantile(arr, QUARTILES)
    return {
        "median": float(np.median(arr)), "q1": float(q1), "q3": float(q3),
        "min": float(arr.min()), "max": float(arr.max()), "runs": [float(v) for v in arr],
    }


def _one_pass(m: Model, prepared: list[Any]) -> dict[str, float | None]:
    """Synthesise every sentence once; seconds per stage and audio seconds."""
    times = [m.timed(p) for p in prepared]
    split = all(t.encoder_s is not None for t in times)
    return {
        "total_s": sum(t.total_s for t in times),
        "encoder_s": sum(t.encoder_s for t in times) if split else None,  # type: ignore[misc]
        "decoder_s": sum(t.decoder_s for t in times) if split else None,  # type: ignore[misc]
        "audio_s": sum(t.n_samples for t in times) / m.audio.sample_rate,
    }


def time_models(models: Sequence[Model], texts: Sequence[str], repeats: int, warmup: int,
                threads: Sequence[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """Interleaved RTF measurement of several models (any runtime) on the same sentences.

    For each thread count: every model is set to that many threads (``torch.set_num_threads``
    or new onnxruntime sessions), ``warmup`` untimed passes of every model run, then
    ``repeats`` timed passes in which every model synthesises all sentences once (batch 1,
    noise 0), the model order rotating by one each pass. ``torch.get_num_threads()`` is
    restored afterwards.

    Returns:
        ``{model_name: {str(threads): {"rtf", "encoder_rtf", "decoder_rtf", "latency_ms"
        (per sentence, end to end): stats, "audio_s": seconds per pass}}}`` where stats is
        ``{median, q1, q3, min, max, runs}``; the stage RTFs are None for whole-graph runtimes.
    Raises:
        BenchmarkError: repeats < 1 or warmup < 0.
    """
    if repeats < 1 or warmup < 0:
        raise BenchmarkError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    prepared = {m.name: [m.prepare(_ids(m, t)) for t in texts] for m in models}
    previous_threads = torch.get_num_threads()
    results: dict[str, dict[str, dict[str, Any]]] = {m.name: {} for m in models}
    try:
        for n_threads in threads:
            for m in models:
                m.set_threads(n_threads)
            for _ in range(warmup):
                for m in models:
                    _one_pass(m, prepared[m.name])
            runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in models}
            for r in range(repeats):
                k = r % len(models)
                for m in [*models[k:], *models[:k]]:
                    runs[m.name].append(_one_pass(m, prepared[m.name]))
            for m in models:
                rs = runs[m.name]
                split = rs[0]["encoder_s"] is not None
                results[m.name][str(n_threads)] = {
                    "rtf": _stats([p["total_s"] / p["audio_s"] for p in rs]),
                    "encoder_rtf": _stats([p["encoder_s"] / p["audio_s"] for p in rs]) if split else None,
                    "decoder_rtf": _stats([p["decoder_s"] / p["audio_s"] for p in rs]) if split else None,
                    "latency_ms": _stats([1000.0 * p["total_s"] / len(texts) for p in rs]),
                    "audio_s": rs[0]["audio_s"],
                }
    finally:
        torch.set_num_threads(previous_threads)
    return results


def _ids(m: Model, text: str) -> list[int]:
    ids = m.encode_text(text)
    if not ids:
        raise BenchmarkError(f"{m.name}: sentence {text!r} gives no tokens")
    return ids


def speedups(speed: dict[str, dict[str, dict[str, Any]]], teacher: str,
             students: Sequence[str]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Teacher / student ratios of medians per student and thread count (one runtime).

    Returns:
        ``{student: {threads: {"end_to_end", "encoder", "decoder"`` (RTF ratios; stages None
        where not separable), ``"latency"`` (ms per sentence ratio), ``"duration_ratio"``
        (student audio seconds / teacher audio seconds, so a slow speaker cannot flatter its
        RTF)``}}}``.
    """
    keys = {"end_to_end": "rtf", "encoder": "encoder_rtf", "decoder": "decoder_rtf",
            "latency": "latency_ms"}
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for s in students:
        out[s] = {}
        for th, st in speed[s].items():
            te = speed[teacher][th]
            row: dict[str, float | None] = {
                k: te[v]["median"] / st[v]["median"] if te[v] and st[v] else None
                for k, v in keys.items()}
            row["duration_ratio"] = st["audio_s"] / te["audio_s"]
            out[s][th] = row
    return out
