"""Typed configuration: dataclasses loaded from JSON, with invariants checked on construction.

A config file is a JSON object with up to five sections::

    {"audio": {...}, "text": {...}, "data": {...}, "model": {...}, "train": {...}}

``audio``, ``text``, ``data`` and ``train`` map to the dataclasses below; ``model`` is parsed by
the stage that owns it (a teacher, a student encoder or decoder config), with
:func:`from_dict`. Original VITS ``config.json`` files (sections ``train``/``data``/``model``
with keys such as ``filter_length``, ``sampling_rate`` or ``n_mel_channels``) load unchanged:
their keys are translated by :data:`VITS_ALIASES` at this one border.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .nn.config import check_upsampling, from_dict


# Original VITS / vits2 JSON key -> (section, nixdistill key).
VITS_ALIASES: dict[str, tuple[str, str]] = {
    "sampling_rate": ("audio", "sample_rate"),
    "filter_length": ("audio", "n_fft"),
    "hop_length": ("audio", "hop_length"),
    "win_length": ("audio", "win_length"),
    "n_mel_channels": ("audio", "n_mels"),
    "mel_fmin": ("audio", "f_min"),
    "mel_fmax": ("audio", "f_max"),
    "max_wav_value": ("audio", "max_wav_value"),
    "add_blank": ("text", "add_blank"),
    "text_cleaners": ("text", "cleaners"),
    "cleaned_text": ("text", "cleaned_text"),
    "training_files": ("data", "train_filelist"),
    "validation_files": ("data", "val_filelist"),
    "n_speakers": ("data", "n_speakers"),
}


@dataclass
class AudioConfig:
    """Audio and STFT parameters, shared by teacher and student.

    Attributes:
        sample_rate: waveform rate in Hz.
        n_fft: FFT size in samples (VITS ``filter_length``).
        hop_length: frame shift in samples; one latent frame covers this many samples.
        win_length: analysis window in samples (``<= n_fft``).
        n_mels: mel bands.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz; ``None`` means ``sample_rate / 2``.
        max_wav_value: full-scale value of the integer PCM the original configs assume
            (kept for VITS compatibility; audio here is always float in [-1, 1]).
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    max_wav_value: float = 32768.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"audio.sample_rate must be positive, got {self.sample_rate}")
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"audio.win_length ({self.win_length}) must be <= audio.n_fft ({self.n_fft})"
            )
        if self.hop_length <= 0 or self.hop_length > self.win_length:
            raise ConfigError(
                f"audio.hop_length ({self.hop_length}) must be in (0, win_length={self.win_length}]"
            )
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ConfigError(
                f"audio.f_max ({self.f_max} Hz) is above Nyquist ({self.sample_rate / 2} Hz)"
            )

    @property
    def n_freqs(self) -> int:
        """Linear-spectrogram bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1


@dataclass
class TextConfig:
    """Text frontend selection.

    Attributes:
        frontend: ``"espeak"`` (IPA via phonemizer, Piper-compatible ids), ``"english_chars"``
            (LJSpeech-style cleaned characters) or ``"korean_jamo"`` (KSS jamo).
        language: espeak voice for the ``espeak`` frontend, e.g. ``"en-us"``.
        add_blank: intersperse the blank id between tokens (VITS ``add_blank``).
        unknown: ``"error"`` raises on a symbol outside the table; ``"drop"`` removes it and
            counts a warning.
        symbols: explicit symbol table (id = index); ``None`` uses the frontend's default.
        phoneme_id_map: Piper-style ``{symbol: [ids]}`` map; overrides ``symbols`` when set.
        vowel_clusters: a Piper voice's ``vowel_clusters`` (phoneme sequences merged into one
            map symbol, e.g. ``[["a", "ɪ"]]``); ``espeak`` with a ``phoneme_id_map`` only.
        phoneme_type: a Piper voice's ``phoneme_type`` (``espeak``, ``text``, ``pinyin``,
            ``hebrew``, ``japanese``, ``thai``); ``espeak`` with a ``phoneme_id_map`` only.
        cleaners: original VITS cleaner names (informational; mapped to ``frontend``).
        cleaned_text: original VITS flag (informational).
    """

    frontend: str = "english_chars"
    language: str = "en-us"
    add_blank: bool = True
    unknown: str = "error"
    symbols: list[str] | None = None
    phoneme_id_map: dict[str, list[int]] | None = None
    vowel_clusters: list[list[str]] | None = None
    phoneme_type: str = "espeak"
    cleaners: list[str] | None = None
    cleaned_text: bool | None = None

    def __post_init__(self) -> None:
        if self.frontend not in ("espeak", "english_chars", "korean_jamo"):
            raise ConfigError(
                f"text.frontend must be espeak, english_chars or korean_jamo, got {self.frontend!r}"
            )
        if self.unknown not in ("error", "drop"):
            raise ConfigError(f"text.unknown must be 'error' or 'drop', got {self.unknown!r}")
        phoneme_types = ("espeak", "text", "pinyin", "hebrew", "japanese", "thai")
        if self.phoneme_type not in phoneme_types:
            raise ConfigError(f"text.phoneme_type must be one of {', '.join(phoneme_types)}, "
                              f"got {self.phoneme_type!r}")


@dataclass
class DataConfig:
    """Where training data comes from and how it is filtered.

    Attributes:
        train_filelist / val_filelist: filelists written by ``nixdistill prepare`` (optional).
        n_speakers: number of speakers (0 or 1 means single-speaker).
        min_seconds / max_seconds: clips outside this duration range are skipped.
        val_size: items held out when a dataset has no validation list.
    """

    train_filelist: str | None = None
    val_filelist: str | None = None
    n_speakers: int = 0
    min_seconds: float = 0.3
    max_seconds: float = 20.0
    val_size: int = 8


@dataclass
class TrainConfig:
    """Shared training-loop settings (every stage).

    Attributes:
        learning_rate: AdamW learning rate.
        betas: AdamW betas.
        eps: AdamW epsilon.
        lr_decay: per-epoch exponential decay factor (``ExponentialLR.gamma``).
        weight_decay: AdamW weight decay.
        batch_size: items per step per process.
        segment_size: training segment in samples; must be a multiple of ``hop_length``.
        max_steps: stop after this many optimiser steps (``None``: no limit).
        max_minutes: stop after this wall time in minutes (``None``: no limit).
        log_interval / eval_interval / checkpoint_interval: cadences in steps.
        eval_at_start: also evaluate the untrained model at step 0 (a baseline).
        grad_clip: max gradient norm (``None`` disables clipping).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` autocast.
        seed: random seed.
        num_workers: DataLoader workers.
        keep_checkpoints: how many step checkpoints to keep (the last one is always kept).
        keep_steps: steps whose checkpoints are never pruned (e.g. an early encoder whose
            latents a later stage reads); a checkpoint is also written at each of them.
        ema_power: ``gamma`` of a power-function weight average of the stage's averaged
            modules (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
            Diffusion Models", eq. 3): after update ``t`` the average is
            ``beta_t * avg + (1 - beta_t) * weights`` with ``beta_t = (1 - 1/t)^(gamma + 1)``,
            so step ``tau`` weighs about ``tau^gamma``: the average covers a fixed share of the run
            however many steps a time budget allows (0: the plain mean of every step). It is
            what checkpoints export and what evaluation scores; ``None`` (default): off.
        lr_cooldown: share of the budget, ``c`` in (0, 1], at the end of which the learning rate
            falls linearly to 0 (the "warmup-stable-decay" schedule without warmup; Hägele et
            al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
            Durations", sec. 3). The budget is ``max_steps`` or ``max_minutes`` (trained time,
            kept across resumes), whichever is nearer; the factor multiplies the per-epoch
            decay. ``None`` (default): no cooldown. 1.0: linear decay over the whole run.
        loss_weights: named loss weights, e.g. ``{"mel": 45, "kl": 1}``.
        extra: stage-specific settings (documented by each stage).
    """

    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    lr_decay: float = 0.999875
    weight_decay: float = 0.01
    batch_size: int = 16
    segment_size: int = 8192
    max_steps: int | None = None
    max_minutes: float | None = None
    log_interval: int = 50
    eval_interval: int = 1000
    checkpoint_interval: int = 1000
    eval_at_start: bool = False
    grad_clip: float | None = 1000.0
    precision: str = "fp32"
    seed: int = 1234
    num_workers: int = 0
    keep_checkpoints: int = 2
    keep_steps: list[int] = field(default_factory=list)
    ema_power: float | None = None
    lr_cooldown: float | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.ema_power is not None and self.ema_power < 0:
            raise ConfigError(f"train.ema_power must be >= 0 (or null), got {self.ema_power}")
        if self.lr_cooldown is not None and not 0.0 < self.lr_cooldown <= 1.0:
            raise ConfigError(f"train.lr_cooldown must be in (0, 1] (or null), got {self.lr_cooldown}")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"train.precision must be fp32, fp16 or bf16, got {self.precision!r}")
        for name in ("batch_size", "log_interval", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")


@dataclass
class ExperimentConfig:
    """A whole config file: audio, text, data and training sections plus a raw model section.

    ``model`` stays a plain dict here; the stage that owns it turns it into its own dataclass
    with :func:`from_dict` (so this module never imports model code).
    """

    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

    def __post_init__(self) -> None:
        if self.train.segment_size % self.audio.hop_length:
            raise ConfigError(
                f"train.segment_size ({self.train.segment_size} samples) must be a multiple of "
                f"audio.hop_length ({self.audio.hop_length}) [{self.source}]"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


# Keys of an original VITS "train" section that have a nixdistill meaning, and those that are
# accepted but ignored (epoch-based settings our step-based loop does not use).
_VITS_TRAIN_KEEP = {
    "learning_rate", "betas", "eps", "lr_decay", "batch_size", "segment_size", "seed",
    "log_interval", "eval_interval",
}
_VITS_TRAIN_LOSSES = {"c_mel": "mel", "c_kl": "kl"}


def translate_vits_json(raw: dict[str, Any]) -> dict[str, Any]:
    """Translate an original VITS/vits2 ``config.json`` into nixdistill sections.

    Returns a dict with ``audio``, ``text``, ``data``, ``train`` and ``model`` sections.
    Keys with no nixdistill meaning (``epochs``, ``fp16_run``, ``init_lr_ratio``,
    ``warmup_epochs``) are dropped; ``fp16_run`` becomes ``precision``.
    """
    out: dict[str, dict[str, Any]] = {s: {} for s in ("audio", "text", "data", "train", "model")}
    for k, v in raw.get("data", {}).items():
        if k in VITS_ALIASES:
            section, name = VITS_ALIASES[k]
            out[section][name] = v
    train = raw.get("train", {})
    for k, v in train.items():
        if k in _VITS_TRAIN_KEEP:
            out["train"][k] = v
        elif k in _VITS_TRAIN_LOSSES:
            out["train"].setdefault("loss_weights", {})[_VITS_TRAIN_LOSSES[k]] = v
    if train.get("fp16_run"):
        out["train"]["precision"] = "fp16"
    cleaners = out["text"].get("cleaners") or []
    if any("korean" in c for c in cleaners):
        out["text"]["frontend"] = "korean_jamo"
    elif any("phonem" in c for c in cleaners):
        out["text"]["frontend"] = "espeak"
    out["model"] = dict(raw.get("model", {}))
    if "use_mel_posterior_encoder" in raw.get("data", {}):  # vits2 keeps this flag under data
        out["model"]["use_mel_posterior_encoder"] = raw["data"]["use_mel_posterior_encoder"]
    return out


def is_vits_json(raw: dict[str, Any]) -> bool:
    """True for an original VITS/vits2 config (a ``data`` section using VITS key names)."""
    return isinstance(raw.get("data"), dict) and "sampling_rate" in raw["data"]


def resolve_config_path(ref: str | Path) -> Path:
    """Resolve a config reference: a file path, or the name of a config shipped in the package.

    Names are looked up in ``nixdistill/configs`` (with or without ``.json``): first as given
    (``"tiny/teacher"``, ``"students/decoder_nix"``), then in ``presets/``, ``students/``,
    ``teachers/`` and last ``tiny/``, so a bare name never picks a test config over a real one.

    Raises:
        ConfigError: if nothing matches.
    """
    p = Path(ref)
    if p.is_file():
        return p
    root = resources.files("nixdistill.configs")
    name = str(ref) if str(ref).endswith(".json") else f"{ref}.json"
    for sub in ("", "presets/", "students/", "teachers/", "tiny/"):
        cand = root.joinpath(sub + name)
        if cand.is_file():
            return Path(str(cand))
    raise ConfigError(f"config {str(ref)!r} is neither a file nor a config shipped with nixdistill")


def load_config(ref: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load a config file (nixdistill or original VITS layout) into an :class:`ExperimentConfig`.

    Args:
        ref: a path or a shipped config name (see :func:`resolve_config_path`).
        overrides: ``{"section": {key: value}}`` merged over the file, e.g. from the CLI.

    Raises:
        ConfigError: for a missing file, invalid JSON, unknown keys or broken invariants.
    """
    path = resolve_config_path(ref)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e})") from None
    return config_from_raw(raw, source=str(path), overrides=overrides)


def config_from_raw(
    raw: dict[str, Any], source: str = "<dict>", overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from an already-parsed JSON object (see load_config)."""
    if is_vits_json(raw):
        raw = translate_vits_json(raw)
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    allowed = {"audio", "text", "data", "train", "model", "description"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; allowed: {sorted(allowed)}")
    return ExperimentConfig(
        audio=from_dict(AudioConfig, raw.get("audio", {}), f"{source}:audio"),
        text=from_dict(TextConfig, raw.get("text", {}), f"{source}:text"),
        data=from_dict(DataConfig, raw.get("data", {}), f"{source}:data"),
        train=from_dict(TrainConfig, raw.get("train", {}), f"{source}:train"),
        model=dict(raw.get("model", {})),
        source=source,
    )


def train_overrides(max_steps: int | None = None, max_minutes: float | None = None,
                    seed: int | None = None) -> dict[str, Any]:
    """The ``train`` section overrides a command line gives (``--max-steps``,
    ``--max-minutes``, ``--seed``); ``None`` values are left out."""
    given = {"max_steps": max_steps, "max_minutes": max_minutes, "seed": seed}
    return {k: v for k, v in given.items() if v is not None}
