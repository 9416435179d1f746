"""The repository speaks about the product, not about how the work on it was organised.

Every text file that git tracks is read and searched for work-tracking words: numbered stops or
issues, ``#NN`` ticket references, and documents that are not in the repository. Binary files
are skipped; this file is the only one allowed to spell the patterns out.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

PATTERNS = {
    "numbered stop": re.compile(r"\b[Ss]top \d+\b"),
    "numbered issue": re.compile(r"\b[Ii]ssue #?\d+\b"),
    "ticket reference": re.compile(r"(?<![\w&#/])#1\d\b"),
    "document outside the repository": re.compile(r"DESIGN\.md"),
    "the brief": re.compile(r"\bthe brief\b"),
}


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.stdout.decode("utf-8").split("\0") if name]


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary (or missing) file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def hits(text: str) -> list[tuple[int, str, str]]:
    """(line number, pattern name, line) for every work-tracking word in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append((number, name, line.strip()))
    return found


@pytest.mark.parametrize("text, expected", [
    ("Measured at stop 23 on the slow machine.", ["numbered stop"]),
    ("See issue 11.", ["numbered issue"]),
    ("Issue #13", ["numbered issue", "ticket reference"]),
    ("as asked in #17", ["ticket reference"]),
    ("(DESIGN.md section 3)", ["document outside the repository"]),
    ("as in the brief", ["the brief"]),
    ("Stop after this many steps; a progress bar; stopped at 1,000 steps.", []),
    ("colour #1f77b4, `# 12 sentences`, issue tracker, &#13;", []),
])
def test_patterns(text: str, expected: list[str]) -> None:
    assert [name for _, name, _ in hits(text)] == expected


def test_tracked_files_use_product_words() -> None:
    problems = []
    for name in _tracked_files():
        if name == THIS:
            continue
        text = _text(ROOT / name)
        if text is None:
            continue
        problems += [f"{name}:{n}: {what}: {line[:120]}" for n, what, line in hits(text)]
    assert not problems, "work-tracking words in tracked files:\n" + "\n".join(problems)
