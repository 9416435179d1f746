"""``nixdistill benchmark``: teacher and student(s) side by side (size, speed, memory, quality)."""

from __future__ import annotations

import shlex

import click

from ..benchmark.settings import DEFAULT_N_SENTENCES


@click.command("benchmark")
@click.option("--teacher", "teacher_ref", required=True,
              help="Teacher reference: checkpoint, G_*.pth, Piper .onnx or voice package name.")
@click.option("--student", "students", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Exported student.safetensors (repeat for several students).")
@click.option("--teacher-only", is_flag=True, help="Benchmark the teacher alone.")
@click.option("--texts", "texts_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Sentences, one per line, or 'id|text' filelist rows (default: bundled "
                   "sentences in the teacher's language).")
@click.option("--n-sentences", type=int, default=DEFAULT_N_SENTENCES, show_default=True,
              help="Use the first N sentences.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed passes.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed warm-up passes.")
@click.option("--threads", default="1,all", show_default=True,
              help="Comma-separated torch thread counts; 'all' = every core.")
@click.option("--json", "out_json", default=None, help="Write the JSON result here ('-': stdout).")
@click.option("--report", "out_report", type=click.Path(dir_okay=False), default=None,
              help="Write a Markdown report here.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None,
              help="Write mel.png and rtf.png into this folder.")
@click.option("--no-quality", is_flag=True, help="Skip MCD, ASR and DNSMOS (speed and size only).")
@click.option("--no-memory", is_flag=True, help="Skip the memory measurement.")
@click.option("--no-onnx", is_flag=True, help="Skip the ONNX Runtime columns.")
@click.option("--int8", is_flag=True,
              help="Also time, in ONNX Runtime, a copy of each student with int8 MatMul weights "
                   "(what 'export --int8' writes), as its own row '<student> int8'.")
@click.option("--noise-scales", default="", show_default=False,
              help="Score the full student at these noise scales, e.g. 0,0.3,0.5,0.667.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampled clips (sentence i uses seed + i).")
@click.option("--draws", type=click.IntRange(min=1), default=1, show_default=True,
              help="Score each model as shipped over this many sampled clips per sentence "
                   "(mean and each draw); a sampled teacher's WER moves with the seed.")
@click.option("--real", "real_filelist", type=click.Path(exists=True), default=None,
              help="Dataset or filelist of real recordings to score (ASR, DNSMOS) as a reference.")
@click.pass_context
def command(ctx: click.Context, teacher_ref: str, students: tuple[str, ...], teacher_only: bool,
            texts_file: str | None, n_sentences: int, repeats: int, warmup: int, threads: str,
            out_json: str | None, out_report: str | None, plots_dir: str | None,
            no_quality: bool, no_memory: bool, no_onnx: bool, int8: bool, noise_scales: str,
            seed: int, draws: int,
            real_filelist: str | None) -> None:
    """Compare a teacher with its distilled student(s) on the same sentences.

    Teacher and students run interleaved in one process, so the speed-up ratio holds on a
    busy machine. Tables go to stderr; --json writes the machine-readable result.
    """
    from rich.console import Console

    from ..benchmark import BenchmarkError, BenchmarkSettings, read_texts, run_benchmark
    from ..benchmark.report import render_tables, write_outputs

    if not students and not teacher_only:
        raise BenchmarkError("give at least one --student, or --teacher-only")
    if students and teacher_only:
        raise BenchmarkError("--teacher-only and --student exclude each other")
    settings = BenchmarkSettings(
        n_sentences=n_sentences, repeats=repeats, warmup=warmup, threads=threads,
        eval_quality=not no_quality, measure_memory=not no_memory, onnxruntime=not no_onnx,
        int8=int8, noise_scales=noise_scales, seed=seed, draws=draws)
    result = run_benchmark(
        teacher_ref, list(students), texts=read_texts(texts_file) if texts_file else None,
        settings=settings, device=(ctx.obj or {}).get("device", "cpu"),
        real_filelist=real_filelist, command=_command_line(ctx),
    )
    write_outputs(result, out_json, out_report, plots_dir)
    console = Console(stderr=True)
    render_tables(result, console)
    for label, path in (("report", out_report), ("json", out_json)):
        if path and path != "-":
            console.print(f"{label}: {path}")


def _command_line(ctx: click.Context) -> str:
    """The invocation as a shell line, rebuilt from the parsed options (not ``sys.argv``,
    which is the test runner's under ``CliRunner``)."""
    words = ["nixdistill", ctx.info_name or "benchmark"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == () or value == param.default:
            continue
        flag = max(param.opts, key=len)
        if value is True:
            words.append(flag)
        else:
            for v in value if isinstance(value, tuple) else (value,):
                words += [flag, str(v)]
    return shlex.join(words)
