"""``nixdistill distil-encoder``: train the Nix-TTS student encoder against a frozen teacher."""

from __future__ import annotations

import click

LATENT_CHOICES = ["auto", "posterior", "prior"]


@click.command("distil-encoder")
@click.option("--teacher", "teacher_ref", required=True,
              help="Teacher: nixdistill run/checkpoint, VITS G_*.pth, Piper .onnx or voice package.")
@click.option("--data", "data_ref", required=True, type=click.Path(exists=True),
              help="Dataset folder or filelist (audio for posterior latents; text is enough for prior).")
@click.option("--config", "config_ref", default="students/encoder_base", show_default=True,
              help="Encoder config file or shipped name, e.g. tiny/encoder.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder (config, checkpoints, tensorboard).")
@click.option("--latents", type=click.Choice(LATENT_CHOICES), default="auto", show_default=True,
              help="Teacher latent source: posterior q(z|audio) or prior from text.")
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps.")
@click.option("--max-minutes", type=float, default=None, help="Stop after this wall time.")
@click.option("--cache-latents", is_flag=True,
              help="Cache teacher latents on disk (one safetensors shard per utterance).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Latent cache folder (implies --cache-latents); pass the same folder to "
                   "distil-decoder to reuse the teacher passes.")
@click.option("--speakers", default=None,
              help="A multi-speaker teacher's speakers to learn, by id or name, comma-separated "
                   "(default: all; one gives a single-speaker student).")
@click.option("--extra-text", "extra_text", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="More sentences for the encoder only (a text file, one per line; repeatable). "
                   "Their teacher latents skip the teacher's decoder, so they are cheap. Needs "
                   "prior latents and train.extra.aligner \"auto\".")
@click.pass_context
def command(ctx: click.Context, teacher_ref: str, data_ref: str, config_ref: str, out_dir: str,
            latents: str, resume: bool, max_steps: int | None, max_minutes: float | None,
            cache_latents: bool, cache_dir: str | None, speakers: str | None,
            extra_text: tuple[str, ...]) -> None:
    """Distil the teacher's text-to-latent path into a small Nix-TTS encoder."""
    from nixdistill.distill.distil_encoder import run_distil_encoder

    obj = ctx.obj or {}
    result = run_distil_encoder(
        teacher_ref, data_ref, config_ref, out_dir, latents=latents,
        device=obj.get("device", "cpu"), resume=resume, max_steps=max_steps,
        max_minutes=max_minutes, cache_latents=cache_latents, seed=obj.get("seed"),
        cache_dir=cache_dir, speakers=speakers, extra_text=extra_text,
    )
    click.echo(f"distil-encoder stopped at step {result.step} ({result.reason}); "
               f"checkpoint {result.checkpoint}", err=True)
