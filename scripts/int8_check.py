"""Optional int8: onnxruntime dynamic quantization of an exported Piper-format student.

Quantizes the voice's graph with :func:`nixdistill.deploy.int8.quantize_int8` (onnxruntime's
``quantize_dynamic``; what ``nixdistill export --int8`` does with ``MatMul``) for each operator
set asked (by default ``MatMul`` alone, the advice for VITS graphs, and ``MatMul,Conv``), then
times every graph interleaved in one process (round-robin per sentence, 1 thread, the median
over repeats) and scores each with Whisper-base WER on the same sentences. The float graph is
the reference; a quantized one is worth keeping only when it is faster *and* its WER is within
0.01.

    python scripts/int8_check.py --voice voices/en_US-joe_student-medium.onnx \
        --texts scripts/data/ljspeech_val40.txt --n 40 --out int8.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def quantize(voice: Path, ops: list[str], folder: Path) -> Path:
    """A copy of ``voice`` quantized on ``ops`` (:func:`nixdistill.deploy.int8.quantize_int8`,
    dynamic, int8 weights), with its ``.onnx.json`` copied along."""
    from nixdistill.deploy.int8 import quantize_int8

    out = folder / f"{voice.stem}.int8-{'-'.join(ops)}.onnx"
    shutil.copy(voice, out)
    quantize_int8(out, ops)
    shutil.copy(f"{voice}.json", f"{out}.json")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", type=Path, required=True, help="Piper-format student .onnx")
    ap.add_argument("--texts", required=True, help="one sentence per line (or id|text)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ops", action="append", default=None,
                    help="comma-separated operator set to quantize (repeat; default MatMul and "
                         "MatMul,Conv)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()

    from nixdistill.benchmark.settings import read_texts
    from nixdistill.benchmark.metrics import Transcriber, error_rate, normalize_transcript
    from nixdistill.deploy.runtime import OnnxVoice

    texts = read_texts(args.texts)[: args.n]
    op_sets = [s.split(",") for s in (args.ops or ["MatMul", "MatMul,Conv"])]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"float32": args.voice}
        for ops in op_sets:
            paths["int8 " + "+".join(ops)] = quantize(args.voice, ops, Path(tmp))
        voices = {name: OnnxVoice(p, threads=1) for name, p in paths.items()}
        sizes = {name: Path(p).stat().st_size / 2**20 for name, p in paths.items()}
        for v in voices.values():  # warm-up
            v.synthesize(texts[0])
        times = {name: [[] for _ in texts] for name in voices}
        audio = {name: [None] * len(texts) for name in voices}
        for _ in range(args.repeats):
            for i, text in enumerate(texts):
                for name, v in voices.items():
                    t0 = time.perf_counter()
                    wav = v.synthesize(text)
                    times[name][i].append(time.perf_counter() - t0)
                    audio[name][i] = wav
        sr = next(iter(voices.values())).sample_rate
    asr = Transcriber()
    refs = [normalize_transcript(t) for t in texts]
    result = {"n_sentences": len(texts), "repeats": args.repeats, "threads": 1, "models": {}}
    base_ms = None
    for name in voices:
        ms = sum(statistics.median(t) for t in times[name]) * 1000 / len(texts)
        secs = sum(len(a) for a in audio[name]) / sr
        hyps = [normalize_transcript(asr.transcribe(a, sr)) for a in audio[name]]
        base_ms = base_ms or ms
        result["models"][name] = {
            "file_mb": sizes[name], "ms_per_sentence": ms,
            "rtf": ms / 1000 * len(texts) / secs, "speedup_vs_float": base_ms / ms,
            "wer": error_rate(refs, hyps),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
