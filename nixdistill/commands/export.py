"""``nixdistill export``: encoder run + decoder run -> one student file (safetensors, ONNX, a
Piper voice with sherpa-onnx's tokens.txt, or a static web page that speaks it offline)."""

from __future__ import annotations

import click

FORMAT_CHOICES = ["safetensors", "onnx", "piper", "web"]


@click.command("export")
@click.option("--encoder", "encoder_run", default=None, type=click.Path(exists=True),
              help="A distil-encoder run folder (or checkpoint).")
@click.option("--decoder", "decoder_run", default=None, type=click.Path(exists=True),
              help="A distil-decoder run folder (or checkpoint).")
@click.option("--student", "student_path", default=None, type=click.Path(exists=True),
              help="Instead of the two runs: an exported student.safetensors (e.g. the "
                   "pipeline's), converted with its shipped defaults to --format onnx/piper/web.")
@click.option("--voice", "voice_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="--format web: put this Piper voice (.onnx next to its .onnx.json, e.g. an "
                   "earlier --format piper export) on the page instead of a student.")
@click.option("--out", "out_path", required=True, type=click.Path(),
              help="Output file: student.safetensors; NAME.onnx with --format onnx; with "
                   "--format piper DIR/<lang>-<name>-<quality>.onnx, or a folder (ending in /) "
                   "to name the voice after its teacher, e.g. DIR/en_US-joe_nix-medium.onnx; "
                   "with --format web the page's folder.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="safetensors",
              show_default=True,
              help="onnx writes NAME.encoder.onnx, NAME.decoder.onnx and NAME.onnx.json; piper "
                   "writes one graph NAME.onnx + NAME.onnx.json that Piper runtimes load, and "
                   "tokens.txt beside it for sherpa-onnx; web writes a static page (serve the "
                   "folder, e.g. python -m http.server) that speaks the voice in the browser "
                   "with onnxruntime-web and piper-tts-web's WASM phonemizer (needs npm once).")
@click.option("--teacher-config", default=None, type=click.Path(exists=True, dir_okay=False),
              help="--format piper/web: the teacher voice's .onnx.json (default: the one next "
                   "to the teacher .onnx the runs recorded).")
@click.option("--with-teacher", is_flag=True,
              help="--format web: also put the teacher voice on the page (a Piper teacher whose "
                   ".onnx is still where the student records it), to compare the two.")
@click.option("--int8", is_flag=True,
              help="--format onnx/piper/web: store MatMul weights as int8 (onnxruntime dynamic "
                   "quantization; convolutions stay float): a smaller, faster voice for the "
                   "iSTFT decoder (measured in docs/EXPERIMENTS.md, int8); the convolutional "
                   "'nix' decoder has no MatMul weights, so nothing changes for it.")
@click.option("--noise-scale", type=float, default=None,
              help="The student's shipped latent noise (default: the encoder config's).")
@click.option("--length-scale", type=float, default=None,
              help="The student's shipped length scale (default: the encoder config's).")
@click.option("--noise-scale-w", type=float, default=None,
              help="The student's shipped duration noise (stochastic duration predictor).")
def command(encoder_run: str | None, decoder_run: str | None, student_path: str | None,
            voice_path: str | None, out_path: str, fmt: str, teacher_config: str | None,
            with_teacher: bool, int8: bool,
            noise_scale: float | None, length_scale: float | None,
            noise_scale_w: float | None) -> None:
    """Export a trained student (inference weights + metadata) from its two runs."""
    import json
    import tempfile
    from pathlib import Path

    from nixdistill.deploy.export import export_student

    defaults = {k: v for k, v in (("noise_scale", noise_scale), ("length_scale", length_scale),
                                  ("noise_scale_w", noise_scale_w)) if v is not None}
    if int8 and fmt == "safetensors":
        raise click.UsageError("--int8 quantizes ONNX graphs: use it with --format onnx, piper "
                               "or web")
    if with_teacher and fmt != "web":
        raise click.UsageError("--with-teacher puts the teacher on the web page: use it with "
                               "--format web")
    if voice_path is not None:
        if fmt != "web" or student_path or encoder_run or decoder_run or defaults \
                or teacher_config:
            raise click.UsageError("--voice puts an exported Piper voice on a page: use it with "
                                   "--format web alone (no --student, runs, scales or "
                                   "--teacher-config)")
        from nixdistill.deploy.web import export_web

        _report_web(export_web(out_path, voice=voice_path, int8=int8, with_teacher=with_teacher))
        return
    if student_path is not None:
        if encoder_run or decoder_run or defaults or fmt == "safetensors":
            raise click.UsageError("--student converts an exported student to --format onnx, "
                                   "piper or web as it is; it takes no --encoder/--decoder or "
                                   "scales")
    elif encoder_run is None or decoder_run is None:
        raise click.UsageError("give --encoder and --decoder runs, or --student FILE")
    if fmt == "safetensors":
        path = export_student(encoder_run, decoder_run, out_path, defaults)
        click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)", err=True)
        return
    from nixdistill.deploy.onnx import export_onnx
    from nixdistill.deploy.piper_voice import export_piper, write_sherpa_tokens
    from nixdistill.deploy.web import export_web

    with tempfile.TemporaryDirectory() as tmp:
        student = (Path(student_path) if student_path is not None else
                   export_student(encoder_run, decoder_run, Path(tmp) / "student.safetensors",
                                  defaults))
        if fmt == "web":
            _report_web(export_web(out_path, student=student, teacher_config=teacher_config,
                                   int8=int8, with_teacher=with_teacher))
            return
        if fmt == "piper":
            paths = export_piper(student, out_path, teacher_config, int8=int8)
            click.echo(f"wrote {write_sherpa_tokens(paths.config)} (sherpa-onnx)", err=True)
        else:
            paths = export_onnx(student, out_path, int8=int8)
    for p in paths:
        click.echo(f"wrote {p}", err=True)
    if int8:
        meta = json.loads(paths[-1].read_text(encoding="utf-8"))
        record = meta["nixdistill" if fmt == "piper" else "onnx"]["quantization"]
        click.echo(f"int8: {record['quantized_weights']} MatMul weight(s) quantized"
                   + ("" if record["quantized_weights"] else
                      " (this student has none: the graph computes as in float)"), err=True)


def _report_web(page) -> None:
    """One line per voice and the page's total size, on stderr."""
    for voice in page.voices:
        click.echo(f"wrote {voice} ({voice.stat().st_size / 1e6:.2f} MB)", err=True)
    click.echo(f"wrote {page.index} (page folder {page.size_bytes / 1e6:.1f} MB); serve it, e.g. "
               f"`python -m http.server -d {page.index.parent}`, and open http://localhost:8000",
               err=True)
