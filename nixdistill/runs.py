"""Run folders and training checkpoints: atomic writes, safe loading and the newest checkpoint.

A run folder is what a training stage writes: ``RUN/config.json``, ``RUN/checkpoints/``
(``step_XXXXXXXX.pt`` and ``last.pt``) and ``RUN/tensorboard/``. A checkpoint is a plain dict
(see docs/ARCHITECTURE.md, "Training loop") holding only tensors, numbers, strings, lists, tuples
and dicts, so it loads with ``torch.load(weights_only=True)``.

This module sits below training, export and the teacher loader, which all read run folders.
Rebuilding the student modules a run holds is :mod:`nixdistill.deploy.build`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .errors import NixdistillError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONFIG_FILENAME",
    "CheckpointError",
    "atomic_write",
    "write_json_atomic",
    "checkpoint_dir",
    "step_checkpoint_name",
    "save_checkpoint",
    "link_or_copy_atomic",
    "load_checkpoint",
    "latest_checkpoint",
    "step_checkpoints",
    "prune_checkpoints",
]

CHECKPOINT_FORMAT = "nixdistill-train"
CHECKPOINT_DIRNAME = "checkpoints"
CONFIG_FILENAME = "config.json"
LAST_NAME = "last.pt"
_STEP_RE = re.compile(r"^step_(\d{8,})\.pt$")


class CheckpointError(NixdistillError):
    """A checkpoint is missing, unreadable, not a nixdistill training checkpoint, or of another
    stage than the one asked for."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    """``RUN/checkpoints``."""
    return Path(run_dir) / CHECKPOINT_DIRNAME


def step_checkpoint_name(step: int) -> str:
    """``step_XXXXXXXX.pt`` (zero-padded to 8 digits)."""
    return f"step_{step:08d}.pt"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder,
    then ``os.replace`` puts it in place, so a crash never leaves a truncated file. The file
    gets the usual permissions (``0o666`` minus the umask).

    Returns:
        the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.unlink()
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON with :func:`atomic_write` (``default=str``)."""
    text = json.dumps(obj, indent=2, default=str)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> Path:
    """Write ``obj`` with ``torch.save`` atomically (:func:`atomic_write`).

    Returns:
        the final path.
    """
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _link_or_copy(src: Path, tmp: Path) -> None:
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)


def link_or_copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Make ``dst`` a copy of ``src`` atomically (hard link when possible, else a file copy)."""
    return atomic_write(dst, lambda tmp: _link_or_copy(Path(src), tmp))


def step_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_XXXXXXXX.pt`` in ``RUN/checkpoints``, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(run_dir: str | Path, keep: int, protect: Iterable[int] = ()) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints (``last.pt`` and the checkpoints of
    the steps in ``protect`` are never touched).

    Returns:
        the deleted paths.
    """
    ckpts = step_checkpoints(run_dir)
    protected = set(protect)
    doomed = [p for step, p in ckpts[: max(0, len(ckpts) - max(keep, 1))]
              if step not in protected]
    for p in doomed:
        p.unlink()
    return doomed


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """``RUN/checkpoints/last.pt`` if present, else the highest ``step_*.pt``, else ``None``."""
    last = checkpoint_dir(run_dir) / LAST_NAME
    if last.is_file():
        return last
    ckpts = step_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def _resolve(run_dir_or_file: str | Path) -> Path:
    p = Path(run_dir_or_file)
    if p.is_file():
        return p
    if p.is_dir():
        # Accept the run folder or its checkpoints/ subfolder.
        found = latest_checkpoint(p)
        if found is None and p.name == CHECKPOINT_DIRNAME:
            found = latest_checkpoint(p.parent)
        if found is None:
            raise CheckpointError(
                f"no checkpoint in {p} (expected {checkpoint_dir(p) / LAST_NAME})")
        return found
    raise CheckpointError(f"checkpoint {p} does not exist")


def load_checkpoint(run_dir_or_file: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load a training checkpoint with ``torch.load(..., weights_only=True)``.

    Args:
        run_dir_or_file: a run folder (its ``checkpoints/last.pt`` or newest step file is
            used), its ``checkpoints/`` folder, or a checkpoint file.
        map_location: where tensors are loaded (default CPU).
    Returns:
        the checkpoint dict (keys listed in docs/ARCHITECTURE.md).
    Raises:
        CheckpointError: if nothing is found, the file cannot be unpickled safely, or it is not a
            ``nixdistill-train`` checkpoint.
    """
    path = _resolve(run_dir_or_file)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable nixdistill checkpoint: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a nixdistill training checkpoint (format "
            f"{obj.get('format') if isinstance(obj, dict) else type(obj).__name__!r}, "
            f"expected {CHECKPOINT_FORMAT!r})"
        )
    obj["path"] = str(path)
    return obj
