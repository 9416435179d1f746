"""Turn the Asterisk English core sounds (Allison, 8 kHz) into a ``wav|text`` filelist.

Data: Debian packages ``asterisk-core-sounds-en`` (transcripts) and
``asterisk-core-sounds-en-wav`` (audio); CC-BY-SA-3.0. The transcript file has one
``name: text`` line per prompt; ``name`` may include a subfolder (``digits/1``).

Cleaning (only what the recordings themselves justify):

* prompts whose whole text is an annotation in ``[...]``, ``<...>`` or ``(...)``
  (tones, beeps, silence) are skipped;
* inline annotations (``at [@]``, ``(simple tone sound plays)``) are removed;
* the keypad symbols ``*`` and ``#`` become the words the speaker says, "star" and "pound".

Usage::

    python scripts/asterisk_filelist.py --out /tmp/asterisk.txt
    nixdistill prepare /tmp/asterisk.txt --out /tmp/asterisk_prepared --sample-rate 8000
"""

from __future__ import annotations

import gzip
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

DEFAULT_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
DEFAULT_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
AUDIO_SUFFIX = ".wav"
_ANNOTATION_ONLY = re.compile(r"^\s*(\[[^\]]*\]|<[^>]*>|\([^)]*\))\s*$")
_INLINE_ANNOTATION = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")
_KEYPAD_WORDS = {"*": "star", "#": "pound"}
_WHITESPACE = re.compile(r"\s+")


@dataclass
class AsteriskFilelist:
    """Result of :func:`build_filelist`: kept ``(wav, text)`` rows and skipped names by reason."""

    rows: list[tuple[Path, str]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)


def clean_prompt_text(text: str) -> str | None:
    """Prompt text as spoken, or ``None`` when the prompt is only an annotation."""
    if _ANNOTATION_ONLY.match(text):
        return None
    text = _INLINE_ANNOTATION.sub(" ", text)
    for symbol, word in _KEYPAD_WORDS.items():
        text = text.replace(symbol, f" {word} ")
    text = _WHITESPACE.sub(" ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return text or None


def build_filelist(sounds: Path, transcripts: Path) -> AsteriskFilelist:
    """Pair each transcript line with ``sounds/<name>.wav``."""
    result = AsteriskFilelist()
    with gzip.open(transcripts, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, sep, text = line.partition(":")
            name = name.strip()
            if not sep:
                result.skip("not a 'name: text' line", line)
                continue
            cleaned = clean_prompt_text(text)
            if cleaned is None:
                result.skip("annotation only", name)
                continue
            wav = sounds / f"{name}{AUDIO_SUFFIX}"
            if not wav.is_file():
                result.skip("no audio file", name)
                continue
            result.rows.append((wav.resolve(), cleaned))
    return result


@click.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Filelist to write (wav|text, absolute paths).")
@click.option("--sounds", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_SOUNDS,
              show_default=True, help="Folder of the 8 kHz Allison wavs.")
@click.option("--transcripts", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_TRANSCRIPTS, show_default=True, help="core-sounds-en.txt.gz.")
def main(out_path: Path, sounds: Path, transcripts: Path) -> None:
    """Write the Asterisk prompts as a wav|text filelist for `nixdistill prepare`."""
    if not transcripts.is_file() or not sounds.is_dir():
        raise click.UsageError(
            f"need {transcripts} and {sounds}: apt-get install asterisk-core-sounds-en "
            "asterisk-core-sounds-en-wav")
    result = build_filelist(sounds, transcripts)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("".join(f"{wav}|{text}\n" for wav, text in result.rows), encoding="utf-8")
    print(f"wrote {len(result.rows)} prompts to {out_path}", file=sys.stderr)
    for reason, names in result.skipped.items():
        print(f"skipped {len(names)} ({reason}): {', '.join(names)}", file=sys.stderr)


if __name__ == "__main__":
    main()
