"""Chunked decoding equals one-shot decoding; sentence splitting; the onnxruntime voice."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from test_export import AUDIO, DECODERS, make_student

from nixdistill.deploy.onnx import export_onnx
from nixdistill.deploy.streaming import decoder_context, windows
from nixdistill.deploy.student import load_student
from nixdistill.students.decoder import build_decoder
from nixdistill.text.sentences import split_sentences

SENTENCE = "streaming keeps every sample of the one shot output"
CHUNK_TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["nix", "istft"])
def student_path(request, tmp_path_factory):
    path, _, _ = make_student(tmp_path_factory.mktemp(f"stream_{request.param}"), request.param)
    return path


@pytest.mark.parametrize("kind", ["nix", "istft"])
def test_decoder_context_covers_the_receptive_field(kind):
    """Changing z beyond the computed context leaves a frame's samples unchanged; changing it
    just inside does not (the bound is not vacuous)."""
    torch.manual_seed(0)
    cfg = DECODERS[kind]
    decoder = build_decoder(kind, cfg, AUDIO.hop_length).remove_weight_norm().eval()
    context = decoder_context(kind, vars(cfg), AUDIO.hop_length)
    n, t = 4 * context + 8, 2 * context
    z = torch.randn(1, cfg.inter_channels, n)
    far, near = z.clone(), z.clone()
    far[..., t + context + 1:] = torch.randn_like(far[..., t + context + 1:])
    near[..., t + 1:] = torch.randn_like(near[..., t + 1:])
    hop = AUDIO.hop_length
    with torch.no_grad():
        base, moved_far, moved_near = (decoder(v)[..., t * hop:(t + 1) * hop] for v in (z, far, near))
    assert torch.equal(base, moved_far)
    assert not torch.equal(base, moved_near)


def test_windows_cover_every_frame_once():
    ws = list(windows(23, 5, 3))
    assert [(w.start, w.end) for w in ws] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert all(w.lo == max(0, w.start - 3) and w.hi == min(23, w.end + 3) for w in ws)
    growing = list(windows(100, 5, 3, max_chunk_frames=20))
    assert [(w.start, w.end) for w in growing] == [
        (0, 5), (5, 15), (15, 35), (35, 55), (55, 75), (75, 95), (95, 100)]
    with pytest.raises(ValueError):
        list(windows(10, 0, 1))
    with pytest.raises(ValueError):
        list(windows(10, 4, 1, max_chunk_frames=2))


@pytest.mark.parametrize("chunk_frames,max_chunk_frames", [(1, 1), (7, 7), (3, 24),
                                                            (10_000, 10_000)])
def test_stream_equals_one_shot(student_path, chunk_frames, max_chunk_frames):
    student = load_student(student_path)
    one_shot = student.synthesize(SENTENCE, noise_scale=0.0)
    chunks = list(student.stream(SENTENCE, noise_scale=0.0, chunk_frames=chunk_frames,
                                 max_chunk_frames=max_chunk_frames))
    n_frames = len(one_shot) // AUDIO.hop_length
    assert len(chunks) == len(list(windows(n_frames, chunk_frames, 0, max_chunk_frames)))
    assert len(chunks[0]) == min(chunk_frames, n_frames) * AUDIO.hop_length
    streamed = np.concatenate(chunks)
    assert streamed.shape == one_shot.shape
    assert np.abs(streamed - one_shot).max() <= CHUNK_TOLERANCE


def test_stream_speaks_long_text_sentence_by_sentence(student_path):
    student = load_student(student_path)
    text = "The first sentence. And a second one!\nA third line"
    expected = np.concatenate([student.synthesize(s, noise_scale=0.0)
                               for s in split_sentences(text)])
    streamed = np.concatenate(list(student.stream(text, noise_scale=0.0, chunk_frames=16)))
    assert np.abs(streamed - expected).max() <= CHUNK_TOLERANCE


def test_split_sentences():
    text = 'Hello there. How are you?\n\nFine, thanks! "Quoted." e.g. this stays. 3.5 too.'
    assert list(split_sentences(text)) == [
        "Hello there.", "How are you?", "Fine, thanks!", '"Quoted." e.g. this stays.',
        "3.5 too."]
    long = "word " * 200
    pieces = list(split_sentences(long, max_chars=50))
    assert all(len(p) <= 50 for p in pieces) and " ".join(pieces).split() == long.split()
    assert list(split_sentences("a, b, c d", max_chars=4)) == ["a,", "b,", "c d"]
    assert list(split_sentences("  \n ")) == []


@pytest.mark.parametrize("text,expected", [
    ("Dr. Smith met Mr. Jones at 3.30 p.m. in the U.S. Army base.",
     ["Dr. Smith met Mr. Jones at 3.30 p.m. in the U.S. Army base."]),
    ("Dr. Smith met Mr. Jones. The U.S. Army came at 3.30 p.m. Then it rained!",
     ["Dr. Smith met Mr. Jones.", "The U.S. Army came at 3.30 p.m.", "Then it rained!"]),
    ("J. R. R. Tolkien wrote it, i.e. the book. It cost $4.50.",
     ["J. R. R. Tolkien wrote it, i.e. the book.", "It cost $4.50."]),
])
def test_split_sentences_knows_abbreviations_initials_and_decimals(text, expected):
    assert list(split_sentences(text, language="en-us")) == expected


def test_split_sentences_follows_the_voice_language():
    from nixdistill.text.sentences import sentence_language

    assert [sentence_language(x) for x in ("en-us", "en_US", "de", "cmn", "ko", None)] == \
        ["en", "en", "de", "zh", None, None]
    assert list(split_sentences("Herr Dr. Müller kam um 3.30 Uhr. Es regnete.", language="de")) \
        == ["Herr Dr. Müller kam um 3.30 Uhr.", "Es regnete."]
    # a language the segmenter does not know: the punctuation rule
    assert list(split_sentences("하나. 둘! 셋?", language="ko")) == ["하나.", "둘!", "셋?"]


def test_onnx_voice_streams_like_one_shot(student_path, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from nixdistill.deploy.runtime import load_voice

    export_onnx(student_path, tmp_path / "student.onnx")
    voice = load_voice(tmp_path / "student.onnx")
    one_shot = voice.synthesize(SENTENCE, noise_scale=0.0)
    chunks = list(voice.stream(SENTENCE, noise_scale=0.0, chunk_frames=7, max_chunk_frames=14))
    assert len(chunks) > 1
    assert np.abs(np.concatenate(chunks) - one_shot).max() <= CHUNK_TOLERANCE
    torch_wav = load_student(student_path).synthesize(SENTENCE, noise_scale=0.0)
    assert np.abs(one_shot - torch_wav).max() <= CHUNK_TOLERANCE


def test_onnx_cli_never_imports_torch(student_path, tmp_path):
    """stdin text -> raw PCM on stdout through onnxruntime, with torch never imported."""
    pytest.importorskip("onnxruntime")
    export_onnx(student_path, tmp_path / "student.onnx")
    code = (
        "import sys\n"
        "from nixdistill.cli import main\n"
        "try:\n"
        f"    main(['synthesize', '--model', {str(tmp_path / 'student.onnx')!r}, '--out', '-',\n"
        "          '--noise-scale', '0', '--stream'])\n"
        "finally:\n"
        "    bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
        "    print(bad[:3], file=sys.stderr)\n"
        "    sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], input=b"Hello there. Second sentence.",
                         capture_output=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr.decode()
    pcm = np.frombuffer(res.stdout, dtype="<i2")
    voice_wav = np.concatenate([
        load_student(student_path).synthesize(s, noise_scale=0.0)
        for s in ("Hello there.", "Second sentence.")])
    assert len(pcm) == len(voice_wav)
    assert np.abs(pcm / 32767.0 - np.clip(voice_wav, -1, 1)).max() <= 2 / 32767.0
