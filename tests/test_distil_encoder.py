"""Teacher latents and the distil-encoder stage, end to end on the tiny teacher."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
from conftest import save_untrained_teacher
import torch
from click.testing import CliRunner

from nixdistill.cli import cli
from nixdistill.config import load_config
from nixdistill.data import AudioTextDataset, TextOnlyDataset, collate, read_dataset
from nixdistill.distill.latents import (
    LatentCache, LatentError, LatentSettings, choose_latent_source, fill_latent_cache,
    open_latent_cache, resolve_latent_settings, teacher_fingerprint, teacher_latents,
)
from nixdistill.distill.losses_align import gaussian_nll_loss, latent_mse_loss
from nixdistill.teacher.loader import load_teacher
from nixdistill.errors import ConfigError
from nixdistill.text import EspeakFrontend
from nixdistill.runs import load_checkpoint


@pytest.fixture(scope="module")
def tiny_teacher_file(tmp_path_factory):
    """An untrained tiny VITS teacher (with enc_q) saved as a nixdistill checkpoint."""
    return save_untrained_teacher(tmp_path_factory.mktemp("teacher") / "teacher.pt")


@pytest.fixture(scope="module")
def tiny_teacher(tiny_teacher_file):
    return load_teacher(tiny_teacher_file)


def _batch(teacher, data, audio: bool, n: int = 2):
    utts = read_dataset(data)[:n]
    ds = (AudioTextDataset(utts, teacher.frontend, teacher.audio) if audio
          else TextOnlyDataset(utts, teacher.frontend))
    return collate([ds[i] for i in range(len(ds))])


def _aligner_auto_config(tmp_path):
    """The tiny encoder config with ``train.extra.aligner: "auto"``, written under ``tmp_path``."""
    from nixdistill.config import resolve_config_path

    raw = json.loads(resolve_config_path("tiny/encoder").read_text(encoding="utf-8"))
    raw["train"].setdefault("extra", {})["aligner"] = "auto"
    config = tmp_path / "encoder.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    return config


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_choose_latent_source():
    with_q = SimpleNamespace(has_posterior=True, source="t.pt", kind="vits")
    no_q = SimpleNamespace(has_posterior=False, source="voice.onnx", kind="piper")
    assert choose_latent_source(with_q, True, "auto") == "posterior"
    assert choose_latent_source(with_q, False, "auto") == "prior"
    assert choose_latent_source(no_q, True, "auto") == "prior"
    assert choose_latent_source(with_q, True, "prior") == "prior"
    with pytest.raises(LatentError, match="enc_q"):
        choose_latent_source(no_q, True, "posterior")
    with pytest.raises(LatentError, match="text-only"):
        choose_latent_source(with_q, False, "posterior")
    with pytest.raises(LatentError, match="latents must be"):
        choose_latent_source(with_q, True, "bogus")


def test_prior_latents_are_consistent_and_seeded(tiny_teacher, tiny_ljspeech):
    batch = _batch(tiny_teacher, tiny_ljspeech, audio=False)
    hop = tiny_teacher.audio.hop_length
    a = teacher_latents(tiny_teacher, batch, "prior", 7)
    b = teacher_latents(tiny_teacher, batch, "prior", torch.Generator().manual_seed(7))
    c = teacher_latents(tiny_teacher, batch, "prior", 8)
    assert torch.equal(a.z, b.z) and torch.equal(a.wav, b.wav)
    assert not torch.equal(a.z, c.z)
    t_frames = a.z.shape[2]
    assert a.mel.shape == (2, tiny_teacher.audio.n_mels, t_frames)
    assert a.wav.shape[2] == t_frames * hop
    assert torch.equal(a.w_ceil.sum(1), a.y_lengths)
    assert a.w_ceil.shape == batch.x.shape and a.m is None
    short = int(a.y_lengths.argmin())
    n = int(a.y_lengths[short])
    assert a.z[short, :, n:].abs().max() == 0 and a.wav[short, :, n * hop:].abs().max() == 0


def test_posterior_latents_follow_the_audio_frames(tiny_teacher, tiny_ljspeech):
    batch = _batch(tiny_teacher, tiny_ljspeech, audio=True)
    a = teacher_latents(tiny_teacher, batch, "posterior", 3)
    b = teacher_latents(tiny_teacher, batch, "posterior", 3)
    assert torch.equal(a.z, b.z)
    assert a.z.shape[2] == batch.spec.shape[2] == a.mel.shape[2]
    assert torch.equal(a.y_lengths, batch.spec_lengths)
    assert a.m.shape == a.logs.shape == a.z.shape and a.w_ceil is None
    zero_noise = teacher_latents(tiny_teacher, batch, "posterior", 3,
                                 LatentSettings(posterior_noise_scale=0.0))
    torch.testing.assert_close(zero_noise.z, a.m)


def test_latent_cache_round_trip(tiny_teacher, tiny_ljspeech, tmp_path):
    batch = _batch(tiny_teacher, tiny_ljspeech, audio=False)
    cache = LatentCache(tmp_path, {"teacher": "tiny", "source": "prior"},
                        tiny_teacher.audio.hop_length)
    first = teacher_latents(tiny_teacher, batch, "prior", 1, cache=cache)
    assert len(list(cache.dir.glob("*.safetensors"))) == 2
    again = teacher_latents(tiny_teacher, batch, "prior", 999, cache=cache)  # served from disk
    for name in ("z", "y_lengths", "mel", "w_ceil", "wav"):
        got, want = getattr(again, name), getattr(first, name)
        torch.testing.assert_close(got, want[..., : got.shape[-1]])
    with pytest.raises(LatentError, match="another setting.*source"):
        LatentCache(tmp_path, {"teacher": "tiny", "source": "posterior"}, 16)
    other = LatentCache(tmp_path / "other", {"teacher": "tiny", "source": "posterior"}, 16)
    assert other.load(batch.utt_ids, batch.x.shape[1]) is None


def test_latent_settings_are_shared_and_a_mismatch_is_an_error(tiny_teacher, tmp_path):
    shipped = LatentSettings()
    cache = open_latent_cache(tmp_path, tiny_teacher, "prior", shipped)
    assert LatentCache.stored_settings(tmp_path) == shipped
    # the same settings reopen the same cache; any other setting is refused, naming the field
    assert open_latent_cache(tmp_path, tiny_teacher, "prior", shipped).dir == cache.dir
    with pytest.raises(LatentError, match="another setting"):
        open_latent_cache(tmp_path, tiny_teacher, "prior", shipped._replace(noise_scale=0.5))
    # a stage without its own settings inherits; two sources that disagree raise
    assert resolve_latent_settings(None, {"cache": shipped, "encoder run": None}) == shipped
    assert resolve_latent_settings(None, {}) == LatentSettings()
    with pytest.raises(LatentError, match="noise_scale_w: 0.8 != 0.0"):
        resolve_latent_settings(shipped, {"encoder run": shipped._replace(noise_scale_w=0.0)})
    with pytest.raises(LatentError, match="unknown key"):
        LatentSettings.from_dict({"noise": 0.1})


def test_fill_latent_cache_computes_each_missing_item_once(tiny_teacher, tiny_ljspeech, tmp_path):
    utts = read_dataset(tiny_ljspeech)[:5]
    ds = TextOnlyDataset(utts, tiny_teacher.frontend)
    cache = open_latent_cache(tmp_path, tiny_teacher, "prior", LatentSettings())
    assert fill_latent_cache(tiny_teacher, ds, "prior", LatentSettings(), cache, 0,
                             batch_size=2, progress=False) == 5
    assert len(list(cache.dir.glob("*.safetensors"))) == 5
    # complete: nothing recomputed; and what training then loads is what was filled
    assert fill_latent_cache(tiny_teacher, ds, "prior", LatentSettings(), cache, 1,
                             progress=False) == 0
    batch = collate([ds[0], ds[3]])
    hit = cache.load(batch.utt_ids, batch.x.shape[1])
    assert hit is not None and torch.equal(hit.w_ceil.sum(1), hit.y_lengths)


def test_text_only_latents_match_the_full_synthesis_and_are_synthesised_when_audio_is_needed(
        tiny_teacher, tiny_ljspeech, tmp_path):
    batch = _batch(tiny_teacher, tiny_ljspeech, audio=False)
    full = teacher_latents(tiny_teacher, batch, "prior", 7)
    text = teacher_latents(tiny_teacher, batch, "prior", 7, audio=False)
    # the same draws without the teacher's decoder: the same z and durations, no audio
    assert text.mel is None and text.wav is None
    torch.testing.assert_close(text.z, full.z)
    assert torch.equal(text.w_ceil, full.w_ceil) and torch.equal(text.y_lengths, full.y_lengths)
    utts = read_dataset(tiny_ljspeech)[:4]
    ds = TextOnlyDataset(utts, tiny_teacher.frontend)
    cache = open_latent_cache(tmp_path, tiny_teacher, "prior", LatentSettings())
    assert fill_latent_cache(tiny_teacher, TextOnlyDataset(utts[:2], tiny_teacher.frontend),
                             "prior", LatentSettings(), cache, 0, progress=False,
                             audio=False) == 2
    assert not cache.has(utts[0].utt_id, audio=True) and cache.has(utts[0].utt_id)
    # a batch that mixes text-only and full items loads without the fields some lack
    assert fill_latent_cache(tiny_teacher, TextOnlyDataset(utts[2:], tiny_teacher.frontend),
                             "prior", LatentSettings(), cache, 0, progress=False) == 2
    mixed = collate([ds[1], ds[2]])
    hit = cache.load(mixed.utt_ids, mixed.x.shape[1])
    assert hit.mel is None and hit.wav is None and torch.equal(hit.w_ceil.sum(1), hit.y_lengths)
    # a stage that needs the audio gets the text-only items synthesised again
    lat = teacher_latents(tiny_teacher, mixed, "prior", 0, cache=cache)
    assert lat.wav is not None and lat.mel is not None
    assert cache.has(utts[1].utt_id, audio=True)
    assert fill_latent_cache(tiny_teacher, ds, "prior", LatentSettings(), cache, 0,
                             progress=False) == 1  # only utts[0] was still text-only


def test_latent_cache_names_the_teacher_by_its_file_not_its_path(tiny_teacher_file, tmp_path):
    import shutil

    settings = LatentSettings()
    teacher = load_teacher(tiny_teacher_file)
    first = open_latent_cache(tmp_path / "cache", teacher, "prior", settings)
    # the same file loaded again, or installed elsewhere: the same teacher, the same cache
    moved = tmp_path / "elsewhere" / "teacher.pt"
    moved.parent.mkdir()
    shutil.copy(tiny_teacher_file, moved)
    again = load_teacher(moved)
    assert teacher_fingerprint(again) == teacher_fingerprint(teacher)
    assert open_latent_cache(tmp_path / "cache", again, "prior", settings).identity == first.identity
    # other weights at the same path are another teacher, and the cache refuses them
    ckpt = torch.load(moved, weights_only=False)
    for v in ckpt["models"]["generator"].values():
        if v.is_floating_point():
            v.add_(0.01)
    torch.save(ckpt, moved)
    retrained = load_teacher(moved)
    assert teacher_fingerprint(retrained) != teacher_fingerprint(teacher)
    with pytest.raises(LatentError, match="teacher"):
        open_latent_cache(tmp_path / "cache", retrained, "prior", settings)


def test_latent_mse_loss_weights_every_channel_alike():
    z = torch.zeros(1, 2, 4)
    m_s = torch.tensor([[[0.1] * 4, [1.0] * 4]])
    sharp = torch.tensor([[[-3.0] * 4, [0.0] * 4]])  # channel 0 confident, channel 1 not
    y_mask = torch.ones(1, 1, 4)
    m = m_s.clone().requires_grad_(True)
    latent_mse_loss(z, m, sharp, y_mask).backward()
    # the mean's gradient is the plain error (0.1 and 1.0, over 4 frames), whatever logs_s says
    torch.testing.assert_close(m.grad[0, :, 0] * 4, torch.tensor([0.1, 1.0]))
    m2 = m_s.clone().requires_grad_(True)
    gaussian_nll_loss(z, m2, sharp, y_mask).backward()
    assert m2.grad[0, 0, 0] > m2.grad[0, 1, 0]  # the NLL favours the confident channel
    logs = sharp.clone().requires_grad_(True)
    latent_mse_loss(z, m_s, logs, y_mask).backward()
    assert logs.grad.abs().sum() > 0  # the spread is still learned


def test_latent_cache_records_the_teachers_phonemizer(tiny_teacher, tmp_path):
    espeak_teacher = dataclasses.replace(tiny_teacher, frontend=EspeakFrontend("en-us"))
    settings = LatentSettings()
    cache = open_latent_cache(tmp_path / "new", espeak_teacher, "prior", settings)
    assert cache.identity["phonemizer"] == espeak_teacher.frontend.phonemizer
    assert "phonemizer" not in open_latent_cache(tmp_path / "old", tiny_teacher, "prior",
                                                 settings).identity  # english_chars: none
    # latents cached before the field existed (or by another phonemizer) are of other ids
    with pytest.raises(LatentError, match="phonemizer"):
        open_latent_cache(tmp_path / "old", espeak_teacher, "prior", settings)


def test_cli_posterior_trains_checkpoints_and_logs_eval(tiny_teacher_file, tiny_ljspeech, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "--device", "cpu", "distil-encoder", "--teacher", str(tiny_teacher_file),
        "--data", str(tiny_ljspeech), "--config", "tiny/encoder", "--out", str(run),
        "--latents", "posterior", "--max-steps", "2",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(run)
    assert ckpt["stage"] == "distil_encoder" and ckpt["step"] == 2
    assert set(ckpt["models"]) == {"encoder"}
    meta = ckpt["meta"]
    assert meta["latent_source"] == "posterior"
    assert meta["teacher"]["kind"] == "nixdistill" and meta["teacher"]["n_params"] > 0
    assert meta["text_frontend"]["symbols"] and meta["audio"]["hop_length"] == 16
    assert ckpt["config"]["model"]["n_vocab"] == len(meta["text_frontend"]["symbols"])
    assert json.loads((run / "config.json").read_text())["model"]["inter_channels"] == 16
    mel_l1 = _scalars(run, "val/mel_l1")
    assert mel_l1 and all(math.isfinite(v) and v >= 0 for v in mel_l1)
    for tag in ("train/kl", "train/forward_sum", "train/bin", "train/duration"):
        assert all(math.isfinite(v) for v in _scalars(run, tag)) and _scalars(run, tag)
    # export can rebuild the inference encoder from the run folder alone
    from nixdistill.students.encoder import NixEncoder, NixEncoderConfig

    enc = NixEncoder(NixEncoderConfig(**ckpt["config"]["model"]), with_aligner=False)
    enc.load_state_dict({k: v for k, v in ckpt["models"]["encoder"].items()
                         if not k.startswith("aligner.")})


def test_cli_prior_with_cache_and_resume(tiny_teacher_file, tiny_ljspeech, tmp_path):
    run = tmp_path / "run"
    args = ["--device", "cpu", "distil-encoder", "--teacher", str(tiny_teacher_file),
            "--data", str(tiny_ljspeech), "--config", "tiny/encoder", "--out", str(run),
            "--latents", "prior", "--cache-latents"]
    result = CliRunner().invoke(cli, [*args, "--max-steps", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run)["meta"]["latent_source"] == "prior"
    assert list((run / "latent_cache").rglob("*.safetensors"))
    result = CliRunner().invoke(cli, [*args, "--max-steps", "3", "--resume"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run)["step"] == 3
    assert _scalars(run, "val/mel_l1")
    # each finished run folded the measured speaking rate into its duration predictor, so the
    # final encoder's frames on the training set sum to the teacher's
    ckpt = load_checkpoint(run)
    assert ckpt["meta"]["duration_rate"] and all(f > 0 for f in ckpt["meta"]["duration_rate"])
    from nixdistill.deploy.build import encoder_from_run
    from nixdistill.distill.calibration import duration_rate

    teacher = load_teacher(tiny_teacher_file)
    encoder, _, _ = encoder_from_run(run)
    cache = open_latent_cache(run / "latent_cache", teacher, "prior", LatentSettings())
    items = TextOnlyDataset(read_dataset(tiny_ljspeech), teacher.frontend)
    ratio, n = duration_rate(encoder, items, cache)
    assert n >= 2 and ratio == pytest.approx(1.0, rel=1e-3)


def test_prior_latents_skip_the_idle_aligner_when_asked(tiny_teacher_file, tiny_ljspeech,
                                                        tmp_path):
    config = _aligner_auto_config(tmp_path)
    run = tmp_path / "run"
    args = ["--device", "cpu", "distil-encoder", "--teacher", str(tiny_teacher_file),
            "--data", str(tiny_ljspeech), "--config", str(config), "--out", str(run),
            "--latents", "prior", "--cache-latents", "--max-steps", "3"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _scalars(run, "train/kl") and _scalars(run, "val/mel_l1")
    # no alignment terms, no alignment metrics: the aligner never ran
    assert not _scalars(run, "train/forward_sum") and not _scalars(run, "train/bin")
    assert not _scalars(run, "val/align_within_1")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    images = acc.Tags()["images"]
    assert "align/teacher" in images and "align/hard" not in images
    from nixdistill.distill.distil_encoder import EncoderOptions

    with pytest.raises(ConfigError, match="aligner must be one of"):
        EncoderOptions(aligner="never")


def test_extra_text_trains_the_encoder_on_text_only_latents(tiny_teacher_file, tiny_ljspeech,
                                                             tmp_path):
    config = _aligner_auto_config(tmp_path)
    extra = tmp_path / "more.txt"
    extra.write_text("# more sentences\nThe lamp by the window flickered twice.\n"
                     "A quiet river ran under the old stone bridge.\n", encoding="utf-8")
    run = tmp_path / "run"

    def args(config_ref, out, steps):
        return ["--device", "cpu", "distil-encoder", "--teacher", str(tiny_teacher_file),
                "--data", str(tiny_ljspeech), "--config", str(config_ref), "--out", str(out),
                "--latents", "prior", "--cache-latents", "--max-steps", str(steps),
                "--extra-text", str(extra)]

    result = CliRunner().invoke(cli, args(config, run, 3), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "teacher latents (text only): 2 item(s)" in result.output
    teacher = load_teacher(tiny_teacher_file)
    cache = open_latent_cache(run / "latent_cache", teacher, "prior", LatentSettings())
    from safetensors import safe_open

    extra_shards = list(cache.dir.glob("extra-more_*.safetensors"))
    assert len(extra_shards) == 2
    for p in extra_shards:  # the teacher's decoder was skipped for them
        with safe_open(str(p), framework="pt") as f:
            assert set(f.keys()) == {"z", "w_ceil"}
    data_shards = [p for p in cache.dir.glob("*.safetensors") if not p.name.startswith("extra")]
    with safe_open(str(data_shards[0]), framework="pt") as f:
        assert "wav" in f.keys()  # --data keeps its audio for the decoder stage
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 3 and _scalars(run, "train/kl")
    assert ckpt["meta"]["extra_text"] == [str(extra)]  # what the encoder learned from
    # the aligner needs the teacher's audio, which extra text has not (tiny/encoder trains it)
    result = CliRunner().invoke(cli, args("tiny/encoder", tmp_path / "bad", 1))
    assert isinstance(result.exception, ConfigError) and "aligner" in str(result.exception)


def test_duration_predictor_rescale_multiplies_every_duration():
    from nixdistill.students.duration import DurationPredictor

    dp = DurationPredictor(8, 8, 8, 3, [1], 0.0).eval()
    h, x_mask = torch.randn(2, 8, 5), torch.tensor([[[1.0] * 5], [[1.0] * 3 + [0.0] * 2]])
    before = torch.exp(dp(h, x_mask)) * x_mask
    dp.rescale(1.5)
    torch.testing.assert_close(torch.exp(dp(h, x_mask)) * x_mask, before * 1.5)
    with pytest.raises(ValueError):
        dp.rescale(0.0)


def test_posterior_on_a_prior_only_teacher_is_a_clear_error(tiny_teacher_file, tiny_ljspeech,
                                                            tmp_path, monkeypatch, capsys):
    from nixdistill.teacher import loader as teacher_mod

    real = teacher_mod.load_teacher

    def prior_only(*a, **k):
        t = real(*a, **k)
        t.has_posterior = False
        return t

    monkeypatch.setattr(teacher_mod, "load_teacher", prior_only)
    from nixdistill.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--device", "cpu", "distil-encoder", "--teacher", str(tiny_teacher_file),
              "--data", str(tiny_ljspeech), "--config", "tiny/encoder",
              "--out", str(tmp_path / "r"), "--latents", "posterior", "--max-steps", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "enc_q" in err and "--latents prior" in err and "Traceback" not in err


def test_stage_keeps_teacher_frozen_and_trains_stochastic_encoder(tiny_teacher, tiny_ljspeech,
                                                                  tmp_path):
    from nixdistill.distill.distil_encoder import DistilEncoderStage
    from nixdistill.distill.setup import encoder_model_config
    from nixdistill.distill.loop import Trainer

    cfg = load_config("tiny/encoder", {"train": {"max_steps": 3, "eval_interval": 100}})
    enc_cfg = encoder_model_config({**cfg.model, "duration_predictor": "stochastic"},
                                   tiny_teacher, "test")
    utts = read_dataset(tiny_ljspeech)
    train_set = TextOnlyDataset(utts[:4], tiny_teacher.frontend)
    eval_set = TextOnlyDataset(utts[4:], tiny_teacher.frontend)
    stage = DistilEncoderStage(tiny_teacher, cfg, enc_cfg, train_set, eval_set, "prior")
    teacher_before = {k: v.clone() for k, v in tiny_teacher.model.state_dict().items()}
    enc_before = {k: v.clone() for k, v in stage.encoder.state_dict().items()}
    result = Trainer(stage, tmp_path / "run", cfg.train, "cpu", False, cfg.to_dict(), {}).fit()
    assert result.step == 3
    for k, v in tiny_teacher.model.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not all(p.requires_grad for p in tiny_teacher.model.parameters())
    changed = [k for k, v in stage.encoder.state_dict().items() if not torch.equal(v, enc_before[k])]
    assert any(k.startswith("dp.flows") for k in changed), "the stochastic predictor trains"
    assert any(k.startswith("aligner.") for k in changed)
    assert _scalars(tmp_path / "run", "train/duration")
