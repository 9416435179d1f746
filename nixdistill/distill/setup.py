"""The set-up of a training run, before the stage is built: configs, data, starting models.

:func:`prepare_teach` reads the teach config (or the run's own ``config.json`` on resume),
builds the generator (fresh, or from an ``--init`` teacher, grafting a posterior encoder onto a
prior-only one) and the usable training items.

:func:`prepare_distillation` does, in this order, what ``distil-encoder`` and ``distil-decoder``
both need before training: load the frozen teacher, load the student config with the
teacher's audio and text settings and the command-line overrides, parse ``train.extra``, read
the data and its validation list, choose the latent source, build the datasets, open the
latent cache, describe the run for its checkpoints, and seed the global RNG (so the student is
initialised the same way on every run).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nixdistill.config import ExperimentConfig, config_from_raw, from_dict, load_config, train_overrides
from nixdistill.errors import ConfigError, NixdistillError
from nixdistill.distill.speakers import SpeakerSet, assign_speakers, choose_speakers
from nixdistill.text.language import check_text_language
from nixdistill.data import (AudioTextDataset, TextOnlyDataset, Utterance, train_val_utterances,
                    usable_utterances)
from nixdistill.distill.latents import (LatentCache, LatentSettings, choose_latent_source, open_latent_cache,
                       resolve_latent_settings, teacher_description)
from nixdistill.runs import CONFIG_FILENAME
from nixdistill.teachers.vits import VITS, VITSConfig
from nixdistill.distill.stage import Stage

SPEAKER_DRAW_SEED = 0
"""Seed of the speaker draw for text-only data (``--seed`` replaces it), the same in every
stage so that the encoder and the decoder share one latent cache."""
DEFAULT_GIN_CHANNELS = 256
"""Speaker-embedding channels of a multi-speaker student whose teacher has none to copy."""

__all__ = ["DistilOptions", "Distillation", "prepare_distillation", "encoder_model_config",
           "decoder_model_config", "TeachError", "TeachRun", "prepare_teach"]

#: Sub-modules frozen when a prior-only teacher is given a new posterior encoder.
PRIOR_ONLY_FROZEN = ("enc_p", "dp", "flow", "dec", "emb_g")


class TeachError(NixdistillError):
    """The teach stage cannot run with these inputs (no usable items, bad options)."""


@dataclass
class TeachRun:
    """A prepared teach run (see :func:`prepare_teach`).

    Attributes:
        exp: the resolved config; ``model`` holds every ``VITSConfig`` field.
        generator: the VITS to train (with ``enc_q``).
        train_set / val_set: usable training items and the validation items.
        meta: JSON-able description stored in every checkpoint.
    """

    exp: ExperimentConfig
    generator: VITS
    train_set: AudioTextDataset
    val_set: AudioTextDataset
    meta: dict[str, Any]


def _init_generator(init: str, exp: ExperimentConfig, device: str
                    ) -> tuple[VITS, VITSConfig, ExperimentConfig, str]:
    """A trainable generator from a loaded teacher (see the module docstring)."""
    from nixdistill.teacher.loader import load_teacher

    teacher = load_teacher(init, device="cpu")
    extra = dict(exp.train.extra)
    if teacher.has_posterior:
        model = teacher.model
        cfg = teacher.model_config
        model.requires_grad_(True)
    else:
        cfg = dataclasses.replace(teacher.model_config, has_posterior=True,
                                  spec_channels=teacher.audio.n_freqs)
        model = VITS(cfg)
        missing, unexpected = model.load_state_dict(teacher.model.state_dict(), strict=False)
        new = {k.split(".")[0] for k in missing}
        if unexpected or not new <= {"enc_q", "dp"}:
            raise TeachError(f"{init}: cannot graft a posterior encoder onto this teacher "
                             f"(missing {sorted(new)}, unexpected {unexpected[:5]})")
        extra["freeze"] = sorted(set(extra.get("freeze", [])) | set(PRIOR_ONLY_FROZEN))
    train = dataclasses.replace(exp.train, extra=extra)
    exp = dataclasses.replace(exp, audio=teacher.audio, text=teacher.text, train=train)
    return model, cfg, exp, teacher.kind


def prepare_teach(config_ref: str | Path | None, data_ref: str | Path, out_dir: str | Path,
                  resume: bool = False, max_steps: int | None = None,
                  max_minutes: float | None = None, init: str | Path | None = None,
                  seed: int | None = None, device: str = "cpu") -> TeachRun:
    """Set up a teach run (arguments as :func:`~nixdistill.distill.teach.run_teach`).

    Raises:
        ConfigError, DataError, TeachError: unusable inputs.
    """
    from nixdistill.teacher.loader import build_teacher_model
    from nixdistill.text import build_frontend

    out_dir = Path(out_dir)
    saved = out_dir / CONFIG_FILENAME
    from_run = resume and saved.is_file()
    if from_run:
        exp = config_from_raw(json.loads(saved.read_text(encoding="utf-8")), source=str(saved))
    elif config_ref is None:
        raise TeachError("teach needs --config (or --resume on a run folder with config.json)")
    else:
        exp = load_config(config_ref)
    changes = train_overrides(max_steps, max_minutes, seed)
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, **changes))
    torch.manual_seed(exp.train.seed)  # deterministic initialisation

    kind = "nixdistill"
    if init is not None and not from_run:
        model, vcfg, exp, kind = _init_generator(str(init), exp, device)
        frontend = build_frontend(exp.text)
    else:
        frontend = build_frontend(exp.text)
        model, vcfg = build_teacher_model(exp, frontend)

    train_utts, val_utts, _ = train_val_utterances(data_ref, exp.data)
    missing_audio = [u.utt_id for u in train_utts + val_utts if u.wav_path is None]
    if missing_audio:
        raise TeachError(f"{data_ref}: teach needs audio, {len(missing_audio)} item(s) have none "
                         f"(e.g. {missing_audio[0]})")
    keep, dropped = usable_utterances(train_utts, frontend, exp.audio,
                                      (exp.data.min_seconds, exp.data.max_seconds),
                                      vcfg.segment_size)
    if not keep:
        raise TeachError(f"{data_ref}: no training item is usable ({dropped})")
    if len(keep) < len(train_utts):
        warnings.warn(f"teach: skipped {len(train_utts) - len(keep)} training item(s): {dropped}",
                      stacklevel=2)
    train_set = AudioTextDataset(keep, frontend, exp.audio)
    val_set = AudioTextDataset(val_utts, frontend, exp.audio)
    if len(train_set) < exp.train.batch_size:
        raise TeachError(f"{data_ref}: {len(train_set)} training item(s) is fewer than "
                         f"train.batch_size = {exp.train.batch_size}")

    exp = dataclasses.replace(exp, model=dataclasses.asdict(vcfg))
    meta = {"frontend": frontend.to_dict(), "init": None if init is None else str(init),
            "init_kind": kind, "n_train": len(train_set), "n_val": len(val_set)}
    return TeachRun(exp, model, train_set, val_set, meta)


@dataclass
class DistilOptions:
    """``train.extra`` keys both distillation stages accept.

    Attributes:
        eval_items: held-out utterances used by ``evaluate``.
        teacher_noise_scale / teacher_length_scale / teacher_noise_scale_w: teacher sampling for
            prior latents (and for the encoder's evaluation references).
        posterior_noise_scale: std multiplier of the posterior sample (1: a true sample of q).
            These four are :class:`~nixdistill.distill.latents.LatentSettings`; ``None`` (unset) means
            "as already fixed": by the encoder run a decoder is trained on, else by the latent
            cache, else the defaults. :func:`prepare_distillation` resolves them.
        cache_dir: latent cache folder (relative paths are inside the run folder); used only
            when latent caching is switched on.
    """

    eval_items: int = 2
    teacher_noise_scale: float | None = None
    teacher_length_scale: float | None = None
    teacher_noise_scale_w: float | None = None
    posterior_noise_scale: float | None = None
    cache_dir: str = "latent_cache"

    def __post_init__(self) -> None:
        if self.eval_items < 1:
            raise ConfigError("train.extra.eval_items must be >= 1")

    def _latent_fields(self) -> tuple[float | None, ...]:
        return (self.teacher_noise_scale, self.teacher_length_scale, self.teacher_noise_scale_w,
                self.posterior_noise_scale)

    def explicit_latent_settings(self) -> LatentSettings | None:
        """The latent settings this config sets (unset fields at their defaults), or ``None``
        when it sets none."""
        given = self._latent_fields()
        if all(v is None for v in given):
            return None
        return LatentSettings(*(d if v is None else float(v)
                                for v, d in zip(given, LatentSettings())))

    def latent_settings(self) -> LatentSettings:
        """The teacher sampling settings of :func:`nixdistill.distill.latents.teacher_latents`
        (after :func:`prepare_distillation`, the resolved ones)."""
        return self.explicit_latent_settings() or LatentSettings()

    def with_latent_settings(self, settings: LatentSettings) -> "DistilOptions":
        """A copy with every latent field set from ``settings``."""
        return dataclasses.replace(
            self, teacher_noise_scale=settings.noise_scale,
            teacher_length_scale=settings.length_scale,
            teacher_noise_scale_w=settings.noise_scale_w,
            posterior_noise_scale=settings.posterior_noise_scale)


@dataclass
class Distillation:
    """A prepared distillation run (see :func:`prepare_distillation`).

    Attributes:
        teacher: the loaded, frozen :class:`nixdistill.teacher.loader.Teacher`.
        cfg: the resolved experiment config (audio and text are the teacher's; ``model`` is
            still the raw section of the config file).
        options: the stage's parsed ``train.extra``.
        source: ``"posterior"`` or ``"prior"`` latents.
        train_set / eval_set: ``AudioTextDataset`` (posterior) or ``TextOnlyDataset`` (prior).
        cache: the latent cache, or ``None``.
        meta: JSON-able description stored in every checkpoint (stage, teacher, text frontend,
            audio, latent source, speakers).
        speakers: the teacher speakers the student learns
            (:class:`~nixdistill.distill.speakers.SpeakerSet`).
    """

    teacher: Any
    cfg: ExperimentConfig
    options: DistilOptions
    source: str
    train_set: AudioTextDataset | TextOnlyDataset
    eval_set: AudioTextDataset | TextOnlyDataset
    cache: LatentCache | None
    meta: dict[str, Any]
    speakers: SpeakerSet


# ---------------------------------------------------------------------------- student configs
def encoder_model_config(model: dict[str, Any], teacher, where: str,
                         n_speakers: int | None = None):
    """The :class:`NixEncoderConfig` of a ``model`` section, completed from the teacher.

    ``n_vocab`` comes from the teacher's text frontend, ``n_mels`` from its audio config,
    ``inter_channels`` (and ``gin_channels`` for multi-speaker students, if unset) from its
    model, and ``n_speakers`` from the speaker set (``n_speakers``; default: the teacher's).

    Raises:
        ConfigError: unknown/bad fields, or values that contradict the teacher.
    """
    from nixdistill.students.encoder import NixEncoderConfig

    fields = dict(model)
    derived = {
        "n_vocab": int(teacher.frontend.n_vocab),
        "n_mels": int(teacher.audio.n_mels),
        "inter_channels": int(teacher.model_config.inter_channels),
        "n_speakers": int(teacher.n_speakers if n_speakers is None else n_speakers),
    }
    for key, value in derived.items():
        given = fields.setdefault(key, value)
        if key != "n_vocab" and given != value:
            raise ConfigError(f"{where}: model.{key} ({given}) must equal the teacher's ({value})"
                              if key != "n_speakers" else
                              f"{where}: model.n_speakers ({given}) must equal the number of "
                              f"speakers distilled ({value})")
    if fields["n_vocab"] < derived["n_vocab"]:
        raise ConfigError(f"{where}: model.n_vocab ({fields['n_vocab']}) is smaller than the "
                          f"teacher frontend's {derived['n_vocab']} symbols")
    if derived["n_speakers"] > 1 and not fields.get("gin_channels"):
        fields["gin_channels"] = int(teacher.model_config.gin_channels or 0) or DEFAULT_GIN_CHANNELS
    return from_dict(NixEncoderConfig, fields, f"{where}:model")


def decoder_model_config(model: dict[str, Any], teacher_inter: int, where: str):
    """The decoder config dataclass of a ``model`` section (``kind`` selects the class),
    ``inter_channels`` from the teacher.

    The student decoder is speaker-agnostic (``gin_channels`` 0): the teacher's ``z`` already
    carries the speaker.

    Raises:
        ConfigError: missing/unknown kind, bad fields, or an ``inter_channels`` that differs from
            the teacher's.
    """
    from nixdistill.students.decoder import decoder_config_from_dict

    if "kind" not in model:
        raise ConfigError(f"{where}: model.kind is required ('nix' or 'istft')")
    fields = {"inter_channels": teacher_inter, **model}
    if fields["inter_channels"] != teacher_inter:
        raise ConfigError(f"{where}: model.inter_channels ({fields['inter_channels']}) must equal "
                          f"the teacher's inter_channels ({teacher_inter})")
    return decoder_config_from_dict(model["kind"], fields, f"{where}:model")


def _alignable(utterances: list[Utterance], frontend, audio) -> list[Utterance]:
    kept, _ = usable_utterances(utterances, frontend, audio)
    if len(kept) < len(utterances):
        print(f"skipped {len(utterances) - len(kept)} item(s) with more tokens than frames",
              file=sys.stderr)
    return kept


def prepare_distillation(
    stage_cls: type[Stage], teacher_ref: str | Path, data_ref: str | Path, config_ref: str | Path,
    out_dir: str | Path, latents: str = "auto", device: str = "cpu",
    max_steps: int | None = None, max_minutes: float | None = None, seed: int | None = None,
    cache_latents: bool = False, cache_dir: str | Path | None = None,
    drop_unalignable: bool = False,
    inherited_settings: dict[str, LatentSettings | None] | None = None,
    speakers: str | None = None,
) -> Distillation:
    """Set up a distillation run (the steps are listed in the module docstring).

    Args:
        stage_cls: the stage class; its ``Options`` parse ``train.extra``.
        teacher_ref: any teacher reference (:func:`nixdistill.teacher.loader.load_teacher`).
        data_ref: dataset for :func:`nixdistill.data.train_val_utterances`.
        config_ref: student config file or shipped name.
        out_dir: the run folder (relative ``train.extra.cache_dir`` lives in it).
        latents: ``"auto"``, ``"posterior"`` or ``"prior"``.
        device: torch device of the teacher.
        max_steps / max_minutes / seed: command-line overrides of the ``train`` section.
        cache_latents: cache teacher latents in ``train.extra.cache_dir``.
        cache_dir: latent cache folder; giving it switches caching on.
        drop_unalignable: drop items with more tokens than frames (posterior latents only).
        inherited_settings: latent settings already fixed elsewhere, by origin (e.g. the encoder
            run a decoder trains on); with the cache's own, they fill the settings the config
            leaves unset (:func:`~nixdistill.distill.latents.resolve_latent_settings`).
        speakers: ``--speakers``: the multi-speaker teacher's speakers to learn (comma-separated
            ids or names; default all); with text-only data the teacher renders each sentence
            for one of them, drawn balanced and seeded (:mod:`nixdistill.distill.speakers`).
    Raises:
        ConfigError, DataError, LatentError, TeacherError: unusable inputs.
        LanguageMismatchError: the text is evidently not in the teacher's language.
    """
    from nixdistill.teacher.loader import load_teacher

    teacher = load_teacher(teacher_ref, device=device)
    overrides = {"audio": dataclasses.asdict(teacher.audio),
                 "text": dataclasses.asdict(teacher.text),
                 "train": train_overrides(max_steps, max_minutes, seed)}
    cfg = load_config(config_ref, overrides)
    options = stage_cls.parse_options(cfg.train, cfg.source)

    split = train_val_utterances(data_ref, cfg.data)
    check_text_language((u.text for u in split.train + split.val), teacher.frontend.language,
                        str(data_ref))
    has_audio = all(u.wav_path is not None for u in split.train + split.val)
    source = choose_latent_source(teacher, has_audio, latents)
    speaker_set = choose_speakers(teacher.n_speakers, teacher.speaker_id_map, speakers)
    draw = None
    if teacher.n_speakers > 1:
        # text without speakers of its own: the teacher says each sentence in a drawn voice
        text_only = source == "prior" and all(int(u.speaker) == 0 for u in split.train)
        # one draw over every utterance, so that stages with other validation splits agree
        everyone = sorted(split.train + split.val, key=lambda u: u.utt_id)
        drawn, draw = assign_speakers(everyone, speaker_set,
                                      SPEAKER_DRAW_SEED if seed is None else seed, text_only)
        speaker_of = {u.utt_id: u.speaker for u in drawn}
        split = split._replace(**{
            part: [dataclasses.replace(u, speaker=speaker_of[u.utt_id])
                   for u in getattr(split, part) if u.utt_id in speaker_of]
            for part in ("train", "val")})
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
    caching = cache_latents or cache_dir is not None
    root = Path(cache_dir) if cache_dir is not None else Path(out_dir) / options.cache_dir
    inherited = dict(inherited_settings or {})
    if caching:
        inherited[f"latent cache {root}"] = LatentCache.stored_settings(root)
    settings = resolve_latent_settings(options.explicit_latent_settings(), inherited)
    options = options.with_latent_settings(settings)
    if caching:
        cache = open_latent_cache(root, teacher, source, settings, draw)
    meta = {
        "stage": stage_cls.name,
        "teacher": teacher_description(teacher),
        "text_frontend": teacher.frontend.to_dict(),
        "audio": dataclasses.asdict(teacher.audio),
        "latent_source": source,
        "latent_settings": options.latent_settings()._asdict(),
        "speakers": speaker_set.to_dict(),
        "teacher_n_speakers": int(teacher.n_speakers),
    }
    torch.manual_seed(cfg.train.seed)
    return Distillation(teacher, cfg, options, source, train_set, eval_set, cache, meta,
                        speaker_set)
