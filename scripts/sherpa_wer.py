"""Whisper WER of a Piper voice spoken by sherpa-onnx against the same voice spoken by nixdistill.

Speaks each held-out sentence twice, through sherpa-onnx's ``OfflineTts`` (with the
``tokens.txt`` that ``nixdistill export --format piper`` writes, piper-tts's espeak-ng-data and
``GenerationConfig(silence_scale=1.0)``) and through nixdistill's onnxruntime voice
(:func:`nixdistill.deploy.runtime.load_voice`), both at the voice's shipped scales, and scores
both with the benchmark's Whisper-base transcriber and text normaliser (as ``nixdistill
benchmark`` scores WER). Prints one JSON object.

    python scripts/sherpa_wer.py --voice runs/joe-quick/voice/en_US-joe_nix-medium.onnx \\
        --texts scripts/data/ljspeech_val40.txt --n 40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def sherpa_tts(voice: Path, scales: dict[str, float]):
    import piper
    import sherpa_onnx

    data_dir = Path(piper.__file__).parent / "espeak-ng-data"
    config = sherpa_onnx.OfflineTtsConfig(
        model=sherpa_onnx.OfflineTtsModelConfig(
            vits=sherpa_onnx.OfflineTtsVitsModelConfig(
                model=str(voice), tokens=str(voice.parent / "tokens.txt"), data_dir=str(data_dir),
                noise_scale=scales["noise_scale"], noise_scale_w=scales["noise_w"],
                length_scale=scales["length_scale"]),
            num_threads=1, provider="cpu"))
    return sherpa_onnx.OfflineTts(config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voice", type=Path, required=True, help="a Piper .onnx with tokens.txt")
    ap.add_argument("--texts", type=Path, default=Path("scripts/data/ljspeech_val40.txt"))
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()

    import sherpa_onnx

    from nixdistill.benchmark.metrics import Transcriber, error_rate, normalize_transcript
    from nixdistill.benchmark.settings import read_texts
    from nixdistill.deploy.runtime import load_voice

    texts = read_texts(args.texts)[:args.n]
    voice = load_voice(args.voice, threads=1)
    tts = sherpa_tts(args.voice, voice.scales)
    generation = sherpa_onnx.GenerationConfig()
    generation.sid, generation.speed, generation.silence_scale = 0, 1.0, 1.0
    asr = Transcriber("en")
    hyps: dict[str, list[str]] = {"sherpa_onnx": [], "nixdistill": []}
    seconds = {"sherpa_onnx": 0.0, "nixdistill": 0.0}
    for text in texts:
        clips = {"sherpa_onnx": np.asarray(tts.generate(text, generation).samples, np.float32),
                 "nixdistill": np.asarray(voice.synthesize(text), np.float32)}
        for name, wav in clips.items():
            hyps[name].append(asr.transcribe(wav, voice.sample_rate))
            seconds[name] += wav.size / voice.sample_rate
    print(json.dumps({
        "voice": str(args.voice), "n_sentences": len(texts),
        "sherpa_onnx_version": sherpa_onnx.__version__,
        "wer": {name: error_rate([normalize_transcript(x) for x in texts],
                                 [normalize_transcript(x) for x in h])
                for name, h in hyps.items()},
        "audio_seconds": seconds,
    }, indent=1))


if __name__ == "__main__":
    main()
