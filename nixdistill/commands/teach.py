"""``nixdistill teach``: train (or fine-tune) a VITS/VITS2 teacher."""

from __future__ import annotations

import click


@click.command("teach")
@click.option("--config", "config_ref", default=None,
              help="Config file or shipped name (e.g. tiny/teacher). Optional with --resume.")
@click.option("--data", "data_ref", required=True, type=click.Path(exists=True),
              help="Dataset folder or filelist (LJSpeech, KSS, filelist).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: config.json, checkpoints/, tensorboard/.")
@click.option("--resume", is_flag=True, help="Continue exactly from RUN/checkpoints/last.pt.")
@click.option("--max-steps", type=click.IntRange(min=0), default=None,
              help="Stop after this many optimiser steps in total.")
@click.option("--max-minutes", type=click.FloatRange(min=0), default=None,
              help="Stop after this many minutes of wall time.")
@click.option("--init", "init", default=None,
              help="Teacher to fine-tune from (run folder, G_*.pth, .onnx, Piper package).")
@click.pass_context
def command(ctx: click.Context, config_ref, data_ref, out_dir, resume, max_steps, max_minutes,
            init) -> None:
    """Train a VITS/VITS2 teacher on DATA; the run folder is then a teacher reference."""
    from nixdistill.distill.teach import run_teach

    obj = ctx.obj or {}
    result = run_teach(config_ref, data_ref, out_dir, device=obj.get("device", "cpu"),
                       resume=resume, max_steps=max_steps, max_minutes=max_minutes, init=init,
                       seed=obj.get("seed"))
    click.echo(f"teach stopped at step {result.step} ({result.reason}); "
               f"checkpoint: {result.checkpoint}")
