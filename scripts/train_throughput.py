"""Training throughput of the teach stage on synthetic data: optimizer steps per second.

Usage::

    python scripts/train_throughput.py --config tiny/teacher --batch-size 2 --steps 5

Synthetic utterances (harmonic tones with random transcripts of matching length) are written
to a temporary LJSpeech folder; the first ``--warmup`` steps are excluded from the timing.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import string
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from nixdistill.config import load_config
from nixdistill.distill.teach import run_teach

TONE_AMPLITUDE = 0.3
CHARS_PER_SECOND = 12  # roughly English speaking rate, keeps T_text < T_frames


def write_synthetic_ljspeech(root: Path, n_items: int, seconds: float, sample_rate: int,
                             seed: int) -> Path:
    """LJSpeech folder of ``n_items`` tones of ``seconds`` s with random lowercase text."""
    rng = random.Random(seed)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    lines = []
    for i in range(n_items):
        f0 = 100.0 + 10.0 * i
        y = TONE_AMPLITUDE * np.sin(2 * np.pi * f0 * t)
        sf.write(root / "wavs" / f"S{i:04d}.wav", y.astype(np.float32), sample_rate)
        n_chars = max(2, int(seconds * CHARS_PER_SECOND))
        text = "".join(rng.choice(string.ascii_lowercase + "   ") for _ in range(n_chars)).strip()
        lines.append(f"S{i:04d}|{text or 'a'}|{text or 'a'}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny/teacher")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    exp = load_config(args.config)
    batch = args.batch_size or exp.train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = json.loads(Path(exp.source).read_text(encoding="utf-8"))
        cfg.setdefault("train", {}).update(batch_size=batch, log_interval=10**9,
                                           eval_interval=10**9, checkpoint_interval=10**9)
        cfg.setdefault("data", {})["val_size"] = 1
        (tmp / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        data = write_synthetic_ljspeech(tmp / "data", batch * 2 + 1, args.seconds,
                                        exp.audio.sample_rate, exp.train.seed)
        def timed_run(name: str, steps: int) -> float:
            t0 = time.perf_counter()
            run_teach(tmp / "config.json", data, tmp / name, device=args.device, max_steps=steps)
            return time.perf_counter() - t0

        timed_run("warm", args.warmup)  # imports, caches, allocator warm-up
        t_short = timed_run("short", args.warmup)
        t_long = timed_run("long", args.warmup + args.steps)
    # Both timed runs pay the same set-up, evaluation and checkpoint costs; the difference is
    # the time of ``args.steps`` training steps.
    timed = max(t_long - t_short, 1e-9)
    print(json.dumps({
        "config": args.config, "device": args.device, "batch_size": batch,
        "clip_seconds": args.seconds, "steps": args.steps,
        "steps_per_s": args.steps / timed, "seconds_per_step": timed / args.steps,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
