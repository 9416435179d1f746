"""Words and naturalness of a student when its durations have less contrast.

The student's deterministic duration predictor ends in a 1x1 projection to ``log w``. Scaling
that projection by ``alpha`` in (0, 1] and adding a constant ``c`` gives
``log w' = alpha * log w + c``: short tokens get longer and long ones shorter. ``c`` is chosen so
that the sentences keep the student's own total frames (three fixed-point passes), so only the
contrast changes, not the speaking rate. Each setting speaks the sentences through the whole
student (its encoder and decoder at its shipped defaults) and is scored with the benchmark's
Whisper-base WER (:class:`~nixdistill.benchmark.metrics.Transcriber`, its normaliser) and DNSMOS
OVRL (:func:`~nixdistill.benchmark.metrics.dnsmos`).

Usage::

    python scripts/duration_contrast.py runs/joe-quick/student.safetensors \\
        --texts scripts/data/ljspeech_dev100.txt --lines 0:50 --alpha 1.0,0.88,0.75
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from nixdistill.benchmark.metrics import (
    Transcriber,
    dnsmos,
    error_rate,
    normalize_transcript,
)
from nixdistill.benchmark.settings import read_texts
from nixdistill.deploy.student import load_student


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("student", type=Path)
    ap.add_argument("--texts", type=Path, required=True)
    ap.add_argument("--lines", default="0:50", help="START:END of the sentences to speak")
    ap.add_argument("--alpha", default="1.0,0.88", help="comma-separated contrasts in (0, 1]")
    args = ap.parse_args()

    student = load_student(args.student)
    lo, hi = (int(v) for v in args.lines.split(":"))
    texts = read_texts(args.texts)[lo:hi]
    refs = [normalize_transcript(t) for t in texts]
    proj = student.encoder.dp.proj
    weight, bias = proj.weight.clone(), proj.bias.clone()
    asr = Transcriber()

    ids = [student.frontend.encode(t) for t in texts]

    def total_frames() -> float:
        return sum(float(student.encoder.infer(torch.tensor([i]), torch.tensor([len(i)]))
                         .w_ceil.sum()) for i in ids)

    def set_contrast(alpha: float, c: float) -> None:
        proj.weight.copy_(weight * alpha)
        proj.bias.copy_(bias * alpha + c)

    set_contrast(1.0, 0.0)
    own = total_frames()
    for alpha in (float(a) for a in args.alpha.split(",")):
        c = 0.0
        for _ in range(3):
            set_contrast(alpha, c)
            c += math.log(own / total_frames())
        set_contrast(alpha, c)
        wavs = [student.synthesize(t) for t in texts]
        hyps = [normalize_transcript(asr.transcribe(w, student.sample_rate)) for w in wavs]
        ovrl = float(np.mean([dnsmos(w, student.sample_rate)["ovrl"] for w in wavs]))
        print(f"alpha {alpha:.2f}  c {c:+.3f}  frames {total_frames() / own:.3f}  "
              f"WER {error_rate(refs, hyps):.4f}  DNSMOS {ovrl:.3f}", flush=True)


if __name__ == "__main__":
    main()
