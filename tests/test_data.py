"""Data layer: readers, datasets, batching, bucket sampler, ``nixdistill prepare``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from nixdistill.audio import spectrogram
from nixdistill.cli import cli
from nixdistill.config import AudioConfig, TextConfig, config_from_raw
from nixdistill.data import (
    AudioTextDataset, Batch, BucketSampler, DataError, TextOnlyDataset, Utterance, collate,
    detect_kind, make_loader, prepare_dataset, read_dataset,
)
from nixdistill.text import build_frontend

KSS_RATE = 44100
TINY_SAMPLE_RATE = 8000  # the rate of the tiny_ljspeech fixture


def _meta(root: Path) -> tuple[list[str], list[float]]:
    """Texts and durations (s) of an LJSpeech folder, read independently of nixdistill."""
    rows = [line.split("|") for line in (root / "metadata.csv").read_text("utf-8").splitlines()]
    durations = [sf.info(str(root / "wavs" / f"{r[0]}.wav")).duration for r in rows]
    return [r[1] for r in rows], durations


@pytest.fixture
def tiny_meta(tiny_ljspeech):
    return _meta(tiny_ljspeech)


@pytest.fixture
def frontend():
    return build_frontend(TextConfig(frontend="english_chars"))


def _noise(duration_s: float, sample_rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(round(duration_s * sample_rate))).astype(np.float32)


@pytest.fixture
def tiny_kss(tmp_path) -> Path:
    """A 2-item KSS folder with 44.1 kHz noise clips (no sine: resampling must be real)."""
    root = tmp_path / "kss"
    (root / "1").mkdir(parents=True)
    lines = []
    for i, (text, expanded, sec) in enumerate([("1월이다.", "일월이다.", 0.6),
                                               ("안녕하세요?", "안녕하세요?", 0.9)]):
        rel = f"1/1_{i:04d}.wav"
        sf.write(root / rel, _noise(sec, KSS_RATE, i), KSS_RATE, subtype="PCM_16")
        lines.append(f"{rel}|{text}|{expanded}|decomposed|{sec}|english {i}")
    (root / "transcript.v.1.4.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# -- readers -----------------------------------------------------------------------------------
def test_read_ljspeech(tiny_ljspeech, tiny_meta):
    assert detect_kind(tiny_ljspeech) == "ljspeech"
    utts = read_dataset(tiny_ljspeech)
    assert [u.text for u in utts] == tiny_meta[0]
    assert all(Path(u.wav_path).is_file() and Path(u.wav_path).is_absolute() for u in utts)
    assert utts[0].utt_id == Path(utts[0].wav_path).stem and utts[0].speaker == 0


def test_read_kss_uses_expanded_column(tiny_kss):
    assert detect_kind(tiny_kss) == "kss"
    utts = read_dataset(tiny_kss)
    assert [u.text for u in utts] == ["일월이다.", "안녕하세요?"]
    assert all(Path(u.wav_path).is_file() for u in utts)


def test_kss_audio_is_resampled_to_training_rate(tiny_kss):
    audio = AudioConfig(sample_rate=TINY_SAMPLE_RATE, n_fft=64, hop_length=16, win_length=64)
    fe = build_frontend(TextConfig(frontend="korean_jamo"))
    ds = AudioTextDataset(read_dataset(tiny_kss), fe, audio)
    for i, utt in enumerate(ds.utterances):
        native = sf.info(utt.wav_path).frames
        y = ds[i].y
        assert abs(len(y) / native - TINY_SAMPLE_RATE / KSS_RATE) < 1e-3
        # bucket lengths are frames at the training rate, not at 44.1 kHz
        assert ds.lengths[i] == len(y) // audio.hop_length
    assert ds.durations_s[1] == pytest.approx(0.9, abs=1e-3)


def test_read_filelist_relative_paths_and_speakers(tmp_path, tiny_ljspeech):
    wavs = sorted((tiny_ljspeech / "wavs").glob("*.wav"))
    sub = tmp_path / "lists"
    (sub / "audio").mkdir(parents=True)
    for w in wavs[:2]:
        shutil.copy(w, sub / "audio" / w.name)
    (sub / "two.txt").write_text(f"audio/{wavs[0].name}|hello there\n"
                                 f"{wavs[1]}|hi|there\n", encoding="utf-8")
    (sub / "ms.txt").write_text(f"audio/{wavs[0].name}|3|speaker three\n", encoding="utf-8")
    two = read_dataset(sub / "two.txt")
    assert detect_kind(sub / "two.txt") == "filelist"
    assert two[0].wav_path == str((sub / "audio" / wavs[0].name).resolve())
    assert two[1].text == "hi|there" and two[1].speaker == 0
    ms = read_dataset(sub / "ms.txt")
    assert ms[0].speaker == 3 and ms[0].text == "speaker three"


def test_read_text_plain_and_ids(tmp_path):
    plain = tmp_path / "sentences.txt"
    plain.write_text("First sentence.\n\nSecond one, with a | bar.\n", encoding="utf-8")
    ided = tmp_path / "ids.txt"
    ided.write_text("LJ001-0001|Printing, in the only sense.\nLJ001-0002|In being.\n",
                    encoding="utf-8")
    p = read_dataset(plain)
    assert detect_kind(plain) == "text"
    assert [u.text for u in p] == ["First sentence.", "Second one, with a | bar."]
    assert len({u.utt_id for u in p}) == 2 and all(u.wav_path is None for u in p)
    i = read_dataset(ided)
    assert [u.utt_id for u in i] == ["LJ001-0001", "LJ001-0002"]
    assert i[1].text == "In being."


def test_read_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="metadata.csv"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match="kind"):
        read_dataset(tmp_path, kind="vctk")


# -- datasets and collate ----------------------------------------------------------------------
def test_collate_shapes_and_spec(tiny_ljspeech, frontend, tiny_audio_config, tiny_meta):
    ds = AudioTextDataset(read_dataset(tiny_ljspeech), frontend, tiny_audio_config)
    items = [ds[0], ds[5], ds[2]]
    batch = collate(items)
    hop = tiny_audio_config.hop_length
    assert batch.x.dtype == torch.long and batch.x.shape == (3, int(batch.x_lengths.max()))
    assert batch.y.shape == (3, 1, int(batch.y_lengths.max()))
    assert batch.spec.shape == (3, tiny_audio_config.n_freqs, int(batch.y_lengths.max()) // hop)
    assert torch.equal(batch.spec_lengths, batch.y_lengths // hop)
    durations = tiny_meta[1]
    assert batch.y_lengths.tolist() == [round(durations[i] * TINY_SAMPLE_RATE) for i in (0, 5, 2)]
    # padding: tokens after x_lengths are 0, samples after y_lengths are 0
    assert batch.x[0, batch.x_lengths[0]:].abs().sum() == 0
    assert batch.y[0, 0, batch.y_lengths[0]:].abs().sum() == 0
    # the batched STFT equals the item's own STFT away from the padded end
    own = spectrogram(items[0].y.unsqueeze(0), tiny_audio_config.n_fft, hop,
                      tiny_audio_config.win_length)[0]
    interior = own.shape[-1] - tiny_audio_config.n_fft // hop
    assert torch.allclose(batch.spec[0, :, :interior], own[:, :interior], atol=1e-5)
    assert batch.utt_ids == [it.utt_id for it in items] and batch.sid.tolist() == [0, 0, 0]
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.spec.device.type == "cpu" and len(moved) == 3


def test_text_ids_are_computed_once(tiny_ljspeech, frontend, tiny_audio_config):
    calls = []
    original = frontend.encode

    def counting_encode(text, utt_id=None):
        calls.append(utt_id)
        return original(text, utt_id)

    frontend.encode = counting_encode
    ds = AudioTextDataset(read_dataset(tiny_ljspeech), frontend, tiny_audio_config)
    loader = make_loader(ds, batch_size=2, seed=0)
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        n_items = sum(len(b) for b in loader)
        assert n_items == len(ds)
    assert sorted(calls) == sorted(u.utt_id for u in ds.utterances)


def test_text_only_dataset_and_loader(tmp_path, tiny_meta):
    texts = tiny_meta[0]
    path = tmp_path / "s.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    fe = build_frontend(TextConfig(frontend="english_chars", add_blank=False))
    ds = TextOnlyDataset(read_dataset(path), fe)
    batches = list(make_loader(ds, batch_size=4, seed=1))
    assert sum(len(b) for b in batches) == len(texts)
    for b in batches:
        assert b.y is None and b.spec is None and b.y_lengths is None
        for row, n, text in zip(b.x, b.x_lengths, b.texts):
            assert fe.decode(row[:n].tolist()) == fe.normalize(text)


def test_collate_rejects_mixed_items(tiny_ljspeech, frontend, tiny_audio_config):
    audio_item = AudioTextDataset(read_dataset(tiny_ljspeech), frontend, tiny_audio_config)[0]
    text_item = TextOnlyDataset([Utterance("t", "text")], frontend)[0]
    with pytest.raises(ValueError, match="mix"):
        collate([audio_item, text_item])


# -- sampler -----------------------------------------------------------------------------------
LENGTHS = [int(x) for x in np.random.default_rng(0).integers(10, 500, size=53)]


def _flat(batches):
    return [i for b in batches for i in b]


def test_bucket_sampler_deterministic_complete_and_bucketed():
    s = BucketSampler(LENGTHS, batch_size=4, n_buckets=4, seed=7)
    e0 = list(s)
    assert list(BucketSampler(LENGTHS, batch_size=4, n_buckets=4, seed=7)) == e0
    assert sorted(_flat(e0)) == list(range(len(LENGTHS)))  # nothing dropped
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0 and sorted(_flat(e1)) == list(range(len(LENGTHS)))
    assert len(s) == len(e1)
    # within a batch, lengths come from one bucket: spread far below the global spread
    spread = np.mean([max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in e0])
    assert spread < (max(LENGTHS) - min(LENGTHS)) / 2


def test_bucket_sampler_resume_skips_consumed_batches():
    s = BucketSampler(LENGTHS, batch_size=4, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.start_batch = 5
    assert len(s) == len(full) - 5
    assert list(s) == full[5:]
    assert list(s) == full  # the skip applies to the resumed epoch only


def test_bucket_sampler_ddp_disjoint_equal():
    world = 3
    shards = [list(BucketSampler(LENGTHS, batch_size=4, seed=5, num_replicas=world, rank=r))
              for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) > 0
    flat = [_flat(s) for s in shards]
    for a in range(world):
        for b in range(a + 1, world):
            assert not set(flat[a]) & set(flat[b])
    with pytest.raises(ValueError, match="rank"):
        BucketSampler(LENGTHS, batch_size=4, num_replicas=2, rank=2)


def test_bucket_lengths_use_training_rate(tiny_ljspeech, frontend, tiny_meta):
    utts = read_dataset(tiny_ljspeech)
    hop = 16
    low = AudioTextDataset(utts, frontend, AudioConfig(8000, 64, hop, 64, 16))
    high = AudioTextDataset(utts, frontend, AudioConfig(16000, 64, hop, 64, 16))
    for d, n_low, n_high in zip(tiny_meta[1], low.lengths, high.lengths):
        assert n_low == round(d * 8000) // hop
        assert n_high == round(d * 16000) // hop
    assert len(high[3].y) // hop == high.lengths[3]


# -- prepare -----------------------------------------------------------------------------------
@pytest.fixture
def bad_ljspeech(tmp_path, tiny_ljspeech) -> Path:
    """tiny_ljspeech plus: a corrupt wav, a float wav with NaN and inf samples, an empty text, an
    unknown symbol, a too-long text."""
    root = tmp_path / "bad"
    shutil.copytree(tiny_ljspeech, root)
    (root / "wavs" / "BAD-corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    for name in ("BAD-empty", "BAD-symbol", "BAD-long"):
        sf.write(root / "wavs" / f"{name}.wav", _noise(0.6, TINY_SAMPLE_RATE, 9), TINY_SAMPLE_RATE)
    nan = _noise(0.6, TINY_SAMPLE_RATE, 8)
    nan[100], nan[200] = np.nan, np.inf
    sf.write(root / "wavs" / "BAD-nan.wav", nan, TINY_SAMPLE_RATE, subtype="FLOAT")
    long_text = "many words " * 40
    with open(root / "metadata.csv", "a", encoding="utf-8") as f:
        f.write("BAD-corrupt|A fine sentence.|A fine sentence.\n")
        f.write("BAD-nan|A fine sentence.|A fine sentence.\n")
        f.write("BAD-empty| | \n")
        f.write("BAD-symbol|Snow ☃ man.|Snow ☃ man.\n")
        f.write(f"BAD-long|{long_text}|{long_text}\n")
    return root


def test_prepare_cli_skips_bad_items(bad_ljspeech, tmp_path, tiny_meta):
    texts, durations = tiny_meta
    out = tmp_path / "prepared"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"audio": {"sample_rate": 16000, "n_fft": 64, "hop_length": 16,
                                            "win_length": 64, "n_mels": 16},
                                  "train": {"segment_size": 1024}}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["prepare", str(bad_ljspeech), "--out", str(out),
                                      "--config", str(config), "--sample-rate",
                                      str(TINY_SAMPLE_RATE), "--val-size", "2"])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    reasons = {s["utt_id"]: s["reason"] for s in stats["skipped"]}
    assert reasons == {"BAD-corrupt": "unreadable audio", "BAD-nan": "non-finite audio",
                       "BAD-empty": "empty text",
                       "BAD-symbol": "unknown symbol", "BAD-long": "more tokens than frames"}
    assert "U+2603" in next(s["detail"] for s in stats["skipped"] if s["utt_id"] == "BAD-symbol")
    assert "2 NaN/inf" in next(s["detail"] for s in stats["skipped"] if s["utt_id"] == "BAD-nan")
    train = (out / "train.txt").read_text(encoding="utf-8").splitlines()
    val = (out / "val.txt").read_text(encoding="utf-8").splitlines()
    assert len(val) == 2 and len(train) + len(val) == len(texts) == stats["n_items"]
    assert stats["sample_rates"] == {str(TINY_SAMPLE_RATE): len(texts) + 4}
    assert stats["hours"] == pytest.approx(sum(durations) / 3600, rel=1e-3)
    assert sum(stats["histogram_s"]["counts"]) == len(texts)
    # the written filelists read back as filelists with absolute paths and speaker 0
    back = read_dataset(out / "train.txt")
    assert len(back) == len(train)
    assert all(Path(u.wav_path).is_absolute() and Path(u.wav_path).is_file() for u in back)
    assert {u.text for u in back} | {u.text for u in read_dataset(out / "val.txt")} == set(texts)
    assert "more tokens than frames" in result.output or "skipped" in result.output


def test_prepare_min_max_seconds_and_no_valid_item(tiny_ljspeech, tmp_path, tiny_meta):
    cfg = config_from_raw({"audio": {"sample_rate": TINY_SAMPLE_RATE, "n_fft": 64,
                                     "hop_length": 16, "win_length": 64},
                           "train": {"segment_size": 1024},
                           "data": {"min_seconds": 0.7, "max_seconds": 1.0}})
    report = prepare_dataset(tiny_ljspeech, tmp_path / "o", cfg, val_size=0)
    kept = [d for d in tiny_meta[1] if 0.7 <= d <= 1.0]
    assert 0 < report.n_items == len(kept) and report.n_val == 0
    assert report.skipped_by_reason == {"too short": sum(d < 0.7 for d in tiny_meta[1]),
                                        "too long": sum(d > 1.0 for d in tiny_meta[1])}
    cfg_none = config_from_raw({"data": {"min_seconds": 5.0}})
    from nixdistill.data import PrepareError

    with pytest.raises(PrepareError, match="no valid item"):
        prepare_dataset(tiny_ljspeech, tmp_path / "o2", cfg_none)


def test_prepare_cli_error_is_user_error(tmp_path):
    result = CliRunner().invoke(cli, ["prepare", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)


# -- Asterisk filelist script ------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
ASTERISK_SCRIPT = REPO / "scripts" / "asterisk_filelist.py"
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def _run_asterisk_script(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ASTERISK_SCRIPT), *args], capture_output=True,
                          text=True, check=False)


def test_asterisk_filelist_script(tmp_path):
    import gzip

    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    for name in ("hello", "digits/1", "beep", "press"):
        sf.write(sounds / f"{name}.wav", _noise(0.5, TINY_SAMPLE_RATE, 1), TINY_SAMPLE_RATE)
    transcripts = tmp_path / "t.txt.gz"
    with gzip.open(transcripts, "wt", encoding="utf-8") as f:
        f.write("; header comment\n\nhello: Hello there.\ndigits/1: one\n"
                "beep: [this is a simple beep tone]\npress: Press * or # (tone plays)\n"
                "missing: No audio for this one.\n")
    out = tmp_path / "list.txt"
    proc = _run_asterisk_script("--out", str(out), "--sounds", str(sounds),
                                "--transcripts", str(transcripts))
    assert proc.returncode == 0, proc.stderr
    utts = read_dataset(out)
    assert [u.text for u in utts] == ["Hello there.", "one", "Press star or pound"]
    assert utts[1].wav_path == str((sounds / "digits" / "1.wav").resolve())
    assert "annotation only" in proc.stderr and "no audio file" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (ASTERISK_SOUNDS.is_dir() and ASTERISK_TRANSCRIPTS.is_file()),
                    reason="asterisk-core-sounds-en(-wav) not installed")
def test_asterisk_real_prepare(tmp_path):
    filelist = tmp_path / "asterisk.txt"
    proc = _run_asterisk_script("--out", str(filelist))
    assert proc.returncode == 0, proc.stderr
    result = CliRunner().invoke(cli, ["prepare", str(filelist), "--out", str(tmp_path / "p"),
                                      "--config", "tiny/teacher"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "p" / "stats.json").read_text(encoding="utf-8"))
    assert stats["sample_rates"] == {"8000": stats["n_total"]}
    assert stats["n_items"] > 0.9 * stats["n_total"]
    assert set(stats["skipped_by_reason"]) <= {"too long", "too short"}
