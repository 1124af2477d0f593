"""The stepper's block function: many members of one parameter set, stepped in SIMD lanes.

A particle filter steps thousands of members that share every constant and differ only in
their states and noise. :func:`pysd_runner.stepper.generate_stepper` writes, beside the
member-by-member ``advance``, a second function, ``advance_block``, that keeps the states of
one such block as rows (one row per state, one column per member) and loops over members
innermost, so that LLVM runs eight members at a time in AVX-512 lanes (four in AVX2). For
that the loop body must be free of calls LLVM cannot widen and of loads it cannot bound:

- ``exp``, ``log`` and ``**`` go to :data:`VECTOR_HELPERS`: range reduction and a polynomial
  in plain arithmetic (within 1-2 ulp of the C library, so results differ from ``advance`` in
  the last bits, about 1e-14 relative after hundreds of steps), with 2**k built from bits;
- each lookup with a table known at generation time becomes straight-line code: a
  bisection of fixed depth, then the same interpolation as numpy's;
- the constants of the block are scalars before the time loop, and the noise of a step is
  drawn (from the same hashed table as ``advance``) into a row per stock before the member
  loop;
- the function is compiled with LLVM's ``contract`` and ``arcp`` flags (fused multiply-adds,
  division by a constant as multiplication by its reciprocal), each within an ulp.

LLVM runs the members that do not fill a vector in a scalar copy of the loop, whose
roundings can differ in the last bit; :class:`~pysd_runner.stepper.Stepper` cuts blocks for
its threads so that these are always the same members, and results do not depend on the
number of threads.

Nothing here changes a model's equations; a model whose code does not vectorise still runs,
only without the speed-up. :class:`pysd_runner.stepper.Stepper` chooses the block function
for members that share their constants and noise levels (``vector=False`` turns it off).
"""

from __future__ import annotations

import ast
import math
import re

import numpy as np

__all__ = ["VECTOR_HELPERS", "vector_code", "lookup_function", "allow_alias_checks"]

VECTOR_HELPERS = r'''
from numba.extending import intrinsic as _intrinsic
from numba.core import types as _types
from llvmlite import ir as _ir


@_intrinsic
def _i2f(typingctx, x):
    # The float64 whose bits are the int64 x (no conversion: a bit cast LLVM can widen).
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.DoubleType())
    return _types.float64(_types.int64), codegen


@_intrinsic
def _f2i(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.IntType(64))
    return _types.int64(_types.float64), codegen


@njit(inline="always", error_model="numpy", cache=True, fastmath={"contract"})
def _vexp(x):
    # exp(x) = 2**k exp(r), |r| <= ln 2 / 2 (Cody-Waite), exp(r) by its Taylor series to
    # r**12 (truncation below 2e-16 relative); 2**k in two factors so that k = 1024 stays
    # exact. Below -708 the result would be subnormal: it is 0 here, because arithmetic on
    # subnormals costs a hundred cycles a lane (and 1 + 1e-308 is 1 anyway).
    xc = min(max(x, -708.0), 710.0)
    k = np.floor(xc * 1.4426950408889634 + 0.5)
    r = xc - k * 0.6931471803691238 - k * 1.9082149292705877e-10
    p = 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ki = np.int64(k)
    k1 = ki >> 1
    y = p * _i2f((k1 + 1023) << 52) * _i2f((ki - k1 + 1023) << 52)
    y = np.inf if x > 709.782712893384 else y
    y = 0.0 if x < -708.0 else y
    return x if x != x else y


@njit(inline="always", error_model="numpy", cache=True, fastmath={"contract"})
def _vlog(x):
    # x = m 2**e with m in [sqrt(1/2), sqrt(2)); log x = e ln 2 + 2 atanh(s), s = (m-1)/(m+1),
    # the series to s**21 (|s| < 0.172: truncation below 1e-17).
    sub = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if sub else x
    bits = _f2i(xs)
    e = ((bits >> 52) & 2047) - 1023
    m = _i2f((bits & 4503599627370495) | 4607182418800017408)
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    e = e - 54 if sub else e
    f = m - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    q = 0.09523809523809523
    q = q * s2 + 0.10526315789473684
    q = q * s2 + 0.11764705882352941
    q = q * s2 + 0.13333333333333333
    q = q * s2 + 0.15384615384615385
    q = q * s2 + 0.18181818181818182
    q = q * s2 + 0.2222222222222222
    q = q * s2 + 0.2857142857142857
    q = q * s2 + 0.4
    q = q * s2 + 0.6666666666666666
    fe = np.float64(e)
    y = fe * 0.6931471803691238 + (f - s * (f - s2 * q)) + fe * 1.9082149292705877e-10
    y = -np.inf if x == 0.0 else y
    y = np.nan if x < 0.0 else y
    return x if (x != x or x == np.inf) else y


@njit(inline="always", error_model="numpy", cache=True, fastmath={"contract"})
def _vpow(x, y):
    # x ** y as exp(y log |x|), with the sign of a negative base to a whole power, NaN for a
    # negative base to a fractional one, and x ** 0 = 1, as Python's float power.
    r = _vexp(y * _vlog(abs(x)))
    whole = y == np.floor(y)
    odd = whole and np.floor(0.5 * y) * 2.0 != y
    r = -r if (x < 0.0 and odd) else r
    r = np.nan if (x < 0.0 and not whole) else r
    return 1.0 if y == 0.0 else r


@njit(inline="always", error_model="numpy", cache=True)
def _ipow2(x):
    return x * x


@njit(inline="always", error_model="numpy", cache=True)
def _ipow3(x):
    return x * x * x


@njit(inline="always", error_model="numpy", cache=True)
def _ipow4(x):
    y = x * x
    return y * y
'''


class _Widen(ast.NodeTransformer):
    """exp, log, ** and lookups on known tables to their vectorisable forms."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.lookups: set[tuple[str, str]] = set()

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if not isinstance(node.op, ast.Pow):
            return node
        e = node.right
        if isinstance(e, ast.Constant) and isinstance(e.value, (int, float)) and float(e.value) in (1.0, 2.0, 3.0, 4.0):
            if float(e.value) == 1.0:
                return node.left
            return ast.Call(ast.Name(f"_ipow{int(e.value)}", ast.Load()), [node.left], [])
        return ast.Call(ast.Name("_vpow", ast.Load()), [node.left, node.right], [])

    def visit_Call(self, node):
        self.generic_visit(node)
        name = ast.unparse(node.func)
        if name == "np.exp" and len(node.args) == 1:
            node.func = ast.Name("_vexp", ast.Load())
        elif name == "np.log" and len(node.args) == 1:
            node.func = ast.Name("_vlog", ast.Load())
        elif name in ("np.interp", "_interp") and len(node.args) == 3 \
                and all(isinstance(a, ast.Name) and a.id in self.arrays for a in node.args[1:]):
            xp, fp = node.args[1].id, node.args[2].id
            self.lookups.add((xp, fp))
            return ast.Call(ast.Name(f"_lookup_{xp}_{fp}", ast.Load()), [node.args[0]], [])
        return node


def vector_code(codes: list[str], arrays: dict[str, np.ndarray]) -> tuple[list[str], set[tuple[str, str]]]:
    """Generated statements or expressions rewritten for the block function, and the lookups
    (pairs of table names) they now call."""
    widen = _Widen(arrays)
    out = []
    for code in codes:
        tree = widen.visit(ast.parse(code))
        ast.fix_missing_locations(tree)
        out.append(ast.unparse(tree))
    return out, widen.lookups


def lookup_function(xp_name: str, fp_name: str, xp: np.ndarray) -> str:
    """A lookup on fixed tables as straight-line code: numpy's interp (ends held, exact at the
    points, the last of repeated points) by a bisection of fixed depth."""
    n = int(xp.shape[0])
    head = ['@njit(inline="always", error_model="numpy", cache=True)', f"def _lookup_{xp_name}_{fp_name}(x):",
            f"    xp = {xp_name}", f"    fp = {fp_name}"]
    if n == 1:
        return "\n".join(head + ["    return fp[0]"])
    body = [f"    xc = min(max(x, xp[0]), xp[{n - 1}])", "    lo = 0", f"    hi = {n - 1}"]
    for _ in range(max(1, math.ceil(math.log2(n - 1)) if n > 2 else 1)):
        body += ["    mid = (lo + hi) >> 1", "    ge = xc >= xp[mid]", "    lo = mid if ge else lo",
                 "    hi = hi if ge else mid"]
    body += [f"    j = min(lo, {n - 2})",
             "    y = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]) * (xc - xp[j]) + fp[j]",
             "    y = fp[j] if xc == xp[j] else y",
             "    y = fp[j + 1] if xc == xp[j + 1] else y",
             "    y = fp[j] if (y != y and fp[j] == fp[j + 1]) else y",
             "    y = fp[0] if x < xp[0] else y",
             f"    y = fp[{n - 1}] if x > xp[{n - 1}] else y",
             "    return x if x != x else y"]
    return "\n".join(head + body)


_ALIAS_CHECKS = False


def allow_alias_checks() -> None:
    """Let LLVM vectorise a loop that needs many runtime alias checks.

    The block function stores every state's row and reads the noise rows; LLVM proves these do
    not overlap by a check per pair at the loop's entry (once per time step, several hundred
    comparisons against a body run over thousands of members), but by default gives up above
    8 pairs. The options are process-wide; they only let more loops vectorise, and without
    fast-math flags a vectorised elementwise loop computes exactly what the scalar one does.
    """
    global _ALIAS_CHECKS
    if _ALIAS_CHECKS:
        return
    import llvmlite.binding as llvm

    llvm.set_option("", "-runtime-memory-check-threshold=4096")
    llvm.set_option("", "-vectorize-memory-check-threshold=4096")
    _ALIAS_CHECKS = True


def reads(code: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\b{prefix}_(\w+)", code))
