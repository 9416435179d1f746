"""Stage 3, ``distil-decoder``: train a student decoder ``z -> wav`` against the teacher.

Inputs are random segments of the teacher's latent ``z`` (posterior ``q(z|spec)`` on real audio,
or prior ``flow⁻¹(m_p + ε·σ_p)`` from text; :mod:`nixdistill.latents`). Targets are the teacher
decoder's output for the *same* ``z`` segment and, with posterior latents, the real audio
segment. With ``--encoder RUN`` a share of the batches (``train.extra.encoder_latent_ratio``)
feeds the decoder the trained student encoder's latents instead, aligned to the teacher's frames
(posterior: the encoder's aligner on the real mel; prior: the teacher's durations), so the
decoder sees inference-like ``z`` (fixes bug 9 of the unofficial port, DESIGN.md §3).

Losses (names are the keys of ``train.loss_weights``; a weight of 0 skips the term):

* ``adv``  LSGAN generator loss vs :class:`~nixdistill.discriminators.CombinedDiscriminator`
  (MPD + MSD), plus an optional multi-resolution STFT discriminator;
* ``fm``   feature matching;
* ``mel``  log-mel L1 vs the target (real audio when present, else the teacher's output);
* ``stft`` MR-STFT (spectral convergence + log magnitude) vs the target;
* ``teacher_stft`` MR-STFT vs the teacher's output.

Defaults follow the unofficial Nix-TTS port: adv 1, fm 2, mel 20, stft 1, teacher_stft 1.

``train.extra`` keys: ``stft_resolutions`` (``[[n_fft, hop, win], ...]`` in samples; default:
(1024,128,1024), (2048,256,2048), (512,64,512) scaled to the sample rate), ``discriminator``
(``periods``, ``n_scales``, ``channel_scale``, ``mrstft``), ``eval_items`` (held-out utterances
for ``val/mel_l1``), ``encoder_latent_ratio`` (share of batches on encoder latents),
``encoder_noise_scale`` (noise of the encoder's latent sample).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..audio import audio_kwargs, mel_spectrogram
from ..config import train_overrides, ConfigError, ExperimentConfig, from_dict, load_config
from ..discriminators import CombinedDiscriminator, MultiResolutionSTFTDiscriminator
from ..errors import NixdistillError
from ..latents import LatentCache, LatentSettings, open_latent_cache, teacher_description
from ..losses import (
    STFTResolution,
    discriminator_loss,
    feature_loss,
    generator_loss,
    mel_l1,
    mr_stft_loss,
    scaled_resolutions,
)

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "DiscriminatorSettings",
    "DistilDecoderStage",
    "decoder_model_config",
    "run_distil_decoder",
]

STAGE_NAME = "distil_decoder"
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "adv": 1.0, "fm": 2.0, "mel": 20.0, "stft": 1.0, "teacher_stft": 1.0,
}
DEFAULT_EVAL_ITEMS = 4
DEFAULT_ENCODER_LATENT_RATIO = 0.5
DEFAULT_ENCODER_NOISE_SCALE = 1.0


@dataclass
class DiscriminatorSettings:
    """``train.extra.discriminator``.

    Attributes:
        periods: MPD periods in samples (HiFi-GAN: 2, 3, 5, 7, 11).
        n_scales: MSD scale discriminators (VITS: 1; HiFi-GAN: 3).
        channel_scale: width multiplier of every sub-discriminator.
        mrstft: add a multi-resolution STFT discriminator at the loss resolutions.
    """

    periods: list[int] = dataclasses.field(default_factory=lambda: [2, 3, 5, 7, 11])
    n_scales: int = 1
    channel_scale: float = 1.0
    mrstft: bool = False


class Discriminators(nn.Module):
    """CombinedDiscriminator (MPD + MSD) and an optional MR-STFT discriminator, outputs joined.

    Forward: ``y, y_hat [B, 1, T_samples] -> DiscriminatorOutput`` over all sub-discriminators.
    """

    def __init__(self, settings: DiscriminatorSettings, resolutions: list[STFTResolution]):
        super().__init__()
        self.combined = CombinedDiscriminator(settings.periods, settings.n_scales,
                                              settings.channel_scale)
        self.mrstft = (MultiResolutionSTFTDiscriminator(resolutions, settings.channel_scale)
                       if settings.mrstft else None)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        out = self.combined(y, y_hat)
        if self.mrstft is not None:
            extra = self.mrstft(y, y_hat)
            for mine, theirs in zip(out, extra):
                mine.extend(theirs)
        return out


def decoder_model_config(model: dict[str, Any], teacher_inter: int, where: str) -> tuple[str, Any]:
    """``(kind, config dataclass)`` of a decoder config section, ``inter_channels`` from the teacher.

    The student decoder is speaker-agnostic (``gin_channels`` 0): the teacher's ``z`` already
    carries the speaker.

    Raises:
        ConfigError: missing/unknown kind, bad fields, or an ``inter_channels`` that differs from
            the teacher's.
    """
    from ..students.decoder import decoder_config_from_dict

    fields = dict(model)
    kind = fields.pop("kind", None)
    if kind is None:
        raise ConfigError(f"{where}: model.kind is required ('nix' or 'istft')")
    inter = fields.setdefault("inter_channels", teacher_inter)
    if inter != teacher_inter:
        raise ConfigError(f"{where}: model.inter_channels ({inter}) must equal the teacher's "
                          f"inter_channels ({teacher_inter})")
    return kind, decoder_config_from_dict(kind, fields, f"{where}:model")


def _segment_starts(lengths: torch.Tensor, segment_frames: int) -> list[int]:
    """Random start frame per item, uniform over the valid positions (global torch RNG)."""
    starts = []
    for n in lengths.tolist():
        high = max(int(n) - segment_frames, 0) + 1
        starts.append(int(torch.randint(high, (1,)).item()))
    return starts


def _slice_frames(x: torch.Tensor, starts: list[int], frames: int) -> torch.Tensor:
    """[B, C, T] -> [B, C, frames] from per-item starts (zero-padded past the end)."""
    if x.shape[-1] < max(starts) + frames:
        x = nn.functional.pad(x, (0, max(starts) + frames - x.shape[-1]))
    return torch.stack([x[i, :, s:s + frames] for i, s in enumerate(starts)])


class DistilDecoderStage:
    """Training-loop stage for decoder distillation (see the module docstring).

    Args:
        teacher: a loaded :class:`nixdistill.teacher.Teacher` (frozen).
        cfg: the resolved experiment config (audio = the teacher's).
        kind / decoder_cfg: student decoder kind and config.
        train_set / eval_set: datasets (``AudioTextDataset`` or ``TextOnlyDataset``).
        source: ``"posterior"`` or ``"prior"`` latents.
        encoder: trained student encoder (frozen) for inference-like latents, or None.
        cache: optional :class:`nixdistill.latents.LatentCache` of teacher latents (shared with
            ``distil-encoder`` when both use the same cache folder).
    """

    name = STAGE_NAME

    def __init__(self, teacher, cfg: ExperimentConfig, kind: str, decoder_cfg, train_set,
                 eval_set, source: str, encoder: nn.Module | None = None,
                 cache: "LatentCache | None" = None) -> None:
        from ..students.decoder import build_decoder

        self.teacher = teacher
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.audio = cfg.audio
        self.kind = kind
        self.decoder_cfg = decoder_cfg
        self.train_set = train_set
        self.eval_set = eval_set
        self.source = source
        self.encoder = encoder
        self.cache = cache
        extra = dict(cfg.train.extra)
        self.segment_frames = cfg.train.segment_size // cfg.audio.hop_length
        res = extra.get("stft_resolutions")
        self.resolutions = ([STFTResolution(*r) for r in res] if res is not None
                            else scaled_resolutions(cfg.audio.sample_rate))
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **cfg.train.loss_weights}
        unknown = sorted(set(self.loss_weights) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ConfigError(f"train.loss_weights: unknown term(s) {unknown} for distil-decoder; "
                              f"known: {sorted(DEFAULT_LOSS_WEIGHTS)}")
        self.use_disc = self.loss_weights["adv"] > 0 or self.loss_weights["fm"] > 0
        settings = from_dict(DiscriminatorSettings, extra.get("discriminator", {}),
                             "train.extra.discriminator")
        self.eval_items = int(extra.get("eval_items", DEFAULT_EVAL_ITEMS))
        self.encoder_ratio = float(extra.get("encoder_latent_ratio", DEFAULT_ENCODER_LATENT_RATIO))
        self.encoder_noise = float(extra.get("encoder_noise_scale", DEFAULT_ENCODER_NOISE_SCALE))
        self.decoder = build_decoder(kind, decoder_cfg, cfg.audio.hop_length)
        self.discriminator = Discriminators(settings, self.resolutions) if self.use_disc else None
        self._optimizers: dict[str, torch.optim.Optimizer] | None = None
        self._eval_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    # -- loop interface --------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"decoder": self.decoder}
        if self.discriminator is not None:
            mods["discriminator"] = self.discriminator
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        from .loop import make_adamw

        if self._optimizers is None:
            self._optimizers = {"generator": make_adamw(self.decoder.parameters(), self.train_cfg)}
            if self.discriminator is not None:
                self._optimizers["discriminator"] = make_adamw(
                    self.discriminator.parameters(), self.train_cfg)
        return self._optimizers

    def loader(self):
        from ..data import make_loader

        return make_loader(self.train_set, self.train_cfg.batch_size, seed=self.train_cfg.seed,
                           shuffle=True, num_workers=self.train_cfg.num_workers, ddp=True)

    def _mel(self, wav: torch.Tensor) -> torch.Tensor:
        return mel_spectrogram(wav.float(), **audio_kwargs(self.audio))

    @torch.no_grad()
    def _encoder_latents(self, batch, lat) -> torch.Tensor:
        """Student-encoder ``z`` aligned to the teacher's frames, [B, inter, T_frames]."""
        enc = self.encoder
        if self.source == "posterior":
            out = enc(batch.x, batch.x_lengths, lat.mel, lat.y_lengths, batch.sid,
                      noise_scale=self.encoder_noise)
            z = out.z_s
        else:
            z = enc.infer(batch.x, batch.x_lengths, batch.sid, noise_scale=self.encoder_noise,
                          w_ceil=lat.w_ceil).z
        if z.shape[-1] < lat.z.shape[-1]:
            z = nn.functional.pad(z, (0, lat.z.shape[-1] - z.shape[-1]))
        return z[..., :lat.z.shape[-1]]

    def _sid(self, batch) -> torch.Tensor | None:
        return batch.sid if getattr(self.teacher, "n_speakers", 0) > 1 else None

    def training_step(self, batch, ctx) -> dict[str, Any]:
        from ..latents import teacher_latents

        w = self.loss_weights
        hop = self.audio.hop_length
        frames = self.segment_frames
        with torch.no_grad():
            lat = teacher_latents(self.teacher, batch, self.source, None, LatentSettings(),
                                  self.cache)
            use_encoder = (self.encoder is not None
                           and float(torch.rand(())) < self.encoder_ratio)
            z_in = self._encoder_latents(batch, lat) if use_encoder else lat.z
            starts = _segment_starts(lat.y_lengths, frames)
            z_teacher = _slice_frames(lat.z, starts, frames)
            z_seg = _slice_frames(z_in, starts, frames)
            wav_slice = (None if lat.wav is None else
                         _slice_frames(lat.wav, [s * hop for s in starts], frames * hop).float())
            if self.source == "prior" and wav_slice is not None:
                # Prior latents come with the teacher's own audio for this very z, decoded
                # with full context: the segment of it is the teacher target, no second pass.
                wav_teacher = target = wav_slice
            else:
                wav_teacher = self.teacher.model.decode(z_teacher, self._sid(batch)).float()
                target = wav_slice if (self.source == "posterior" and wav_slice is not None) \
                    else wav_teacher
        decoder = ctx.model("decoder")
        disc = ctx.model("discriminator") if self.discriminator is not None else None
        with ctx.autocast():
            y_hat = decoder(z_seg)
        y_hat = y_hat.float()
        logs: dict[str, Any] = {"encoder_latents": float(use_encoder)}

        if self.discriminator is not None:
            with ctx.autocast():
                d_out = disc(target, y_hat.detach())
            d_loss = discriminator_loss(d_out.y_d_rs, d_out.y_d_gs)
            ctx.optimize("discriminator", d_loss.total)
            logs["disc"] = d_loss.total.detach()

        terms: dict[str, torch.Tensor] = {}
        if self.discriminator is not None:
            with ctx.autocast():
                g_out = disc(target, y_hat)
            if w["adv"] > 0:
                terms["adv"] = generator_loss(g_out.y_d_gs).total
            if w["fm"] > 0:
                terms["fm"] = feature_loss(g_out.fmap_rs, g_out.fmap_gs)
        if w["mel"] > 0:
            terms["mel"] = mel_l1(self._mel(y_hat), self._mel(target))
        if w["stft"] > 0:
            terms["stft"] = mr_stft_loss(y_hat, target, self.resolutions).total
        if w["teacher_stft"] > 0:
            terms["teacher_stft"] = mr_stft_loss(y_hat, wav_teacher, self.resolutions).total
        if not terms:
            raise ConfigError("train.loss_weights: every distil-decoder loss weight is 0")
        total = sum(w[k] * v for k, v in terms.items())
        ctx.optimize("generator", total)
        logs.update({k: v.detach() for k, v in terms.items()})
        logs["total"] = total.detach()
        return logs

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def _held_out(self, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed held-out (z [1, inter, T_frames], teacher wav [1, 1, T_samples]) pairs."""
        from ..data import collate
        from ..latents import teacher_latents

        if self._eval_cache is None:
            gen = torch.Generator().manual_seed(self.train_cfg.seed)
            cache = []
            for i in range(min(self.eval_items, len(self.eval_set))):
                batch = collate([self.eval_set[i]]).to(device)
                lat = teacher_latents(self.teacher, batch, self.source, gen)
                n = int(lat.y_lengths[0])
                z = lat.z[:, :, :n]
                cache.append((z, self.teacher.model.decode(z, self._sid(batch)).float()))
            self._eval_cache = cache
        return self._eval_cache

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        from .logging import plot_spectrogram

        held = self._held_out(ctx.device)
        if not held:
            return {}
        was_training = self.decoder.training
        self.decoder.eval()
        losses = []
        for i, (z, wav_teacher) in enumerate(held):
            y_hat = self.decoder(z).float()
            mel_hat, mel_t = self._mel(y_hat), self._mel(wav_teacher)
            losses.append(float(mel_l1(mel_hat, mel_t)))
            if i == 0:
                ctx.log_audio("eval/student", y_hat[0, 0].cpu(), self.audio.sample_rate)
                ctx.log_audio("eval/teacher", wav_teacher[0, 0].cpu(), self.audio.sample_rate)
                ctx.log_image("eval/mel_student", plot_spectrogram(mel_hat[0].cpu(), "student"))
                ctx.log_image("eval/mel_teacher", plot_spectrogram(mel_t[0].cpu(), "teacher"))
        self.decoder.train(was_training)
        return {"mel_l1": sum(losses) / len(losses)}

    def finalize(self, run_dir: Path) -> None:
        """Nothing extra: the checkpoint holds the decoder (export happens in the runner)."""


def _datasets(utterances, teacher, has_audio: bool, eval_size: int):
    from ..data import AudioTextDataset, TextOnlyDataset

    if len(utterances) < 2:
        raise NixdistillError(f"distil-decoder needs at least 2 utterances, got {len(utterances)}")
    eval_size = max(1, min(eval_size, len(utterances) // 2))
    train_u, eval_u = utterances[:-eval_size], utterances[-eval_size:]
    if has_audio:
        return (AudioTextDataset(train_u, teacher.frontend, teacher.audio),
                AudioTextDataset(eval_u, teacher.frontend, teacher.audio))
    return TextOnlyDataset(train_u, teacher.frontend), TextOnlyDataset(eval_u, teacher.frontend)


def run_distil_decoder(
    teacher_ref: str | Path, data_ref: str | Path, config_ref: str | Path, out_dir: str | Path,
    latents: str = "auto", encoder_run: str | Path | None = None, device: str = "cpu",
    resume: bool = False, max_steps: int | None = None, max_minutes: float | None = None,
    seed: int | None = None, cache_dir: str | Path | None = None,
):
    """Train a student decoder (``nixdistill distil-decoder``).

    Args:
        teacher_ref: any teacher reference (see :func:`nixdistill.teacher.load_teacher`).
        data_ref: dataset folder or filelist (:func:`nixdistill.data.read_dataset`).
        config_ref: decoder config file or shipped name (``students/decoder_nix``,
            ``students/decoder_istft``, ``tiny/decoder_nix`` ...).
        out_dir: run folder (config, checkpoints, tensorboard).
        latents: ``"auto"``, ``"posterior"`` or ``"prior"``.
        encoder_run: a ``distil-encoder`` run; mixes in its latents and, at the end, writes
            ``out_dir/student.safetensors``.
        device: torch device. resume: continue from ``out_dir``'s last checkpoint.
        max_steps / max_minutes: override ``train.max_steps`` / ``train.max_minutes``.
        seed: override ``train.seed``.
        cache_dir: teacher-latent cache folder (see :func:`nixdistill.latents.open_latent_cache`);
            point it at the encoder run's cache to reuse its teacher passes.
    Returns:
        TrainResult(step, reason, checkpoint) from the training loop.
    Raises:
        ConfigError, NixdistillError: bad config, data or teacher.
    """
    from ..data import read_dataset
    from ..latents import choose_latent_source
    from ..teacher import load_teacher
    from .loop import Trainer

    teacher = load_teacher(teacher_ref, device=device)
    train_over = train_overrides(max_steps, max_minutes, seed)
    overrides = {"audio": dataclasses.asdict(teacher.audio), "text": dataclasses.asdict(teacher.text),
                 "train": train_over}
    cfg = load_config(config_ref, overrides)
    kind, dec_cfg = decoder_model_config(cfg.model, _teacher_inter(teacher), cfg.source)
    cfg.model = {"kind": kind, **dataclasses.asdict(dec_cfg)}
    torch.manual_seed(cfg.train.seed)

    utterances = read_dataset(data_ref)
    has_audio = all(u.wav_path is not None for u in utterances)
    source = choose_latent_source(teacher, has_audio, latents)
    train_set, eval_set = _datasets(utterances, teacher, has_audio and source == "posterior",
                                    cfg.data.val_size)
    encoder = None
    if encoder_run is not None:
        from ..export import encoder_from_run

        encoder, _, _ = encoder_from_run(encoder_run, with_aligner=source == "posterior")
        encoder.requires_grad_(False).to(device)
    cache = (None if cache_dir is None else
             open_latent_cache(cache_dir, teacher, source, LatentSettings()))
    stage = DistilDecoderStage(teacher, cfg, kind, dec_cfg, train_set, eval_set, source, encoder,
                               cache)
    meta = {
        "stage": STAGE_NAME,
        "teacher": teacher_description(teacher),
        "text_frontend": teacher.frontend.to_dict(),
        "audio": dataclasses.asdict(teacher.audio),
        "latent_source": source,
        "encoder_run": None if encoder_run is None else str(encoder_run),
    }
    result = Trainer(stage, Path(out_dir), cfg.train, device, resume, cfg.to_dict(), meta).fit()
    if encoder_run is not None:
        from ..export import export_student

        export_student(encoder_run, out_dir, Path(out_dir) / "student.safetensors")
    return result


def _teacher_inter(teacher) -> int:
    mc = teacher.model_config
    inter = getattr(mc, "inter_channels", None)
    if inter is None and isinstance(mc, dict):
        inter = mc.get("inter_channels")
    if inter is None:
        raise ConfigError("the teacher's model config has no inter_channels")
    return int(inter)
