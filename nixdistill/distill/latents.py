"""Teacher latents ``z`` for distillation: posterior ``q(z | audio)`` or prior ``flow⁻¹`` samples.

Two sources (DESIGN.md §1):

- **posterior**: ``z ~ q(z | spec)`` from the teacher's ``enc_q`` on real audio (the Nix-TTS
  paper's setting, Chevi et al. 2022 §3.2). Needs a teacher with ``enc_q`` and a dataset with
  audio. ``T_frames`` is that of the real audio; the aligner queries are its log-mel.
- **prior**: ``z = flow⁻¹(m_p + ε·exp(logs_p))`` expanded with the teacher's own durations, from
  text only (Piper voices have no ``enc_q``). The teacher's own audio ``dec(z)`` is synthesised
  too, and its log-mel (with the teacher's :class:`~nixdistill.config.AudioConfig`) gives the
  aligner queries, so every tensor has the same ``T_frames``.

Sampling is reproducible for a given ``torch.Generator`` (or integer seed). An optional
on-disk cache (:class:`LatentCache`) stores one safetensors file per utterance id.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nixdistill.audio import audio_kwargs, mel_spectrogram, spec_to_mel
from nixdistill.errors import NixdistillError

__all__ = [
    "LATENT_SOURCES",
    "LatentError",
    "LatentBatch",
    "LatentSettings",
    "LatentCache",
    "choose_latent_source",
    "fill_latent_cache",
    "open_latent_cache",
    "resolve_latent_settings",
    "teacher_fingerprint",
    "teacher_latents",
]

LATENT_SOURCES = ("auto", "posterior", "prior")
_SEED_HIGH = 2**62  # seeds drawn from a caller's generator for a device-local generator


class LatentError(NixdistillError):
    """Latents cannot be produced as asked (no ``enc_q``, no audio, unknown mode)."""


class LatentBatch(NamedTuple):
    """Teacher latents for one batch.

    z: teacher latent, [B, inter, T_frames] (zero on padded frames).
    y_lengths: valid frames, [B] int64.
    mel: log-mel of the audio the latents describe (aligner queries), [B, n_mels, T_frames],
        zero on padded frames.
    w_ceil: teacher durations in frames per token, [B, T_text] int64 (prior), else None.
    wav: audio, [B, 1, T_samples]: the teacher's own synthesis (prior) or the real audio
        (posterior).
    m / logs: teacher posterior mean and log-std, [B, inter, T_frames] (posterior), else None.
    """

    z: torch.Tensor
    y_lengths: torch.Tensor
    mel: torch.Tensor
    w_ceil: torch.Tensor | None
    wav: torch.Tensor | None
    m: torch.Tensor | None = None
    logs: torch.Tensor | None = None


class LatentSettings(NamedTuple):
    """Sampling settings of :func:`teacher_latents`: ONE set per distillation.

    The encoder stage, the decoder stage and the latent cache all use the same settings: the
    cache records them and refuses others (:func:`open_latent_cache`), and the decoder stage
    inherits the encoder run's (:func:`resolve_latent_settings`). The defaults are the teacher
    "as shipped" (VITS/Piper inference defaults), so the student learns what users hear.

    noise_scale: prior sample std multiplier (VITS inference default 0.667).
    length_scale: teacher duration multiplier (prior).
    noise_scale_w: teacher stochastic-duration noise (prior).
    posterior_noise_scale: std multiplier of the posterior sample (1: a true sample of q).
    """

    noise_scale: float = 0.667
    length_scale: float = 1.0
    noise_scale_w: float = 0.8
    posterior_noise_scale: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "latent settings") -> "LatentSettings":
        """Build from a JSON dict; unknown keys raise :class:`LatentError`."""
        unknown = sorted(set(d) - set(cls._fields))
        if unknown:
            raise LatentError(f"{where}: unknown key(s) {unknown}; known: {list(cls._fields)}")
        return cls(**{k: float(v) for k, v in d.items()})

    def differences(self, other: "LatentSettings") -> list[str]:
        """``["noise_scale: 0.667 != 0.5", ...]`` for every field that differs."""
        return [f"{k}: {a} != {b}" for k, a, b in zip(self._fields, self, other) if a != b]


def resolve_latent_settings(
    explicit: LatentSettings | None, inherited: dict[str, LatentSettings | None],
) -> LatentSettings:
    """The one set of latent settings a stage must use.

    Args:
        explicit: the stage's own configured settings, or ``None`` when it configures none.
        inherited: settings already fixed elsewhere, by origin (e.g. ``{"encoder run RUN": s,
            "latent cache DIR": s}``); ``None`` values are ignored.
    Returns:
        the explicit settings, else the inherited ones, else the defaults.
    Raises:
        LatentError: two sources disagree (names both and every differing field).
    """
    named = [(k, v) for k, v in inherited.items() if v is not None]
    if explicit is not None:
        named.insert(0, ("this stage's config", explicit))
    if not named:
        return LatentSettings()
    first_name, first = named[0]
    for name, other in named[1:]:
        diff = first.differences(other)
        if diff:
            raise LatentError(
                f"latent settings of {first_name} and {name} disagree ({'; '.join(diff)}); "
                "encoder, decoder and cache must share one set -- fix the config or use a new "
                "cache folder")
    return first


def choose_latent_source(teacher: Any, has_audio: bool, mode: str = "auto") -> str:
    """Pick the latent source.

    Args:
        teacher: a :class:`nixdistill.teacher.loader.Teacher` (uses ``has_posterior``, ``source``).
        has_audio: whether every training item has audio.
        mode: ``"auto"`` (posterior iff the teacher has ``enc_q`` and there is audio),
            ``"posterior"`` or ``"prior"``.
    Returns:
        ``"posterior"`` or ``"prior"``.
    Raises:
        LatentError: unknown mode; posterior asked for a teacher without ``enc_q`` or for
            text-only data.
    """
    if mode not in LATENT_SOURCES:
        raise LatentError(f"latents must be one of {LATENT_SOURCES}, got {mode!r}")
    if mode == "auto":
        return "posterior" if (teacher.has_posterior and has_audio) else "prior"
    if mode == "posterior":
        if not teacher.has_posterior:
            raise LatentError(
                f"posterior latents need the teacher's posterior encoder (enc_q), but teacher "
                f"{getattr(teacher, 'source', '?')} ({getattr(teacher, 'kind', '?')}) has none; "
                "use --latents prior"
            )
        if not has_audio:
            raise LatentError("posterior latents need audio, but the dataset is text-only; "
                              "use --latents prior")
    return mode


def _device_generator(generator: torch.Generator | int | None, device: torch.device):
    """A generator on ``device``: the given one when it already lives there, else one seeded
    from it (or from the integer seed). ``None`` stays ``None`` (global RNG)."""
    if generator is None:
        return None
    if isinstance(generator, int):
        gen = torch.Generator(device=device)
        gen.manual_seed(generator)
        return gen
    if torch.device(generator.device).type == device.type:
        return generator
    seed = int(torch.randint(_SEED_HIGH, (1,), generator=generator))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _sid(teacher: Any, batch: Any) -> torch.Tensor | None:
    return batch.sid if getattr(teacher, "n_speakers", 0) > 1 else None


def _frame_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return (torch.arange(t, device=lengths.device)[None] < lengths[:, None]).unsqueeze(1)


def _uses_mel_posterior(teacher: Any) -> bool:
    return bool(getattr(teacher.model_config, "use_mel_posterior_encoder", False))


@torch.no_grad()
def _posterior(teacher, batch, gen, settings: LatentSettings) -> LatentBatch:
    if batch.spec is None:
        raise LatentError("posterior latents need audio, but the batch is text-only")
    audio = teacher.audio
    kw = audio_kwargs(audio)
    mel = spec_to_mel(batch.spec, kw["sample_rate"], kw["n_fft"], kw["n_mels"], kw["f_min"],
                      kw["f_max"])
    y = mel if _uses_mel_posterior(teacher) else batch.spec
    post = teacher.model.posterior(y, batch.spec_lengths, _sid(teacher, batch),
                                   noise_scale=settings.posterior_noise_scale, generator=gen)
    mask = _frame_mask(batch.spec_lengths, post.z.shape[2]).to(post.z.dtype)
    mel = mel[:, :, : post.z.shape[2]]
    return LatentBatch(post.z * mask, batch.spec_lengths.long(), mel * mask, None, batch.y,
                       post.m_q * mask, post.logs_q * mask)


@torch.no_grad()
def _prior(teacher, batch, gen, settings: LatentSettings) -> LatentBatch:
    out = teacher.model.infer(batch.x, batch.x_lengths, _sid(teacher, batch),
                              noise_scale=settings.noise_scale,
                              length_scale=settings.length_scale,
                              noise_scale_w=settings.noise_scale_w, generator=gen)
    hop = teacher.audio.hop_length
    y_lengths = out.y_mask.sum((1, 2)).long()
    sample_mask = _frame_mask(y_lengths * hop, out.wav.shape[2]).to(out.wav.dtype)
    wav = out.wav.float() * sample_mask
    mel = mel_spectrogram(wav, **audio_kwargs(teacher.audio))
    t_frames = out.z.shape[2]
    if mel.shape[2] < t_frames:  # a decoder that returned fewer samples than frames * hop
        mel = torch.nn.functional.pad(mel, (0, t_frames - mel.shape[2]))
    return LatentBatch(out.z * out.y_mask, y_lengths, mel[:, :, :t_frames] * out.y_mask,
                       out.w_ceil.reshape(out.w_ceil.shape[0], -1).long(), wav)


def teacher_latents(
    teacher: Any, batch: Any, source: str, generator: torch.Generator | int | None = None,
    settings: LatentSettings | None = None, cache: "LatentCache | None" = None,
) -> LatentBatch:
    """Teacher latents for a batch.

    Args:
        teacher: frozen :class:`nixdistill.teacher.loader.Teacher`.
        batch: :class:`nixdistill.data.Batch` on the teacher's device (posterior needs
            ``spec``/``spec_lengths``/``y``; prior needs ``x``/``x_lengths``).
        source: ``"posterior"`` or ``"prior"`` (see :func:`choose_latent_source`).
        generator: ``torch.Generator`` or integer seed for all sampling noise (None: global RNG).
        settings: :class:`LatentSettings` (defaults: VITS inference values).
        cache: optional :class:`LatentCache`; items found there are not recomputed.
    Returns:
        :class:`LatentBatch`; all frame axes share ``T_frames``.
    Raises:
        LatentError: unknown source, or posterior latents without audio.
    """
    if source not in ("posterior", "prior"):
        raise LatentError(f"latent source must be 'posterior' or 'prior', got {source!r}")
    settings = settings or LatentSettings()
    if cache is not None:
        hit = cache.load(batch.utt_ids, batch.x.shape[1], device=batch.x.device)
        if hit is not None:
            return hit
    gen = _device_generator(generator, batch.x.device)
    lat = (_posterior if source == "posterior" else _prior)(teacher, batch, gen, settings)
    if cache is not None:
        cache.save(batch.utt_ids, lat, batch.x_lengths)
    return lat


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

    def save(self, utt_ids: list[str], lat: LatentBatch, x_lengths: torch.Tensor) -> None:
        """Write one shard per item of ``lat`` (``x_lengths`` [B] trims ``w_ceil``)."""
        from safetensors.torch import save_file

        for i, utt_id in enumerate(utt_ids):
            n = int(lat.y_lengths[i])
            tensors = {"z": lat.z[i, :, :n], "mel": lat.mel[i, :, :n]}
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
        if any item is missing."""
        from safetensors.torch import load_file

        paths = [self.path(u) for u in utt_ids]
        if not all(p.is_file() for p in paths):
            return None
        items = [load_file(str(p)) for p in paths]
        lengths = torch.tensor([it["z"].shape[1] for it in items], dtype=torch.long)
        t = int(lengths.max())

        def pad(name: str, length: int) -> torch.Tensor | None:
            if name not in items[0]:
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
    progress: bool = True,
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
    Returns:
        the number of items computed (0 when the cache was already complete).
    Raises:
        LatentError: as :func:`teacher_latents`.
    """
    from nixdistill.data import collate

    todo = [i for i in range(len(dataset)) if not cache.path(dataset[i].utt_id).is_file()]
    if not todo:
        return 0
    todo.sort(key=lambda i: (len(dataset[i].x), i))
    batches = [todo[k: k + batch_size] for k in range(0, len(todo), batch_size)]
    gen = _device_generator(generator, torch.device(device))
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task("teacher latents", total=len(todo))
        bar.start()
    try:
        for idx in batches:
            batch = collate([dataset[i] for i in idx]).to(device)
            teacher_latents(teacher, batch, source, gen, settings, cache)
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
                      settings: LatentSettings) -> LatentCache:
    """The latent cache of (teacher, latent source, sampling settings) under ``root``.

    Both distillation stages open it the same way, so ``distil-decoder`` reuses the latents
    (and, for prior latents, the teacher's audio) that ``distil-encoder`` already computed.
    The teacher is identified by its file's content (:func:`teacher_fingerprint`), not its path.
    A teacher whose frontend names its phonemizer (``espeak``) records it too: latents of
    other phoneme ids (another phonemizer or version) are refused.

    Raises:
        LatentError: ``root`` already holds latents of another teacher, source, setting or
            phonemizer.
    """
    identity = {"teacher": {"kind": teacher.kind, "sha1": teacher_fingerprint(teacher)},
                "source": source, "settings": settings._asdict()}
    phonemizer = getattr(teacher.frontend, "phonemizer", None)
    if phonemizer is not None:
        identity["phonemizer"] = phonemizer
    return LatentCache(root, identity, teacher.audio.hop_length)
