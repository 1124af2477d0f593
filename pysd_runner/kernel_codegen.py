"""The compiled kernel's code generation: PySD's generated module parsed, each element's equation
translated to a numba-compilable scalar expression, in one straight-line step function.

The runtime (loading, caching and running the generated kernel) is :mod:`pysd_runner.kernel`."""

from __future__ import annotations

import ast
import copy
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compiler import CompiledModel


__all__ = ["generate", "plan", "KernelPlan", "KernelUnsupported", "engine_error", "KERNEL_VERSION"]

#: Bumped whenever the generated code changes, so stale kernels are never reused.
KERNEL_VERSION = "5"

SMALL_VENSIM = 1e-6
#: PySD's Time.rprec: relative precision for the final time and the save times.
RPREC = 1e-5

CONTROL = {
    "initial_time": "T0",
    "final_time": "TF",
    "time_step": "DT",
    "saveper": "SAVEPER",
    "time": "t",
}

#: numpy functions PySD emits that numba compiles for scalars with numpy's semantics.
NUMPY_OK = {
    "exp", "log", "log10", "sqrt", "abs", "minimum", "maximum", "sin", "cos", "tan", "arcsin",
    "arccos", "arctan", "arctan2", "power", "floor", "ceil", "sign", "tanh", "sinh", "cosh",
    "fmod", "mod", "interp",
}


def engine_error(model: CompiledModel, reason: Any):
    """The error for ``engine="compiled"`` when the kernel cannot take the run."""
    from .errors import ParameterError

    return ParameterError(f"engine='compiled': model '{model.source.name}' cannot run on the compiled kernel: {reason}")


class KernelUnsupported(Exception):
    """The model uses something the kernel does not translate (the element is named)."""

    def __init__(self, element: str, reason: str):
        super().__init__(f"'{element}' {reason}")
        self.element = element
        self.reason = reason


# --------------------------------------------------------------------------- parsing

@dataclass
class _Stateful:
    name: str            # module-level object name, e.g. _integ_capital
    kind: str            # integ, nonneg, smooth, delay, initial
    owner: str           # component reading it (for messages)
    ddt: ast.AST | None = None
    init: ast.AST | None = None
    smooth_time: ast.AST | None = None  # SMOOTH time or DELAY time
    order: int = 1


def _decorator_keywords(node: ast.FunctionDef) -> dict[str, ast.AST] | None:
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "add":
            return {kw.arg: kw.value for kw in deco.keywords}
    return None


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _lambda_body(node: ast.AST, owner: str) -> ast.AST:
    if not isinstance(node, ast.Lambda):
        raise KernelUnsupported(owner, "has a stateful argument that is not a plain expression")
    return node.body


def _number(node: ast.AST) -> float | None:
    """The value of a constant expression of numbers (``1/3``, ``-2``), else None."""
    for sub in ast.walk(node):
        if not isinstance(sub, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)):
            return None
    try:
        value = eval(compile(ast.Expression(node), "<constant>", "eval"), {"__builtins__": {}}, {})  # noqa: S307
    except Exception:  # noqa: BLE001 - any failure means "not a plain number"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class _Parsed:
    """The generated module read as components, statefuls and lookup tables."""

    def __init__(self, model: CompiledModel):
        self.model = model
        tree = ast.parse(model.py_file.read_text())
        self.exprs: dict[str, ast.AST] = {}        # aux / stock-reading components
        self.constants: list[str] = []            # every constant, in a fixed order
        self.constant_values: dict[str, float] = {}  # its value in the generated code
        self.lookups: dict[str, str] = {}          # lookup component -> table object
        self.tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.statefuls: dict[str, _Stateful] = {}
        self.vensim: dict[str, str] = {}
        functions: dict[str, ast.FunctionDef] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                keywords = _decorator_keywords(node)
                if keywords is None:
                    continue
                name = _literal(keywords.get("name")) or node.name
                self.vensim[node.name] = name
                if "subscripts" in keywords:
                    raise KernelUnsupported(name, "is subscripted")
                functions[node.name] = node
        self._readers: dict[str, str] = {}
        self.reader_of: dict[str, str] = {}  # stateful object -> py_name of the component reading it
        for py_name, node in functions.items():
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and sub.id.startswith("_"):
                    self._readers.setdefault(sub.id, self.vensim[py_name])
                    self.reader_of.setdefault(sub.id, py_name)
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = node.targets[0].id
                if target.startswith("__") or target in ("_root", "component", "_control_vars", "_subscript_dict"):
                    continue
                try:
                    self._stateful(target, node.value)
                except KernelUnsupported as exc:
                    raise KernelUnsupported(self._readers.get(target, target), exc.reason) from None
        for py_name, node in functions.items():
            name = self.vensim[py_name]
            if py_name in CONTROL:
                continue
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
                raise KernelUnsupported(name, "has a generated body of several statements")
            expr = body[0].value
            if node.args.args:
                # A lookup: def f(x, final_subs=None): return _hardcodedlookup_f(x, final_subs)
                if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)
                        and expr.func.id in self.tables):
                    self.lookups[py_name] = expr.func.id
                    continue
                raise KernelUnsupported(name, "is a function of arguments the kernel does not know")
            element = self.model.elements.get(py_name)
            if element is not None and element.kind == "constant" and _number(expr) is not None:
                self.constants.append(py_name)
                self.constant_values[py_name] = _number(expr)
                continue
            self.exprs[py_name] = expr
        for stateful in self.statefuls.values():
            stateful.owner = self._readers.get(stateful.name, stateful.name)

    def _stateful(self, target: str, value: ast.AST) -> None:
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
            raise KernelUnsupported(target, "is a module-level object the kernel does not know")
        kind = value.func.id
        args = value.args
        if kind in ("Integ", "NonNegativeInteg") and len(args) == 3:
            self.statefuls[target] = _Stateful(
                target, "integ" if kind == "Integ" else "nonneg", target,
                ddt=_lambda_body(args[0], target), init=_lambda_body(args[1], target))
        elif kind == "Initial" and len(args) == 2:
            self.statefuls[target] = _Stateful(target, "initial", target, init=_lambda_body(args[0], target))
        elif (kind, len(args)) in (("Smooth", 5), ("Delay", 6)):
            # Smooth(input, time, initial, order, name); Delay(input, time, initial, order, tstep, name)
            what = kind.upper()
            order = _number(_lambda_body(args[3], target))
            if order is None or order != int(order) or order < 1:
                raise KernelUnsupported(target, f"is a {what} whose order is not a literal positive integer")
            self.statefuls[target] = _Stateful(
                target, kind.lower(), target, ddt=_lambda_body(args[0], target),
                smooth_time=_lambda_body(args[1], target), init=_lambda_body(args[2], target), order=int(order))
        elif kind == "HardcodedLookups" and len(args) >= 4:
            xs, ys, interp = _literal(args[0]), _literal(args[1]), _literal(args[3])
            if interp != "interpolate" or not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
                raise KernelUnsupported(target, f"is a lookup with '{interp}' extrapolation or a table of several dims")
            if any(isinstance(v, list) for v in xs + ys) or len(xs) < 1:
                raise KernelUnsupported(target, "is a lookup table of several dims")
            self.tables[target] = (np.asarray(xs, float), np.asarray(ys, float))
        else:
            raise KernelUnsupported(target, f"uses {kind}, which the compiled kernel does not translate")


# --------------------------------------------------------------------------- translation

def _state_var(obj: str, index: int = 0) -> str:
    return f"s{index}_{obj.lstrip('_')}"


#: The name of a state variable (level ``index`` of a stateful object) in generated code.
state_var = _state_var


class _Translate(ast.NodeTransformer):
    """Generated-model expression -> numba-compilable scalar expression."""

    def __init__(self, parsed: _Parsed, owner: str, arrays: dict[str, np.ndarray],
                 held: dict[str, str] | None = None):
        self.p = parsed
        self.owner = owner
        self.arrays = arrays
        self.held = held or {}          # knocked-out sources -> the code of the value the target sees
        self.substituted: set[str] = set()
        self.reads: set[str] = set()   # component py_names read
        self.states: set[str] = set()  # stateful objects read

    def fail(self, reason: str):
        raise KernelUnsupported(self.p.vensim.get(self.owner, self.owner), reason)

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, bool):
            return ast.Constant(1.0 if node.value else 0.0)
        if isinstance(node.value, int):
            return ast.Constant(float(node.value))
        if isinstance(node.value, float):
            return node
        self.fail(f"uses the literal {node.value!r}")

    def _array(self, node: ast.AST) -> ast.Name:
        values = _literal(node)
        if not isinstance(values, list) or any(isinstance(v, list) for v in values):
            self.fail("uses a table the kernel cannot read")
        key = f"ARR{len(self.arrays)}"
        self.arrays[key] = np.asarray(values, dtype=float)
        return ast.Name(key, ast.Load())

    def visit_Name(self, node: ast.Name):
        self.fail(f"reads '{node.id}' directly, which the kernel does not translate")

    def visit_Lambda(self, node):
        self.fail("uses a lambda outside IF THEN ELSE")

    def visit_Subscript(self, node):
        self.fail("indexes a value (subscripts or data)")

    def visit_Attribute(self, node):
        self.fail(f"uses the attribute '{ast.unparse(node)}'")

    def _time_arg(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Subscript) and ast.unparse(node) in ("__data['time']", '__data["time"]')

    def visit_Call(self, node: ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np":
            if func.attr not in NUMPY_OK or node.keywords:
                self.fail(f"uses np.{func.attr}, which the kernel does not translate")
            if func.attr == "interp":
                if len(node.args) != 3:
                    self.fail("uses np.interp with unusual arguments")
                x = self.visit(node.args[0])
                return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "interp", ast.Load()),
                                [x, self._array(node.args[1]), self._array(node.args[2])], [])
            return ast.Call(func, [self.visit(a) for a in node.args], [])
        if not isinstance(func, ast.Name):
            self.fail(f"calls '{ast.unparse(func)}'")
        name = func.id
        if name in CONTROL and not node.args:
            return ast.Name(CONTROL[name], ast.Load())
        if name in self.p.statefuls and not node.args:
            stateful = self.p.statefuls[name]
            self.states.add(name)
            index = stateful.order - 1 if stateful.kind in ("smooth", "delay") else 0
            value = ast.Name(_state_var(name, index), ast.Load())
            if stateful.kind == "delay":
                # PySD's Delay holds material in transit: the outflow is the last stage
                # divided by the delay time now.
                return ast.BinOp(value, ast.Div(), self.visit(copy.deepcopy(stateful.smooth_time)))
            return value
        if name in self.p.lookups:
            if len(node.args) != 1 or node.keywords:
                self.fail(f"calls the lookup '{self.p.vensim.get(name, name)}' with several arguments")
            xs, ys = self.p.tables[self.p.lookups[name]]
            kx, ky = f"ARR{len(self.arrays)}", f"ARR{len(self.arrays) + 1}"
            self.arrays[kx], self.arrays[ky] = xs, ys
            return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "interp", ast.Load()),
                            [self.visit(node.args[0]), ast.Name(kx, ast.Load()), ast.Name(ky, ast.Load())], [])
        if name in self.p.exprs or name in self.p.constants:
            if node.args or node.keywords:
                self.fail(f"calls '{name}' with arguments")
            self.reads.add(name)
            if name in self.held:
                self.substituted.add(name)
                return ast.parse(self.held[name], mode="eval").body
            prefix = "c_" if name in self.p.constants else "v_"
            return ast.Name(prefix + name, ast.Load())
        if name == "float" and len(node.args) == 1:
            return self.visit(node.args[0])
        if name in ("abs", "min", "max") and not node.keywords:
            return ast.Call(ast.Name(name, ast.Load()), [self.visit(a) for a in node.args], [])
        if name == "if_then_else" and len(node.args) == 3:
            cond = self.visit(node.args[0])
            yes = self.visit(_lambda_body(node.args[1], self.owner))
            no = self.visit(_lambda_body(node.args[2], self.owner))
            return ast.IfExp(cond, yes, no)
        if name in ("xidz", "zidz"):
            args = [self.visit(a) for a in node.args]
            if len(args) != (3 if name == "xidz" else 2):
                self.fail(f"calls {name} with {len(args)} arguments")
            return ast.Call(ast.Name(f"_{name}", ast.Load()), args, [])
        if name in ("step", "ramp", "pulse"):
            return self._time_function(name, node)
        self.fail(f"uses {name}, which the compiled kernel does not translate")

    def _time_function(self, name: str, node: ast.Call) -> ast.AST:
        if not node.args or not self._time_arg(node.args[0]):
            self.fail(f"calls {name} without the model clock")
        names = {"step": ["value", "tstep"], "ramp": ["slope", "start", "finish"],
                 "pulse": ["start", "repeat_time", "width", "magnitude", "end"]}[name]
        given: dict[str, ast.AST] = dict(zip(names, node.args[1:]))
        for kw in node.keywords:
            if kw.arg not in names:
                self.fail(f"calls {name} with the unknown argument {kw.arg}")
            given[kw.arg] = kw.value
        args = {k: (None if v is None or (isinstance(v, ast.Constant) and v.value is None) else self.visit(v))
                for k, v in given.items()}
        unparse = lambda key: ast.unparse(args[key])  # noqa: E731
        if name == "step":
            text = f"({unparse('value')}) * (1.0 if t + DT / 2 > ({unparse('tstep')}) else 0.0)"
        elif name == "ramp":
            final = "t" if args.get("finish") is None else f"np.minimum({unparse('finish')}, t)"
            text = (f"(1.0 if t + {SMALL_VENSIM!r} > ({unparse('start')}) else 0.0) * ({unparse('slope')})"
                    f" * ({final} - ({unparse('start')}))")
        else:
            def opt(key, default):
                return unparse(key) if args.get(key) is not None else default
            text = (f"_pulse(t, DT, {unparse('start')}, {opt('repeat_time', '0.0')}, "
                    f"{opt('width', 'np.nan')}, {opt('magnitude', 'np.nan')}, {opt('end', 'np.nan')})")
        return ast.parse(text, mode="eval").body


# --------------------------------------------------------------------------- code generation

_HELPERS = '''
@njit(inline="always", error_model="numpy", cache=True)
def _xidz(a, b, x):
    if abs(b) < SMALL_VENSIM:
        return x
    return a / b


@njit(inline="always", error_model="numpy", cache=True)
def _zidz(a, b):
    if abs(b) < SMALL_VENSIM:
        return 0.0
    return a / b


@njit(inline="always", error_model="numpy", cache=True)
def _interp(x, xp, fp):
    # np.interp at one point. numba's np.interp allocates two arrays on every call, which
    # cost a quarter of a model step with one lookup; this is the same arithmetic (numba's
    # copy of numpy's arr_interp, with a plain bisection), so the values are identical.
    n = xp.shape[0]
    if n == 1:
        return fp[0]
    if np.isnan(x):
        return x
    if x > xp[n - 1]:
        return fp[n - 1]
    if x < xp[0]:
        return fp[0]
    lo = 0
    hi = n
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        if x >= xp[mid]:
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    if j == n - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    y = slope * (x - xp[j]) + fp[j]
    if np.isnan(y):
        y = slope * (x - xp[j + 1]) + fp[j + 1]
        if np.isnan(y) and fp[j] == fp[j + 1]:
            y = fp[j]
    return y


@njit(error_model="numpy", cache=True)
def _pulse(t, dt, start, repeat_time, width, magnitude, end):
    # PySD's pulse: width defaults to half a time step, magnitude to 1 per pulse (not per
    # year), and a train stops at `end` (NaN here means "not given").
    if np.isnan(width):
        width = 0.5 * dt
    out = 1.0 if np.isnan(magnitude) else magnitude / dt
    if repeat_time == 0:
        return out if (start - SMALL_VENSIM <= t and t < start + width) else 0.0
    if start <= t and (np.isnan(end) or t < end):
        return out if (t - start + SMALL_VENSIM) % repeat_time < width else 0.0
    return 0.0
'''


#: Scalar helpers every generated numba module defines.
HELPERS = _HELPERS


def numba_source(source: str) -> str:
    """A generated module's source with lookups routed to the allocation-free ``_interp``.

    The plan keeps ``np.interp`` (the browser engine translates it to its own ``_interp``);
    only the numba modules swap it, so every engine reads the same plan.
    """
    return source.replace("np.interp(", "_interp(")


#: Generated lines that set the constants following a time series (a policy) at time ``t``.
SERIES_LINES = [
    "if has_series:",
    "    for i in range(nc):",
    "        if SIDX[i] >= 0:",
    "            j = SIDX[i]",
    "            C[i] = np.interp(t, SX[j, :SL[j]], SY[j, :SL[j]])",
]


def _order(parsed: _Parsed, deps: dict[str, set[str]]) -> list[str]:
    """Auxiliaries in dependency order (an algebraic loop is reported by element)."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]):
        mark = state.get(name)
        if mark == 2:
            return
        if mark == 1:
            cycle = path[path.index(name):] + [name]
            raise KernelUnsupported(parsed.vensim.get(name, name),
                                    "is in a loop without a stock: " + " -> ".join(parsed.vensim.get(c, c) for c in cycle))
        state[name] = 1
        for dep in sorted(deps[name]):
            visit(dep, path + [name])
        state[name] = 2
        order.append(name)

    sys_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(sys_limit, 10 * len(deps) + 1000))
    try:
        for name in sorted(deps):
            visit(name, [])
    finally:
        sys.setrecursionlimit(sys_limit)
    return order


@dataclass
class KernelPlan:
    """A model's step function before it is written in a language: the statements (Python
    syntax, over scalar locals) of initialisation, of one step's auxiliaries and of the state
    update, in the order every engine must run them. :func:`generate` writes it for numba,
    :mod:`pysd_runner.javascript` for the browser."""

    parsed: _Parsed
    knockouts: tuple[tuple[str, str], ...]
    arrays: dict[str, np.ndarray]
    constants: list[str]                 # parameter slots, in order
    order: list[str]                     # auxiliaries in evaluation order
    recordable: list[str]                # constants, then auxiliaries
    aux_code: dict[str, str]             # auxiliary -> expression
    captures: dict[str, list[int]]       # auxiliary source -> knock-outs captured from it at the first step
    init_lines: list[str]                # initialisation statements (may set ``redo``)
    update: list[str]                    # the Euler update of every state variable
    finals: list[str]                    # state variables checked for finiteness at the end
    delays: list[_Stateful]
    defaults: np.ndarray                 # the constants' values in the generated code


def plan(model: CompiledModel, knockouts: tuple[tuple[str, str], ...] = (), *, switchable: bool = False) -> KernelPlan:
    """The model's :class:`KernelPlan`.

    ``knockouts`` are ``(source, target)`` links (Python names) cut as
    :func:`pysd_runner.run` cuts them: after initialisation the target (its equation, and
    the non-initial arguments of its stateful objects) sees the source held at a fixed
    value ``k_j``: given per run, or the source's value at the initial time. With
    ``switchable``, link ``j`` is cut only when ``KA[j]`` is true, so one step function
    serves every combination of the links.
    """
    parsed = _Parsed(model)
    arrays: dict[str, np.ndarray] = {}
    held_by: dict[str, dict[str, str]] = {}
    for j, (source, target) in enumerate(knockouts):
        live = ("c_" if source in parsed.constants else "v_") + source
        held_by.setdefault(target, {})[source] = f"(k_{j} if KA[{j}] else {live})" if switchable else f"k_{j}"
    substituted: set[tuple[str, str]] = set()

    def translate(owner: str, target: str | None, expr: ast.AST, *, live: bool = False) -> _Translate:
        held = {} if live or target is None else held_by.get(target, {})
        tr = _Translate(parsed, owner, arrays, held)
        tr.code = ast.unparse(tr.visit(copy.deepcopy(expr)))
        substituted.update((source, target) for source in tr.substituted)
        return tr

    aux_code: dict[str, str] = {}
    aux_init_code: dict[str, str] = {}
    aux_deps: dict[str, set[str]] = {}
    aux_states: dict[str, set[str]] = {}
    for name, expr in parsed.exprs.items():
        tr = translate(name, name, expr)
        aux_code[name] = tr.code
        aux_init_code[name] = translate(name, name, expr, live=True).code if name in held_by else tr.code
        aux_deps[name] = {r for r in tr.reads if r in parsed.exprs}
        aux_states[name] = tr.states
    ddt_code: dict[str, list[str]] = {}
    delay_time: dict[str, str] = {}
    delay_deps: dict[str, tuple[set[str], set[str]]] = {}
    init_code: dict[str, str] = {}
    init_deps: dict[str, tuple[set[str], set[str]]] = {}
    for obj, st in parsed.statefuls.items():
        reader = parsed.reader_of.get(obj)
        tr = translate(obj, reader, st.init, live=True)
        init_code[obj] = tr.code
        init_deps[obj] = ({r for r in tr.reads if r in parsed.exprs}, set(tr.states))
        if st.kind in ("integ", "nonneg"):
            ddt_code[obj] = [translate(obj, reader, st.ddt).code]
        elif st.kind in ("smooth", "delay"):
            source = translate(obj, reader, st.ddt).code
            time = translate(obj, reader, st.smooth_time).code
            ddt_code[obj] = [source, time]
            tr_time = translate(obj, reader, st.smooth_time, live=True)
            delay_time[obj] = tr_time.code
            delay_deps[obj] = ({r for r in tr_time.reads if r in parsed.exprs}, set(tr_time.states))
    for link in knockouts:
        if link not in substituted:
            raise KernelUnsupported(parsed.vensim.get(link[1], link[1]),
                                    f"does not read '{parsed.vensim.get(link[0], link[0])}' directly (knock-out)")
    order = _order(parsed, aux_deps)

    # Initialisation: each stateful's initial expression with what it needs, depth first.
    init_lines: list[str] = []
    done_aux: set[str] = set()
    done_state: set[str] = set()
    visiting: set[str] = set()

    def need_aux(name: str):
        if name in done_aux:
            return
        if name in visiting:
            raise KernelUnsupported(parsed.vensim.get(name, name), "is in a loop of initial values")
        visiting.add(name)
        for dep in sorted(aux_deps[name]):
            need_aux(dep)
        for obj in sorted(aux_states[name]):
            need_state(obj)
        visiting.discard(name)
        init_lines.append(f"v_{name} = {aux_init_code[name]}")
        done_aux.add(name)

    def need_state(obj: str):
        if obj in done_state:
            return
        if obj in visiting:
            raise KernelUnsupported(parsed.statefuls[obj].owner, "is in a loop of initial values")
        visiting.add(obj)
        auxes, states = init_deps[obj]
        for dep in sorted(auxes):
            need_aux(dep)
        for other in sorted(states):
            need_state(other)
        visiting.discard(obj)
        st = parsed.statefuls[obj]
        count = st.order if st.kind in ("smooth", "delay") else 1
        if st.kind == "delay":
            for dep in sorted(delay_deps[obj][0]):
                need_aux(dep)
            for other in sorted(delay_deps[obj][1]):
                need_state(other)
            # PySD lowers a DELAY's order when order x TIME STEP exceeds the delay time;
            # such members are handed back to the numpy engine.
            init_lines.append(f"if {float(st.order)!r} * DT > {delay_time[obj]}:")
            init_lines.append("    redo = True")
            init_lines.append(f"{_state_var(obj)} = ({init_code[obj]}) * ({delay_time[obj]})")
        else:
            init_lines.append(f"{_state_var(obj)} = {init_code[obj]}")
        for i in range(1, count):
            init_lines.append(f"{_state_var(obj, i)} = {_state_var(obj)}")
        done_state.add(obj)

    for obj in sorted(parsed.statefuls):
        need_state(obj)

    constants = list(parsed.constants)
    recordable = constants + order
    update: list[str] = []
    for obj, st in parsed.statefuls.items():
        if st.kind in ("integ", "nonneg"):
            update.append(f"d0_{obj.lstrip('_')} = {ddt_code[obj][0]}")
        elif st.kind == "delay":
            source, time = ddt_code[obj]
            tag = obj.lstrip('_')
            update.append(f"st_{tag} = {time}")
            for i in range(st.order):
                inflow = source if i == 0 else f"{_state_var(obj, i - 1)} / st_{tag}"
                update.append(f"d{i}_{tag} = (({inflow}) - {_state_var(obj, i)} / st_{tag}) * {float(st.order)!r}")
        elif st.kind == "smooth":
            source, time = ddt_code[obj]
            update.append(f"st_{obj.lstrip('_')} = {time}")
            for i in range(st.order):
                target = source if i == 0 else _state_var(obj, i - 1)
                update.append(f"d{i}_{obj.lstrip('_')} = ({target} - {_state_var(obj, i)}) * {float(st.order)!r} / st_{obj.lstrip('_')}")
    for obj, st in parsed.statefuls.items():
        if st.kind == "integ":
            update.append(f"{_state_var(obj)} = {_state_var(obj)} + d0_{obj.lstrip('_')} * DT")
        elif st.kind == "nonneg":
            update.append(f"{_state_var(obj)} = np.maximum({_state_var(obj)} + d0_{obj.lstrip('_')} * DT, 0.0)")
        elif st.kind in ("smooth", "delay"):
            for i in range(st.order):
                update.append(f"{_state_var(obj, i)} = {_state_var(obj, i)} + d{i}_{obj.lstrip('_')} * DT")
    if not update:
        update.append("pass")
    finals = [_state_var(obj, i) for obj, st in parsed.statefuls.items() if st.kind != "initial"
              for i in range(st.order if st.kind in ("smooth", "delay") else 1)]
    captures: dict[str, list[int]] = {}
    for j, (source, _) in enumerate(knockouts):
        if source not in parsed.constants:
            captures.setdefault(source, []).append(j)
    delays = [st for st in parsed.statefuls.values() if st.kind == "delay"]
    defaults = np.array([parsed.constant_values[name] for name in constants], dtype=float)
    return KernelPlan(parsed, tuple(knockouts), arrays, constants, order, recordable, aux_code, captures,
                      init_lines, update, finals, delays, defaults)


def generate(model: CompiledModel, knockouts: tuple[tuple[str, str], ...] = ()):
    """Kernel source (numba), its arrays, the constants (parameter slots), the recordable
    names, the DELAY objects and the constants' values in the generated code.

    ``knockouts`` as for :func:`plan`.
    """
    p = plan(model, knockouts)
    parsed, arrays, constants, recordable, order = p.parsed, p.arrays, p.constants, p.recordable, p.order
    aux_code, captures, init_lines, update, finals = p.aux_code, p.captures, p.init_lines, p.update, p.finals
    lines = [
        '"""Generated by pysd_runner.kernel from a PySD translation; do not edit."""',
        "import numpy as np",
        "from numba import njit",
        f"SMALL_VENSIM = {SMALL_VENSIM!r}",
        "_ARRAYS = np.load(__file__[:-3] + '.npz')",
    ]
    for key in arrays:
        lines.append(f"{key} = _ARRAYS['{key}']")
    lines.append(_HELPERS)
    # Kept small for the compiler: constants live in an array (C), time series are applied
    # by a loop, and a saved step copies every recordable value into a row (R) before one
    # loop picks the requested ones. Only the equations themselves are unrolled.
    lines.append('@njit(error_model="numpy", cache=True, nogil=True)')
    lines.append("def kernel(P, SIDX, SX, SY, SL, times, record, DT, T0, TF, SAVEPER, WANT, KV, KOUT, out, ok):")
    body = [
        "n = P.shape[0]",
        "nt = times.shape[0]",
        "nc = P.shape[1]",
        "has_series = False",
        "for i in range(SIDX.shape[0]):",
        "    if SIDX[i] >= 0:",
        "        has_series = True",
        f"R = np.empty({len(recordable)})",
        "C = np.empty(max(nc, 1))",
        "for m in range(n):",
    ]
    member: list[str] = ["for i in range(nc):", "    C[i] = P[m, i]", "t = times[0]"]
    series = SERIES_LINES
    loads = [f"c_{name} = C[{i}]" for i, name in enumerate(constants)]
    member.extend(series)
    member.extend(loads)
    member.append("redo = False")
    # Knocked-out links: k_j holds the value the target sees (KV[j], or NaN for "the
    # source's value at the initial time", captured where the source is first computed).
    for j, (source, _) in enumerate(knockouts):
        member.append(f"k_{j} = 0.0")
        if source in parsed.constants:
            member.append(f"k_{j} = KV[{j}] if not np.isnan(KV[{j}]) else c_{source}")
            member.append(f"KOUT[m, {j}] = k_{j}")
    member.extend(init_lines)
    member.append("good = True")
    member.append("s = 0")
    member.append("for k in range(nt):")
    loop: list[str] = ["t = times[k]"]
    loop.extend(series)
    loop.append("if has_series:")
    loop.extend("    " + line for line in loads or ["pass"])
    for name in order:
        loop.append(f"v_{name} = {aux_code[name]}")
        for j in captures.get(name, []):
            loop.append("if k == 0:")
            loop.append(f"    k_{j} = KV[{j}] if not np.isnan(KV[{j}]) else v_{name}")
            loop.append(f"    KOUT[m, {j}] = k_{j}")
    loop.append("if record[k]:")
    for j, name in enumerate(recordable):
        var = ("c_" if name in parsed.constants else "v_") + name
        loop.append(f"    R[{j}] = {var}")
    loop.extend([
        "    for j in range(WANT.shape[0]):",
        "        if WANT[j] >= 0:",
        "            out[m, s, WANT[j]] = R[j]",
        "            if not np.isfinite(R[j]):",
        "                good = False",
        "    s += 1",
    ])
    loop.append("if k + 1 < nt:")
    loop.extend("    " + u for u in update)
    member.extend("    " + line for line in loop)
    if finals:
        member.append("if not (" + " and ".join(f"np.isfinite({v})" for v in finals) + "):")
        member.append("    good = False")
    member.append("ok[m] = 2 if redo else (1 if good else 0)")
    body.extend("    " + line for line in member)
    lines.extend("    " + line for line in body)
    return numba_source("\n".join(lines) + "\n"), arrays, constants, recordable, p.delays, p.defaults
