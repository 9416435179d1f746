"""Sampling teacher latents for a batch: the posterior ``q(z | spec)`` or the prior
``flow⁻¹(m_p + ε·exp(logs_p))``, reproducible for a given generator or seed."""

from __future__ import annotations

from typing import Any

import torch

from nixdistill.audio import audio_kwargs, mel_spectrogram, spec_to_mel
from nixdistill.distill.latents.settings import LatentBatch, LatentError, LatentSettings

__all__ = ["device_generator", "teacher_latents"]


_SEED_HIGH = 2**62  # seeds drawn from a caller's generator for a device-local generator


def device_generator(generator: torch.Generator | int | None, device: torch.device):
    """A generator on ``device``: the given one when it already lives there, else one seeded
    from it (or from the integer seed). ``None`` stays ``None`` (global RNG)."""
    if generator is None:
        return None
    if isinstance(generator, int):
        gen = torch.Generator(device=device)
        gen.manual_seed(generator)
        return gen
    if torch.device(generator.device).type == device.type:
        return generator
    seed = int(torch.randint(_SEED_HIGH, (1,), generator=generator))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _sid(teacher: Any, batch: Any) -> torch.Tensor | None:
    return batch.sid if getattr(teacher, "n_speakers", 0) > 1 else None


def _frame_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return (torch.arange(t, device=lengths.device)[None] < lengths[:, None]).unsqueeze(1)


def _uses_mel_posterior(teacher: Any) -> bool:
    return bool(getattr(teacher.model_config, "use_mel_posterior_encoder", False))


@torch.no_grad()
def _posterior(teacher, batch, gen, settings: LatentSettings) -> LatentBatch:
    if batch.spec is None:
        raise LatentError("posterior latents need audio, but the batch is text-only")
    audio = teacher.audio
    kw = audio_kwargs(audio)
    mel = spec_to_mel(batch.spec, kw["sample_rate"], kw["n_fft"], kw["n_mels"], kw["f_min"],
                      kw["f_max"])
    y = mel if _uses_mel_posterior(teacher) else batch.spec
    post = teacher.model.posterior(y, batch.spec_lengths, _sid(teacher, batch),
                                   noise_scale=settings.posterior_noise_scale, generator=gen)
    mask = _frame_mask(batch.spec_lengths, post.z.shape[2]).to(post.z.dtype)
    mel = mel[:, :, : post.z.shape[2]]
    return LatentBatch(post.z * mask, batch.spec_lengths.long(), mel * mask, None, batch.y,
                       post.m_q * mask, post.logs_q * mask)


@torch.no_grad()
def _sampling(settings: LatentSettings, gen) -> dict[str, Any]:
    return {"noise_scale": settings.noise_scale, "length_scale": settings.length_scale,
            "noise_scale_w": settings.noise_scale_w, "generator": gen}


def _prior(teacher, batch, gen, settings: LatentSettings) -> LatentBatch:
    out = teacher.model.infer(batch.x, batch.x_lengths, _sid(teacher, batch),
                              **_sampling(settings, gen))
    hop = teacher.audio.hop_length
    y_lengths = out.y_mask.sum((1, 2)).long()
    sample_mask = _frame_mask(y_lengths * hop, out.wav.shape[2]).to(out.wav.dtype)
    wav = out.wav.float() * sample_mask
    mel = mel_spectrogram(wav, **audio_kwargs(teacher.audio))
    t_frames = out.z.shape[2]
    if mel.shape[2] < t_frames:  # a decoder that returned fewer samples than frames * hop
        mel = torch.nn.functional.pad(mel, (0, t_frames - mel.shape[2]))
    return LatentBatch(out.z * out.y_mask, y_lengths, mel[:, :, :t_frames] * out.y_mask,
                       out.w_ceil.reshape(out.w_ceil.shape[0], -1).long(), wav)


@torch.no_grad()
def _prior_text_only(teacher, batch, gen, settings: LatentSettings) -> LatentBatch:
    # the same draws as _prior (durations, then the prior sample) without the teacher's decoder
    out = teacher.model.prior_latents(batch.x, batch.x_lengths, _sid(teacher, batch),
                                      **_sampling(settings, gen))
    y_lengths = out.y_mask.sum((1, 2)).long()
    return LatentBatch(out.z * out.y_mask, y_lengths, None, out.w_ceil, None)


def teacher_latents(
    teacher: Any, batch: Any, source: str, generator: torch.Generator | int | None = None,
    settings: LatentSettings | None = None, cache: Any = None, audio: bool = True,
) -> LatentBatch:
    """Teacher latents for a batch.

    Args:
        teacher: frozen :class:`nixdistill.teacher.loader.Teacher`.
        batch: :class:`nixdistill.data.Batch` on the teacher's device (posterior needs
            ``spec``/``spec_lengths``/``y``; prior needs ``x``/``x_lengths``).
        source: ``"posterior"`` or ``"prior"`` (see :func:`choose_latent_source`).
        generator: ``torch.Generator`` or integer seed for all sampling noise (None: global RNG).
        settings: :class:`LatentSettings` (defaults: VITS inference values).
        cache: optional :class:`~nixdistill.distill.latents.cache.LatentCache`; items found there are not recomputed.
        audio: prior latents only: also synthesise the teacher's audio (``wav``) and its ``mel``,
            which the decoder stage and the encoder's aligner need. ``False`` skips the
            teacher's decoder, most of a VITS synthesis, and returns text-only latents
            (``mel`` and ``wav`` ``None``; the same ``z`` and ``w_ceil`` for the same draws).
            With ``True``, cached text-only items are synthesised again.
    Returns:
        :class:`LatentBatch`; all frame axes share ``T_frames``.
    Raises:
        LatentError: unknown source, or posterior latents without audio.
    """
    if source not in ("posterior", "prior"):
        raise LatentError(f"latent source must be 'posterior' or 'prior', got {source!r}")
    settings = settings or LatentSettings()
    if cache is not None:
        hit = cache.load(batch.utt_ids, batch.x.shape[1], device=batch.x.device)
        if hit is not None and (hit.wav is not None or not audio):
            return hit
    gen = device_generator(generator, batch.x.device)
    if source == "posterior":
        lat = _posterior(teacher, batch, gen, settings)
    else:
        lat = (_prior if audio else _prior_text_only)(teacher, batch, gen, settings)
    if cache is not None:
        cache.save(batch.utt_ids, lat, batch.x_lengths)
    return lat
