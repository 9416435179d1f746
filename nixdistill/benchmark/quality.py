"""Quality as users hear it: every model as shipped and at noise 0, the attribution lanes,
and the student's noise sweep.

Every clip is synthesised once (sentence ``i`` draws its noise from a generator seeded with
``seed + i``, so runs are reproducible) and scored once; groups that share a clip share its
scores (clips are recognised by their samples, so a deterministic model's repeated draws are
scored once).

A model as shipped samples its latents and durations, so one draw per sentence scores one
roll of the dice: the joe teacher's Whisper WER as shipped on the 40 sentences of
``scripts/data/ljspeech_val40.txt`` was 0.056, 0.062, 0.060, 0.062 and 0.066 over this module's
``draws=5`` (docs/EXPERIMENTS.md, "WER as shipped: the teacher's draws"). ``draws > 1`` scores
the as-shipped clips of every model ``draws`` times (draw ``k`` of sentence ``i`` uses seed
``seed + k * n + i`` for ``n`` sentences; draw 0 is the single-draw clip) and reports the mean,
with each draw's scores.

Lanes (noise 0, the teacher's durations), each scored against the teacher's noise-0 audio:

* ``teacher``: ``teacher.model.prior_latents`` -> ``teacher.model.decode``;
* ``teacher_z_student_decoder``: the teacher's ``z`` -> the student decoder (decoder error);
* ``student_z_teacher_decoder``: the student's ``z`` expanded with the teacher's ``w_ceil`` ->
  the teacher decoder (encoder error);
* ``student_teacher_durations``: the same student ``z`` -> the student decoder;
* ``full_student``: the student's own durations and own decoder (MCD by DTW only).

For ``student_teacher_durations`` and ``teacher_z_student_decoder`` the frames line up with the
teacher's, so each student entry also has ``mel_error_by_class``: the mean log-mel error of the
frames of each phoneme class (plosives, fricatives, nasals, vowels, ...;
:mod:`nixdistill.benchmark.phonemes`).
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from nixdistill.benchmark.metrics import (
    EVAL_HINT,
    Transcriber,
    dnsmos,
    error_rate,
    mcd,
    missing_extras,
    normalize_transcript,
    uses_cer,
)
from .adapters import NOISE0, Scales, TorchModel
from .phonemes import mel_error_by_class
from .settings import BenchmarkError

__all__ = ["LANES", "QualityReport", "quality_pass", "first_sentence_clips"]

LANES = ("teacher", "teacher_z_student_decoder", "student_z_teacher_decoder",
         "student_teacher_durations", "full_student")
Clip = np.ndarray  # waveform [T_samples] float32


@dataclass
class QualityReport:
    """Output of :func:`quality_pass`.

    Attributes:
        entries: per model, its ``quality`` entry (noise-0 fields, ``as_shipped``).
        lanes: ``{student: {lane: {mcd_dtw_db, mcd_frames_db, asr_error_rate, dnsmos_ovrl,
            duration_ratio}}}``.
        noise_sweep: ``{student: [{noise_scale, asr_error_rate, dnsmos_ovrl, mcd_dtw_db,
            duration_ratio}, ...]}``.
        real: scores of real recordings, or None.
        first_clips: noise-0 audio of the first sentence per model (for the mel plot).
    """

    entries: dict[str, dict[str, Any]]
    lanes: dict[str, dict[str, dict[str, Any]]]
    noise_sweep: dict[str, list[dict[str, Any]]]
    real: dict[str, Any] | None
    first_clips: dict[str, Clip]


@torch.inference_mode()
def _encode(m: TorchModel, text: str, scales: Scales, seed: int,
            w_ceil: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device=m.device)
    gen.manual_seed(seed)
    x, x_lengths = m.prepare(m.encode_text(text))
    return m.encode(x, x_lengths, scales, w_ceil, gen)


@torch.inference_mode()
def _decode(m: TorchModel, z: torch.Tensor) -> Clip:
    return m.decode(z).reshape(-1).float().cpu().numpy()


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(statistics.fmean(finite)) if finite else None


class _Scorer:
    """ASR error rate and DNSMOS of clip groups, each clip scored once (by identity)."""

    def __init__(self, language: str, asr_and_mos: bool) -> None:
        self.language = language
        self.metric = "cer" if uses_cer(language) else "wer"
        self.can_mcd = not missing_extras("mcd")
        use_asr = asr_and_mos and not missing_extras("asr")
        self.transcriber = Transcriber(language=language) if use_asr else None
        self.can_mos = asr_and_mos and not missing_extras("dnsmos")
        self._hyp: dict[bytes, str] = {}
        self._mos: dict[bytes, dict[str, float]] = {}

    @staticmethod
    def _key(c: Clip) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(c).tobytes(), digest_size=16).digest()

    @property
    def missing(self) -> bool:
        return self.transcriber is None or not self.can_mos or not self.can_mcd

    def score(self, texts: Sequence[str], clips: Sequence[Clip], sample_rate: int) -> dict[str, Any]:
        """``{"asr_metric", "asr_error_rate", "transcripts", "dnsmos"}`` (None when missing)."""
        out: dict[str, Any] = {"asr_metric": self.metric, "asr_error_rate": None,
                               "transcripts": None, "dnsmos": None}
        keys = [self._key(c) for c in clips]
        if self.transcriber is not None:
            for key, c in zip(keys, clips):
                if key not in self._hyp:
                    self._hyp[key] = self.transcriber.transcribe(c, sample_rate)
            hyps = [self._hyp[key] for key in keys]
            out["asr_error_rate"] = error_rate(
                [normalize_transcript(t, self.language) for t in texts],
                [normalize_transcript(h, self.language) for h in hyps],
                "char" if self.metric == "cer" else "word")
            out["transcripts"] = hyps
        if self.can_mos:
            for key, c in zip(keys, clips):
                if key not in self._mos:
                    self._mos[key] = dnsmos(c, sample_rate)
            scores = [self._mos[key] for key in keys]
            out["dnsmos"] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        return out

    def mcd(self, ref: Clip, hyp: Clip | None, m: TorchModel, frames: bool = False) -> float | None:
        if not self.can_mcd or hyp is None or (frames and len(ref) != len(hyp)):
            return None
        a = m.audio
        return mcd(ref, hyp, a.sample_rate, a.n_fft, a.hop_length, "frames" if frames else "dtw")


def _add_by_class(acc: dict[str, list[float]], part: dict[str, tuple[float, int]]) -> None:
    for cls, (total, frames) in part.items():
        a = acc.setdefault(cls, [0.0, 0])
        a[0] += total
        a[1] += frames


def _ratio(num: Sequence[Clip], den: Sequence[Clip]) -> float:
    """Mean over sentences of ``len(num_i) / len(den_i)``."""
    return float(statistics.fmean(len(a) / len(b) for a, b in zip(num, den)))


def _scales_dict(s: Scales) -> dict[str, float]:
    return s._asdict()


def quality_pass(teacher: TorchModel, students: Sequence[TorchModel], texts: Sequence[str],
                 noise_scales: Sequence[float] = (), seed: int = 0,
                 real: Sequence[tuple[str, np.ndarray, int]] = (),
                 asr_and_mos: bool = True, draws: int = 1) -> QualityReport:
    """Score every model as shipped and at noise 0, the lanes and the noise sweep.

    Args:
        teacher / students: wrapped PyTorch models (same sample rate).
        texts: sentences (ASR references).
        noise_scales: full-student noise sweep (other settings as shipped).
        seed: sentence ``i`` samples with ``seed + i``.
        draws: as-shipped clips per sentence and model; the ``as_shipped`` scores are their
            mean (draw ``k`` samples with ``seed + k * len(texts) + i``), with each draw's
            scores under ``as_shipped["draws"]`` when ``draws > 1``. Per-sentence lengths and
            the noise sweep use draw 0.
        real: ``(transcript, waveform [T_samples], sample_rate)`` of real recordings.
        asr_and_mos: run Whisper and DNSMOS (when installed); False scores MCD and durations only.
    Returns:
        :class:`QualityReport`. Metrics whose package is missing are None, and the entries
        carry ``"missing": EVAL_HINT``.
    Raises:
        BenchmarkError: a student at another sample rate than the teacher, or ``draws < 1``.
    """
    if draws < 1:
        raise BenchmarkError(f"draws must be >= 1, got {draws}")
    sc = _Scorer(teacher.language, asr_and_mos)
    sr = teacher.audio.sample_rate

    def draw_seeds(k: int) -> list[int]:
        return [seed + k * len(texts) + i for i in range(len(texts))]

    seeds = draw_seeds(0)
    t_zero_out = [_encode(teacher, t, NOISE0, s) for t, s in zip(texts, seeds)]
    t_zero = [_decode(teacher, z) for z, _ in t_zero_out]
    t_ships = [[_decode(teacher, _encode(teacher, t, teacher.shipped, s)[0])
                for t, s in zip(texts, draw_seeds(k))] for k in range(draws)]
    t_ship = t_ships[0]
    entries = {teacher.name: {**sc.score(texts, t_zero, sr), "as_shipped": {
        "scales": _scales_dict(teacher.shipped),
        **_over_draws([sc.score(texts, clips, sr) for clips in t_ships])}}}
    lanes: dict[str, dict[str, dict[str, Any]]] = {}
    sweep: dict[str, list[dict[str, Any]]] = {}
    first = {teacher.name: t_zero[0]}
    for st in students:
        if st.audio.sample_rate != sr:
            raise BenchmarkError(f"{st.name} speaks at {st.audio.sample_rate} Hz but the teacher at {sr} Hz")
        full: dict[tuple[Scales, int], list[Clip]] = {}

        def full_clips(scales: Scales, k: int = 0) -> list[Clip]:
            if (scales, k) not in full:
                full[scales, k] = [_decode(st, _encode(st, t, scales, s)[0])
                                   for t, s in zip(texts, draw_seeds(k))]
            return full[scales, k]

        s_zero = full_clips(NOISE0)
        s_ships = [full_clips(st.shipped, k) for k in range(draws)]
        s_ship = s_ships[0]
        same = [st.encode_text(t) == teacher.encode_text(t) for t in texts]
        tz_sd: list[Clip | None] = []
        sz_td: list[Clip | None] = []
        sz_sd: list[Clip | None] = []
        by_class: dict[str, dict[str, list[float]]] = {}
        for text, s, ok, (z_t, w_t), ref in zip(texts, seeds, same, t_zero_out, t_zero):
            z_s = _encode(st, text, NOISE0, s, w_ceil=w_t)[0] if ok else None
            tz_sd.append(_decode(st, z_t) if ok else None)
            sz_td.append(_decode(teacher, z_s) if z_s is not None else None)
            sz_sd.append(_decode(st, z_s) if z_s is not None else None)
            if ok and teacher.symbols is not None:
                tokens = [teacher.symbols[i] for i in teacher.encode_text(text)]
                durations = w_t.reshape(-1).tolist()
                for lane, clip in (("student_teacher_durations", sz_sd[-1]),
                                   ("teacher_z_student_decoder", tz_sd[-1])):
                    _add_by_class(by_class.setdefault(lane, {}), mel_error_by_class(
                        ref, clip, durations, tokens, st.audio))
        lane_clips = {"teacher": t_zero, "teacher_z_student_decoder": tz_sd,
                      "student_z_teacher_decoder": sz_td, "student_teacher_durations": sz_sd,
                      "full_student": s_zero}
        lanes[st.name] = {}
        for lane, clips in lane_clips.items():
            kept = [(t, ref, c) for t, ref, c in zip(texts, t_zero, clips) if c is not None]
            if not kept:
                continue
            k_texts, k_refs, k_clips = map(list, zip(*kept))
            q = sc.score(k_texts, k_clips, sr)
            lanes[st.name][lane] = {
                "n_sentences": len(kept),
                "mcd_dtw_db": None if lane == "teacher" else _mean([sc.mcd(r, c, st) for r, c in zip(k_refs, k_clips)]),
                "mcd_frames_db": None if lane == "teacher" else _mean(
                    [sc.mcd(r, c, st, frames=True) for r, c in zip(k_refs, k_clips)]),
                "asr_error_rate": q["asr_error_rate"],
                "dnsmos_ovrl": q["dnsmos"]["ovrl"] if q["dnsmos"] else None,
                "duration_ratio": _ratio(k_clips, k_refs),
            }
        per_sentence = [{
            "text": t, "teacher_s": len(tr) / sr, "student_s": len(s0) / sr,
            "teacher_shipped_s": len(ts) / sr, "student_shipped_s": len(ss) / sr,
            "mcd_db": sc.mcd(tr, s0, st), "mcd_teacher_durations_db": sc.mcd(tr, sd, st),
        } for t, tr, s0, ts, ss, sd in zip(texts, t_zero, s_zero, t_ship, s_ship, sz_sd)]
        entry: dict[str, Any] = {
            **sc.score(texts, s_zero, sr),
            "mcd_db": _mean([r["mcd_db"] for r in per_sentence]),
            "mcd_teacher_durations_db": _mean([r["mcd_teacher_durations_db"] for r in per_sentence]),
            "duration_ratio": _ratio(s_zero, t_zero),
            "per_sentence": per_sentence,
            "as_shipped": {"scales": _scales_dict(st.shipped), **_over_draws([{
                **sc.score(texts, ss, sr), "duration_ratio": _ratio(ss, ts),
                "mcd_db": _mean([sc.mcd(a, b, st) for a, b in zip(ts, ss)]),
            } for ss, ts in zip(s_ships, t_ships)])},
        }
        if by_class:
            entry["mel_error_by_class"] = {
                lane: {c: {"log_mel_l1": v[0] / v[1], "frames": int(v[1])}
                       for c, v in sorted(acc.items()) if v[1]}
                for lane, acc in by_class.items()}
        if not all(same):
            entry["note"] = "student and teacher encode some sentences differently; those have no lanes"
        entries[st.name] = entry
        sweep[st.name] = []
        for ns in noise_scales:
            clips = full_clips(st.shipped._replace(noise_scale=ns))
            q = sc.score(texts, clips, sr)
            sweep[st.name].append({
                "noise_scale": ns, "asr_error_rate": q["asr_error_rate"],
                "dnsmos_ovrl": q["dnsmos"]["ovrl"] if q["dnsmos"] else None,
                "mcd_dtw_db": _mean([sc.mcd(a, b, st) for a, b in zip(t_zero, clips)]),
                "duration_ratio": _ratio(clips, t_ship),
            })
        first[st.name] = s_zero[0]
    if sc.missing:
        for e in entries.values():
            e["missing"] = EVAL_HINT
    real_entry = None
    if real:
        real_entry = sc.score([t for t, _, _ in real], [w for _, w, _ in real], real[0][2])
    return QualityReport(entries, lanes, sweep, real_entry, first)


def _over_draws(per_draw: list[dict[str, Any]]) -> dict[str, Any]:
    """One as-shipped entry from the scores of each draw: draw 0's entry (its transcripts)
    with the error rate, DNSMOS, duration ratio and MCD replaced by their means over the
    draws, and ``draws``: each draw's ``{asr_error_rate, dnsmos_ovrl[, duration_ratio,
    mcd_db]}`` (only when there is more than one)."""
    out = dict(per_draw[0])
    if len(per_draw) == 1:
        return out
    for key in ("asr_error_rate", "duration_ratio", "mcd_db"):
        if key in out:
            out[key] = _mean([d[key] for d in per_draw])
    if out["dnsmos"] is not None:
        out["dnsmos"] = {k: float(np.mean([d["dnsmos"][k] for d in per_draw])) for k in out["dnsmos"]}
    out["draws"] = [{"asr_error_rate": d["asr_error_rate"],
                     "dnsmos_ovrl": d["dnsmos"]["ovrl"] if d["dnsmos"] else None,
                     **{k: d[k] for k in ("duration_ratio", "mcd_db") if k in d}} for d in per_draw]
    return out


def first_sentence_clips(models: Sequence[TorchModel], text: str) -> dict[str, Clip]:
    """Noise-0 audio of one sentence per model (the mel plot when quality is off)."""
    return {m.name: _decode(m, _encode(m, text, NOISE0, 0)[0]) for m in models}
