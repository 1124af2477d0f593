"""Link polarity from an equation's structure: interval arithmetic over the declared ranges of the
variables an expression multiplies by, and the sign of its partial derivatives."""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence

import numpy as np

from ...compiler import CompiledModel
from ...structure import FOLLOWERS, Structure, objects_of


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


class Polarity:
    """Sign of the partial derivative of an element's equation with respect to one input.

    Works on the expression tree: sums, differences, products and quotients (using the sign
    of the other factor, known from declared Vensim ranges, constants' values or the ranges
    of the expressions that define them), monotone functions (EXP, LN, SQRT, MIN, MAX,
    increasing or decreasing lookups) and SMOOTH/DELAY of an input. Anything else is ``None``
    (ambiguous), and the caller falls back to the sign seen over a run.
    """

    def __init__(self, model: CompiledModel, structure: Structure):
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
            objects = [o for o in objects_of(self.model, target) if self.structure.objects.get(o, ("",))[0]
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
        if cls in FOLLOWERS and args:
            iv, d = self._analyse(args[0], x)
            if x is not None and any(self._contains(a, x) for a in args[1:]):
                return iv, None
            return iv, d
        return self._unknown(ast.Call(func=ast.Name(id=obj, ctx=ast.Load()), args=[], keywords=[]), x)
