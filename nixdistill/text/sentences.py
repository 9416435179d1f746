"""Split long text into sentences, so that synthesis runs one bounded-size pass per sentence.

Piper synthesises sentence by sentence (espeak-ng's clause boundaries, OHF-Voice/piper1-gpl
``voice.py``); this splitter works on the raw text, before any frontend, so it serves every
frontend and the teacher alike. It splits after ``. ! ? …`` (plus closing quotes/brackets)
when the next word starts a new sentence, and at line breaks; a piece still longer than
``max_chars`` (text without punctuation) is cut at its last ``, ; :`` or space before the
limit, so one pass never sees more than ``max_chars`` characters.
"""

from __future__ import annotations

import re
from typing import Iterator

__all__ = ["DEFAULT_MAX_CHARS", "split_sentences"]

DEFAULT_MAX_CHARS = 400
"""Longest piece (characters) one synthesis pass gets; about 30 s of speech."""

# End of a sentence: terminal punctuation, optional closing quotes/brackets, whitespace, and
# a next word that does not start in lower case ("e.g. this" stays one sentence).
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*(\s+)(?=[^\s\w]*[^\W_a-z])")
_LINE_BREAK = re.compile(r"\s*\n\s*")
_SOFT_BREAK = re.compile(r"[,;:]\s|\s")


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


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[str]:
    """Yield the sentences of ``text`` in order (stripped, none empty).

    Args:
        text: any length of text.
        max_chars: longest piece yielded (> 0).
    Yields:
        sentences, each at most ``max_chars`` characters.
    Raises:
        ValueError: ``max_chars <= 0``.

    Example: ``"Hello there. How are you?\\nFine."`` -> ``"Hello there."``, ``"How are
    you?"``, ``"Fine."``.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    for line in _LINE_BREAK.split(text):
        start = 0
        for match in _SENTENCE_END.finditer(line):
            yield from _cut(line[start:match.start(1)].strip(), max_chars)
            start = match.end(1)
        yield from _cut(line[start:].strip(), max_chars)
