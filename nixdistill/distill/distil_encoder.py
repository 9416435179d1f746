"""Stage 2, ``distil-encoder``: train the Nix-TTS student encoder against a frozen teacher.

Each step (Chevi et al. 2022 §3.2, with the alignment framework of Badlani et al. 2022):

1. the teacher gives latents ``z`` for the batch (:mod:`nixdistill.distill.latents`): posterior
   ``q(z | spec)`` on real audio, or prior ``flow⁻¹`` samples with the teacher's own durations
   (then the aligner queries are the log-mel of the teacher's own audio, so frames match);
2. the student aligns text with those frames, expands its text features with its own hard (MAS)
   alignment (with prior latents: with the teacher's durations, which made the frames) and
   predicts ``(m_s, logs_s)`` per frame. With prior latents the alignment expands nothing, so
   ``train.extra.aligner = "auto"`` skips the aligner and its two terms (a third of a CPU step);
   ``"always"`` still trains it, for its alignment images and agreement metrics;
3. the loss is ``Σ_k λ_k · L_k`` with the weights of ``train.loss_weights``:

   - ``kl``: latent distillation, per frame. With posterior latents the teacher's Gaussian
     ``q = N(m_q, e^logs_q)`` is known, so the term is the closed-form
     ``KL(N(m_s, e^logs_s) ‖ q)`` (student ‖ teacher, as in the Nix-TTS KL
     distillation). With prior latents only a sample ``z`` exists in the teacher's posterior
     space (``flow⁻¹`` of a prior sample), so the term is the Gaussian NLL ``-log N(z; m_s,
     e^logs_s)`` -- a Monte-Carlo estimate of the cross-entropy part of the same KL, up to
     the (student-independent) teacher entropy. ``train.extra.kl_mode`` forces ``"nll"``.
   - ``forward_sum``: CTC alignment loss (Badlani et al. eq. 5-6);
   - ``bin``: binarization loss (eq. 8), ramped in early by ``bin_start_step`` /
     ``bin_ramp_steps`` (the unofficial port waited 18k steps);
   - ``duration``: per-token MSE of log durations against the hard alignment (deterministic
     predictor), or the flow NLL per token (stochastic predictor).

Evaluation: for held-out texts the teacher synthesises with its own durations ``w_ceil``; the
student encoder runs with the *same* durations, the teacher's decoder turns its ``z`` into audio,
and ``mel_l1`` is the mean log-mel L1 between the two (aligned by construction). Audio, the
alignment and latent statistics go to TensorBoard.

``train.extra`` keys: see :class:`EncoderOptions`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nixdistill.config import ExperimentConfig
from nixdistill.data import DataError, TextOnlyDataset, collate, read_dataset
from nixdistill.distill.calibration import calibrate_duration_rate
from nixdistill.distill.latents import LatentCache, fill_latent_cache, teacher_latents
from nixdistill.distill.logging import plot_alignment, plot_spectrogram
from nixdistill.distill.loop import Trainer, TrainResult
from nixdistill.distill.losses_align import (
    bin_loss,
    bin_loss_weight,
    duration_loss,
    duration_nll_loss,
    forward_sum_loss,
    gaussian_kl_loss,
    gaussian_nll_loss,
    latent_mse_loss,
)
from nixdistill.distill.speakers import SpeakerSet, choose_speakers
from nixdistill.distill.setup import (
    DistilOptions,
    encoder_model_config,
    prepare_distillation,
)
from nixdistill.distill.stage import Stage, fit_length, log_mel, speaker_ids
from nixdistill.errors import ConfigError
from nixdistill.text.language import LanguageMismatchError, check_text_language
from nixdistill.nn import durations_to_path

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "EncoderOptions",
    "DistilEncoderStage",
    "run_distil_encoder",
]

DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"kl": 1.0, "forward_sum": 1.0, "bin": 1.0, "duration": 1.0}
KL_MODES = ("auto", "nll", "mse")
ALIGNER_MODES = ("always", "auto")


@dataclass
class EncoderOptions(DistilOptions):
    """``train.extra`` of the ``distil-encoder`` stage (besides :class:`DistilOptions`).

    Attributes:
        bin_start_step: first step of the binarization loss.
        bin_ramp_steps: steps of its linear ramp to full weight.
        kl_mode: ``"auto"`` (closed-form KL against the teacher posterior when available, else
            Gaussian NLL of the teacher ``z``), ``"nll"`` (always the NLL) or ``"mse"``
            (:func:`~nixdistill.distill.losses_align.latent_mse_loss`: squared error of ``m_s`` plus the
            NLL of ``logs_s`` alone; meant for deterministic teacher latents, noise 0).
        eval_noise_scale: student ``z`` noise at evaluation.
        aligner: ``"always"`` trains the aligner (CTC and binarization terms) in every mode;
            ``"auto"`` skips it when the latents bring their own durations (prior latents,
            expanded with the teacher's ``w_ceil``), where its alignment expands nothing.
    """

    bin_start_step: int = 0
    bin_ramp_steps: int = 1000
    kl_mode: str = "auto"
    eval_noise_scale: float = 0.667
    aligner: str = "always"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aligner not in ALIGNER_MODES:
            raise ConfigError(f"train.extra.aligner must be one of {ALIGNER_MODES}, "
                              f"got {self.aligner!r}")
        if self.kl_mode not in KL_MODES:
            raise ConfigError(f"train.extra.kl_mode must be one of {KL_MODES}, got {self.kl_mode!r}")
        if self.bin_start_step < 0 or self.bin_ramp_steps < 0:
            raise ConfigError("train.extra.bin_start_step and bin_ramp_steps must be >= 0")


class DistilEncoderStage(Stage):
    """Training-loop stage for encoder distillation (see the module docstring).

    Args:
        teacher: a loaded, frozen :class:`nixdistill.teacher.loader.Teacher`.
        cfg: the resolved experiment config (audio/text = the teacher's; ``model`` = the full
            encoder config).
        encoder_cfg: :class:`NixEncoderConfig`.
        train_set / eval_set: datasets (``AudioTextDataset`` for posterior latents, else
            ``TextOnlyDataset`` or ``AudioTextDataset``).
        source: ``"posterior"`` or ``"prior"``.
        cache: optional :class:`LatentCache`.
        options: parsed ``train.extra`` (default: parsed from ``cfg.train``).
    """

    name = "distil_encoder"
    averaged = ("encoder",)
    Options = EncoderOptions
    DEFAULT_LOSS_WEIGHTS = DEFAULT_LOSS_WEIGHTS

    def __init__(self, teacher, cfg: ExperimentConfig, encoder_cfg, train_set, eval_set,
                 source: str, cache: LatentCache | None = None,
                 options: EncoderOptions | None = None,
                 speakers: SpeakerSet | None = None) -> None:
        from nixdistill.students.encoder import NixEncoder

        super().__init__(cfg.train, options, cfg.source)
        self.teacher = teacher
        teacher.model.eval().requires_grad_(False)  # frozen: never trained, never in train mode
        self.audio = teacher.audio
        self.source = source
        self.train_set = train_set
        self.eval_set = eval_set
        self.cache = cache
        self.latent_settings = self.options.latent_settings()
        self.options = self.options.with_latent_settings(self.latent_settings)
        self.encoder = NixEncoder(encoder_cfg)
        self._eval_refs: dict[int, tuple] = {}
        # the aligner is trained unless the latents' own durations make it idle
        self.align = self.options.aligner == "always" or source != "prior"
        self.speakers = speakers or choose_speakers(teacher.n_speakers, teacher.speaker_id_map)
        if max(1, self.speakers.n_speakers) != max(1, encoder_cfg.n_speakers):
            raise ConfigError(f"the encoder has {encoder_cfg.n_speakers} speakers, the speaker "
                              f"set {self.speakers.n_speakers}")

    # -- loop interface --------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    def optimized(self) -> dict[str, Any]:
        return {"encoder": self.encoder.parameters()}

    def _sid(self, batch) -> torch.Tensor | None:
        """The student's speaker ids [B] of the batch's teacher speakers (None: one speaker)."""
        return self.speakers.student_sid(speaker_ids(batch, self.teacher.n_speakers))

    def _teacher_sid(self, batch) -> torch.Tensor | None:
        return speaker_ids(batch, self.teacher.n_speakers)

    def losses(self, out, lat, x_lengths: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of one batch (fp32).

        Args:
            out: :class:`~nixdistill.students.encoder.EncoderTrainOutput`.
            lat: :class:`~nixdistill.distill.latents.LatentBatch` (same ``T_frames`` as ``out``).
            x_lengths: tokens, [B].
            step: optimizer step (for the bin-loss ramp; reported as ``bin_weight``).
        """
        frames = out.m_s.shape[-1]
        y_mask = out.y_mask.float()
        m_s, logs_s = out.m_s.float(), out.logs_s.float()
        if lat.m is not None and self.options.kl_mode == "auto":
            kl = gaussian_kl_loss(m_s, logs_s, fit_length(lat.m, frames).float(),
                                  fit_length(lat.logs, frames).float(), y_mask)
        elif self.options.kl_mode == "mse":
            kl = latent_mse_loss(fit_length(lat.z, frames).float(), m_s, logs_s, y_mask)
        else:
            kl = gaussian_nll_loss(fit_length(lat.z, frames).float(), m_s, logs_s, y_mask)
        terms = {"kl": kl}
        if out.attn_logprob is not None:
            y_lengths = out.y_mask.sum((1, 2)).long()
            terms["forward_sum"] = forward_sum_loss(out.attn_logprob.float(), x_lengths, y_lengths)
            terms["bin"] = bin_loss(out.attn_hard, out.attn_soft.float())
        if out.dur_nll is not None:
            terms["duration"] = duration_nll_loss(out.dur_nll.float(), out.x_mask)
        else:
            terms["duration"] = duration_loss(out.logw.float(), out.w_target.float(), out.x_mask)
        return terms

    def training_step(self, batch, ctx) -> dict[str, Any]:
        with torch.no_grad():
            # without the aligner, only z and the durations are needed: the teacher's decoder
            # is skipped for items not cached with their audio (text-only latents)
            lat = teacher_latents(self.teacher, batch, self.source, None, self.latent_settings,
                                  self.cache, audio=self.align)
        encoder = ctx.model("encoder")
        with ctx.autocast():
            # prior latents: the teacher's own durations expanded its z; train on them
            out = encoder(batch.x, batch.x_lengths, lat.mel, lat.y_lengths, self._sid(batch),
                          w_target=lat.w_ceil, align=self.align)
        terms = self.losses(out, lat, batch.x_lengths, ctx.step)
        w = self.loss_weights
        bin_w = bin_loss_weight(ctx.step, self.options.bin_start_step, self.options.bin_ramp_steps)
        scale = {"kl": w["kl"], "forward_sum": w["forward_sum"], "bin": w["bin"] * bin_w,
                 "duration": w["duration"]}
        total = sum(scale[k] * v for k, v in terms.items())
        ctx.optimize("encoder", total)
        logs: dict[str, Any] = {k: v.detach() for k, v in terms.items()}
        frames = out.y_mask.sum().clamp(min=1)
        with torch.no_grad():
            z_t = fit_length(lat.z, out.m_s.shape[-1]).float()
            logs.update({
                "total": total.detach(),
                "bin_weight": bin_w,
                "latent/z_teacher_std": (z_t.pow(2) * out.y_mask).sum().div(
                    frames * z_t.shape[1]).sqrt(),
                "latent/m_s_std": (out.m_s.float().pow(2) * out.y_mask).sum().div(
                    frames * z_t.shape[1]).sqrt(),
                "latent/logs_s_mean": (out.logs_s.float() * out.y_mask).sum().div(
                    frames * z_t.shape[1]),
            })
        return logs

    # -- evaluation ------------------------------------------------------------------------
    def _eval_reference(self, i: int, device: torch.device):
        """Held-out item ``i``: its batch, the teacher's synthesis (seeded, so the same at every
        evaluation: computed once and kept) and the generator, seeded alike, that the student's
        draws continue from."""
        gen = torch.Generator(device=device)
        gen.manual_seed(self.train_cfg.seed + i)
        if i not in self._eval_refs:
            batch = collate([self.eval_set[i]]).to(device)
            ref = self.teacher.model.infer(
                batch.x, batch.x_lengths, self._teacher_sid(batch),
                noise_scale=self.options.teacher_noise_scale,
                length_scale=self.options.teacher_length_scale,
                noise_scale_w=self.options.teacher_noise_scale_w, generator=gen)
            self._eval_refs[i] = (batch, ref, gen.get_state())
        batch, ref, state = self._eval_refs[i]
        gen.set_state(state)
        return batch, ref, gen

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        """Student ``z`` with the teacher's durations -> teacher decoder, vs teacher synthesis.

        Returns (the loop logs them as ``val/*``):

        - ``mel_l1``: log-mel L1 of that pair;
        - ``dur_log_l1``: mean |log w_student - log w_teacher| per token (own durations);
        - ``duration_ratio``: student frames / teacher frames with its own durations;
        - ``align_within_1``: share of tokens whose aligner (MAS) duration is within +-1 frame
          of the teacher's, and ``align_dur_log_l1`` -- how well the student's own alignment
          learning agrees with the durations the teacher used (prior latents only).

        Logs audio, the student's alignment of the first item and latent statistics.
        """
        n_items = min(self.options.eval_items, len(self.eval_set))
        if n_items == 0:
            return {}
        encoder = self.encoder
        model = self.teacher.model
        mel_l1s, dur_l1s, ratios, within, align_l1s = [], [], [], [], []
        for i in range(n_items):
            batch, ref, gen = self._eval_reference(i, ctx.device)
            sid_t, sid_s = self._teacher_sid(batch), self._sid(batch)
            w_teacher = ref.w_ceil.reshape(1, -1)
            n_frames = int(w_teacher.sum())
            student = encoder.infer(batch.x, batch.x_lengths, sid_s,
                                    noise_scale=self.options.eval_noise_scale,
                                    w_ceil=w_teacher, generator=gen)
            wav_s = model.decode(student.z, sid_t).float()[..., : n_frames * self.audio.hop_length]
            wav_t = ref.wav.float()[..., : n_frames * self.audio.hop_length]
            mel_s, mel_t = log_mel(wav_s, self.audio), log_mel(wav_t, self.audio)
            mel_l1s.append(float((mel_s - mel_t).abs().mean()))
            free = encoder.infer(batch.x, batch.x_lengths, sid_s, noise_scale=0.0)
            n_tok = int(batch.x_lengths[0])
            dur_l1s.append(float((torch.log(free.w_ceil[0, :n_tok].float().clamp(min=1))
                                  - torch.log(w_teacher[0, :n_tok].float().clamp(min=1)))
                                 .abs().mean()))
            ratios.append(float(free.w_ceil.sum()) / max(n_frames, 1))
            if self.source == "prior" and self.align:
                mel_ref = fit_length(log_mel(wav_t, self.audio), n_frames)
                out = encoder(batch.x, batch.x_lengths, mel_ref, w_teacher.sum(1).long(), sid_s,
                              w_target=w_teacher)
                w_align = out.w_align[0, 0, :n_tok]
                w_ref = w_teacher[0, :n_tok].float()
                within.append(float(((w_align - w_ref).abs() <= 1).float().mean()))
                align_l1s.append(float((torch.log(w_align.clamp(min=1))
                                        - torch.log(w_ref.clamp(min=1))).abs().mean()))
            if i == 0:
                sr = self.audio.sample_rate
                ctx.log_audio("eval/student_teacher_durations", wav_s[0, 0].cpu(), sr)
                ctx.log_audio("eval/teacher", wav_t[0, 0].cpu(), sr)
                wav_free = model.decode(free.z, sid_t).float()
                ctx.log_audio("eval/student_free", wav_free[0, 0].cpu(), sr)
                ctx.log_image("eval/mel_student", plot_spectrogram(mel_s[0].cpu(), "student"))
                ctx.log_image("eval/mel_teacher", plot_spectrogram(mel_t[0].cpu(), "teacher"))
                self._log_alignment(batch, ctx)
        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        metrics = {"mel_l1": mean(mel_l1s), "dur_log_l1": mean(dur_l1s),
                   "duration_ratio": mean(ratios)}
        if within:
            metrics.update(align_within_1=mean(within), align_dur_log_l1=mean(align_l1s))
        return metrics

    def _log_alignment(self, batch, ctx) -> None:
        """Alignment of one held-out item and its latent statistics: the student's own (soft
        and hard) when its aligner is trained, else the teacher's durations it is trained on."""
        gen = torch.Generator(device=ctx.device)
        gen.manual_seed(self.train_cfg.seed)
        lat = teacher_latents(self.teacher, batch, self.source, gen, self.latent_settings)
        n_tok, n_frames = int(batch.x_lengths[0]), int(lat.y_lengths[0])
        if self.align:
            out = self.encoder(batch.x, batch.x_lengths, lat.mel, lat.y_lengths, self._sid(batch))
            # [T_frames, T_text] -> image rows = tokens, columns = frames
            ctx.log_image("align/soft", plot_alignment(
                out.attn_soft[0, 0, :n_frames, :n_tok].T.cpu(), "student soft alignment"))
            ctx.log_image("align/hard", plot_alignment(
                out.attn_hard[0, 0, :n_frames, :n_tok].T.cpu(), "student hard alignment (MAS)"))
        else:
            out = self.encoder(batch.x, batch.x_lengths, lat.mel, lat.y_lengths, self._sid(batch),
                               w_target=lat.w_ceil, align=False)
            w = lat.w_ceil.reshape(1, -1)[:, :n_tok]
            path = durations_to_path(w, torch.ones(1, n_frames, n_tok, device=w.device))
            ctx.log_image("align/teacher", plot_alignment(path[0].T.cpu(), "teacher durations"))
        z_t = lat.z[0, :, :n_frames]
        ctx.log_scalars({
            "z_teacher_mean": float(z_t.mean()), "z_teacher_std": float(z_t.std()),
            "m_s_mean": float(out.m_s[0, :, :n_frames].mean()),
            "m_s_std": float(out.m_s[0, :, :n_frames].std()),
            "logs_s_mean": float(out.logs_s[0, :, :n_frames].mean()),
        }, "eval_latent")


# -------------------------------------------------------------------------------- runner
def run_distil_encoder(
    teacher_ref: str | Path, data_ref: str | Path, config_ref: str | Path, out_dir: str | Path,
    latents: str = "auto", device: str = "cpu", resume: bool = False,
    max_steps: int | None = None, max_minutes: float | None = None, cache_latents: bool = False,
    seed: int | None = None, cache_dir: str | Path | None = None, speakers: str | None = None,
    keep_steps: Sequence[int] = (), extra_text: Sequence[str | Path] = (),
    skip_unusable_extra_text: bool = False,
) -> TrainResult:
    """Train a student encoder (``nixdistill distil-encoder``).

    Args:
        teacher_ref: any teacher reference (:func:`nixdistill.teacher.loader.load_teacher`).
        data_ref: dataset folder or filelist (:func:`nixdistill.data.read_dataset`).
        config_ref: encoder config file or shipped name (``students/encoder_base``,
            ``tiny/encoder``).
        out_dir: run folder (config, checkpoints, tensorboard).
        latents: ``"auto"``, ``"posterior"`` or ``"prior"``.
        device: torch device. resume: continue from ``out_dir``'s last checkpoint.
        max_steps / max_minutes: override ``train.max_steps`` / ``train.max_minutes``.
        cache_latents: cache teacher latents on disk (``train.extra.cache_dir``), one
            safetensors shard per utterance (the same sample is then reused every epoch). The
            cache is filled for the whole training set before training starts
            (:func:`~nixdistill.distill.latents.fill_latent_cache`), outside ``max_minutes``. With
            prior latents and a deterministic duration predictor, the final checkpoint's
            overall speaking rate is then calibrated to the teacher's durations on the
            training set (:func:`calibrate_duration_rate`).
        seed: override ``train.seed``.
        cache_dir: latent cache folder overriding ``train.extra.cache_dir``; giving it switches
            caching on (the pipeline shares one cache between encoder and decoder stages).
        speakers: a multi-speaker teacher's speakers to learn (ids or names, comma-separated;
            default all; see :mod:`nixdistill.distill.speakers`).
        keep_steps: steps whose checkpoints are written and never pruned, added to
            ``train.keep_steps`` (the pipeline keeps the encoder a decoder learns from).
        extra_text: text files (one sentence per line, ``#`` comments) whose sentences the
            encoder learns from too, beyond ``data_ref``. Their teacher latents are text-only
            (:func:`~nixdistill.distill.latents.teacher_latents` with ``audio=False``): the
            teacher's decoder, most of a synthesis, is skipped, so they cost a fraction of a
            ``data_ref`` sentence. Needs prior latents, a skipped aligner
            (``train.extra.aligner: "auto"``) and a single-speaker teacher. Their ids are
            ``extra-<file stem>_<line>``; the files used are recorded in the checkpoint's
            ``meta["extra_text"]``. A resumed run needs the same files.
        skip_unusable_extra_text: print a note and train without ``extra_text`` where it does
            not fit the teacher or the config, instead of raising (the pipeline's presets name
            English text for any teacher).
    Returns:
        TrainResult(step, reason, checkpoint) from the training loop. The checkpoint's
        ``config.model`` is the full encoder config and its ``meta`` holds the text frontend,
        audio config and teacher description, so export needs only the run folder.
    Raises:
        ConfigError, NixdistillError: bad config, data, latent mode or teacher; ``extra_text``
            without prior latents, with the aligner trained or with a multi-speaker teacher.
        DataError: an ``extra_text`` file is missing or holds no sentence.
    """
    run = prepare_distillation(
        DistilEncoderStage, teacher_ref, data_ref, config_ref, out_dir, latents, device,
        max_steps, max_minutes, seed, cache_latents, cache_dir, drop_unalignable=True,
        speakers=speakers)
    cfg = run.cfg
    if keep_steps:
        kept = sorted({*cfg.train.keep_steps, *(int(s) for s in keep_steps)})
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, keep_steps=kept))
    encoder_cfg = encoder_model_config(cfg.model, run.teacher, cfg.source,
                                       run.speakers.n_speakers)
    cfg = dataclasses.replace(cfg, model=encoder_cfg.to_dict())
    try:
        extra = _extra_text_set(extra_text, run)
    except (ConfigError, LanguageMismatchError) as e:
        if not skip_unusable_extra_text:
            raise
        print(f"extra text skipped: {e}", file=sys.stderr)
        extra = None
    train_set = run.train_set
    if extra is not None:
        train_set = TextOnlyDataset(run.train_set.utterances + extra.utterances,
                                    run.teacher.frontend)
    stage = DistilEncoderStage(run.teacher, cfg, encoder_cfg, train_set, run.eval_set,
                               run.source, run.cache, run.options, run.speakers)
    if run.cache is not None:
        # the teacher runs once, batched by length, before the clock of max_minutes starts
        # text-only passes are small (no waveform), so larger batches amortise their overhead
        for part, audio, batch_size in ((run.train_set, True, 8), (extra, False, 32)):
            if part is None:
                continue
            t0 = time.perf_counter()
            n = fill_latent_cache(run.teacher, part, run.source, stage.latent_settings,
                                  run.cache, cfg.train.seed, batch_size, device, audio=audio)
            if n:
                kind = "" if audio else " (text only)"
                print(f"teacher latents{kind}: {n} item(s) cached in "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    meta = {**run.meta, "encoder_config": encoder_cfg.to_dict(),
            "n_inference_params": stage.encoder.n_inference_params(),
            "extra_text": [] if extra is None else [str(p) for p in extra_text]}
    result = Trainer(stage, out_dir, cfg.train, device, resume, cfg.to_dict(), meta).fit()
    if run.cache is not None and run.source == "prior" and result.checkpoint is not None:
        factor = calibrate_duration_rate(result.checkpoint, train_set, run.cache, device)
        if factor is not None:
            print(f"duration rate: teacher / student frames on the training set = {factor:.3f}, "
                  "folded into the duration predictor", file=sys.stderr)
    return result


def _extra_text_set(paths: Sequence[str | Path], run):
    """The ``extra_text`` sentences as a :class:`~nixdistill.data.TextOnlyDataset`, or ``None``
    without any (see :func:`run_distil_encoder`)."""
    if not paths:
        return None
    if run.source != "prior":
        raise ConfigError("extra text needs prior latents (--latents prior): posterior latents "
                          "come from recorded audio, which extra text has not")
    if run.options.aligner == "always":
        raise ConfigError("extra text has no teacher audio for the aligner: set "
                          'train.extra.aligner to "auto"')
    if run.teacher.n_speakers > 1:
        raise ConfigError("extra text is for single-speaker teachers; a multi-speaker teacher "
                          "learns from --data only")
    utterances = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"extra text {p} does not exist")
        found = [dataclasses.replace(u, utt_id=f"extra-{u.utt_id}")
                 for u in read_dataset(p, "text") if u.text]
        if not found:
            raise DataError(f"extra text {p} holds no sentence")
        utterances += found
    check_text_language((u.text for u in utterances), run.teacher.frontend.language,
                        ", ".join(str(p) for p in paths))
    return TextOnlyDataset(utterances, run.teacher.frontend)
