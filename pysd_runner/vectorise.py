"""The vectorising pass: a copy of PySD's generated module that runs arrays of members.

PySD's generated code works on numpy arrays of ensemble members as it is, except in three
places measured on these machines: it wraps scalar MIN/MAX results in ``float(...)``, its
runtime ``if_then_else``, ``xidz``, ``zidz`` and ``pulse`` branch with a Python ``if``, and
its 1-D lookups test ``x in ...`` on a scalar. This pass rewrites a copy of the generated
module (never PySD itself): it strips the ``float`` casts and points those imports at
:mod:`pysd_runner._vector_functions`. Models it cannot vectorise exactly are named by
:func:`vectorisation_blockers`, and the engine runs them member by member instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .files import atomic_write
from .compiler import CompiledModel, component_functions

__all__ = ["vector_module", "vectorisation_blockers"]

#: Runtime names whose behaviour on member arrays is either exact or an exception
#: (never a silently wrong number). Anything else imported from PySD blocks the pass.
VECTOR_SAFE = {
    "pysd.py_backend.functions": {
        "if_then_else", "xidz", "zidz", "pulse", "step", "ramp", "active_initial",
        "integer", "quantum", "modulo", "not_implemented_function",
    },
    "pysd.py_backend.statefuls": {
        "Integ", "NonNegativeInteg", "Smooth", "Delay", "DelayN", "DelayFixed", "Initial",
        "Trend", "Forecast", "SampleIfTrue",
    },
    "pysd.py_backend.lookups": {"HardcodedLookups"},
}

#: Names re-pointed to array-aware versions.
REPLACED = {
    "pysd.py_backend.functions": {"if_then_else", "xidz", "zidz", "pulse"},
    "pysd.py_backend.lookups": {"HardcodedLookups"},
}

VECTOR_MODULE = "pysd_runner._vector_functions"
VECTOR_FILE = "model_vector.py"


class _StripFloat(ast.NodeTransformer):
    """``float(x)`` -> ``x``: PySD casts scalar MIN/MAX results, which breaks member arrays."""

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "float" and len(node.args) == 1 and not node.keywords:
            return node.args[0]
        return node


def rewrite(source: str) -> str:
    tree = _StripFloat().visit(ast.parse(source))
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module in REPLACED:
            moved = [a for a in node.names if a.name in REPLACED[node.module]]
            kept = [a for a in node.names if a.name not in REPLACED[node.module]]
            if kept:
                body.append(ast.ImportFrom(module=node.module, names=kept, level=0))
            if moved:
                body.append(ast.ImportFrom(module=VECTOR_MODULE, names=moved, level=0))
            continue
        body.append(node)
    tree.body = body
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def vector_module(model: CompiledModel) -> Path:
    """Path of the vectorised copy of the model's generated module (built once, cached)."""
    target = model.py_file.with_name(VECTOR_FILE)
    if target.is_file():
        return target
    text = rewrite(model.py_file.read_text())
    return atomic_write(target, text, what="vectorised model cache")


_BLOCKERS: dict[tuple[str, str], dict[str, str]] = {}


def vectorisation_blockers(model: CompiledModel) -> dict[str, str]:
    """Elements that cannot run as member arrays, each with the reason (cached per model).

    Subscripted elements (PySD's xarray broadcasting would align member arrays with
    subscript dims), random functions (members need draws of their own) and PySD runtime
    functions outside :data:`VECTOR_SAFE` block vectorisation.
    """
    key = (str(model.py_file), model.sha256)
    if key not in _BLOCKERS:
        _BLOCKERS[key] = _find_blockers(model)
    return dict(_BLOCKERS[key])


def _find_blockers(model: CompiledModel) -> dict[str, str]:
    blockers: dict[str, str] = {}
    for element in model.elements.values():
        if element.subscripts:
            blockers[element.name] = f"subscripted over {', '.join(element.subscripts)}"
    tree = ast.parse(model.py_file.read_text())
    imported: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pysd."):
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
    unsafe = {
        name for name, module in imported.items()
        if name not in VECTOR_SAFE.get(module, set()) and name != "Component"
    }
    for vensim_name, function in component_functions(tree).values():
        for sub in ast.walk(function):
            if isinstance(sub, ast.Name) and sub.id in unsafe:
                blockers.setdefault(vensim_name, f"uses {sub.id}, which does not work on member arrays")
            if isinstance(sub, ast.Attribute) and getattr(sub.value, "attr", "") == "random":
                blockers.setdefault(vensim_name, "uses random numbers (each member needs draws of its own)")
    # Module-level stateful objects are attributed to the components that read them.
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            bad = names & unsafe
            randomised = any(
                isinstance(n, ast.Attribute) and getattr(n.value, "attr", "") == "random" for n in ast.walk(node)
            )
            if bad or randomised:
                reason = "uses random numbers" if randomised else f"uses {sorted(bad)[0]}"
                blockers.setdefault(node.targets[0].id, reason)
    return blockers
