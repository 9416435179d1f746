"""Shared test fixtures: a tiny synthetic LJSpeech-format dataset and a tiny audio config."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nixdistill.config import AudioConfig

TINY_SAMPLE_RATE = 8000
TINY_TEXTS = [
    "The cat sat on the mat.",
    "Hello world!",
    "Dr. Smith has 3 dogs.",
    "Speech synthesis is fun, isn't it?",
    "A quick test.",
    "Good morning to you.",
]
TINY_DURATIONS_S = [0.5, 0.65, 0.8, 0.95, 1.05, 1.2]


def harmonic_tone(duration_s: float, sample_rate: int, f0_hz: float, n_harmonics: int = 4,
                  amplitude: float = 0.3) -> np.ndarray:
    """A decaying-harmonic tone with a slow vibrato, [round(duration_s * sample_rate)] float32."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    phase = 2 * np.pi * f0_hz * t + 0.5 * np.sin(2 * np.pi * 5.0 * t)
    y = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    envelope = np.minimum(1.0, 20 * t) * np.minimum(1.0, 20 * (t[-1] - t))
    return (amplitude * envelope * y / n_harmonics).astype(np.float32)


def write_ljspeech(root: Path, texts: list[str], durations_s: list[float],
                   sample_rate: int = TINY_SAMPLE_RATE) -> Path:
    """Write an LJSpeech-format folder (``metadata.csv`` + ``wavs/``) of harmonic tones."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (text, duration_s) in enumerate(zip(texts, durations_s)):
        utt_id = f"TINY-{i:04d}"
        sf.write(root / "wavs" / f"{utt_id}.wav",
                 harmonic_tone(duration_s, sample_rate, 110.0 + 20.0 * i), sample_rate,
                 subtype="PCM_16")
        lines.append(f"{utt_id}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_ljspeech(tmp_path_factory) -> Path:
    """A 6-item LJSpeech folder: 8 kHz 16-bit harmonic tones of 0.5-1.2 s, simple English.

    Layout: ``metadata.csv`` (``id|text|normalized``) and ``wavs/TINY-000i.wav``. Treat it
    as read-only (it is shared by the whole session).
    """
    return write_ljspeech(tmp_path_factory.mktemp("tiny_ljspeech"), TINY_TEXTS, TINY_DURATIONS_S)


@pytest.fixture
def tiny_audio_config() -> AudioConfig:
    """8 kHz, n_fft 64, hop 16, win 64, 16 mel bands."""
    return AudioConfig(sample_rate=TINY_SAMPLE_RATE, n_fft=64, hop_length=16, win_length=64,
                       n_mels=16)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run far faster on one thread than on two contended ones (measured: up to
    150x on a loaded 2-core machine), so every test uses one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_untrained_teacher(path: Path, overrides: dict | None = None) -> Path:
    """Build the ``tiny/teacher`` VITS (seed 0, config ``overrides``) and save it untrained as a
    nixdistill checkpoint at ``path``."""
    from nixdistill.config import load_config
    from nixdistill.teacher.loader import build_teacher_model
    from nixdistill.text import build_frontend

    exp = load_config("tiny/teacher", overrides)
    torch.manual_seed(0)
    model, _ = build_teacher_model(exp, build_frontend(exp.text))
    torch.save({"format": "nixdistill-train", "stage": "teach", "step": 0,
                "models": {"generator": model.state_dict()}, "config": exp.to_dict()}, path)
    return path
