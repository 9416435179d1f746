"""Writing a :class:`BenchmarkResult`: JSON, Markdown report, Rich tables and plots.

Only the command layer (``nixdistill benchmark``, the pipeline's benchmark stage) calls these;
:func:`~nixdistill.benchmark.run_benchmark` itself writes nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import AudioConfig
from .quality import LANES
from .result import INT8_SUFFIX, BenchmarkResult, ModelEntry

__all__ = ["tables", "write_json", "write_report", "write_plots", "render_tables", "write_outputs"]

MEL_PLOT_DPI = 100
RTF_PLOT_MIN_WIDTH_IN = 6.0
"""Smallest width of the RTF bar chart, in inches."""
Table = tuple[str, list[str], list[list[str]]]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _median(stats: dict[str, Any] | None) -> float | None:
    return None if stats is None else stats["median"]


def _int8(e: ModelEntry, key: str) -> dict[str, Any] | None:
    """``e.int8_onnxruntime[key]`` (the student's int8 copy), or None."""
    return (e.int8_onnxruntime or {}).get(key)


def _speed_rows(e: ModelEntry) -> list[list[str]]:
    rows = []
    for name, runtime, speed in ((e.name, "PyTorch", e.speed),
                                 (e.name, "ONNX Runtime", e.speed_onnxruntime or {}),
                                 (e.name + INT8_SUFFIX, "ONNX Runtime", _int8(e, "speed") or {})):
        for th, s in speed.items():
            rows.append([name, runtime, th,
                         f"{_fmt(s['rtf']['median'])} [{_fmt(s['rtf']['q1'])}–{_fmt(s['rtf']['q3'])}]",
                         _fmt(_median(s["encoder_rtf"])), _fmt(_median(s["decoder_rtf"])),
                         _fmt(s["latency_ms"]["median"], 1), _fmt(s["audio_s"], 2)])
    return rows


def _draw_range(s: dict) -> str:
    """`` (mean of N draws, lo–hi)`` of a score averaged over sampled draws, else ``""``."""
    rates = [d["asr_error_rate"] for d in s.get("draws") or () if d["asr_error_rate"] is not None]
    if not rates:
        return ""
    return f" (mean of {len(rates)} draws, {_fmt(min(rates))}–{_fmt(max(rates))})"


def _quality_rows(r: BenchmarkResult) -> list[list[str]]:
    rows = []
    for e in [r.teacher, *r.students]:
        q = e.quality
        if q is None:
            continue
        for setting, s in (("noise 0", q), ("as shipped", q["as_shipped"])):
            rows.append([e.name, setting, _fmt(s.get("mcd_db"), 2),
                         f"{s['asr_metric']} {_fmt(s['asr_error_rate'])}{_draw_range(s)}",
                         _fmt(s["dnsmos"]["ovrl"] if s["dnsmos"] else None, 2),
                         _fmt(s.get("duration_ratio"), 3)])
    if r.real is not None:
        rows.append(["real", "recordings", "–", f"{r.real['asr_metric']} {_fmt(r.real['asr_error_rate'])}",
                     _fmt(r.real["dnsmos"]["ovrl"] if r.real["dnsmos"] else None, 2), "–"])
    return rows


def _speaker_rows(r: BenchmarkResult) -> list[list[str]]:
    """One row per scored speaker of each multi-speaker student, then their mean."""
    rows = []
    for s in r.students:
        block = (s.quality or {}).get("speakers")
        if not block:
            continue
        for speaker, v in [*block["per_speaker"].items(), ("mean", block["mean"])]:
            rows.append([s.name, speaker, str(v.get("n_sentences", "")), _fmt(v["mcd_db"], 2),
                         _fmt(v["mcd_teacher_durations_db"], 2), _fmt(v["asr_error_rate"]),
                         _fmt(v["dnsmos_ovrl"], 2), _fmt(v["duration_ratio"], 3)])
    return rows


def tables(r: BenchmarkResult) -> list[Table]:
    """(title, header, rows) of every report table, shared by Markdown and Rich output."""
    entries = [r.teacher, *r.students]
    out: list[Table] = []
    rows = [[e.name, e.kind, _fmt(e.size["params"]["total"]),
             ", ".join(f"{k} {_fmt(v)}" for k, v in e.size["params"].items() if k != "total"),
             ", ".join(f"{k} {_fmt(v)}" for k, v in e.size["params_training_only"].items()) or "–",
             _fmt(e.size["file_mb"], 2)] for e in entries]
    out.append(("Size (inference parameters)",
                ["model", "kind", "params", "per module", "training only", "file MB"], rows))
    out.append(("Speed (RTF median [IQR], lower is faster; noise 0, batch 1)",
                ["model", "runtime", "threads", "RTF end to end", "encoder RTF", "decoder RTF",
                 "ms / sentence", "audio s / pass"],
                [row for e in entries for row in _speed_rows(e)]))
    rows = [[s, runtime, th, f"{_fmt(v['end_to_end'], 2)}×", f"{_fmt(v['latency'], 2)}×",
             _fmt(v["duration_ratio"], 3), _fmt(v["encoder"], 2), _fmt(v["decoder"], 2)]
            for runtime, table in (("PyTorch", r.speedup), ("ONNX Runtime", r.speedup_onnxruntime))
            for s, per in table.items() for th, v in per.items()]
    if rows:
        out.append(("Speed-up (teacher / student, same runtime and threads)",
                    ["student", "runtime", "threads", "by RTF", "by latency", "duration ratio",
                     "encoder", "decoder"], rows))
    rows = [[name, runtime, _fmt(m["loaded_rss_mb"], 1), _fmt(m["peak_rss_mb"], 1),
             _fmt(m["peak_rss_delta_mb"], 1)]
            for e in entries
            for name, runtime, m in ((e.name, "PyTorch", e.memory),
                                     (e.name, "ONNX Runtime", e.memory_onnxruntime),
                                     (e.name + INT8_SUFFIX, "ONNX Runtime", _int8(e, "memory")))
            if m is not None]
    if rows:
        out.append(("Memory of a synthesis process (MB, 1 thread)",
                    ["model", "runtime", "loaded RSS", "peak RSS", "synthesis peak Δ"], rows))
    if r.quality_enabled:
        out.append(("Quality (MCD to the teacher at the same setting)",
                    ["model", "setting", "MCD dB (DTW)", "ASR error", "DNSMOS ovrl",
                     "duration ratio"], _quality_rows(r)))
        rows = [[s, lane, str(v["n_sentences"]), _fmt(v["mcd_dtw_db"], 2), _fmt(v["mcd_frames_db"], 2),
                 _fmt(v["asr_error_rate"]), _fmt(v["dnsmos_ovrl"], 2), _fmt(v["duration_ratio"], 3)]
                for s, lanes in r.lanes.items() for lane in LANES if lane in lanes
                for v in (lanes[lane],)]
        if rows:
            out.append(("Attribution lanes (noise 0, teacher durations; MCD to the teacher)",
                        ["student", "lane", "n", "MCD dB (DTW)", "MCD dB (frames)", "ASR error",
                         "DNSMOS ovrl", "duration ratio"], rows))
        rows = [[s.name, cls, _fmt(v["log_mel_l1"], 3), str(v["frames"])]
                for s in r.students for cls, v in
                ((s.quality or {}).get("mel_error_by_class") or {}).get(
                    "student_teacher_durations", {}).items()]
        if rows:
            out.append(("Log-mel error by phoneme class (student z and decoder, teacher durations)",
                        ["student", "class", "log-mel L1", "frames"], rows))
        rows = _speaker_rows(r)
        if rows:
            out.append(("By speaker (noise 0; the teacher as the same speaker)",
                        ["student", "speaker", "n", "MCD dB", "MCD dB (teacher durations)",
                         "ASR error", "DNSMOS ovrl", "duration ratio"], rows))
        rows = [[s, _fmt(v["noise_scale"], 3), _fmt(v["asr_error_rate"]), _fmt(v["dnsmos_ovrl"], 2),
                 _fmt(v["mcd_dtw_db"], 2), _fmt(v["duration_ratio"], 3)]
                for s, sweep in r.noise_sweep.items() for v in sweep]
        if rows:
            out.append(("Full student by noise scale", ["student", "noise scale", "ASR error",
                                                         "DNSMOS ovrl", "MCD dB (DTW)",
                                                         "duration ratio"], rows))
    rows = [[s, _fmt(v.get("time_to_first_audio_ms"), 1), _fmt(v.get("total_ms"), 1),
             _fmt(v.get("audio_s"), 2), v.get("note", "")] for s, v in r.streaming.items()]
    if rows:
        out.append(("Streaming (one paragraph, PyTorch, 1 thread)",
                    ["student", "first audio ms", "total ms", "audio s", "note"], rows))
    return out


def write_json(r: BenchmarkResult, path: str | Path) -> None:
    """``r.to_dict()`` as indented JSON at ``path`` (``"-"``: stdout)."""
    text = json.dumps(r.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        return
    _write_text(Path(path), text)


def _write_text(path: Path, text: str) -> None:
    """Atomically (a reader never sees half a file), creating the folder."""
    from ..runs import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_report(r: BenchmarkResult, path: str | Path) -> Path:
    """Write the Markdown report: command, machine, versions, date, tables, plots, method.

    Image links are relative to the report's folder.
    """
    from . import __doc__ as method

    path = Path(path)
    meta, machine, st = r.meta, r.meta["machine"], r.meta["settings"]
    lines = [
        "# nixdistill benchmark", "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}"
        + (f", GPU {machine['gpu']}" if "gpu" in machine else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- sentences: {st['n_sentences']} ({st['language']}), warm-up {st['warmup']}, "
        f"repeats {st['repeats']}, threads {st['threads']}, device {st['device']}, seed {st['seed']}",
    ]
    if r.onnxruntime_note:
        lines.append(f"- ONNX Runtime: {r.onnxruntime_note}")
    lines.append("")
    for title, header, rows in tables(r):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    if r.plots:
        lines += ["## Plots", ""]
        for name, p in r.plots.items():
            lines += [f"![{name}]({Path(os.path.relpath(p, path.parent)).as_posix()})", ""]
    lines += ["## Method", "", (method or "").split("Method:", 1)[-1].strip(), ""]
    _write_text(path, "\n".join(lines))
    return path


def render_tables(r: BenchmarkResult, console: Any) -> None:
    """Print the report tables with Rich on ``console`` (normally stderr)."""
    from rich.table import Table as RichTable

    for title, header, rows in tables(r):
        table = RichTable(title=title)
        for h in header:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def _plot_mels(waves: dict[str, np.ndarray], audio: AudioConfig, text: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..audio import audio_kwargs, mel_spectrogram

    fig, axes = plt.subplots(len(waves), 1, figsize=(10, 2.6 * len(waves)), squeeze=False)
    for ax, (name, wav) in zip(axes[:, 0], waves.items()):
        mel = mel_spectrogram(torch.from_numpy(np.asarray(wav, np.float32)).reshape(1, -1),
                              **audio_kwargs(audio))[0].numpy()
        ax.imshow(mel, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(f"{name}: {len(wav) / audio.sample_rate:.2f} s")
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    # The default matplotlib font has no Hangul glyphs: title only with drawable text.
    if text.isascii():
        fig.suptitle(text[:100])
    fig.tight_layout()
    fig.savefig(path, dpi=MEL_PLOT_DPI)
    plt.close(fig)


def _plot_rtf(r: BenchmarkResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [r.teacher, *r.students]
    thread_keys = list(r.teacher.speed)
    width = 0.8 / len(entries)
    fig, ax = plt.subplots(figsize=(max(RTF_PLOT_MIN_WIDTH_IN, 1.2 * len(thread_keys) * len(entries)), 4))
    for i, e in enumerate(entries):
        xs = np.arange(len(thread_keys)) + i * width
        enc = [e.speed[k]["encoder_rtf"]["median"] for k in thread_keys]
        dec = [e.speed[k]["decoder_rtf"]["median"] for k in thread_keys]
        tot = [e.speed[k]["rtf"] for k in thread_keys]
        err = np.array([[t["median"] - t["q1"] for t in tot], [t["q3"] - t["median"] for t in tot]])
        bars = ax.bar(xs, enc, width, label=f"{e.name} encoder")
        ax.bar(xs, dec, width, bottom=enc, label=f"{e.name} decoder", color=bars[0].get_facecolor(),
               alpha=0.55, yerr=err, capsize=3)
    ax.set_xticks(np.arange(len(thread_keys)) + width * (len(entries) - 1) / 2)
    ax.set_xticklabels([f"{k} thread(s)" for k in thread_keys])
    ax.set_ylabel("RTF (lower is faster)")
    ax.set_title("PyTorch RTF median: encoder + decoder (whiskers: IQR)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=MEL_PLOT_DPI)
    plt.close(fig)


def write_plots(r: BenchmarkResult, plots_dir: str | Path) -> None:
    """``mel.png`` (first sentence, every model, noise 0) and ``rtf.png``; records them in
    ``r.plots``. Needs the in-memory clips of a fresh result (not one read back from JSON)."""
    pdir = Path(plots_dir)
    pdir.mkdir(parents=True, exist_ok=True)
    if r.first_clips and r.audio is not None:
        _plot_mels(r.first_clips, r.audio, r.meta["texts"][0], pdir / "mel.png")
        r.plots["mel"] = str(pdir / "mel.png")
    _plot_rtf(r, pdir / "rtf.png")
    r.plots["rtf"] = str(pdir / "rtf.png")


def write_outputs(r: BenchmarkResult, out_json: str | Path | None = None,
                  out_report: str | Path | None = None, plots_dir: str | Path | None = None) -> None:
    """Plots first (the report links them), then the Markdown report, then the JSON."""
    if plots_dir is not None:
        write_plots(r, plots_dir)
    if out_report is not None:
        write_report(r, out_report)
    if out_json is not None:
        write_json(r, out_json)
