"""The dependency direction the README's layout table states, checked on every import statement
(module level and inside functions alike): an app never imports a higher one, `training/` never
imports Django or the project, and the TorchServe handlers never import the project."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "catalog", "events", "rules", "modelops", "experiments", "serving", "metrics")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_layers_name_every_app() -> None:
    apps = {p.parent.name for p in (ROOT / "recadmin").glob("*/apps.py")}
    assert apps == set(LAYERS)


@pytest.mark.parametrize("app", LAYERS)
def test_an_app_never_imports_a_higher_one(app: str) -> None:
    higher = {f"recadmin.{name}" for name in LAYERS[LAYERS.index(app) + 1 :]}
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files(f"recadmin/{app}")
        for line, module in _imports(path)
        if ".".join(module.split(".")[:2]) in higher
    ]
    assert not found, found


@pytest.mark.parametrize(("folder", "forbidden"), [("training", {"django", "recadmin"}), ("handlers", {"recadmin"})])
def test_training_and_the_handlers_stay_free_of_the_project(folder: str, forbidden: set[str]) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files(folder)
        for line, module in _imports(path)
        if module.split(".")[0] in forbidden
    ]
    assert not found, found
