"""The model's structure read from PySD's generated module: equations, stateful objects,
lookup tables, and which elements each element reads during the run.

Shared by the loop analysis (graph, polarity, link scores) and the knock-out rewrite.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from .compiler import CONTROL_NAMES, CompiledModel, component_functions

__all__ = ["STATEFUL_INITIAL_ARGS", "FOLLOWERS", "Structure", "element_inputs", "objects_of", "sketch_views"]

#: PySD stateful classes and the positions of their initial-value arguments (not dynamic links).
STATEFUL_INITIAL_ARGS = {
    "Integ": {1}, "NonNegativeInteg": {1}, "Smooth": {2, 3}, "Delay": {2, 3}, "DelayN": {2, 3},
    "DelayFixed": {2}, "Trend": {2}, "Forecast": {3}, "SampleIfTrue": {2}, "Initial": {0},
}
#: Stateful classes whose output moves in the direction of their first argument (the input).
FOLLOWERS = {"Smooth", "Delay", "DelayN", "DelayFixed"}


class Structure:
    """The generated module as syntax: equations, stateful objects and lookup tables."""

    def __init__(self, model: CompiledModel):
        self.model = model
        source = model.py_file.read_text()
        self.tree = ast.parse(source)
        functions = component_functions(self.tree)
        self.functions = {py_name: node for py_name, (_, node) in functions.items()}
        self.expressions: dict[str, ast.expr | None] = {}
        for py_name, node in self.functions.items():
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            single = len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None
            self.expressions[py_name] = body[0].value if single else None
        self.objects: dict[str, tuple[str, ast.Call]] = {}
        self.tables: dict[str, tuple[list[float], list[float]]] = {}
        for node in self.tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                continue
            call = node.value
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                continue
            name, cls = node.targets[0].id, call.func.id
            if cls in STATEFUL_INITIAL_ARGS:
                self.objects[name] = (cls, call)
            elif cls == "HardcodedLookups" and len(call.args) >= 2:
                try:
                    xs, ys = ast.literal_eval(call.args[0]), ast.literal_eval(call.args[1])
                except ValueError:
                    continue
                if isinstance(xs, list) and isinstance(ys, list) and all(isinstance(v, (int, float)) for v in ys):
                    self.tables[name] = (list(xs), list(ys))
        self.uses_random = {
            py_name for py_name, node in self.functions.items()
            if any(isinstance(n, ast.Attribute) and getattr(n.value, "attr", "") == "random" for n in ast.walk(node))
        }

    def dynamic_args(self, obj: str) -> list[ast.expr]:
        """The arguments of a stateful object that act during the run (not its initial value)."""
        cls, call = self.objects[obj]
        skip = STATEFUL_INITIAL_ARGS[cls]
        return [
            a.body if isinstance(a, ast.Lambda) else a
            for i, a in enumerate(call.args)
            if i not in skip and not isinstance(a, ast.Constant)
        ]

    def lookup_table(self, py_name: str) -> tuple[list[float], list[float]] | None:
        deps = self.model.dependencies.get(py_name) or {}
        obj = deps.get("__lookup__") if isinstance(deps, dict) else None
        return self.tables.get(obj) if isinstance(obj, str) else None


def element_inputs(model: CompiledModel, py_name: str) -> dict[str, int]:
    """Elements whose values the element reads during the run (initial values excluded)."""
    found: dict[str, int] = {}

    def walk(deps: Mapping[str, Any], seen: set[str]) -> None:
        for key, count in deps.items():
            if key == "time" or key.startswith("__") or key in CONTROL_NAMES:
                continue
            if key.startswith("_"):
                if key in seen:
                    continue
                inner = model.dependencies.get(key)
                if isinstance(inner, dict):
                    walk(inner.get("step") or {}, seen | {key})
                continue
            element = model.elements.get(key)
            if element is None or element.kind == "lookup":
                continue
            found[key] = found.get(key, 0) + (count if isinstance(count, int) else 1)

    deps = model.dependencies.get(py_name)
    if isinstance(deps, dict):
        walk(deps, set())
    return found


def objects_of(model: CompiledModel, py_name: str) -> list[str]:
    """The stateful objects (``_integ_x``, ``_smooth_x``) an element reads, recursively."""
    out: list[str] = []

    def walk(deps: Mapping[str, Any]) -> None:
        for key in deps:
            if key.startswith("_") and not key.startswith("__") and key not in out:
                out.append(key)
                inner = model.dependencies.get(key)
                if isinstance(inner, dict):
                    walk(inner.get("step") or {})

    deps = model.dependencies.get(py_name)
    if isinstance(deps, dict):
        walk(deps)
    return out


def _sketch_key(name: str) -> str:
    return " ".join(name.strip().strip('"').replace("_", " ").lower().split())


def sketch_views(model: CompiledModel) -> dict[str, str]:
    """Python name -> the title of the first sketch view that shows the element.

    A Vensim model's views are usually its sectors ("*View 1 Profitability" gives
    "Profitability"). Read from the sketch section of a .mdl file; a model without one
    (an XMILE file, a model with no sketch) gives ``{}``.

    >>> views = sketch_views(__import__("pysd_runner").compile_model("models/goodwin/goodwin.mdl"))
    >>> views["phillips_slope"]
    'Goodwin growth cycle'
    """
    import csv
    import re

    if model.source.suffix.lower() != ".mdl":
        return {}
    text = model.source.read_text(encoding="utf-8", errors="replace")
    start = text.find("\\\\\\---///")
    if start < 0:
        return {}
    by_key = {_sketch_key(e.name): e.py_name for e in model.elements.values()}
    views: dict[str, str] = {}
    view = None
    for line in text[start:].splitlines():
        if line.startswith("*"):
            view = re.sub(r"^View\s*\d+\s*", "", line[1:].strip()) or line[1:].strip()
        elif line.startswith("10,") and view:
            fields = next(csv.reader([line]))
            py_name = by_key.get(_sketch_key(fields[2])) if len(fields) > 2 else None
            if py_name is not None:
                views.setdefault(py_name, view)
    return views
