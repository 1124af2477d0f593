"""The compiled kernel written in JavaScript, so a page can simulate a model with no server.

The JavaScript is written from the same :class:`~pysd_runner.kernel_codegen.KernelPlan` as the
numba kernel: the same element order, PySD's Euler clock and save times, and the same
formulas for IF THEN ELSE, XIDZ/ZIDZ, MIN/MAX, STEP/RAMP/PULSE (TRAIN), lookups (numpy's
``interp``: linear, held flat outside the table), SMOOTH, DELAY and INITIAL, policies given
as time series, and knock-outs (each link a switch, so one file serves every combination).
It is plain modern JavaScript over Float64Arrays: no build step, no npm. A model the kernel
cannot translate raises :class:`~pysd_runner.kernel_codegen.KernelUnsupported` naming the element.

The generated file defines one object, ``crisisEngine`` (``module.exports`` under Node, a
global in a page or a Web Worker)::

    crisisEngine.constants      // Python names of the parameter slots
    crisisEngine.defaults       // their values in the model
    crisisEngine.recordable     // Python names of the values each saved step holds
    crisisEngine.links          // [[source, target], ...]: the knock-outs it can switch on
    crisisEngine.clock(t0, tf, dt, saveper)   // PySD's clock: {times, record, saved}
    crisisEngine.run({constants, series, initial_time, final_time, time_step, saveper, cut, held})

``run`` returns ``{time, values, width, redo, bad}``: the saved times, the values (saved
step-major, ``width`` = recordable count per step), ``redo`` when a DELAY's order times the
time step exceeds its delay time (PySD then lowers the order, which the kernel does not),
and ``bad``, the first saved value that is not finite (``{time, name}``) or null.
``constants`` is a Float64Array of slot values (defaults when absent), ``series`` a list of
``[slot, times, values]`` policies, ``cut`` a 0/1 flag per link and ``held`` the value
each cut link holds (NaN: the source's value at the initial time).
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass

import numpy as np

from .compiler import CompiledModel
from .inputs import merged_params, time_settings
from .scenarios import load_scenario
from .kernel_codegen import RPREC, SMALL_VENSIM, KernelUnsupported, plan

__all__ = ["WebEngine", "web_engine", "scenario_inputs", "JS_VERSION"]

#: Bumped whenever the generated JavaScript changes.
JS_VERSION = "1"

_MATH = {
    "exp": "Math.exp", "log": "Math.log", "log10": "Math.log10", "sqrt": "Math.sqrt", "abs": "Math.abs",
    "minimum": "Math.min", "maximum": "Math.max", "sin": "Math.sin", "cos": "Math.cos", "tan": "Math.tan",
    "arcsin": "Math.asin", "arccos": "Math.acos", "arctan": "Math.atan", "arctan2": "Math.atan2",
    "power": "Math.pow", "floor": "Math.floor", "ceil": "Math.ceil", "sign": "Math.sign", "tanh": "Math.tanh",
    "sinh": "Math.sinh", "cosh": "Math.cosh", "fmod": "_fmod", "mod": "_pmod", "interp": "_interp",
    "isnan": "Number.isNaN", "isfinite": "Number.isFinite",
}
_BUILTINS = {"abs": "Math.abs", "min": "Math.min", "max": "Math.max", "_xidz": "_xidz", "_zidz": "_zidz",
             "_pulse": "_pulse"}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE = {ast.Lt: "<", ast.Gt: ">", ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "(-Infinity)"
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


class _Expr:
    """A translated kernel expression (Python syntax over scalars) as JavaScript, with
    Python's semantics kept where the two languages differ: ``%`` takes the divisor's sign,
    ``**`` is Math.pow, and a condition is true unless it is 0 (NaN is true, as in Python)."""

    def __call__(self, node: ast.AST) -> str:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise KernelUnsupported("JavaScript", f"cannot write {ast.unparse(node)!r}")
        return method(node)

    def visit_Expression(self, node):
        return self(node.body)

    def visit_Constant(self, node):
        if isinstance(node.value, bool):
            return "true" if node.value else "false"
        if isinstance(node.value, (int, float)):
            return _number(float(node.value))
        raise KernelUnsupported("JavaScript", f"cannot write the literal {node.value!r}")

    def visit_Name(self, node):
        return node.id

    def visit_Attribute(self, node):
        text = ast.unparse(node)
        known = {"np.nan": "NaN", "np.inf": "Infinity", "np.pi": "Math.PI", "np.e": "Math.E"}
        if text not in known:
            raise KernelUnsupported("JavaScript", f"cannot write {text!r}")
        return known[text]

    def visit_Subscript(self, node):
        return f"{self(node.value)}[{self(node.slice)}]"

    def visit_BinOp(self, node):
        left, right = self(node.left), self(node.right)
        if type(node.op) in _BINOPS:
            return f"({left} {_BINOPS[type(node.op)]} {right})"
        if isinstance(node.op, ast.Pow):
            return f"Math.pow({left}, {right})"
        if isinstance(node.op, ast.Mod):
            return f"_pmod({left}, {right})"
        if isinstance(node.op, ast.FloorDiv):
            return f"Math.floor({left} / {right})"
        raise KernelUnsupported("JavaScript", f"cannot write the operator in {ast.unparse(node)!r}")

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.USub):
            return f"(-{self(node.operand)})"
        if isinstance(node.op, ast.UAdd):
            return f"(+{self(node.operand)})"
        if isinstance(node.op, ast.Not):
            return f"(!{self.condition(node.operand)})"
        raise KernelUnsupported("JavaScript", f"cannot write {ast.unparse(node)!r}")

    def visit_Compare(self, node):
        parts, left = [], node.left
        for op, right in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                raise KernelUnsupported("JavaScript", f"cannot write the comparison in {ast.unparse(node)!r}")
            parts.append(f"({self(left)} {_COMPARE[type(op)]} {self(right)})")
            left = right
        return parts[0] if len(parts) == 1 else "(" + " && ".join(parts) + ")"

    def visit_BoolOp(self, node):
        joiner = " && " if isinstance(node.op, ast.And) else " || "
        return "(" + joiner.join(self.condition(v) for v in node.values) + ")"

    def condition(self, node: ast.AST) -> str:
        if isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            return self(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return self(node)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.isnan", "np.isfinite"):
            return self(node)
        return f"({self(node)} != 0)"

    def visit_IfExp(self, node):
        return f"({self.condition(node.test)} ? {self(node.body)} : {self(node.orelse)})"

    def visit_Call(self, node):
        if node.keywords:
            raise KernelUnsupported("JavaScript", f"cannot write keyword arguments in {ast.unparse(node)!r}")
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np":
            name = _MATH.get(func.attr)
        elif isinstance(func, ast.Name):
            name = _BUILTINS.get(func.id)
        else:
            name = None
        if name is None:
            raise KernelUnsupported("JavaScript", f"cannot write the call {ast.unparse(func)!r}")
        return f"{name}({', '.join(self(a) for a in node.args)})"


_EXPR = _Expr()


def _expr(code: str) -> str:
    return _EXPR(ast.parse(code, mode="eval"))


def _statements(lines: list[str], indent: str) -> list[str]:
    """Python statements (assignments, ``if`` blocks, ``pass``) as JavaScript lines."""
    out: list[str] = []

    def write(stmts: list[ast.stmt], pad: str):
        for stmt in stmts:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                out.append(f"{pad}{stmt.targets[0].id} = {_EXPR(stmt.value)};")
            elif isinstance(stmt, ast.If):
                out.append(f"{pad}if ({_EXPR.condition(stmt.test)}) {{")
                write(stmt.body, pad + "  ")
                if stmt.orelse:
                    out.append(f"{pad}}} else {{")
                    write(stmt.orelse, pad + "  ")
                out.append(f"{pad}}}")
            elif isinstance(stmt, ast.Pass):
                continue
            else:
                raise KernelUnsupported("JavaScript", f"cannot write the statement {ast.unparse(stmt)!r}")

    write(ast.parse("\n".join(lines)).body, indent)
    return out


def _assigned(lines: list[str]) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


_RUNTIME = r'''
function _interp(x, xs, ys) {
  // numpy's interp (numba's copy of it): linear inside the table, the end values outside.
  const n = xs.length;
  if (Number.isNaN(x)) return x;
  if (x >= xs[n - 1]) return ys[n - 1];
  if (x < xs[0]) return ys[0];
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= x) lo = mid; else hi = mid;
  }
  if (xs[lo] === x) return ys[lo];
  const slope = (ys[lo + 1] - ys[lo]) / (xs[lo + 1] - xs[lo]);
  let y = slope * (x - xs[lo]) + ys[lo];
  if (Number.isNaN(y)) {
    y = slope * (x - xs[lo + 1]) + ys[lo + 1];
    if (Number.isNaN(y) && ys[lo] === ys[lo + 1]) y = ys[lo];
  }
  return y;
}

function _pmod(a, b) {
  // Python's float modulo: the result takes the divisor's sign.
  let m = a % b;
  if (m !== 0) {
    if ((b < 0) !== (m < 0)) m += b;
  } else {
    m = b < 0 ? -0 : 0;
  }
  return m;
}

function _fmod(a, b) { return a % b; }

function _xidz(a, b, x) { return Math.abs(b) < SMALL_VENSIM ? x : a / b; }

function _zidz(a, b) { return Math.abs(b) < SMALL_VENSIM ? 0.0 : a / b; }

function _pulse(t, dt, start, repeatTime, width, magnitude, end) {
  // PySD's pulse: width defaults to half a time step, magnitude to 1 per pulse, and a
  // train stops at `end` (NaN: not given).
  if (Number.isNaN(width)) width = 0.5 * dt;
  const out = Number.isNaN(magnitude) ? 1.0 : magnitude / dt;
  if (repeatTime === 0) return (start - SMALL_VENSIM <= t && t < start + width) ? out : 0.0;
  if (start <= t && (Number.isNaN(end) || t < end)) {
    return _pmod(t - start + SMALL_VENSIM, repeatTime) < width ? out : 0.0;
  }
  return 0.0;
}

function _rint(x) {
  const r = Math.round(x);
  return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

function clock(t0, tf, dt, saveper) {
  // PySD's clock: one step added at a time; the steps before the final time, plus the
  // first past it; saved where the elapsed time is a multiple of SAVEPER (to RPREC).
  const prec = dt * RPREC;
  const count = Math.ceil((tf - t0) / dt) + 3;
  const all = new Float64Array(count + 1);
  all[0] = t0;
  for (let i = 1; i <= count; i++) all[i] = all[i - 1] + dt;
  let last = all.length - 1;
  for (let i = 0; i < all.length; i++) {
    if (!(all[i] + prec < tf)) { last = i; break; }
  }
  const times = all.slice(0, last + 1);
  const record = new Uint8Array(times.length);
  const saved = [];
  const decimals = -Math.trunc(Math.log10(prec));
  const scale = Math.pow(10, decimals);
  for (let i = 0; i < times.length; i++) {
    const delay = times[i] - t0;
    if (_pmod(delay, saveper) < prec || _pmod(-delay, saveper) < prec) {
      record[i] = 1;
      saved.push(_rint(times[i] * scale) / scale);
    }
  }
  return { times, record, saved: Float64Array.from(saved) };
}

function run(options) {
  const o = options || {};
  const C = new Float64Array(Math.max(DEFAULTS.length, 1));
  C.set(o.constants || DEFAULTS);
  const S = new Array(C.length).fill(null);
  for (const [slot, xs, ys] of o.series || []) S[slot] = [Float64Array.from(xs), Float64Array.from(ys)];
  const T0 = Number(o.initial_time ?? SETTINGS.initial_time);
  const TF = Number(o.final_time ?? SETTINGS.final_time);
  const DT = Number(o.time_step ?? SETTINGS.time_step);
  const SAVEPER = Number(o.saveper ?? SETTINGS.saveper);
  const grid = clock(T0, TF, DT, SAVEPER);
  const KA = new Uint8Array(Math.max(LINKS.length, 1));
  if (o.cut) KA.set(o.cut);
  const KV = new Float64Array(Math.max(LINKS.length, 1)).fill(NaN);
  if (o.held) KV.set(o.held);
  const out = new Float64Array(grid.saved.length * RECORDABLE.length);
  const res = step(C, S, grid.times, grid.record, DT, T0, TF, SAVEPER, KV, KA, out);
  const bad = res.badStep < 0 ? null : { time: grid.saved[res.badStep], name: RECORDABLE[res.badIndex] };
  return { time: grid.saved, values: out, width: RECORDABLE.length, redo: res.redo, bad };
}
'''


@dataclass
class WebEngine:
    """A model's generated JavaScript and what a page needs to call it."""

    source: str
    constants: list[str]
    defaults: np.ndarray
    recordable: list[str]
    links: tuple[tuple[str, str], ...]


def web_engine(model: CompiledModel, links: tuple[tuple[str, str], ...] | list = ()) -> WebEngine:
    """The model as one JavaScript file (see the module docs), with each of ``links``
    (``(source, target)``, Python names) a knock-out the caller can switch on per run."""
    links = tuple(tuple(link) for link in links)
    p = plan(model, links, switchable=True)
    constants, order, parsed = p.constants, p.order, p.parsed
    lines = [
        f"// Generated by pysd_runner.javascript (version {JS_VERSION}) from PySD's translation of",
        f"// {model.source.name}; do not edit.",
        "(function (root) {",
        '"use strict";',
        f"const SMALL_VENSIM = {SMALL_VENSIM!r};",
        f"const RPREC = {RPREC!r};",
    ]
    for key, values in p.arrays.items():
        lines.append(f"const {key} = new Float64Array([{', '.join(_number(v) for v in values)}]);")
    lines.append(f"const CONSTANTS = {json.dumps(constants)};")
    lines.append(f"const DEFAULTS = new Float64Array([{', '.join(_number(v) for v in p.defaults)}]);")
    lines.append(f"const RECORDABLE = {json.dumps(p.recordable)};")
    lines.append(f"const LINKS = {json.dumps([list(link) for link in links])};")
    settings = {k: float(v) for k, v in time_settings(model, None).items()
                if k in ("initial_time", "final_time", "time_step", "saveper")}
    lines.append(f"const SETTINGS = {json.dumps(settings)};")
    lines.append(_RUNTIME)

    init_body = _statements(p.init_lines, "  ")
    update_body = _statements(p.update, "      ")
    locals_ = ({f"c_{n}" for n in constants} | {f"v_{n}" for n in order} | {f"k_{j}" for j in range(len(links))}
               | _assigned(p.init_lines) | _assigned(p.update) | {"redo"})
    locals_ = sorted(locals_)
    loads = [f"c_{name} = C[{i}];" for i, name in enumerate(constants)]
    body = ["function step(C, S, times, record, DT, T0, TF, SAVEPER, KV, KA, out) {"]
    for i in range(0, len(locals_), 8):
        body.append("  let " + ", ".join(f"{n} = 0.0" for n in locals_[i:i + 8]) + ";")
    body += [
        "  const nt = times.length;",
        "  const NR = RECORDABLE.length;",
        "  let hasSeries = false;",
        "  for (let i = 0; i < S.length; i++) if (S[i] !== null) hasSeries = true;",
        "  let t = times[0];",
        "  if (hasSeries) for (let i = 0; i < S.length; i++) if (S[i] !== null) C[i] = _interp(t, S[i][0], S[i][1]);",
    ]
    body += ["  " + line for line in loads]
    body.append("  redo = false;")
    for j, (source, _) in enumerate(links):
        if source in parsed.constants:
            body.append(f"  k_{j} = Number.isNaN(KV[{j}]) ? c_{source} : KV[{j}];")
    body += init_body
    body += ["  let s = 0, badStep = -1, badIndex = -1;", "  for (let k = 0; k < nt; k++) {", "    t = times[k];",
             "    if (hasSeries) {",
             "      for (let i = 0; i < S.length; i++) if (S[i] !== null) C[i] = _interp(t, S[i][0], S[i][1]);"]
    body += ["      " + line for line in loads]
    body.append("    }")
    for name in order:
        body.append(f"    v_{name} = {_expr(p.aux_code[name])};")
        for j in p.captures.get(name, []):
            body.append(f"    if (k === 0) k_{j} = Number.isNaN(KV[{j}]) ? v_{name} : KV[{j}];")
    body.append("    if (record[k]) {")
    body.append("      const row = s * NR;")
    for j, name in enumerate(p.recordable):
        var = ("c_" if name in parsed.constants else "v_") + name
        body.append(f"      out[row + {j}] = {var};")
    body += [
        "      if (badStep < 0) {",
        "        for (let j = 0; j < NR; j++) {",
        "          if (!Number.isFinite(out[row + j])) { badStep = s; badIndex = j; break; }",
        "        }",
        "      }",
        "      s += 1;",
        "    }",
        "    if (k + 1 < nt) {",
    ]
    body += update_body
    body += ["    }", "  }", "  return { redo, badStep, badIndex };", "}"]
    lines += body
    lines += [
        "const engine = { constants: CONSTANTS, defaults: DEFAULTS, recordable: RECORDABLE, links: LINKS,",
        "                 settings: SETTINGS, clock, run };",
        'if (typeof module === "object" && module.exports) module.exports = engine;',
        "else root.crisisEngine = engine;",
        '})(typeof self !== "undefined" ? self : globalThis);',
    ]
    return WebEngine("\n".join(lines) + "\n", list(constants), p.defaults, list(p.recordable), links)


def scenario_inputs(model: CompiledModel, scenario=None) -> dict:
    """A scenario as a page's engine takes it: ``constants`` (Python name -> number, the
    values it sets), ``policies`` (Python name -> ``[times, values]``) and ``time`` (the four
    time settings, numbers)."""
    scen = load_scenario(scenario, model) if scenario is not None else None
    params = merged_params(model, scen, None, True)
    settings = time_settings(model, scen, params)
    constants = {k: float(v) for k, v in params.items() if not isinstance(v, tuple)}
    policies = {k: [[float(x) for x in v[0]], [float(y) for y in v[1]]] for k, v in params.items() if isinstance(v, tuple)}
    time = {k: float(settings[k]) for k in ("initial_time", "final_time", "time_step", "saveper")}
    return {"constants": constants, "policies": policies, "time": time}
