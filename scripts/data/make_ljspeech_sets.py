"""Rebuild the held-out LJSpeech sentence sets in this folder from LJSpeech's transcripts.

    python scripts/data/make_ljspeech_sets.py --val LJSpeech/val.txt --train LJSpeech/train.txt

``--val`` and ``--train`` are the LJSpeech 1.1 transcripts in the standard VITS split
(``LJxxx-xxxx|transcript`` lines: 100 and 12,500 of them). Writes, one sentence per line after a
``#`` header (the format ``nixdistill benchmark --texts`` and the scripts' ``--texts`` read):

- ``ljspeech_val40.txt``: the first 40 lines of ``val.txt``, behind every held-out number in
  the README and docs/EXPERIMENTS.md;
- ``ljspeech_dev100.txt``: all 100 lines of ``val.txt`` (its first 40 are ``ljspeech_val40``),
  the development set for choosing levers;
- ``ljspeech_test120.txt``: 120 lines of ``train.txt``, picked at an even stride from the lines
  that qualify: after the first 400 (the transcripts the first students trained on), 40-200
  characters, and not found in any text file tracked in this repository.
- ``nixdistill/resources/sentences_ljspeech_en.txt``: 1,500 more lines (repeats dropped) of ``train.txt`` for
  the encoder only (``distil-encoder --extra-text``), picked at an even
  stride from all its 40-200-character lines that are not in ``ljspeech_test120.txt``. (The test
  set is chosen first, blind to this file, so adding it changed no test sentence.)

The output is deterministic. The test set is kept as committed unless ``--rebuild-test`` is
given: its choice depends on the repository's text, which grows (reports quote test sentences).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_TEST = 120
SKIP_TRAIN = 400
MIN_CHARS, MAX_CHARS = 40, 200
OUTPUTS = ("ljspeech_val40.txt", "ljspeech_dev100.txt", "ljspeech_test120.txt",
           "sentences_ljspeech_en.txt")
N_EXTRA = 1500
EXTRA = HERE.parents[1] / "nixdistill" / "resources" / "sentences_ljspeech_en.txt"


def _rows(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt_id, text = line.split("|", 1)
            rows.append((utt_id.strip(), text.rsplit("|", 1)[-1].strip()))
    return rows


def _repo_text(root: Path) -> str:
    """Every tracked text file of the repository, lower-cased, except this folder's outputs."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                           check=True).stdout.decode().split("\0")
    chunks = []
    for name in names:
        if not name or Path(name).name in OUTPUTS:
            continue
        data = (root / name).read_bytes() if (root / name).is_file() else b""
        if b"\0" in data:
            continue
        chunks.append(data.decode("utf-8", errors="ignore").lower())
    return "\n".join(chunks)


def _write(path: Path, header: list[str], rows: list[tuple[str, str]]) -> None:
    lines = [f"# {h}" for h in header] + [text for _, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{path.name}: {len(rows)} sentences")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, required=True, help="LJSpeech val.txt (id|text lines)")
    ap.add_argument("--train", type=Path, required=True, help="LJSpeech train.txt (id|text lines)")
    ap.add_argument("--rebuild-test", action="store_true",
                    help="choose ljspeech_test120.txt again (by default the committed test set is "
                         "kept: the repository's text grows, reports quote test sentences, and a "
                         "new choice would differ)")
    args = ap.parse_args()

    val, train = _rows(args.val), _rows(args.train)
    source = "LJSpeech 1.1 transcripts (Keith Ito, 2017; public domain), standard VITS split"
    _write(HERE / "ljspeech_val40.txt",
           [f"{source}: the first 40 lines of val.txt ({val[0][0]} ... {val[39][0]}).",
            "Held-out sentences behind the README's and docs/EXPERIMENTS.md's numbers."], val[:40])
    _write(HERE / "ljspeech_dev100.txt",
           [f"{source}: all 100 lines of val.txt ({val[0][0]} ... {val[-1][0]}).",
            "Development set for choosing levers; its first 40 lines are ljspeech_val40.txt."], val)

    test_path = HERE / "ljspeech_test120.txt"
    if args.rebuild_test or not test_path.is_file():
        _write_test(test_path, train, source)
    test_texts = {line.strip() for line in test_path.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.startswith("#")}
    held_out = test_texts | {t for _, t in val}
    pool = [(i, t) for i, t in train if MIN_CHARS <= len(t) <= MAX_CHARS and t not in held_out]
    step = len(pool) / N_EXTRA
    picked = [pool[int(k * step)] for k in range(N_EXTRA)]
    extra = [row for n, row in enumerate(picked) if row[1] not in {t for _, t in picked[:n]}]
    _write(EXTRA,
           [f"{source}: {len(extra):,} lines of train.txt, at an even stride over its {len(pool):,}",
            f"lines of {MIN_CHARS}-{MAX_CHARS} characters that are not in the test set "
            "(scripts/data/ljspeech_test120.txt), repeats dropped.",
            "More sentences for the student encoder only (distil-encoder --extra-text): their "
            "teacher latents skip the teacher's decoder.",
            "Rebuilt by scripts/data/make_ljspeech_sets.py."], extra)


def _write_test(path: Path, train: list[tuple[str, str]], source: str) -> None:
    repo = _repo_text(HERE.parents[1])
    qualify = [(i, t) for i, t in train[SKIP_TRAIN:]
               if MIN_CHARS <= len(t) <= MAX_CHARS and t.lower() not in repo]
    stride = len(qualify) // N_TEST
    test = [qualify[k * stride] for k in range(N_TEST)]
    _write(path,
           [f"{source}: 120 lines of train.txt, every {stride}th of the {len(qualify):,} lines that",
            f"qualify (after its first {SKIP_TRAIN}, {MIN_CHARS}-{MAX_CHARS} characters, in no other "
            "text of this repository).",
            "Fixed test set: score a finished recipe on it once, never choose with it.",
            "Ids: " + " ".join(i for i, _ in test[:3]) + " ... " + test[-1][0] + "."], test)


if __name__ == "__main__":
    main()
