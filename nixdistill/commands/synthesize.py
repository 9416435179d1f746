"""``nixdistill synthesize``: text -> audio with an exported student (or, with --teacher, a teacher).

* ``--model student.safetensors`` runs the PyTorch student; ``--model NAME.onnx`` runs an ONNX
  export (Piper voice or two graphs) on onnxruntime in a process that never imports torch.
* Text comes from ``--text``, from ``--text-file`` (one wav per line) or from standard input.
* Text of any length is split into sentences and spoken one after another; the audio is
  written as it comes (``--stream``: chunk by chunk within a sentence), so memory stays
  bounded. ``--out -`` writes raw 16-bit mono PCM to standard output (like ``piper
  --output-raw``); messages go to standard error.

The student path imports no teacher code: ``nixdistill.teacher.loader`` is imported only in the
``--teacher`` branch.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterator

import click

DEFAULT_NOISE_SCALE = 0.667
DEFAULT_NOISE_SCALE_W = 0.8
DEFAULT_LENGTH_SCALE = 1.0
# --text-file outputs are named <index>.wav with this many digits.
INDEX_DIGITS = 4
STDOUT = "-"


def _read_lines(path: str) -> list[str]:
    from pathlib import Path

    from ..errors import NixdistillError

    p = Path(path)
    if not p.is_file():
        raise NixdistillError(f"text file {p} does not exist")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise NixdistillError(f"text file {p} has no non-empty lines")
    return lines


class AudioSink:
    """Writes float chunks as they come, as 16-bit PCM: a wav file, or raw little-endian
    samples on stdout (``-``), flushed after every chunk."""

    def __init__(self, out_path: str, sample_rate: int) -> None:
        self.n_samples = 0
        self._file = None
        if out_path != STDOUT:
            from pathlib import Path

            import soundfile as sf

            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(out_path, "w", sample_rate, 1, subtype="PCM_16")

    def write(self, chunk) -> None:
        import numpy as np

        chunk = np.clip(np.asarray(chunk, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if self._file is not None:
            self._file.write(chunk)
        else:  # libsndfile's float -> PCM_16 scaling, so '-' and a wav hold the same samples
            pcm = np.clip(np.rint(chunk * 32768.0), -32768, 32767).astype("<i2")
            sys.stdout.buffer.write(pcm.tobytes())
            sys.stdout.buffer.flush()
        self.n_samples += len(chunk)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _speak_to(out_path: str, sample_rate: int, chunks: Iterator) -> float:
    """Write every chunk to ``out_path`` as it comes; returns the seconds of audio written.

    A failure (e.g. an unknown symbol in a later sentence) removes the partial wav file.
    """
    from pathlib import Path

    from ..text import TextError

    chunks = iter(chunks)
    first = next(chunks, None)  # the first sentence's errors surface before any file exists
    if first is None:
        raise TextError("cannot synthesize empty text")
    sink = AudioSink(out_path, sample_rate)
    try:
        sink.write(first)
        for chunk in chunks:
            sink.write(chunk)
    except BaseException:
        sink.close()
        if out_path != STDOUT:
            Path(out_path).unlink(missing_ok=True)
        raise
    sink.close()
    return sink.n_samples / sample_rate


@click.command("synthesize")
@click.option("--model", "model_path", default=None,
              help="An exported student: student.safetensors (PyTorch) or NAME.onnx "
                   "(onnxruntime, no torch; a Piper voice or a two-graph export).")
@click.option("--teacher", "teacher_ref", default=None,
              help="Speak with a teacher instead (run, G_*.pth, Piper .onnx or voice package).")
@click.option("--text", default=None, help="The text to speak (any length; default: stdin).")
@click.option("--text-file", default=None,
              help="One utterance per line; writes OUT/0000.wav, OUT/0001.wav, ...")
@click.option("--out", "out_path", required=True,
              help="Output wav, '-' for raw 16-bit PCM on stdout, or a folder (--text-file).")
@click.option("--stream", is_flag=True,
              help="Decode in chunks within each sentence and write each as it comes "
                   "(the same audio, sooner).")
@click.option("--noise-scale", type=float, default=None,
              help="Latent sampling temperature (0: deterministic; default: the model's "
                   f"shipped default; {DEFAULT_NOISE_SCALE} for teachers).")
@click.option("--noise-scale-w", type=float, default=None,
              help="Duration noise of a stochastic duration predictor (default: the model's; "
                   f"{DEFAULT_NOISE_SCALE_W} for teachers).")
@click.option("--length-scale", type=float, default=None,
              help="> 1 speaks slower (default: the model's shipped default; "
                   f"{DEFAULT_LENGTH_SCALE} for teachers).")
@click.option("--speaker", type=int, default=None, help="Speaker id of a multi-speaker model.")
@click.pass_context
def command(ctx: click.Context, model_path: str | None, teacher_ref: str | None,
            text: str | None, text_file: str | None, out_path: str, stream: bool,
            noise_scale: float | None, noise_scale_w: float | None, length_scale: float | None,
            speaker: int | None) -> None:
    """Speak TEXT (or stdin, or every line of --text-file) with a student or a teacher."""
    from pathlib import Path

    from ..text import TextError
    from ..text.sentences import split_sentences

    if (model_path is None) == (teacher_ref is None):
        raise click.UsageError("give exactly one of --model or --teacher")
    if text is not None and text_file is not None:
        raise click.UsageError("give at most one of --text or --text-file")
    if text is None and text_file is None:
        text = sys.stdin.read()
    if text is not None and not text.strip():
        raise TextError("cannot synthesize empty text")
    obj = ctx.obj or {}
    kwargs = dict(noise_scale=noise_scale, length_scale=length_scale, speaker=speaker)
    speak: Callable[[str], Iterator]
    if model_path is not None and Path(model_path).suffix == ".onnx":
        from nixdistill.deploy.runtime import load_voice

        voice = load_voice(model_path)
        sample_rate = voice.sample_rate

        def speak(utterance: str) -> Iterator:
            if stream:
                return voice.stream(utterance, noise_w=noise_scale_w, **kwargs)
            return (voice.synthesize(s, noise_w=noise_scale_w, **kwargs)
                    for s in split_sentences(utterance, language=voice.frontend.language))
    elif model_path is not None:
        import torch

        from ..cli import resolve_device
        from nixdistill.deploy.student import load_student

        student = load_student(model_path, device=resolve_device(obj.get("device", "cpu")))
        sample_rate = student.sample_rate
        if obj.get("seed") is not None:
            torch.manual_seed(obj["seed"])

        def speak(utterance: str) -> Iterator:
            if stream:
                return student.stream(utterance, noise_scale_w=noise_scale_w, **kwargs)
            return (student.synthesize(s, noise_scale_w=noise_scale_w, **kwargs)
                    for s in split_sentences(utterance, language=student.frontend.language))
    else:
        from ..cli import resolve_device
        from nixdistill.teacher.loader import load_teacher

        teacher = load_teacher(teacher_ref, device=resolve_device(obj.get("device", "cpu")))
        sample_rate = teacher.audio.sample_rate
        noise_w = DEFAULT_NOISE_SCALE_W if noise_scale_w is None else noise_scale_w
        teacher_noise = DEFAULT_NOISE_SCALE if noise_scale is None else noise_scale
        teacher_length = DEFAULT_LENGTH_SCALE if length_scale is None else length_scale

        def speak(utterance: str) -> Iterator:
            return (teacher.synthesize(s, noise_scale=teacher_noise, length_scale=teacher_length,
                                       noise_scale_w=noise_w, sid=speaker, seed=obj.get("seed"))
                    for s in split_sentences(utterance, language=teacher.frontend.language))

    if text is not None:
        seconds = _speak_to(out_path, sample_rate, speak(text))
        click.echo(f"wrote {'stdout' if out_path == STDOUT else out_path} "
                   f"({seconds:.2f} s)", err=True)
        return
    if out_path == STDOUT:
        raise click.UsageError("--text-file writes one wav per line into a folder, not '-'")
    lines = _read_lines(text_file)
    out_dir = Path(out_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i, sentence in enumerate(lines):
        total += _speak_to(str(out_dir / f"{i:0{INDEX_DIGITS}d}.wav"), sample_rate,
                           speak(sentence))
    click.echo(f"wrote {len(lines)} files to {out_dir} ({total:.2f} s of audio)", err=True)
