"""Pareto front of trained students: cost against fidelity, from ``nixdistill benchmark`` reports.

Each ``--point NAME=FILE.json`` is a benchmark report (``nixdistill benchmark --json``) of one
or more students against the same teacher. The script takes every student in every report (the
teacher once, from the first) and plots each cost (inference parameters, and latency per
sentence as a share of the same report's teacher latency in PyTorch and in ONNX Runtime, at 1
thread: the inverse of the interleaved speed-up, so reports from different machines compare)
against each quality (Whisper WER, DNSMOS OVRL, MCD to the teacher), marking the points no
other student beats on both axes. It also writes the table it plotted (with the absolute RTF
and latency of each report), as Markdown and JSON.

    python scripts/pareto.py --point default=runs/joe-quick/heldout/benchmark.json \\
        --point tiny=runs/joe-tiny/heldout/benchmark.json --out docs/results/pareto

Quality is read "as shipped" where the report has it (each model at its default settings), and
MCD at noise 0 with the teacher's durations (the setting of the MCD target).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COSTS = [  # (key, axis label); speed as a share of the same report's teacher latency, so
    # that runs on different machines compare (each report times its teacher interleaved)
    ("params_m", "inference parameters (M)"),
    ("latency_share_torch", "latency / teacher's, PyTorch, 1 thread"),
    ("latency_share_ort", "latency / teacher's, ONNX Runtime, 1 thread"),
]
QUALITIES = [  # (key, axis label, higher is better)
    ("wer", "Whisper-base WER (as shipped)", False),
    ("dnsmos", "DNSMOS OVRL (as shipped)", True),
    ("mcd_db", "MCD to the teacher, dB (noise 0, teacher durations)", False),
]


def _median(speed: dict[str, Any] | None, key: str) -> float | None:
    one = (speed or {}).get("1") or {}
    value = one.get(key)
    if isinstance(value, dict):
        return value.get("median")
    return value


def _share(value: float | None, teacher_value: float | None) -> float | None:
    return None if value is None or not teacher_value else value / teacher_value


def _point(name: str, model: dict[str, Any], is_teacher: bool,
           teacher: dict[str, Any] | None = None) -> dict[str, Any]:
    """One model's costs and qualities; ``teacher`` is the same report's teacher (for the
    latency shares: student latency / teacher latency, the inverse of the speed-up)."""
    size = model["size"]["params"]
    quality = model.get("quality") or {}
    shipped = quality.get("as_shipped") or quality
    teacher = teacher or model
    lat_torch = _median(model.get("speed"), "latency_ms")
    lat_ort = _median(model.get("speed_onnxruntime"), "latency_ms")
    return {
        "name": name,
        "teacher": is_teacher,
        "params_m": size["total"] / 1e6,
        "rtf_torch": _median(model.get("speed"), "rtf"),
        "latency_torch_ms": _median(model.get("speed"), "latency_ms"),
        "rtf_ort": _median(model.get("speed_onnxruntime"), "rtf"),
        "latency_ort_ms": _median(model.get("speed_onnxruntime"), "latency_ms"),
        "latency_share_torch": _share(lat_torch, _median(teacher.get("speed"), "latency_ms")),
        "latency_share_ort": _share(lat_ort, _median(teacher.get("speed_onnxruntime"),
                                                     "latency_ms")),
        "wer": shipped.get("asr_error_rate"),
        "dnsmos": (shipped.get("dnsmos") or {}).get("ovrl"),
        "mcd_db": None if is_teacher else quality.get("mcd_teacher_durations_db"),
    }


def collect(points: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """One row per student of every report (named ``NAME`` or ``NAME/student``), teacher first."""
    rows: list[dict[str, Any]] = []
    for k, (name, path) in enumerate(points):
        report = json.loads(path.read_text())
        if k == 0:
            rows.append(_point("teacher", report["teacher"], True))
        students = report["students"]
        for s in students:
            label = name if len(students) == 1 else f"{name}/{s['name']}"
            rows.append(_point(label, s, False, report["teacher"]))
    return rows


def front(rows: list[dict[str, Any]], cost: str, quality: str, higher: bool) -> set[str]:
    """Names of the students no other student beats on both ``cost`` and ``quality``."""
    usable = [r for r in rows if not r["teacher"] and r[cost] is not None
              and r[quality] is not None]

    def better(a: dict[str, Any], b: dict[str, Any]) -> bool:
        q_ok = a[quality] >= b[quality] if higher else a[quality] <= b[quality]
        q_strict = a[quality] > b[quality] if higher else a[quality] < b[quality]
        return a[cost] <= b[cost] and q_ok and (a[cost] < b[cost] or q_strict)

    return {r["name"] for r in usable if not any(better(o, r) for o in usable if o is not r)}


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(len(QUALITIES), len(COSTS), figsize=(4 * len(COSTS),
                                                                  3.3 * len(QUALITIES)))
    for i, (q, q_label, higher) in enumerate(QUALITIES):
        for j, (c, c_label) in enumerate(COSTS):
            ax = axes[i][j]
            best = front(rows, c, q, higher)
            for r in rows:
                if r[c] is None or r[q] is None:
                    continue
                marker = "*" if r["teacher"] else ("o" if r["name"] in best else "x")
                ax.scatter(r[c], r[q], marker=marker, s=80 if r["teacher"] else 40,
                           color="black" if r["teacher"] else "tab:blue")
                ax.annotate(r["name"], (r[c], r[q]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            teacher = rows[0]
            if teacher[q] is not None:
                ax.axhline(teacher[q], color="gray", lw=0.8, ls="--")
            ax.set_xlabel(c_label, fontsize=8)
            ax.set_ylabel(q_label, fontsize=8)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.tick_params(labelsize=7)
    fig.suptitle("Students against the teacher (*): o = on the front, x = beaten; dashed = "
                 "teacher", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["model", "params (M)", "latency speed-up torch", "latency speed-up ORT", "RTF torch",
            "ms torch", "RTF ORT", "ms ORT", "WER", "DNSMOS", "MCD dB"]
    keys = ["params_m", "rtf_torch", "latency_torch_ms", "rtf_ort", "latency_ort_ms", "wer",
            "dnsmos", "mcd_db"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        speedups = ["–" if r[k] is None else f"{1 / r[k]:.1f}x"
                    for k in ("latency_share_torch", "latency_share_ort")]
        cells = [r["name"], f"{r['params_m']:.3f}", *speedups] + [
            "–" if r[k] is None else f"{r[k]:.3f}" for k in keys[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--point", action="append", required=True, metavar="NAME=FILE",
                    help="a benchmark report (repeat)")
    ap.add_argument("--out", type=Path, required=True, help="output prefix (.png, .md, .json)")
    args = ap.parse_args()
    points = []
    for spec in args.point:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--point wants NAME=FILE, got {spec!r}")
        points.append((name, Path(path)))
    rows = collect(points)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out.with_suffix(".png"))
    args.out.with_suffix(".md").write_text(table(rows))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
