"""Rebuild a Piper voice (VITS exported to ONNX) as a PyTorch
:class:`~nixdistill.teachers.vits.VITS`.

A Piper ``.onnx`` holds ``enc_p``, ``dp`` (stochastic duration predictor), ``flow`` and
``dec``, but no ``enc_q``, no ``dp.post_*`` and no ``dp.flows.1`` (unused at inference), so
the rebuilt model is prior-only (``has_posterior=False``).

Weights are found by graph structure, not by initializer names
(:mod:`nixdistill.teacher.onnx_graph`): each parameter through the module scope and input
position of the node that uses it. So the rebuild survives what exporters do to names: one
initializer for several identical tensors, ``exp(-logs)`` or ``-logs`` folded into anonymous
tensors (torch 2.0 resp. 2.13), folded weight-norm convs named ``onnx::Conv_NNNN``, an
embedding table named ``sid``, renamed initializers, and the dynamo exporter's in-graph weight
norm (opset 18). A graph without module scopes (torch < 1.13 node names) cannot be mapped.

Hyperparameters are read from tensor shapes and node attributes (strides, dilations), so
x-low/low/medium/high and multi-speaker voices all rebuild; the speaker count and embedding
width come from ``emb_g``. The model's ``dec`` and ``flow`` have weight norm removed, matching
the folded weights. Source of the layout: piper1-gpl ``piper.train.vits`` (``SynthesizerTrn``)
and its ``export_onnx.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nixdistill.config import AudioConfig, TextConfig
from nixdistill.errors import ConfigError, TeacherError
from nixdistill.teacher.onnx_graph import GraphError, GraphMapping, map_module_graph
from nixdistill.teachers.vits import VITS, VITSConfig

#: STFT settings of every Piper voice (piper1-gpl training defaults); only ``sample_rate``
#: varies and is read from the ``.onnx.json``.
PIPER_N_FFT = 1024
PIPER_WIN_LENGTH = 1024
PIPER_N_MELS = 80
#: Parameters a Piper export never holds: the reversed SDP skips ``dp.flows.1``.
_NOT_EXPORTED = ("dp.flows.1.",)


class PiperError(TeacherError):
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


def map_piper_graph(onnx_path: str | Path) -> GraphMapping:
    """The state-dict tensors of a Piper voice, found by graph structure.

    Args:
        onnx_path: the voice's ``.onnx``.
    Returns:
        :class:`~nixdistill.teacher.onnx_graph.GraphMapping` (weights as float32 arrays, Conv
        attributes by module key, the op types of each module scope).
    Raises:
        PiperError: unreadable file, a constant that cannot be evaluated, or two nodes that
            give one parameter different values.
    """
    import onnx

    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # onnx raises several unrelated types for bad files
        raise PiperError(f"{onnx_path}: not a readable ONNX model ({e})") from None
    try:
        mapping = map_module_graph(model)
    except GraphError as e:
        raise PiperError(f"{onnx_path}: {e}") from None
    if mapping.conflicts:
        raise PiperError(f"{onnx_path}: {len(mapping.conflicts)} parameters get different values "
                         f"from different nodes, e.g. {mapping.conflicts[0]}")
    return mapping


def read_onnx_weights(onnx_path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """PyTorch-named weights and the attributes of Conv/ConvTranspose nodes of a Piper voice.

    A thin view of :func:`map_piper_graph`.

    Returns:
        (weights {state-dict key: float32 array}, attrs {module key: {attribute: value}}).
    Raises:
        PiperError: as :func:`map_piper_graph`.
    """
    mapping = map_piper_graph(onnx_path)
    return mapping.weights, mapping.attrs


def _indices(keys: Iterable[str], pattern: str) -> list[int]:
    """Sorted distinct integers of group 1 of ``pattern`` over ``keys``."""
    return sorted({int(m.group(1)) for k in keys if (m := re.match(pattern, k))})


class _Hyper:
    """Reads tensors and Conv attributes of a mapping, or raises a :class:`PiperError` that
    names the module and why it is missing."""

    def __init__(self, mapping: GraphMapping, where: str):
        self.mapping = mapping
        self.weights = mapping.weights
        self.where = where

    def fail(self, module: str, what: str, reason: str) -> PiperError:
        return PiperError(f"{self.where}: cannot rebuild module {module}: {what} ({reason})")

    def tensor(self, key: str) -> np.ndarray:
        if key not in self.weights:
            raise self.fail(key.rsplit(".", 1)[0], f"{key} not found",
                            self.mapping.why_missing(key))
        return self.weights[key]

    def attr(self, module: str, name: str) -> int:
        """First element of attribute ``name`` (strides, dilations) of the Conv of ``module``."""
        attrs = self.mapping.attrs.get(module)
        if attrs is None or name not in attrs:
            reason = (self.mapping.why_module_missing(module) if attrs is None
                      else f"its Conv node has no '{name}' attribute")
            raise self.fail(module, f"the Conv {name} not found", reason)
        return int(attrs[name][0])

    def count(self, pattern: str, module: str) -> list[int]:
        """Indices matched by ``pattern``; at least one, else an error naming ``module``."""
        found = _indices(self.weights, pattern)
        if not found:
            raise self.fail(module, "none of its layers found",
                            self.mapping.why_module_missing(f"{module}.0"))
        return found


def infer_vits_config(mapping: GraphMapping, n_speakers: int = 1, where: str = "") -> VITSConfig:
    """Hyperparameters of a Piper VITS from its mapped weight shapes and Conv attributes.

    Args:
        mapping: the voice's graph mapping (:func:`map_piper_graph`).
        n_speakers: ``num_speakers`` of the ``.onnx.json`` (1 for single-speaker voices); checked
            against the rows of the speaker embedding ``emb_g``.
        where: the file, for messages.
    Returns:
        a prior-only :class:`VITSConfig` (``has_posterior=False``); ``n_speakers`` and
        ``gin_channels`` come from ``emb_g.weight [n_speakers, gin]`` (0 when absent).
    Raises:
        PiperError: a tensor or Conv attribute needed for a hyperparameter is missing (the
            message names the module and why), or the speaker count disagrees with the json.
    """
    h = _Hyper(mapping, where)
    w = mapping.weights
    emb = h.tensor("enc_p.emb.weight")  # [n_vocab, hidden]
    rel = h.tensor("enc_p.encoder.attn_layers.0.emb_rel_k")  # [1, 2 * window + 1, hidden / heads]
    ffn = h.tensor("enc_p.encoder.ffn_layers.0.conv_1.weight")  # [filter, hidden, kernel]
    ups = h.count(r"dec\.ups\.(\d+)\.weight$", "dec.ups")
    resblock = "1" if any(re.match(r"dec\.resblocks\.\d+\.convs1\.", k) for k in w) else "2"
    convs = "convs1" if resblock == "1" else "convs"
    blocks = h.count(r"dec\.resblocks\.(\d+)\.", "dec.resblocks")
    if len(blocks) % len(ups):
        raise h.fail("dec.resblocks", f"{len(blocks)} blocks for {len(ups)} upsamplings",
                     "a HiFi-GAN decoder has the same number of blocks per upsampling")
    res_k, res_d = [], []
    for j in range(len(blocks) // len(ups)):
        layers = h.count(rf"dec\.resblocks\.{j}\.{convs}\.(\d+)\.weight$",
                         f"dec.resblocks.{j}.{convs}")
        res_k.append(int(h.tensor(f"dec.resblocks.{j}.{convs}.0.weight").shape[2]))
        res_d.append([h.attr(f"dec.resblocks.{j}.{convs}.{i}", "dilations") for i in layers])
    flows = h.count(r"flow\.flows\.(\d+)\.", "flow.flows")
    wn_layers = h.count(r"flow\.flows\.0\.enc\.in_layers\.(\d+)\.weight$",
                        "flow.flows.0.enc.in_layers")
    gin, graph_speakers = 0, 0
    if "emb_g.weight" in w:
        graph_speakers, gin = (int(d) for d in w["emb_g.weight"].shape)
    if n_speakers > 1 and graph_speakers != n_speakers:
        reason = (f"it has {graph_speakers} rows" if graph_speakers
                  else mapping.why_missing("emb_g.weight"))
        raise PiperError(f"{where}: the .onnx.json gives {n_speakers} speakers but the speaker "
                         f"embedding emb_g does not match ({reason})")
    use_sdp = any(k.startswith("dp.flows.") for k in w)
    cfg: dict[str, Any] = dict(  # noqa: C408  (VITSConfig's field names)
        n_vocab=int(emb.shape[0]), spec_channels=PIPER_N_FFT // 2 + 1,
        inter_channels=int(h.tensor("enc_p.proj.weight").shape[0]) // 2,
        hidden_channels=int(emb.shape[1]), filter_channels=int(ffn.shape[0]),
        n_heads=int(emb.shape[1]) // int(rel.shape[2]),
        n_layers=len(h.count(r"enc_p\.encoder\.attn_layers\.(\d+)\.", "enc_p.encoder.attn_layers")),
        kernel_size=int(ffn.shape[2]), window_size=(int(rel.shape[1]) - 1) // 2,
        resblock=resblock, resblock_kernel_sizes=res_k, resblock_dilation_sizes=res_d,
        upsample_rates=[h.attr(f"dec.ups.{i}", "strides") for i in ups],
        upsample_kernel_sizes=[int(w[f"dec.ups.{i}.weight"].shape[2]) for i in ups],
        upsample_initial_channel=int(h.tensor("dec.conv_pre.weight").shape[0]),
        n_speakers=graph_speakers, gin_channels=gin, use_sdp=use_sdp,
        flow_n_flows=len(flows),
        flow_kernel_size=int(h.tensor("flow.flows.0.enc.in_layers.0.weight").shape[2]),
        flow_dilation_rate=(h.attr("flow.flows.0.enc.in_layers.1", "dilations")
                            if len(wn_layers) > 1 else 1),
        flow_n_layers=len(wn_layers), has_posterior=False)
    if use_sdp:
        cfg["sdp_kernel_size"] = int(h.tensor("dp.convs.convs_sep.0.weight").shape[2])
        cfg["sdp_n_flows"] = (max(_indices(w, r"dp\.flows\.(\d+)\.")) + 1) // 2
    else:
        dp = h.tensor("dp.conv_1.weight")  # [filter, hidden, kernel]
        cfg["dp_kernel_size"] = int(dp.shape[2])
        cfg["dp_filter_channels"] = int(dp.shape[0])
    try:
        return VITSConfig(**cfg)
    except ConfigError as e:
        raise PiperError(f"{where}: the mapped shapes give an invalid VITS ({e})") from None


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

    mapping = map_piper_graph(onnx_path)
    cfg = infer_vits_config(mapping, n_speakers, str(onnx_path))
    model = VITS(cfg)
    model.remove_weight_norm()  # Piper folds weight norm into dec and flow weights
    state = model.state_dict()
    missing = [k for k in state if k not in mapping.weights and not k.startswith(_NOT_EXPORTED)]
    if missing:
        first = missing[0]
        raise PiperError(f"{onnx_path}: cannot rebuild module {first.rsplit('.', 1)[0]}: "
                         f"{first} not found ({mapping.why_missing(first)}); "
                         f"{len(missing)} tensors missing in all, e.g. {missing[:3]}")
    loaded = {}
    for k, v in mapping.weights.items():
        if k not in state:
            continue  # constants and unused exports (e.g. the dynamo exporter's weight_g/_v)
        t = torch.from_numpy(np.array(v, copy=True)).to(state[k].dtype)
        if t.shape != state[k].shape:
            raise PiperError(f"{onnx_path}: {k} has shape {tuple(t.shape)} (from "
                             f"{mapping.source[k]}), the rebuilt model expects "
                             f"{tuple(state[k].shape)}")
        loaded[k] = t
    # dp.flows.1 is skipped by the reversed SDP and absent from the export: keep its init
    model.load_state_dict(loaded, strict=False)
    model.eval()
    n_speakers = max(cfg.n_speakers, 1)

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
