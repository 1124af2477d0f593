"""calibration uses pysd_runner's public API only and never imports pysd (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pysd_runner

PACKAGE = Path(__file__).resolve().parents[2] / "calibration"


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module or "", [a.name for a in node.names]


def test_no_pysd_and_only_public_pysd_runner():
    files = sorted(PACKAGE.glob("*.py"))
    assert files
    for path in files:
        for module, names in _imports(path):
            assert module.split(".")[0] != "pysd", f"{path.name} imports {module}"
            assert not module.startswith("dashboards"), f"{path.name} imports upward: {module}"
            if module.startswith("pysd_runner"):
                assert module == "pysd_runner", f"{path.name} imports the private module {module}"
                for name in names:
                    assert name in pysd_runner.__all__, f"{path.name} imports private pysd_runner.{name}"
