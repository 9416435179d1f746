"""The exported student at run time: ``load_student(path) -> Student`` and synthesis.

An exported student is one safetensors file (see :mod:`nixdistill.deploy.export`) holding the
inference weights of the Nix-TTS encoder (``encoder.*``) and decoder (``decoder.*``) plus JSON
metadata from which both modules, the text frontend and the audio settings are rebuilt with no
other file. This module never imports :mod:`nixdistill.teachers` or :mod:`nixdistill.teacher.loader`,
so ``nixdistill synthesize --model student.safetensors`` runs without any teacher code.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from nixdistill.config import AudioConfig, from_dict
from nixdistill.errors import NixdistillError
from nixdistill.deploy.streaming import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_MAX_CHUNK_FRAMES,
    decode_chunks,
    decoder_context,
)
from nixdistill.text import TextError, TextFrontend, frontend_from_dict
from nixdistill.text.sentences import split_sentences

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEYS",
    "StudentFileError",
    "StudentFormatError",
    "StudentShapeError",
    "StudentInputError",
    "StudentOutput",
    "Student",
    "build_encoder",
    "build_student_decoder",
    "load_student",
]

FORMAT = "nixdistill-student"
FORMAT_VERSION = "1"
# Metadata entries every student file carries; values are JSON strings.
METADATA_KEYS = (
    "format", "format_version", "encoder_config", "decoder_config", "text_frontend", "audio",
    "teacher", "training_steps", "nixdistill_version",
)
OPTIONAL_METADATA_KEYS = ("speakers",)
"""Metadata only some students have: ``speakers`` (a multi-speaker student's teacher ids and
names, student id = index)."""
ENCODER_PREFIX = "encoder."
DECODER_PREFIX = "decoder."


class StudentFileError(NixdistillError, ValueError):
    """The file is missing, is not safetensors, or is not a nixdistill student."""


class StudentFormatError(StudentFileError):
    """The file is a nixdistill student in a format version this nixdistill cannot read."""


class StudentShapeError(StudentFileError):
    """A tensor in the file does not fit the model its own metadata describes."""


class StudentInputError(NixdistillError, ValueError):
    """A synthesis argument the model cannot take (e.g. a speaker id it does not have)."""


class StudentOutput(NamedTuple):
    """``wav [B, 1, T_samples]``, ``w_ceil [B, 1, T_text]`` frames per token,
    ``y_mask [B, 1, T_frames]`` (1 valid, 0 padding); ``T_samples = T_frames * hop_length``."""

    wav: torch.Tensor
    w_ceil: torch.Tensor
    y_mask: torch.Tensor


def build_encoder(config: dict[str, Any]) -> nn.Module:
    """Inference-only Nix-TTS encoder from its config dict (as stored in the metadata)."""
    from nixdistill.students.encoder import NixEncoder, NixEncoderConfig

    return NixEncoder(from_dict(NixEncoderConfig, config, "encoder_config"), with_aligner=False)


def build_student_decoder(config: dict[str, Any], hop_length: int) -> nn.Module:
    """Student decoder from its metadata dict ``{"kind": ..., **fields}`` (weight norm removed)."""
    from nixdistill.students.decoder import build_decoder

    fields = dict(config)
    kind = fields.pop("kind", None)
    if kind is None:
        raise StudentFileError("decoder_config has no 'kind'")
    return build_decoder(kind, fields, hop_length).remove_weight_norm()


@dataclass
class Student:
    """A runnable student: encoder, decoder, frontend and audio settings from one file.

    Attributes:
        encoder: Nix-TTS encoder (``infer(x, x_lengths, sid, noise_scale, length_scale,
            w_ceil) -> EncoderOutput(z, w_ceil, y_mask)``), eval mode.
        decoder: student decoder (``forward(z, g=None) -> wav``), eval mode.
        frontend: the text frontend the model was trained with.
        audio: sample rate, hop length, STFT settings.
        metadata: the file's metadata, JSON values decoded.
    """

    encoder: nn.Module
    decoder: nn.Module
    frontend: TextFrontend
    audio: AudioConfig
    metadata: dict[str, Any]

    @property
    def sample_rate(self) -> int:
        """Output rate in Hz."""
        return self.audio.sample_rate

    def speaker_embedding(self, sid: torch.Tensor | None) -> torch.Tensor | None:
        """Decoder conditioning ``g [B, gin, 1]`` for speaker ids, or None.

        None unless the decoder is speaker-conditioned (``gin_channels > 0``) and the encoder has
        a speaker table; distilled decoders are speaker-agnostic (``z`` carries the speaker).
        """
        emb = getattr(self.encoder, "emb_g", None)
        if sid is None or emb is None or getattr(self.decoder, "cond", None) is None:
            return None
        return emb(sid).unsqueeze(-1)

    @torch.inference_mode()
    def infer_ids(
        self, x: torch.Tensor, x_lengths: torch.Tensor, sid: torch.Tensor | None = None,
        noise_scale: float | None = None, length_scale: float | None = None,
        w_ceil: torch.Tensor | None = None, noise_scale_w: float | None = None,
    ) -> StudentOutput:
        """Token ids to audio.

        Args:
            x: ids, [B, T_text], int64.
            x_lengths: valid tokens per item, [B].
            sid: speaker ids, [B], or None.
            noise_scale: temperature of the latent sample (0: the mean; None: the student's
                shipped default, ``encoder_config.noise_scale`` in its metadata).
            length_scale: > 1 speaks slower (None: the shipped default).
            w_ceil: forced durations in frames, [B, T_text] or [B, 1, T_text], or None.
            noise_scale_w: noise of a stochastic duration predictor (Piper's ``noise_w``);
                None: the encoder config's.
        Returns:
            StudentOutput(wav [B, 1, T_frames*hop], w_ceil, y_mask); padded samples are zero.
        """
        enc = self.encoder.infer(x, x_lengths, sid=sid, noise_scale=noise_scale,
                                 length_scale=length_scale, w_ceil=w_ceil,
                                 noise_scale_w=noise_scale_w)
        wav = self.decoder(enc.z, self.speaker_embedding(sid))
        sample_mask = torch.repeat_interleave(enc.y_mask, self.audio.hop_length, dim=-1)
        return StudentOutput(wav * sample_mask.to(wav.dtype), enc.w_ceil, enc.y_mask)

    @torch.inference_mode()
    def synthesize(
        self, text: str, noise_scale: float | None = None, length_scale: float | None = None,
        speaker: int | None = None, noise_scale_w: float | None = None,
    ) -> np.ndarray:
        """Speak one utterance in one pass (for long text use :meth:`stream`).

        Args:
            text: the transcript (the frontend normalises / phonemises it).
            noise_scale: latent temperature. length_scale: > 1 speaks slower. None (default):
                the student's shipped defaults from its metadata.
            speaker: speaker id for multi-speaker models (default 0).
            noise_scale_w: duration noise of a stochastic duration predictor (None: config's).
        Returns:
            waveform at ``sample_rate`` Hz, [T_samples], float32.
        Raises:
            TextError: empty text or symbols outside the model's table.
            StudentInputError: a speaker id the model does not have.
        """
        enc, sid = self._encode(text, noise_scale, length_scale, speaker, noise_scale_w)
        wav = self.decoder(enc.z, self.speaker_embedding(sid))
        return wav[0, 0].float().cpu().numpy()

    def _encode(self, text: str, noise_scale: float | None, length_scale: float | None,
                speaker: int | None,
                noise_scale_w: float | None):
        if not text or not text.strip():
            raise TextError("cannot synthesize empty text")
        ids = self.frontend.encode(text)
        if not ids:
            raise TextError(f"text {text!r} gives no tokens")
        device = next(self.decoder.parameters()).device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        x_lengths = torch.tensor([len(ids)], dtype=torch.long, device=device)
        sid = self._speaker_id(speaker, device)
        enc = self.encoder.infer(x, x_lengths, sid=sid, noise_scale=noise_scale,
                                 length_scale=length_scale, noise_scale_w=noise_scale_w)
        return enc, sid

    @property
    def decoder_context(self) -> int:
        """One-sided receptive field of the decoder in frames (from its config)."""
        cfg = dict(self.metadata["decoder_config"])
        return decoder_context(cfg.pop("kind"), cfg, self.audio.hop_length)

    def stream(
        self, text: str, noise_scale: float | None = None, length_scale: float | None = None,
        speaker: int | None = None, noise_scale_w: float | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        max_chunk_frames: int = DEFAULT_MAX_CHUNK_FRAMES,
    ) -> Iterator[np.ndarray]:
        """Speak text of any length as a stream of audio chunks, in bounded memory.

        The text is split into sentences (:func:`nixdistill.text.sentences.split_sentences`);
        per sentence the encoder runs once and the decoder runs over windows of
        ``chunk_frames`` latent frames plus :attr:`decoder_context` frames of margin on each
        side, so the chunks of one sentence concatenate to :meth:`synthesize` of that sentence
        (up to float rounding; tested within 1e-4).

        Args:
            text: any length of text.
            noise_scale / length_scale / speaker / noise_scale_w: as in :meth:`synthesize`.
            chunk_frames: latent frames of the first chunk (``chunk_frames * hop_length``
                samples); later chunks double up to ``max_chunk_frames``.
        Yields:
            waveform chunks at ``sample_rate`` Hz, [n_samples], float32.
        Raises:
            TextError: text with no sentence, or symbols outside the model's table.
            StudentInputError: a speaker id the model does not have.
        """
        sentences = split_sentences(text, language=self.frontend.language)
        first = next(sentences, None)
        if first is None:
            raise TextError("cannot synthesize empty text")
        context = self.decoder_context
        for sentence in itertools.chain([first], sentences):
            enc, sid = self._encode(sentence, noise_scale, length_scale, speaker, noise_scale_w)
            g = self.speaker_embedding(sid)

            def decode(z: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return self.decoder(z, g)

            for chunk in decode_chunks(decode, enc.z, enc.z.shape[-1], self.audio.hop_length,
                                       chunk_frames, context, max_chunk_frames):
                yield chunk[0, 0].float().cpu().numpy()

    def _speaker_id(self, speaker: int | None, device: torch.device) -> torch.Tensor | None:
        n_speakers = int(self.metadata.get("encoder_config", {}).get("n_speakers", 0))
        if n_speakers <= 1:
            if speaker not in (None, 0):
                raise StudentInputError(f"this student has a single speaker; got speaker {speaker}")
            return None
        speaker = 0 if speaker is None else speaker
        if not 0 <= speaker < n_speakers:
            raise StudentInputError(f"speaker must be in [0, {n_speakers}), got {speaker}")
        return torch.tensor([speaker], dtype=torch.long, device=device)

    def to(self, device: torch.device | str) -> Student:
        """Move both modules to ``device`` (in place); returns self."""
        self.encoder.to(device)
        self.decoder.to(device)
        return self


def _json_field(metadata: dict[str, str], key: str, path: Path) -> Any:
    if key not in metadata:
        raise StudentFileError(f"{path}: metadata has no {key!r}; not a complete nixdistill student")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise StudentFileError(f"{path}: metadata {key!r} is not valid JSON ({e})") from None


def _load_into(module: nn.Module, tensors: dict[str, torch.Tensor], part: str, path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise StudentShapeError(
            f"{path}: {part} tensors do not match its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise StudentShapeError(
                f"{path}: tensor {part}.{name} has shape {tuple(tensor.shape)} but the config "
                f"builds {tuple(expected[name].shape)}"
            )
    module.load_state_dict(tensors, strict=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    """Raw string metadata of a safetensors file.

    Raises:
        StudentFileError: missing file or not safetensors.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise StudentFileError(f"student file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise StudentFileError(f"{path} is not a safetensors file ({e})") from None


def load_student(path: str | Path, device: torch.device | str = "cpu") -> Student:
    """Rebuild a student from an exported ``student.safetensors`` alone.

    Args:
        path: the file written by :func:`nixdistill.deploy.export.export_student`.
        device: torch device for the modules.
    Returns:
        Student (modules in eval mode, no gradients).
    Raises:
        StudentFileError: missing file, not safetensors, or not a nixdistill student.
        StudentFormatError: an unsupported ``format_version``.
        StudentShapeError: a tensor that does not fit the model built from the metadata.
    """
    from safetensors.torch import load_file

    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != json.dumps(FORMAT):
        raise StudentFileError(f"{path} is not a nixdistill student file (format="
                               f"{metadata.get('format')!r}, expected {FORMAT!r})")
    version = _json_field(metadata, "format_version", path)
    if version != FORMAT_VERSION:
        raise StudentFormatError(
            f"{path} has student format version {version!r}; this nixdistill reads version "
            f"{FORMAT_VERSION!r}"
        )
    meta = {key: _json_field(metadata, key, path) for key in METADATA_KEYS}
    for key in OPTIONAL_METADATA_KEYS:
        if key in metadata:
            meta[key] = _json_field(metadata, key, path)
    audio = from_dict(AudioConfig, meta["audio"], f"{path}:audio")
    frontend = frontend_from_dict(meta["text_frontend"])
    encoder = build_encoder(meta["encoder_config"])
    decoder = build_student_decoder(meta["decoder_config"], audio.hop_length)
    tensors = load_file(str(path))
    enc = {k[len(ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    dec = {k[len(DECODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(DECODER_PREFIX)}
    other = sorted(set(tensors) - {ENCODER_PREFIX + k for k in enc} - {DECODER_PREFIX + k for k in dec})
    if other:
        raise StudentShapeError(f"{path}: tensors outside encoder./decoder.: {other[:5]}")
    _load_into(encoder, enc, "encoder", path)
    _load_into(decoder, dec, "decoder", path)
    for module in (encoder, decoder):
        module.eval().requires_grad_(False).to(device)
    return Student(encoder, decoder, frontend, audio, meta)
