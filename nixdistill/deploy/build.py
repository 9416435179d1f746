"""Rebuild the trained student parts that a run folder holds.

``distil-encoder`` and ``distil-decoder`` runs keep their module configs in the checkpoint, so
:func:`encoder_from_run` and :func:`decoder_from_run` need no other file. Export and the decoder
stage (which speaks through a trained encoder) both start from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from nixdistill.config import from_dict
from nixdistill.runs import CheckpointError, load_checkpoint
from nixdistill.students.decoder import build_decoder, decoder_config_from_dict
from nixdistill.students.encoder import NixEncoder, NixEncoderConfig

__all__ = ["encoder_from_run", "decoder_from_run"]


def decoder_from_run(run: str | Path | dict[str, Any]) -> tuple[nn.Module, dict[str, Any], dict]:
    """Rebuild the trained decoder of a ``distil-decoder`` run, weight norm folded.

    Args:
        run: run folder, checkpoint file, or an already loaded checkpoint dict.
    Returns:
        (decoder in eval mode, its config dict (with ``kind``), checkpoint dict).
    Raises:
        CheckpointError: no checkpoint, or not a decoder run.
    """
    ckpt = run if isinstance(run, dict) else load_checkpoint(run)
    config = ckpt.get("config") or {}
    model = config.get("model") or {}
    if "decoder" not in ckpt.get("models", {}) or "kind" not in model:
        raise CheckpointError(f"{ckpt.get('path', run)} is not a distil-decoder run")
    cfg = decoder_config_from_dict(model["kind"], model, f"{ckpt.get('path', run)}:model")
    decoder = build_decoder(cfg.kind, cfg, int(config["audio"]["hop_length"]))
    decoder.load_state_dict(ckpt["models"]["decoder"])
    decoder.remove_weight_norm().eval()
    return decoder, dataclasses.asdict(cfg), ckpt


def encoder_from_run(
    run: str | Path, with_aligner: bool = False
) -> tuple[nn.Module, dict[str, Any], dict]:
    """Rebuild the trained encoder of a ``distil-encoder`` run.

    The config is read from ``meta["encoder_config"]`` when present, else ``config["model"]``.

    Args:
        run: run folder or checkpoint file.
        with_aligner: keep the training-only aligner (needed to run ``forward`` on mels).
    Returns:
        (NixEncoder in eval mode, its config dict, checkpoint dict).
    Raises:
        CheckpointError: no checkpoint, or not an encoder run.
        ConfigError: an invalid encoder config.
    """
    ckpt = load_checkpoint(run)
    model = (ckpt.get("meta") or {}).get("encoder_config") or (ckpt.get("config") or {}).get("model")
    if "encoder" not in ckpt.get("models", {}) or not model:
        raise CheckpointError(f"{ckpt.get('path', run)} is not a distil-encoder run")
    cfg = from_dict(NixEncoderConfig, model, f"{run}:model")
    encoder = NixEncoder(cfg, with_aligner=with_aligner)
    state = ckpt["models"]["encoder"]
    if not with_aligner:
        state = {k: v for k, v in state.items() if not k.startswith("aligner.")}
    encoder.load_state_dict(state)
    return encoder.eval(), dataclasses.asdict(cfg), ckpt
