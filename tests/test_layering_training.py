"""Imports of the training package flow down: training never imports export (or the CLI,
pipeline or benchmark); the run-folder module below it imports no training code."""

from __future__ import annotations

import ast
from pathlib import Path

import nixdistill

PACKAGE = Path(nixdistill.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _offending(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in files:
        hits = sorted(n for n in _imports(path)
                      if any(n == f or n.startswith(f + ".") for f in forbidden))
        if hits:
            bad[str(path.relative_to(PACKAGE))] = hits
    return bad


def test_training_never_imports_export_or_upper_layers():
    files = sorted((PACKAGE / "training").glob("*.py"))
    assert files, "the training package is empty"
    forbidden = ("nixdistill.export", "nixdistill.onnx_export", "nixdistill.pipeline",
                 "nixdistill.cli", "nixdistill.commands", "nixdistill.benchmark")
    assert _offending(files, forbidden) == {}


def test_run_folders_sit_below_training_and_export():
    forbidden = ("nixdistill.training", "nixdistill.export", "nixdistill.pipeline")
    assert _offending([PACKAGE / "runs.py", PACKAGE / "teacher.py"], forbidden) == {}


def test_the_checker_sees_relative_imports():
    names = _imports(PACKAGE / "training" / "loop.py")
    assert "nixdistill.runs" in names and "nixdistill.config.TrainConfig" in names
