"""The shape of src/cocoseg: packages import only the core and the packages below them; short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "src" / "cocoseg"
# What each package may import besides itself: the pipeline's layers, bottom to top.
ALLOWED = {
    "core": set(),
    "acquire": {"core"},
    "masks": {"core"},
    "models": {"core"},
    "training": {"core", "models"},
    "evaluation": {"core", "models"},
}


def cocoseg_imports(path: Path) -> set[str]:
    """The top-level cocoseg packages a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n.split(".")[1] for n in names if n.startswith("cocoseg.")}


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_layers_below(package: str) -> None:
    for path in sorted((PACKAGE / package).rglob("*.py")):
        outside = cocoseg_imports(path) - {package} - ALLOWED[package]
        assert not outside, f"{path.relative_to(REPO)} imports {sorted(outside)}"


def test_functions_are_at_most_50_lines() -> None:
    long = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(REPO / "stages").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 50:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
