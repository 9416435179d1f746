"""Text frontends: transcript -> token ids ``x`` ([T_text], int64 once batched).

``build_frontend(TextConfig)`` selects one of ``english_chars``, ``korean_jamo`` or ``espeak``;
``frontend.to_dict()`` / :func:`frontend_from_dict` carry the full symbol table (or Piper
``phoneme_id_map``) with a model, so it decodes the same ids after export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BLANK_ID, PAD, TextError, TextFrontend, intersperse
from .english import EnglishCharsFrontend, english_cleaners, expand_numbers, number_to_words
from .espeak import EspeakFrontend
from .korean import KoreanJamoFrontend

if TYPE_CHECKING:  # nixdistill.config imports torch; the onnxruntime voice must not
    from ..config import TextConfig

__all__ = [
    "BLANK_ID", "PAD", "TextError", "TextFrontend", "intersperse", "build_frontend",
    "frontend_from_dict", "EnglishCharsFrontend", "KoreanJamoFrontend", "EspeakFrontend",
    "english_cleaners", "expand_numbers", "number_to_words", "FRONTENDS",
]

FRONTENDS: dict[str, type[TextFrontend]] = {
    "english_chars": EnglishCharsFrontend,
    "korean_jamo": KoreanJamoFrontend,
    "espeak": EspeakFrontend,
}


def build_frontend(text_cfg: TextConfig) -> TextFrontend:
    """The frontend a :class:`~nixdistill.config.TextConfig` selects.

    ``text_cfg.symbols`` overrides the default table; ``text_cfg.phoneme_id_map`` selects
    Piper ids for ``espeak``.

    Raises:
        TextError: for an invalid symbol table or phoneme map.
    """
    if text_cfg.frontend == "espeak":
        return EspeakFrontend(text_cfg.language, text_cfg.phoneme_id_map, text_cfg.symbols,
                              text_cfg.add_blank, text_cfg.unknown,
                              vowel_clusters=text_cfg.vowel_clusters,
                              phoneme_type=text_cfg.phoneme_type)
    if text_cfg.phoneme_id_map is not None:
        raise TextError(f"text.phoneme_id_map is only used by the espeak frontend, "
                        f"not {text_cfg.frontend!r}")
    return FRONTENDS[text_cfg.frontend](text_cfg.symbols, text_cfg.add_blank, text_cfg.unknown)


def frontend_from_dict(d: dict[str, Any]) -> TextFrontend:
    """Rebuild a frontend from :meth:`TextFrontend.to_dict` (e.g. exported-model metadata).

    Raises:
        TextError: for an unknown frontend name or invalid table.
    """
    name = d.get("frontend")
    if name not in FRONTENDS:
        raise TextError(f"unknown text frontend {name!r}; expected one of {sorted(FRONTENDS)}")
    return FRONTENDS[name].from_dict(d)
