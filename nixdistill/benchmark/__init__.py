"""Student vs teacher, side by side: size, speed, memory and quality (``nixdistill benchmark``).

Modules: :mod:`.settings` (what to run), :mod:`.adapters` (the models, PyTorch and ONNX
Runtime), :mod:`.speed`, :mod:`.memory`, :mod:`.quality`, :mod:`.result` (the typed
:class:`BenchmarkResult`), :mod:`.run` (:func:`run_benchmark`) and :mod:`.report` (JSON,
Markdown, Rich, plots; only the command layer writes).

Method:

* **Size.** Inference parameters per module, counted as ``sum(p.numel())``. Student: the
  encoder's top-level modules among its inference weights (the training-only aligner is
  excluded) and the decoder. Teacher: its top-level modules; ``enc_q`` (training only) is
  reported apart. File size is ``os.path.getsize`` of the model file.
* **Speed.** Real-time factor ``RTF = synthesis seconds / audio seconds`` and latency (ms per
  sentence) over the same sentences, one sentence per call (batch 1), noise 0. End to end is
  token ids -> waveform; in PyTorch the stages are the encoder (ids -> latent ``z``; teacher:
  ``enc_p + dp + flow`` via ``prior_latents``) and the decoder (``z`` -> waveform). In ONNX
  Runtime the teacher is its own Piper ``.onnx`` and the student its exported graph(s), timed
  end to end, with ``intra_op_num_threads`` = the thread count, one inter-op thread,
  sequential execution, full graph optimisation and no spin-waiting. After ``warmup`` passes, ``repeats``
  timed passes run with every model of every runtime **interleaved** (the order rotates each
  pass), so a noisy machine slows all models alike. Speed-ups are teacher / student ratios of
  medians within one runtime, by RTF and by latency, with the duration ratio (student audio
  seconds / teacher audio seconds) beside them, so a slow-speaking student cannot flatter
  its RTF. With ``int8``, a copy of each student's graph(s) with int8 ``MatMul`` weights
  (onnxruntime dynamic quantization) is timed in the same passes, as its own ONNX Runtime
  row ``<student> int8``.
* **Memory.** Each model in each runtime synthesises all sentences once in a fresh process
  at 1 thread; ``psutil`` samples its RSS. Reported: RSS once loaded, peak RSS, and the peak
  during synthesis minus the loaded RSS. Short spikes between two samples can be missed.
* **Quality.** Every clip is synthesised once, sentence ``i`` with noise seeded ``seed + i``.
  Every model is scored at noise 0 and **as shipped** (the student's metadata defaults; the
  teacher's ``.onnx.json`` inference defaults, or the VITS defaults 0.667 / 1.0 / 0.8):
  Whisper-base WER (CER for Korean, via ``jiwer``), DNSMOS P.835 and, for students, the
  mel-cepstral distance (MCD, DTW-aligned) to the teacher at the same setting and the
  duration ratio (mean over sentences of student / teacher audio length). With ``draws`` > 1
  the as-shipped scores are the mean over that many sampled clips per sentence (draw ``k``
  seeded ``seed + k n + i`` for ``n`` sentences), each draw's scores beside them: one draw of a
  sampled model is one roll of the dice.
  **Attribution lanes**, at noise 0 with the teacher's durations, each against the teacher's
  audio: teacher ``z`` -> student decoder; student ``z`` (teacher ``w_ceil``) -> teacher
  decoder; the same student ``z`` -> student decoder; the full student (own durations, own
  decoder). MCD by DTW, and frame by frame where the lengths agree.
  An optional **noise sweep** scores the full student at several noise scales (other
  settings as shipped). WER/CER and DNSMOS need ``nixdistill[eval]``; missing metrics are
  ``null``, never guessed.
"""

from __future__ import annotations

from .adapters import NOISE0, OrtModel, Scales, TorchModel, count_params, student_view, teacher_view
from .quality import LANES, quality_pass
from .result import BenchmarkResult, ModelEntry
from .run import run_benchmark
from .settings import (
    DEFAULT_N_SENTENCES,
    BenchmarkError,
    BenchmarkSettings,
    parse_noise_scales,
    parse_threads,
    read_texts,
)

__all__ = [
    "BenchmarkError",
    "BenchmarkResult",
    "BenchmarkSettings",
    "DEFAULT_N_SENTENCES",
    "LANES",
    "ModelEntry",
    "NOISE0",
    "OrtModel",
    "Scales",
    "TorchModel",
    "count_params",
    "parse_noise_scales",
    "parse_threads",
    "quality_pass",
    "read_texts",
    "run_benchmark",
    "student_view",
    "teacher_view",
]
