"""Imports flow one way (docs/ARCHITECTURE.md): the model packages import only the shared layers
and errors below them, and students never import teachers.

The checker reads the source with ``ast`` and executes nothing. A new rule is a function
``Import -> message | None`` passed to :func:`check_package`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folders of the installed packages (pyproject ``package-dir``).
TEACHERS = (ROOT / "teachers", "nixdistill.teachers")
STUDENTS = (ROOT / "students", "nixdistill.students")

#: What the model packages may import of nixdistill besides themselves.
MODEL_ALLOWED = ("nixdistill.nn", "nixdistill.errors")
#: Allowed in the model packages only inside a function (training-only, kept off import).
MODEL_LAZY_ONLY = ("nixdistill.monotonic_align",)


@dataclass(frozen=True)
class Import:
    """One imported name, resolved to an absolute dotted path.

    ``from a.b import c`` gives ``a.b.c``; ``import a.b`` gives ``a.b``; relative imports are
    resolved against the importing module. ``lazy`` is True inside a function body.
    """

    module: str
    target: str
    line: int
    lazy: bool


def within(target: str, prefix: str) -> bool:
    """True when dotted name ``target`` is ``prefix`` or below it."""
    return target == prefix or target.startswith(prefix + ".")


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """Absolute name of ``from <level dots><name> import ...`` inside ``module``."""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    if level - 1 >= len(base):
        return "<above the top package>" + ("." + name if name else "")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_in(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (the text of ``module``), without executing it."""
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = (_resolve(module, is_package, child.level, child.module) if child.level
                        else child.module or "")
                found.extend(Import(module, f"{base}.{a.name}", child.lineno, lazy)
                             for a in child.names)
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def package_modules(folder: Path, package: str) -> Iterator[tuple[Path, str, bool]]:
    """``(file, dotted module name, is_package)`` for every ``.py`` file under ``folder``."""
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("").parts
        is_package = rel[-1] == "__init__"
        parts = rel[:-1] if is_package else rel
        yield path, ".".join((package, *parts)), is_package


Rule = Callable[[Import], "str | None"]


def check_package(folder: Path, package: str, rule: Rule) -> list[str]:
    """Messages ``file:line: ...`` for every import of the package that ``rule`` rejects."""
    problems = []
    for path, module, is_package in package_modules(folder, package):
        for imp in imports_in(path.read_text(encoding="utf-8"), module, is_package):
            message = rule(imp)
            if message:
                problems.append(f"{path.relative_to(ROOT)}:{imp.line}: {message}")
    return problems


def model_package_rule(package: str) -> Rule:
    """Rule (a): a model package imports, of nixdistill, only itself, ``nixdistill.nn``,
    ``nixdistill.errors`` and, inside functions, ``nixdistill.monotonic_align``."""

    def rule(imp: Import) -> str | None:
        t = imp.target
        if not (within(t, "nixdistill") or t.startswith("<above")):
            return None  # torch, numpy, the standard library
        if within(t, package) or any(within(t, p) for p in MODEL_ALLOWED):
            return None
        if any(within(t, p) for p in MODEL_LAZY_ONLY):
            return None if imp.lazy else f"{t} must be imported inside the function that uses it"
        return f"{imp.module} imports {t}; model packages import only {MODEL_ALLOWED}"

    return rule


def students_never_import_teachers(imp: Import) -> str | None:
    """Rule (b)."""
    if within(imp.target, "nixdistill.teachers") or within(imp.target, "teachers"):
        return f"{imp.module} imports {imp.target}: students never import teachers"
    return None


@pytest.mark.parametrize("folder,package", [TEACHERS, STUDENTS], ids=["teachers", "students"])
def test_model_packages_import_only_shared_layers_and_errors(folder, package):
    assert check_package(folder, package, model_package_rule(package)) == []


def test_students_never_import_teachers():
    assert check_package(*STUDENTS, students_never_import_teachers) == []


def test_checker_catches_violations_in_a_synthetic_module():
    source = (
        "import torch\n"
        "from nixdistill.nn import sequence_mask\n"
        "from nixdistill.errors import ConfigError\n"
        "from . import layers\n"
        "from nixdistill.config import from_dict\n"  # 5: application config
        "from ..training import loop\n"  # 6: climbs out of the package
        "from nixdistill import teacher\n"  # 7: names a module through its package
        "from nixdistill.monotonic_align import maximum_path\n"  # 8: not lazy
        "from ..teachers.vits import VITS\n"  # 9: a student importing a teacher
        "from .... import anything\n"  # 10: above the top package
        "def train():\n"
        "    from nixdistill.monotonic_align import maximum_path\n"
        "class Model:\n"
        "    def forward(self):\n"
        "        import nixdistill.distill\n"  # 15: lazy, but still not allowed
    )
    found = imports_in(source, "nixdistill.students.encoder")
    assert [i.target for i in found if i.line in (4, 6, 9)] == [
        "nixdistill.students.layers", "nixdistill.distill.loop", "nixdistill.teachers.vits.VITS"]
    rule = model_package_rule("nixdistill.students")
    bad_lines = [i.line for i in found if rule(i)]
    assert bad_lines == [5, 6, 7, 8, 9, 10, 15]
    assert [i.line for i in found if students_never_import_teachers(i)] == [9]


def test_relative_imports_resolve_from_a_package_init():
    found = imports_in("from .vits import VITS\nfrom .. import config\n",
                       "nixdistill.teachers", is_package=True)
    assert [i.target for i in found] == ["nixdistill.teachers.vits.VITS", "nixdistill.config"]


TRAINING = (ROOT / "nixdistill" / "training", "nixdistill.distill")
#: What the training package never imports: export (and everything above it).
TRAINING_FORBIDDEN = ("nixdistill.deploy.export", "nixdistill.deploy.onnx", "nixdistill.pipeline",
                      "nixdistill.cli", "nixdistill.commands", "nixdistill.benchmark")


def training_never_imports_export(imp: Import) -> str | None:
    """Rule (c): training sits below export; both read run folders through nixdistill.runs."""
    if any(within(imp.target, p) for p in TRAINING_FORBIDDEN):
        return f"{imp.module} imports {imp.target}: training never imports export or above"
    return None


def test_training_never_imports_export():
    assert check_package(*TRAINING, training_never_imports_export) == []


def test_run_folders_import_no_training_or_export():
    """``nixdistill.runs`` (and the teacher loader using it) sit below training and export."""
    problems = []
    for name in ("runs", "teacher"):
        path = ROOT / "nixdistill" / f"{name}.py"
        for imp in imports_in(path.read_text(encoding="utf-8"), f"nixdistill.{name}"):
            if any(within(imp.target, p) for p in ("nixdistill.distill", *TRAINING_FORBIDDEN)):
                problems.append(f"{name}.py:{imp.line}: imports {imp.target}")
    assert problems == []


def test_training_rule_catches_a_lazy_export_import():
    found = imports_in("def f():\n    from ..export import export_student\n",
                       "nixdistill.distill.distil_decoder")
    assert [training_never_imports_export(i) is not None for i in found] == [True]
