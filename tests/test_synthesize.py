"""``nixdistill synthesize`` and ``nixdistill export`` through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from test_distil_decoder import tiny_teacher  # noqa: F401  (fixture)
from test_export import AUDIO, make_student

from nixdistill.cli import cli, main


@pytest.fixture(scope="module")
def student_file(tmp_path_factory):
    path, _, _ = make_student(tmp_path_factory.mktemp("student"), "istft")
    return path


def test_synthesize_text_writes_a_wav(tmp_path, student_file):
    out = tmp_path / "a.wav"
    r = CliRunner().invoke(cli, ["--device", "cpu", "synthesize", "--model", str(student_file),
                                 "--text", "hello world", "--out", str(out),
                                 "--noise-scale", "0", "--length-scale", "1.5"])
    assert r.exit_code == 0, r.output
    wav, sr = sf.read(out)
    assert sr == AUDIO.sample_rate
    assert len(wav) > 0 and len(wav) % AUDIO.hop_length == 0
    # Slower speech is longer.
    out2 = tmp_path / "b.wav"
    r = CliRunner().invoke(cli, ["synthesize", "--model", str(student_file), "--text",
                                 "hello world", "--out", str(out2), "--noise-scale", "0"])
    assert r.exit_code == 0, r.output
    assert len(sf.read(out2)[0]) < len(wav)


def test_synthesize_text_file_writes_one_wav_per_line(tmp_path, student_file):
    lines = tmp_path / "lines.txt"
    lines.write_text("first line\n\nsecond one here\n", encoding="utf-8")
    out = tmp_path / "wavs"
    r = CliRunner().invoke(cli, ["synthesize", "--model", str(student_file), "--text-file",
                                 str(lines), "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*.wav"))
    assert [f.name for f in files] == ["0000.wav", "0001.wav"]
    assert all(np.isfinite(sf.read(f)[0]).all() for f in files)


def test_synthesize_with_a_teacher(tmp_path, tiny_teacher):  # noqa: F811
    out = tmp_path / "t.wav"
    r = CliRunner().invoke(cli, ["--seed", "1", "synthesize", "--teacher", str(tiny_teacher),
                                 "--text", "hello", "--out", str(out), "--noise-scale", "0.3",
                                 "--noise-scale-w", "0.5", "--length-scale", "1.0"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    wav, sr = sf.read(out)
    assert sr == 8000 and len(wav) > 0


@pytest.mark.parametrize("case", ["empty", "unknown", "missing", "not_student", "both",
                                  "speaker"])
def test_user_errors_are_one_line_without_traceback(tmp_path, student_file, capsys, case):
    not_student = tmp_path / "x.safetensors"
    not_student.write_text("hello", encoding="utf-8")
    args = {
        "empty": ["--model", str(student_file), "--text", "   "],
        "unknown": ["--model", str(student_file), "--text", "hello \u4e16\u754c"],
        "missing": ["--model", str(tmp_path / "nope.safetensors"), "--text", "hi"],
        "not_student": ["--model", str(not_student), "--text", "hi"],
        "both": ["--model", str(student_file), "--teacher", "x", "--text", "hi"],
        "speaker": ["--model", str(student_file), "--text", "hi", "--speaker", "3"],
    }[case]
    with pytest.raises(SystemExit) as exc:
        main(["synthesize", *args, "--out", str(tmp_path / "o.wav")])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "Error" in err and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()


def test_stdin_text_stream_and_raw_stdout(tmp_path, student_file):
    """Text from stdin; --stream writes the same audio; --out - is raw 16-bit PCM."""
    text = "First sentence here. And the second one."
    runner = CliRunner()
    plain, streamed = tmp_path / "plain.wav", tmp_path / "stream.wav"
    for out, extra in ((plain, []), (streamed, ["--stream"])):
        r = runner.invoke(cli, ["synthesize", "--model", str(student_file), "--out", str(out),
                                "--noise-scale", "0", *extra], input=text)
        assert r.exit_code == 0, r.output
    a, b = sf.read(plain, dtype="int16")[0], sf.read(streamed, dtype="int16")[0]
    assert len(a) == len(b) > 0 and np.abs(a.astype(int) - b).max() <= 1
    r = runner.invoke(cli, ["synthesize", "--model", str(student_file), "--out", "-",
                            "--noise-scale", "0", "--text", text])
    assert r.exit_code == 0
    pcm = np.frombuffer(r.stdout_bytes, dtype="<i2")
    assert len(pcm) == len(a) and np.abs(pcm.astype(int) - a).max() <= 1
