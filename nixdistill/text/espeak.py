"""espeak-ng IPA frontend (``espeak``), id-compatible with Piper voices.

Two id layouts, each with its own phonemizer:

* **Piper** (a ``phoneme_id_map`` ``{symbol: [ids]}`` is given, e.g. from a voice's
  ``.onnx.json``): phonemes come from piper-tts's own ``EspeakPhonemizer`` (its bundled
  espeak-ng and data, OHF-Voice/piper1-gpl ``phonemize_espeak.py``), the phonemizer Piper
  voices are trained and spoken with, so the ids equal ``PiperVoice.phonemes_to_ids`` of
  ``PiperVoice.phonemize`` sentence by sentence. espeak-ng splits the text into clauses; each
  clause keeps its punctuation (``, : ;`` followed by a space), espeak's sentence ends close a
  sentence, and the phoneme string is NFD-decomposed into codepoints (accents and length marks
  are their own tokens; a voice's ``vowel_clusters`` merge again). Each sentence becomes
  ``[^, _, p1, _, p2, _, ..., pN, _, $]`` with ``_`` = pad 0, ``^`` = BOS, ``$`` = EOS
  (Piper ``phoneme_ids.phonemes_to_ids``); the sentences of one utterance are concatenated,
  as Piper's training data loader does.
  ``add_blank`` is implied by the layout. Needs ``pip install piper-tts`` (extra ``[piper]``).
* **VITS** (no map): phonemes come from ``phonemizer``'s ``EspeakBackend`` running the
  espeak-ng library shipped by ``espeakng-loader`` (no system espeak needed), NFD-decomposed;
  ids index the default IPA table :data:`DEFAULT_IPA_SYMBOLS`, with the blank interspersed
  when ``add_blank``.
"""

from __future__ import annotations

import importlib.metadata
import re
import threading
import unicodedata
from typing import Any, Iterable

from .base import PAD, TextError, TextFrontend, describe_char
from .piper_types import PiperTypePhonemizer, require_phoneme_type

__all__ = ["EspeakFrontend", "DEFAULT_IPA_SYMBOLS", "BOS", "EOS"]

BOS = "^"
EOS = "$"
_PUNCTUATION = " !'(),-.:;?\"¡¿—…«»“”"
_LATIN = "abcdefghijklmnopqrstuvwxyz"
_IPA = ("æçðøħŋœǀǁǂǃɐɑɒɓɔɕɖɗɘəɚɛɜɝɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢ"
        "ʦʰʲʷˈˌːˑ˞ˤβθχεᵻⱱ↓↑#")
_COMBINING = "".join(chr(c) for c in (0x0303, 0x0327, 0x032A, 0x032F, 0x0329, 0x031D, 0x030A,
                                       0x033A, 0x033B, 0x0306, 0x0308, 0x0361))
_DIGITS = "0123456789"
DEFAULT_IPA_SYMBOLS: list[str] = [PAD, BOS, EOS, *_PUNCTUATION, *_LATIN, *_IPA, *_COMBINING, *_DIGITS]
"""Default table when no ``phoneme_id_map`` is given: pad, BOS, EOS, punctuation, Latin
letters, espeak-ng IPA letters/suprasegmentals, combining diacritics, digits (stress-tone)."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ESPEAK_LOCK = threading.Lock()


def _with_version(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


class EspeakFrontend(TextFrontend):
    """IPA phonemes from espeak-ng (``espeak``).

    Args:
        language: espeak voice, e.g. ``"en-us"`` (Piper: ``config["espeak"]["voice"]``).
        phoneme_id_map: Piper ``{symbol: [ids]}``; selects the Piper id layout.
        symbols: table for the VITS layout (default :data:`DEFAULT_IPA_SYMBOLS`); ignored
            when ``phoneme_id_map`` is given (the table is derived from the map).
        add_blank: intersperse blank 0 (VITS layout only; Piper's layout always has blanks).
        unknown: ``"error"`` or ``"drop"`` for phonemes outside the table.
        n_vocab: embedding size of the model (Piper voices have ``num_symbols`` 256 while the
            map uses fewer ids); default: highest id + 1.
        vowel_clusters: Piper layout only: phoneme sequences merged into one map symbol, e.g.
            ``[["a", "ɪ"]]`` -> ``"aɪ"`` (a Piper config's ``vowel_clusters``).
        phoneme_type: Piper layout only: the voice's ``phoneme_type``; other than ``espeak``,
            piper-tts's own phonemizer for that type makes the phonemes and ids
            (:class:`~nixdistill.text.piper_types.PiperTypePhonemizer`).
    Raises:
        TextError: an invalid map, or a ``phoneme_type`` this process cannot phonemize (the
            message names the package to install).
    """

    name = "espeak"

    def __init__(self, language: str = "en-us", phoneme_id_map: dict[str, list[int]] | None = None,
                 symbols: Iterable[str] | None = None, add_blank: bool = True,
                 unknown: str = "error", n_vocab: int | None = None,
                 vowel_clusters: Iterable[Iterable[str]] | None = None,
                 phoneme_type: str = "espeak"):
        self.language = language
        self.phoneme_id_map = None if phoneme_id_map is None else {
            str(k): [int(i) for i in (v if isinstance(v, (list, tuple)) else [v])]
            for k, v in phoneme_id_map.items()
        }
        if self.phoneme_id_map is not None:
            for required in (PAD, BOS, EOS):
                if required not in self.phoneme_id_map:
                    raise TextError(
                        f"espeak: phoneme_id_map lacks the required symbol {required!r}")
            symbols = self._symbols_from_map(self.phoneme_id_map, n_vocab)
            add_blank = True
        elif vowel_clusters:
            raise TextError("espeak: vowel_clusters need a Piper phoneme_id_map")
        elif symbols is None:
            symbols = DEFAULT_IPA_SYMBOLS
        super().__init__(symbols, add_blank, unknown)
        if n_vocab is not None and n_vocab < len(self.symbols):
            raise TextError(f"espeak: n_vocab {n_vocab} is smaller than the symbol table "
                            f"({len(self.symbols)})")
        self._n_vocab = n_vocab
        self.vowel_clusters = sorted({tuple(c) for c in vowel_clusters or ()}) or None
        self._backend = None
        self.phoneme_type = phoneme_type
        if phoneme_type != "espeak":
            if self.phoneme_id_map is None:
                raise TextError(f"phoneme_type {phoneme_type!r} needs a Piper phoneme_id_map")
            require_phoneme_type(phoneme_type)

    @staticmethod
    def _symbols_from_map(id_map: dict[str, list[int]], n_vocab: int | None) -> list[str]:
        size = max(max(ids) for ids in id_map.values()) + 1
        size = max(size, n_vocab or 0)
        table = [f"<unused:{i}>" for i in range(size)]
        for sym, ids in id_map.items():
            if len(ids) == 1:
                table[ids[0]] = sym
        return table

    @property
    def n_vocab(self) -> int:
        return self._n_vocab if self._n_vocab is not None else len(self.symbols)

    @property
    def piper_layout(self) -> bool:
        """True when ids follow Piper's ``[^, _, p1, _, ..., pN, _, $]`` layout."""
        return self.phoneme_id_map is not None

    # -- phonemisation -----------------------------------------------------------------------
    def _get_backend(self):
        """The phonemizer of this layout, created once per frontend instance on first use.

        Raises:
            TextError: its package is missing, or espeak-ng does not know ``language``.
        """
        if self._backend is None:
            if self.phoneme_type != "espeak":
                self._backend = PiperTypePhonemizer(self.phoneme_type, self.language,
                                                    self.phoneme_id_map)
            else:
                self._backend = self._piper_backend() if self.piper_layout else \
                    self._vits_backend()
        return self._backend

    def _piper_backend(self):
        try:
            from piper.phonemize_espeak import EspeakPhonemizer
        except ImportError as e:
            raise TextError(
                "espeak: a Piper phoneme_id_map is phonemized with piper-tts's own espeak-ng, "
                "the one Piper voices are trained and spoken with; install it with "
                f"`pip install piper-tts` (or nixdistill[piper]) ({e})") from None
        with _ESPEAK_LOCK:
            phonemizer = EspeakPhonemizer()
            try:
                phonemizer.phonemize(self.language, "")
            except RuntimeError as e:
                raise TextError(f"espeak: cannot use language {self.language!r}: {e}") from None
        return phonemizer

    def _vits_backend(self):
        try:
            import espeakng_loader
            from phonemizer.backend import EspeakBackend
            from phonemizer.backend.espeak.wrapper import EspeakWrapper
        except ImportError as e:
            raise TextError(
                f"the espeak frontend needs phonemizer and espeakng-loader ({e})"
            ) from None
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        try:
            return EspeakBackend(
                self.language, preserve_punctuation=True, with_stress=True,
                language_switch="remove-flags", words_mismatch="ignore",
            )
        except RuntimeError as e:
            raise TextError(f"espeak: cannot use language {self.language!r}: {e}") from None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: the ctypes backend stays
        state = dict(self.__dict__)
        state["_backend"] = None
        return state

    def sentence_phonemes(self, text: str) -> list[list[str]]:
        """Transcript -> phoneme tokens per sentence (NFD codepoints, punctuation kept).

        Piper layout: piper-tts's ``EspeakPhonemizer`` (sentences as espeak-ng ends them,
        empty ones dropped, as ``PiperVoice.synthesize`` skips them; unlike
        ``PiperVoice.phonemize``, ``[[ raw phonemes ]]`` blocks are not interpreted and Arabic
        is not diacritized). VITS layout: phonemizer's IPA split after sentence-final ``.!?``.

        Example: ``"Hello world. Hi!" -> [list("həlˈoʊ wˈɜːld."), list("hˈaɪ!")]`` (en-us,
        after NFD).

        Raises:
            TextError: the phonemizer is missing or rejects the language.
        """
        if not text.strip():
            return []
        backend = self._get_backend()
        if self.phoneme_type != "espeak":
            return backend.sentence_phonemes(text)
        if self.piper_layout:
            with _ESPEAK_LOCK:  # espeak-ng keeps one voice per process
                sentences = backend.phonemize(self.language, text,
                                              vowel_clusters=set(self.vowel_clusters or ()))
            return [s for s in sentences if s]
        ipa = backend.phonemize([unicodedata.normalize("NFC", text).strip()],
                                strip=False, njobs=1)[0]
        return [list(unicodedata.normalize("NFD", s.strip()))
                for s in _SENTENCE_END.split(ipa) if s.strip()]

    def phonemize(self, text: str) -> list[str]:
        """Transcript -> IPA strings (NFD), one per sentence; see :meth:`sentence_phonemes`.

        Example: ``"Hello world. Hi!" -> ["həlˈoʊ wˈɜːld.", "hˈaɪ!"]`` (en-us).
        """
        return ["".join(s) for s in self.sentence_phonemes(text)]

    def tokens(self, text: str) -> list[str]:
        """All sentences' NFD codepoints, sentences joined by a space (VITS layout)."""
        return list(" ".join(self.phonemize(text)))

    def encode(self, text: str, utt_id: str | None = None) -> list[int]:
        """Transcript -> ids ``x`` ([T_text]); see the module docstring for both layouts.

        Raises:
            TextError: unknown phoneme with ``unknown="error"``, or the phonemizer unavailable.
        """
        if not self.piper_layout:
            return super().encode(text, utt_id)
        if self.phoneme_type != "espeak":  # piper-tts's own ids for its phonemizer
            backend = self._get_backend()
            return [i for s in backend.sentence_phonemes(text) for i in backend.ids(s)]
        id_map = self.phoneme_id_map
        ids: list[int] = []
        for sentence in self.sentence_phonemes(text):
            known = []
            for p in sentence:
                if p in id_map:
                    known.append(p)
                elif self.unknown == "error":
                    where = f"utterance {utt_id!r}" if utt_id is not None else "text"
                    raise TextError(f"espeak: phoneme {describe_char(p)} of {where} ({text!r}) "
                                    "is not in the phoneme_id_map")
                else:
                    self.symbols_to_ids([p], text, utt_id)  # counts and warns
            ids.extend(id_map[BOS])
            ids.extend(id_map[PAD])
            for p in known:
                ids.extend(id_map[p])
                ids.extend(id_map[PAD])
            ids.extend(id_map[EOS])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        if not self.piper_layout:
            return super().decode(ids)
        skip = {self.phoneme_id_map[s][0] for s in (PAD, BOS, EOS)}
        return "".join(self.symbols[i] for i in ids if i not in skip)

    @property
    def phonemizer(self) -> str:
        """Which phonemizer makes the ids, with its version: ``"piper-tts 1.8.0"`` (Piper
        layout) or ``"phonemizer 3.3.0, espeakng-loader 0.2.4"`` (VITS layout); a missing
        package has no version. Recorded by :meth:`to_dict`, so a latent cache made with
        other ids is refused; files written before the field existed still load."""
        packages = ["piper-tts"] if self.piper_layout else ["phonemizer", "espeakng-loader"]
        return ", ".join(_with_version(p) for p in packages)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(language=self.language, phoneme_id_map=self.phoneme_id_map, n_vocab=self.n_vocab,
                 phonemizer=self.phonemizer)
        if self.vowel_clusters:
            d["vowel_clusters"] = [list(c) for c in self.vowel_clusters]
        if self.phoneme_type != "espeak":
            d["phoneme_type"] = self.phoneme_type
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EspeakFrontend":
        id_map = d.get("phoneme_id_map")
        return cls(d.get("language", "en-us"), id_map, None if id_map else d.get("symbols"),
                   d.get("add_blank", True), d.get("unknown", "error"), d.get("n_vocab"),
                   d.get("vowel_clusters"), d.get("phoneme_type", "espeak"))
