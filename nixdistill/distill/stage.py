"""What a training stage declares, and the small helpers every stage shares.

A stage (teach, distil-encoder, distil-decoder, the toy regression) subclasses :class:`Stage`
and declares:

* ``name``, the stage name stored in its checkpoints;
* ``Options``, the dataclass of its ``train.extra`` section, and ``DEFAULT_LOSS_WEIGHTS``, the
  names and default weights of its loss terms (``train.loss_weights`` overrides them); both are
  parsed once, in :meth:`Stage.__init__`;
* ``train_set``, the dataset the :class:`~nixdistill.distill.loop.Trainer` builds its
  loader from (and ``collate_fn`` when the items are not :class:`~nixdistill.data.Item` s);
* :meth:`Stage.modules` (everything checkpointed) and :meth:`Stage.optimized` (the parameters of
  each optimiser, by name); the Trainer builds one AdamW per entry;
* :meth:`Stage.training_step` and :meth:`Stage.evaluate`;
* optionally extra state (:meth:`Stage.state_dict` / :meth:`Stage.load_state_dict`);
* ``averaged``, the modules whose weight average ``train.ema_power`` keeps (the ones it exports;
  not discriminators).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import nn

from nixdistill.audio import audio_kwargs, mel_spectrogram
from nixdistill.config import AudioConfig, TrainConfig, from_dict
from nixdistill.data import collate
from nixdistill.errors import ConfigError
from nixdistill.distill.context import StepContext

__all__ = ["NoOptions", "Stage", "merge_loss_weights", "fit_length", "random_segment_starts",
           "slice_frames", "log_mel", "speaker_ids"]


def merge_loss_weights(defaults: dict[str, float], given: dict[str, float],
                       stage: str) -> dict[str, float]:
    """``defaults`` overridden by ``train.loss_weights``.

    Raises:
        ConfigError: for a name the stage does not know.
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"train.loss_weights: unknown loss(es) {unknown} for {stage}; known: "
                          f"{sorted(defaults)}")
    return {**defaults, **{k: float(v) for k, v in given.items()}}


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad or crop the last axis of ``x`` to ``length``."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return nn.functional.pad(x, (0, length - x.shape[-1]))


def random_segment_starts(lengths: torch.Tensor, segment_frames: int) -> list[int]:
    """Random start frame per item, uniform over the valid positions (global torch RNG)."""
    starts = []
    for n in lengths.tolist():
        high = max(int(n) - segment_frames, 0) + 1
        starts.append(int(torch.randint(high, (1,)).item()))
    return starts


def slice_frames(x: torch.Tensor, starts: list[int], frames: int) -> torch.Tensor:
    """[B, C, T] -> [B, C, frames] from per-item starts (zero-padded past the end)."""
    if x.shape[-1] < max(starts) + frames:
        x = nn.functional.pad(x, (0, max(starts) + frames - x.shape[-1]))
    return torch.stack([x[i, :, s:s + frames] for i, s in enumerate(starts)])


def log_mel(wav: torch.Tensor, audio: AudioConfig) -> torch.Tensor:
    """Log-mel of ``wav`` ([B, T_samples] or [B, 1, T_samples]) -> [B, n_mels, T_frames] (fp32)."""
    return mel_spectrogram(wav.float(), **audio_kwargs(audio))


def speaker_ids(batch: Any, n_speakers: int) -> torch.Tensor | None:
    """``batch.sid`` [B] for a multi-speaker model (``n_speakers > 1``), else ``None``."""
    return batch.sid if n_speakers > 1 else None


@dataclass
class NoOptions:
    """``Options`` of a stage without ``train.extra`` settings."""


class Stage(abc.ABC):
    """Base class of a training stage (see the module docstring).

    Args:
        train_cfg: the ``train`` section; ``extra`` is parsed into ``self.options`` and
            ``loss_weights`` merged into ``self.loss_weights``.
        options: already parsed options (skips parsing ``train.extra``).
        where: location for error messages (config file).
    Raises:
        ConfigError: unknown or bad ``train.extra`` keys or loss names.
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    DEFAULT_LOSS_WEIGHTS: ClassVar[dict[str, float]] = {}
    collate_fn: ClassVar[Callable[[list[Any]], Any]] = staticmethod(collate)
    averaged: ClassVar[tuple[str, ...]] = ()
    train_set: Any

    def __init__(self, train_cfg: TrainConfig, options: Any = None, where: str = "") -> None:
        self.train_cfg = train_cfg
        self.options = options if options is not None else self.parse_options(train_cfg, where)
        self.loss_weights = merge_loss_weights(self.DEFAULT_LOSS_WEIGHTS, train_cfg.loss_weights,
                                               self.name)

    @classmethod
    def parse_options(cls, train_cfg: TrainConfig, where: str = "") -> Any:
        """``train.extra`` as ``cls.Options`` (unknown keys are a ConfigError)."""
        return from_dict(cls.Options, dict(train_cfg.extra),
                         f"{where}:train.extra" if where else "train.extra")

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Every module the checkpoint holds, by name (trainable ones are DDP-wrapped)."""

    @abc.abstractmethod
    def optimized(self) -> dict[str, Iterable[nn.Parameter]]:
        """The parameters of each optimiser, by optimiser name."""

    @abc.abstractmethod
    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """One step on ``batch`` (already on ``ctx.device``): forward, ``ctx.optimize`` per
        optimiser; returns the named scalars to log."""

    @abc.abstractmethod
    def evaluate(self, ctx: StepContext) -> dict[str, float]:
        """Validation metrics (rank 0, under ``no_grad``, modules in ``eval()``, the global RNG
        untouched afterwards); logged as ``val/*``."""

    def state_dict(self) -> dict[str, Any]:
        """Extra state to checkpoint (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (default: nothing to restore)."""
