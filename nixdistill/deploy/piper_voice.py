"""Export a student as one Piper voice, ``<lang>-<name>-<quality>.onnx`` + ``.onnx.json``
(OHF-Voice/piper1-gpl ``train/export_onnx.py`` and ``config.py``):

* inputs ``input`` int64 ``[1, T_text]``, ``input_lengths`` int64 ``[1]``, ``scales`` float32
  ``[3]`` = ``[noise_scale, length_scale, noise_w]`` (+ ``sid`` int64 ``[1]`` only for
  multi-speaker students);
* outputs ``output`` float32 ``[1, 1, T_samples]`` and ``durations`` ``[1, T_text]`` (frames per
  id, Piper's alignment output);
* the ``.onnx.json`` holds every field Piper runtimes read, the teacher voice's own fields when
  the teacher was a Piper voice, and the student's metadata under ``"nixdistill"``;
* ONNX ``metadata_props`` let sherpa-onnx recognise a Piper VITS voice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nixdistill.deploy.int8 import quantize_int8
from nixdistill.deploy.graphs import OnnxExportError, PiperGraph, require_onnx, trace_graph

__all__ = ["STUDENT_SUFFIX", "PiperPaths", "export_piper", "piper_voice_config", "piper_voice_name",
           "read_teacher_config", "student_dataset_name", "teacher_piper_config",
           "SHERPA_TOKENS_NAME", "sherpa_tokens", "write_sherpa_tokens",
           "sherpa2_phoneme_codepoints"]


class PiperPaths(NamedTuple):
    """Files written by :func:`export_piper`."""

    onnx: Path
    config: Path


def teacher_piper_config(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher voice's ``.onnx.json`` when the student's teacher was a Piper voice.

    Args:
        metadata: student metadata (``teacher`` = ``{"kind", "source", ...}``).
    Returns:
        the parsed JSON, or None when the teacher was not a Piper voice or its file is gone.
    """
    teacher = metadata.get("teacher") or {}
    source = teacher.get("source")
    if teacher.get("kind") != "piper" or not source:
        return None
    path = Path(f"{source}.json") if str(source).endswith(".onnx") else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def piper_voice_config(metadata: dict[str, Any],
                       teacher_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``.onnx.json`` of a student exported as a Piper voice.

    Args:
        metadata: the student's metadata (:attr:`nixdistill.deploy.student.Student.metadata`).
        teacher_config: the teacher voice's ``.onnx.json`` (its language, dataset and speaker
            map are kept), or None.
    Returns:
        JSON-able dict: Piper's fields plus ``"nixdistill"`` (teacher, steps, version, configs);
        ``dataset`` is the teacher's with ``_nix`` appended (:func:`student_dataset_name`).
    Raises:
        OnnxExportError: the student's frontend does not produce Piper's espeak phoneme ids
            (``korean_jamo``, ``english_chars``, or ``espeak`` without a ``phoneme_id_map``),
            or ``teacher_config`` gives a symbol other ids than the student (another voice's).
    """
    frontend = metadata["text_frontend"]
    if frontend.get("frontend") != "espeak" or not frontend.get("phoneme_id_map"):
        name = frontend.get("frontend")
        detail = "an espeak frontend without a phoneme_id_map" if name == "espeak" else \
            f"the {name!r} text frontend"
        raise OnnxExportError(
            f"Piper cannot run this student: it was trained with {detail}, and Piper runtimes "
            "only feed espeak-ng phoneme ids from a phoneme_id_map. Use --format onnx or "
            "safetensors for it.")
    enc_cfg = metadata["encoder_config"]
    audio = metadata["audio"]
    n_speakers = max(1, int(enc_cfg.get("n_speakers", 0)))
    cfg: dict[str, Any] = dict(teacher_config or {})
    teacher_map = cfg.get("phoneme_id_map") or {}
    conflicts = sorted(s for s, ids in frontend["phoneme_id_map"].items()
                       if s in teacher_map and teacher_map[s] != ids)
    if conflicts:
        raise OnnxExportError(f"the teacher voice config gives other ids to {conflicts[:5]} than "
                              "the student's phoneme_id_map: it belongs to another voice")
    source = Path(str((metadata.get("teacher") or {}).get("source") or "voice"))
    cfg["dataset"] = student_dataset_name(cfg.get("dataset"), source.name.split(".")[0])
    names = (metadata.get("speakers") or {}).get("names")
    if n_speakers == 1:
        speaker_id_map = {}
    elif names is not None and len(names) == n_speakers:  # the set the student learned
        speaker_id_map = {str(n): i for i, n in enumerate(names)}
    else:
        speaker_id_map = cfg.get("speaker_id_map") or {}
        if len(speaker_id_map) != n_speakers:
            speaker_id_map = {str(i): i for i in range(n_speakers)}
    cfg.update(
        audio={**(cfg.get("audio") or {}), "sample_rate": int(audio["sample_rate"])},
        espeak={"voice": frontend.get("language", "en-us")},
        phoneme_type=frontend.get("phoneme_type", "espeak"),
        phoneme_id_map=frontend["phoneme_id_map"],
        num_symbols=int(frontend.get("n_vocab") or len(frontend.get("symbols", []))),
        num_speakers=n_speakers,
        speaker_id_map=speaker_id_map,
        inference={"noise_scale": float(enc_cfg.get("noise_scale", 0.667)),
                   "length_scale": float(enc_cfg.get("length_scale", 1.0)),
                   "noise_w": float(enc_cfg.get("noise_scale_w", 0.8))},
        hop_length=int(audio["hop_length"]),
        nixdistill=dict(metadata),
    )
    cfg.pop("vowel_clusters", None)  # the student's own, if any, not a stale teacher's
    if frontend.get("vowel_clusters"):
        cfg["vowel_clusters"] = frontend["vowel_clusters"]
    return cfg


#: Suffix of a student voice's ``dataset`` name: ``joe`` -> ``joe_nix``, so voice lists (Home
#: Assistant, wyoming-piper) show teacher and student apart.
STUDENT_SUFFIX = "_nix"


def student_dataset_name(teacher_dataset: str | None, fallback: str = "voice") -> str:
    """The ``dataset`` name of a student: its teacher's with :data:`STUDENT_SUFFIX`."""
    name = str(teacher_dataset or fallback).strip() or fallback
    return name if name.endswith(STUDENT_SUFFIX) else name + STUDENT_SUFFIX


def piper_voice_name(config: dict[str, Any]) -> str:
    """Piper's file name of a voice, ``<lang>-<dataset>-<quality>`` (e.g.
    ``en_US-joe_nix-medium``), from its ``.onnx.json``."""
    language = (config.get("language") or {}).get("code") or config["espeak"]["voice"]
    quality = (config.get("audio") or {}).get("quality") or "medium"
    return f"{language}-{config['dataset']}-{quality}"


def read_teacher_config(path: str | Path) -> dict[str, Any]:
    """A teacher voice's ``.onnx.json``.

    Raises:
        OnnxExportError: the file is unreadable, not JSON, or not a Piper voice config (no
            ``phoneme_id_map``, ``audio`` or ``espeak``).
    """
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OnnxExportError(f"{path}: not a readable voice config ({e})") from None
    missing = [k for k in ("phoneme_id_map", "audio", "espeak")
               if not isinstance(config, dict) or k not in config]
    if missing:
        raise OnnxExportError(f"{path} is not a Piper voice config (no {', '.join(missing)})")
    return config


def _sherpa_metadata(config: dict[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` sherpa-onnx reads to run a Piper VITS voice."""
    language = config.get("language") or {}
    return {
        "model_type": "vits",
        "comment": "piper",
        "language": str(language.get("name_english") or config["espeak"]["voice"]),
        "voice": str(config["espeak"]["voice"]),
        "has_espeak": "1",
        "n_speakers": str(config["num_speakers"]),
        "sample_rate": str(config["audio"]["sample_rate"]),
    }


def export_piper(student_path: str | Path, out_path: str | Path,
                 teacher_config: str | Path | None = None, int8: bool = False) -> PiperPaths:
    """Write a student as a Piper voice: one graph ``out_path`` and ``<out_path>.json``.

    Args:
        student_path: a ``student.safetensors`` (see :mod:`nixdistill.deploy.export`).
        out_path: ``DIR/<lang>-<name>-<quality>.onnx``, or a folder (an existing one, or a
            path ending in ``/``): then the file is named as Piper names voices, after the
            teacher, e.g. ``DIR/en_US-joe_nix-medium.onnx`` (:func:`piper_voice_name`).
        teacher_config: the teacher voice's ``.onnx.json``; default: found next to the
            teacher's ``.onnx`` recorded in the student metadata, if it is still there.
        int8: quantize the graph's ``MatMul`` weights to int8 (:func:`quantize_int8`, before
            the sherpa-onnx ``metadata_props`` are added); the ``.onnx.json`` records it as
            ``config["nixdistill"]["quantization"]``. Piper runtimes load it unchanged.
    Returns:
        PiperPaths(onnx, config).
    Raises:
        StudentFileError: not a student. OnnxExportError: no ``onnx`` package (with ``int8``:
        no ``onnxruntime``), a student Piper cannot run (see :func:`piper_voice_config`), or a
        ``teacher_config`` that is not this voice's Piper config (:func:`read_teacher_config`).
    """
    from nixdistill.deploy.student import load_student

    require_onnx(int8)
    import onnx

    student = load_student(student_path)
    if teacher_config is not None:
        teacher_cfg = read_teacher_config(teacher_config)
    else:
        teacher_cfg = teacher_piper_config(student.metadata)
    config = piper_voice_config(student.metadata, teacher_cfg)
    out = Path(out_path)
    if out.is_dir() or str(out_path).endswith(("/", "\\")):
        out = out / f"{piper_voice_name(config)}{'_int8' if int8 else ''}.onnx"
    elif out.suffix != ".onnx":
        out = out.with_name(out.name + ".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = PiperPaths(out, out.with_name(out.name + ".json"))
    n_tokens = 8
    args: tuple = (torch.ones(1, n_tokens, dtype=torch.long),
                   torch.tensor([n_tokens], dtype=torch.long), torch.tensor([0.0, 1.0, 0.0]))
    names = ["input", "input_lengths", "scales"]
    axes = {"input": {1: "phonemes"}, "output": {2: "time"}, "durations": {1: "phonemes"}}
    if config["num_speakers"] > 1:
        args += (torch.zeros(1, dtype=torch.long),)
        names.append("sid")
    trace_graph(PiperGraph(student.encoder, student.decoder), args, out, names,
                ["output", "durations"], axes)
    if int8:
        config["nixdistill"]["quantization"] = quantize_int8(out)
    model = onnx.load(str(out))
    for key, value in _sherpa_metadata(config).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(out))
    paths.config.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths


#: File name sherpa-onnx's Piper recipes give the token table of a voice (``vits.tokens``).
SHERPA_TOKENS_NAME = "tokens.txt"


def sherpa_tokens(config: dict[str, Any]) -> str:
    """The ``tokens.txt`` sherpa-onnx reads for a Piper voice, from its ``phoneme_id_map``.

    The format of sherpa-onnx's own Piper conversion (``scripts/piper/add_meta_data.py``,
    ``generate_tokens``): one ``"<symbol> <id>"`` line per map entry, in map order, with the
    first id of each entry; the space symbol is written as it is (the line ``"  3"``) and the
    newline symbol, which a line cannot hold, is left out.

    Args:
        config: a Piper ``.onnx.json`` (parsed).
    Returns:
        the file's text, newline-terminated lines.
    Raises:
        OnnxExportError: the config has no ``phoneme_id_map`` or an entry without ids.
    """
    id_map = config.get("phoneme_id_map")
    if not isinstance(id_map, dict) or not id_map:
        raise OnnxExportError("the voice config has no phoneme_id_map: sherpa-onnx needs one "
                              "for tokens.txt")
    lines = []
    for symbol, ids in id_map.items():
        if symbol == "\n":
            continue
        first = ids[0] if isinstance(ids, list) and ids else ids
        if not isinstance(first, int):
            raise OnnxExportError(f"phoneme_id_map entry {symbol!r} has no id: {ids!r}")
        lines.append(f"{symbol} {first}\n")
    return "".join(lines)


def write_sherpa_tokens(voice_config: str | Path, out: str | Path | None = None) -> Path:
    """Write the sherpa-onnx ``tokens.txt`` of a Piper voice (:func:`sherpa_tokens`).

    Args:
        voice_config: the voice's ``.onnx.json``.
        out: the file to write; default :data:`SHERPA_TOKENS_NAME` next to the voice.
    Returns:
        the path written.
    Raises:
        OnnxExportError: the config is unreadable or has no ``phoneme_id_map``.
    """
    voice_config = Path(voice_config)
    try:
        config = json.loads(voice_config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OnnxExportError(f"{voice_config}: not a readable voice config ({e})") from None
    path = Path(out) if out is not None else voice_config.with_name(SHERPA_TOKENS_NAME)
    path.write_text(sherpa_tokens(config), encoding="utf-8")
    return path


def sherpa2_phoneme_codepoints(voice_config: dict[str, Any], text: str) -> list[list[int]]:
    """The phonemes sherpa-onnx 2.x needs from outside (``GenerationConfig.phoneme_codepoints``).

    sherpa-onnx 2.0.0 dropped its espeak-ng frontend (GPL), so a Piper voice only speaks when
    the caller phonemizes: one list of Unicode codepoints per sentence, the phoneme string of
    that sentence; sherpa adds ``^ _ ... _ $`` and looks the codepoints up in ``tokens.txt``.
    This gives piper-tts's own phonemes (its espeak-ng build, the one Piper voices are trained
    on), so sherpa 2.x speaks the ids ``PiperVoice.phonemes_to_ids`` gives.

    Args:
        voice_config: the voice's ``.onnx.json`` (parsed): ``espeak.voice`` selects the
            language and ``phoneme_id_map`` the symbols.
        text: what to say, any number of sentences.
    Returns:
        ``[[codepoint, ...] per sentence]``; ``[]`` for blank text.
    Raises:
        TextError: piper-tts is missing or rejects the language. OnnxExportError: the voice
        is not an espeak Piper voice, or merges ``vowel_clusters`` (sherpa would split the
        merged symbols into single codepoints again).
    """
    from nixdistill.text import EspeakFrontend

    if voice_config.get("phoneme_type", "espeak") != "espeak" or not voice_config.get(
            "phoneme_id_map"):
        raise OnnxExportError("sherpa-onnx 2.x phoneme codepoints are made here for espeak "
                              "Piper voices only (phoneme_type 'espeak' with a phoneme_id_map)")
    if voice_config.get("vowel_clusters"):
        raise OnnxExportError("this voice merges vowel_clusters into multi-codepoint symbols, "
                              "which sherpa-onnx's codepoint lookup cannot express")
    frontend = EspeakFrontend(language=str(voice_config["espeak"]["voice"]),
                              phoneme_id_map=voice_config["phoneme_id_map"])
    return [[ord(c) for c in "".join(s)] for s in frontend.sentence_phonemes(text)]
