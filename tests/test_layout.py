"""The project's layout: thin recipe scripts, importable tasks, imports that go one way."""

import ast
import importlib
import re

import pytest

from conftest import ROOT

RECIPES = ROOT / "recipes"
SCRIPTS = sorted(p for p in RECIPES.rglob("*.py"))
LIBRARIES = {"selection", "lobes"}


def imported_modules(path):
    """Top-level names of the modules a Python file imports (absolute imports only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_recipes_hold_no_links_and_no_path_edits():
    assert [p for p in RECIPES.rglob("*") if p.is_symlink()] == []
    assert [p for p in SCRIPTS if "sys.path" in p.read_text()] == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_recipe_script_calls_a_task_main(script):
    """A recipe script is a few lines: ``from <tasks or corpora module> import main`` and a call."""
    modules = imported_modules(script) - {"sys"}
    assert len(modules) == 1, modules
    module_name = modules.pop()
    assert module_name.split(".")[0] in {"tasks", "corpora"}
    assert callable(importlib.import_module(module_name).main)
    assert len(script.read_text().splitlines()) <= 15


def test_every_prepare_function_named_by_an_hparams_file_exists():
    named = set()
    for path in RECIPES.rglob("*.yaml"):
        named.update(re.findall(r"!name:(corpora\.[\w.]+)", path.read_text()))
    assert named, "no hparams file names a corpora function"
    for dotted in named:
        module, function = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function)), dotted


def test_the_libraries_import_neither_tasks_nor_recipes_nor_each_other_backwards():
    """recipes -> tasks -> corpora / selection / lobes; ``lobes`` does not import ``selection``."""
    for package in ("selection", "lobes", "corpora"):
        for path in (ROOT / package).rglob("*.py"):
            top = {name.split(".")[0] for name in imported_modules(path)}
            assert not top & {"tasks", "recipes"}, path
            if package == "lobes":
                assert "selection" not in top, path
