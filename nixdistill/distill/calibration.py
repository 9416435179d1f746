"""Calibrating the student's overall speaking rate after encoder training.

The deterministic duration predictor's overall rate drifts between checkpoints of a short run;
:func:`calibrate_duration_rate` measures it against the teacher's cached durations
(:func:`duration_rate`) and folds the correction into the predictor.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nixdistill.config import from_dict
from nixdistill.data import collate
from nixdistill.distill.latents import LatentCache
from nixdistill.distill.speakers import SpeakerSet
from nixdistill.runs import load_checkpoint, save_checkpoint
from nixdistill.students.encoder import NixEncoder, NixEncoderConfig

__all__ = ["calibrate_duration_rate", "duration_rate"]


@torch.no_grad()
def duration_rate(encoder, dataset, cache: LatentCache, batch_size: int = 16,
                  device: str = "cpu", speakers: SpeakerSet | None = None) -> tuple[float, int]:
    """Teacher frames / student-predicted frames, summed over the cached training items.

    The deterministic predictor is trained on a squared error in frames, so its expected length
    is unbiased in theory; in a short run at a high learning rate its overall rate still drifts
    from checkpoint to checkpoint (measured: 1.02 to 1.31 between steps 200 and 283). This ratio
    is what :func:`calibrate_duration_rate` corrects.

    Args:
        encoder: a :class:`~nixdistill.students.encoder.NixEncoder` (deterministic durations).
        dataset: the training items (``utt_id``, ``x`` [T_text] token ids).
        cache: the latent cache holding their teacher durations (``w_ceil``, frames per token).
        batch_size: items per pass. device: torch device of ``encoder``.
        speakers: the student's speaker set (maps the items' teacher speakers to its own).
    Returns:
        (ratio of summed frames, number of items used); ``(1.0, 0)`` when no item is cached.
        Student frames are the continuous ``exp(logw)`` before rounding (the rounding by
        running total, :func:`~nixdistill.students.duration.round_durations`, is unbiased).
    Raises:
        ValueError: a multi-speaker encoder and items without speaker ids.
    Source: this project (no counterpart in Nix-TTS or VITS).
    """
    was_training = encoder.training
    encoder.eval()
    teacher_frames = student_frames = 0.0
    used = [i for i in range(len(dataset)) if cache.path(dataset[i].utt_id).is_file()]
    for k in range(0, len(used), batch_size):
        batch = collate([dataset[i] for i in used[k: k + batch_size]]).to(device)
        lat = cache.load(batch.utt_ids, batch.x.shape[1], device=device)
        if lat is None or lat.w_ceil is None:
            continue
        _, h, x_mask = encoder.encode_text(batch.x, batch.x_lengths)
        sid = speakers.student_sid(batch.sid) if speakers is not None else batch.sid
        logw = encoder.dp(h, x_mask, encoder.speaker_embedding(sid, batch.x.shape[0],
                                                               batch.x.device))
        student_frames += float((torch.exp(logw) * x_mask).sum())
        teacher_frames += float(lat.w_ceil.float().sum())
    encoder.train(was_training)
    if student_frames <= 0:
        return 1.0, 0
    return teacher_frames / student_frames, len(used)


def calibrate_duration_rate(checkpoint: Path, dataset, cache: LatentCache,
                            device: str = "cpu") -> float | None:
    """Fold the measured :func:`duration_rate` into the duration predictor of an encoder
    checkpoint (rewritten in place; ``meta["duration_rate"]`` records the factors applied).

    Args:
        checkpoint: the encoder run's checkpoint file (e.g. ``checkpoints/last.pt``).
        dataset / cache: as :func:`duration_rate`. device: torch device for the pass.
    Returns:
        the factor applied (teacher ÷ student frames), or ``None`` for a stochastic predictor
        (its rate is sampled) or when no item is cached.
    Raises:
        CheckpointError: ``checkpoint`` is not a readable encoder checkpoint.
        ConfigError: its ``meta.encoder_config`` is invalid.
    """
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(NixEncoderConfig, ckpt["meta"]["encoder_config"], str(checkpoint))
    if cfg.duration_predictor != "deterministic":
        return None
    encoder = NixEncoder(cfg)
    encoder.load_state_dict(ckpt["models"]["encoder"])
    speakers = (ckpt.get("meta") or {}).get("speakers")
    factor, n = duration_rate(encoder.to(device), dataset, cache, device=device,
                              speakers=SpeakerSet.from_dict(speakers) if speakers else None)
    if n == 0:
        return None
    encoder.dp.rescale(factor)
    ckpt["models"]["encoder"] = {k: v.cpu() for k, v in encoder.state_dict().items()}
    meta = ckpt.setdefault("meta", {})
    meta["duration_rate"] = [*meta.get("duration_rate", []), factor]
    save_checkpoint(ckpt.pop("path", str(checkpoint)), ckpt)
    return factor
