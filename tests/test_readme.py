"""The README's "Run the tests" block is what CI runs (``.ci/run`` extracts and executes it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _extractor():
    spec = importlib.util.spec_from_file_location("readme_command", ROOT / ".ci" / "readme_command.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_test_block():
    block = _extractor().block_under((ROOT / "README.md").read_text(encoding="utf-8"),
                                     "Run the tests")
    assert block and "pytest" in block and "pip install" in block
    assert "readme_command.py" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_extractor_takes_the_first_bash_block_under_the_heading_only():
    block_under = _extractor().block_under
    text = "# T\n## Run the tests\nSome words.\n```bash\nmake test\n```\n```bash\nno\n```\n## Next\n"
    assert block_under(text, "Run the tests") == "make test"
    assert block_under("## Run the tests\n## Other\n```bash\nx\n```\n", "Run the tests") is None
    assert block_under("## Elsewhere\n```bash\nx\n```\n", "Run the tests") is None
