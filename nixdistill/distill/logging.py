"""Plot helpers for TensorBoard: matplotlib (Agg canvas, no pyplot state) -> RGB arrays.

Each function returns an ``[H, W, 3]`` uint8 array, ready for
``SummaryWriter.add_image(tag, img, step, dataformats="HWC")`` or ``StepContext.log_image``.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["figure_to_array", "plot_spectrogram", "plot_alignment", "to_numpy_2d"]

ALIGNMENT_FIGSIZE_IN = (6.0, 4.0)
"""Alignment image size in inches."""
FIGSIZE_IN = (10.0, 3.0)
DPI = 80


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure with the Agg canvas into an [H, W, 3] uint8 array."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def to_numpy_2d(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Squeeze a tensor/array to 2-D float32 numpy (leading singleton dims removed).

    Raises:
        ValueError: if more than two non-singleton dimensions remain.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array after squeezing, got shape {x.shape}")
    return x


def _plot_image(x: np.ndarray | torch.Tensor, ylabel: str, title: str | None,
                figsize: tuple[float, float]) -> np.ndarray:
    """A 2-D array as an image with a colour bar, frames on x; [H, W, 3] uint8."""
    x = to_numpy_2d(x)
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(x, aspect="auto", origin="lower", interpolation="none")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("frames")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return figure_to_array(fig)


def plot_spectrogram(mel: np.ndarray | torch.Tensor, title: str | None = None) -> np.ndarray:
    """Image of a (log-)mel spectrogram.

    Args:
        mel: [n_mels, T_frames] (or with leading singleton dims).
    Returns:
        [H, W, 3] uint8.
    """
    return _plot_image(mel, "mel bin", title, FIGSIZE_IN)


def plot_alignment(attn: np.ndarray | torch.Tensor, title: str | None = None) -> np.ndarray:
    """Image of a text-to-frame alignment.

    Args:
        attn: [T_text, T_frames] (or with leading singleton dims), e.g. VITS ``attn[0, 0].T``.
    Returns:
        [H, W, 3] uint8.
    """
    return _plot_image(attn, "tokens", title, ALIGNMENT_FIGSIZE_IN)
