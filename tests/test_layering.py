"""Imports flow one way (docs/ARCHITECTURE.md): from the CLI down to the models.

The checker reads the source with ``ast`` and executes nothing. Each folder has a rule
(``FOLDER_RULES``): the names it must never import. On top of that, the import graph of the
installed package has no cycle, counting every import: at module level, inside functions and
under ``TYPE_CHECKING``.

Layers, top to bottom::

    cli, commands/                       the CLI
    pipeline, presets                    the whole job
    benchmark/                           student against teacher
    distill/                             training (may build students through deploy/build)
    deploy/                              the exported student, its runtimes and exports
    teacher/                             the teacher loader and the Piper ONNX rebuild
    config, errors, audio, runs, text/, data/, resources/, nn/     the shared core
    teachers/, students/, monotonic_align/                           the models
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folders of the installed packages (pyproject ``package-dir``).
PACKAGE_DIRS = {
    "nixdistill": ROOT / "nixdistill",
    "nixdistill.teachers": ROOT / "teachers",
    "nixdistill.students": ROOT / "students",
    "nixdistill.monotonic_align": ROOT / "monotonic_align",
}

APP = ("nixdistill.cli", "nixdistill.commands", "nixdistill.pipeline", "nixdistill.presets")
CORE = ("nixdistill.config", "nixdistill.errors", "nixdistill.audio", "nixdistill.runs",
        "nixdistill.text", "nixdistill.data", "nixdistill.resources", "nixdistill.nn")
BENCHMARK, DISTILL, DEPLOY, TEACHER = ("nixdistill.benchmark", "nixdistill.distill",
                                       "nixdistill.deploy", "nixdistill.teacher")

#: folder (dotted prefix) -> prefixes its modules never import.
FOLDER_RULES: dict[str, tuple[str, ...]] = {
    BENCHMARK: (*APP, DISTILL),
    DISTILL: (*APP, BENCHMARK),
    DEPLOY: (*APP, BENCHMARK, DISTILL, TEACHER, "nixdistill.teachers"),
    TEACHER: (*APP, BENCHMARK, DISTILL, DEPLOY, "nixdistill.students"),
    **{c: (*APP, BENCHMARK, DISTILL, DEPLOY, TEACHER) for c in CORE},
}
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


def package_modules() -> Iterator[tuple[Path, str, bool]]:
    """``(file, dotted module name, is_package)`` for every ``.py`` file of the package."""
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            is_package = rel[-1] == "__init__"
            parts = rel[:-1] if is_package else rel
            yield path, ".".join((package, *parts)), is_package


def all_imports() -> list[Import]:
    return [imp for path, module, is_package in package_modules()
            for imp in imports_in(path.read_text(encoding="utf-8"), module, is_package)]


def folder_rule_violations(imports: list[Import]) -> list[str]:
    """``module:line: imports target`` for every import a folder rule forbids."""
    problems = []
    for imp in imports:
        for folder, forbidden in FOLDER_RULES.items():
            if within(imp.module, folder) and any(within(imp.target, f) for f in forbidden):
                problems.append(f"{imp.module}:{imp.line}: imports {imp.target} "
                                f"({folder} never imports {', '.join(forbidden)})")
    return problems


def model_violations(imports: list[Import]) -> list[str]:
    """The model packages import, of nixdistill, only themselves, ``nixdistill.nn``,
    ``nixdistill.errors`` and, inside functions, ``nixdistill.monotonic_align``; students never
    import teachers."""
    problems = []
    for imp in imports:
        package = next((p for p in ("nixdistill.teachers", "nixdistill.students")
                        if within(imp.module, p)), None)
        t = imp.target
        if package is None or not (within(t, "nixdistill") or t.startswith("<above")):
            continue
        if within(t, package) or any(within(t, p) for p in MODEL_ALLOWED):
            continue
        if any(within(t, p) for p in MODEL_LAZY_ONLY):
            if not imp.lazy:
                problems.append(f"{imp.module}:{imp.line}: {t} must be imported inside the "
                                "function that uses it")
            continue
        problems.append(f"{imp.module}:{imp.line}: imports {t}; model packages import only "
                        f"{MODEL_ALLOWED}")
    return problems


def module_graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """module -> the modules of ``modules`` it imports (``from a import b`` names module
    ``a.b`` when that is a module, else ``a``)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        target = imp.target
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != imp.module:
            graph[imp.module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_each_folder_imports_only_the_layers_below_it():
    assert folder_rule_violations(all_imports()) == []


def test_model_packages_import_only_shared_layers_and_errors():
    assert model_violations(all_imports()) == []


def test_the_import_graph_has_no_cycle():
    modules = {m for _, m, _ in package_modules()}
    assert find_cycle(module_graph(all_imports(), modules)) is None


def test_every_source_module_falls_under_a_rule():
    """A new top-level module or folder must be placed in a layer."""
    ruled = (*FOLDER_RULES, *APP, "nixdistill.teachers", "nixdistill.students",
             "nixdistill.monotonic_align")
    unruled = [m for _, m, _ in package_modules()
               if m not in ("nixdistill", "nixdistill.__main__")
               and not any(within(m, r) for r in ruled)]
    assert unruled == []


def test_checker_catches_violations_in_synthetic_modules():
    source = (
        "import torch\n"
        "from nixdistill.nn import sequence_mask\n"
        "from nixdistill.errors import ConfigError\n"
        "from . import layers\n"
        "from nixdistill.config import from_dict\n"  # 5: application config
        "from ..distill import loop\n"  # 6: climbs out of the package
        "from nixdistill.monotonic_align import maximum_path\n"  # 7: not lazy
        "from ..teachers.vits import VITS\n"  # 8: a student importing a teacher
        "from .... import anything\n"  # 9: above the top package
        "def train():\n"
        "    from nixdistill.monotonic_align import maximum_path\n"
        "class Model:\n"
        "    def forward(self):\n"
        "        import nixdistill.distill\n"  # 14: lazy, but still not allowed
    )
    found = imports_in(source, "nixdistill.students.encoder")
    assert [i.target for i in found if i.line in (4, 6, 8)] == [
        "nixdistill.students.layers", "nixdistill.distill.loop", "nixdistill.teachers.vits.VITS"]
    bad = model_violations(found)
    assert [int(p.split(":")[1]) for p in bad] == [5, 6, 7, 8, 9, 14]
    deploy = imports_in("def f():\n    from ..distill.loop import Trainer\n",
                        "nixdistill.deploy.student")
    assert len(folder_rule_violations(deploy)) == 1  # lazy imports count too
    core = imports_in("from nixdistill.deploy import student\n", "nixdistill.runs")
    assert len(folder_rule_violations(core)) == 1


def test_relative_imports_resolve_from_a_package_init():
    found = imports_in("from .vits import VITS\nfrom .. import config\n",
                       "nixdistill.teachers", is_package=True)
    assert [i.target for i in found] == ["nixdistill.teachers.vits.VITS", "nixdistill.config"]


@pytest.mark.parametrize("graph,cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b", "c"}, "b": set(), "c": {"c2"}, "c2": {"c"}}, ["c", "c2", "c"]),
])
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_module_graph_names_submodules_and_packages():
    imports = [Import("p.a", "p.b.f", 1, False), Import("p.a", "p.c", 2, True),
               Import("p.c", "torch.nn", 3, False)]
    assert module_graph(imports, {"p.a", "p.b", "p.c"}) == {"p.a": {"p.b", "p.c"},
                                                            "p.b": set(), "p.c": set()}
