"""``nixdistill distil-decoder`` on the tiny teacher, and export from real run folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nixdistill.cli import cli
from nixdistill.config import ConfigError, load_config, resolve_config_path
from nixdistill.deploy.export import export_student
from nixdistill.runs import CheckpointError, load_checkpoint, save_checkpoint
from nixdistill.deploy.build import decoder_from_run
from nixdistill.deploy.student import load_student
from nixdistill.students.decoder import NixDecoderConfig
from nixdistill.students.encoder import NixEncoder, NixEncoderConfig
from nixdistill.teacher.loader import build_teacher_model
from nixdistill.text import build_frontend
from nixdistill.distill.setup import decoder_model_config


def _train_checkpoint(stage: str, models: dict, config: dict, meta: dict) -> dict:
    return {"format": "nixdistill-train", "stage": stage, "step": 0, "epoch": 0,
            "batch_in_epoch": 0, "models": models, "optimizers": {}, "schedulers": {},
            "scaler": {}, "rng": {}, "nan_skips": 0, "config": config, "meta": meta}


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A randomly initialised tiny VITS saved as a nixdistill teacher checkpoint."""
    torch.manual_seed(0)
    cfg = load_config("tiny/teacher")
    frontend = build_frontend(cfg.text)
    model, _ = build_teacher_model(cfg, frontend)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, _train_checkpoint("teach", {"generator": model.state_dict()},
                                            cfg.to_dict(), {}))
    return path


@pytest.fixture(scope="module")
def tiny_encoder_run(tmp_path_factory, tiny_teacher):
    """Stand-in for a distil-encoder run: a random tiny NixEncoder in the loop's format."""
    torch.manual_seed(1)
    cfg = load_config("tiny/teacher")
    frontend = build_frontend(cfg.text)
    enc_cfg = NixEncoderConfig(
        n_vocab=frontend.n_vocab, inter_channels=cfg.model["inter_channels"],
        hidden_channels=16, filter_channels=16, kernel_size=3, text_dilations=[1, 2],
        latent_dilations=[1, 2], dp_channels=8, dp_filter_channels=8, dp_dilations=[1],
        n_mels=cfg.audio.n_mels, attention_channels=8,
    )
    encoder = NixEncoder(enc_cfg)
    run = tmp_path_factory.mktemp("encoder_run")
    config = {**cfg.to_dict(), "model": dataclasses.asdict(enc_cfg)}
    meta = {"text_frontend": frontend.to_dict(),
            "teacher": {"kind": "nixdistill", "source": str(tiny_teacher), "n_params": 1}}
    ckpt = _train_checkpoint("distil_encoder", {"encoder": encoder.state_dict()}, config, meta)
    ckpt["step"] = 7
    save_checkpoint(run / "checkpoints" / "last.pt", ckpt)
    return run


def _distil(tmp_path, teacher, data, config, *extra):
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["--device", "cpu", "--seed", "3", "distil-decoder",
                                 "--teacher", str(teacher), "--data", str(data),
                                 "--config", config, "--out", str(out), *extra],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("kind", ["nix", "istft"])
def test_distil_decoder_trains_both_kinds(tmp_path, tiny_teacher, tiny_ljspeech, kind):
    out = _distil(tmp_path, tiny_teacher, tiny_ljspeech, f"tiny/decoder_{kind}",
                  "--max-steps", "2")
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 2
    assert ckpt["stage"] == "distil_decoder"
    assert set(ckpt["models"]) == {"decoder", "discriminator"}
    assert ckpt["config"]["model"]["kind"] == kind
    assert ckpt["meta"]["latent_source"] == "posterior"
    assert ckpt["meta"]["text_frontend"]["symbols"]
    # Every configured loss term was logged to TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for term in ("adv", "fm", "mel", "stft", "teacher_stft"):
        assert any(t.endswith(f"/{term}") for t in tags), (term, tags)
    assert any(t.endswith("mel_l1") for t in tags), tags
    decoder, dec_cfg, _ = decoder_from_run(out)
    assert dec_cfg["kind"] == kind
    z = torch.randn(1, dec_cfg["inter_channels"], 5)
    assert decoder(z).shape == (1, 1, 5 * 16)


def test_distil_decoder_with_encoder_then_export(tmp_path, tiny_teacher, tiny_ljspeech,
                                                 tiny_encoder_run):
    """--encoder mixes in encoder latents; the runner exports nothing, export combines the runs."""
    out = _distil(tmp_path, tiny_teacher, tiny_ljspeech, "tiny/decoder_istft",
                  "--max-steps", "1", "--latents", "prior", "--encoder", str(tiny_encoder_run))
    assert not (out / "student.safetensors").exists()
    student = load_student(export_student(tiny_encoder_run, out, tmp_path / "s1.safetensors"))
    assert student.metadata["training_steps"] == {"encoder": 7, "decoder": 1}
    assert student.metadata["teacher"]["kind"] == "nixdistill"
    wav = student.synthesize("a test", noise_scale=0.0)
    assert wav.ndim == 1 and len(wav) % student.audio.hop_length == 0
    # defaults chosen after training are what the file ships
    tuned = load_student(export_student(tiny_encoder_run, out, tmp_path / "tuned.safetensors",
                                        {"noise_scale": 0.25}))
    assert tuned.encoder.config.noise_scale == 0.25
    assert tuned.metadata["encoder_config"]["noise_scale"] == 0.25
    quiet = load_student(export_student(tiny_encoder_run, out, tmp_path / "quiet.safetensors",
                                        {"noise_scale": 0.0}))
    # synthesize, stream and infer_ids default to the file's shipped noise (here 0: no noise)
    assert (quiet.synthesize("a test") == quiet.synthesize("a test", noise_scale=0.0)).all()
    assert (quiet.synthesize("a test") == wav).all()
    with pytest.raises(ConfigError, match="unknown inference default"):
        export_student(tiny_encoder_run, out, tmp_path / "x.safetensors", {"noise": 0.1})
    # The CLI export of the same runs gives identical weights and synthesis.
    again = tmp_path / "again.safetensors"
    r = CliRunner().invoke(cli, ["export", "--encoder", str(tiny_encoder_run), "--decoder",
                                 str(out), "--out", str(again)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    s2 = load_student(again)
    for a, b in zip(student.decoder.state_dict().values(), s2.decoder.state_dict().values()):
        assert torch.equal(a, b)
    assert (s2.synthesize("a test", noise_scale=0.0) == wav).all()
    r = CliRunner().invoke(cli, ["export", "--encoder", str(tiny_encoder_run), "--decoder",
                                 str(out), "--out", str(tmp_path / "s.onnx"), "--format", "onnx"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert {p.name for p in tmp_path.glob("s.*")} == {
        "s.encoder.onnx", "s.decoder.onnx", "s.onnx.json"}
    # an exported student converts as it is, shipped defaults included
    r = CliRunner().invoke(cli, ["export", "--student", str(tmp_path / "quiet.safetensors"),
                                 "--out", str(tmp_path / "q.onnx"), "--format", "onnx"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "q.onnx.json").read_text())
    assert '"noise_scale": 0.0' in json.dumps(meta)
    r = CliRunner().invoke(cli, ["export", "--student", str(tmp_path / "quiet.safetensors"),
                                 "--out", str(tmp_path / "q2.safetensors")])
    assert r.exit_code == 2 and "--student" in r.output
    # A Piper voice needs an espeak student; these runs use english_chars.
    from nixdistill.deploy.graphs import OnnxExportError

    with pytest.raises(OnnxExportError, match="Piper cannot run"):
        CliRunner().invoke(cli, ["export", "--encoder", str(tiny_encoder_run), "--decoder",
                                 str(out), "--out", str(tmp_path / "p.onnx"), "--format",
                                 "piper"], catch_exceptions=False)
    assert not (tmp_path / "p.onnx").exists()


def test_decoder_validates_the_students_real_path_and_can_start_from_a_run(
        tmp_path, tiny_teacher, tiny_ljspeech, tiny_encoder_run):
    """With --encoder, evaluation runs encoder -> decoder (val/student_mel_l1,
    val/student_duration_ratio); --init starts from another run's decoder weights."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = _distil(tmp_path / "a", tiny_teacher, tiny_ljspeech, "tiny/decoder_istft",
                    "--max-steps", "1", "--latents", "prior", "--encoder", str(tiny_encoder_run))
    acc = EventAccumulator(str(first / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/student_mel_l1", "val/student_duration_ratio"} <= tags, tags
    ratio = acc.Scalars("val/student_duration_ratio")[-1].value
    assert ratio > 0
    assert "eval/student_end_to_end" in acc.Tags()["audio"]
    # the encoder latents use the encoder's own default noise
    ckpt = load_checkpoint(first)
    assert ckpt["meta"]["latent_settings"]["noise_scale"] == pytest.approx(0.667)
    second = _distil(tmp_path / "b", tiny_teacher, tiny_ljspeech, "tiny/decoder_istft",
                     "--max-steps", "0", "--latents", "prior", "--init", str(first))
    a, b = load_checkpoint(first)["models"]["decoder"], load_checkpoint(second)["models"]["decoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_decoder_inherits_the_encoder_runs_latent_settings_and_refuses_others(
        tmp_path, tiny_teacher, tiny_ljspeech, tiny_encoder_run):
    from nixdistill.distill.latents import LatentError
    from nixdistill.distill.distil_decoder import run_distil_decoder

    ckpt = load_checkpoint(tiny_encoder_run)
    ckpt["meta"]["latent_settings"] = {"noise_scale": 0.5, "length_scale": 1.0,
                                       "noise_scale_w": 0.8, "posterior_noise_scale": 1.0}
    ckpt.pop("path", None)
    other = tmp_path / "enc"
    save_checkpoint(other / "checkpoints" / "last.pt", ckpt)
    # a decoder config that sets no latent settings takes the encoder run's
    run_distil_decoder(tiny_teacher, tiny_ljspeech, "tiny/decoder_istft", tmp_path / "run",
                       latents="prior", encoder_run=other, max_steps=1)
    assert load_checkpoint(tmp_path / "run")["meta"]["latent_settings"]["noise_scale"] == 0.5
    # one that sets another value is refused, naming the field
    raw = json.loads(Path(str(resolve_config_path("tiny/decoder_istft"))).read_text())
    raw["train"].setdefault("extra", {})["teacher_noise_scale"] = 0.667
    config = tmp_path / "explicit.json"
    config.write_text(json.dumps(raw))
    with pytest.raises(LatentError, match="noise_scale: 0.667 != 0.5"):
        run_distil_decoder(tiny_teacher, tiny_ljspeech, str(config), tmp_path / "run2",
                           latents="prior", encoder_run=other, max_steps=1)


def _train_scalars(tmp_path, teacher, data, max_steps: int, **train) -> dict[str, list[float]]:
    """Train ``tiny/decoder_istft`` with ``train`` overrides; its TensorBoard train scalars."""
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = json.loads((Path(str(resolve_config_path("tiny/decoder_istft")))).read_text())
    raw["train"].update(eval_interval=1000, checkpoint_interval=1000, **train)
    config = tmp_path / "train.json"
    config.write_text(json.dumps(raw))
    out = _distil(tmp_path, teacher, data, str(config), "--max-steps", str(max_steps))
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
            if tag.startswith("train/")}


@pytest.mark.slow
def test_distil_decoder_learns(tmp_path, tiny_teacher, tiny_ljspeech):
    """40 reconstruction-only steps at a high learning rate clearly lower the mel L1."""
    scalars = _train_scalars(tmp_path, tiny_teacher, tiny_ljspeech, 40, learning_rate=3e-3,
                             loss_weights={"adv": 0, "fm": 0, "mel": 20, "stft": 1,
                                           "teacher_stft": 1})
    mel = scalars["train/mel"]
    window = 8
    assert sum(mel[-window:]) / window < 0.7 * sum(mel[:window]) / window


@pytest.mark.parametrize("term", ["complex", "consistency"])
def test_spectral_loss_term_trains_and_is_logged(tmp_path, tiny_teacher, tiny_ljspeech, term):
    """A ``complex`` weight adds the compressed complex STFT term to the decoder's loss, a
    ``consistency`` weight the STFT consistency term of the iSTFT decoder."""
    scalars = _train_scalars(tmp_path, tiny_teacher, tiny_ljspeech, 2, log_interval=1,
                             loss_weights={"adv": 0, "fm": 0, "mel": 20, "stft": 1,
                                           "teacher_stft": 0, term: 5})
    values = scalars[f"train/{term}"]
    assert len(values) == 2 and all(0 < v < float("inf") for v in values)
    assert "train/teacher_stft" not in scalars  # weight 0 skips a term


def test_consistency_loss_needs_an_istft_decoder(tmp_path, tiny_teacher, tiny_ljspeech):
    from nixdistill.distill.distil_decoder import run_distil_decoder

    raw = json.loads(Path(str(resolve_config_path("tiny/decoder_nix"))).read_text())
    raw["train"]["loss_weights"] = {"adv": 0, "fm": 0, "consistency": 1}
    config = tmp_path / "nix.json"
    config.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="consistency needs an iSTFT decoder"):
        run_distil_decoder(tiny_teacher, tiny_ljspeech, str(config), tmp_path / "run",
                           latents="prior", max_steps=1)


def test_export_refuses_swapped_runs(tmp_path, tiny_encoder_run):
    with pytest.raises(CheckpointError, match="distil-decoder"):
        export_student(tiny_encoder_run, tiny_encoder_run, tmp_path / "s.safetensors")


@pytest.mark.parametrize("name,hop", [("students/decoder_nix", 256), ("students/decoder_istft", 256),
                                      ("tiny/decoder_nix", 16), ("tiny/decoder_istft", 16)])
def test_shipped_decoder_configs_build(name, hop):
    from nixdistill.students.decoder import build_decoder

    cfg = load_config(name)
    dec_cfg = decoder_model_config(cfg.model, 16, name)
    decoder = build_decoder(dec_cfg.kind, dec_cfg, hop)
    assert decoder(torch.randn(1, 16, 2)).shape == (1, 1, 2 * hop)


def test_decoder_config_takes_inter_channels_from_teacher():
    cfg = decoder_model_config({"kind": "istft", "dim": 8}, 24, "t")
    assert cfg.kind == "istft" and cfg.inter_channels == 24
    assert dataclasses.asdict(cfg)["kind"] == "istft"  # the kind travels with the config
    with pytest.raises(ConfigError, match="inter_channels"):
        decoder_model_config({"kind": "nix", "inter_channels": 8}, 24, "t")
    with pytest.raises(ConfigError, match="kind"):
        decoder_model_config({"dim": 8}, 24, "t")
    with pytest.raises(ConfigError, match="kind 'nix'"):
        NixDecoderConfig(kind="istft")


def test_frozen_encoder_latents_are_computed_once_per_utterance(tmp_path, tiny_teacher,
                                                               tiny_ljspeech, tiny_encoder_run):
    """With cached teacher latents at noise 0 the frozen encoder's z is kept per utterance and
    reused exactly; with noise, or without a cache, it is computed afresh every batch."""
    from nixdistill.data import TextOnlyDataset, collate, read_dataset
    from nixdistill.distill.latents import LatentCache, teacher_latents
    from nixdistill.deploy.build import encoder_from_run
    from nixdistill.teacher.loader import load_teacher
    from nixdistill.distill.distil_decoder import DistilDecoderStage

    teacher = load_teacher(tiny_teacher)
    cfg = load_config("tiny/decoder_istft")
    dec_cfg = decoder_model_config(cfg.model, teacher.model_config.inter_channels, "test")
    encoder, _, _ = encoder_from_run(tiny_encoder_run, with_aligner=False)
    data = TextOnlyDataset(read_dataset(tiny_ljspeech)[:4], teacher.frontend)
    cache = LatentCache(tmp_path, {"teacher": "tiny", "source": "prior"},
                        teacher.audio.hop_length)
    stage = DistilDecoderStage(teacher, cfg, dec_cfg, data, data, "prior", encoder.eval(),
                               cache)
    stage.encoder_noise = 0.0
    calls = []
    infer = encoder.infer
    encoder.infer = lambda *a, **k: calls.append(1) or infer(*a, **k)

    batch = collate([data[i] for i in range(3)])
    lat = teacher_latents(teacher, batch, "prior", 0, cache=cache)
    first = stage._encoder_latents(batch, lat)
    again = stage._encoder_latents(batch, lat)
    assert len(calls) == 1 and torch.equal(first, again)
    # another batch of the same utterances, padded differently: the same z per utterance
    pair = collate([data[i] for i in (2, 0)])
    lat2 = teacher_latents(teacher, pair, "prior", 0, cache=cache)  # the same durations
    z2 = stage._encoder_latents(pair, lat2)
    assert len(calls) == 1
    for row, i in enumerate((2, 0)):
        n = int(lat.y_lengths[i])
        torch.testing.assert_close(z2[row, :, :n], first[i, :, :n])
        assert not z2[row, :, n:].any()
    # and it is what the encoder computes for that utterance alone
    one = collate([data[2]])
    w_ceil = lat.w_ceil[2:3, :one.x.shape[1]]  # the teacher's durations of the first batch
    fresh = infer(one.x, one.x_lengths, one.sid, noise_scale=0.0, w_ceil=w_ceil).z
    n = int(lat.y_lengths[2])
    torch.testing.assert_close(z2[0, :, :n], fresh[0, :, :n], rtol=1e-4, atol=1e-5)

    stage.encoder_noise = 0.5
    stage._encoder_latents(batch, lat)
    stage._encoder_latents(batch, lat)
    assert len(calls) == 3
    stage.encoder_noise, stage.cache = 0.0, None  # uncached latents: durations drawn anew
    stage._encoder_latents(batch, lat)
    assert len(calls) == 4
