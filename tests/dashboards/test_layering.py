"""dashboards consumes Datasets and files: it imports neither PySD nor scipy.optimize."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dashboards

FORBIDDEN = ("pysd", "scipy.optimize")
PACKAGE = Path(dashboards.__file__).parent


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_module_of_dashboards_imports_pysd_or_scipy_optimize():
    offending = [
        f"{path.name}: {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert not offending, offending
    assert not any("importlib" in name for path in PACKAGE.glob("*.py") for name in _imports(path)
                   if path.name != "__init__.py"), "no dynamic imports that could hide one"


def test_importing_dashboards_loads_neither():
    code = (
        "import sys\n"
        "import dashboards.figures, dashboards.report, dashboards.grid, dashboards.app, dashboards.commands\n"
        "bad = [m for m in sys.modules if m == 'pysd' or m.startswith('pysd.') or m.startswith('scipy.optimize')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
