"""Summarise a run's TensorBoard log: scalar curves as a table, and the last images as PNGs.

Usage:
    python scripts/tb_summary.py RUN_DIR [--tags train/mel,eval/mel_l1] [--points 8]
        [--images-to DIR] [--curves PNG]

Prints, for every scalar tag (or the ones given), its value at ``--points`` evenly spaced
logged steps, so loss curves can be quoted in notes; writes the last logged image of each image
tag (alignment, mel spectrograms) to ``--images-to`` and a plot of the curves to ``--curves``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path


def main() -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--tags", default=None, help="comma-separated scalar tags (default: all)")
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--images-to", type=Path, default=None)
    ap.add_argument("--curves", type=Path, default=None)
    a = ap.parse_args()

    acc = EventAccumulator(str(a.run_dir / "tensorboard"),
                           size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = a.tags.split(",") if a.tags else sorted(acc.Tags()["scalars"])
    curves = {}
    for tag in tags:
        events = acc.Scalars(tag)
        if not events:
            continue
        idx = sorted({round(i * (len(events) - 1) / max(a.points - 1, 1)) for i in range(a.points)})
        row = "  ".join(f"{events[i].step}:{events[i].value:.4g}" for i in idx)
        print(f"{tag:32s} {row}")
        curves[tag] = ([e.step for e in events], [e.value for e in events])
    if a.images_to is not None:
        a.images_to.mkdir(parents=True, exist_ok=True)
        for tag in acc.Tags()["images"]:
            last = acc.Images(tag)[-1]
            out = a.images_to / (tag.replace("/", "_") + f"_step{last.step}.png")
            out.write_bytes(io.BytesIO(last.encoded_image_string).getvalue())
            print(f"wrote {out}")
    if a.curves is not None and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(curves), 1, figsize=(7, 1.8 * len(curves)), squeeze=False)
        for ax, (tag, (steps, values)) in zip(axes[:, 0], curves.items()):
            ax.plot(steps, values)
            ax.set_ylabel(tag, fontsize=7)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        fig.savefig(a.curves, dpi=80)
        print(f"wrote {a.curves}")


if __name__ == "__main__":
    main()
