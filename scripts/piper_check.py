"""Piper checks on a real student: the exported Piper voice spoken by piper-tts, against the
same student run through nixdistill (Whisper-base WER on held-out sentences), and streaming
time-to-first-audio against one-shot latency on a ~20-second paragraph (1 thread).

    python scripts/piper_check.py --student runs/joe-quick/student.safetensors \
        --voice voices/en_US-joe_student-medium.onnx --texts scripts/data/ljspeech_val40.txt --n 40

Both paths synthesize at the student's shipped defaults (Piper reads them from the voice's
``.onnx.json``) with Piper's peak normalisation off, so only the runtime differs.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nixdistill.benchmark.settings import read_texts
from nixdistill.benchmark.metrics import Transcriber, error_rate, normalize_transcript
from nixdistill.deploy.student import load_student

PARAGRAPH = (
    "The little station stood at the edge of the town, where the road turned toward the river. "
    "Every morning the first train arrived a few minutes after six, and the porter, an old man "
    "with a careful voice, called out the names of the villages along the line. Most days only "
    "a handful of people got off, carrying baskets, letters and the news of the week. On "
    "market days, however, the platform filled with farmers, children and travelling traders, "
    "and the porter's voice could hardly be heard above the noise."
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", required=True)
    ap.add_argument("--voice", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from piper import PiperVoice, SynthesisConfig

    texts = read_texts(args.texts)[: args.n]
    student = load_student(args.student)
    voice = PiperVoice.load(args.voice)
    sr = student.sample_rate
    asr = Transcriber()
    syn = SynthesisConfig(normalize_audio=False)
    refs, hyp_ours, hyp_piper, lens = [], [], [], []
    for i, text in enumerate(texts):
        torch.manual_seed(args.seed + i)
        ours = student.synthesize(text)
        piper = np.concatenate([c.audio_float_array for c in voice.synthesize(text, syn_config=syn)])
        refs.append(normalize_transcript(text))
        hyp_ours.append(normalize_transcript(asr.transcribe(ours, sr)))
        hyp_piper.append(normalize_transcript(asr.transcribe(piper, sr)))
        lens.append(len(piper) / max(len(ours), 1))
    out = {
        "n_sentences": len(texts),
        "wer_nixdistill": error_rate(refs, hyp_ours),
        "wer_piper_tts": error_rate(refs, hyp_piper),
        "length_ratio_piper_over_nixdistill": float(np.mean(lens)),
    }
    # streaming: time to first audio vs one-shot latency, 1 thread, noise as shipped
    torch.set_num_threads(1)
    student.synthesize(PARAGRAPH)  # warm-up
    t0 = time.perf_counter()
    one_shot = student.synthesize(PARAGRAPH)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = student.stream(PARAGRAPH)
    next(stream)
    first = time.perf_counter() - t0
    for _ in stream:
        pass
    streamed_total = time.perf_counter() - t0
    out.update({
        "paragraph_audio_s": len(one_shot) / sr,
        "one_shot_latency_s": total,
        "stream_first_audio_s": first,
        "stream_total_s": streamed_total,
        "first_audio_share": first / total,
    })
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
