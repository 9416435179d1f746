"""The on-disk latent cache: one safetensors file per utterance id, under an identity of
(teacher, latent source, sampling settings, phonemizer)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from nixdistill.distill.latents.sampling import device_generator, teacher_latents
from nixdistill.distill.latents.settings import LatentBatch, LatentError, LatentSettings

__all__ = ["LatentCache", "fill_latent_cache", "open_latent_cache", "teacher_description",
           "teacher_fingerprint"]


# -------------------------------------------------------------------------------- cache
_FIELDS = ("z", "mel", "w_ceil", "wav", "m", "logs")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class LatentCache:
    """On-disk cache of teacher latents: one safetensors shard per utterance id.

    ``root/identity.json`` records everything the latents depend on (teacher, latent source and
    every sampling setting). Opening a cache with another identity raises :class:`LatentError`
    instead of silently starting a second cache. Samples are drawn once, from the training RNG,
    when an utterance is first seen; later epochs and the other stage reuse that draw. Each
    shard holds the item's tensors trimmed to its own length (``z``, ``mel``, and where present
    ``w_ceil``, ``wav``, ``m``, ``logs``).

    Args:
        root: cache folder.
        identity: JSON-able description of everything the latents depend on.
        hop_length: samples per frame (to trim ``wav``).
    Raises:
        LatentError: ``root`` holds latents of another identity.
    """

    def __init__(self, root: str | Path, identity: dict[str, Any], hop_length: int) -> None:
        self.dir = Path(root)
        self.dir.mkdir(parents=True, exist_ok=True)
        ident_path = self.dir / "identity.json"
        identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        if ident_path.is_file():
            stored = json.loads(ident_path.read_text())
            if stored != identity:
                diff = [k for k in sorted(set(stored) | set(identity))
                        if stored.get(k) != identity.get(k)]
                raise LatentError(
                    f"latent cache {self.dir} holds latents of another setting (differs in "
                    f"{diff}: cached {[stored.get(k) for k in diff]}, asked "
                    f"{[identity.get(k) for k in diff]}); use the same latent settings in every "
                    "stage, or another --cache-dir")
        else:
            tmp = ident_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True))
            tmp.replace(ident_path)
        self.identity = identity
        self.hop_length = hop_length

    @staticmethod
    def stored_settings(root: str | Path) -> LatentSettings | None:
        """The latent settings a cache folder was made with, or ``None`` if it has none yet."""
        ident_path = Path(root) / "identity.json"
        if not ident_path.is_file():
            return None
        return LatentSettings.from_dict(json.loads(ident_path.read_text())["settings"],
                                        str(ident_path))

    def path(self, utt_id: str) -> Path:
        """Shard file of ``utt_id`` (unsafe characters replaced, plus a short hash)."""
        digest = hashlib.sha1(utt_id.encode()).hexdigest()[:8]
        return self.dir / f"{_UNSAFE.sub('_', utt_id)}-{digest}.safetensors"

    def has(self, utt_id: str, audio: bool = False) -> bool:
        """Whether ``utt_id`` is cached (with ``audio``: with the teacher's ``wav``, which
        text-only latents lack)."""
        path = self.path(utt_id)
        if not path.is_file():
            return False
        if not audio:
            return True
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return "wav" in f.keys()

    def save(self, utt_ids: list[str], lat: LatentBatch, x_lengths: torch.Tensor) -> None:
        """Write one shard per item of ``lat`` (``x_lengths`` [B] trims ``w_ceil``)."""
        from safetensors.torch import save_file

        for i, utt_id in enumerate(utt_ids):
            n = int(lat.y_lengths[i])
            tensors = {"z": lat.z[i, :, :n]}
            if lat.mel is not None:
                tensors["mel"] = lat.mel[i, :, :n]
            if lat.w_ceil is not None:
                tensors["w_ceil"] = lat.w_ceil[i, : int(x_lengths[i])]
            if lat.wav is not None:
                tensors["wav"] = lat.wav[i, :, : n * self.hop_length]
            if lat.m is not None:
                tensors["m"], tensors["logs"] = lat.m[i, :, :n], lat.logs[i, :, :n]
            tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
            target = self.path(utt_id)
            tmp = target.with_suffix(".tmp")
            save_file(tensors, str(tmp))
            tmp.replace(target)

    def load(
        self, utt_ids: list[str], t_text: int, device: torch.device | str = "cpu"
    ) -> LatentBatch | None:
        """The batch re-padded from its shards (``w_ceil`` to ``t_text`` tokens), or ``None``
        if any item is missing. A field that some item lacks (``mel`` and ``wav`` of text-only
        latents) is ``None`` for the whole batch."""
        from safetensors.torch import load_file

        paths = [self.path(u) for u in utt_ids]
        if not all(p.is_file() for p in paths):
            return None
        items = [load_file(str(p)) for p in paths]
        lengths = torch.tensor([it["z"].shape[1] for it in items], dtype=torch.long)
        t = int(lengths.max())

        def pad(name: str, length: int) -> torch.Tensor | None:
            if not all(name in it for it in items):  # e.g. text-only items have no wav
                return None
            vals = [it[name] for it in items]
            shape = (len(vals), *vals[0].shape[:-1], length)
            out = torch.zeros(shape, dtype=vals[0].dtype)
            for i, v in enumerate(vals):
                out[i, ..., : v.shape[-1]] = v
            return out.to(device)

        return LatentBatch(
            pad("z", t), lengths.to(device), pad("mel", t), pad("w_ceil", t_text),
            pad("wav", t * self.hop_length), pad("m", t), pad("logs", t),
        )


@torch.no_grad()
def fill_latent_cache(
    teacher: Any, dataset: Any, source: str, settings: LatentSettings, cache: LatentCache,
    generator: torch.Generator | int | None = None, batch_size: int = 8, device: str = "cpu",
    progress: bool = True, audio: bool = True,
) -> int:
    """Compute the teacher latents of every item of ``dataset`` missing from ``cache``.

    Items are taken shortest first and batched with others of similar length, so the teacher
    (for prior latents: its whole synthesis, decoder included) wastes little work on padding.
    Running this before training keeps the teacher's cost out of a stage's time budget, and a
    run interrupted here resumes where it stopped (finished shards are kept).

    Args:
        teacher: frozen :class:`nixdistill.teacher.loader.Teacher`.
        dataset: a dataset of :class:`nixdistill.data.Item` (``utt_id``, ``x``; audio for
            posterior latents), e.g. ``TextOnlyDataset``.
        source / settings: as :func:`teacher_latents`.
        cache: the :class:`LatentCache` to fill.
        generator: torch generator or integer seed of the sampling noise (one draw per item).
        batch_size: items per teacher pass.
        device: torch device of the teacher.
        progress: show a progress bar on stderr.
        audio: prior latents only: synthesise the teacher's audio too (see
            :func:`teacher_latents`); ``False`` caches text-only latents, for sentences only
            the encoder learns from. Items cached text-only are synthesised again when
            ``audio`` is asked for.
    Returns:
        the number of items computed (0 when the cache was already complete).
    Raises:
        LatentError: as :func:`teacher_latents`.
    """
    from nixdistill.data import collate

    needs_audio = audio and source == "prior"
    todo = [i for i in range(len(dataset)) if not cache.has(dataset[i].utt_id, needs_audio)]
    if not todo:
        return 0
    todo.sort(key=lambda i: (len(dataset[i].x), i))
    batches = [todo[k: k + batch_size] for k in range(0, len(todo), batch_size)]
    gen = device_generator(generator, torch.device(device))
    bar = None
    label = "teacher latents" if needs_audio or source != "prior" else "teacher latents (text only)"
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task(label, total=len(todo))
        bar.start()
    try:
        for idx in batches:
            batch = collate([dataset[i] for i in idx]).to(device)
            teacher_latents(teacher, batch, source, gen, settings, cache, audio)
            if bar is not None:
                bar.advance(task, len(idx))
    finally:
        if bar is not None:
            bar.stop()
    return len(todo)


def teacher_description(teacher: Any) -> dict[str, Any]:
    """What a student records about its teacher: ``{"kind", "source", "n_params"}``."""
    return {"kind": teacher.kind, "source": str(teacher.source),
            "n_params": int(teacher.n_params())}


def teacher_fingerprint(teacher: Any) -> str:
    """SHA-1 of the file the teacher's weights came from (``teacher.source``).

    It names the teacher in a latent cache's identity without its path, so a cache stays valid
    when the same voice is installed elsewhere, and a retrained teacher at the same path is told
    apart. (Not the loaded state dict: a Piper ``.onnx`` lacks the training-only modules, such
    as the stochastic duration predictor's posterior flows, which are freshly initialised at
    every load.) A teacher without a source file is hashed by its weights.

    Returns:
        40 hex digits.
    Raises:
        OSError: the source file exists but cannot be read.
    """
    digest = hashlib.sha1()
    path = Path(str(getattr(teacher, "source", "")))
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def open_latent_cache(root: str | Path, teacher: Any, source: str,
                      settings: LatentSettings,
                      speakers: dict[str, Any] | None = None) -> LatentCache:
    """The latent cache of (teacher, latent source, sampling settings) under ``root``.

    Both distillation stages open it the same way, so ``distil-decoder`` reuses the latents
    (and, for prior latents, the teacher's audio) that ``distil-encoder`` already computed.
    The teacher is identified by its file's content (:func:`teacher_fingerprint`), not its path.
    A teacher whose frontend names its phonemizer (``espeak``) records it too: latents of
    other phoneme ids (another phonemizer or version) are refused.

    ``speakers`` (a multi-speaker teacher's draw, :func:`~nixdistill.distill.speakers.assign_speakers`)
    joins the identity, so latents rendered for other speakers are refused.

    Raises:
        LatentError: ``root`` already holds latents of another teacher, source, setting,
            phonemizer or speaker draw.
    """
    identity = {"teacher": {"kind": teacher.kind, "sha1": teacher_fingerprint(teacher)},
                "source": source, "settings": settings._asdict()}
    phonemizer = getattr(teacher.frontend, "phonemizer", None)
    if phonemizer is not None:
        identity["phonemizer"] = phonemizer
    if speakers is not None:
        identity["speakers"] = speakers
    return LatentCache(root, identity, teacher.audio.hop_length)
