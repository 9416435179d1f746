"""Export a trained student (encoder run + decoder run) to one self-describing safetensors file.

The file holds inference weights only -- the encoder without its training-only aligner, the
decoder with weight norm folded in, no discriminators or optimiser state -- named
``encoder.<key>`` / ``decoder.<key>``. Its string metadata (every value JSON-encoded) is:

=====================  ==================================================================
``format``             ``"nixdistill-student"``
``format_version``     ``"1"``
``encoder_config``     the ``NixEncoderConfig`` fields
``decoder_config``     ``{"kind": "nix"|"istft", **fields}``
``text_frontend``      ``TextFrontend.to_dict()`` (full symbol table / phoneme_id_map)
``audio``              every ``AudioConfig`` field (sample_rate, hop_length, n_fft, ...)
``teacher``            ``{"kind", "source", "n_params"}``
``training_steps``     ``{"encoder": int, "decoder": int}``
``nixdistill_version`` the version that wrote the file
=====================  ==================================================================

:func:`nixdistill.deploy.student.load_student` rebuilds everything from the file alone (in the spirit
of nanoGPT's ``model_args`` and Piper's exported generator).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nixdistill import __version__
from nixdistill.config import AudioConfig, ConfigError
from nixdistill.runs import atomic_write
from nixdistill.deploy.build import decoder_from_run, encoder_from_run
from nixdistill.students.decoder import folded_state_dict
from nixdistill.deploy.student import (
    DECODER_PREFIX,
    ENCODER_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    StudentFileError,
    load_student,
)

__all__ = ["export_student", "write_student"]


def _tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous tensors that share no memory.
    return {prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def write_student(
    out_path: str | Path, encoder: nn.Module, encoder_config: dict[str, Any],
    decoder: nn.Module, decoder_config: dict[str, Any], text_frontend: dict[str, Any],
    audio: AudioConfig | dict[str, Any], teacher: dict[str, Any],
    training_steps: dict[str, int], speakers: dict[str, Any] | None = None,
) -> Path:
    """Write a student file from in-memory modules (atomic: temp file, then rename).

    Args:
        out_path: destination ``.safetensors``.
        encoder: a ``NixEncoder`` (its ``inference_state_dict()`` is saved when it has one).
        encoder_config: its config fields.
        decoder: a student decoder; weight norm is folded into the saved weights
            (the module itself is not changed).
        decoder_config: ``{"kind": ..., **fields}``.
        text_frontend: ``frontend.to_dict()``.
        audio: the teacher's audio settings.
        teacher: ``{"kind", "source", "n_params"}``.
        training_steps: ``{"encoder": steps, "decoder": steps}``.
        speakers: a multi-speaker student's ``{"teacher_ids", "names"}``: student speaker
            ``i`` is teacher speaker ``teacher_ids[i]``, called ``names[i]``; None otherwise.
    Returns:
        the written path.
    Raises:
        ConfigError: ``decoder_config`` without ``kind``.
    """
    if "kind" not in decoder_config:
        raise ConfigError("decoder_config needs a 'kind' ('nix' or 'istft')")
    audio_dict = dataclasses.asdict(audio) if isinstance(audio, AudioConfig) else dict(audio)
    enc_state = (encoder.inference_state_dict() if hasattr(encoder, "inference_state_dict")
                 else encoder.state_dict())
    dec_state = folded_state_dict(decoder)
    tensors = {**_tensors(ENCODER_PREFIX, enc_state), **_tensors(DECODER_PREFIX, dec_state)}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder_config": encoder_config,
        "decoder_config": decoder_config,
        "text_frontend": text_frontend,
        "audio": audio_dict,
        "teacher": teacher,
        "training_steps": training_steps,
        "nixdistill_version": __version__,
    }
    if speakers is not None:
        metadata["speakers"] = speakers
    from safetensors.torch import save_file

    encoded = {k: json.dumps(v) for k, v in metadata.items()}
    return atomic_write(out_path, lambda tmp: save_file(tensors, str(tmp), metadata=encoded))


INFERENCE_DEFAULTS = ("noise_scale", "length_scale", "noise_scale_w")


def export_student(
    encoder_run: str | Path, decoder_run: str | Path, out_path: str | Path,
    inference_defaults: dict[str, float] | None = None,
) -> Path:
    """Combine an encoder run and a decoder run into one ``student.safetensors``.

    Args:
        encoder_run: a ``distil-encoder`` run folder (or checkpoint file).
        decoder_run: a ``distil-decoder`` run folder (or checkpoint file).
        out_path: destination file.
        inference_defaults: the student's shipped defaults (``noise_scale``, ``length_scale``,
            ``noise_scale_w``), e.g. chosen by measurement after training; they replace the
            encoder config's, and ``synthesize``, the Python API, the benchmark and the Piper
            ``.onnx.json`` all read them from the file.
    Returns:
        the written path.
    Raises:
        CheckpointError: a run without checkpoint, or of the wrong stage.
        StudentFileError: a run without its text frontend.
        ConfigError: runs that do not fit together (hop length, latent channels, vocabulary),
            or an unknown inference default.
    """
    encoder, enc_cfg, enc_ckpt = encoder_from_run(encoder_run)
    unknown = sorted(set(inference_defaults or {}) - set(INFERENCE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown inference default(s) {unknown}; known: {INFERENCE_DEFAULTS}")
    enc_cfg = {**enc_cfg, **{k: float(v) for k, v in (inference_defaults or {}).items()}}
    decoder, dec_cfg, dec_ckpt = decoder_from_run(decoder_run)
    dec_meta = dec_ckpt.get("meta") or {}
    enc_meta = enc_ckpt.get("meta") or {}
    audio = dict(dec_ckpt["config"]["audio"])
    enc_audio = (enc_ckpt.get("config") or {}).get("audio")
    if enc_audio and int(enc_audio["hop_length"]) != int(audio["hop_length"]):
        raise ConfigError(f"encoder run hop_length {enc_audio['hop_length']} != decoder run "
                          f"hop_length {audio['hop_length']}")
    if enc_cfg.get("inter_channels") != dec_cfg.get("inter_channels"):
        raise ConfigError(f"encoder inter_channels {enc_cfg.get('inter_channels')} != decoder "
                          f"inter_channels {dec_cfg.get('inter_channels')}")
    frontend = enc_meta.get("text_frontend") or dec_meta.get("text_frontend")
    if frontend is None:
        raise StudentFileError("neither run records its text frontend (meta.text_frontend)")
    teacher = enc_meta.get("teacher") or dec_meta.get("teacher") or {}
    steps = {"encoder": int(enc_ckpt.get("step", 0)), "decoder": int(dec_ckpt.get("step", 0))}
    speakers = enc_meta.get("speakers") if int(enc_cfg.get("n_speakers", 0)) > 1 else None
    out = write_student(out_path, encoder, enc_cfg, decoder, dec_cfg, frontend, audio, teacher,
                        steps, speakers)
    # Fail now, not at synthesis time, if the file does not rebuild.
    load_student(out)
    return out
