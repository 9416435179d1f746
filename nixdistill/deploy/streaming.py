"""Chunked decoding: the decoder runs over overlapping windows of ``z`` with no loss.

Both student decoders are convolutional with a finite receptive field, so an output sample
depends only on the latent frames within :func:`decoder_context` frames of it. Decoding
``z[..., lo:hi]`` with ``lo = start - context`` and ``hi = end + context`` (clamped to the
sequence) and keeping the samples of frames ``[start, end)`` therefore gives exactly the
one-shot samples (up to float rounding). The frame offsets of the windows are whole frames,
so every transposed convolution of the ``nix`` decoder sees the same phase as in one shot.

This module imports neither torch nor numpy: it serves the PyTorch student and the
onnxruntime voice alike (any array that slices as ``a[..., i:j]``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

__all__ = ["DEFAULT_CHUNK_FRAMES", "DEFAULT_MAX_CHUNK_FRAMES", "Window", "decoder_context", "windows", "decode_chunks"]

DEFAULT_CHUNK_FRAMES = 32
"""Frames of the first streamed chunk (0.37 s at 22,050 Hz and hop 256)."""
DEFAULT_MAX_CHUNK_FRAMES = 256
"""Chunks double in size up to this many frames: the first audio comes early, and later
windows spend little on their margins."""

A = TypeVar("A")


def _conv_reach(kernel_size: int, dilation: int = 1) -> int:
    """Samples on each side a same-padded convolution looks at."""
    return dilation * (kernel_size - 1) // 2


def decoder_context(kind: str, config: dict[str, Any], hop_length: int) -> int:
    """One-sided receptive field of a student decoder, in latent frames (rounded up, + 1).

    Args:
        kind: ``"nix"`` (HiFi-GAN-style upsampler) or ``"istft"`` (ConvNeXt at frame rate +
            iSTFT overlap-add).
        config: the decoder's config fields (student metadata ``decoder_config``).
        hop_length: samples per latent frame.
    Returns:
        frames ``C`` such that output samples of frame ``t`` depend only on ``z`` frames in
        ``[t - C, t + C]``.
    Raises:
        ValueError: an unknown decoder kind.
    """
    if kind == "istft":
        kernel = int(config.get("kernel_size", 7))
        n_layers = int(config.get("n_layers", 6))
        n_fft = config.get("n_fft") or 4 * hop_length
        frames = (n_layers + 1) * _conv_reach(kernel) + math.ceil(int(n_fft) / 2 / hop_length)
        return frames + 1
    if kind == "nix":
        rates = [int(r) for r in config.get("upsample_rates", [8, 8, 2, 2])]
        kernels = [int(k) for k in config.get("upsample_kernel_sizes", [16, 16, 4, 4])]
        res_k = [int(k) for k in config.get("resblock_kernel_sizes", [3, 7, 11])]
        res_d = [[int(d) for d in ds] for ds in config.get("resblock_dilation_sizes",
                                                           [[1, 3, 5]] * 3)]
        frames = _conv_reach(int(config.get("pre_kernel_size", 7)))
        scale = 1  # samples per frame at the current stage
        for rate, kernel in zip(rates, kernels):
            frames += math.ceil(kernel / rate) / scale  # transposed conv: input positions
            scale *= rate
            block = max(sum(_conv_reach(k, d) + _conv_reach(k) for d in ds)
                        for k, ds in zip(res_k, res_d))
            frames += block / scale
        frames += _conv_reach(int(config.get("post_kernel_size", 7))) / scale
        return math.ceil(frames) + 1
    raise ValueError(f"unknown decoder kind {kind!r}; expected 'nix' or 'istft'")


class Window(NamedTuple):
    """Decode frames ``[lo, hi)``, keep frames ``[start, end)`` of them."""

    lo: int
    hi: int
    start: int
    end: int


def windows(n_frames: int, chunk_frames: int, context: int,
            max_chunk_frames: int | None = None) -> Iterator[Window]:
    """Windows covering ``n_frames`` frames with ``context`` frames of margin on each side.

    The first chunk has ``chunk_frames`` frames; each next one doubles, up to
    ``max_chunk_frames`` (default: ``chunk_frames``, i.e. fixed-size chunks).

    Raises:
        ValueError: ``chunk_frames <= 0``, ``context < 0`` or ``max_chunk_frames < chunk_frames``.
    """
    max_chunk_frames = chunk_frames if max_chunk_frames is None else max_chunk_frames
    if chunk_frames <= 0 or context < 0 or max_chunk_frames < chunk_frames:
        raise ValueError(f"need 0 < chunk_frames <= max_chunk_frames and context >= 0, got "
                         f"{chunk_frames}, {max_chunk_frames}, {context}")
    start, size = 0, chunk_frames
    while start < n_frames:
        end = min(n_frames, start + size)
        yield Window(max(0, start - context), min(n_frames, end + context), start, end)
        start, size = end, min(2 * size, max_chunk_frames)


def decode_chunks(decode: Callable[[A], A], z: A, n_frames: int, hop_length: int,
                  chunk_frames: int, context: int,
                  max_chunk_frames: int | None = None) -> Iterator[A]:
    """Decode ``z [1, C, T_frames]`` window by window.

    Args:
        decode: ``z [1, C, n] -> wav [1, 1, n * hop_length]``.
        z: latent frames (torch tensor or numpy array).
        n_frames: ``T_frames``.
        hop_length: samples per frame.
        chunk_frames / max_chunk_frames: frames of the first / largest chunk (see
            :func:`windows`).
        context: margin in frames, at least :func:`decoder_context`.
    Yields:
        wav chunks ``[1, 1, (end - start) * hop_length]`` whose concatenation is the one-shot
        ``decode(z)``.
    """
    for w in windows(n_frames, chunk_frames, context, max_chunk_frames):
        wav = decode(z[..., w.lo:w.hi])
        yield wav[..., (w.start - w.lo) * hop_length:(w.end - w.lo) * hop_length]
