"""Knock-outs: links whose source is held fixed as their target sees it.

A knock-out rewrites PySD's generated module so that the target reads a held value
instead of calling its source; the rewritten module is cached beside the model. Used by
run (``knockout=``), the ensemble engines and the loop analysis.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from .compiler import CompiledModel, component_functions
from .errors import ParameterError
from .files import atomic_write
from .structure import STATEFUL_INITIAL_ARGS, element_inputs, objects_of

__all__ = ["Link", "Knockouts", "knockout_key", "normalise_knockouts", "no_link_message"]


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    value: float | None


def no_link_message(model: CompiledModel, source: str, target: str) -> str:
    inputs = sorted(model.elements[k].name for k in element_inputs(model, target))
    return (
        f"'{model.elements[target].name}' does not read '{model.elements[source].name}' in model "
        f"'{model.source.name}'; its inputs are: {', '.join(inputs) or 'none'}"
    )


class Knockouts:
    """Links whose source is held fixed as their target sees it."""

    def __init__(self, model: CompiledModel, links: list[Link]):
        self.model = model
        self.links = links

    @property
    def key(self) -> str:
        text = json.dumps(sorted((k.source, k.target) for k in self.links))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def spec(self) -> list[dict]:
        return [{"source": k.source, "target": k.target, "value": k.value} for k in self.links]

    def module(self, *, vector: bool = False) -> Path:
        """The patched module (or its array-aware copy), built once and cached beside the model."""
        target = self.model.py_file.with_name(f"model_knockout_{self.key}{'_vector' if vector else ''}.py")
        if target.is_file():
            return target
        text = _patch_module(self.model, self.links)
        if vector:
            from .vectorise import rewrite  # numpy-aware rewrite only when vectorising

            text = rewrite(text)
        return atomic_write(target, text, what="knock-out model cache")

    def load(self):
        return self.model.load(self.module())

    def fix(self, pysd_model) -> dict[str, float]:
        """Fill in the held values (each source's value now, at the initial time, by default)."""
        components = pysd_model.components
        values = components._KNOCKOUT_VALUES
        values.clear()
        fixed: dict[str, float] = {}
        for link in self.links:
            value = link.value
            if value is None:
                value = getattr(components, link.source)()
                if np.ndim(value) != 0:
                    raise ParameterError(
                        f"knock-out of '{self.model.elements[link.source].name}': subscripted sources are not supported"
                    )
                value = float(value)
            fixed[knockout_key(link.source, link.target)] = value
        values.update(fixed)
        pysd_model.clean_caches()
        self.values = fixed
        return fixed

    def describe(self, attrs: Mapping[str, Any] | None = None) -> list[dict]:
        values = getattr(self, "values", {})
        if attrs is not None and not values and attrs.get("knockout"):
            return json.loads(attrs["knockout"])
        out = []
        for link in self.links:
            key = knockout_key(link.source, link.target)
            out.append({
                "source": link.source, "target": link.target,
                "source_name": self.model.elements[link.source].name,
                "target_name": self.model.elements[link.target].name,
                "value": values.get(key, link.value),
                "held_at": "given value" if link.value is not None else "initial value",
            })
        return out

    def fixed_values(self, attrs: Mapping[str, Any]) -> dict[str, float]:
        """The values a run held (from its ``knockout`` attr)."""
        recorded = json.loads(attrs.get("knockout", "[]"))
        return {knockout_key(k["source"], k["target"]): float(k["value"]) for k in recorded}


def knockout_key(source: str, target: str) -> str:
    return f"{source}->{target}"


class _Redirect(ast.NodeTransformer):
    """``source()`` -> ``_crisis_knockout("source->target", source)``."""

    def __init__(self, source: str, key: str):
        self.source, self.key, self.count = source, key, 0

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == self.source and not node.args and not node.keywords:
            self.count += 1
            return ast.Call(func=ast.Name(id="_crisis_knockout", ctx=ast.Load()),
                            args=[ast.Constant(self.key), ast.Name(id=self.source, ctx=ast.Load())], keywords=[])
        return node


_KNOCKOUT_HELPERS = '''

_KNOCKOUT_VALUES = {}


def _crisis_knockout(key, source):
    """A knocked-out link: the value its target sees, held fixed (crisis-dynamics)."""
    try:
        return _KNOCKOUT_VALUES[key]
    except KeyError:  # during initialisation, before the held values are known
        return source()
'''


def _patch_module(model: CompiledModel, links: list[Link]) -> str:
    tree = ast.parse(model.py_file.read_text())
    functions = {name: node for name, (_, node) in component_functions(tree).items()}
    objects = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id in STATEFUL_INITIAL_ARGS):
            objects[node.targets[0].id] = node.value
    for link in links:
        redirect = _Redirect(link.source, knockout_key(link.source, link.target))
        function = functions.get(link.target)
        if function is not None:
            function.body = [redirect.visit(statement) for statement in function.body]
        for obj in objects_of(model, link.target):
            call = objects.get(obj)
            if call is None:
                continue
            skip = STATEFUL_INITIAL_ARGS[call.func.id]
            call.args = [a if i in skip else redirect.visit(a) for i, a in enumerate(call.args)]
        if redirect.count == 0:
            raise ParameterError(
                f"the link '{model.elements[link.source].name}' -> '{model.elements[link.target].name}' cannot be "
                "knocked out: the target's equation does not call the source directly"
            )
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n" + _KNOCKOUT_HELPERS


def normalise_knockouts(model: CompiledModel, knockout: Any) -> Knockouts | None:
    """Normalise ``knockout=`` into links: ``[("source", "target"), ("source", "target", value),
    "source", "source->target", {"source": ..., "target": ..., "value": ...}]``."""
    if knockout is None:
        return None
    if isinstance(knockout, Knockouts):
        return knockout
    if isinstance(knockout, (str, Mapping)):
        knockout = [knockout]
    if not isinstance(knockout, Sequence):
        raise ParameterError(
            "knockout must be a list of links: ('source', 'target'), ('source', 'target', value), 'source' "
            f"or 'source->target'; got {type(knockout).__name__}"
        )
    links: dict[tuple[str, str], Link] = {}
    for item in knockout:
        value = None
        if isinstance(item, str):
            source, _, target = item.partition("->")
            source, target = source.strip(), target.strip() or None
        elif isinstance(item, Mapping):
            unknown = set(item) - {"source", "target", "value"}
            if unknown or "source" not in item:
                raise ParameterError(
                    f"a knock-out given as a mapping needs 'source' and may have 'target' and 'value'; got {dict(item)!r}"
                )
            source, target, value = item["source"], item.get("target"), item.get("value")
        elif isinstance(item, Sequence) and 1 <= len(item) <= 3:
            source, target, value = (list(item) + [None, None])[:3]
        else:
            raise ParameterError(
                f"each knock-out must be 'source', 'source->target', (source, target) or (source, target, value); "
                f"got {item!r}"
            )
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (Real, np.number)) or not math.isfinite(float(value)):
                raise ParameterError(f"a knock-out value must be a finite number; got {value!r} for {source!r}")
            value = float(value)
        element = model.resolve(source, role="variable")
        if element.kind in ("lookup",):
            raise ParameterError(f"'{element.name}' is a lookup, not a variable; knock out the variable that uses it")
        if target is None:
            readers = [e.py_name for e in model.elements.values()
                       if e.kind != "lookup" and element.py_name in element_inputs(model, e.py_name)]
            if not readers:
                raise ParameterError(f"no variable of model '{model.source.name}' reads '{element.name}'")
            targets = readers
        else:
            target_element = model.resolve(target, role="variable")
            if element.py_name not in element_inputs(model, target_element.py_name):
                raise ParameterError(no_link_message(model, element.py_name, target_element.py_name))
            targets = [target_element.py_name]
        for t in targets:
            links[(element.py_name, t)] = Link(element.py_name, t, value)
    if not links:
        return None
    return Knockouts(model, sorted(links.values(), key=lambda k: (k.source, k.target)))
