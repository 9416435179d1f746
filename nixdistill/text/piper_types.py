"""Piper's phonemizers for voices whose ``phoneme_type`` is not ``espeak``.

Piper voices declare how their text becomes phonemes (``phoneme_type`` in the ``.onnx.json``,
piper1-gpl ``config.PhonemeType``): ``espeak`` (espeak-ng IPA, :mod:`nixdistill.text.espeak`),
``text`` (the text's own NFD codepoints), ``pinyin`` (zh-CN, g2pW), ``hebrew`` (Nakdimon
niqqud and IPA rules), ``japanese`` (OpenJTalk with pitch accent) and ``thai`` (TLTK). A teacher
and its student must see exactly the ids piper-tts feeds that voice, so
:class:`PiperTypePhonemizer` runs piper-tts's own ``PiperVoice.phonemize`` and
``phonemes_to_ids`` for the voice's config; nothing here reimplements a phonemizer.

A type whose extra packages are missing is a :class:`~nixdistill.text.base.TextError` that names
what to install; ids are never made another way. ``pinyin`` also needs piper-tts's g2pW model on
disk (nixdistill never downloads at run time): set ``NIXDISTILL_G2PW_DIR`` to its folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .base import TextError

__all__ = ["PIPER_PHONEME_TYPES", "G2PW_DIR_ENV", "PiperTypePhonemizer",
           "require_phoneme_type"]

PIPER_PHONEME_TYPES = ("espeak", "text", "pinyin", "hebrew", "japanese", "thai")
G2PW_DIR_ENV = "NIXDISTILL_G2PW_DIR"
#: phoneme type -> (modules it imports, what to install).
_EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "pinyin": (("unicode_rbnf", "g2pw"), "pip install 'piper-tts[zh]'"),
    "japanese": (("pyopenjtalk",), "pip install 'piper-tts[ja]'"),
    "thai": (("tltk", "pandas", "unicode_rbnf"), "pip install 'piper-tts[th]'"),
}


def require_phoneme_type(phoneme_type: str) -> None:
    """Raise TextError unless this process can phonemize ``phoneme_type`` as piper-tts does.

    Raises:
        TextError: an unknown type, piper-tts missing, a type's extra packages missing (the
            message names them), or the g2pW model of ``pinyin`` not on disk.
    """
    if phoneme_type not in PIPER_PHONEME_TYPES:
        raise TextError(f"unknown Piper phoneme_type {phoneme_type!r}; Piper knows "
                        f"{', '.join(PIPER_PHONEME_TYPES)}")
    if importlib.util.find_spec("piper") is None:
        raise TextError(f"a Piper voice of phoneme_type {phoneme_type!r} is phonemized by "
                        "piper-tts: pip install 'nixdistill[piper]'")
    modules, install = _EXTRAS.get(phoneme_type, ((), ""))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise TextError(f"phoneme_type {phoneme_type!r} needs {', '.join(missing)}, which "
                        f"piper-tts phonemizes it with: {install}")
    if phoneme_type == "pinyin":
        folder = os.environ.get(G2PW_DIR_ENV)
        if not folder or not Path(folder).is_dir():
            raise TextError("phoneme_type 'pinyin' needs piper-tts's g2pW model on disk "
                            f"(nixdistill never downloads it): set {G2PW_DIR_ENV} to its folder")


class PiperTypePhonemizer:
    """piper-tts's phonemizer and id mapping for one voice config.

    Args:
        phoneme_type: one of :data:`PIPER_PHONEME_TYPES` other than ``espeak``.
        language: the voice's ``espeak.voice`` (Piper keeps it for every type).
        phoneme_id_map: the voice's ``{symbol: [ids]}``.
    Raises:
        TextError: see :func:`require_phoneme_type`.
    Source: OHF-Voice/piper1-gpl ``voice.py`` (``PiperVoice.phonemize``, ``phonemes_to_ids``).
    """

    def __init__(self, phoneme_type: str, language: str,
                 phoneme_id_map: dict[str, list[int]]) -> None:
        require_phoneme_type(phoneme_type)
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        config = PiperConfig.from_dict({
            "num_symbols": 1 + max(i for ids in phoneme_id_map.values() for i in ids),
            "num_speakers": 1, "audio": {"sample_rate": 22050}, "espeak": {"voice": language},
            "phoneme_type": phoneme_type, "phoneme_id_map": phoneme_id_map})
        piper_dir = Path(importlib.util.find_spec("piper").origin).parent
        download = Path(os.environ.get(G2PW_DIR_ENV, "")).parent if phoneme_type == "pinyin" \
            else piper_dir
        # phonemize() and phonemes_to_ids() never touch the ONNX session
        self._voice: Any = PiperVoice(session=None, config=config,
                                      espeak_data_dir=piper_dir / "espeak-ng-data",
                                      download_dir=download)
        self.phoneme_type = phoneme_type

    def sentence_phonemes(self, text: str) -> list[list[str]]:
        """Phonemes per sentence, as ``PiperVoice.phonemize`` gives them (empty ones dropped)."""
        try:
            return [s for s in self._voice.phonemize(text) if s]
        except (ImportError, OSError, RuntimeError, ValueError) as e:
            raise TextError(f"piper-tts could not phonemize {text!r} as "
                            f"{self.phoneme_type!r}: {e}") from None

    def ids(self, phonemes: list[str]) -> list[int]:
        """One sentence's ids, ``PiperVoice.phonemes_to_ids`` (BOS, pad-interspersed, EOS)."""
        return list(self._voice.phonemes_to_ids(phonemes))
