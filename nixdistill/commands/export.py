"""``nixdistill export``: encoder run + decoder run -> one student file (safetensors, ONNX or a
Piper voice)."""

from __future__ import annotations

import click

FORMAT_CHOICES = ["safetensors", "onnx", "piper"]


@click.command("export")
@click.option("--encoder", "encoder_run", required=True, type=click.Path(exists=True),
              help="A distil-encoder run folder (or checkpoint).")
@click.option("--decoder", "decoder_run", required=True, type=click.Path(exists=True),
              help="A distil-decoder run folder (or checkpoint).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output file: student.safetensors; NAME.onnx with --format onnx; "
                   "DIR/<lang>-<name>-<quality>.onnx with --format piper.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="safetensors",
              show_default=True,
              help="onnx writes NAME.encoder.onnx, NAME.decoder.onnx and NAME.onnx.json; piper "
                   "writes one graph NAME.onnx + NAME.onnx.json that Piper runtimes load.")
@click.option("--teacher-config", default=None, type=click.Path(exists=True, dir_okay=False),
              help="--format piper: the teacher voice's .onnx.json (default: the one next to "
                   "the teacher .onnx the runs recorded).")
def command(encoder_run: str, decoder_run: str, out_path: str, fmt: str,
            teacher_config: str | None) -> None:
    """Export a trained student (inference weights + metadata) from its two runs."""
    import tempfile
    from pathlib import Path

    from ..export import export_student

    if fmt == "safetensors":
        path = export_student(encoder_run, decoder_run, out_path)
        click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)", err=True)
        return
    from ..onnx_export import export_onnx, export_piper

    with tempfile.TemporaryDirectory() as tmp:
        student = export_student(encoder_run, decoder_run, Path(tmp) / "student.safetensors")
        if fmt == "piper":
            paths = export_piper(student, out_path, teacher_config)
        else:
            paths = export_onnx(student, out_path)
    for p in paths:
        click.echo(f"wrote {p}", err=True)
