"""Rebuild a Piper voice (VITS exported to ONNX) as a PyTorch :class:`~nixdistill.teachers.vits.VITS`.

A Piper ``.onnx`` holds ``enc_p``, ``dp`` (stochastic duration predictor), ``flow`` and
``dec``, but no ``enc_q``, no ``dp.post_*`` and no ``dp.flows.1`` (unused at inference), so
the rebuilt model is prior-only (``has_posterior=False``). Weights come from the graph's
initializers, which mostly keep their PyTorch names; the exceptions:

- anonymous ``onnx::Conv_NNNN`` tensors are flow WaveNet weights with weight norm folded in;
  each is named after the Conv node that consumes it
  (``/flow/flows.6/enc/in_layers.0/Conv`` -> ``flow.flows.6.enc.in_layers.0.weight``);
- the embedding table may carry another name (``sid`` in en_US-joe-medium); it is named after
  its consuming ``/enc_p/emb/Gather`` node;
- ``dp.flows.0.logs`` is stored as ``/dp/flows.0/Exp_output_0 = exp(-logs)``.

Hyperparameters are read from tensor shapes and node attributes (strides, dilations), so
x-low/low/medium/high voices all rebuild. The model's ``dec`` and ``flow`` have weight norm
removed, matching the folded weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nixdistill.config import AudioConfig, TextConfig
from nixdistill.errors import NixdistillError
from nixdistill.teachers.vits import VITS, VITSConfig

#: STFT settings of every Piper voice (piper1-gpl training defaults); only ``sample_rate``
#: varies and is read from the ``.onnx.json``.
PIPER_N_FFT = 1024
PIPER_WIN_LENGTH = 1024
PIPER_N_MELS = 80
#: Name of the graph value holding exp(-logs) of the SDP's first ElementwiseAffine.
_EXP_NEG_LOGS = "/dp/flows.0/Exp_output_0"


class PiperError(NixdistillError):
    """A Piper voice cannot be read or rebuilt; the message names the file."""


@dataclass
class PiperVoice:
    """A rebuilt Piper voice.

    Attributes:
        model: prior-only VITS, eval mode, weight norm removed.
        model_config: its :class:`VITSConfig`.
        audio: audio parameters (sample rate from the ``.onnx.json``).
        text: ``espeak`` frontend with the voice's ``phoneme_id_map`` (``add_blank`` False).
        n_speakers: speakers (1 for single-speaker voices).
        inference: the voice's default scales ``{noise_scale, length_scale, noise_w}``.
    """

    model: VITS
    model_config: VITSConfig
    audio: AudioConfig
    text: TextConfig
    n_speakers: int
    inference: dict[str, float]


def _node_key(node_name: str) -> str:
    """``/flow/flows.6/enc/in_layers.0/Conv`` -> ``flow.flows.6.enc.in_layers.0``."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


def read_onnx_weights(onnx_path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """PyTorch-named weights and the attributes of named Conv/ConvTranspose nodes.

    Returns:
        (weights {state-dict key: array}, attrs {module key: {attribute: value}}).
    Raises:
        PiperError: unreadable file.
    """
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as e:  # onnx raises several unrelated types for bad files
        raise PiperError(f"{onnx_path}: not a readable ONNX model ({e})") from None
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    attrs: dict[str, dict] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                consumers.setdefault(name, []).append(node)
        if node.op_type in ("Conv", "ConvTranspose") and node.name:
            attrs[_node_key(node.name)] = {
                a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    weights: dict[str, np.ndarray] = {}
    for name, tensor in inits.items():
        value = numpy_helper.to_array(tensor)
        if re.match(r"^(enc_p|dp|flow|dec|emb_g)\.", name):
            weights[name] = value
            continue
        if name == _EXP_NEG_LOGS:
            weights["dp.flows.0.logs"] = -np.log(value)
            continue
        nodes = consumers.get(name, [])
        if len(nodes) == 1 and nodes[0].op_type in ("Conv", "Gather") and value.ndim >= 2:
            key = _node_key(nodes[0].name)
            if key.startswith(("flow.", "enc_p.emb", "emb_g", "dp.", "dec.")):
                weights[f"{key}.weight"] = value
    return weights, attrs


def _count(weights: dict[str, np.ndarray], pattern: str) -> int:
    found = {int(m.group(1)) for k in weights if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_vits_config(weights: dict[str, np.ndarray], attrs: dict[str, dict],
                      n_speakers: int, where: str = "") -> VITSConfig:
    """Hyperparameters of a Piper VITS from its weight shapes and node attributes.

    Raises:
        PiperError: an expected tensor is missing.
    """
    try:
        emb = weights["enc_p.emb.weight"]
        hidden = emb.shape[1]
        inter = weights["enc_p.proj.weight"].shape[0] // 2
        n_layers = _count(weights, r"enc_p\.encoder\.attn_layers\.(\d+)\.")
        rel = weights["enc_p.encoder.attn_layers.0.emb_rel_k"]
        ffn = weights["enc_p.encoder.ffn_layers.0.conv_1.weight"]
        n_ups = _count(weights, r"dec\.ups\.(\d+)\.")
        ups_k = [weights[f"dec.ups.{i}.weight"].shape[2] for i in range(n_ups)]
        ups_u = [int(attrs[f"dec.ups.{i}"]["strides"][0]) for i in range(n_ups)]
        resblock = "1" if any(".convs1." in k for k in weights if k.startswith("dec.")) else "2"
        conv_name = "convs1" if resblock == "1" else "convs"
        n_res = _count(weights, r"dec\.resblocks\.(\d+)\.") // n_ups
        res_k, res_d = [], []
        for j in range(n_res):
            n_conv = _count(weights, rf"dec\.resblocks\.{j}\.{conv_name}\.(\d+)\.")
            res_k.append(int(weights[f"dec.resblocks.{j}.{conv_name}.0.weight"].shape[2]))
            res_d.append([int(attrs[f"dec.resblocks.{j}.{conv_name}.{c}"]["dilations"][0])
                          for c in range(n_conv)])
        flow_idx = sorted({int(m.group(1)) for k in weights
                           if (m := re.match(r"flow\.flows\.(\d+)\.", k))})
        flow_wn = weights["flow.flows.0.enc.in_layers.0.weight"]
        use_sdp = any(k.startswith("dp.flows.") for k in weights)
        gin = weights["emb_g.weight"].shape[1] if "emb_g.weight" in weights else 0
        dp_key = "dp.convs.convs_sep.0.weight" if use_sdp else "dp.conv_1.weight"
        cfg = dict(
            n_vocab=emb.shape[0], spec_channels=PIPER_N_FFT // 2 + 1,
            inter_channels=inter, hidden_channels=hidden, filter_channels=ffn.shape[0],
            n_heads=hidden // rel.shape[2], n_layers=n_layers, kernel_size=ffn.shape[2],
            window_size=(rel.shape[1] - 1) // 2, resblock=resblock,
            resblock_kernel_sizes=res_k, resblock_dilation_sizes=res_d,
            upsample_rates=ups_u, upsample_initial_channel=weights["dec.conv_pre.weight"].shape[0],
            upsample_kernel_sizes=ups_k, n_speakers=n_speakers if gin else 0, gin_channels=gin,
            use_sdp=use_sdp, flow_n_flows=len(flow_idx),
            flow_kernel_size=flow_wn.shape[2],
            flow_dilation_rate=int(attrs["flow.flows.0.enc.in_layers.1"]["dilations"][0])
            if "flow.flows.0.enc.in_layers.1" in attrs else 1,
            flow_n_layers=_count(weights, r"flow\.flows\.0\.enc\.in_layers\.(\d+)\."),
            has_posterior=False,
        )
        if use_sdp:
            cfg["sdp_kernel_size"] = weights[dp_key].shape[2]
            cfg["sdp_n_flows"] = _count(weights, r"dp\.flows\.(\d+)\.") // 2
        else:
            cfg["dp_kernel_size"] = weights[dp_key].shape[2]
            cfg["dp_filter_channels"] = weights[dp_key].shape[0]
    except (KeyError, IndexError, ZeroDivisionError) as e:
        raise PiperError(f"{where}: not a Piper VITS graph (missing {e})") from None
    return VITSConfig(**cfg)


def load_piper_voice(onnx_path: str | Path, json_path: str | Path | None = None) -> PiperVoice:
    """Rebuild a Piper voice in PyTorch.

    Args:
        onnx_path: the voice's ``.onnx``.
        json_path: its config; defaults to ``<onnx_path>.json``.
    Returns:
        :class:`PiperVoice` (model in eval mode on CPU).
    Raises:
        PiperError: missing/invalid files or weights that do not fit the rebuilt model.
    """
    onnx_path = Path(onnx_path)
    json_path = Path(json_path) if json_path else onnx_path.with_name(onnx_path.name + ".json")
    for p in (onnx_path, json_path):
        if not p.is_file():
            raise PiperError(f"Piper voice file not found: {p}")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        sample_rate = int(meta["audio"]["sample_rate"])
        phoneme_id_map = {k: list(v) for k, v in meta["phoneme_id_map"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise PiperError(f"{json_path}: not a Piper voice config ({e})") from None
    n_speakers = int(meta.get("num_speakers", 1))

    weights, attrs = read_onnx_weights(onnx_path)
    cfg = infer_vits_config(weights, attrs, n_speakers, str(onnx_path))
    model = VITS(cfg)
    model.remove_weight_norm()  # Piper folds weight norm into dec and flow weights
    state = model.state_dict()
    missing = [k for k in state if k not in weights and not k.startswith("dp.flows.1.")]
    if missing:
        raise PiperError(f"{onnx_path}: tensors missing for {len(missing)} weights, "
                         f"e.g. {missing[:3]}")
    loaded = {}
    for k, v in weights.items():
        if k not in state:
            continue  # constants and unused exports
        t = torch.from_numpy(np.array(v, copy=True)).to(state[k].dtype)
        if t.shape != state[k].shape:
            raise PiperError(f"{onnx_path}: {k} has shape {tuple(t.shape)}, the rebuilt model "
                             f"expects {tuple(state[k].shape)}")
        loaded[k] = t
    # dp.flows.1 is skipped by the reversed SDP and absent from the export: keep its init
    model.load_state_dict(loaded, strict=False)
    model.eval()

    audio = AudioConfig(sample_rate=sample_rate, n_fft=PIPER_N_FFT,
                        hop_length=cfg.hop_length, win_length=PIPER_WIN_LENGTH,
                        n_mels=PIPER_N_MELS)
    language = (meta.get("espeak") or {}).get("voice", "en-us")
    text = TextConfig(frontend="espeak", language=language, add_blank=False,
                      phoneme_id_map=phoneme_id_map,
                      vowel_clusters=meta.get("vowel_clusters") or None,
                      phoneme_type=str(meta.get("phoneme_type") or "espeak"))
    inference = {k: float(v) for k, v in (meta.get("inference") or {}).items()}
    return PiperVoice(model, cfg, audio, text, n_speakers, inference)
