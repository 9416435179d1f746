"""Stage 1, ``teach``: train a VITS / VITS2 teacher with MAS (jaywalnut310/vits ``train.py``).

One step (VITS Algorithm, ``train_and_evaluate``):

1. generator forward: posterior ``enc_q`` on the linear (or, VITS2, mel) spectrogram, flow,
   monotonic alignment search (noise-scaled in VITS2), duration loss and a decoded random
   segment ``y_hat`` of ``segment_size`` samples starting at ``ids_slice * hop_length``;
2. discriminator step: LSGAN on the real segment vs ``y_hat.detach()``;
3. generator step: ``Σ_k w_k L_k`` over ``adv`` (LSGAN), ``fm`` (feature matching), ``mel``
   (L1 of log-mels), ``kl`` (VITS eq. 3-4), ``dur`` (SDP NLL or log-duration MSE per token) and
   optionally ``stft`` (multi-resolution STFT, sample-rate scaled).

Loss weights come from ``train.loss_weights`` (defaults :data:`DEFAULT_LOSS_WEIGHTS`, VITS'
values; ``fm`` is 2 because :func:`nixdistill.distill.losses.feature_loss` omits VITS' built-in ×2).
Stage options come from ``train.extra`` (:class:`TeachOptions`).

``--init REF`` fine-tunes a loaded teacher. A teacher with a posterior encoder is fine-tuned
whole. A prior-only teacher (Piper) gets a fresh ``enc_q`` trained against its frozen
``enc_p``/``dp``/``flow``/``dec`` with the KL and mel losses only, so that posterior latents can be
used for distillation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nixdistill.audio import spec_to_mel
from nixdistill.config import ExperimentConfig
from nixdistill.data import AudioTextDataset, Batch, collate
from nixdistill.errors import ConfigError
from nixdistill.distill.losses import (discriminator_loss, generator_loss, kl_loss, mel_l1, mr_stft_loss,
                      scaled_resolutions)
from nixdistill.teachers.commons import slice_segments
from nixdistill.teachers.duration import DurationDiscriminator
from nixdistill.teachers.vits import VITS
from nixdistill.distill.context import StepContext
from nixdistill.distill.gan import DiscriminatorSettings, Discriminators, adversarial_terms, discriminator_step
from nixdistill.distill.logging import plot_alignment, plot_spectrogram
from nixdistill.distill.loop import Trainer, TrainResult
from nixdistill.distill.setup import prepare_teach
from nixdistill.distill.stage import Stage, fit_length, log_mel, speaker_ids

__all__ = ["DEFAULT_LOSS_WEIGHTS", "TeachOptions", "TeachStage", "run_teach"]

#: jaywalnut310/vits ``train.py``: loss_gen + loss_fm (x2 inside) + c_mel·mel + loss_dur + c_kl·kl;
#: ``dur_adv`` is the VITS2 duration discriminator's generator term (used only when it is on).
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "adv": 1.0, "fm": 2.0, "mel": 45.0, "kl": 1.0, "dur": 1.0, "stft": 0.0, "dur_adv": 1.0,
}


@dataclass
class TeachOptions:
    """``train.extra`` settings of the teach stage.

    Attributes:
        discriminator: :class:`~nixdistill.distill.gan.DiscriminatorSettings` (VITS: periods
            2,3,5,7,11, one scale discriminator, weight norm).
        freeze: generator sub-modules kept frozen (e.g. ``["dec", "flow"]``). When ``dec`` is
            frozen the discriminator is not trained and ``adv``/``fm`` are skipped.
        eval_items: validation items scored per evaluation (the first one is also rendered
            and logged as audio).
        eval_max_frames_factor: cap on generated frames at evaluation, as a multiple of the
            real clip's frames (an untrained duration predictor can be very slow otherwise).
        eval_noise_scale / eval_noise_scale_w: sampling noise of evaluation synthesis.
        dur_disc_kernel_size: conv kernel of the VITS2 duration discriminator (p0p4k: 3); its
            width is the generator's ``hidden_channels``.
    """

    discriminator: DiscriminatorSettings = field(default_factory=DiscriminatorSettings)
    freeze: list[str] = field(default_factory=list)
    eval_items: int = 4
    eval_max_frames_factor: float = 4.0
    eval_noise_scale: float = 0.667
    eval_noise_scale_w: float = 0.8
    dur_disc_kernel_size: int = 3

    def __post_init__(self) -> None:
        self.discriminator = DiscriminatorSettings.parse(self.discriminator)
        bad = sorted(set(self.freeze) - {"enc_p", "enc_q", "dp", "flow", "dec", "emb_g"})
        if bad:
            raise ConfigError(f"train.extra.freeze: unknown sub-module(s) {bad}")
        if self.eval_items < 1:
            raise ConfigError("train.extra.eval_items must be >= 1")


class TeachStage(Stage):
    """VITS/VITS2 training stage for :class:`~nixdistill.distill.loop.Trainer`.

    Args:
        exp: experiment config (audio, train; ``train.extra`` parsed as :class:`TeachOptions`).
        generator: the :class:`~nixdistill.teachers.vits.VITS` to train (with ``enc_q``).
        train_set / val_set: :class:`~nixdistill.data.AudioTextDataset` s.
    Raises:
        ConfigError: unknown loss weights or options.
    """

    name = "teach"
    Options = TeachOptions
    DEFAULT_LOSS_WEIGHTS = DEFAULT_LOSS_WEIGHTS

    def __init__(self, exp: ExperimentConfig, generator: VITS, train_set: AudioTextDataset,
                 val_set: AudioTextDataset):
        super().__init__(exp.train, where=exp.source)
        self.audio = exp.audio
        if generator.enc_q is None:
            raise ConfigError("teach needs a generator with a posterior encoder (enc_q)")
        self.generator = generator
        for name in self.options.freeze:
            sub = getattr(generator, name)
            if sub is not None:
                sub.requires_grad_(False)
        self.train_decoder = "dec" not in self.options.freeze
        self.stft_resolutions = (scaled_resolutions(self.audio.sample_rate)
                                 if self.loss_weights["stft"] > 0 else [])
        self.discriminator = Discriminators(self.options.discriminator,
                                            scaled_resolutions(self.audio.sample_rate))
        # VITS2 sec. 2.1 (p0p4k/vits2_pytorch): an LSGAN discriminator on (text hidden, log
        # duration) pairs, MAS durations as "real" and the duration predictor's as "fake".
        self.dur_disc: DurationDiscriminator | None = None
        if generator.config.use_duration_discriminator:
            cfg = generator.config
            self.dur_disc = DurationDiscriminator(
                cfg.hidden_channels, cfg.hidden_channels, self.options.dur_disc_kernel_size,
                cfg.p_dropout, cfg.gin_channels)
        self.train_set = train_set
        self.val_set = val_set
        self.hop_length = self.audio.hop_length
        self.segment_frames = generator.segment_size
        self._val_batch: Batch | None = None

    # -- protocol ------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"generator": self.generator}
        if self.train_decoder:
            mods["discriminator"] = self.discriminator
        if self.dur_disc is not None:
            mods["dur_disc"] = self.dur_disc
        return mods

    def optimized(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "generator": [p for p in self.generator.parameters() if p.requires_grad]}
        if self.train_decoder:
            opts["discriminator"] = self.discriminator.parameters()
        if self.dur_disc is not None:
            opts["dur_disc"] = self.dur_disc.parameters()
        return opts

    # -- helpers -------------------------------------------------------------------------------
    def _sid(self, batch: Batch) -> torch.Tensor | None:
        return speaker_ids(batch, self.generator.n_speakers)

    def _mel_from_spec(self, spec: torch.Tensor) -> torch.Tensor:
        a = self.audio
        return spec_to_mel(spec, a.sample_rate, a.n_fft, a.n_mels, a.f_min, a.f_max)

    def _posterior_input(self, batch: Batch, mel: torch.Tensor) -> torch.Tensor:
        return mel if self.generator.config.use_mel_posterior_encoder else batch.spec

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        """One VITS step (discriminator then generator); returns the named losses."""
        gen_model = self.generator
        if gen_model.config.use_noise_scaled_mas:
            gen_model.current_mas_noise_scale = gen_model.mas_noise_scale_at(ctx.step)
        mel = self._mel_from_spec(batch.spec)  # [B, n_mels, T_frames]
        with ctx.autocast():
            out = ctx.model("generator")(batch.x, batch.x_lengths,
                                         self._posterior_input(batch, mel),
                                         batch.spec_lengths, self._sid(batch))
        seg_samples = self.segment_frames * self.hop_length
        end_frame = int(out.ids_slice.max()) + self.segment_frames
        y = slice_segments(fit_length(batch.y, end_frame * self.hop_length),
                           out.ids_slice * self.hop_length, seg_samples)
        y_mel = slice_segments(fit_length(mel, end_frame), out.ids_slice, self.segment_frames)
        y_hat = out.y_hat.float()
        y_hat_mel = log_mel(y_hat, self.audio)
        logs: dict[str, Any] = {}
        w = self.loss_weights

        if self.train_decoder:
            logs["disc"] = discriminator_step(ctx, "discriminator", y, y_hat)
        if self.dur_disc is not None:
            with ctx.autocast():
                p = ctx.model("dur_disc")(out.x.detach(), out.x_mask, out.logw_.detach(),
                                          out.logw.detach())
            loss_dd = discriminator_loss([p[0]], [p[1]]).total
            ctx.optimize("dur_disc", loss_dd)
            logs["dur_disc"] = loss_dd.detach()

        terms = {
            "mel": mel_l1(y_hat_mel, y_mel),
            "kl": kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.y_mask),
            "dur": out.l_length.float().sum(),
        }
        if self.train_decoder:
            terms.update(adversarial_terms(ctx, "discriminator", y, y_hat))
        if self.stft_resolutions:
            terms["stft"] = mr_stft_loss(y_hat, y, self.stft_resolutions).total
        if self.dur_disc is not None:
            with ctx.autocast():
                p = ctx.model("dur_disc")(out.x, out.x_mask, out.logw_, out.logw)
            terms["dur_adv"] = generator_loss([p[1]]).total
        total = sum(w[k] * v for k, v in terms.items() if w[k] != 0)
        ctx.optimize("generator", total)
        logs["gen"] = total.detach()
        logs.update({k: v.detach() for k, v in terms.items()})
        if gen_model.config.use_noise_scaled_mas:
            logs["mas_noise_scale"] = gen_model.current_mas_noise_scale
        return logs

    # -- evaluation ----------------------------------------------------------------------------
    def _validation_batch(self, device: torch.device) -> Batch:
        if self._val_batch is None:
            n = min(self.options.eval_items, len(self.val_set))
            self._val_batch = collate([self.val_set[i] for i in range(n)])
        return self._val_batch.to(device)

    def evaluate(self, ctx: StepContext) -> dict[str, float]:
        """Posterior reconstruction mel L1 on held-out items; logs real/generated mel images,
        the predicted alignment and audio of the first item synthesised from text."""
        gen = self.generator
        batch = self._validation_batch(ctx.device)
        sid = self._sid(batch)
        mel = self._mel_from_spec(batch.spec)
        post = gen.posterior(self._posterior_input(batch, mel), batch.spec_lengths, sid)
        recon = gen.decode(post.z * post.y_mask, sid)
        recon_mel = log_mel(recon, self.audio)
        n_frames = min(recon_mel.shape[-1], mel.shape[-1])
        mask = post.y_mask[..., :n_frames]
        err = (recon_mel[..., :n_frames] - mel[..., :n_frames]).abs() * mask
        val_mel_l1 = float(err.sum() / (mask.sum() * mel.shape[1]))

        frames0 = int(batch.spec_lengths[0])
        inf = gen.infer(batch.x[:1], batch.x_lengths[:1], None if sid is None else sid[:1],
                        noise_scale=self.options.eval_noise_scale,
                        noise_scale_w=self.options.eval_noise_scale_w,
                        max_frames=max(1, math.ceil(frames0 * self.options.eval_max_frames_factor)))
        n_gen = int(inf.y_mask[0, 0].sum())
        wav = inf.wav[0, 0, : n_gen * self.hop_length]
        if ctx.is_main:
            sr = self.audio.sample_rate
            ctx.log_image("val/mel_real", plot_spectrogram(mel[0, :, :frames0], "real"))
            ctx.log_image("val/mel_generated",
                          plot_spectrogram(log_mel(wav.view(1, 1, -1), self.audio)[0], "generated"))
            ctx.log_image("val/mel_reconstructed",
                          plot_spectrogram(recon_mel[0, :, :frames0], "posterior reconstruction"))
            n_tok = int(batch.x_lengths[0])
            ctx.log_image("val/alignment",
                          plot_alignment(inf.attn[0, 0, :n_gen, :n_tok].transpose(0, 1)))
            ctx.log_audio("val/generated", wav, sr)
            ctx.log_audio("val/reconstructed", recon[0, 0, : frames0 * self.hop_length], sr)
            if ctx.step <= self.train_cfg.eval_interval:
                ctx.log_audio("val/real", batch.y[0, 0, : int(batch.y_lengths[0])], sr)
        return {"mel_l1": val_mel_l1, "generated_frames": float(n_gen)}


def run_teach(config_ref: str | Path | None, data_ref: str | Path, out_dir: str | Path,
              device: str = "cpu", resume: bool = False, max_steps: int | None = None,
              max_minutes: float | None = None, init: str | Path | None = None,
              seed: int | None = None) -> TrainResult:
    """Train (or fine-tune) a VITS teacher; the run folder is then a teacher reference.

    Args:
        config_ref: config path or shipped name (e.g. ``"tiny/teacher"``). With ``resume`` it
            may be ``None``: ``RUN/config.json`` is used (and always wins when it exists).
        data_ref: dataset folder or file for :func:`nixdistill.data.read_dataset`.
        out_dir: run folder (``config.json``, ``checkpoints/``, ``tensorboard/``).
        device: torch device string.
        resume: continue exactly from ``RUN/checkpoints/last.pt``.
        max_steps / max_minutes: budgets overriding the config (``None``: keep the config's).
        init: teacher reference to fine-tune from (:func:`nixdistill.teacher.loader.load_teacher`).
        seed: overrides ``train.seed``.
    Returns:
        TrainResult(step, reason, checkpoint).
    Raises:
        ConfigError, DataError, TeachError, CheckpointError: on unusable inputs.
    """
    run = prepare_teach(config_ref, data_ref, out_dir, resume, max_steps, max_minutes, init, seed)
    stage = TeachStage(run.exp, run.generator, run.train_set, run.val_set)
    return Trainer(stage, out_dir, run.exp.train, device, resume=resume,
                   config_dict=run.exp.to_dict(), meta=run.meta).fit()
