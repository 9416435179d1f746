"""``nixdistill distil-decoder``: train a student decoder against the teacher's decoder."""

from __future__ import annotations

import click

DECODER_CHOICES = ["nix", "istft"]
LATENT_CHOICES = ["auto", "posterior", "prior"]


@click.command("distil-decoder")
@click.option("--teacher", "teacher_ref", required=True,
              help="Teacher: nixdistill run/checkpoint, VITS G_*.pth, Piper .onnx or voice package.")
@click.option("--data", "data_ref", required=True, type=click.Path(exists=True),
              help="Dataset folder or filelist (audio for posterior latents; text is enough for prior).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder (config, checkpoints, tensorboard).")
@click.option("--decoder", "kind", type=click.Choice(DECODER_CHOICES), default="nix",
              show_default=True, help="Decoder type; selects the shipped students/decoder_<kind> config.")
@click.option("--config", "config_ref", default=None,
              help="Decoder config file or shipped name (overrides --decoder), e.g. tiny/decoder_istft.")
@click.option("--latents", type=click.Choice(LATENT_CHOICES), default="auto", show_default=True,
              help="Teacher latent source: posterior q(z|audio) or prior from text.")
@click.option("--encoder", "encoder_run", default=None, type=click.Path(exists=True),
              help="A distil-encoder run whose latents are mixed in (then: nixdistill export).")
@click.option("--init", "init_run", default=None, type=click.Path(exists=True),
              help="A distil-decoder run whose decoder starts this one (e.g. an adversarial "
                   "polish after a reconstruction-only run).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps.")
@click.option("--max-minutes", type=float, default=None, help="Stop after this wall time.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Teacher-latent cache folder, e.g. the one given to distil-encoder.")
@click.option("--speakers", default=None,
              help="A multi-speaker teacher's speakers, by id or name, comma-separated "
                   "(default: the --encoder run's, else all).")
@click.pass_context
def command(ctx: click.Context, teacher_ref: str, data_ref: str, out_dir: str, kind: str,
            config_ref: str | None, latents: str, encoder_run: str | None,
            init_run: str | None, resume: bool,
            max_steps: int | None, max_minutes: float | None, cache_dir: str | None,
            speakers: str | None) -> None:
    """Distil the teacher's decoder into a small student decoder (Nix-TTS or iSTFT)."""
    from nixdistill.distill.distil_decoder import run_distil_decoder

    obj = ctx.obj or {}
    result = run_distil_decoder(
        teacher_ref, data_ref, config_ref or f"students/decoder_{kind}", out_dir,
        latents=latents, encoder_run=encoder_run, device=obj.get("device", "cpu"), resume=resume,
        max_steps=max_steps, max_minutes=max_minutes, seed=obj.get("seed"),
        cache_dir=cache_dir, init_run=init_run, speakers=speakers,
    )
    click.echo(f"distil-decoder stopped at step {result.step} ({result.reason}); "
               f"checkpoint {result.checkpoint}", err=True)
