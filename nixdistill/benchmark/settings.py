"""What a benchmark runs on: typed settings, thread counts and sentences."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import from_dict
from ..errors import NixdistillError

__all__ = [
    "BenchmarkError",
    "BenchmarkSettings",
    "DEFAULT_N_SENTENCES",
    "parse_threads",
    "parse_noise_scales",
    "read_texts",
    "default_texts",
]

DEFAULT_N_SENTENCES = 20
"""Sentences used when ``--texts`` is not given (first N of the bundled benchmark list)."""
BENCH_TEXT_FILES = {"en": "bench_en.txt", "ko": "bench_ko.txt"}
"""Bundled sentence lists (``nixdistill.resources``) by teacher language."""


class BenchmarkError(NixdistillError, ValueError):
    """Bad benchmark arguments or inputs (thread spec, texts file, mismatched models)."""


@dataclass
class BenchmarkSettings:
    """How :func:`nixdistill.benchmark.run_benchmark` measures (a preset's ``benchmark`` section).

    Attributes:
        n_sentences: sentences used (first N of ``--texts`` or of the bundled list).
        repeats: timed passes per thread count (>= 1).
        warmup: untimed passes per thread count (>= 0).
        threads: thread counts, ``"1,2"``, ``"all"`` or ``"1,all"`` (see :func:`parse_threads`).
        eval_quality: score quality (MCD, lanes, and with the ``eval`` extra WER/CER, DNSMOS).
        measure_memory: peak RSS of one synthesis per model and runtime (subprocesses).
        onnxruntime: add ONNX Runtime columns when ``onnxruntime`` is installed.
        int8: with ``onnxruntime``, also time a copy of each student's graph(s) with int8
            ``MatMul`` weights (:func:`nixdistill.deploy.int8.quantize_int8`), interleaved
            with the others, as its own ONNX Runtime row ``"<student> int8"``.
        noise_scales: full-student noise sweep, e.g. ``"0,0.3,0.5,0.667"`` (empty: none).
        seed: seed of every sampled clip (sentence ``i`` uses ``seed + i``).
        draws: as-shipped clips per sentence and model, scored as their mean (a sampled
            model's WER moves with the seed; see :mod:`nixdistill.benchmark.quality`).
        speakers: a multi-speaker student is also scored over this many of its speakers
            (spread over its set; sentence ``i`` is said by speaker ``i mod speakers``).
    """

    n_sentences: int = DEFAULT_N_SENTENCES
    repeats: int = 5
    warmup: int = 1
    threads: str = "1,all"
    eval_quality: bool = True
    measure_memory: bool = True
    onnxruntime: bool = True
    int8: bool = False
    noise_scales: str = ""
    seed: int = 0
    draws: int = 1
    speakers: int = 4

    def __post_init__(self) -> None:
        if self.n_sentences < 1:
            raise BenchmarkError(f"n_sentences must be >= 1, got {self.n_sentences}")
        if self.repeats < 1 or self.warmup < 0:
            raise BenchmarkError(
                f"need repeats >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        if self.draws < 1:
            raise BenchmarkError(f"draws must be >= 1, got {self.draws}")
        if self.speakers < 1:
            raise BenchmarkError(f"speakers must be >= 1, got {self.speakers}")
        if self.int8 and not self.onnxruntime:
            raise BenchmarkError("int8 times ONNX Runtime copies of the students: it needs "
                                 "onnxruntime on")
        parse_threads(self.threads)
        parse_noise_scales(self.noise_scales)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "benchmark") -> BenchmarkSettings:
        """Settings from a JSON object.

        Raises:
            ConfigError: an unknown key, a wrong type or a bad value.
        """
        return from_dict(cls, d, where)

    @property
    def thread_list(self) -> list[int]:
        return parse_threads(self.threads)

    @property
    def noise_list(self) -> list[float]:
        return parse_noise_scales(self.noise_scales)


def parse_threads(spec: str | Sequence[int] | None) -> list[int]:
    """``"1,2"``, ``"all"``, ``"1,all"`` or a list of ints -> sorted unique thread counts.

    ``all`` is ``os.cpu_count()``.

    Raises:
        BenchmarkError: for a non-positive or non-integer entry.
    """
    n_all = os.cpu_count() or 1
    if spec is None:
        items: list[Any] = [1, "all"]
    elif isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = list(spec)
    out = set()
    for item in items:
        if item == "all":
            out.add(n_all)
            continue
        try:
            n = int(item)
        except (TypeError, ValueError):
            raise BenchmarkError(f"--threads: {item!r} is not a number or 'all'") from None
        if n < 1:
            raise BenchmarkError(f"--threads: thread counts must be >= 1, got {n}")
        out.add(n)
    if not out:
        raise BenchmarkError("--threads: no thread count given")
    return sorted(out)


def parse_noise_scales(spec: str | Sequence[float] | None) -> list[float]:
    """``"0,0.3,0.5,0.667"`` (or a list) -> sorted unique noise scales; ``""``/None -> [].

    Raises:
        BenchmarkError: a negative or non-numeric entry.
    """
    if not spec:
        return []
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = set()
    for item in items:
        try:
            v = float(item)
        except (TypeError, ValueError):
            raise BenchmarkError(f"--noise-scales: {item!r} is not a number") from None
        if v < 0:
            raise BenchmarkError(f"--noise-scales: noise scales must be >= 0, got {v}")
        out.add(v)
    return sorted(out)


def read_texts(path: str | Path) -> list[str]:
    """Sentences from a UTF-8 file, one per line; blank lines and ``#`` comments skipped.

    A line with ``|`` is a filelist row (``id|text``, LJSpeech's ``id|text|normalised``): its
    last field is the sentence.

    Raises:
        BenchmarkError: missing file or no sentences.
    """
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"texts file {p} does not exist")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    texts = [ln.rsplit("|", 1)[-1].strip() for ln in lines if ln and not ln.startswith("#")]
    texts = [t for t in texts if t]
    if not texts:
        raise BenchmarkError(f"texts file {p} has no sentences")
    return texts


def default_texts(language: str) -> list[str]:
    """The bundled benchmark sentences for ``language`` (English for unknown languages)."""
    from ..resources import read_sentences

    return list(read_sentences(BENCH_TEXT_FILES.get(language, BENCH_TEXT_FILES["en"])))
