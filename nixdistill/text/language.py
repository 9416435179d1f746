"""Does a text corpus match the voice it will be spoken by?

A teacher speaks the text it is given in its own language, so an English corpus given to a
German voice would train a German student on English words without any error. Before the
teacher runs, :func:`check_text_language` refuses a corpus that evidently does not match:

* **script**: more than half of the sentences contain no letter of the voice's script
  (Latin, Cyrillic, Greek, Arabic, Hebrew, Han and kana, Hangul, Devanagari, Thai, ...);
* **English text for another Latin-script voice**: at least half of the sentences contain an
  English function word ("the", "and", "which", ...).

A language this module does not know is not checked. Letters are classified by their Unicode
names (``unicodedata``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from nixdistill.text.base import TextError

__all__ = ["LanguageMismatchError", "check_text_language", "voice_script"]

#: Unicode-name prefixes of each script's letters.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "Latin": ("LATIN",), "Cyrillic": ("CYRILLIC",), "Greek": ("GREEK",),
    "Arabic": ("ARABIC",), "Hebrew": ("HEBREW",), "Han": ("CJK UNIFIED", "CJK COMPATIBILITY"),
    "Japanese": ("CJK UNIFIED", "HIRAGANA", "KATAKANA"), "Hangul": ("HANGUL",),
    "Devanagari": ("DEVANAGARI",), "Thai": ("THAI",), "Georgian": ("GEORGIAN",),
    "Armenian": ("ARMENIAN",), "Bengali": ("BENGALI",), "Tamil": ("TAMIL",),
    "Telugu": ("TELUGU",), "Kannada": ("KANNADA",), "Malayalam": ("MALAYALAM",),
    "Gujarati": ("GUJARATI",), "Gurmukhi": ("GURMUKHI",),
}
#: Language code (the part before ``-`` or ``_``) -> script.
LANGUAGE_SCRIPTS: dict[str, str] = {
    **dict.fromkeys("en de fr es it pt nl pl cs sk sl hu ro fi sv da no nb nn is et lv lt ca eu "
                    "gl cy ga tr vi id ms sw lb hr bs sq mt af eo la".split(), "Latin"),
    **dict.fromkeys("ru uk bg be kk mk ky mn tt".split(), "Cyrillic"),
    "el": "Greek", **dict.fromkeys("ar fa ur ps".split(), "Arabic"), "he": "Hebrew",
    **dict.fromkeys("zh cmn yue".split(), "Han"), "ja": "Japanese", "ko": "Hangul",
    **dict.fromkeys("hi mr ne".split(), "Devanagari"), "th": "Thai", "ka": "Georgian",
    "hy": "Armenian", "bn": "Bengali", "ta": "Tamil", "te": "Telugu", "kn": "Kannada",
    "ml": "Malayalam", "gu": "Gujarati", "pa": "Gurmukhi",
}
#: Frequent English words that are not words of the other Latin-script languages.
ENGLISH_MARKERS = frozenset("the and which that with this were have from they would there "
                            "been their what when".split())
_WORD = re.compile(r"[^\W\d_]+")


class LanguageMismatchError(TextError):
    """The text of a corpus evidently is not in the voice's language."""


def voice_script(language: str) -> str | None:
    """The script of a voice language (``"en-us"`` -> ``"Latin"``), or None when unknown."""
    return LANGUAGE_SCRIPTS.get(re.split(r"[-_]", language.lower())[0])


def _has_script_letter(text: str, prefixes: tuple[str, ...]) -> bool:
    return any(ch.isalpha() and unicodedata.name(ch, "").startswith(prefixes) for ch in text)


def check_text_language(sentences: Iterable[str], language: str, where: str = "the text") -> None:
    """Raise when ``sentences`` evidently are not in ``language`` (see the module docstring).

    Args:
        sentences: the corpus, one sentence per item.
        language: the voice's language: an espeak voice (``"de"``, ``"en-us"``) or ISO code.
        where: names the corpus in the message (e.g. its path).
    Raises:
        LanguageMismatchError: more than half of the sentences have no letter of the voice's
            script, or a non-English Latin-script voice gets a corpus that reads as English.
    """
    texts = [s for s in sentences if s and s.strip()]
    script = voice_script(language)
    if not texts or script is None:
        return
    advice = (f"give text in the voice's language ({language}) with --data; the shipped "
              "presets' corpus is English")
    prefixes = SCRIPTS[script]
    foreign = sum(not _has_script_letter(t, prefixes) for t in texts)
    if 2 * foreign > len(texts):
        raise LanguageMismatchError(
            f"{where}: {foreign} of {len(texts)} sentences have no {script} letter, but the "
            f"voice speaks {language}: {advice}")
    is_english = re.split(r"[-_]", language.lower())[0] == "en"
    if script == "Latin" and not is_english:
        english = sum(bool(ENGLISH_MARKERS & {w.lower() for w in _WORD.findall(t)})
                      for t in texts)
        if 2 * english >= len(texts):
            raise LanguageMismatchError(
                f"{where}: {english} of {len(texts)} sentences read as English, but the voice "
                f"speaks {language}: {advice}")
