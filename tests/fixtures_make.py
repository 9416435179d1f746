"""Dataset fixture builders for the tests.

The builders live in :mod:`nixdistill.resources.fixtures` (importable without ``tests/`` on the
path); this module re-exports them under the name the pipeline tests use.
"""

from nixdistill.resources.fixtures import (
    KSS_SAMPLE_RATE,
    KSS_TRANSCRIPT,
    KSS_WAV_DIR,
    LJSPEECH_METADATA,
    LJSPEECH_WAV_DIR,
    espeak_available,
    make_kss_fixture,
    make_ljspeech_fixture,
)

__all__ = [
    "KSS_SAMPLE_RATE",
    "KSS_TRANSCRIPT",
    "KSS_WAV_DIR",
    "LJSPEECH_METADATA",
    "LJSPEECH_WAV_DIR",
    "espeak_available",
    "make_kss_fixture",
    "make_ljspeech_fixture",
]
