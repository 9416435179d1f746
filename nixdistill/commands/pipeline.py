"""``nixdistill pipeline PRESET_OR_CONFIG --out RUN_DIR``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table


@click.command("pipeline")
@click.argument("preset", default="joe-quick")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder; re-running into it skips finished stages and resumes the rest.")
@click.option("--data", default=None, help="Dataset or text file; overrides the preset's.")
@click.option("--max-steps", type=int, default=None,
              help="Cap every training stage at N steps (smoke runs).")
@click.pass_context
def command(ctx: click.Context, preset: str, out_dir: str, data: str | None,
            max_steps: int | None) -> None:
    """Run teacher -> distil-encoder -> distil-decoder -> export -> benchmark from a preset.

    Shipped presets: joe-quick (default, ~30 min on a 2-core CPU), joe-full (GPU),
    ljspeech and kss (train a teacher on --data first).

    Example: nixdistill pipeline joe-quick --out runs/joe-quick
    """
    from ..pipeline import run_pipeline

    console = Console(stderr=True)
    summary = run_pipeline(preset, out_dir, data=data, device=ctx.obj["device"],
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
