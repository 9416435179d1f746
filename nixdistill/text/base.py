"""Base class of the text frontends: a symbol table, unknown-symbol policy and blank interspersing.

A frontend turns a transcript into token ids ``x`` (``[T_text]``, id = index into ``symbols``).
The symbol table travels with every exported model through :meth:`TextFrontend.to_dict`, so a
model never depends on the code version that trained it.
"""

from __future__ import annotations

import collections
import unicodedata
import warnings
from typing import Any, Iterable

from ..errors import NixdistillError

__all__ = ["TextError", "TextFrontend", "intersperse", "describe_char", "PAD", "BLANK_ID"]

PAD = "_"
"""Padding symbol; always id 0 (also the VITS ``add_blank`` blank)."""
BLANK_ID = 0
"""Id interspersed between tokens when ``add_blank`` is set (VITS ``commons.intersperse``)."""
UNKNOWN_POLICIES = ("error", "drop")


class TextError(NixdistillError, ValueError):
    """A transcript contains a symbol the frontend cannot encode (or cannot be phonemized).

    The message names the character (``repr`` and ``U+XXXX``) and the utterance id or text.
    """


def describe_char(ch: str) -> str:
    """``'ä' (U+00E4 LATIN SMALL LETTER A WITH DIAERESIS)`` for error messages."""
    codes = " ".join(f"U+{ord(c):04X}" for c in ch)
    name = unicodedata.name(ch, "") if len(ch) == 1 else ""
    return f"{ch!r} ({codes}{' ' + name if name else ''})"


def intersperse(ids: list[int], blank: int = BLANK_ID) -> list[int]:
    """``[a, b] -> [blank, a, blank, b, blank]`` (jaywalnut310/vits ``commons.intersperse``).

    Args:
        ids: token ids, length T.
        blank: id put between, before and after the tokens.
    Returns:
        list of length ``2 * T + 1``.
    """
    out = [blank] * (2 * len(ids) + 1)
    out[1::2] = ids
    return out


class TextFrontend:
    """A text frontend: normalisation + symbol table + encoding to ids.

    Subclasses implement :meth:`tokens` (text -> list of symbols, after normalisation) and
    :meth:`to_dict`; the base class maps symbols to ids, applies the unknown-symbol policy and
    the blank interspersing.

    Attributes:
        name: frontend name as in ``TextConfig.frontend``.
        symbols: symbol table, id = index; ``symbols[0]`` is the pad/blank ``"_"``.
        add_blank: intersperse :data:`BLANK_ID` between tokens.
        unknown: ``"error"`` or ``"drop"`` (see :class:`nixdistill.config.TextConfig`).
        dropped: :class:`collections.Counter` of symbols dropped so far (``unknown="drop"``).
        language: language of the text it reads (an espeak voice or an ISO code), e.g. for
            sentence splitting.
    """

    name: str = "base"
    language: str = "en"

    def __init__(self, symbols: Iterable[str], add_blank: bool = True, unknown: str = "error"):
        self.symbols: list[str] = list(symbols)
        if not self.symbols or self.symbols[0] != PAD:
            raise TextError(f"{self.name}: symbols[0] must be the pad {PAD!r}")
        dupes = [s for s, n in collections.Counter(self.symbols).items() if n > 1]
        if dupes:
            raise TextError(f"{self.name}: duplicate symbols in the table: {dupes}")
        if unknown not in UNKNOWN_POLICIES:
            raise TextError(f"unknown-symbol policy must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        self.add_blank = bool(add_blank)
        self.unknown = unknown
        self.dropped: collections.Counter[str] = collections.Counter()
        self._warned = False
        self._symbol_to_id = {s: i for i, s in enumerate(self.symbols)}

    @property
    def n_vocab(self) -> int:
        """Embedding size a model needs: ``len(symbols)``."""
        return len(self.symbols)

    # -- to override -------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """Text normalisation (cleaners) before tokenisation; identity by default."""
        return text

    def tokens(self, text: str) -> list[str]:
        """Normalised text -> symbols (one string per table entry); characters by default."""
        return list(self.normalize(text))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, rebuilt by :func:`nixdistill.text.frontend_from_dict`."""
        return {"frontend": self.name, "symbols": list(self.symbols), "add_blank": self.add_blank,
                "unknown": self.unknown}

    # -- shared ------------------------------------------------------------------------------
    def symbols_to_ids(self, symbols: list[str], text: str, utt_id: str | None) -> list[int]:
        """Map symbols to ids with the unknown policy (no blanks added).

        Raises:
            TextError: ``unknown="error"`` and a symbol is not in the table.
        """
        ids: list[int] = []
        dropped: collections.Counter[str] = collections.Counter()
        for s in symbols:
            i = self._symbol_to_id.get(s)
            if i is None:
                if self.unknown == "error":
                    where = f"utterance {utt_id!r}" if utt_id is not None else "text"
                    raise TextError(
                        f"{self.name}: unknown symbol {describe_char(s)} in {where}: {text!r}"
                    )
                dropped[s] += 1
                continue
            ids.append(i)
        if dropped:
            self.dropped.update(dropped)
            if not self._warned:  # one warning per frontend; the running count is in .dropped
                self._warned = True
                warnings.warn(
                    f"{self.name}: dropped {sum(dropped.values())} unknown symbol(s) "
                    f"{[describe_char(c) for c in sorted(dropped)]} from {utt_id or text!r}; "
                    "further drops are counted in frontend.dropped",
                    stacklevel=3,
                )
        return ids

    def encode(self, text: str, utt_id: str | None = None) -> list[int]:
        """Transcript -> token ids ``x`` ([T_text]; interspersed with blanks when ``add_blank``).

        Args:
            text: raw transcript.
            utt_id: utterance id used in error messages.
        Raises:
            TextError: for an unknown symbol (``unknown="error"``).
        """
        ids = self.symbols_to_ids(self.tokens(text), text, utt_id)
        return intersperse(ids) if self.add_blank else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> symbols joined (blanks removed when ``add_blank``); for debugging and tests."""
        ids = list(ids)
        if self.add_blank:
            ids = ids[1::2]
        return "".join(self.symbols[i] for i in ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_vocab={self.n_vocab}, add_blank={self.add_blank})"
