"""LJSpeech-style English character frontend (keithito/tacotron ``english_cleaners``).

Cleaning: ASCII transliteration (``unicodedata`` NFKD, combining marks removed, typographic
quotes/dashes mapped), lower-casing, number expansion (cardinals, ordinals, decimals, years,
``$``/``£`` amounts, ``%``), abbreviation expansion (``Mr.`` -> ``mister``), whitespace collapse.
The number-to-words code is written here (no ``inflect``/``unidecode`` dependency) and follows
the outputs of the original cleaners (``andword=''``, years read in pairs, ``oh`` for zero).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable

from .base import PAD, TextFrontend

__all__ = ["EnglishCharsFrontend", "english_cleaners", "number_to_words", "ordinal_words",
           "expand_numbers", "ENGLISH_SYMBOLS"]

PUNCTUATION = ";:,.!?¡¿—…\"«»“” '-()"
"""VITS punctuation (``;:,.!?¡¿—…"«»“” ``) plus ``'``, ``-`` and parentheses, which real
English transcripts need (``don't``, ``call-forward``)."""
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ENGLISH_SYMBOLS: list[str] = [PAD, *PUNCTUATION, *LETTERS]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand")]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

_ABBREVIATIONS = [
    (re.compile(rf"\b{abbr}\.", re.IGNORECASE), full)
    for abbr, full in [
        ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
        ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"),
        ("rev", "reverend"), ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"),
        ("capt", "captain"), ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"),
        ("ft", "fort"), ("etc", "etcetera"), ("vs", "versus"),
    ]
]
# Characters NFKD does not reduce to ASCII.
_ASCII_MAP = {"‘": "'", "’": "'", "‚": "'", "–": "-", "‐": "-", "‑": "-", "„": '"', "ß": "ss",
              "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L",
              "đ": "d", "Đ": "D", "&": " and ", "\u00a0": " "}
_KEEP_NON_ASCII = set("¡¿—…«»“”")
_BRACKETS = str.maketrans("[]{}", "()()")

_COMMA_NUMBER = re.compile(r"([0-9][0-9,]+[0-9])")
_POUNDS = re.compile(r"£([0-9][0-9,]*(?:\.[0-9]+)?)")
_DOLLARS = re.compile(r"\$([0-9][0-9,]*(?:\.[0-9]+)?)")
_DECIMAL = re.compile(r"([0-9]+)\.([0-9]+)")
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s?%")
_ORDINAL = re.compile(r"([0-9]+)(st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(r"[0-9]+")
_WHITESPACE = re.compile(r"\s+")
_YEAR_MIN, _YEAR_MAX = 1000, 3000  # 4-digit numbers in this range are read as years


def _below_thousand(n: int) -> str:
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words.append(f"{_ONES[hundreds]} hundred")
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def number_to_words(n: int) -> str:
    """Cardinal in words without "and": ``123 -> "one hundred twenty-three"``.

    Raises:
        ValueError: for negative numbers (the cleaners never pass one).
    """
    if n < 0:
        raise ValueError(f"number_to_words expects n >= 0, got {n}")
    if n < 1000:
        return _below_thousand(n)
    words = []
    for value, name in _SCALES:
        if n >= value:
            count, n = divmod(n, value)
            words.append(f"{number_to_words(count)} {name}")
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal_words(n: int) -> str:
    """``21 -> "twenty-first"``, ``12 -> "twelfth"``, ``40 -> "fortieth"``."""
    words = number_to_words(n)
    head, sep, last = max(words.rpartition(" "), words.rpartition("-"), key=lambda t: len(t[0]))
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def _year_words(n: int) -> str:
    if n == 2000:
        return "two thousand"
    if 2000 < n < 2010:
        return f"two thousand {_ONES[n % 100]}"
    if n % 100 == 0:
        return f"{number_to_words(n // 100)} hundred"
    high, low = divmod(n, 100)
    low_words = f"oh {_ONES[low]}" if low < 10 else number_to_words(low)
    return f"{number_to_words(high)} {low_words}"


def _plural(count: int, unit: str) -> str:
    return f"{number_to_words(count)} {unit}{'' if count == 1 else 's'}"


def _money(match: re.Match, unit: str, sub_unit: str, sub_plural: str) -> str:
    amount = match.group(1).replace(",", "")
    whole_str, _, frac_str = amount.partition(".")
    whole = int(whole_str) if whole_str else 0
    frac = int((frac_str + "00")[:2]) if frac_str else 0
    parts = []
    if whole or not frac:
        parts.append(_plural(whole, unit))
    if frac:
        parts.append(f"{number_to_words(frac)} {sub_unit if frac == 1 else sub_plural}")
    return ", ".join(parts)


def _decimal(match: re.Match) -> str:
    digits = " ".join(_ONES[int(d)] for d in match.group(2))
    return f"{number_to_words(int(match.group(1)))} point {digits}"


def _cardinal_or_year(match: re.Match) -> str:
    digits = match.group(0)
    n = int(digits)
    if len(digits) == 4 and _YEAR_MIN < n < _YEAR_MAX:
        return _year_words(n)
    return number_to_words(n)


def expand_numbers(text: str) -> str:
    """Spell out every digit sequence (keithito ``normalize_numbers`` order).

    ``"$5.50" -> "five dollars, fifty cents"``, ``"£3" -> "three pounds"``,
    ``"3.14" -> "three point one four"``, ``"21st" -> "twenty-first"``,
    ``"1984" -> "nineteen eighty-four"``, ``"1,000" -> "one thousand"``, ``"5%" -> "five percent"``.
    """
    text = _COMMA_NUMBER.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _POUNDS.sub(lambda m: _money(m, "pound", "penny", "pence"), text)
    text = _DOLLARS.sub(lambda m: _money(m, "dollar", "cent", "cents"), text)
    text = _PERCENT.sub(lambda m: f"{m.group(1)} percent", text)
    text = _DECIMAL.sub(_decimal, text)
    text = _ORDINAL.sub(lambda m: ordinal_words(int(m.group(1))), text)
    return _NUMBER.sub(_cardinal_or_year, text)


def to_ascii(text: str) -> str:
    """Transliterate to ASCII (keeping the VITS punctuation ``¡¿—…«»“”``); other characters
    that have no ASCII form are kept, so the frontend can report them."""
    out = []
    for ch in text:
        if ch.isascii() or ch in _KEEP_NON_ASCII:
            out.append(ch)
        elif ch in _ASCII_MAP:
            out.append(_ASCII_MAP[ch])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base if base else ch)
    return "".join(out)


def english_cleaners(text: str) -> str:
    """keithito ``english_cleaners``: ASCII, lower case, numbers, abbreviations, whitespace
    (square and curly brackets become parentheses)."""
    text = to_ascii(text).lower().translate(_BRACKETS)
    text = expand_numbers(text)
    for pattern, full in _ABBREVIATIONS:
        text = pattern.sub(full, text)
    return _WHITESPACE.sub(" ", text).strip()


class EnglishCharsFrontend(TextFrontend):
    """Cleaned English characters (``english_chars``); VITS/tacotron character models.

    Args:
        symbols: table (id = index); default :data:`ENGLISH_SYMBOLS`.
        add_blank: intersperse the blank id 0.
        unknown: ``"error"`` or ``"drop"``.
    """

    name = "english_chars"

    def __init__(self, symbols: Iterable[str] | None = None, add_blank: bool = True,
                 unknown: str = "error"):
        super().__init__(ENGLISH_SYMBOLS if symbols is None else symbols, add_blank, unknown)

    def normalize(self, text: str) -> str:
        return english_cleaners(text)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EnglishCharsFrontend":
        return cls(d.get("symbols"), d.get("add_blank", True), d.get("unknown", "error"))
