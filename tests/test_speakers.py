"""Multi-speaker teachers: the speaker set a student learns, the balanced draw of who says each
sentence, and training that reaches every speaker of the set."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from conftest import save_untrained_teacher

from nixdistill.data import Utterance, collate
from nixdistill.distill.speakers import SpeakerSet, assign_speakers, choose_speakers
from nixdistill.errors import ConfigError
from nixdistill.teacher.loader import load_teacher

NAMES = {"ann": 0, "bob": 1, "cy": 2, "dee": 3}


def test_choose_speakers_by_id_or_name():
    every = choose_speakers(4, NAMES)
    assert every.teacher_ids == (0, 1, 2, 3) and every.n_speakers == 4
    assert every.speaker_id_map == NAMES
    some = choose_speakers(4, NAMES, "dee,1")
    assert some.teacher_ids == (3, 1) and some.names == ("dee", "bob")
    assert some.speaker_id_map == {"dee": 0, "bob": 1}
    one = choose_speakers(4, NAMES, "cy")
    assert one.n_speakers == 0 and one.speaker_id_map == {}  # a single-speaker student
    assert choose_speakers(4, {}, "2").names == ("2",)
    for bad, match in (("zed", "no speaker 'zed'"), ("7", "no speaker '7'"),
                       ("1,bob", "twice")):
        with pytest.raises(ConfigError, match=match):
            choose_speakers(4, NAMES, bad)
    with pytest.raises(ConfigError, match="single speaker"):
        choose_speakers(1, {}, "0")


def test_student_sid_maps_teacher_speakers_to_the_set():
    some = SpeakerSet((3, 1), ("dee", "bob"))
    assert some.student_sid(torch.tensor([1, 3, 3])).tolist() == [1, 0, 0]
    assert SpeakerSet((2,), ("cy",)).student_sid(torch.tensor([2])) is None
    assert SpeakerSet.from_dict(json.loads(json.dumps(some.to_dict()))) == some


def test_the_draw_is_balanced_seeded_and_keeps_named_speakers():
    utts = [Utterance(f"u{i}", f"sentence {i}", None, 0) for i in range(11)]
    speakers = choose_speakers(4, NAMES, "ann,bob,dee")
    drawn, identity = assign_speakers(utts, speakers, seed=5, text_only=True)
    counts = Counter(u.speaker for u in drawn)
    assert set(counts) == {0, 1, 3} and max(counts.values()) - min(counts.values()) <= 1
    assert identity["counts"] == {"0": counts[0], "1": counts[1], "3": counts[3]}
    again, same = assign_speakers(utts, speakers, seed=5, text_only=True)
    assert [u.speaker for u in again] == [u.speaker for u in drawn] and same == identity
    other, other_id = assign_speakers(utts, speakers, seed=6, text_only=True)
    assert other_id["sha1"] != identity["sha1"]
    # data that names its speakers keeps them, restricted to the set
    named = [Utterance(f"u{i}", "x", None, i % 4) for i in range(8)]
    kept, _ = assign_speakers(named, speakers, seed=0, text_only=False)
    assert [u.speaker for u in kept] == [0, 1, 3, 0, 1, 3]


@pytest.fixture(scope="module")
def four_speaker_teacher(tmp_path_factory):
    """A tiny untrained 4-speaker VITS teacher saved as a nixdistill checkpoint."""
    return save_untrained_teacher(tmp_path_factory.mktemp("teacher4") / "teacher.pt",
                                  {"data": {"n_speakers": 4}, "model": {"gin_channels": 8}})


def test_every_chosen_speaker_is_distilled(four_speaker_teacher, tmp_path):
    """Prior latents for text-only data: the cache records balanced speaker counts, and the
    student's speaker embedding gets a gradient in every row of the set."""
    from nixdistill.distill.distil_encoder import DistilEncoderStage, run_distil_encoder
    from nixdistill.distill.latents import teacher_latents
    from nixdistill.distill.setup import encoder_model_config, prepare_distillation

    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(f"sentence number {w} is here." for w in
                              ("one", "two", "three", "four", "five", "six", "seven", "eight",
                               "nine", "ten", "eleven", "twelve")))
    result = run_distil_encoder(four_speaker_teacher, data, "tiny/encoder", tmp_path / "enc",
                                latents="prior", max_steps=1, cache_dir=tmp_path / "cache",
                                speakers="0,2,3")
    assert result.step == 1
    identity = json.loads((tmp_path / "cache" / "identity.json").read_text())
    counts = identity["speakers"]["counts"]
    assert set(counts) == {"0", "2", "3"} and max(counts.values()) - min(counts.values()) <= 1

    run = prepare_distillation(DistilEncoderStage, four_speaker_teacher, data, "tiny/encoder",
                               tmp_path / "enc2", latents="prior", speakers="0,2,3")
    cfg = encoder_model_config(run.cfg.model, run.teacher, "test", run.speakers.n_speakers)
    assert cfg.n_speakers == 3
    stage = DistilEncoderStage(run.teacher, run.cfg, cfg, run.train_set, run.eval_set, "prior",
                               speakers=run.speakers)
    batch = collate([run.train_set[i] for i in range(len(run.train_set))])
    assert set(batch.sid.tolist()) == {0, 2, 3}  # teacher ids: the teacher speaks in each voice
    lat = teacher_latents(run.teacher, batch, "prior", 0)
    out = stage.encoder(batch.x, batch.x_lengths, lat.mel, lat.y_lengths, stage._sid(batch),
                        w_target=lat.w_ceil)
    sum(stage.losses(out, lat, batch.x_lengths, 0).values()).backward()
    grad = stage.encoder.emb_g.weight.grad
    assert grad.shape[0] == 3 and bool((grad.abs().sum(1) > 0).all())


def test_one_chosen_speaker_gives_a_single_speaker_student(four_speaker_teacher, tmp_path):
    from nixdistill.deploy.build import encoder_from_run
    from nixdistill.distill.distil_encoder import run_distil_encoder

    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(f"a short sentence {i}." for i in range(6)))
    run_distil_encoder(four_speaker_teacher, data, "tiny/encoder", tmp_path / "enc",
                       latents="prior", max_steps=1, speakers="2")
    encoder, cfg, ckpt = encoder_from_run(tmp_path / "enc")
    assert cfg["n_speakers"] == 0 and encoder.emb_g is None
    assert ckpt["meta"]["speakers"]["teacher_ids"] == [2]
    teacher = load_teacher(four_speaker_teacher)
    assert teacher.n_speakers == 4
