"""Text corpora shipped with nixdistill.

Every file here but one was written for this project; the exception is public-domain text
(LJSpeech transcripts). All are installed as package data, so they are found after a regular
(non-editable) install too. Files hold one sentence per line; blank lines and lines starting
with ``#`` are comments.

- ``sentences_en.txt`` (:data:`DISTILL_CORPUS_EN`): English distillation corpus of the default
  preset. It covers every symbol of the Piper ``en_US-joe-medium`` ``phoneme_id_map`` that
  espeak-ng (en-us) produces for English text.
- ``sentences_ljspeech_en.txt`` (:data:`ENCODER_TEXT_EN`): 1,499 LJSpeech 1.1 transcripts
  (Keith Ito, 2017; public domain), none of them in the test set
  ``scripts/data/ljspeech_test120.txt``: more English text for the student encoder only
  (``distil-encoder --extra-text``, a preset's ``stages.encoder.extra_text``). The shipped
  presets do not use it: it helps on text of its books and costs fidelity on modern text
  (docs/EXPERIMENTS.md, "A wider encoder and more text over the whole stage").
  Rebuilt by ``scripts/data/make_ljspeech_sets.py``.
- ``bench_en.txt`` (:data:`BENCH_EN`): English benchmark sentences for ASR word error rate,
  disjoint from the corpus.
- ``sentences_ko.txt`` (:data:`CORPUS_KO`) and ``bench_ko.txt`` (:data:`BENCH_KO`): Korean
  corpus and benchmark sentences, hangul plus ``. , ? !`` only.
- ``phoneme_probe_en.txt`` (:data:`PHONEME_PROBE_EN`): words that elicit rare espeak phonemes,
  used by the coverage test.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = [
    "DISTILL_CORPUS_EN",
    "ENCODER_TEXT_EN",
    "BENCH_EN",
    "BENCH_KO",
    "CORPUS_KO",
    "PHONEME_PROBE_EN",
    "resource_path",
    "read_sentences",
]

DISTILL_CORPUS_EN = "sentences_en.txt"
ENCODER_TEXT_EN = "sentences_ljspeech_en.txt"
BENCH_EN = "bench_en.txt"
BENCH_KO = "bench_ko.txt"
CORPUS_KO = "sentences_ko.txt"
PHONEME_PROBE_EN = "phoneme_probe_en.txt"

_COMMENT_PREFIX = "#"


def resource_path(name: str) -> Path:
    """Path of a file shipped in ``nixdistill.resources``.

    Args:
        name: file name inside the package, e.g. :data:`DISTILL_CORPUS_EN`.
    Returns:
        Filesystem path of the file.
    Raises:
        FileNotFoundError: no such resource, with the available names in the message.
    """
    package = resources.files(__name__)
    entry = package / name
    if not entry.is_file():
        available = sorted(p.name for p in package.iterdir() if p.name.endswith(".txt"))
        raise FileNotFoundError(f"no resource {name!r} in {__name__}; available: {', '.join(available)}")
    return Path(str(entry))


def read_sentences(name: str) -> list[str]:
    """Sentences of a shipped text file, one per line, stripped.

    Blank lines and lines starting with ``#`` are skipped.

    Args:
        name: file name inside the package, e.g. :data:`BENCH_KO`.
    Returns:
        The sentences in file order.
    """
    text = resource_path(name).read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(_COMMENT_PREFIX)]
