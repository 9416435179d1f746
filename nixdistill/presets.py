"""Pipeline presets: the JSON a ``nixdistill pipeline`` run follows, parsed and checked.

A preset names the teacher (or leaves it to ``--teacher``), the data, the latent source, and the
config and budget of every stage; ``extends`` takes a base preset and updates it stage by stage.
The layout is in :mod:`nixdistill.pipeline`. Shipped presets resolve by name (``joe-quick``,
``quick``); any preset file works too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import from_dict, resolve_config_path
from .errors import ConfigError

__all__ = ["DecoderBudget", "EncoderBudget", "ExportSpec", "LATENT_SOURCES", "PipelinePreset", "TeacherSpec",
           "TrainingBudget", "load_preset"]

PRESET_STAGES = ("teacher", "encoder", "decoder", "polish", "export", "benchmark")
LATENT_SOURCES = ("auto", "posterior", "prior")


@dataclass
class TrainingBudget:
    """``stages.encoder``: config and budget of a training stage.

    Attributes:
        config: config file or shipped config name.
        max_minutes: wall-clock budget in minutes for this stage (``None``: config's).
        max_steps: step budget (``None``: config's).
    """

    config: str
    max_minutes: float | None = None
    max_steps: int | None = None


@dataclass
class EncoderBudget(TrainingBudget):
    """``stages.encoder``: a training budget, and more text for the encoder alone.

    Attributes:
        extra_text: text files (``resource:NAME`` for shipped ones) that the encoder learns
            from beside the data (``distil-encoder --extra-text``): their teacher latents skip
            the teacher's decoder, so they are cheap. They are skipped, with a note, for a
            teacher they do not fit (another language, several speakers, posterior latents or
            a trained aligner).
    """

    extra_text: list[str] = field(default_factory=list)


@dataclass
class DecoderBudget(TrainingBudget):
    """``stages.decoder``: a training budget, and where the decoder's encoder latents come from.

    Attributes:
        finetune_on_encoder: feed the decoder the trained encoder's latents too.
        encoder_step: with ``finetune_on_encoder``, take those latents from the encoder's
            checkpoint at this step (the encoder stage keeps it) instead of its final one; an
            encoder that stopped earlier gives its final checkpoint. A decoder that learns on an
            early encoder's imperfect latents stays more natural on the final encoder's
            (docs/EXPERIMENTS.md, "The decoder's latents from a weaker encoder").
    """

    finetune_on_encoder: bool = False
    encoder_step: int | None = None

    def __post_init__(self) -> None:
        if self.encoder_step is not None:
            if self.encoder_step <= 0:
                raise ConfigError(f"decoder encoder_step must be positive, got {self.encoder_step}")
            if not self.finetune_on_encoder:
                raise ConfigError("decoder encoder_step needs finetune_on_encoder: true")


@dataclass
class ExportSpec:
    """``stages.export``: ``inference_defaults`` written into the student file
    (``noise_scale``, ``length_scale``, ``noise_scale_w``; empty: the encoder config's)."""

    inference_defaults: dict[str, float] = field(default_factory=dict)


@dataclass
class TeacherSpec:
    """``stages.teacher``: at most one of ``ref`` (a pretrained teacher reference) or
    ``config`` (train one with ``teach``, within ``max_minutes`` / ``max_steps``); with neither,
    the teacher is given on the command line (``--teacher``)."""

    ref: str | None = None
    config: str | None = None
    max_minutes: float | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.ref is not None and self.config is not None:
            raise ConfigError("stages.teacher takes one of 'ref' or 'config', not both")
        if self.ref is not None and (self.max_minutes, self.max_steps) != (None, None):
            raise ConfigError("stages.teacher: a budget needs 'config' (a 'ref' is not trained)")

    @property
    def budget(self) -> TrainingBudget | None:
        """The teach budget, or ``None`` for a pretrained teacher."""
        if self.config is None:
            return None
        return TrainingBudget(self.config, self.max_minutes, self.max_steps)


@dataclass
class PipelinePreset:
    """A parsed preset (see the module docstring for the JSON layout).

    Attributes:
        name: preset name or file path (not part of the JSON).
        description: one line shown in the summary.
        data: default data reference (``resource:NAME`` for shipped text), or ``None`` when
            the user must pass ``--data``.
        latents: latent source for both distillation stages (auto, posterior or prior).
        teacher / encoder / decoder: ``stages.teacher``, ``stages.encoder``, ``stages.decoder``.
        polish: ``stages.polish`` (optional second decoder phase) or ``None``.
        export: ``stages.export``.
        benchmark: :class:`nixdistill.benchmark.BenchmarkSettings` fields
            (``stages.benchmark``, passed through as given).
    """

    name: str
    description: str
    data: str | None
    latents: str
    teacher: TeacherSpec
    encoder: EncoderBudget
    decoder: DecoderBudget
    benchmark: dict[str, Any] = field(default_factory=dict)
    polish: TrainingBudget | None = None
    export: ExportSpec = field(default_factory=ExportSpec)

    def __post_init__(self) -> None:
        if self.latents not in LATENT_SOURCES:
            raise ConfigError(f"latents must be one of {LATENT_SOURCES}, got {self.latents!r}")


def _read_preset(ref: str | Path, seen: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """The preset's JSON with its ``extends`` chain applied: top-level keys replace the base's,
    and each ``stages.<name>`` dict updates the base's stage key by key."""
    path = resolve_config_path(ref)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("stages"), dict):
        raise ConfigError(f"{path} is not a pipeline preset (no 'stages' section)")
    base_ref = raw.pop("extends", None)
    if base_ref is None:
        return path, raw
    if str(base_ref) in seen:
        raise ConfigError(f"{path}: 'extends' loops back to {base_ref!r}")
    _, base = _read_preset(base_ref, (*seen, str(base_ref)))
    stages = dict(base["stages"])
    for name, stage in raw["stages"].items():
        stages[name] = {**stages.get(name, {}), **stage} if isinstance(stage, dict) else stage
    return path, {**base, **raw, "stages": stages}


def load_preset(ref: str | Path) -> PipelinePreset:
    """Load a pipeline preset by shipped name (``joe-quick``) or file path.

    Raises:
        ConfigError: unknown preset, invalid JSON, an ``extends`` loop, or missing/unknown keys
            or bad values.
    """
    path, raw = _read_preset(ref, (str(ref),))
    unknown = sorted(set(raw) - {"description", "data", "latents", "stages"})
    unknown += sorted(f"stages.{k}" for k in set(raw["stages"]) - set(PRESET_STAGES))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}")
    stages = raw["stages"]
    for name in ("encoder", "decoder"):
        if name not in stages:
            raise ConfigError(f"{path}: missing stages.{name}")
    teacher = from_dict(TeacherSpec, stages.get("teacher", {}), f"{path}:stages.teacher")
    encoder = from_dict(EncoderBudget, stages["encoder"], f"{path}:stages.encoder")
    decoder = from_dict(DecoderBudget, stages["decoder"], f"{path}:stages.decoder")
    polish = (from_dict(TrainingBudget, stages["polish"], f"{path}:stages.polish")
              if stages.get("polish") else None)
    export = from_dict(ExportSpec, stages.get("export", {}), f"{path}:stages.export")
    try:
        return PipelinePreset(str(ref), str(raw.get("description", "")), raw.get("data"),
                              raw.get("latents", "auto"), teacher, encoder, decoder,
                              dict(stages.get("benchmark", {})), polish, export)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
