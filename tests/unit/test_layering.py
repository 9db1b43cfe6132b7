"""The dependency rules of docs/architecture.md are checked by import-linter, and a rule
that is broken fails the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "controller",
    "node_agent",
    "attestation",
    "protocol",
    "outpost_cli",
    "lab",
    "images",
    "inference_vm",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's packages and its pyproject, copied where a test may break them."""
    root = tmp_path_factory.mktemp("tree")
    for name in PACKAGES:
        shutil.copytree(
            REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_every_contract() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_domain_importing_flask_breaks_the_check(tree_copy: Path) -> None:
    bad = tree_copy / "controller" / "domain" / "wrong.py"
    bad.write_text("import flask  # the web stack below the HTTP layers\n")
    try:
        result = _lint_imports(tree_copy)
    finally:
        bad.unlink()
    assert result.returncode != 0
    assert "below the HTTP layers nothing touches the web stack BROKEN" in result.stdout


def test_the_store_importing_the_domain_breaks_the_layers(tree_copy: Path) -> None:
    bad = tree_copy / "controller" / "store" / "wrong.py"
    bad.write_text("from controller.domain import nodes  # upwards\n")
    try:
        result = _lint_imports(tree_copy)
    finally:
        bad.unlink()
    assert result.returncode != 0
    assert "controller layers point one way" in result.stdout
    assert "BROKEN" in result.stdout
