"""The teach stage: CLI run, TensorBoard and checkpoints, exact resume, --init grafting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nixdistill.cli import cli
from nixdistill.config import load_config
from nixdistill.teacher.loader import build_vits_config, load_teacher
from nixdistill.teachers.vits import VITS
from nixdistill.runs import load_checkpoint, save_checkpoint
from nixdistill.distill.setup import TeachError
from nixdistill.distill.teach import run_teach

CONFIG = "tiny/teacher"


def _scalars(run_dir: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def _teach(args: list[str]):
    result = CliRunner().invoke(cli, ["--device", "cpu", "teach", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_teach_cli_runs_logs_and_resumes_exactly(tiny_ljspeech, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["--config", CONFIG, "--data", str(tiny_ljspeech)]
    out = _teach([*common, "--out", str(full), "--max-steps", "3"])
    assert "step 3" in out.output
    _teach([*common, "--out", str(cut), "--max-steps", "2"])
    _teach(["--data", str(tiny_ljspeech), "--out", str(cut), "--resume", "--max-steps", "3"])

    assert list((full / "tensorboard").glob("events.out.tfevents.*"))
    assert (full / "checkpoints" / "step_00000003.pt").is_file()
    ckpt = load_checkpoint(full)
    assert ckpt["step"] == 3 and set(ckpt["models"]) == {"generator", "discriminator"}
    gen_full, gen_cut = _scalars(full, "train/gen"), _scalars(cut, "train/gen")
    assert sorted(gen_full) == [1, 2, 3]
    assert gen_cut[3] == gen_full[3]  # step N+1 after the resume equals the uninterrupted run
    assert _scalars(cut, "train/disc")[3] == _scalars(full, "train/disc")[3]
    assert "val/mel_l1" in _load_tags(full)
    resumed = load_checkpoint(cut)["models"]["generator"]
    for k, v in ckpt["models"]["generator"].items():
        assert torch.equal(v, resumed[k]), k

    teacher = load_teacher(full)  # the run folder is a teacher reference
    assert teacher.has_posterior and teacher.kind == "nixdistill"


def _load_tags(run_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert "val/alignment" in tags["images"] and "val/generated" in tags["audio"]
    return tags["scalars"]


def test_init_prior_only_teacher_trains_only_enc_q(tiny_ljspeech, tmp_path):
    exp = load_config(CONFIG)
    from nixdistill.text import build_frontend

    torch.manual_seed(0)
    vcfg = dataclasses.replace(build_vits_config(exp, build_frontend(exp.text).n_vocab),
                               has_posterior=False)
    prior_only = VITS(vcfg)
    assert prior_only.enc_q is None
    config_dict = exp.to_dict()
    config_dict["model"] = dataclasses.asdict(vcfg)
    ref = save_checkpoint(tmp_path / "piperish.pt", {
        "format": "nixdistill-train", "stage": "teach", "models": {"generator":
                                                                   prior_only.state_dict()},
        "config": config_dict})
    assert not load_teacher(ref).has_posterior

    result = run_teach(CONFIG, tiny_ljspeech, tmp_path / "run", max_steps=2, init=str(ref))
    ckpt = load_checkpoint(result.checkpoint)
    assert set(ckpt["models"]) == {"generator"}  # frozen decoder: no discriminator
    trained = ckpt["models"]["generator"]
    for k, v in prior_only.state_dict().items():
        assert torch.equal(trained[k], v), k  # enc_p, dp, flow, dec untouched
    fresh = VITS(dataclasses.replace(vcfg, has_posterior=True))
    n_enc_q = sum(1 for n, _ in fresh.named_parameters() if n.startswith("enc_q."))
    assert len(ckpt["optimizers"]["generator"]["state"]) == n_enc_q  # only enc_q is optimised
    assert load_teacher(tmp_path / "run").has_posterior


def test_teach_on_a_prepared_folder_validates_on_its_val_list(tiny_ljspeech, tmp_path):
    from nixdistill.data import prepare_dataset

    report = prepare_dataset(tiny_ljspeech, tmp_path / "prep", load_config(CONFIG), val_size=2)
    assert report.n_val == 2
    run_teach(CONFIG, tmp_path / "prep", tmp_path / "run", max_steps=1)
    meta = load_checkpoint(tmp_path / "run")["meta"]
    assert meta["n_val"] == report.n_val  # val.txt as written, not a second split of train.txt
    assert meta["n_train"] <= report.n_train


def test_run_errors(tiny_ljspeech, tmp_path):
    with pytest.raises(TeachError, match="--config"):
        run_teach(None, tiny_ljspeech, tmp_path / "none")
    result = CliRunner().invoke(cli, ["teach", "--config", CONFIG, "--data", str(tiny_ljspeech),
                                      "--out", str(tmp_path / "r"), "--resume"])
    assert result.exit_code != 0 and "no checkpoint" in str(result.exception)


def test_vits2_duration_discriminator_trains(tiny_ljspeech, tmp_path):
    import json

    raw = json.loads(Path(str(load_config(CONFIG).source)).read_text())
    raw["model"]["use_duration_discriminator"] = True
    cfg_path = tmp_path / "vits2.json"
    cfg_path.write_text(json.dumps(raw))
    run = tmp_path / "run"
    run_teach(str(cfg_path), str(tiny_ljspeech), run, max_steps=2)
    ckpt = load_checkpoint(run)
    assert set(ckpt["models"]) == {"generator", "discriminator", "dur_disc"}
    assert ckpt["optimizers"]["dur_disc"]["state"], "the duration discriminator never stepped"
    for tag in ("train/dur_disc", "train/dur_adv"):
        values = _scalars(run, tag)
        assert sorted(values) == [1, 2] and all(v == v for v in values.values())  # not NaN
