"""Where a student's spectral error lies, by phoneme class.

With the teacher's durations the student's frames line up with the teacher's, frame for frame,
so each frame belongs to one token. :func:`mel_error_by_class` takes the mean absolute log-mel
difference of every frame and adds it to its token's class: plosives, fricatives, affricates,
nasals, liquids and glides, vowels (the IPA chart's manners of articulation; espeak-ng's NFD
IPA symbols, their diacritics and length marks dropped), and ``other`` (pauses, punctuation,
word boundaries, Piper's pad and sentence marks). Slurred consonant clusters show as plosive
and fricative error far above the vowels'.

Source: the IPA consonant chart (International Phonetic Association, 2020 revision).
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

import numpy as np
import torch

from nixdistill.audio import audio_kwargs, mel_spectrogram

__all__ = ["PHONEME_CLASSES", "mel_error_by_class", "phoneme_class"]

PHONEME_CLASSES: dict[str, str] = {
    "plosive": "pbtdʈɖcɟkɡgqɢʔ",
    "affricate": "ʧʤʦʣ",
    "fricative": "ɸβfvθðszʃʒʂʐçʝxɣχʁħʕhɦɬɮɕʑ",
    "nasal": "mɱnɳɲŋɴ",
    "liquid_glide": "lɫɭʎʟrɹɻɾɽʀʋjwɰʍɥ",
    "vowel": "aeiouyæɑɒɔəɚɛɜɝɞɪʊʌɐɨʉɘɵɤɯøœɶᵻ",
}
"""Class name -> the base IPA letters of that class."""
_CLASS_OF = {ch: name for name, letters in PHONEME_CLASSES.items() for ch in letters}
OTHER = "other"


def phoneme_class(symbol: str) -> str:
    """The class of one phoneme symbol (e.g. ``"t"`` -> ``"plosive"``, ``"aɪ"`` -> ``"vowel"``,
    ``"ˈ"`` -> ``"other"``): its first base letter's, after NFD and without diacritics."""
    for ch in unicodedata.normalize("NFD", symbol):
        if ch in _CLASS_OF:
            return _CLASS_OF[ch]
    return OTHER


def mel_error_by_class(ref: np.ndarray, hyp: np.ndarray, w_ceil: Sequence[int],
                       symbols: Sequence[str], audio) -> dict[str, tuple[float, int]]:
    """Summed per-frame log-mel error and frame count of every phoneme class.

    Args:
        ref / hyp: teacher and student waveforms made with the same durations, [T_samples]
            each (equal lengths: ``sum(w_ceil) * hop_length``).
        w_ceil: frames per token, [T_text].
        symbols: the token of each position, [T_text] (the frontend's symbol of each id).
        audio: the :class:`~nixdistill.config.AudioConfig` of both (mel analysis).
    Returns:
        ``{class: (sum of per-frame mean |log mel_ref - log mel_hyp|, frames)}``.
    Raises:
        ValueError: lengths that do not line up.
    """
    if len(w_ceil) != len(symbols):
        raise ValueError(f"{len(w_ceil)} durations for {len(symbols)} tokens")
    if len(ref) != len(hyp):
        raise ValueError(f"waveforms of {len(ref)} and {len(hyp)} samples: use the teacher's "
                         "durations for both")
    mels = mel_spectrogram(torch.as_tensor(np.stack([ref, hyp]), dtype=torch.float32),
                           **audio_kwargs(audio))  # [2, n_mels, T_frames]
    err = (mels[0] - mels[1]).abs().mean(0).numpy()  # [T_frames]
    out: dict[str, list[float]] = {}
    start = 0
    for frames, symbol in zip(w_ceil, symbols):
        frames = int(frames)
        part = err[start:start + frames]
        start += frames
        if part.size:
            acc = out.setdefault(phoneme_class(symbol), [0.0, 0])
            acc[0] += float(part.sum())
            acc[1] += int(part.size)
    return {k: (v[0], int(v[1])) for k, v in out.items()}
