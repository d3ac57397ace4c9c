"""The package's shape, enforced: import-linter's layer contracts (pyproject.toml), and one place for each fact."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

from helm_dspy.core.methods import METHODS

PACKAGE = REPO_ROOT / "helm_dspy"
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_hold():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_a_planted_wrong_import_breaks_the_contract(tmp_path):
    """Optimizing importing evaluating (the old circle): import-linter must refuse it."""
    shutil.copytree(PACKAGE, tmp_path / "helm_dspy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "helm_dspy" / "optimize" / "run.py"
    planted.write_text(planted.read_text() + "\nfrom helm_dspy.evaluate import agent_client  # planted\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "helm_dspy.optimize is not allowed to import helm_dspy.evaluate" in result.stdout
    assert "helm_dspy.optimize.run -> helm_dspy.evaluate.agent_client" in result.stdout


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """String literals of a module, docstrings left out (prose may name a method)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(node, clean=False) is not None
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_methods_are_named_only_in_the_registry():
    names = set(METHODS) | {method.slug for method in METHODS.values()}
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line} {value!r}"
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "core" / "methods.py"
        for line, value in _string_constants(path)
        if value in names
    ]
    assert found == []


def test_agent_paths_are_spelled_only_in_the_agent_store():
    shapes = (".manifest.json", '"agents"', "{method}.json", "{optimizer}.json")
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "core" / "agents.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(shape in line for shape in shapes) and not line.strip().startswith(("#", '"', 'f"'))
    ]
    assert found == []
    assert sum('"prod_env"' in path.read_text() for path in PACKAGE.rglob("*.py")) == 1  # helm_run_args only
