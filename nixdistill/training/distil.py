"""What the two distillation stages share: their common options and the set-up of a run.

:func:`prepare_distillation` does, in this order, what ``distil-encoder`` and ``distil-decoder``
both need before training: load the frozen teacher, load the student config with the
teacher's audio and text settings and the command-line overrides, parse ``train.extra``, read
the data and its validation list, choose the latent source, build the datasets, open the
latent cache, describe the run for its checkpoints, and seed the global RNG (so the student is
initialised the same way on every run).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, load_config, train_overrides
from ..errors import ConfigError
from ..data import AudioTextDataset, TextOnlyDataset, Utterance, train_val_utterances
from ..latents import (LatentCache, LatentSettings, choose_latent_source, open_latent_cache,
                       teacher_description)
from .stage import Stage

__all__ = ["DistilOptions", "Distillation", "prepare_distillation"]


@dataclass
class DistilOptions:
    """``train.extra`` keys both distillation stages accept.

    Attributes:
        eval_items: held-out utterances used by ``evaluate``.
        teacher_noise_scale / teacher_length_scale / teacher_noise_scale_w: teacher sampling for
            prior latents (and for the encoder's evaluation references).
        posterior_noise_scale: std multiplier of the posterior sample (1: a true sample of q).
        cache_dir: latent cache folder (relative paths are inside the run folder); used only
            when latent caching is switched on.
    """

    eval_items: int = 2
    teacher_noise_scale: float = 0.667
    teacher_length_scale: float = 1.0
    teacher_noise_scale_w: float = 0.8
    posterior_noise_scale: float = 1.0
    cache_dir: str = "latent_cache"

    def __post_init__(self) -> None:
        if self.eval_items < 1:
            raise ConfigError("train.extra.eval_items must be >= 1")

    def latent_settings(self) -> LatentSettings:
        """The teacher sampling settings of :func:`nixdistill.latents.teacher_latents`."""
        return LatentSettings(self.teacher_noise_scale, self.teacher_length_scale,
                              self.teacher_noise_scale_w, self.posterior_noise_scale)


@dataclass
class Distillation:
    """A prepared distillation run (see :func:`prepare_distillation`).

    Attributes:
        teacher: the loaded, frozen :class:`nixdistill.teacher.Teacher`.
        cfg: the resolved experiment config (audio and text are the teacher's; ``model`` is
            still the raw section of the config file).
        options: the stage's parsed ``train.extra``.
        source: ``"posterior"`` or ``"prior"`` latents.
        train_set / eval_set: ``AudioTextDataset`` (posterior) or ``TextOnlyDataset`` (prior).
        cache: the latent cache, or ``None``.
        meta: JSON-able description stored in every checkpoint (stage, teacher, text frontend,
            audio, latent source).
    """

    teacher: Any
    cfg: ExperimentConfig
    options: DistilOptions
    source: str
    train_set: AudioTextDataset | TextOnlyDataset
    eval_set: AudioTextDataset | TextOnlyDataset
    cache: LatentCache | None
    meta: dict[str, Any]


def _alignable(utterances: list[Utterance], frontend, audio) -> list[Utterance]:
    """Items with at most as many tokens as frames (MAS needs ``T_text <= T_frames``)."""
    probe = AudioTextDataset(utterances, frontend, audio)
    keep = [u for u, frames in zip(utterances, probe.lengths)
            if len(frontend.encode(u.text, u.utt_id)) <= frames]
    if len(keep) < len(utterances):
        print(f"skipped {len(utterances) - len(keep)} item(s) with more tokens than frames",
              file=sys.stderr)
    return keep


def prepare_distillation(
    stage_cls: type[Stage], teacher_ref: str | Path, data_ref: str | Path, config_ref: str | Path,
    out_dir: str | Path, latents: str = "auto", device: str = "cpu",
    max_steps: int | None = None, max_minutes: float | None = None, seed: int | None = None,
    cache_latents: bool = False, cache_dir: str | Path | None = None,
    drop_unalignable: bool = False,
) -> Distillation:
    """Set up a distillation run (the steps are listed in the module docstring).

    Args:
        stage_cls: the stage class; its ``Options`` parse ``train.extra``.
        teacher_ref: any teacher reference (:func:`nixdistill.teacher.load_teacher`).
        data_ref: dataset for :func:`nixdistill.data.train_val_utterances`.
        config_ref: student config file or shipped name.
        out_dir: the run folder (relative ``train.extra.cache_dir`` lives in it).
        latents: ``"auto"``, ``"posterior"`` or ``"prior"``.
        device: torch device of the teacher.
        max_steps / max_minutes / seed: command-line overrides of the ``train`` section.
        cache_latents: cache teacher latents in ``train.extra.cache_dir``.
        cache_dir: latent cache folder; giving it switches caching on.
        drop_unalignable: drop items with more tokens than frames (posterior latents only).
    Raises:
        ConfigError, DataError, LatentError, TeacherError: unusable inputs.
    """
    from ..teacher import load_teacher

    teacher = load_teacher(teacher_ref, device=device)
    overrides = {"audio": dataclasses.asdict(teacher.audio),
                 "text": dataclasses.asdict(teacher.text),
                 "train": train_overrides(max_steps, max_minutes, seed)}
    cfg = load_config(config_ref, overrides)
    options = stage_cls.parse_options(cfg.train, cfg.source)

    split = train_val_utterances(data_ref, cfg.data)
    has_audio = all(u.wav_path is not None for u in split.train + split.val)
    source = choose_latent_source(teacher, has_audio, latents)
    if source == "posterior":
        if drop_unalignable:
            split = train_val_utterances(
                data_ref, cfg.data, lambda utts: _alignable(utts, teacher.frontend, teacher.audio))
        train_set = AudioTextDataset(split.train, teacher.frontend, teacher.audio)
        eval_set = AudioTextDataset(split.val, teacher.frontend, teacher.audio)
    else:
        train_set = TextOnlyDataset(split.train, teacher.frontend)
        eval_set = TextOnlyDataset(split.val, teacher.frontend)

    cache = None
    if cache_latents or cache_dir is not None:
        root = Path(cache_dir) if cache_dir is not None else Path(out_dir) / options.cache_dir
        cache = open_latent_cache(root, teacher, source, options.latent_settings())
    meta = {
        "stage": stage_cls.name,
        "teacher": teacher_description(teacher),
        "text_frontend": teacher.frontend.to_dict(),
        "audio": dataclasses.asdict(teacher.audio),
        "latent_source": source,
    }
    torch.manual_seed(cfg.train.seed)
    return Distillation(teacher, cfg, options, source, train_set, eval_set, cache, meta)
