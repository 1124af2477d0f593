"""Feedback-loop analysis: causal graph, loop listing with polarity, loop dominance, knock-outs.

The causal graph comes from PySD's dependency map and the generated module: nodes are model
variables, edges carry a link polarity (``+``, ``-`` or ``?``). Polarity is read from the
structure of each equation (the sign of the partial derivative of the expression tree, using
the declared Vensim ranges of the variables it multiplies by), and where the structure does
not settle it, from the sign of the partial effect over a run. Stocks receive links from
every element of their INTEG rate: ``INTEG(inflow - outflow)`` gives ``inflow -> stock (+)``
and ``outflow -> stock (-)``.

Elementary loops are enumerated with Johnson's algorithm (``networkx.simple_cycles``) up to a
length bound and a cap. Loop dominance follows "Loops That Matter" (Schoenberg, Davidsen &
Eberlein 2020) with the flow-to-stock correction of Schoenberg, Hayward & Eberlein (2023):

- link score of ``x -> z`` for an auxiliary or flow ``z = f(x, y, ...)`` at time ``t``:
  ``|Δx(z) / Δz| * sign(Δx(z) / Δx)``, where ``Δx(z) = f(x_t, y_{t-dt}, ...) - z_{t-dt}`` is
  the change in ``z`` that ``x`` alone causes; zero when ``Δz`` or ``Δx`` is zero;
- link score of ``x -> S`` into a stock with net rate ``r = g(x, ...)`` (its INTEG argument):
  the same expression for ``x -> r`` taken one step earlier (the rate at ``t - dt`` moved the
  stock to ``t``). For separate flows this is the corrected ``|Δi / (ΔS_t - ΔS_{t-dt})|``
  (times ``dt``, so that it is dimensionless) with sign ``+`` for an inflow and ``-`` for an
  outflow, and it is the same number whether the flows are separate or netted;
- loop score: the product of the loop's link scores; relative loop score: the loop score
  divided by the sum of the absolute loop scores of the loops in the same partition (the
  strongly connected part of the graph the loop lies in), in [-1, 1];
- dominant loops at a time: the smallest set of loops of a partition, taken by decreasing
  absolute relative score, that together explain at least half of the change (sum of
  absolute relative scores >= 0.5). One loop with ``|relative score| >= 0.5`` dominates alone.

Each link score is one evaluation of the target's equation over all time steps at once, with
the array-aware copy of the generated module (:mod:`pysd_runner.vectorize`): the run records
only the stocks (and other stateful elements) at every time step, every other variable is
recomputed from them as arrays over time, and for each link the target's equation is called
once with the source's array at ``t`` and the other inputs' arrays at ``t - dt``. Equations
whose functions do not take arrays over time are evaluated step by step (the same numbers).
Scores are undefined (NaN) for the first two time steps, which have too little history.
A first-order SMOOTH is scored like a stock whose rate is ``(input - output) / time``. Links
into other stateful functions (DELAY, higher-order SMOOTH, TREND, ...), whose internal states
are not recorded, are scored as LTM's black box, a unit transfer with the link's sign; they
are named in a :class:`LoopScoreWarning` and in the ``approximated_links`` attr.

Knock-outs hold a link's source at a fixed value as seen by its target only (its value at
the initial time by default), so the loops through that link are cut. They are run from a
patched copy of the generated module, cached beside it.

Named loops: ``models/<name>/loops.toml`` names loops by their variables in cycle order,
for example::

    [R1]
    name = "Accumulation"
    polarity = "R"            # R, B, +, -, reinforcing, balancing, positive or negative
    variables = ["profit rate", "investment", "capital", "output", "profits"]

(an array of tables ``[[loop]]`` with an ``id`` key works too). A named cycle matches a found
loop when its variables all lie on the loop in the same cyclic order: the loop may pass
through further variables (auxiliary chains) between them. When several loops match, the name
goes to an exact match, else to the shortest matching loop (then to one of the stated
polarity); the others stay unnamed.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from .compiler import CONTROL_NAMES, CompiledModel, _component_functions, _pysd, compile_model
from .errors import CrisisError, ParameterError

__all__ = [
    "causal_graph",
    "find_loops",
    "loop_dominance",
    "link_scores",
    "match_named_loops",
    "cutting_link",
    "Loop",
    "TooManyLoopsError",
    "LoopsFileError",
    "LoopScoreWarning",
]

#: Default cap on the number of loops enumerated before giving up with a clear message.
#: reformism has 102,931 (most of them 30-55 variables long), and its dominance analysis
#: takes about a minute and 4 GB; memory grows with the loops. Keep commands_loops'
#: --max-loops help in step.
DEFAULT_MAX_LOOPS = 250_000
#: Name of the file beside a model that names its loops.
LOOPS_FILE = "loops.toml"
#: Share of the change that the dominant set of loops must explain.
DOMINANCE_SHARE = 0.5

POSITIVE, NEGATIVE, AMBIGUOUS = "+", "-", "?"
REINFORCING, BALANCING = "R", "B"


class TooManyLoopsError(CrisisError):
    """The model has more feedback loops than the cap allows."""


class LoopsFileError(CrisisError, ValueError):
    """A loops.toml file is malformed or names variables the model does not have."""


class LoopScoreWarning(UserWarning):
    """Some link scores were approximated (a stateful function that is not scored exactly)."""


# =========================================================================== model structure

#: PySD stateful classes and the positions of their initial-value arguments (not dynamic links).
_STATEFUL_INITIAL_ARGS = {
    "Integ": {1}, "NonNegativeInteg": {1}, "Smooth": {2, 3}, "Delay": {2, 3}, "DelayN": {2, 3},
    "DelayFixed": {2}, "Trend": {2}, "Forecast": {3}, "SampleIfTrue": {2}, "Initial": {0},
}
#: Stateful classes whose output moves in the direction of their first argument (the input).
_FOLLOWERS = {"Smooth", "Delay", "DelayN", "DelayFixed"}


class _Structure:
    """The generated module as syntax: equations, stateful objects and lookup tables."""

    def __init__(self, model: CompiledModel):
        self.model = model
        source = model.py_file.read_text()
        self.tree = ast.parse(source)
        functions = _component_functions(self.tree)
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
            if cls in _STATEFUL_INITIAL_ARGS:
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
        skip = _STATEFUL_INITIAL_ARGS[cls]
        return [
            a.body if isinstance(a, ast.Lambda) else a
            for i, a in enumerate(call.args)
            if i not in skip and not isinstance(a, ast.Constant)
        ]

    def lookup_table(self, py_name: str) -> tuple[list[float], list[float]] | None:
        deps = self.model.dependencies.get(py_name) or {}
        obj = deps.get("__lookup__") if isinstance(deps, dict) else None
        return self.tables.get(obj) if isinstance(obj, str) else None


def _inputs(model: CompiledModel, py_name: str) -> dict[str, int]:
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


def _objects_of(model: CompiledModel, py_name: str) -> list[str]:
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


# =========================================================================== signs and ranges

INF = math.inf
ANY = (-INF, INF)


def _mul0(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else a * b


def _iv_mul(a, b):
    products = [_mul0(x, y) for x in a for y in b]
    return (min(products), max(products))


def _iv_div(a, b):
    if a == (0.0, 0.0):
        return (0.0, 0.0)
    if b[0] <= 0 <= b[1]:
        return ANY
    return _iv_mul(a, (1 / b[1] if b[1] != INF else 0.0, 1 / b[0] if b[0] != -INF else 0.0))


def _iv_hull(*ivs):
    return (min(i[0] for i in ivs), max(i[1] for i in ivs))


def _iv_monotone(func, iv, increasing=True):
    try:
        lo, hi = func(iv[0]), func(iv[1])
    except (OverflowError, ValueError):
        return ANY
    return (lo, hi) if increasing else (hi, lo)


def _safe_exp(v: float) -> float:
    if v == -INF:
        return 0.0
    try:
        return math.exp(v)
    except OverflowError:
        return INF


def _iv_pow(base, exponent: float):
    if float(exponent).is_integer():
        n = int(exponent)
        if n == 0:
            return (1.0, 1.0)
        if n > 0:
            ends = [_safe_pow(base[0], n), _safe_pow(base[1], n)]
            if n % 2 == 0 and base[0] < 0 < base[1]:
                return (0.0, max(ends))
            return (min(ends), max(ends))
    if base[0] > 0 or (base[0] >= 0 and exponent > 0):
        ends = [_safe_pow(base[0], exponent), _safe_pow(base[1], exponent)]
        return (min(ends), max(ends))
    return ANY


def _safe_pow(x: float, p: float) -> float:
    try:
        if x == 0 and p < 0:
            return INF
        if math.isinf(x):
            return INF if p > 0 and (x > 0 or float(p).is_integer() and int(p) % 2 == 0) else (
                -INF if p > 0 else 0.0)
        return float(x ** p)
    except (OverflowError, ZeroDivisionError):
        return INF


def _sign_of(iv) -> int | None:
    """+1 for values >= 0, -1 for values <= 0, 0 for exactly zero, None when either sign occurs."""
    lo, hi = iv
    if lo == 0 and hi == 0:
        return 0
    if lo >= 0:
        return 1
    if hi <= 0:
        return -1
    return None


def _d_add(a, b):
    if a == 0:
        return b
    if b == 0:
        return a
    return a if a == b else None


def _d_mul(a, b):
    if a == 0 or b == 0:
        return 0
    if a is None or b is None:
        return None
    return a * b


def _d_neg(a):
    return None if a is None else -a


def _monotone_sign(ys: Sequence[float]) -> int | None:
    steps = np.diff(np.asarray(ys, dtype=float))
    if (steps >= 0).all():
        return 1 if (steps > 0).any() else 0
    if (steps <= 0).all():
        return -1
    return None


#: Vensim's small number below which XIDZ and ZIDZ switch to their fallback value.
_SMALL = 1e-6

_INCREASING = {"exp", "log", "sqrt", "tanh", "arctan", "arcsinh", "cbrt", "log10", "log2", "log1p", "expm1"}


class _Polarity:
    """Sign of the partial derivative of an element's equation with respect to one input.

    Works on the expression tree: sums, differences, products and quotients (using the sign
    of the other factor, known from declared Vensim ranges, constants' values or the ranges
    of the expressions that define them), monotone functions (EXP, LN, SQRT, MIN, MAX,
    increasing or decreasing lookups) and SMOOTH/DELAY of an input. Anything else is ``None``
    (ambiguous), and the caller falls back to the sign seen over a run.
    """

    def __init__(self, model: CompiledModel, structure: _Structure):
        self.model = model
        self.structure = structure
        self._ranges: dict[str, tuple[float, float]] = {}
        self._busy: set[str] = set()

    # ----------------------------------------------------------------- element ranges
    def element_range(self, py_name: str) -> tuple[float, float]:
        if py_name in self._ranges:
            return self._ranges[py_name]
        element = self.model.elements.get(py_name)
        if element is None or py_name in self._busy:
            return ANY
        lo, hi = element.limits
        declared = (-INF if lo is None else lo, INF if hi is None else hi)
        if element.kind == "constant":
            if lo is None and hi is None and element.default is not None:
                result = (element.default, element.default)
            else:
                result = declared
        elif element.kind in ("auxiliary", "flow", "stateful"):
            self._busy.add(py_name)
            try:
                derived = self.value_range(self._equation(py_name))
            finally:
                self._busy.discard(py_name)
            both = (max(declared[0], derived[0]), min(declared[1], derived[1]))
            result = both if both[0] <= both[1] else declared
        else:
            result = declared
        self._ranges[py_name] = result
        return result

    def _equation(self, py_name: str) -> ast.expr | None:
        return self.structure.expressions.get(py_name)

    def value_range(self, node: ast.expr | None) -> tuple[float, float]:
        if node is None:
            return ANY
        return self._analyse(node, None)[0]

    # ----------------------------------------------------------------- link polarity
    def link_sign(self, source: str, target: str) -> int | None:
        """Sign of d target / d source from the equation (or INTEG rate) of ``target``."""
        element = self.model.elements[target]
        if element.kind == "stock":
            objects = [o for o in _objects_of(self.model, target) if self.structure.objects.get(o, ("",))[0]
                       in ("Integ", "NonNegativeInteg")]
            if not objects:
                return None
            rate = self.structure.dynamic_args(objects[0])
            return self._analyse(rate[0], source)[1] if rate else None
        node = self._equation(target)
        if node is None:
            return None
        return self._analyse(node, source)[1]

    # ----------------------------------------------------------------- the analysis
    def _contains(self, node: ast.AST, x: str) -> bool:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and not sub.args:
                name = sub.func.id
                if name == x:
                    return True
                if name in self.structure.objects and x in self._object_inputs(name):
                    return True
        return False

    def _object_inputs(self, obj: str) -> set[str]:
        deps = self.model.dependencies.get(obj)
        found: set[str] = set()
        if isinstance(deps, dict):
            for key in deps.get("step") or {}:
                if key.startswith("_") and not key.startswith("__"):
                    found |= self._object_inputs(key)
                else:
                    found.add(key)
        return found

    def _unknown(self, node: ast.AST, x: str | None):
        return ANY, (None if x is not None and self._contains(node, x) else 0)

    def _analyse(self, node: ast.AST, x: str | None):
        """(value range, derivative sign with respect to x) of an expression."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                return ANY, 0
            v = float(node.value)
            return (v, v), 0
        if isinstance(node, ast.Lambda):
            return self._analyse(node.body, x)
        if isinstance(node, ast.UnaryOp):
            iv, d = self._analyse(node.operand, x)
            if isinstance(node.op, ast.USub):
                return (-iv[1], -iv[0]), _d_neg(d)
            if isinstance(node.op, ast.UAdd):
                return iv, d
            return self._unknown(node, x)
        if isinstance(node, ast.BinOp):
            return self._binop(node, x)
        if isinstance(node, ast.Call):
            return self._call(node, x)
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            return (0.0, 1.0), (None if x is not None and self._contains(node, x) else 0)
        return self._unknown(node, x)

    def _binop(self, node: ast.BinOp, x):
        a_iv, a_d = self._analyse(node.left, x)
        b_iv, b_d = self._analyse(node.right, x)
        op = node.op
        if isinstance(op, ast.Add):
            return (a_iv[0] + b_iv[0], a_iv[1] + b_iv[1]), _d_add(a_d, b_d)
        if isinstance(op, ast.Sub):
            return (a_iv[0] - b_iv[1], a_iv[1] - b_iv[0]), _d_add(a_d, _d_neg(b_d))
        if isinstance(op, ast.Mult):
            d = _d_add(_d_mul(a_d, _sign_of(b_iv)), _d_mul(_sign_of(a_iv), b_d))
            return _iv_mul(a_iv, b_iv), d
        if isinstance(op, ast.Div):
            if b_iv[0] <= 0 <= b_iv[1] and b_iv != (0.0, 0.0):
                # the divisor may change sign: no fixed direction
                return _iv_div(a_iv, b_iv), (None if a_d or b_d or a_d is None or b_d is None else 0)
            d = _d_add(_d_mul(a_d, _sign_of(b_iv)), _d_neg(_d_mul(_sign_of(a_iv), b_d)))
            return _iv_div(a_iv, b_iv), d
        if isinstance(op, ast.Pow):
            if b_d == 0 and b_iv[0] == b_iv[1]:
                p = b_iv[0]
                iv = _iv_pow(a_iv, p)
                if p == 0 or a_d == 0:
                    return iv, 0
                if a_iv[0] >= 0:
                    factor = 1 if p > 0 else -1  # p * a^(p-1) with a >= 0
                elif float(p).is_integer() and int(p) % 2 == 1:
                    factor = 1 if p > 0 else None
                elif float(p).is_integer() and _sign_of(a_iv) is not None:
                    factor = _d_mul(1 if p > 0 else -1, _sign_of(a_iv))
                else:
                    factor = None
                return iv, _d_mul(factor, a_d)
            if a_d == 0 and a_iv[0] == a_iv[1] and a_iv[0] > 0:
                base = a_iv[0]
                log_base = math.log(base)
                iv = (_safe_exp(b_iv[0] * log_base), _safe_exp(b_iv[1] * log_base))
                sign = 0 if log_base == 0 else (1 if log_base > 0 else -1)
                return (min(iv), max(iv)), _d_mul(sign, b_d)
            return self._unknown(node, x)
        return self._unknown(node, x)

    def _call(self, node: ast.Call, x):
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
            if not node.args and not node.keywords:
                if name in self.structure.objects:
                    return self._object(name, x)
                if name == x:
                    return self.element_range(name), 1
                if name in self.model.elements:
                    return self.element_range(name), 0
                return self._unknown(node, x)
            if name == "float" and len(node.args) == 1:
                return self._analyse(node.args[0], x)
            if name == "if_then_else" and len(node.args) == 3:
                cond, yes, no = node.args
                yes_iv, yes_d = self._analyse(yes, x)
                no_iv, no_d = self._analyse(no, x)
                iv = _iv_hull(yes_iv, no_iv)
                if x is not None and self._contains(cond, x):
                    return iv, None
                return iv, (yes_d if yes_d == no_d else _d_add(yes_d, no_d))
            if name in ("xidz", "zidz") and len(node.args) >= 2:
                quotient = ast.BinOp(left=node.args[0], op=ast.Div(), right=node.args[1])
                q_iv, q_d = self._binop(quotient, x)
                other = self._analyse(node.args[2], x) if name == "xidz" and len(node.args) > 2 else ((0.0, 0.0), 0)
                denominator = self._analyse(node.args[1], None)[0]
                if denominator[0] > _SMALL or denominator[1] < -_SMALL:
                    return q_iv, q_d  # the denominator never comes near zero
                if x is not None and self._contains(node.args[1], x):
                    return _iv_hull(q_iv, other[0]), None
                return _iv_hull(q_iv, other[0]), _d_add(q_d, other[1])
            if name == "step" and len(node.args) == 3:
                value_iv, value_d = self._analyse(node.args[1], x)
                if x is not None and self._contains(node.args[2], x):
                    return _iv_hull(value_iv, (0.0, 0.0)), None
                return _iv_hull(value_iv, (0.0, 0.0)), value_d
            if name == "integer" and len(node.args) == 1:
                return self._analyse(node.args[0], x)
            table = self.structure.lookup_table(name) if name in self.model.elements else None
            if table is None and name in self.structure.tables:
                table = self.structure.tables[name]
            if table is not None and node.args:
                _, arg_d = self._analyse(node.args[0], x)
                ys = table[1]
                return (min(ys), max(ys)), _d_mul(_monotone_sign(ys), arg_d)
            return self._unknown(node, x)
        if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "np":
            attr = func.attr
            args = [self._analyse(a, x) for a in node.args]
            if node.keywords:
                return self._unknown(node, x)
            if attr in _INCREASING and len(args) == 1:
                iv, d = args[0]
                if attr == "exp":
                    return (_safe_exp(iv[0]), _safe_exp(iv[1])), d
                if attr in ("log", "log10", "log2"):
                    log = {"log": math.log, "log10": math.log10, "log2": math.log2}[attr]
                    rng = _iv_monotone(lambda v: log(v) if v > 0 else -INF if v == 0 else math.nan, iv) \
                        if iv[0] >= 0 else ANY
                    return rng, d
                if attr == "sqrt":
                    return (_iv_monotone(math.sqrt, iv) if iv[0] >= 0 else ANY), d
                return ANY, d
            if attr in ("minimum", "maximum") and len(args) == 2:
                (a_iv, a_d), (b_iv, b_d) = args
                pick = min if attr == "minimum" else max
                return (pick(a_iv[0], b_iv[0]), pick(a_iv[1], b_iv[1])), _d_add(a_d, b_d)
            if attr == "abs" and len(args) == 1:
                iv, d = args[0]
                sign = _sign_of(iv)
                rng = (0.0, max(abs(iv[0]), abs(iv[1]))) if sign is None else (
                    (min(abs(iv[0]), abs(iv[1])), max(abs(iv[0]), abs(iv[1]))))
                return rng, _d_mul(sign, d) if sign is not None else (0 if d == 0 else None)
            if attr == "interp" and len(node.args) == 3:
                try:
                    ys = ast.literal_eval(node.args[2])
                except ValueError:
                    return self._unknown(node, x)
                iv, d = args[0]
                return (min(ys), max(ys)), _d_mul(_monotone_sign(ys), d)
            if attr == "power" and len(node.args) == 2:
                return self._binop(ast.BinOp(left=node.args[0], op=ast.Pow(), right=node.args[1]), x)
        return self._unknown(node, x)

    def _object(self, obj: str, x):
        cls, _ = self.structure.objects[obj]
        args = self.structure.dynamic_args(obj)
        if cls in _FOLLOWERS and args:
            iv, d = self._analyse(args[0], x)
            if x is not None and any(self._contains(a, x) for a in args[1:]):
                return iv, None
            return iv, d
        return self._unknown(ast.Call(func=ast.Name(id=obj, ctx=ast.Load()), args=[], keywords=[]), x)


# =========================================================================== the causal graph

def _networkx():
    import networkx

    return networkx


def _polarity_text(sign: int | None) -> str:
    if sign is None:
        return AMBIGUOUS
    return POSITIVE if sign >= 0 else NEGATIVE


def _structural_graph(model: CompiledModel, include_constants: bool):
    """The causal graph with polarities read from the equations only."""
    nx = _networkx()
    structure = _Structure(model)
    polarity = _Polarity(model, structure)
    graph = nx.DiGraph(model=model.name, model_file=str(model.source))
    kinds = ("stock", "flow", "auxiliary", "stateful", "data") + (("constant",) if include_constants else ())
    for element in model.elements.values():
        if element.kind in kinds:
            graph.add_node(element.py_name, name=element.name, kind=element.kind,
                           stock=element.kind == "stock", flow=element.kind == "flow")
    for element in model.elements.values():
        if element.py_name not in graph:
            continue
        for source in _inputs(model, element.py_name):
            if source not in graph:
                continue
            sign = polarity.link_sign(source, element.py_name)
            if sign == 0:
                # The structure says the input cannot move the target (e.g. both branches of an
                # IF THEN ELSE ignore it); the dependency stays, with the direction unknown.
                sign = None
            graph.add_edge(source, element.py_name, polarity=_polarity_text(sign),
                           polarity_from="equation" if sign is not None else "")
    return graph, structure


def causal_graph(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    include_constants: bool = False,
    numeric: bool = True,
    knockout: Any = None,
    final_time: float | None = None,
    time_step: float | None = None,
    seed: int | None = None,
):
    """The causal graph of a model as a ``networkx.DiGraph``.

    Nodes are Python names of the model's variables with attrs ``name`` (Vensim name),
    ``kind``, ``stock`` and ``flow``. Edges ``source -> target`` carry ``polarity``
    (``"+"``, ``"-"`` or ``"?"``) and ``polarity_from`` (``"equation"`` when read from the
    structure of the target's equation, ``"run"`` when taken from the sign of the partial
    effect over a run because the structure did not settle it, ``""`` when ambiguous).

    Parameters
    ----------
    model : CompiledModel or path
    params, scenario, final_time, time_step, seed
        The run used for links whose polarity the structure does not settle (as in
        :func:`pysd_runner.run`).
    include_constants : bool
        Add constants as nodes (they are never on a loop).
    numeric : bool
        Settle ambiguous links from a run (default True). With False, no run is made.
    knockout : list, optional
        Links to cut (see :func:`pysd_runner.run`); they are left out of the graph.

    Examples
    --------
    >>> graph = causal_graph("models/goodwin/goodwin.mdl")  # doctest: +SKIP
    >>> graph.edges["wage_share", "profit_share"]["polarity"]  # doctest: +SKIP
    '-'
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    graph, _ = _structural_graph(model, include_constants)
    knocked = _knockouts(model, knockout)
    if knocked is not None:
        graph.remove_edges_from([(k.source, k.target) for k in knocked.links])
        graph.graph["knockout"] = knocked.describe()
    ambiguous = [(u, v) for u, v, p in graph.edges(data="polarity") if p == AMBIGUOUS]
    if numeric and ambiguous:
        trajectories = _Trajectories(model, params, scenario=scenario, final_time=final_time,
                                     time_step=time_step, seed=seed, knockout=knockout)
        _settle_from_run(graph, trajectories, ambiguous)
    return graph


def _settle_from_run(graph, trajectories: _Trajectories, links) -> None:
    for source, target in links:
        if trajectories.scoring(target) == "approximate":
            continue
        sign = trajectories.partial_sign(source, target)
        if sign is not None:
            graph.edges[source, target]["polarity"] = _polarity_text(sign)
            graph.edges[source, target]["polarity_from"] = "run"


# =========================================================================== loops

@dataclass(frozen=True)
class Loop:
    """One elementary feedback loop.

    ``variables`` are Python names in cycle order (the last one links back to the first),
    ``names`` the Vensim names, ``links`` the polarity of each link ``variables[i] ->
    variables[i + 1]``. ``polarity`` is ``"R"`` (reinforcing: an even number of negative
    links), ``"B"`` (balancing) or ``"?"`` (some link's sign depends on the state).
    """

    id: str
    variables: tuple[str, ...]
    names: tuple[str, ...]
    links: tuple[str, ...]
    polarity: str
    name: str = ""
    title: str = ""
    partition: int = 0

    @property
    def length(self) -> int:
        return len(self.variables)

    @property
    def edges(self) -> list[tuple[str, str]]:
        n = len(self.variables)
        return [(self.variables[i], self.variables[(i + 1) % n]) for i in range(n)]

    def describe(self) -> str:
        """The loop as text: ``a -> b -> c`` with Vensim names."""
        return " -> ".join(self.names)

    @property
    def label(self) -> str:
        """``"B1 Profit squeeze"`` for a named loop, the loop id for others."""
        return f"{self.name} {self.title}".strip() if self.name else self.id


def cutting_link(loop: Loop, loops: Sequence[Loop]) -> tuple[str, str]:
    """A link whose knock-out cuts ``loop`` and as few other loops as possible.

    Prefers links between auxiliaries (not into a stock), then the first such link in cycle
    order. Pass it to ``run(..., knockout=[link])`` to show behaviour without the loop.
    """
    def others(edge):
        return sum(1 for other in loops if other is not loop and edge in other.edges)

    ranked = sorted(enumerate(loop.edges), key=lambda item: (others(item[1]), item[0]))
    return ranked[0][1]


def _loop_polarity(links: Sequence[str]) -> str:
    if AMBIGUOUS in links:
        return AMBIGUOUS
    return REINFORCING if sum(1 for s in links if s == NEGATIVE) % 2 == 0 else BALANCING


def _rotate(cycle: list[str], keys: Mapping[str, tuple]) -> list[str]:
    """Start a cycle at its first stock by Vensim name (else its first variable by name)."""
    first = min(cycle, key=keys.__getitem__)
    i = cycle.index(first)
    return cycle[i:] + cycle[:i]


def _enumerate(graph, max_length: int | None, max_loops: int, model_name: str) -> list[list[str]]:
    nx = _networkx()
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ParameterError(f"max_length must be a positive integer or None; got {max_length!r}")
    if isinstance(max_loops, bool) or not isinstance(max_loops, int) or max_loops < 1:
        raise ParameterError(f"max_loops must be a positive integer; got {max_loops!r}")
    # Stocks first, then by Vensim name: where each loop's listing starts.
    keys = {v: (not data.get("stock"), data["name"].lower(), v) for v, data in graph.nodes(data=True)}
    cycles = []
    for cycle in nx.simple_cycles(graph, length_bound=max_length):
        if len(cycles) >= max_loops:
            bound = f"of length up to {max_length} " if max_length else ""
            raise TooManyLoopsError(
                f"model '{model_name}' has more than {max_loops} feedback loops {bound}(the cap); "
                "give a smaller max_length (--max-length N) to list the shorter loops, or a larger "
                "max_loops (--max-loops N)"
            )
        cycles.append(_rotate(list(cycle), keys))
    return cycles


def find_loops(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    max_length: int | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
    names: str | os.PathLike | bool | None = None,
    numeric: bool = True,
    knockout: Any = None,
    final_time: float | None = None,
    time_step: float | None = None,
    seed: int | None = None,
) -> list[Loop]:
    """Every elementary feedback loop of a model, with its polarity and (where named) name.

    Loops are found with Johnson's algorithm (``networkx.simple_cycles``). Named loops (from
    the model's ``loops.toml``) come first in the order of the file, then the others by
    length and variable names; ids are ``L1``, ``L2``, ...

    Parameters
    ----------
    model : CompiledModel or path
    params, scenario, final_time, time_step, seed
        The run that settles link polarities the equations leave open (see
        :func:`causal_graph`).
    max_length : int, optional
        Longest loop (in variables) to list.
    max_loops : int
        Cap on the number of loops; more raise :class:`TooManyLoopsError`.
    names : path or bool, optional
        A loops.toml naming loops; default the model's own ``loops.toml`` if there is one;
        False for none.
    numeric : bool
        Settle ambiguous link polarities from a run (default True).
    knockout : list, optional
        Links to cut before looking for loops (see :func:`pysd_runner.run`).

    Returns
    -------
    list of Loop

    Examples
    --------
    >>> loops = find_loops("models/goodwin/goodwin.mdl")  # doctest: +SKIP
    >>> [(loop.id, loop.polarity, loop.length) for loop in loops]  # doctest: +SKIP
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    loops, _, _ = _analyse(model, params, scenario=scenario, max_length=max_length, max_loops=max_loops,
                           names=names, numeric=numeric, knockout=knockout, final_time=final_time,
                           time_step=time_step, seed=seed)
    return loops


def _analyse(model, params, *, scenario, max_length, max_loops, names, numeric, knockout,
             final_time, time_step, seed, trajectories=None):
    """Graph, loops and (when a run was needed) the trajectories behind them."""
    nx = _networkx()
    graph, _ = _structural_graph(model, include_constants=False)
    knocked = _knockouts(model, knockout)
    if knocked is not None:
        graph.remove_edges_from([(k.source, k.target) for k in knocked.links])
    cycles = _enumerate(graph, max_length, max_loops, model.source.name)
    on_loops = {(c[i], c[(i + 1) % len(c)]) for c in cycles for i in range(len(c))}
    ambiguous = [e for e in on_loops if graph.edges[e]["polarity"] == AMBIGUOUS]
    if numeric and ambiguous:
        if trajectories is None:
            trajectories = _Trajectories(model, params, scenario=scenario, final_time=final_time,
                                         time_step=time_step, seed=seed, knockout=knockout)
        _settle_from_run(graph, trajectories, sorted(ambiguous))
    components = list(nx.strongly_connected_components(graph))
    component_of = {}
    order = sorted(components, key=lambda c: min(graph.nodes[v]["name"].lower() for v in c))
    for index, nodes in enumerate(order):
        for v in nodes:
            component_of[v] = index
    polarity = {(u, v): p for u, v, p in graph.edges(data="polarity")}
    names_of = dict(graph.nodes(data="name"))
    loops = []
    for cycle in cycles:
        links = tuple(polarity[cycle[i], cycle[(i + 1) % len(cycle)]] for i in range(len(cycle)))
        loops.append(Loop(
            id="", variables=tuple(cycle), names=tuple(names_of[v] for v in cycle), links=links,
            polarity=_loop_polarity(links), partition=component_of[cycle[0]],
        ))
    named = _named_entries(model, names)
    loops = _assign_names(loops, named)
    return loops, graph, trajectories


# --------------------------------------------------------------------------- named loops

@dataclass
class _NamedLoop:
    id: str
    title: str
    polarity: str | None
    variables: tuple[str, ...]
    names: tuple[str, ...]
    raw: dict = field(default_factory=dict)


_POLARITY_WORDS = {
    "r": REINFORCING, "+": REINFORCING, "reinforcing": REINFORCING, "positive": REINFORCING, "pos": REINFORCING,
    "b": BALANCING, "-": BALANCING, "balancing": BALANCING, "negative": BALANCING, "neg": BALANCING,
}
_VARIABLE_KEYS = ("variables", "path", "cycle", "loop", "links")


def _read_loops_file(path: Path) -> list[dict]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise LoopsFileError(f"loops file '{path}' cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LoopsFileError(f"loops file '{path}' is not valid TOML: {exc}") from None
    entries: list[dict] = []

    def take(key: str | None, table: Any) -> None:
        if isinstance(table, Mapping) and any(k in table for k in _VARIABLE_KEYS):
            entry = dict(table)
            entry.setdefault("id", key or "")
            entries.append(entry)
        elif isinstance(table, Mapping):
            for sub_key, sub in table.items():
                take(sub_key, sub)
        elif isinstance(table, list):
            for item in table:
                take(None, item)

    for key, value in data.items():
        if isinstance(value, (Mapping, list)):
            take(key if isinstance(value, Mapping) else None, value)
    return entries


def _named_entries(model: CompiledModel, names: str | os.PathLike | bool | None) -> list[_NamedLoop]:
    if names is False:
        return []
    if names is None or names is True:
        path = model.source.parent / LOOPS_FILE
        if not path.is_file():
            if names is True:
                raise LoopsFileError(f"model '{model.source.name}' has no {LOOPS_FILE} beside it ({path})")
            return []
    else:
        path = Path(names).expanduser()
        if not path.is_file():
            raise LoopsFileError(f"loops file '{path}' does not exist")
    out = []
    for entry in _read_loops_file(path):
        ident = str(entry.get("id") or "").strip()
        variables = next(entry[k] for k in _VARIABLE_KEYS if k in entry)
        if isinstance(variables, str):
            variables = [v for v in re.split(r"\s*(?:->|,)\s*", variables) if v.strip()]
        if not isinstance(variables, list) or len(variables) < 1 or not all(isinstance(v, str) for v in variables):
            raise LoopsFileError(
                f"loops file '{path}': loop '{ident}' must list its variables as a list of names in cycle order"
            )
        if len(variables) > 1 and variables[0].strip().lower() == variables[-1].strip().lower():
            variables = variables[:-1]  # written closed: a -> b -> a
        resolved = []
        for name in variables:
            try:
                element = model.resolve(name)
            except ParameterError as exc:
                raise LoopsFileError(f"loops file '{path}': loop '{ident}': {exc}") from None
            resolved.append(element)
        raw_polarity = entry.get("polarity", entry.get("type", entry.get("sign")))
        polarity = None
        if raw_polarity is not None:
            polarity = _POLARITY_WORDS.get(str(raw_polarity).strip().lower())
            if polarity is None:
                raise LoopsFileError(
                    f"loops file '{path}': loop '{ident}' has polarity {raw_polarity!r}; allowed: "
                    "R, B, +, -, reinforcing, balancing, positive, negative"
                )
        elif ident[:1].upper() in (REINFORCING, BALANCING) and ident[1:2].isdigit():
            polarity = ident[0].upper()
        title = str(entry.get("name", entry.get("title", entry.get("label", ""))) or "")
        out.append(_NamedLoop(ident, title, polarity, tuple(e.py_name for e in resolved),
                              tuple(e.name for e in resolved), entry))
    return out


def _follows(loop: Sequence[str], named: Sequence[str]) -> bool:
    """Whether the named variables lie on the loop in the same cyclic order."""
    if not named or len(set(named)) != len(named) or not set(named) <= set(loop):
        return False
    n = len(loop)
    start = loop.index(named[0])
    positions = [(loop.index(v) - start) % n for v in named]
    return all(a < b for a, b in zip(positions, positions[1:]))


def _rotate_to(variables: Sequence[str], first: str) -> int:
    return list(variables).index(first)


def _assign_names(loops: list[Loop], named: list[_NamedLoop]) -> list[Loop]:
    chosen: dict[int, _NamedLoop] = {}
    members = [frozenset(loop.variables) for loop in loops] if named else []
    for entry in named:
        wanted = frozenset(entry.variables)
        matches = [i for i, loop in enumerate(loops)
                   if i not in chosen and wanted <= members[i] and _follows(loop.variables, entry.variables)]
        if not matches:
            continue
        exact = [i for i in matches if len(loops[i].variables) == len(entry.variables)]
        pool = exact or matches
        best = min(pool, key=lambda i: (loops[i].length, loops[i].polarity != entry.polarity, loops[i].describe()))
        chosen[best] = entry
    ordered: list[Loop] = []
    for entry in named:
        for i, e in chosen.items():
            if e is entry:
                loop = loops[i]
                k = _rotate_to(loop.variables, entry.variables[0])
                rot = lambda seq: tuple(seq[k:]) + tuple(seq[:k])  # noqa: E731
                ordered.append(Loop(id="", variables=rot(loop.variables), names=rot(loop.names),
                                    links=rot(loop.links), polarity=loop.polarity, name=entry.id,
                                    title=entry.title, partition=loop.partition))
    rest = sorted((loops[i] for i in range(len(loops)) if i not in chosen),
                  key=lambda lp: (lp.length, [n.lower() for n in lp.names]))
    result = []
    for number, loop in enumerate(ordered + rest, start=1):
        result.append(Loop(id=f"L{number}", variables=loop.variables, names=loop.names, links=loop.links,
                           polarity=loop.polarity, name=loop.name, title=loop.title, partition=loop.partition))
    return result


def match_named_loops(
    model: CompiledModel | str | os.PathLike,
    loops: Sequence[Loop] | None = None,
    *,
    names: str | os.PathLike | None = None,
    **options: Any,
) -> list[dict]:
    """Check every loop named in a loops.toml against the loops found in the model.

    Returns one dict per named loop: ``id``, ``title``, ``stated`` polarity, ``found``
    (bool), ``loop`` (the id of the matching loop or ``""``), ``polarity`` (found polarity)
    and ``agrees`` (stated polarity equals found polarity).
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    entries = _named_entries(model, True if names is None else names)
    if loops is None:
        loops = find_loops(model, names=True if names is None else names, **options)
    return _match_report(entries, loops)


def _match_report(entries: list[_NamedLoop], loops: Sequence[Loop]) -> list[dict]:
    by_name = {loop.name: loop for loop in loops if loop.name}
    report = []
    for entry in entries:
        loop = by_name.get(entry.id)
        report.append({
            "id": entry.id, "title": entry.title, "stated": entry.polarity or "",
            "variables": " -> ".join(entry.names),
            "found": loop is not None, "loop": loop.id if loop else "",
            "polarity": loop.polarity if loop else "",
            "agrees": bool(loop) and (entry.polarity is None or loop.polarity == entry.polarity),
        })
    return report


# =========================================================================== trajectories

class _ArrayTime:
    """A stand-in for PySD's Time object whose current time is an array (or one step)."""

    def __init__(self, settings: Mapping[str, float]):
        self.settings = dict(settings)
        self.value: Any = settings["initial_time"]
        self.stage = "Run"

    def __call__(self):
        return self.value

    def round(self):
        return self.value

    def time_step(self):
        return self.settings["time_step"]

    def initial_time(self):
        return self.settings["initial_time"]

    def final_time(self):
        return self.settings["final_time"]

    def saveper(self):
        return self.settings["saveper"]


def _integrate(model: CompiledModel, params, recorded: list[str], *, scenario, final_time, time_step, seed,
               knocked: _Knockouts | None):
    """Euler-integrate the model as :func:`pysd_runner.run` does, keeping ``recorded`` at every step.

    A lean copy of the runner's loop: stocks are read from their INTEG objects' states
    straight into arrays (recording every variable through its getter at every step costs
    as much as the integration itself), and finiteness is checked once at the end.
    Returns (times, values, provenance attrs, resolved params).
    """
    from .errors import SimulationError
    from .runner import (_check_seed, _merged_params, _provenance, _simulate_compiled, _time_settings,
                         _to_pysd)
    from .scenarios import load_scenario

    scen = load_scenario(scenario, model) if scenario is not None else None
    merged = _merged_params(model, scen, params, True)
    settings = _time_settings(model, scen, merged, final_time=final_time, time_step=time_step, saveper=None)
    saveper = settings["saveper"]
    settings["saveper"] = settings["time_step"]
    seed = _check_seed(seed)
    if model.uses_random and seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    attrs = _provenance(model, merged, scen, seed, settings)
    attrs["saveper"] = saveper
    # The compiled kernel takes the same Euler steps as PySD in a fraction of the time (a
    # 100-year run at dt = 1/1024 takes PySD about 40 s); PySD runs whatever it cannot take.
    compiled = _simulate_compiled(model, merged, settings, [model.elements[name] for name in recorded], knocked,
                                  required=False)
    if compiled is not None:
        times, columns = compiled
        attrs["engine"] = "compiled"
        if knocked is not None:
            attrs["knockout"] = json.dumps(knocked.describe())
        return np.asarray(times, float), {name: np.asarray(columns[name], float).copy() for name in recorded}, \
            attrs, json.loads(attrs["params"])
    attrs["engine"] = "pysd"
    pysd_model = model.load() if knocked is None else knocked.load()
    pysd_model._stepper_mode = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Replacing a constant value with a time-dependent value")
        pysd_model._config_simulation(
            {k: _to_pysd(v) for k, v in merged.items()} or None, recorded, None, "original",
            settings["final_time"], settings["time_step"], settings["saveper"], True, progress=False,
        )
    if knocked is not None:
        knocked.fix(pysd_model)
    components = pysd_model.components
    readers = []
    for name in recorded:
        objects = _objects_of(model, name)
        obj = getattr(components, objects[0]) if len(objects) == 1 else None
        if model.elements[name].kind == "stock" and type(obj).__name__ in ("Integ", "NonNegativeInteg"):
            readers.append(lambda o=obj: o.state)
        else:
            readers.append(getattr(components, name))
    n_steps = int(round((settings["final_time"] - settings["initial_time"]) / settings["time_step"]))
    out = np.full((n_steps + 2, len(recorded)), np.nan)
    times = np.full(n_steps + 2, np.nan)
    clock = pysd_model.time
    k = 0
    rng_state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed)
        with np.errstate(all="ignore"):
            while clock.in_bounds():
                times[k] = clock.round()
                out[k] = [read() for read in readers]
                k += 1
                pysd_model._integrate_step()
            if clock.in_return():
                times[k] = clock.round()
                out[k] = [read() for read in readers]
                k += 1
    except (ZeroDivisionError, OverflowError, FloatingPointError) as exc:
        raise SimulationError(
            f"model '{model.source.name}': {type(exc).__name__} at time {float(clock()):g}; check the parameter "
            "values (or the time step) that drive it", time=float(clock()), variable="an equation",
        ) from None
    finally:
        np.random.set_state(rng_state)
    times, out = times[:k], out[:k]
    bad = ~np.isfinite(out)
    if bad.any():
        step, column = np.argwhere(bad)[0]
        name = model.elements[recorded[column]].name
        raise SimulationError(
            f"model '{model.source.name}': '{name}' became non-finite at time {times[step]:g}; loop scores need a "
            "finite run: check the parameter values (or the time step) that drive it",
            time=float(times[step]), variable=name,
        )
    if knocked is not None:
        attrs["knockout"] = json.dumps(knocked.describe())
    params_json = json.loads(attrs["params"])
    return times, {name: out[:, j].copy() for j, name in enumerate(recorded)}, attrs, params_json


class _Trajectories:
    """A run at every time step, and the model's equations evaluated over it as arrays.

    The run records only stocks and other stateful elements (and elements drawing random
    numbers); every other variable is recomputed from them with the array-aware module in
    one call per variable. ``values[name]`` is an array over the ``dt`` grid.
    """

    def __init__(self, model: CompiledModel, params, *, scenario, final_time=None, time_step=None,
                 seed=None, knockout=None):
        self.model = model
        self.structure = _Structure(model)
        subscripted = sorted(e.name for e in model.elements.values() if e.subscripts and e.kind != "lookup")
        if subscripted:
            raise ParameterError(
                f"loop scores of model '{model.source.name}' cannot be computed: subscripted variables are not "
                f"supported yet ({', '.join(subscripted[:5])}{', ...' if len(subscripted) > 5 else ''})"
            )
        data = sorted(e.name for e in model.elements.values() if e.kind == "data")
        if data:
            raise ParameterError(
                f"loop scores of model '{model.source.name}' cannot be computed: data variables are not "
                f"supported ({', '.join(data)})"
            )
        recorded = [
            e.py_name for e in model.elements.values()
            if e.kind in ("stock", "stateful")
            or (e.kind in ("auxiliary", "flow") and (_objects_of(model, e.py_name)
                                                     or e.py_name in self.structure.uses_random))
        ]
        self.recorded = set(recorded)
        knocked = _knockouts(model, knockout)
        self.knockout = knocked
        self.times, self.values, self.run_attrs, merged = _integrate(
            model, params, recorded, scenario=scenario, final_time=final_time, time_step=time_step, seed=seed,
            knocked=knocked)
        self.settings = {k: float(self.run_attrs[k]) for k in ("initial_time", "final_time", "time_step", "saveper")}
        self.n = self.times.size
        if self.n < 3:
            raise ParameterError(
                f"loop scores need at least three time steps; the run of '{model.source.name}' has {self.n}"
            )
        self._net: dict[str, np.ndarray] = {}
        self._partials: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.evaluated_per_step: set[str] = set()
        self._load(knocked)
        self._reconstruct(merged)

    # ----------------------------------------------------------------- the array-aware module
    def _load(self, knocked) -> None:
        from .vectorize import vector_module

        pysd = _pysd()
        path = knocked.module(vector=True) if knocked is not None else vector_module(self.model)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Replacing")
            self.pysd_model = pysd.load(str(path), initialize=False)
        module = self.pysd_model.components._components
        self.namespace = vars(module)
        if knocked is not None:
            self.namespace["_KNOCKOUT_VALUES"].update(knocked.fixed_values(self.run_attrs))
        # Functions as written, without PySD's cache wrappers: each call recomputes.
        self.raw = {
            name: inspect.unwrap(self.namespace[name])
            for name in self.model.elements if callable(self.namespace.get(name))
        }
        self.clock = _ArrayTime({**self.settings})
        module._init_outer_references({"scope": self.pysd_model, "time": self.clock})
        for lookup in self.pysd_model._lookup_elements:
            lookup.initialize()

    def _evaluate(self, func, inputs: Mapping[str, np.ndarray], time: np.ndarray, what: str) -> np.ndarray:
        """``func()`` with each input replaced by its array: once over all steps, else step by step."""
        n = time.size
        for name, values in inputs.items():
            self.namespace[name] = (lambda v=values: v)
        self.clock.value = time
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out = np.asarray(func(), dtype=float)
            if out.shape == ():
                return np.full(n, float(out))
            if out.shape == (n,):
                return out
            raise ValueError(f"shape {out.shape}")
        except Exception:  # a function that branches on a scalar: same equation, one step at a time
            self.evaluated_per_step.add(what)
        index = [0]
        for name, values in inputs.items():
            self.namespace[name] = (lambda v=values: v[index[0]])
        out = np.empty(n)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for k in range(n):
                index[0] = k
                self.clock.value = time[k]
                try:
                    out[k] = float(func())
                except Exception as exc:
                    raise CrisisError(
                        f"model '{self.model.source.name}': the equation of '{what}' cannot be evaluated "
                        f"over the run for loop scores ({type(exc).__name__}: {exc})"
                    ) from None
        return out

    def _element_inputs(self, name: str) -> list[str]:
        deps = self.model.dependencies.get(name) or {}
        return [d for d in deps if d in self.model.elements and self.model.elements[d].kind != "lookup"]

    def _reconstruct(self, params: Mapping[str, Any]) -> None:
        nx = _networkx()
        todo = [e.py_name for e in self.model.elements.values()
                if e.kind in ("auxiliary", "flow", "constant") and e.py_name not in self.values]
        order = nx.DiGraph()
        order.add_nodes_from(todo)
        for name in todo:
            for dep in self._element_inputs(name):
                if dep in order:
                    order.add_edge(dep, name)
        for name in nx.lexicographical_topological_sort(order):
            element = self.model.elements[name]
            if element.kind == "constant" and name in params:
                value = params[name]
                if isinstance(value, Mapping):
                    self.values[name] = np.interp(self.times, value["time"], value["value"])
                else:
                    self.values[name] = np.full(self.n, float(value))
                continue
            inputs = {d: self.values[d] for d in self._element_inputs(name)}
            self.values[name] = self._evaluate(self.raw[name], inputs, self.times, element.name)

    # ----------------------------------------------------------------- link scores
    def scoring(self, target: str) -> str:
        """How links into ``target`` are scored: 'auxiliary', 'stock', 'smooth' or 'approximate'."""
        element = self.model.elements[target]
        objects = _objects_of(self.model, target)
        if element.kind in ("auxiliary", "flow") and not objects and target not in self.structure.uses_random:
            return "auxiliary"
        if len(objects) == 1:
            cls = self.structure.objects.get(objects[0], ("",))[0]
            if element.kind == "stock" and cls in ("Integ", "NonNegativeInteg"):
                return "stock"
            if element.kind == "stateful" and cls == "Smooth" and self._smooth_order(objects[0]) == 1:
                return "smooth"
        return "approximate"

    def _smooth_order(self, obj: str) -> float | None:
        try:
            order = self.namespace[obj].order_func()
            return float(order)
        except Exception:
            return None

    def _rate(self, target: str):
        """The function giving the target's rate of change (stocks, first-order smooths)."""
        obj = _objects_of(self.model, target)[0]
        stateful = self.namespace[obj]
        if self.scoring(target) == "stock":
            return stateful.ddt, [d for d in _inputs(self.model, target)]
        state_key = "__crisis_state__"
        namespace = self.namespace

        def smooth_rate():
            return (stateful.input_func() - namespace[state_key]()) / stateful.smooth_time_func()

        return smooth_rate, [*_inputs(self.model, target), state_key]

    def _input_values(self, name: str, target: str) -> np.ndarray:
        if name == "__crisis_state__":
            return self.values[target]
        return self.values[name]

    def net_rate(self, target: str) -> np.ndarray:
        if target not in self._net:
            func, deps = self._rate(target)
            inputs = {d: self._input_values(d, target) for d in deps}
            self._net[target] = self._evaluate(func, inputs, self.times, self.model.elements[target].name)
        return self._net[target]

    def partial(self, source: str, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Δsource(z), Δz, Δsource) for k = 1..n-1, where z is the target or its rate."""
        key = (source, target)
        if key in self._partials:
            return self._partials[key]
        how = self.scoring(target)
        if how == "auxiliary":
            func, deps, z = self.raw[target], self._element_inputs(target), self.values[target]
        else:
            func, deps = self._rate(target)
            z = self.net_rate(target)
        lagged = {d: self._input_values(d, target)[:-1] for d in deps}
        lagged[source] = self.values[source][1:]
        moved = self._evaluate(func, lagged, self.times[:-1], self.model.elements[target].name)
        result = (moved - z[:-1], np.diff(z), np.diff(self.values[source]))
        self._partials[key] = result
        return result

    def partial_sign(self, source: str, target: str) -> int | None:
        """The sign of the partial effect of source on target over the run, if it never changes."""
        effect, _, change = self.partial(source, target)
        finite = np.isfinite(effect)
        # Effects below a billionth of the largest are rounding noise, not a change of sign.
        tolerance = 1e-9 * (np.abs(effect[finite]).max() if finite.any() else 0.0)
        ratio = np.sign(effect) * np.sign(change)
        seen = set(ratio[(np.abs(effect) > tolerance) & (change != 0) & finite].astype(int).tolist())
        seen.discard(0)
        return seen.pop() if len(seen) == 1 else None

    def link_score(self, source: str, target: str, polarity: str) -> tuple[np.ndarray, bool]:
        """Link score over the dt grid (NaN where undefined) and whether it is exact."""
        score = np.full(self.n, np.nan)
        how = self.scoring(target)
        if how == "approximate":
            # LTM's black-box treatment: the whole change of the target is put down to the
            # link, with the link's sign (or the sign of the co-movement when ambiguous).
            dz, dx = np.diff(self.values[target]), np.diff(self.values[source])
            sign = {POSITIVE: 1.0, NEGATIVE: -1.0}.get(polarity)
            value = np.sign(dz) * np.sign(dx) if sign is None else np.full(dz.size, sign)
            score[1:] = np.where((dz == 0) | (dx == 0), 0.0, value)
            return score, False
        effect, dz, dx = self.partial(source, target)
        with np.errstate(all="ignore"):
            value = np.abs(effect / dz) * np.sign(effect) * np.sign(dx)
        # Schoenberg et al.: a link whose source or target does not change scores zero.
        value = np.where((dz == 0) | (dx == 0) | (effect == 0), 0.0, value)
        if how == "auxiliary":
            score[1:] = value
        else:
            score[2:] = value[:-1]  # the rate at t - dt moved the stock to t
        return score, True


# =========================================================================== dominance

def _save_indices(times: np.ndarray, settings: Mapping[str, float]) -> np.ndarray:
    t0, tf, dt, saveper = (settings[k] for k in ("initial_time", "final_time", "time_step", "saveper"))
    n_save = int(math.floor((tf - t0) / saveper + 1e-9)) + 1
    wanted = t0 + saveper * np.arange(n_save)
    index = np.rint((wanted - t0) / dt).astype(int)
    return index[index < times.size]


def _relative(scores: np.ndarray) -> np.ndarray:
    """Scores over (time, loop) of one partition -> relative scores in [-1, 1]."""
    out = np.full(scores.shape, np.nan)
    with np.errstate(all="ignore"):
        magnitude = np.abs(scores)
        infinite = np.isinf(magnitude)
        any_inf = infinite.any(axis=1)
        scale = np.nanmax(np.where(np.isnan(magnitude), -np.inf, magnitude), axis=1)
        finite_scores = scores / np.where((scale > 0) & np.isfinite(scale), scale, 1.0)[:, None]
        total = np.nansum(np.abs(finite_scores), axis=1)
        rel = finite_scores / np.where(total > 0, total, 1.0)[:, None]
        inf_rel = np.sign(scores) * infinite / np.maximum(infinite.sum(axis=1), 1)[:, None]
        rel = np.where(any_inf[:, None], inf_rel, rel)
    defined = ~np.isnan(scores).any(axis=1)
    out[defined] = rel[defined]
    return out


def _dominant(relative: np.ndarray) -> np.ndarray:
    """The smallest set of loops per time, by decreasing |relative score|, explaining half the change."""
    magnitude = np.abs(relative)
    valid = ~np.isnan(magnitude).any(axis=1) & (np.nan_to_num(magnitude) > 0).any(axis=1)
    magnitude = np.where(np.isnan(magnitude), 0.0, magnitude)
    order = np.argsort(-magnitude, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(magnitude, order, axis=1), axis=1)
    needed = np.argmax(cumulative >= DOMINANCE_SHARE - 1e-12, axis=1) + 1
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :].repeat(order.shape[0], axis=0), axis=1)
    return (rank < needed[:, None]) & valid[:, None]


def link_scores(
    model: CompiledModel | str | os.PathLike,
    links: Sequence[tuple[str, str]] | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    seed: int | None = None,
    knockout: Any = None,
):
    """Link scores over a run (Loops That Matter, with the 2023 flow-to-stock correction).

    Parameters
    ----------
    model : CompiledModel or path
    links : list of (source, target), optional
        Links by Vensim or Python names; default every link of the causal graph.
    params, scenario, final_time, time_step, saveper, seed, knockout
        As in :func:`pysd_runner.run`.

    Returns
    -------
    xarray.Dataset
        ``link_score(time, link)`` at every save time (NaN where a score needs earlier time
        steps than the run has), with coordinates ``source``, ``target`` (Python names) and
        ``polarity`` per link.
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    graph, _ = _structural_graph(model, include_constants=True)
    if links is None:
        chosen = [(u, v) for u, v in graph.edges if graph.nodes[u]["kind"] != "constant"]
    else:
        chosen = []
        for pair in links:
            if not (isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2):
                raise ParameterError(f"each link must be a (source, target) pair; got {pair!r}")
            source, target = (model.resolve(p).py_name for p in pair)
            if not graph.has_edge(source, target):
                raise ParameterError(_no_link_message(model, source, target))
            chosen.append((source, target))
    trajectories = _Trajectories(model, params, scenario=scenario, final_time=final_time, time_step=time_step,
                                 seed=seed, knockout=knockout)
    if saveper is not None:
        trajectories.settings["saveper"] = float(saveper)
    ambiguous = [e for e in chosen if graph.edges[e]["polarity"] == AMBIGUOUS]
    _settle_from_run(graph, trajectories, ambiguous)
    index = _save_indices(trajectories.times, trajectories.settings)
    columns, approximated = [], []
    for source, target in chosen:
        score, exact = trajectories.link_score(source, target, graph.edges[source, target]["polarity"])
        columns.append(score[index])
        if not exact:
            approximated.append(f"{source} -> {target}")
    data = np.stack(columns, axis=1) if columns else np.empty((index.size, 0))
    return _dataset_links(model, trajectories, graph, chosen, data, index, approximated)


def _dataset_links(model, trajectories, graph, chosen, data, index, approximated):
    import xarray as xr

    times = trajectories.times[index]
    ids = [f"{u} -> {v}" for u, v in chosen]
    ds = xr.Dataset(
        {"link_score": (("time", "link"), data, {
            "long_name": "Link score", "units": "1",
            "comment": "Loops That Matter link score (Schoenberg et al. 2020; flow-to-stock correction 2023)",
        })},
        coords={
            "time": ("time", times, {"units": model.time_units, "long_name": "Time"}),
            "link": ("link", np.asarray(ids, dtype=str)),
            "source": ("link", np.asarray([u for u, _ in chosen], dtype=str)),
            "target": ("link", np.asarray([v for _, v in chosen], dtype=str)),
            "link_polarity": ("link", np.asarray([graph.edges[e]["polarity"] for e in chosen], dtype=str)),
        },
    )
    ds.attrs.update(_attrs(trajectories, approximated))
    return ds


def _attrs(trajectories: _Trajectories, approximated: list[str]) -> dict:
    attrs = {k: v for k, v in trajectories.run_attrs.items() if k != "knockout"}
    attrs["saveper"] = trajectories.settings["saveper"]
    attrs["knockout"] = json.dumps(trajectories.knockout.describe(trajectories.run_attrs)
                                   if trajectories.knockout is not None else [])
    attrs["approximated_links"] = json.dumps(approximated)
    attrs["evaluated_step_by_step"] = json.dumps(sorted(trajectories.evaluated_per_step))
    attrs["method"] = (
        "Loops That Matter (Schoenberg, Davidsen & Eberlein 2020) with the flow-to-stock correction of "
        "Schoenberg, Hayward & Eberlein (2023); scores at each save time from the Euler steps before it"
    )
    if approximated:
        warnings.warn(
            f"model '{trajectories.model.source.name}': {len(approximated)} link score(s) approximated "
            f"(stateful functions scored as a unit transfer): {', '.join(approximated[:6])}",
            LoopScoreWarning, stacklevel=3,
        )
    return attrs


def loop_dominance(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    seed: int | None = None,
    max_length: int | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
    names: str | os.PathLike | bool | None = None,
    knockout: Any = None,
):
    """Loop dominance over a run: loop scores, relative loop scores and dominant loops.

    Follows "Loops That Matter" (Schoenberg, Davidsen & Eberlein 2020) with the corrected
    flow-to-stock link score (Schoenberg, Hayward & Eberlein 2023); see the module docs.

    Parameters
    ----------
    model : CompiledModel or path
    params, scenario, final_time, time_step, saveper, seed
        The run to analyse, as in :func:`pysd_runner.run`.
    max_length, max_loops, names
        Which loops to score, as in :func:`find_loops`.
    knockout : list, optional
        Links held fixed (see :func:`pysd_runner.run`); their loops are cut and not scored.

    Returns
    -------
    xarray.Dataset
        Dims ``time`` (the save times) and ``loop`` (loop ids ``L1``, ...) with coordinates
        ``name`` (e.g. "B1 Profit squeeze", the loop id when unnamed), ``named``,
        ``polarity`` (R, B or ?), ``variables`` (Vensim names joined by
        `` -> ``), ``length`` and ``partition``; variables ``loop_score``, ``relative_score``
        (in [-1, 1]; NaN at times before the scores are defined) and ``dominant`` (bool); also
        ``link_score(time, link)`` for the links on the loops. Provenance attrs of the run, the
        knock-outs and any approximated links.

    Examples
    --------
    >>> ds = loop_dominance("models/goodwin/goodwin.mdl", final_time=30)  # doctest: +SKIP
    >>> ds["relative_score"].sel(loop="L1").plot()  # doctest: +SKIP
    """
    import xarray as xr

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    trajectories = _Trajectories(model, params, scenario=scenario, final_time=final_time, time_step=time_step,
                                 seed=seed, knockout=knockout)
    if saveper is not None:
        from .runner import _as_number

        value = _as_number(saveper, "saveper")
        if value < trajectories.settings["time_step"] * (1 - 1e-9):
            raise ParameterError(
                f"saveper ({value:g}) must be at least the time step ({trajectories.settings['time_step']:g})"
            )
        trajectories.settings["saveper"] = value
    loops, graph, _ = _analyse(model, params, scenario=scenario, max_length=max_length, max_loops=max_loops,
                               names=names, numeric=True, knockout=knockout, final_time=final_time,
                               time_step=time_step, seed=seed, trajectories=trajectories)
    index = _save_indices(trajectories.times, trajectories.settings)
    edges = sorted({e for loop in loops for e in loop.edges})
    scores, approximated = {}, []
    for source, target in edges:
        score, exact = trajectories.link_score(source, target, graph.edges[source, target]["polarity"])
        scores[(source, target)] = score[index]
        if not exact:
            approximated.append(f"{source} -> {target}")
    n_time, n_loop = index.size, len(loops)
    loop_score = _loop_products(loops, edges, scores, n_time)
    relative = np.full((n_time, n_loop), np.nan)
    dominant = np.zeros((n_time, n_loop), bool)
    for part in sorted({loop.partition for loop in loops}):
        members = [j for j, loop in enumerate(loops) if loop.partition == part]
        rel = _relative(loop_score[:, members])
        relative[:, members] = rel
        dominant[:, members] = _dominant(rel)
    links_ds = _dataset_links(model, trajectories, graph, edges,
                              np.stack([scores[e] for e in edges], axis=1) if edges else np.empty((n_time, 0)),
                              index, approximated)
    ids = [loop.id for loop in loops]
    ds = xr.Dataset(
        {
            "loop_score": (("time", "loop"), loop_score, {
                "long_name": "Loop score", "units": "1",
                "comment": "Product of the link scores around the loop (Loops That Matter)",
            }),
            "relative_score": (("time", "loop"), relative, {
                "long_name": "Relative loop score", "units": "1",
                "comment": "Loop score over the sum of absolute loop scores in its partition, in [-1, 1]; "
                           "NaN before the scores are defined (the first two time steps)",
            }),
            "dominant": (("time", "loop"), dominant, {
                "long_name": "Dominant loop",
                "comment": "In the smallest set of loops of its partition, by decreasing |relative score|, "
                           f"that together explain at least {DOMINANCE_SHARE:.0%} of the change",
            }),
            "link_score": links_ds["link_score"],
        },
        coords={
            "time": links_ds["time"],
            "loop": ("loop", np.asarray(ids, dtype=str)),
            "name": ("loop", np.asarray([loop.label for loop in loops], dtype=str),
                     {"long_name": "Loop name (from loops.toml, e.g. 'B1 Profit squeeze'; the loop id if unnamed)"}),
            "named": ("loop", np.asarray([bool(loop.name) for loop in loops], dtype=bool)),
            "polarity": ("loop", np.asarray([loop.polarity for loop in loops], dtype=str),
                         {"long_name": "Loop polarity (R reinforcing, B balancing, ? depends on the state)"}),
            # Variable-length strings: a model with thousands of long loops stays small on disk.
            "variables": ("loop", np.asarray([loop.describe() for loop in loops], dtype=object)),
            "length": ("loop", np.asarray([loop.length for loop in loops], dtype=np.int64)),
            "partition": ("loop", np.asarray([loop.partition for loop in loops], dtype=np.int64)),
            "link": links_ds["link"],
            "source": links_ds["source"],
            "target": links_ds["target"],
            "link_polarity": links_ds["link_polarity"],
        },
        attrs=links_ds.attrs,
    )
    for name in ("loop_score", "relative_score", "dominant", "link_score"):
        # Mostly zeros and repeated values in large models: compressed in netCDF.
        ds[name].encoding.update({"zlib": True, "complevel": 1})
    ds.attrs["max_length"] = max_length if max_length is not None else "none"
    ds.attrs["n_loops"] = n_loop
    ds.attrs["named_loops"] = json.dumps(_match_report(_named_entries(model, names), loops))
    return ds


def _loop_products(loops: Sequence[Loop], edges: list[tuple[str, str]], scores: Mapping, n_time: int) -> np.ndarray:
    """Products of link scores around every loop at once: sums of logs through an incidence matrix."""
    from scipy import sparse

    if not loops:
        return np.ones((n_time, 0))
    column = {edge: i for i, edge in enumerate(edges)}
    rows = [column[edge] for loop in loops for edge in loop.edges]
    cols = [j for j, loop in enumerate(loops) for _ in range(loop.length)]
    # (link, loop) counts; an elementary loop passes each link at most once.
    incidence = sparse.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(edges), len(loops)))
    links = np.stack([scores[e] for e in edges], axis=1)  # (time, link)
    with np.errstate(all="ignore"):
        magnitude = np.abs(links)
        logs = np.where(magnitude > 0, np.log(np.where(magnitude > 0, magnitude, 1.0)), 0.0)
        logs = np.where(np.isnan(links), 0.0, logs)
        stacked = np.concatenate([logs, (magnitude == 0), (links < 0), np.isnan(links)], axis=0).astype(float)
        sums = np.asarray((sparse.csr_matrix(stacked) @ incidence).todense())
        log_sum, zeros, negatives, missing = np.split(sums, 4, axis=0)
        product = np.where(np.rint(negatives) % 2 == 1, -1.0, 1.0) * np.exp(log_sum)
    product = np.where(zeros > 0, 0.0, product)
    return np.where(missing > 0, np.nan, product)


def dominance_periods(dataset, loop: str) -> list[tuple[float, float]]:
    """The (start, end) save times of the periods in which a loop is dominant."""
    return _periods(dataset["dominant"].sel(loop=loop).values, dataset["time"].values)


def _periods(flags, times) -> list[tuple[float, float]]:
    flags = np.asarray(flags, dtype=bool)
    times = np.asarray(times, dtype=float)
    periods, start = [], None
    for k, flag in enumerate(flags):
        if flag and start is None:
            start = k
        if not flag and start is not None:
            periods.append((float(times[start]), float(times[k - 1])))
            start = None
    if start is not None:
        periods.append((float(times[start]), float(times[-1])))
    return periods


# =========================================================================== knock-outs

@dataclass(frozen=True)
class _Link:
    source: str
    target: str
    value: float | None


def _no_link_message(model: CompiledModel, source: str, target: str) -> str:
    inputs = sorted(model.elements[k].name for k in _inputs(model, target))
    return (
        f"'{model.elements[target].name}' does not read '{model.elements[source].name}' in model "
        f"'{model.source.name}'; its inputs are: {', '.join(inputs) or 'none'}"
    )


class _Knockouts:
    """Links whose source is held fixed as their target sees it."""

    def __init__(self, model: CompiledModel, links: list[_Link]):
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
            from .vectorize import _rewrite

            text = _rewrite(text)
        handle, tmp = tempfile.mkstemp(prefix=".knockout.", suffix=".py", dir=target.parent)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, target)
        return target

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
            fixed[_knockout_key(link.source, link.target)] = value
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
            key = _knockout_key(link.source, link.target)
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
        return {_knockout_key(k["source"], k["target"]): float(k["value"]) for k in recorded}


def _knockout_key(source: str, target: str) -> str:
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


def _patch_module(model: CompiledModel, links: list[_Link]) -> str:
    tree = ast.parse(model.py_file.read_text())
    functions = {name: node for name, (_, node) in _component_functions(tree).items()}
    objects = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id in _STATEFUL_INITIAL_ARGS):
            objects[node.targets[0].id] = node.value
    for link in links:
        redirect = _Redirect(link.source, _knockout_key(link.source, link.target))
        function = functions.get(link.target)
        if function is not None:
            function.body = [redirect.visit(statement) for statement in function.body]
        for obj in _objects_of(model, link.target):
            call = objects.get(obj)
            if call is None:
                continue
            skip = _STATEFUL_INITIAL_ARGS[call.func.id]
            call.args = [a if i in skip else redirect.visit(a) for i, a in enumerate(call.args)]
        if redirect.count == 0:
            raise ParameterError(
                f"the link '{model.elements[link.source].name}' -> '{model.elements[link.target].name}' cannot be "
                "knocked out: the target's equation does not call the source directly"
            )
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n" + _KNOCKOUT_HELPERS


def _knockouts(model: CompiledModel, knockout: Any) -> _Knockouts | None:
    """Normalise ``knockout=`` into links: ``[("source", "target"), ("source", "target", value),
    "source", "source->target", {"source": ..., "target": ..., "value": ...}]``."""
    if knockout is None:
        return None
    if isinstance(knockout, _Knockouts):
        return knockout
    if isinstance(knockout, (str, Mapping)):
        knockout = [knockout]
    if not isinstance(knockout, Sequence):
        raise ParameterError(
            "knockout must be a list of links: ('source', 'target'), ('source', 'target', value), 'source' "
            f"or 'source->target'; got {type(knockout).__name__}"
        )
    links: dict[tuple[str, str], _Link] = {}
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
                       if e.kind != "lookup" and element.py_name in _inputs(model, e.py_name)]
            if not readers:
                raise ParameterError(f"no variable of model '{model.source.name}' reads '{element.name}'")
            targets = readers
        else:
            target_element = model.resolve(target, role="variable")
            if element.py_name not in _inputs(model, target_element.py_name):
                raise ParameterError(_no_link_message(model, element.py_name, target_element.py_name))
            targets = [target_element.py_name]
        for t in targets:
            links[(element.py_name, t)] = _Link(element.py_name, t, value)
    if not links:
        return None
    return _Knockouts(model, sorted(links.values(), key=lambda k: (k.source, k.target)))
