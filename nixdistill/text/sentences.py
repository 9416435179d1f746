"""Split long text into sentences, so that synthesis runs one bounded-size pass per sentence.

Piper synthesises sentence by sentence (espeak-ng's clause boundaries, OHF-Voice/piper1-gpl
``voice.py``); this splitter works on the raw text, before any frontend, so it serves every
frontend and the teacher alike. Sentences are found by pySBD (Sadvilkar & Neumann 2020,
"PySBD: Pragmatic Sentence Boundary Disambiguation"), which knows abbreviations ("Dr.",
"p.m."), initials ("U.S.") and decimals ("3.30") in each of its languages; line breaks always
end a sentence. For a language pySBD does not know, a sentence ends after ``. ! ? …`` (plus
closing quotes/brackets) when the next word does not start in lower case. A piece still longer
than ``max_chars`` (text without punctuation) is cut at its last ``, ; :`` or space before the
limit, so one pass never sees more than ``max_chars`` characters.
"""

from __future__ import annotations

import functools
import re
from typing import Iterator

__all__ = ["DEFAULT_MAX_CHARS", "sentence_language", "split_sentences"]

DEFAULT_MAX_CHARS = 400
"""Longest piece (characters) one synthesis pass gets; about 30 s of speech."""

# End of a sentence for languages pySBD does not know: terminal punctuation, optional closing
# quotes/brackets, whitespace, and a next word that does not start in lower case.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*(\s+)(?=[^\s\w]*[^\W_a-z])")
_LINE_BREAK = re.compile(r"\s*\n\s*")
_SOFT_BREAK = re.compile(r"[,;:]\s|\s")


def sentence_language(language: str | None) -> str | None:
    """The pySBD language code of a voice language (``"en-us"``, ``"en_US"``, ``"de"`` ->
    ``"en"``, ``"en"``, ``"de"``), or None when pySBD does not know it."""
    if not language:
        return None
    from pysbd.languages import LANGUAGE_CODES

    code = re.split(r"[-_]", str(language).lower())[0]
    if code == "cmn":
        code = "zh"
    return code if code in LANGUAGE_CODES else None


@functools.lru_cache(maxsize=8)
def _segmenter(code: str):
    import pysbd

    return pysbd.Segmenter(language=code, clean=False)


def _cut(piece: str, max_chars: int) -> Iterator[str]:
    while len(piece) > max_chars:
        window = piece[:max_chars + 1]
        soft = [m.end() for m in _SOFT_BREAK.finditer(window) if m.end() > 1]
        punct = [m.end() for m in re.finditer(r"[,;:]\s", window)]
        end = (punct or soft or [max_chars])[-1]
        yield piece[:end].strip()
        piece = piece[end:].strip()
    if piece:
        yield piece


def _sentences_of_line(line: str, code: str | None) -> Iterator[str]:
    if code is not None:
        yield from (s.strip() for s in _segmenter(code).segment(line))
        return
    start = 0
    for match in _SENTENCE_END.finditer(line):
        yield line[start:match.start(1)].strip()
        start = match.end(1)
    yield line[start:].strip()


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS,
                    language: str | None = "en") -> Iterator[str]:
    """Yield the sentences of ``text`` in order (stripped, none empty).

    Args:
        text: any length of text.
        max_chars: longest piece yielded (> 0), in characters.
        language: the voice's language (``"en-us"``, Piper's ``espeak.voice``); pySBD's rules
            for it, or the punctuation rule when pySBD does not know it (or for None).
    Yields:
        sentences, each at most ``max_chars`` characters.
    Raises:
        ValueError: ``max_chars <= 0``.

    Example: ``"Dr. Smith met Mr. Jones at 3.30 p.m. It rained.\\nFine."`` -> ``"Dr. Smith met
    Mr. Jones at 3.30 p.m."``, ``"It rained."``, ``"Fine."``.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    code = sentence_language(language)
    for line in _LINE_BREAK.split(text):
        if not line.strip():
            continue
        for sentence in _sentences_of_line(line, code):
            yield from _cut(sentence, max_chars)
