"""The layering of docs/ARCHITECTURE.md, checked on the source: every import of every
module (top-level or inside a function, plus module paths named in strings for lazy
loading) may only point to its own package or a layer below it."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "edgecore": set(),
    "gprune": {"edgecore"},
    "recovery": {"edgecore"},
    "exporters": {"edgecore"},
    "runtime_checks": {"edgecore"},
    "gprune_edge": {"edgecore", "gprune", "recovery", "exporters", "runtime_checks"},
}
MODULE_STRING = re.compile(r"^(%s)(\.\w+)+$" % "|".join(ALLOWED))


def project_imports(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of everything `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports stay inside their package
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            names = [node.value]
        found |= {(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in ALLOWED}
    return found


def sources():
    return [p for package in ALLOWED for p in sorted((ROOT / package).rglob("*.py"))]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layering(path):
    package = path.relative_to(ROOT).parts[0]
    wrong = sorted((line, target) for target, line in project_imports(path)
                   if target != package and target not in ALLOWED[package])
    assert not wrong, f"{path.relative_to(ROOT)} imports against the layering: " + ", ".join(
        f"line {line}: {package} -> {target}" for line, target in wrong)


def test_the_checker_sees_function_level_and_string_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from gprune_edge.build import build\n\nPLANNERS = {'x': 'gprune.methods.flap'}\n")
    assert project_imports(bad) == {("gprune_edge", 2), ("gprune", 4)}


def test_every_package_is_covered():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(ALLOWED), "a new top-level package needs its place in ALLOWED and ARCHITECTURE.md"
