"""Imports run one way (ARCHITECTURE.md; issue "One-way architecture").

Every import in the three packages is read from the source, those inside functions
included (they hide cycles from Python, not from this test):

- pysd_runner's modules sit in layers, errors -> files -> model -> engine -> analysis ->
  cli, and import only from their own layer or a lower one;
- no import cycle, between modules or packages;
- no module takes an underscore name from another module;
- calibration and dashboards use pysd_runner's public names only (``from pysd_runner
  import name`` with ``name`` in ``pysd_runner.__all__``), and neither imports the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import pysd_runner

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pysd_runner", "calibration", "dashboards")

#: pysd_runner's layers, lowest first. A new module must be placed here.
LAYERS = {
    "errors": ["pysd_runner.errors"],
    "files": ["pysd_runner.files", "pysd_runner.results"],
    "model": ["pysd_runner.compiler", "pysd_runner.scenarios", "pysd_runner.plausible", "pysd_runner.structure",
              "pysd_runner.vectorise", "pysd_runner.knockouts"],
    "engine": ["pysd_runner.inputs", "pysd_runner._vector_functions", "pysd_runner.kernel_codegen", "pysd_runner.kernel",
               "pysd_runner.stepper", "pysd_runner.stepper_vector", "pysd_runner.javascript", "pysd_runner.runner",
               "pysd_runner.ensemble", "pysd_runner.scenario_runs"],
    "analysis": ["pysd_runner.analysis", "pysd_runner.analysis.sampling", "pysd_runner.analysis.sensitivity",
                 *(f"pysd_runner.analysis.loops{m}" for m in ("", ".common", ".polarity", ".trajectories", ".graph",
                                                               ".named", ".cycles", ".dominance"))],
    "cli": ["pysd_runner.cli_options", "pysd_runner.commands", "pysd_runner.commands_loops", "pysd_runner.cli"],
}
LEVEL = {module: level for level, modules in enumerate(LAYERS.values()) for module in modules}


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _imports(module: str, path: Path):
    """(imported module, imported name or None, line) for every import of the three packages."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    yield submodule, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        graph.add_node(module)
        if path.name == "__init__.py" and module == "pysd_runner":
            continue  # lazy re-exports of the public names (PEP 562), not a dependency
        for target, _, _ in _imports(module, path):
            if target != module and target != "pysd_runner":
                graph.add_edge(module, target)
    return graph


def test_every_pysd_runner_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if m.startswith("pysd_runner.") and m not in LEVEL)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"
    gone = sorted(m for m in LEVEL if m not in MODULES)
    assert not gone, f"LAYERS names modules that no longer exist: {gone}"


def test_pysd_runner_imports_only_its_own_layer_or_lower_ones():
    upward = [
        f"{module} ({list(LAYERS)[LEVEL[module]]}) imports {target} ({list(LAYERS)[LEVEL[target]]}), line {line}"
        for module, path in MODULES.items() if module in LEVEL
        for target, _, line in _imports(module, path)
        if target in LEVEL and LEVEL[target] > LEVEL[module]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_takes_an_underscore_name_from_another():
    taken = [
        f"{module} takes {target}.{name}, line {line}"
        for module, path in MODULES.items()
        for target, name, line in _imports(module, path)
        if name is not None and name.startswith("_") and target != module
    ]
    assert not taken, "\n".join(taken)


@pytest.mark.parametrize("package", ["calibration", "dashboards"])
def test_calibration_and_dashboards_use_public_names_only(package):
    other = {"calibration": "dashboards", "dashboards": "calibration"}[package]
    wrong = []
    for module, path in MODULES.items():
        if module.split(".")[0] != package:
            continue
        for target, name, line in _imports(module, path):
            if target.startswith("pysd_runner") and (target != "pysd_runner" or name not in pysd_runner.__all__):
                wrong.append(f"{module} imports {target}{'.' + name if name else ''}, line {line}")
            if target.split(".")[0] == other:
                wrong.append(f"{module} imports {other} ({target}), line {line}")
    assert not wrong, "\n".join(wrong)


def test_a_public_function_is_not_shadowed_by_a_module_of_its_name():
    # `import pysd_runner.<module>` binds the module as an attribute of the package; a
    # module named like a public function (the old pysd_runner/sensitivity.py) then
    # replaced the function for every later `from pysd_runner import ...`.
    clashes = [name for name in pysd_runner.__all__ if f"pysd_runner.{name}" in MODULES]
    assert not clashes, clashes
    import importlib

    importlib.import_module("pysd_runner.analysis.sensitivity")  # as `crisis sensitivity` does
    from pysd_runner import sensitivity

    assert callable(sensitivity) and sensitivity.__module__ == "pysd_runner.analysis.sensitivity"


def test_the_checker_sees_imports_inside_functions():
    # The old runner -> ensemble -> runner cycle was hidden inside a function; the checker
    # must find such imports, or it would pass on the code it is meant to catch.
    found = {(t, n) for t, n, _ in _imports("pysd_runner.commands", MODULES["pysd_runner.commands"])}
    assert ("pysd_runner.scenario_runs", "run_scenarios") in found  # imported inside run_command
