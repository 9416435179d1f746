"""Korean jamo frontend (``korean_jamo``) for KSS-style data.

Hangul syllables are decomposed with ``jamo.h2j`` into conjoining jamo (choseong U+1100-U+1112,
jungseong U+1161-U+1175, jongseong U+11A8-U+11C2), the representation used by the Korean VITS /
Nix-TTS ports trained on KSS. Space and basic punctuation are kept; whitespace is collapsed.
Digits and Latin letters are not spelled out: KSS's ``expanded`` transcript column already has
them in Hangul, so :func:`nixdistill.data.read_dataset` reads that column.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable

from .base import PAD, TextFrontend

__all__ = ["KoreanJamoFrontend", "KOREAN_SYMBOLS", "korean_cleaners"]

CHOSEONG = [chr(c) for c in range(0x1100, 0x1113)]   # 19 leading consonants
JUNGSEONG = [chr(c) for c in range(0x1161, 0x1176)]  # 21 vowels
JONGSEONG = [chr(c) for c in range(0x11A8, 0x11C3)]  # 27 trailing consonants
PUNCTUATION = " !'(),-.:;?~\"…"
KOREAN_SYMBOLS: list[str] = [PAD, *PUNCTUATION, *CHOSEONG, *JUNGSEONG, *JONGSEONG]

_WHITESPACE = re.compile(r"\s+")
_PUNCT_MAP = {"“": '"', "”": '"', "‘": "'", "’": "'", "·": ",", "「": '"', "」": '"'}


def korean_cleaners(text: str) -> str:
    """NFC, map typographic punctuation, collapse whitespace, decompose Hangul (``jamo.h2j``)."""
    from jamo import h2j

    text = unicodedata.normalize("NFC", text)
    text = "".join(_PUNCT_MAP.get(ch, ch) for ch in text)
    text = _WHITESPACE.sub(" ", text).strip()
    return h2j(text)


class KoreanJamoFrontend(TextFrontend):
    """Conjoining-jamo characters (``korean_jamo``).

    Args:
        symbols: table (id = index); default :data:`KOREAN_SYMBOLS` (pad, punctuation, jamo).
        add_blank: intersperse the blank id 0.
        unknown: ``"error"`` or ``"drop"``.
    """

    name = "korean_jamo"
    language = "ko"

    def __init__(self, symbols: Iterable[str] | None = None, add_blank: bool = True,
                 unknown: str = "error"):
        super().__init__(KOREAN_SYMBOLS if symbols is None else symbols, add_blank, unknown)

    def normalize(self, text: str) -> str:
        return korean_cleaners(text)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KoreanJamoFrontend":
        return cls(d.get("symbols"), d.get("add_blank", True), d.get("unknown", "error"))
