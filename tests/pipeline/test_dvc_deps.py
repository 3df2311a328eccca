"""dvc.yaml's deps cover every project module each stage runs, or DVC would serve stale results.

For every stage (``foreach`` expanded over params.yaml), the script its ``cmd`` runs is followed
through every ``cocoseg`` import, at module level or inside a function, and each project file reached
must lie under one of the stage's deps.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import REPO


def module_file(src: Path, module: str) -> Path | None:
    """``cocoseg.a.b`` -> src/cocoseg/a/b.py or src/cocoseg/a/b/__init__.py (None if neither exists)."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every ``cocoseg`` module a file imports, the packages above each, and ``from x import submodule``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    project = {name for name in found if name == "cocoseg" or name.startswith("cocoseg.")}
    parents = {".".join(name.split(".")[:i]) for name in project for i in range(1, name.count(".") + 1)}
    return project | parents  # importing a.b.c runs a/__init__.py and a/b/__init__.py first


def project_closure(script: Path, src: Path) -> set[Path]:
    """The project files ``script`` runs, directly or through other project modules."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [f for f in (module_file(src, m) for m in imported_modules(path)) if f is not None]
    return seen


def foreach_items(params: dict, foreach: str) -> dict[str, dict]:
    """What a stage's ``foreach`` iterates: the models, or the local splits (a made-up one while there are
    none, so that the import stage's code deps are checked too)."""
    if foreach == "${models}":
        return {key: {} for key in params["models"]}
    assert foreach == "${data.local.splits}", f"foreach over {foreach} is not handled here"
    return params["data"]["local"]["splits"] or {"example": {"annotations": "a.json", "images": "images"}}


def expanded_stages(repo: Path) -> dict[str, dict]:
    """dvc.yaml's stages with ``foreach`` expanded over params.yaml's models or local splits."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    out = {}
    for name, stage in stages.items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        for key, item in foreach_items(params, stage["foreach"]).items():
            text = yaml.safe_dump(stage["do"]).replace("${key}", key)
            for field, value in item.items():
                text = text.replace(f"${{item.{field}}}", value)
            out[f"{name}@{key}"] = yaml.safe_load(text)
    return out


def uncovered(repo: Path) -> dict[str, list[str]]:
    """{stage: project files its script runs that no dep covers} for every stage with a gap."""
    gaps = {}
    for name, stage in expanded_stages(repo).items():
        script = repo / stage["cmd"].split()[1]  # "python stages/<x>.py ..."
        deps = [repo / str(d) for d in stage.get("deps", [])]
        files = project_closure(script, repo / "src")
        missing = sorted(
            str(f.relative_to(repo)) for f in files if not any(f == d or f.is_relative_to(d) for d in deps)
        )
        if missing:
            gaps[name] = missing
    return gaps


def test_every_stage_depends_on_the_code_it_runs() -> None:
    assert uncovered(REPO) == {}


def test_stage_closures_hold_their_packages() -> None:
    """The closure follows imports for real: train reaches the registry and the core through train.py."""
    stages = expanded_stages(REPO)
    train = project_closure(REPO / stages["train@unet"]["cmd"].split()[1], REPO / "src")
    names = {str(f.relative_to(REPO / "src" / "cocoseg")) for f in train if f.is_relative_to(REPO / "src")}
    assert {
        "training/train.py",
        "models/__init__.py",
        "models/inference.py",
        "core/layout.py",
        "core/images.py",
    } <= names
    assert not any(n.startswith(("acquire/", "evaluation/")) for n in names)  # the layering holds


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "stages", tmp_path / "stages", ignore=ignore)
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=ignore)
    return tmp_path


def test_an_import_without_its_dep_is_caught(project_copy: Path) -> None:
    """compare gains a lazy import of the training package, which its deps do not list: reported."""
    script = project_copy / "stages" / "compare.py"
    script.write_text(
        script.read_text().replace(
            "def main() -> None:\n",
            "def main() -> None:\n    from cocoseg.training import losses  # noqa: F401\n",
            1,
        )
    )
    gaps = uncovered(project_copy)
    assert gaps == {"compare": ["src/cocoseg/training/__init__.py", "src/cocoseg/training/losses.py"]}


def test_a_dropped_dep_is_caught(project_copy: Path) -> None:
    dvc_yaml = project_copy / "dvc.yaml"
    masks_dep = "      - src/cocoseg/masks\n      # data/coco through"  # the masks stage's, not check's
    dvc_yaml.write_text(dvc_yaml.read_text().replace(masks_dep, "      # data/coco through", 1))
    gaps = uncovered(project_copy)
    assert list(gaps) == ["masks"] and "src/cocoseg/masks/build.py" in gaps["masks"]
