"""Original VITS and vits2 checkpoints (``G_*.pth`` with ``config.json`` beside them, random
weights in the original key layout) distilled through ``nixdistill pipeline --teacher``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_teacher_load import build_vits_config, original_config, perturbed_model, write_original

from nixdistill.cli import cli
from nixdistill.config import load_config
from nixdistill.deploy.student import load_student
from nixdistill.text import build_frontend

VITS2 = {"use_transformer_flows": True, "transformer_flow_type": "pre_conv",
         "use_spk_conditioned_encoder": True, "use_noise_scaled_mas": True,
         "use_mel_posterior_encoder": True, "gin_channels": 8, "n_layers": 3}
SENTENCES = ["the quick brown fox jumps over the lazy dog.", "it was a cold clear day.",
             "she sells sea shells by the shore.", "all that glitters is not gold.",
             "a stitch in time saves nine.", "the committee met again on monday."]


def make_checkpoint(folder, model_extra=None, n_speakers=0):
    folder.mkdir(parents=True, exist_ok=True)
    raw = original_config(model_extra, n_speakers)
    (folder / "c.json").write_text(json.dumps(raw), encoding="utf-8")
    exp = load_config(folder / "c.json")
    model = perturbed_model(build_vits_config(exp, build_frontend(exp.text).n_vocab))
    return write_original(folder, raw, model)


@pytest.mark.parametrize("layout,extra,n_speakers", [
    ("vits", None, 0), ("vits_multi", {"gin_channels": 8}, 3), ("vits2", VITS2, 3),
])
def test_pipeline_distils_an_original_checkpoint(tmp_path, layout, extra, n_speakers):
    checkpoint = make_checkpoint(tmp_path / layout, extra, n_speakers)
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(SENTENCES))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["pipeline", "tiny/pipeline_piper", "--teacher",
                                      str(checkpoint), "--data", str(data), "--out", str(run)])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "pipeline.json").read_text())
    status = {s["name"]: s["status"] for s in summary["stages"]}
    assert status["encoder"] == status["decoder"] == status["export"] == "ran"
    # VITS symbol ids are not Piper's phoneme ids: no Piper voice, said in the summary
    assert status["voice"] == "skipped"
    student = load_student(run / "student.safetensors")
    assert student.metadata["teacher"]["kind"] == ("vits2" if layout == "vits2" else "vits")
    assert student.audio.sample_rate == 8000 and student.audio.hop_length == 16
    speakers = student.metadata.get("speakers")
    if n_speakers:
        assert speakers["teacher_ids"] == list(range(n_speakers))
        wav = student.synthesize("hello there.", speaker=n_speakers - 1)
    else:
        assert speakers is None
        wav = student.synthesize("hello there.")
    assert wav.dtype == np.float32 and wav.size >= student.audio.hop_length
    if n_speakers:  # the benchmark scores several speakers, each against the teacher as them
        from nixdistill.benchmark import BenchmarkSettings
        from nixdistill.benchmark.run import speaker_quality
        from nixdistill.teacher.loader import load_teacher

        settings = BenchmarkSettings(n_sentences=4, speakers=4)
        block = speaker_quality(load_teacher(checkpoint), student, "student", SENTENCES[:4],
                                settings, asr_and_mos=False)  # untrained: MCD and lengths only
        assert list(block["per_speaker"]) == ["0", "1", "2"]  # min(4 asked, 3 speakers)
        assert sum(v["n_sentences"] for v in block["per_speaker"].values()) == 4
        assert all(np.isfinite(v["mcd_db"]) for v in block["per_speaker"].values())
        assert block["mean"]["duration_ratio"] > 0 and block["mean"]["asr_error_rate"] is None
