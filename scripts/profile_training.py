"""Where a training step of each distillation stage spends its time, on the real joe teacher.

Builds the encoder and decoder stages from a preset's shipped configs (as ``nixdistill
pipeline`` does), fills a latent cache for ``--n-items`` sentences of the shipped corpus, then
times ``--steps`` optimiser steps per setting after ``--warmup`` steps, split into

* ``data``: the loader (sampling, collation);
* ``forward``: the stage's ``training_step`` up to the optimiser: cached teacher latents,
  forward pass and every loss term;
* ``backward``: backward pass and gradient clipping;
* ``optimizer``: ``AdamW.step``.

Settings (``--threads`` x ``--precision`` x ``--variant`` x ``--compile``) run interleaved,
round by round, so a noisy machine affects them alike. A variant is ``NAME=JSON``: the JSON is
merged key by key into the stage's config (``{"train": {"extra": {"aligner": "auto"}}}``). A
``model`` or ``train`` key the stage's config lacks is skipped, but ``train.extra`` keys are
passed as given and a stage refuses ones it does not know: profile such a variant with
``--stage`` set to its stage. ``--compile model`` wraps the trained modules in
``torch.compile`` (dynamic shapes for the encoder, whose batches vary in length);
``warmup_seconds`` then includes the compilation. ``--ops`` adds a torch.profiler table of the
most expensive operators of the first setting. Prints one JSON object per stage on stdout.

Usage::

    python scripts/profile_training.py --stage decoder --threads 1,2 --precision fp32,bf16 \\
        --steps 10 --rounds 2
    python scripts/profile_training.py --stage encoder --variant base={} \\
        --variant no-aligner='{"train": {"extra": {"aligner": "auto"}}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nixdistill.config import config_from_raw, resolve_config_path
from nixdistill.data import TextOnlyDataset, Utterance, make_loader
from nixdistill.distill.context import LoopState, StepContext
from nixdistill.distill.distil_decoder import DistilDecoderStage
from nixdistill.distill.distil_encoder import DistilEncoderStage
from nixdistill.distill.distributed import DistInfo, resolve_autocast_dtype
from nixdistill.distill.latents import fill_latent_cache, open_latent_cache
from nixdistill.distill.optimizers import Optimizers
from nixdistill.distill.setup import decoder_model_config, encoder_model_config
from nixdistill.presets import load_preset
from nixdistill.resources import resource_path
from nixdistill.teacher.loader import load_teacher

PHASES = ("data", "forward", "backward", "optimizer")


class PhaseTimer:
    """Wraps an :class:`Optimizers` so that backward and ``AdamW.step`` are timed apart."""

    def __init__(self, optimizers: Optimizers) -> None:
        self.backward = self.optimizer = 0.0
        self._step = optimizers.step
        optimizers.step = self._timed_step
        for opt in optimizers.optimizers.values():
            opt.step = self._timed(opt.step)

    def _timed(self, fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            self.optimizer += time.perf_counter() - t0
            return out
        return run

    def _timed_step(self, name, loss):
        t0 = time.perf_counter()
        opt_before = self.optimizer
        out = self._step(name, loss)
        self.backward += time.perf_counter() - t0 - (self.optimizer - opt_before)
        return out


def merged(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in key by key (dicts recursively); keys ``base`` lacks
    are skipped, except under ``extra`` (free-form stage options)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merged(base[key], value) if key != "extra" else {**base[key], **value}
        elif key in base:
            out[key] = value
    return out


def stage_config(ref: str, precision: str, variant: dict):
    path = resolve_config_path(ref)
    raw = merged(json.loads(path.read_text(encoding="utf-8")), variant)
    raw.setdefault("train", {})["precision"] = precision
    return config_from_raw(raw, source=str(path))


def build_stage(kind: str, preset: dict, teacher, data, cache, precision: str,
                variant: dict | None = None):
    variant = variant or {}
    if kind == "encoder":
        exp = stage_config(preset.encoder.config, precision, variant)
        enc_cfg = encoder_model_config(exp.model, teacher, "profile")
        return exp, DistilEncoderStage(teacher, exp, enc_cfg, data, data, "prior", cache)
    exp = stage_config(preset.decoder.config, precision, variant)
    dec_cfg = decoder_model_config(exp.model, teacher.model_config.inter_channels, "profile")
    return exp, DistilDecoderStage(teacher, exp, dec_cfg, data, data, "prior", None, cache)


def time_setting(kind, preset, teacher, data, cache, threads, precision, variant, steps,
                 warmup, ops: bool, compiled: bool = False) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    exp, stage = build_stage(kind, preset, teacher, data, cache, precision, variant)
    device = torch.device("cpu")
    dtype, scaler = resolve_autocast_dtype(exp.train.precision, device)
    optimizers = Optimizers(stage.optimized(), exp.train, device, scaler)
    timer = PhaseTimer(optimizers)
    modules = dict(stage.modules())
    trained = {name for name, m in modules.items() if any(p.requires_grad for p in m.parameters())}
    for name, m in modules.items():
        m.train(name in trained)
    if compiled:
        # the trained modules as training_step calls them (ctx.model); the encoder's batches
        # vary in length, the decoder's segments do not
        modules = {name: torch.compile(m, dynamic=kind == "encoder") if name in trained else m
                   for name, m in modules.items()}
    state = LoopState()
    ctx = StepContext(state, exp.train, DistInfo(0, 1, 0, device, False), modules, optimizers,
                      None, dtype)
    loader = make_loader(stage.train_set, exp.train.batch_size, seed=0,
                         collate_fn=stage.collate_fn)
    batches = iter(loader)
    totals = dict.fromkeys(PHASES, 0.0)
    losses = []
    profiler = None
    t_start = time.perf_counter()
    warmup_seconds = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            warmup_seconds = time.perf_counter() - t_start
            totals = dict.fromkeys(PHASES, 0.0)
            timer.backward = timer.optimizer = 0.0
            if ops:
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                profiler.__enter__()
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        t1 = time.perf_counter()
        b0, o0 = timer.backward, timer.optimizer
        out = stage.training_step(batch, ctx)
        t2 = time.perf_counter()
        state.step += 1
        totals["data"] += t1 - t0
        inner = (timer.backward - b0) + (timer.optimizer - o0)
        totals["forward"] += (t2 - t1) - inner
        losses.append(float(out["total"]))
    totals["backward"], totals["optimizer"] = timer.backward, timer.optimizer
    result = {"threads": threads, "precision": precision, "steps": steps,
              "warmup_seconds": warmup_seconds,
              "batch_size": exp.train.batch_size,
              "seconds_per_step": {k: v / steps for k, v in totals.items()},
              "loss_first_last": [losses[0], losses[-1]]}
    result["seconds_per_step"]["total"] = sum(totals.values()) / steps
    if profiler is not None:
        profiler.__exit__(None, None, None)
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
        print(table, file=sys.stderr)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="joe-quick")
    ap.add_argument("--stage", choices=("encoder", "decoder", "both"), default="both")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--n-items", type=int, default=64)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="config change merged into the stage's config (repeatable)")
    ap.add_argument("--compile", default="off",
                    help="comma-separated: off, model (torch.compile of the trained modules; "
                         "the warm-up steps then include the compilation)")
    ap.add_argument("--ops", action="store_true", help="operator table of the first setting")
    args = ap.parse_args()
    compile_modes = args.compile.split(",")
    if not set(compile_modes) <= {"off", "model"}:
        ap.error(f"--compile takes off and/or model, got {args.compile!r}")
    variants = {"base": {}}
    if args.variant:
        variants = {}
        for v in args.variant:
            name, _, text = v.partition("=")
            variants[name] = json.loads(text or "{}")

    preset = load_preset(args.preset)
    teacher = load_teacher(preset.teacher.ref)
    lines = resource_path("sentences_en.txt").read_text(encoding="utf-8").splitlines()
    utts = [Utterance(f"s{i:04d}", t, None, 0) for i, t in enumerate(lines[: args.n_items])]
    data = TextOnlyDataset(utts, teacher.frontend)
    root = args.cache_dir or Path(tempfile.mkdtemp(prefix="nixdistill-profile-"))
    exp, probe = build_stage("encoder", preset, teacher, data, None, "fp32")
    cache = open_latent_cache(root, teacher, "prior", probe.latent_settings)
    fill_latent_cache(teacher, data, "prior", probe.latent_settings, cache, 0)
    stages = ("encoder", "decoder") if args.stage == "both" else (args.stage,)
    settings = [(int(t), p, v, c) for t in args.threads.split(",")
                for p in args.precision.split(",") for v in variants
                for c in compile_modes]
    for kind in stages:
        runs: dict[tuple, list[dict]] = {s: [] for s in settings}
        for r in range(args.rounds):
            for s in settings:
                runs[s].append(time_setting(kind, preset, teacher, data, cache, s[0], s[1],
                                            variants[s[2]], args.steps, args.warmup,
                                            args.ops and r == 0 and s == settings[0],
                                            s[3] == "model"))
        out = {"stage": kind, "preset": args.preset, "cpu_threads_available": torch.get_num_threads(),
               "settings": []}
        for s, results in runs.items():
            per = {k: statistics.median(r["seconds_per_step"][k] for r in results)
                   for k in (*PHASES, "total")}
            out["settings"].append({"threads": s[0], "precision": s[1], "variant": s[2],
                                    "compile": s[3],
                                    "warmup_seconds": results[0]["warmup_seconds"],
                                    "seconds_per_step_median": per,
                                    "steps_per_minute": 60.0 / per["total"],
                                    "rounds": [r["seconds_per_step"]["total"] for r in results],
                                    "loss_first_last": results[0]["loss_first_last"]})
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
