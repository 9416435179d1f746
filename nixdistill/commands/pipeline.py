"""``nixdistill pipeline PRESET_OR_CONFIG --out RUN_DIR``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table


@click.command("pipeline")
@click.argument("preset", default="joe-quick")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder; re-running into it skips finished stages and resumes the rest.")
@click.option("--teacher", default=None,
              help="The teacher to distil, replacing the preset's: a Piper .onnx (with its "
                   ".onnx.json), an installed voice package, a VITS/vits2 G_*.pth (with its "
                   "config.json), or a nixdistill run.")
@click.option("--data", default=None,
              help="Dataset or text file; overrides the preset's (the shipped presets' text is "
                   "English: give text in the voice's language for any other).")
@click.option("--speakers", default=None,
              help="A multi-speaker teacher's speakers to learn, by id or name, comma-separated "
                   "(default: all; one gives a single-speaker student).")
@click.option("--max-steps", type=int, default=None,
              help="Cap every training stage at N steps (smoke runs).")
@click.pass_context
def command(ctx: click.Context, preset: str, out_dir: str, teacher: str | None,
            data: str | None, speakers: str | None, max_steps: int | None) -> None:
    """Run teacher -> distil-encoder -> distil-decoder -> export -> benchmark from a preset.

    Shipped presets: joe-quick (default, ~25 min on a 2-core CPU), joe-full (GPU), quick and
    full (the same for any --teacher), ljspeech and kss (train a teacher on --data first).

    Examples: nixdistill pipeline joe-quick --out runs/joe-quick;
    nixdistill pipeline quick --teacher voices/de_DE-thorsten-medium.onnx --data de.txt
    --out runs/thorsten
    """
    from ..pipeline import run_pipeline

    console = Console(stderr=True)
    summary = run_pipeline(preset, out_dir, data=data, teacher=teacher, speakers=speakers,
                           device=ctx.obj["device"],
                           seed=ctx.obj["seed"], max_steps=max_steps,
                           log=lambda s: console.print(s, highlight=False))
    table = Table(title=f"pipeline {summary.preset} -> {summary.run_dir}")
    for col in ("stage", "status", "minutes", "output", "detail"):
        table.add_column(col)
    for st in summary.stages:
        table.add_row(st.name, st.status, f"{st.seconds / 60:.1f}", st.output, st.detail)
    console.print(table)
    for key, value in summary.headline.items():
        console.print(f"  {key}: {value}")
