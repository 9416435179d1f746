"""``nixdistill synthesize``: text -> wav with an exported student (or, with --teacher, a teacher).

The student path imports no teacher code: ``nixdistill.teacher`` is imported only in the
``--teacher`` branch.
"""

from __future__ import annotations

import click

DEFAULT_NOISE_SCALE = 0.667
DEFAULT_NOISE_SCALE_W = 0.8
DEFAULT_LENGTH_SCALE = 1.0
# --text-file outputs are named <index>.wav with this many digits.
INDEX_DIGITS = 4


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


@click.command("synthesize")
@click.option("--model", "model_path", default=None, help="An exported student.safetensors.")
@click.option("--teacher", "teacher_ref", default=None,
              help="Speak with a teacher instead (run, G_*.pth, Piper .onnx or voice package).")
@click.option("--text", default=None, help="The sentence to speak.")
@click.option("--text-file", default=None,
              help="One sentence per line; writes OUT/0000.wav, OUT/0001.wav, ...")
@click.option("--out", "out_path", required=True,
              help="Output wav (with --text) or output folder (with --text-file).")
@click.option("--noise-scale", type=float, default=DEFAULT_NOISE_SCALE, show_default=True,
              help="Latent sampling temperature (0: deterministic).")
@click.option("--noise-scale-w", type=float, default=DEFAULT_NOISE_SCALE_W, show_default=True,
              help="Duration noise of a teacher's stochastic duration predictor (--teacher only).")
@click.option("--length-scale", type=float, default=DEFAULT_LENGTH_SCALE, show_default=True,
              help="> 1 speaks slower.")
@click.option("--speaker", type=int, default=None, help="Speaker id of a multi-speaker model.")
@click.pass_context
def command(ctx: click.Context, model_path: str | None, teacher_ref: str | None,
            text: str | None, text_file: str | None, out_path: str, noise_scale: float,
            noise_scale_w: float, length_scale: float, speaker: int | None) -> None:
    """Speak TEXT (or every line of --text-file) with a student file or a teacher."""
    from pathlib import Path

    from ..audio import save_wav
    from ..text import TextError

    if (model_path is None) == (teacher_ref is None):
        raise click.UsageError("give exactly one of --model or --teacher")
    if (text is None) == (text_file is None):
        raise click.UsageError("give exactly one of --text or --text-file")
    if text is not None and not text.strip():
        raise TextError("cannot synthesize empty text")
    device = (ctx.obj or {}).get("device", "cpu")

    if model_path is not None:
        from ..student import load_student

        student = load_student(model_path, device=device)
        sample_rate = student.sample_rate
        seed = (ctx.obj or {}).get("seed")
        if seed is not None:
            import torch

            torch.manual_seed(seed)

        def speak(sentence: str):
            return student.synthesize(sentence, noise_scale=noise_scale,
                                      length_scale=length_scale, speaker=speaker)
    else:
        from ..teacher import load_teacher

        teacher = load_teacher(teacher_ref, device=device)
        sample_rate = teacher.audio.sample_rate

        def speak(sentence: str):
            return teacher.synthesize(sentence, noise_scale=noise_scale,
                                      length_scale=length_scale, noise_scale_w=noise_scale_w,
                                      sid=speaker, seed=(ctx.obj or {}).get("seed"))

    if text is not None:
        wav = speak(text)
        save_wav(out_path, wav, sample_rate)
        click.echo(f"wrote {out_path} ({len(wav) / sample_rate:.2f} s)", err=True)
        return
    lines = _read_lines(text_file)
    out_dir = Path(out_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i, sentence in enumerate(lines):
        wav = speak(sentence)
        save_wav(out_dir / f"{i:0{INDEX_DIGITS}d}.wav", wav, sample_rate)
        total += len(wav) / sample_rate
    click.echo(f"wrote {len(lines)} files to {out_dir} ({total:.2f} s of audio)", err=True)
