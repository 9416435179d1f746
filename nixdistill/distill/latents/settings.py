"""What a latent batch holds and the teacher sampling settings that produced it."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from nixdistill.errors import NixdistillError

__all__ = ["LATENT_SOURCES", "LatentError", "LatentBatch", "LatentSettings",
           "choose_latent_source", "resolve_latent_settings"]


LATENT_SOURCES = ("auto", "posterior", "prior")


class LatentError(NixdistillError):
    """Latents cannot be produced as asked (no ``enc_q``, no audio, unknown mode)."""


class LatentBatch(NamedTuple):
    """Teacher latents for one batch.

    z: teacher latent, [B, inter, T_frames] (zero on padded frames).
    y_lengths: valid frames, [B] int64.
    mel: log-mel of the audio the latents describe (aligner queries), [B, n_mels, T_frames],
        zero on padded frames; ``None`` for text-only latents (the teacher's decoder skipped).
    w_ceil: teacher durations in frames per token, [B, T_text] int64 (prior), else None.
    wav: audio, [B, 1, T_samples]: the teacher's own synthesis (prior) or the real audio
        (posterior); ``None`` for text-only latents.
    m / logs: teacher posterior mean and log-std, [B, inter, T_frames] (posterior), else None.
    """

    z: torch.Tensor
    y_lengths: torch.Tensor
    mel: torch.Tensor | None
    w_ceil: torch.Tensor | None
    wav: torch.Tensor | None
    m: torch.Tensor | None = None
    logs: torch.Tensor | None = None


class LatentSettings(NamedTuple):
    """Sampling settings of :func:`teacher_latents`: ONE set per distillation.

    The encoder stage, the decoder stage and the latent cache all use the same settings: the
    cache records them and refuses others (:func:`open_latent_cache`), and the decoder stage
    inherits the encoder run's (:func:`resolve_latent_settings`). The defaults are the teacher
    "as shipped" (VITS/Piper inference defaults), so the student learns what users hear.

    noise_scale: prior sample std multiplier (VITS inference default 0.667).
    length_scale: teacher duration multiplier (prior).
    noise_scale_w: teacher stochastic-duration noise (prior).
    posterior_noise_scale: std multiplier of the posterior sample (1: a true sample of q).
    """

    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_scale_w: float = 0.8
    posterior_noise_scale: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "latent settings") -> "LatentSettings":
        """Build from a JSON dict; unknown keys raise :class:`LatentError`."""
        unknown = sorted(set(d) - set(cls._fields))
        if unknown:
            raise LatentError(f"{where}: unknown key(s) {unknown}; known: {list(cls._fields)}")
        return cls(**{k: float(v) for k, v in d.items()})

    def differences(self, other: "LatentSettings") -> list[str]:
        """``["noise_scale: 0.667 != 0.5", ...]`` for every field that differs."""
        return [f"{k}: {a} != {b}" for k, a, b in zip(self._fields, self, other) if a != b]


def resolve_latent_settings(
    explicit: LatentSettings | None, inherited: dict[str, LatentSettings | None],
) -> LatentSettings:
    """The one set of latent settings a stage must use.

    Args:
        explicit: the stage's own configured settings, or ``None`` when it configures none.
        inherited: settings already fixed elsewhere, by origin (e.g. ``{"encoder run RUN": s,
            "latent cache DIR": s}``); ``None`` values are ignored.
    Returns:
        the explicit settings, else the inherited ones, else the defaults.
    Raises:
        LatentError: two sources disagree (names both and every differing field).
    """
    named = [(k, v) for k, v in inherited.items() if v is not None]
    if explicit is not None:
        named.insert(0, ("this stage's config", explicit))
    if not named:
        return LatentSettings()
    first_name, first = named[0]
    for name, other in named[1:]:
        diff = first.differences(other)
        if diff:
            raise LatentError(
                f"latent settings of {first_name} and {name} disagree ({'; '.join(diff)}); "
                "encoder, decoder and cache must share one set -- fix the config or use a new "
                "cache folder")
    return first


def choose_latent_source(teacher: Any, has_audio: bool, mode: str = "auto") -> str:
    """Pick the latent source.

    Args:
        teacher: a :class:`nixdistill.teacher.loader.Teacher` (uses ``has_posterior``, ``source``).
        has_audio: whether every training item has audio.
        mode: ``"auto"`` (posterior iff the teacher has ``enc_q`` and there is audio),
            ``"posterior"`` or ``"prior"``.
    Returns:
        ``"posterior"`` or ``"prior"``.
    Raises:
        LatentError: unknown mode; posterior asked for a teacher without ``enc_q`` or for
            text-only data.
    """
    if mode not in LATENT_SOURCES:
        raise LatentError(f"latents must be one of {LATENT_SOURCES}, got {mode!r}")
    if mode == "auto":
        return "posterior" if (teacher.has_posterior and has_audio) else "prior"
    if mode == "posterior":
        if not teacher.has_posterior:
            raise LatentError(
                f"posterior latents need the teacher's posterior encoder (enc_q), but teacher "
                f"{getattr(teacher, 'source', '?')} ({getattr(teacher, 'kind', '?')}) has none; "
                "use --latents prior"
            )
        if not has_audio:
            raise LatentError("posterior latents need audio, but the dataset is text-only; "
                              "use --latents prior")
    return mode
