"""Stage 3, ``distil-decoder``: train a student decoder ``z -> wav`` against the teacher.

Inputs are random segments of the teacher's latent ``z`` (posterior ``q(z|spec)`` on real audio,
or prior ``flow⁻¹(m_p + ε·σ_p)`` from text; :mod:`nixdistill.distill.latents`). Targets are the teacher
decoder's output for the *same* ``z`` segment and, with posterior latents, the real audio
segment. With ``--encoder RUN`` a share of the batches (``train.extra.encoder_latent_ratio``)
feeds the decoder the trained student encoder's latents instead, aligned to the teacher's frames
(posterior: the encoder's aligner on the real mel; prior: the teacher's durations), so the
decoder sees inference-like ``z`` (the unofficial Nix-TTS port never does, so its decoder
only ever hears the teacher's latents).

Losses (names are the keys of ``train.loss_weights``; a weight of 0 skips the term):

* ``adv``  LSGAN generator loss vs :class:`~nixdistill.distill.gan.Discriminators`
  (MPD + MSD, plus an optional multi-resolution STFT discriminator);
* ``fm``   feature matching;
* ``mel``  log-mel L1 vs the target (real audio when present, else the teacher's output);
* ``stft`` MR-STFT (spectral convergence + log magnitude) vs the target;
* ``teacher_stft`` MR-STFT vs the teacher's output;
* ``complex`` compressed complex STFT loss vs the target (phase as well as magnitude);
* ``consistency`` (``istft`` decoders only) the predicted spectrum against the STFT of the
  decoder's own output (:func:`~nixdistill.distill.losses.stft_consistency_loss`).

Defaults follow the unofficial Nix-TTS port: adv 1, fm 2, mel 20, stft 1, teacher_stft 1.

``train.extra`` keys: see :class:`DecoderOptions`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from nixdistill.config import ExperimentConfig
from nixdistill.errors import ConfigError
from nixdistill.data import collate
from nixdistill.distill.latents import LatentCache, LatentSettings, teacher_latents
from nixdistill.distill.losses import (STFTResolution, mel_l1, mr_stft_loss, scaled_resolutions,
                      spectral_losses, stft_consistency_loss)
from nixdistill.runs import latest_checkpoint, load_checkpoint
from nixdistill.deploy.build import encoder_from_run
from nixdistill.distill.setup import DistilOptions, decoder_model_config, prepare_distillation
from nixdistill.distill.speakers import SpeakerSet, choose_speakers
from nixdistill.distill.gan import DiscriminatorSettings, Discriminators, adversarial_terms, discriminator_step
from nixdistill.distill.logging import plot_spectrogram
from nixdistill.distill.loop import Trainer, TrainResult
from nixdistill.distill.stage import (Stage, fit_length, log_mel, random_segment_starts, slice_frames,
                    speaker_ids)

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "DecoderOptions",
    "DistilDecoderStage",
    "run_distil_decoder",
]

DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "adv": 1.0, "fm": 2.0, "mel": 20.0, "stft": 1.0, "teacher_stft": 1.0, "complex": 0.0,
    "consistency": 0.0,
}


@dataclass
class DecoderOptions(DistilOptions):
    """``train.extra`` of the ``distil-decoder`` stage (besides :class:`DistilOptions`).

    Attributes:
        eval_items: held-out utterances for ``val/mel_l1``.
        stft_resolutions: ``[[n_fft, hop, win], ...]`` in samples of the MR-STFT loss and
            discriminator; ``None``: (1024,128,1024), (2048,256,2048), (512,64,512) scaled to the
            sample rate.
        discriminator: :class:`DiscriminatorSettings`.
        encoder_latent_ratio: share of batches on the student encoder's latents (``--encoder``).
        encoder_noise_scale: noise of the encoder's latent sample; ``None`` (default): the
            encoder's own inference default (``noise_scale`` of its config), so the decoder
            learns the latents it will decode at inference.
    """

    eval_items: int = 4
    stft_resolutions: list[list[int]] | None = None
    discriminator: DiscriminatorSettings = dataclasses.field(default_factory=DiscriminatorSettings)
    encoder_latent_ratio: float = 0.5
    encoder_noise_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.discriminator = DiscriminatorSettings.parse(self.discriminator)
        if not 0.0 <= self.encoder_latent_ratio <= 1.0:
            raise ConfigError("train.extra.encoder_latent_ratio must be in [0, 1]")


class _HeldOut(NamedTuple):
    """One held-out evaluation item (see :meth:`DistilDecoderStage._held_out`)."""

    batch: Any
    z: torch.Tensor
    wav: torch.Tensor
    w_ceil: torch.Tensor | None


class DistilDecoderStage(Stage):
    """Training-loop stage for decoder distillation (see the module docstring).

    Args:
        teacher: a loaded :class:`nixdistill.teacher.loader.Teacher` (frozen).
        cfg: the resolved experiment config (audio = the teacher's).
        decoder_cfg: student decoder config (its ``kind`` picks the decoder).
        train_set / eval_set: datasets (``AudioTextDataset`` or ``TextOnlyDataset``).
        source: ``"posterior"`` or ``"prior"`` latents.
        encoder: trained student encoder (frozen) for inference-like latents, or None.
        cache: optional :class:`nixdistill.distill.latents.LatentCache` of teacher latents (shared with
            ``distil-encoder`` when both use the same cache folder).
        options: parsed ``train.extra`` (default: parsed from ``cfg.train``).
    """

    name = "distil_decoder"
    averaged = ("decoder",)
    Options = DecoderOptions
    DEFAULT_LOSS_WEIGHTS = DEFAULT_LOSS_WEIGHTS

    def __init__(self, teacher, cfg: ExperimentConfig, decoder_cfg, train_set,
                 eval_set, source: str, encoder: nn.Module | None = None,
                 cache: LatentCache | None = None, options: DecoderOptions | None = None,
                 speakers: SpeakerSet | None = None) -> None:
        from nixdistill.students.decoder import build_decoder

        super().__init__(cfg.train, options, cfg.source)
        self.teacher = teacher
        self.speakers = speakers or choose_speakers(teacher.n_speakers, teacher.speaker_id_map)
        self.audio = cfg.audio
        self.decoder_cfg = decoder_cfg
        self.train_set = train_set
        self.eval_set = eval_set
        self.source = source
        self.encoder = encoder
        self.cache = cache
        self.latent_settings = self.options.latent_settings()
        self.options = self.options.with_latent_settings(self.latent_settings)
        self.segment_frames = cfg.train.segment_size // cfg.audio.hop_length
        res = self.options.stft_resolutions
        self.resolutions = ([STFTResolution(*r) for r in res] if res is not None
                            else scaled_resolutions(cfg.audio.sample_rate))
        self.use_disc = self.loss_weights["adv"] > 0 or self.loss_weights["fm"] > 0
        self.eval_items = self.options.eval_items
        self.encoder_ratio = self.options.encoder_latent_ratio
        self.encoder_noise = (self.options.encoder_noise_scale
                              if self.options.encoder_noise_scale is not None or encoder is None
                              else float(encoder.config.noise_scale))
        self.decoder = build_decoder(decoder_cfg.kind, decoder_cfg, cfg.audio.hop_length)
        self.consistency = self.loss_weights["consistency"] > 0
        if self.consistency and not hasattr(self.decoder, "istft"):
            raise ConfigError("train.loss_weights.consistency needs an iSTFT decoder "
                              f"(model.kind 'istft'); this one is {decoder_cfg.kind!r}")
        self.discriminator = (Discriminators(self.options.discriminator, self.resolutions)
                              if self.use_disc else None)
        self._eval_cache: list[_HeldOut] | None = None
        self._encoder_z: dict[str, torch.Tensor] = {}  # see _encoder_latents

    # -- loop interface --------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"decoder": self.decoder}
        if self.discriminator is not None:
            mods["discriminator"] = self.discriminator
        return mods

    def optimized(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"generator": self.decoder.parameters()}
        if self.discriminator is not None:
            opts["discriminator"] = self.discriminator.parameters()
        return opts

    def _mel(self, wav: torch.Tensor) -> torch.Tensor:
        return log_mel(wav, self.audio)

    @torch.no_grad()
    def _encoder_latents(self, batch, lat) -> torch.Tensor:
        """Student-encoder ``z`` aligned to the teacher's frames, [B, inter, T_frames].

        The encoder is frozen, so with cached prior latents (fixed teacher durations per
        utterance) at noise 0 its ``z`` for an utterance never changes: each is computed once
        and kept in memory (about 120 MB for the shipped English corpus), which saves about a
        tenth of a CPU decoder step.
        """
        enc = self.encoder
        if self.source == "posterior":
            out = enc(batch.x, batch.x_lengths, lat.mel, lat.y_lengths, self._student_sid(batch),
                      noise_scale=self.encoder_noise)
            return fit_length(out.z_s, lat.z.shape[-1])
        memo = self._encoder_z if self.encoder_noise == 0 and self.cache is not None else None
        if memo is None or any(u not in memo for u in batch.utt_ids):
            z = fit_length(enc.infer(batch.x, batch.x_lengths, self._student_sid(batch),
                                     noise_scale=self.encoder_noise, w_ceil=lat.w_ceil).z,
                           lat.z.shape[-1])
            if memo is not None:
                for i, u in enumerate(batch.utt_ids):
                    memo[u] = z[i, :, :int(lat.y_lengths[i])].clone()
            return z
        z = lat.z.new_zeros(lat.z.shape)
        for i, u in enumerate(batch.utt_ids):
            z[i, :, :memo[u].shape[-1]] = memo[u]
        return z

    def _sid(self, batch) -> torch.Tensor | None:
        return speaker_ids(batch, self.teacher.n_speakers)

    def _student_sid(self, batch) -> torch.Tensor | None:
        """The student encoder's speaker ids [B] of the batch's teacher speakers."""
        return self.speakers.student_sid(self._sid(batch))

    def training_step(self, batch, ctx) -> dict[str, Any]:
        w = self.loss_weights
        hop = self.audio.hop_length
        frames = self.segment_frames
        with torch.no_grad():
            lat = teacher_latents(self.teacher, batch, self.source, None, self.latent_settings,
                                  self.cache)
            use_encoder = (self.encoder is not None
                           and float(torch.rand(())) < self.encoder_ratio)
            z_in = self._encoder_latents(batch, lat) if use_encoder else lat.z
            starts = random_segment_starts(lat.y_lengths, frames)
            z_teacher = slice_frames(lat.z, starts, frames)
            z_seg = slice_frames(z_in, starts, frames)
            wav_slice = (None if lat.wav is None else
                         slice_frames(lat.wav, [s * hop for s in starts], frames * hop).float())
            if self.source == "prior" and wav_slice is not None:
                # Prior latents come with the teacher's own audio for this very z, decoded
                # with full context: the segment of it is the teacher target, no second pass.
                wav_teacher = target = wav_slice
            else:
                wav_teacher = self.teacher.model.decode(z_teacher, self._sid(batch)).float()
                target = wav_slice if (self.source == "posterior" and wav_slice is not None) \
                    else wav_teacher
        decoder = ctx.model("decoder")
        spec_hat = None
        with ctx.autocast():
            if self.consistency:
                y_hat, spec_hat = decoder(z_seg, return_spectrum=True)
            else:
                y_hat = decoder(z_seg)
        y_hat = y_hat.float()
        logs: dict[str, Any] = {"encoder_latents": float(use_encoder)}

        if self.discriminator is not None:
            logs["disc"] = discriminator_step(ctx, "discriminator", target, y_hat)

        terms: dict[str, torch.Tensor] = {}
        if self.discriminator is not None:
            terms.update(adversarial_terms(ctx, "discriminator", target, y_hat,
                                           adv=w["adv"] > 0, fm=w["fm"] > 0))
        if w["mel"] > 0:
            terms["mel"] = mel_l1(self._mel(y_hat), self._mel(target))
        if w["stft"] > 0 or w["complex"] > 0:
            # one STFT per signal and resolution for both terms (most of a step's cost on CPU)
            spectral = spectral_losses(y_hat, target, self.resolutions, stft=w["stft"] > 0,
                                       complex=w["complex"] > 0)
            if spectral.stft is not None:
                terms["stft"] = spectral.stft.total
            if spectral.complex is not None:
                terms["complex"] = spectral.complex
        if w["teacher_stft"] > 0:
            # With prior latents the target is the teacher's audio itself: same term, once.
            terms["teacher_stft"] = (terms["stft"] if "stft" in terms and wav_teacher is target
                                     else mr_stft_loss(y_hat, wav_teacher, self.resolutions).total)
        if spec_hat is not None:
            terms["consistency"] = stft_consistency_loss(spec_hat, self.decoder.istft.stft(y_hat))
        if not terms:
            raise ConfigError("train.loss_weights: every distil-decoder loss weight is 0")
        total = sum(w[k] * v for k, v in terms.items())
        ctx.optimize("generator", total)
        logs.update({k: v.detach() for k, v in terms.items()})
        logs["total"] = total.detach()
        return logs

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def _held_out(self, device) -> list[_HeldOut]:
        """Fixed held-out items, computed once: the batch, the teacher's ``z`` [1, inter,
        T_frames], its audio [1, 1, T_samples] and its durations ``w_ceil`` (prior) or None."""
        if self._eval_cache is None:
            gen = torch.Generator().manual_seed(self.train_cfg.seed)
            cache = []
            for i in range(min(self.eval_items, len(self.eval_set))):
                batch = collate([self.eval_set[i]]).to(device)
                lat = teacher_latents(self.teacher, batch, self.source, gen)
                z = lat.z[:, :, :int(lat.y_lengths[0])]
                wav = self.teacher.model.decode(z, self._sid(batch)).float()
                cache.append(_HeldOut(batch, z, wav, lat.w_ceil))
            self._eval_cache = cache
        return self._eval_cache

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        """Held-out ``val/mel_l1``: teacher ``z`` -> student decoder vs the teacher decoder.

        With an encoder (``--encoder``) also the student's real path, encoder -> decoder at the
        encoder's default settings: ``student_mel_l1`` (with the teacher's durations, so frames
        align) and ``student_duration_ratio`` (own durations; student frames / teacher frames),
        plus its audio and mel in TensorBoard.
        """
        held = self._held_out(ctx.device)
        if not held:
            return {}
        was_training = self.decoder.training
        self.decoder.eval()
        losses, path_l1, ratios = [], [], []
        for i, item in enumerate(held):
            z, wav_teacher = item.z, item.wav
            y_hat = self.decoder(z).float()
            mel_hat, mel_t = self._mel(y_hat), self._mel(wav_teacher)
            losses.append(float(mel_l1(mel_hat, mel_t)))
            if self.encoder is not None and self.source == "prior":
                path = self._student_path(i, item)
                mel_s = self._mel(self.decoder(path["z_aligned"]).float())
                path_l1.append(float(mel_l1(mel_s, mel_t)))
                ratios.append(path["frames"] / z.shape[-1])
                if i == 0:
                    wav_s = self.decoder(path["z_free"]).float()
                    ctx.log_audio("eval/student_end_to_end", wav_s[0, 0].cpu(),
                                  self.audio.sample_rate)
                    ctx.log_image("eval/mel_student_end_to_end", plot_spectrogram(
                        self._mel(wav_s)[0].cpu(), "student encoder -> student decoder"))
            if i == 0:
                ctx.log_audio("eval/student", y_hat[0, 0].cpu(), self.audio.sample_rate)
                ctx.log_audio("eval/teacher", wav_teacher[0, 0].cpu(), self.audio.sample_rate)
                ctx.log_image("eval/mel_student", plot_spectrogram(mel_hat[0].cpu(), "student"))
                ctx.log_image("eval/mel_teacher", plot_spectrogram(mel_t[0].cpu(), "teacher"))
        self.decoder.train(was_training)
        metrics = {"mel_l1": sum(losses) / len(losses)}
        if path_l1:
            metrics["student_mel_l1"] = sum(path_l1) / len(path_l1)
            metrics["student_duration_ratio"] = sum(ratios) / len(ratios)
        return metrics

    def _student_path(self, i: int, item: _HeldOut) -> dict[str, Any]:
        """The encoder's latents for held-out item ``i`` at its default settings (seeded):
        with the teacher's durations of that very item (``z_aligned``, framed like ``item.z``)
        and with its own (``z_free``, ``frames``)."""
        batch = item.batch
        gen = torch.Generator(device=item.z.device).manual_seed(self.train_cfg.seed + i)
        aligned = self.encoder.infer(batch.x, batch.x_lengths, self._student_sid(batch),
                                     w_ceil=item.w_ceil,
                                     generator=gen)
        free = self.encoder.infer(batch.x, batch.x_lengths, self._student_sid(batch),
                                  generator=gen)
        return {"z_aligned": fit_length(aligned.z, item.z.shape[-1]), "z_free": free.z,
                "frames": int(free.y_mask.sum())}


# -------------------------------------------------------------------------------- runner
def run_distil_decoder(
    teacher_ref: str | Path, data_ref: str | Path, config_ref: str | Path, out_dir: str | Path,
    latents: str = "auto", encoder_run: str | Path | None = None, device: str = "cpu",
    resume: bool = False, max_steps: int | None = None, max_minutes: float | None = None,
    seed: int | None = None, cache_dir: str | Path | None = None,
    init_run: str | Path | None = None, speakers: str | None = None,
) -> TrainResult:
    """Train a student decoder (``nixdistill distil-decoder``).

    Args:
        teacher_ref: any teacher reference (see :func:`nixdistill.teacher.loader.load_teacher`).
        data_ref: dataset folder or filelist (:func:`nixdistill.data.read_dataset`).
        config_ref: decoder config file or shipped name (``students/decoder_nix``,
            ``students/decoder_istft``, ``tiny/decoder_nix`` ...).
        out_dir: run folder (config, checkpoints, tensorboard).
        latents: ``"auto"``, ``"posterior"`` or ``"prior"``.
        encoder_run: a ``distil-encoder`` run whose latents are mixed in
            (``train.extra.encoder_latent_ratio``).
        device: torch device. resume: continue from ``out_dir``'s last checkpoint.
        max_steps / max_minutes: override ``train.max_steps`` / ``train.max_minutes``.
        seed: override ``train.seed``.
        cache_dir: teacher-latent cache folder (see :func:`nixdistill.distill.latents.open_latent_cache`);
            point it at the encoder run's cache to reuse its teacher passes.
        init_run: a ``distil-decoder`` run whose decoder weights start this one (e.g. a short
            adversarial polish after a reconstruction-only run); same decoder config required.
        speakers: a multi-speaker teacher's speakers (ids or names; default: the encoder
            run's set, else all; see :mod:`nixdistill.distill.speakers`).
    Returns:
        TrainResult(step, reason, checkpoint) from the training loop.
    Raises:
        ConfigError, NixdistillError: bad config, data or teacher; latent settings that differ
            from the encoder run's or the cache's (:class:`~nixdistill.distill.latents.LatentError`).
    """
    inherited: dict[str, LatentSettings | None] = {}
    if encoder_run is not None:  # the encoder run fixed the latent settings first
        enc_meta = load_checkpoint(encoder_run).get("meta") or {}
        enc_settings = enc_meta.get("latent_settings")
        inherited[f"encoder run {encoder_run}"] = (
            None if enc_settings is None else LatentSettings.from_dict(enc_settings))
        if speakers is None and enc_meta.get("teacher_n_speakers", 0) > 1:
            speakers = ",".join(str(i) for i in enc_meta["speakers"]["teacher_ids"])
    run = prepare_distillation(
        DistilDecoderStage, teacher_ref, data_ref, config_ref, out_dir, latents, device,
        max_steps, max_minutes, seed, cache_dir=cache_dir, inherited_settings=inherited,
        speakers=speakers)
    cfg = run.cfg
    dec_cfg = decoder_model_config(cfg.model, run.teacher.model_config.inter_channels, cfg.source)
    cfg = dataclasses.replace(cfg, model=dataclasses.asdict(dec_cfg))
    encoder = None
    if encoder_run is not None:
        encoder, _, _ = encoder_from_run(encoder_run, with_aligner=run.source == "posterior")
        encoder.requires_grad_(False).to(device)
    stage = DistilDecoderStage(run.teacher, cfg, dec_cfg, run.train_set, run.eval_set,
                               run.source, encoder, run.cache, run.options, run.speakers)
    if init_run is not None and not (resume and latest_checkpoint(out_dir) is not None):
        init = load_checkpoint(init_run)
        if "decoder" not in init.get("models", {}) or init["config"]["model"] != dict(cfg.model):
            raise ConfigError(f"--init {init_run}: not a distil-decoder run with the decoder "
                              f"config of {cfg.source}")
        stage.decoder.load_state_dict(init["models"]["decoder"])
    meta = {**run.meta, "encoder_run": None if encoder_run is None else str(encoder_run),
            "init_run": None if init_run is None else str(init_run)}
    return Trainer(stage, out_dir, cfg.train, device, resume, cfg.to_dict(), meta).fit()
