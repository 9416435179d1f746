"""Peak resident memory of a synthesis process, per model and runtime (psutil).

Each measurement runs in a fresh Python process (``python -m nixdistill.benchmark.memory
SPEC`` for PyTorch, ``python .../ort_runner.py SPEC`` for onnxruntime, which imports neither
torch nor nixdistill) so that one model's allocations, allocator caches and imported libraries never hide
another's. The child loads the model, reports that it is ready, synthesises every sentence
once (noise 0, the given thread count) and exits; the parent samples the child's RSS with
``psutil`` every :data:`RSS_SAMPLE_INTERVAL_S` seconds. Reported: RSS once loaded, the peak
over the whole process, and the peak during synthesis minus the loaded RSS (the synthesis
working memory). Spikes shorter than the sampling period can be missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .ort_runner import READY

__all__ = ["RSS_SAMPLE_INTERVAL_S", "measure_peak_rss"]

RSS_SAMPLE_INTERVAL_S = 0.005
"""Period of the RSS sampling thread, in seconds."""
MB = 1 << 20
CHILD_TIMEOUT_S = 900


def measure_peak_rss(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of one synthesis process.

    Args:
        spec: ``{"role": "teacher"|"student", "runtime": "pytorch"|"onnxruntime", "ref":
            teacher reference or student file (pytorch), "graphs": ONNX files in run order
            (onnxruntime),
            "ids": token ids per sentence, "threads": int, "device": str}``.
    Returns:
        ``{"method", "loaded_rss_mb", "peak_rss_mb", "synthesis_peak_delta_mb"}``.
    Raises:
        RuntimeError: the child process failed (its stderr is in the message).
    """
    import psutil

    if spec["runtime"] == "onnxruntime":
        cmd = [sys.executable, str(Path(__file__).with_name("ort_runner.py"))]
    else:
        cmd = [sys.executable, "-m", "nixdistill.benchmark.memory"]
    # A neutral working directory: ``-m`` puts the cwd first on sys.path, and from a source
    # checkout that would import the uninstalled tree instead of the installed package.
    proc = subprocess.Popen([*cmd, json.dumps(spec)], cwd=tempfile.gettempdir(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = {"all": 0, "synth": 0}
    phase = {"ready": False}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                rss = ps.memory_info().rss
            except psutil.Error:
                return
            peak["all"] = max(peak["all"], rss)
            if phase["ready"]:
                peak["synth"] = max(peak["synth"], rss)
            time.sleep(RSS_SAMPLE_INTERVAL_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loaded = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(READY):
            loaded = ps.memory_info().rss
            phase["ready"] = True
    stop.set()
    sampler.join()
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.wait(CHILD_TIMEOUT_S) != 0 or loaded is None:
        raise RuntimeError(f"memory measurement of {spec.get('ref')} failed: {stderr[-2000:]}")
    return {
        "method": f"fresh process, RSS sampled every {RSS_SAMPLE_INTERVAL_S * 1000:g} ms (psutil)",
        "loaded_rss_mb": loaded / MB,
        "peak_rss_mb": peak["all"] / MB,
        "synthesis_peak_delta_mb": max(0, peak["synth"] - loaded) / MB,
    }


def _child(spec: dict[str, Any]) -> None:
    """Load one PyTorch model, print :data:`READY`, synthesise ``spec["ids"]`` once each."""
    from .adapters import student_view, teacher_view

    if spec["role"] == "teacher":
        from nixdistill.teacher.loader import load_teacher

        model = teacher_view(load_teacher(spec["ref"], device=spec["device"]))
    else:
        from nixdistill.deploy.student import load_student

        model = student_view(load_student(spec["ref"], device=spec["device"]), "student")
    model.set_threads(int(spec["threads"]))
    prepared = [model.prepare(ids) for ids in spec["ids"]]
    print(READY, flush=True)
    for p in prepared:
        model.timed(p)


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
