"""``nixdistill prepare``: validate a dataset, write train/val filelists and stats.json."""

from __future__ import annotations

import click

KIND_CHOICES = ["auto", "ljspeech", "kss", "filelist", "text"]
FRONTEND_CHOICES = ["english_chars", "korean_jamo", "espeak"]
MAX_SKIPPED_SHOWN = 10


@click.command("prepare")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder for train.txt, val.txt and stats.json.")
@click.option("--config", "config_ref", default=None,
              help="Config file or shipped config name (default: built-in defaults).")
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="auto", show_default=True,
              help="Dataset layout.")
@click.option("--val-size", type=int, default=None,
              help="Validation items (default: the config's data.val_size).")
@click.option("--sample-rate", type=int, default=None,
              help="Training sample rate in Hz (overrides the config).")
@click.option("--frontend", type=click.Choice(FRONTEND_CHOICES), default=None,
              help="Text frontend (overrides the config).")
@click.pass_context
def command(ctx: click.Context, dataset: str, out_dir: str, config_ref: str | None, kind: str,
            val_size: int | None, sample_rate: int | None, frontend: str | None) -> None:
    """Check every item of DATASET and write filelists for training.

    DATASET is an LJSpeech or KSS folder, a `wav|text` / `wav|speaker|text` filelist or a
    text file. Items with unreadable audio, empty text, unknown symbols, a duration outside
    the config's range, or more tokens than frames are skipped and listed in stats.json.
    """
    from rich.console import Console
    from rich.table import Table

    from ..config import config_from_raw, load_config
    from ..data import prepare_dataset

    overrides: dict[str, dict] = {}
    if sample_rate is not None:
        overrides["audio"] = {"sample_rate": sample_rate}
    if frontend is not None:
        overrides["text"] = {"frontend": frontend}
    cfg = (load_config(config_ref, overrides) if config_ref
           else config_from_raw({}, source="<defaults>", overrides=overrides))
    seed = (ctx.obj or {}).get("seed")
    report = prepare_dataset(dataset, out_dir, cfg, kind=kind, val_size=val_size, seed=seed,
                             progress=True)

    console = Console(stderr=True)
    table = Table(title=f"prepare {report.dataset} ({report.kind})", show_header=False)
    table.add_row("items kept", f"{report.n_items} of {report.n_total} "
                                f"(train {report.n_train}, val {report.n_val})")
    table.add_row("audio", f"{report.hours:.3f} h ({report.total_seconds:.1f} s)")
    rates = ", ".join(f"{sr} Hz: {n}" for sr, n in report.sample_rates.items())
    table.add_row("sample rates seen", rates or "-")
    table.add_row("training rate / hop", f"{report.sample_rate} Hz / {report.hop_length}")
    table.add_row("frontend", report.frontend)
    table.add_row("speakers", ", ".join(f"{s}: {n}" for s, n in report.speakers.items()))
    skipped = ", ".join(f"{r}: {n}" for r, n in report.skipped_by_reason.items())
    table.add_row("skipped", skipped or "none")
    console.print(table)
    for item in report.skipped[:MAX_SKIPPED_SHOWN]:
        console.print(f"  skipped {item.utt_id}: {item.reason} ({item.detail})", markup=False)
    if len(report.skipped) > MAX_SKIPPED_SHOWN:
        more = len(report.skipped) - MAX_SKIPPED_SHOWN
        console.print(f"  ... {more} more in {report.stats_path}", markup=False)
    console.print(f"wrote {report.train_path}, {report.val_path}, {report.stats_path}")
