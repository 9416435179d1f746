"""Run an exported student with onnxruntime only: no torch is imported.

:class:`OnnxVoice` loads either form :mod:`nixdistill.deploy.onnx` writes, or any Piper voice:

* a **Piper voice** ``NAME.onnx`` + ``NAME.onnx.json`` (``nixdistill export --format piper``,
  or a voice from Piper itself): one graph per sentence, like Piper;
* the **two graphs** ``NAME.encoder.onnx`` + ``NAME.decoder.onnx`` with ``NAME.onnx.json``
  (``--format onnx``; pass ``NAME.onnx``): the encoder runs once per sentence and the decoder
  over overlapping windows (:mod:`nixdistill.deploy.streaming`), so :meth:`OnnxVoice.stream` yields
  audio chunk by chunk.

Text of any length is split into sentences first (:func:`~nixdistill.text.sentences.split_sentences`).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nixdistill.errors import NixdistillError
from nixdistill.deploy.streaming import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_MAX_CHUNK_FRAMES,
    decode_chunks,
    decoder_context,
)
from nixdistill.text import EspeakFrontend, TextError, TextFrontend, frontend_from_dict
from nixdistill.text.sentences import split_sentences

__all__ = ["VoiceFileError", "OnnxVoice", "load_voice"]

# Piper's defaults when a voice config has no "inference" entry (piper1-gpl config.py).
PIPER_DEFAULT_SCALES = {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8}


class VoiceFileError(NixdistillError, ValueError):
    """The ONNX voice or its ``.onnx.json`` is missing or unreadable."""


#: Graph inputs every voice has: a Piper voice, or the encoder graph of a two-graph export.
VOICE_INPUTS = ("input", "input_lengths", "scales")


def _session(path: Path, threads: int | None):
    """An onnxruntime session of ``path``; a file onnxruntime cannot read is a VoiceFileError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VoiceFileError(f"{path}: not a readable ONNX graph ({type(e).__name__}: "
                             f"{reason[:200]})") from None


def _check_graph_matches_config(path: Path, session, n_speakers: int, config_path: Path) -> None:
    """Raise VoiceFileError when the graph is not a voice, or disagrees with its config."""
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in VOICE_INPUTS if n not in names]
    if missing:
        raise VoiceFileError(f"{path} is not a voice graph: it has inputs {names}, a voice has "
                             f"{list(VOICE_INPUTS)} (+ sid for several speakers)")
    if n_speakers > 1 and "sid" not in names:
        raise VoiceFileError(f"{config_path} says {n_speakers} speakers, but {path.name} has "
                             "no 'sid' input: the config belongs to another voice")
    if n_speakers == 1 and "sid" in names:
        raise VoiceFileError(f"{config_path} says 1 speaker, but {path.name} has a 'sid' "
                             "input: the config belongs to another voice")


class OnnxVoice:
    """An exported student (or a Piper voice) on onnxruntime.

    Args:
        path: ``NAME.onnx``; the config is ``NAME.onnx.json``.
        threads: onnxruntime intra-op threads (None: its default).
    Attributes:
        config: the ``.onnx.json``.
        frontend: text -> ids, rebuilt from the config.
        sample_rate / hop_length / n_speakers: from the config.
        scales: default ``{noise_scale, length_scale, noise_w}``.
    Raises:
        VoiceFileError: a missing or unreadable file, a graph that is not a voice, or a
            ``.onnx.json`` that does not match its graph (speaker count).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        config_path = path.with_name(path.name + ".json")
        if not config_path.is_file():
            raise VoiceFileError(f"voice config {config_path} does not exist")
        try:
            self.config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise VoiceFileError(f"{config_path} is not a JSON voice config ({e})") from None
        two_graphs = self.config.get("onnx")
        meta = self.config if two_graphs else self.config.get("nixdistill")
        try:
            if meta is not None:
                self.frontend: TextFrontend = frontend_from_dict(meta["text_frontend"])
                self.sample_rate = int(meta["audio"]["sample_rate"])
                self.hop_length = int(meta["audio"]["hop_length"])
                enc = meta["encoder_config"]
                self.n_speakers = max(1, int(enc.get("n_speakers", 0)))
                self.scales = {"noise_scale": float(enc.get("noise_scale", 0.667)),
                               "length_scale": float(enc.get("length_scale", 1.0)),
                               "noise_w": float(enc.get("noise_scale_w", 0.8))}
            else:  # a plain Piper voice
                self.frontend = EspeakFrontend(self.config["espeak"]["voice"],
                                               self.config["phoneme_id_map"],
                                               n_vocab=self.config.get("num_symbols"),
                                               vowel_clusters=self.config.get("vowel_clusters"),
                                               phoneme_type=self.config.get("phoneme_type",
                                                                            "espeak"))
                self.sample_rate = int(self.config["audio"]["sample_rate"])
                self.hop_length = int(self.config.get("hop_length", 256))
                self.n_speakers = max(1, int(self.config.get("num_speakers", 1)))
                self.scales = {**PIPER_DEFAULT_SCALES, **(self.config.get("inference") or {})}
        except (KeyError, TypeError, ValueError) as e:
            raise VoiceFileError(f"{config_path}: not a voice config (missing {e})") from None
        if two_graphs:
            stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
            graphs = [path.with_name(two_graphs.get(part, f"{stem}.{part}.onnx"))
                      for part in ("encoder", "decoder")]
            for graph in graphs:
                if not graph.is_file():
                    raise VoiceFileError(f"ONNX graph {graph} does not exist")
            self.encoder, self.decoder = (_session(g, threads) for g in graphs)
            dec = dict(self.config["decoder_config"])
            self.context = decoder_context(dec.pop("kind"), dec, self.hop_length)
            self.session = None
        else:
            if not path.is_file():
                raise VoiceFileError(f"ONNX voice {path} does not exist")
            self.session = _session(path, threads)
            self.encoder = self.decoder = None
        _check_graph_matches_config(path if self.session else graphs[0],
                                    self.session or self.encoder, self.n_speakers, config_path)
        self._inputs = {i.name for i in (self.session or self.encoder).get_inputs()}

    def _ids(self, text: str) -> np.ndarray:
        ids = self.frontend.encode(text)
        if not ids:
            raise TextError(f"text {text!r} gives no tokens")
        return np.array([ids], dtype=np.int64)

    def _feeds(self, text: str, noise_scale: float | None, length_scale: float | None,
               noise_w: float | None, speaker: int | None) -> dict[str, np.ndarray]:
        x = self._ids(text)
        scales = [self.scales["noise_scale"] if noise_scale is None else noise_scale,
                  self.scales["length_scale"] if length_scale is None else length_scale]
        if self.session is not None:
            scales.append(self.scales["noise_w"] if noise_w is None else noise_w)
        feeds = {"input": x, "input_lengths": np.array([x.shape[1]], dtype=np.int64),
                 "scales": np.array(scales, dtype=np.float32)}
        if self.n_speakers > 1:
            speaker = 0 if speaker is None else speaker
            if not 0 <= speaker < self.n_speakers:
                raise TextError(f"speaker must be in [0, {self.n_speakers}), got {speaker}")
            feeds["sid"] = np.array([speaker], dtype=np.int64)
        elif speaker not in (None, 0):
            raise TextError(f"this voice has a single speaker; got speaker {speaker}")
        return {k: v for k, v in feeds.items() if k in self._inputs}

    def synthesize(self, text: str, noise_scale: float | None = None,
                   length_scale: float | None = None, noise_w: float | None = None,
                   speaker: int | None = None) -> np.ndarray:
        """Speak ``text`` in one pass (no sentence splitting; for long text use :meth:`stream`).

        Args:
            text: the transcript.
            noise_scale / length_scale / noise_w: Piper's scales (None: the voice's defaults;
                ``noise_w`` is fixed by the config in the two-graph form).
            speaker: speaker id of a multi-speaker voice.
        Returns:
            waveform, [T_samples] float32 (not normalised).
        Raises:
            TextError: empty text, unknown symbols or a bad speaker id.
        """
        if not text or not text.strip():
            raise TextError("cannot synthesize empty text")
        feeds = self._feeds(text, noise_scale, length_scale, noise_w, speaker)
        if self.session is not None:
            return self.session.run(["output"], feeds)[0].reshape(-1)
        z = self.encoder.run(["z"], feeds)[0]
        return self.decoder.run(["wav"], {"z": z})[0].reshape(-1)

    def stream(self, text: str, noise_scale: float | None = None,
               length_scale: float | None = None, noise_w: float | None = None,
               speaker: int | None = None,
               chunk_frames: int = DEFAULT_CHUNK_FRAMES,
               max_chunk_frames: int = DEFAULT_MAX_CHUNK_FRAMES) -> Iterator[np.ndarray]:
        """Speak text of any length as audio chunks: one per sentence (Piper graph), or chunks
        of ``chunk_frames`` doubling up to ``max_chunk_frames`` frames (two graphs; they
        concatenate to the one-shot audio).

        Raises:
            TextError: text with no sentence, or unknown symbols.
        """
        sentences = split_sentences(text, language=self.frontend.language)
        first = next(sentences, None)
        if first is None:
            raise TextError("cannot synthesize empty text")
        for sentence in itertools.chain([first], sentences):
            if self.session is not None:
                yield self.synthesize(sentence, noise_scale, length_scale, noise_w, speaker)
                continue
            feeds = self._feeds(sentence, noise_scale, length_scale, noise_w, speaker)
            z = self.encoder.run(["z"], feeds)[0]
            for chunk in decode_chunks(lambda w: self.decoder.run(["wav"], {"z": w})[0], z,
                                       z.shape[-1], self.hop_length, chunk_frames, self.context,
                                       max_chunk_frames):
                yield chunk.reshape(-1)


def load_voice(path: str | Path, threads: int | None = None) -> OnnxVoice:
    """:class:`OnnxVoice` from ``NAME.onnx`` (see the module docstring)."""
    return OnnxVoice(path, threads)
