"""The compiled kernel as a state stepper: what filters need from a model.

:mod:`pysd_runner.kernel` runs members from the initial time to the final time. A Kalman or
particle filter instead stops at every observation, corrects the states and goes on, and adds
process noise to chosen stocks along the way. This module writes the same
:class:`~pysd_runner.kernel_codegen.KernelPlan` (the one translation every compiled engine
shares) as a second numba function, ``advance``, over a matrix of states, one row per member:

- with ``init`` the members first compute their initial states (the model's own
  initialisation); otherwise they start from the states given;
- they take PySD's Euler steps ``k0 .. k1 - 1`` of the clock (:func:`pysd_runner.kernel.clock_grid`),
  evaluating only the auxiliaries the state update needs;
- after each step, each stock with process noise moves by ``sd * sqrt(TIME STEP) * z``, or,
  on a log scale, is multiplied by ``exp(sd * sqrt(TIME STEP) * z - sd^2 TIME STEP / 2)`` (which
  keeps a positive stock positive and its mean unchanged); a stock the model keeps non-negative
  (a non-negative INTEG) is floored at 0 after the noise as after its own update;
- at time ``k1`` every auxiliary is evaluated and the requested ones are returned with the
  new states.

The noise ``z`` is a standard normal read from a table by a hash of (key, stream, step,
state), so the same key gives the same draws (common random numbers: a likelihood that
changes smoothly with the parameters) on any number of threads, and a filter that resamples
particles keeps drawing from each slot's stream.

The same module holds ``advance_block`` (:mod:`pysd_runner.stepper_vector`): the steps of
members that share every constant (a particle filter's particles), eight at a time in SIMD
lanes. :meth:`Stepper.advance` uses it wherever members come in such runs, and the
member-by-member function for the first and last evaluation of an interval (the model's
initialisation, the requested outputs and the finite check).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compiler import CompiledModel
from .files import atomic_output, atomic_write
from .kernel import clock_grid, constant_inputs
from .kernel_codegen import (HELPERS, KERNEL_VERSION, RPREC, SERIES_LINES, SMALL_VENSIM, KernelUnsupported, numba_source,
                             plan, state_var)
from .stepper_vector import VECTOR_HELPERS, allow_alias_checks, lookup_function, reads, vector_code

__all__ = ["Stepper", "StateVariable", "Noise", "stepper_for", "normal_table", "run_inputs"]

STEPPER_VERSION = "2"
#: The shortest run of members sharing their constants that the block function steps.
BLOCK_MIN = 16
#: Blocks are cut for threads at multiples of this many members (a multiple of any vector width).
BLOCK_ALIGN = 64
_CORES = os.cpu_count() or 1

_NOISE_HELPERS = '''
@njit(inline="always", error_model="numpy", cache=True)
def _draw(table, mask, key, stream, step, state):
    x = key ^ (stream * -7046029254386353131) ^ (step * -4658895280553007687) ^ (state * 7640891576956012809)
    x = (x ^ (x >> 31)) * -4658895280553007687
    x = (x ^ (x >> 29)) * -7723592293110705685
    x = x ^ (x >> 32)
    return table[x & mask]


@njit(inline="always", error_model="numpy", cache=True)
def _noisy(value, sd, logscale, floor, z, sqdt, dt):
    if logscale:
        value = value * np.exp(sd * sqdt * z - 0.5 * sd * sd * dt)
    else:
        value = value + sd * sqdt * z
    if floor and value < 0.0:
        value = 0.0
    return value
'''


@dataclass(frozen=True)
class StateVariable:
    """One state of the model: a stock (INTEG), a level of a SMOOTH or DELAY, or an INITIAL."""

    name: str            # the state's name in the generated code
    element: str         # the Python name of the model element whose value it is (or that reads it)
    vensim: str          # that element's Vensim name
    kind: str            # integ, nonneg, smooth, delay, initial
    level: int = 0       # the level of a SMOOTH or DELAY of higher order

    @property
    def is_stock(self) -> bool:
        return self.kind in ("integ", "nonneg")

    @property
    def dynamic(self) -> bool:
        """Whether it changes along a run (an INITIAL does not)."""
        return self.kind != "initial"


@dataclass
class Noise:
    """Process noise for one call: ``states`` (indices into :attr:`Stepper.states`), ``sd`` per
    member and state (per square root of the model's time unit), ``log`` per state, the key of
    the common random numbers and each member's stream."""

    states: np.ndarray
    sd: np.ndarray
    log: np.ndarray
    key: int
    streams: np.ndarray


def normal_table(seed: int, bits: int = 16) -> np.ndarray:
    """The table of standard normals that noise is read from: 2**bits draws from ``seed``, made
    exactly of mean 0 and variance 1 (so that a table never scales the noise it serves). 2**16
    entries (512 kB) stay in a core's cache; a bigger table costs more in cache misses than
    the whole model step."""
    draws = np.random.default_rng(seed).standard_normal(2**bits)
    draws -= draws.mean()
    return draws / draws.std()


def _reads(code: str) -> set[str]:
    return set(re.findall(r"\bv_(\w+)", code))


def generate_stepper(model: CompiledModel):
    """The stepper's source (numba), its arrays, the plan and the state variables."""
    p = plan(model)
    parsed = p.parsed
    states: list[StateVariable] = []
    for obj, st in parsed.statefuls.items():
        reader = parsed.reader_of.get(obj, obj)
        count = st.order if st.kind in ("smooth", "delay") else 1
        for i in range(count):
            states.append(StateVariable(state_var(obj, i), reader, parsed.vensim.get(reader, reader), st.kind, i))
    # The auxiliaries a step needs: those the update reads, and what they read.
    needed: set[str] = set()
    frontier = set().union(*(_reads(line) for line in p.update)) if p.update else set()
    while frontier:
        name = frontier.pop()
        if name in needed or name not in p.aux_code:
            continue
        needed.add(name)
        frontier |= _reads(p.aux_code[name]) - needed
    step_order = [name for name in p.order if name in needed]
    lines = [
        '"""Generated by pysd_runner.stepper from a PySD translation; do not edit."""',
        "import numpy as np",
        "from numba import njit",
        f"SMALL_VENSIM = {SMALL_VENSIM!r}",
        "_ARRAYS = np.load(__file__[:-3] + '.npz')",
    ]
    for key in p.arrays:
        lines.append(f"{key} = _ARRAYS['{key}']")
    lines.append(HELPERS)
    lines.append(_NOISE_HELPERS)
    lines.append('@njit(error_model="numpy", cache=True, nogil=True)')
    lines.append("def advance(P, SIDX, SX, SY, SL, times, k0, k1, DT, INIT, S, NZ, NSD, NLOG, NFLOOR, NKEY, NBASE, "
                 "NTAB, WANT, out, ok):")
    body = [
        "n = P.shape[0]",
        "nc = P.shape[1]",
        "has_series = False",
        "for i in range(SIDX.shape[0]):",
        "    if SIDX[i] >= 0:",
        "        has_series = True",
        f"R = np.empty({len(p.recordable)})",
        "C = np.empty(max(nc, 1))",
        "mask = NTAB.shape[0] - 1",
        "sqdt = np.sqrt(DT)",
        "for m in range(n):",
    ]
    series = SERIES_LINES
    loads = [f"c_{name} = C[{i}]" for i, name in enumerate(p.constants)]
    member = ["for i in range(nc):", "    C[i] = P[m, i]", "t = times[k0]", *series, *loads, "redo = False"]
    member.append("if INIT:")
    member.extend("    " + line for line in p.init_lines or ["pass"])
    member.append("else:")
    member.extend(f"    {st.name} = S[m, {i}]" for i, st in enumerate(states))
    if not states:
        member.append("    pass")
    member.append("for k in range(k0, k1):")
    loop = ["t = times[k]", *series, "if has_series:", *("    " + line for line in loads or ["pass"])]
    loop.extend(f"v_{name} = {p.aux_code[name]}" for name in step_order)
    loop.extend(u for u in p.update if u != "pass")
    for i, st in enumerate(states):
        if not st.dynamic:
            continue
        loop.append(f"if NZ[{i}] >= 0:")
        loop.append(f"    {st.name} = _noisy({st.name}, NSD[m, NZ[{i}]], NLOG[NZ[{i}]], NFLOOR[{i}], "
                    f"_draw(NTAB, mask, NKEY, NBASE[m], k, {i}), sqdt, DT)")
    loop.append("pass")
    member.extend("    " + line for line in loop)
    member.extend(["t = times[k1]", *series, "if has_series:", *("    " + line for line in loads or ["pass"])])
    member.extend(f"v_{name} = {p.aux_code[name]}" for name in p.order)
    for j, name in enumerate(p.recordable):
        var = ("c_" if name in parsed.constants else "v_") + name
        member.append(f"R[{j}] = {var}")
    member.extend([
        "good = True",
        "for j in range(WANT.shape[0]):",
        "    out[m, j] = R[WANT[j]]",
    ])
    member.extend(f"S[m, {i}] = {st.name}" for i, st in enumerate(states))
    if states:
        member.append("if not (" + " and ".join(f"np.isfinite({st.name})" for st in states) + "):")
        member.append("    good = False")
    member.append("ok[m] = 2 if redo else (1 if good else 0)")
    body.extend("    " + line for line in member)
    lines.extend("    " + line for line in body)
    lines.extend(_block_function(p, step_order, states))
    return numba_source("\n".join(lines) + "\n"), p, states


def _block_function(p, step_order: list[str], states: list[StateVariable]) -> list[str]:
    """``advance_block``: steps ``k0 .. k1 - 1`` of members that share their constants ``C`` and
    noise levels ``NSD``, states as rows of ``ST`` (see :mod:`pysd_runner.stepper_vector`)."""
    codes, lookups = vector_code([p.aux_code[name] for name in step_order] + [u for u in p.update if u != "pass"],
                                 p.arrays)
    aux, update = codes[:len(step_order)], codes[len(step_order):]
    used = set().union(*(reads(code, "c") for code in codes)) if codes else set()
    lines = [VECTOR_HELPERS]
    lines.extend(lookup_function(xp, fp, p.arrays[xp]) + "\n" for xp, fp in sorted(lookups))
    lines.append('@njit(error_model="numpy", cache=True, nogil=True, fastmath={"contract", "arcp"})')
    lines.append("def advance_block(C, times, k0, k1, DT, n, ST, Z, IDX, NZ, NSD, NLOG, NFLOOR, NKEY, NBASE, NTAB):")
    body = ["mask = NTAB.shape[0] - 1",
            "sqdt = np.sqrt(DT)"]
    body.extend(f"c_{name} = C[{i}]" for i, name in enumerate(p.constants) if name in used)
    # Loop-invariant noise settings as scalars: LLVM cannot bound an index it reloads.
    for i, st in enumerate(states):
        if st.dynamic:
            body.extend([f"nz_{i} = NZ[{i}]", f"log_{i} = NLOG[max(nz_{i}, 0)]", f"floor_{i} = NFLOOR[{i}]",
                         f"sd_{i} = NSD[max(nz_{i}, 0)]"])
    # Auxiliaries that depend only on constants and time are the same for every member: they
    # are computed once per step, before the member loop.
    state_names = {st.name for st in states}
    uniform: set[str] = set()
    for name, code in zip(step_order, aux):
        words = set(re.findall(r"\b\w+\b", code))
        if not words & state_names and reads(code, "v") <= uniform:
            uniform.add(name)
    step = ["for k in range(k0, k1):", "    t = times[k]"]
    step.extend(f"    v_{name} = {code}" for name, code in zip(step_order, aux) if name in uniform)
    step.extend([
        # The draws first, into rows: a table read inside the member loop would stop LLVM
        # (the hash in one loop, which LLVM widens, the table reads in another, which it cannot).
        "    for i in range(NZ.shape[0]):", "        if NZ[i] >= 0:",
        "            mix = NKEY ^ (k * -4658895280553007687) ^ (i * 7640891576956012809)",
        "            for m in range(n):",
        "                x = mix ^ (NBASE[m] * -7046029254386353131)",
        "                x = (x ^ (x >> 31)) * -4658895280553007687",
        "                x = (x ^ (x >> 29)) * -7723592293110705685",
        "                IDX[m] = (x ^ (x >> 32)) & mask",
        "            for m in range(n):",
        "                Z[i, m] = NTAB[IDX[m]]",
        "    for m in range(n):"])
    inner = [f"{st.name} = ST[{i}, m]" for i, st in enumerate(states)]
    inner.extend(f"v_{name} = {code}" for name, code in zip(step_order, aux) if name not in uniform)
    inner.extend(update)
    for i, st in enumerate(states):
        if not st.dynamic:
            continue
        inner.extend([
            f"if nz_{i} >= 0:",
            f"    if log_{i}:",
            f"        {st.name} = {st.name} * _vexp(sd_{i} * sqdt * Z[{i}, m] - 0.5 * sd_{i} * sd_{i} * DT)",
            "    else:",
            f"        {st.name} = {st.name} + sd_{i} * sqdt * Z[{i}, m]",
            f"    if floor_{i} and {st.name} < 0.0:",
            f"        {st.name} = 0.0",
        ])
    inner.extend(f"ST[{i}, m] = {st.name}" for i, st in enumerate(states))
    step.extend("        " + line for line in inner)
    body.extend(step)
    lines.extend("    " + line for line in body)
    return lines


@dataclass
class Stepper:
    """A model's compiled state stepper; see the module docstring."""

    model: CompiledModel
    function: Any
    constants: list[str]
    recordable: list[str]
    defaults: np.ndarray
    states: list[StateVariable]
    block: Any = None
    _buffers: threading.local = field(default_factory=threading.local, repr=False)

    def state_index(self, element: str) -> int:
        """The index of a stock's state, by the stock's Python name."""
        for i, st in enumerate(self.states):
            if st.element == element and st.is_stock:
                return i
        raise KeyError(element)

    def inputs(self, values: dict[str, np.ndarray], n: int, fixed: dict[str, Any]):
        """The constants matrix and time series of ``n`` members (as :meth:`Kernel.run` builds them)."""
        return constant_inputs(self.constants, self.defaults, values, n, fixed)

    def advance(self, inputs, times: np.ndarray, dt: float, k0: int, k1: int, S: np.ndarray, *, init: bool = False,
                noise: Noise | None = None, table: np.ndarray | None = None, outputs: np.ndarray | None = None,
                threads: int | None = None, vector: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Take steps ``k0 .. k1 - 1`` of ``times`` for every row of ``S`` (changed in place).

        Returns the requested recordables (indices into :attr:`recordable`) at ``times[k1]``,
        one row per member, and each member's status (1 finite, 0 not).

        Members that share their constants and noise levels in runs of at least
        :data:`BLOCK_MIN` (a particle filter's particles, a Kalman filter's difference members)
        are stepped by the block function in SIMD lanes; their states then differ from
        ``vector=False`` in the last bits (see :mod:`pysd_runner.stepper_vector`).
        """
        blocks = self._blocks(inputs, noise, k0, k1) if vector and self.block is not None else None
        if blocks is not None:
            from numba.core.errors import NumbaError

            if init:
                self._advance(inputs, times, dt, k0, k0, S, True, None, None, None, threads)
                init = False
            try:
                self._advance_blocks(blocks, inputs, times, dt, k0, k1, S, noise, table, threads)
                return self._advance(inputs, times, dt, k1, k1, S, False, None, None, outputs, threads)
            except NumbaError:
                # A model whose code the block function cannot type (S is only written after a
                # piece has run, so nothing has moved yet): it steps member by member from now on.
                self.block = None
        return self._advance(inputs, times, dt, k0, k1, S, init, noise, table, outputs, threads)

    def _blocks(self, inputs, noise: Noise | None, k0: int, k1: int) -> list[tuple[int, int]] | None:
        """Runs of members with the same constants and noise levels, or None when the block
        function does not apply (no steps, time-series constants, runs too short)."""
        P, sidx = inputs[0], inputs[1]
        n = P.shape[0]
        if k1 <= k0 or n < BLOCK_MIN or (np.asarray(sidx) >= 0).any():
            return None
        change = _changes(P)
        if noise is not None and len(noise.states):
            change |= _changes(np.broadcast_to(noise.sd, (n, len(noise.states))))
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        ends = np.concatenate([starts[1:], [n]])
        if (ends - starts).min() < BLOCK_MIN:
            return None
        return list(zip(starts.tolist(), ends.tolist()))

    def _noise_arrays(self, noise: Noise | None, table: np.ndarray | None, n: int):
        """The generated functions' noise arguments: each state's noise slot (-1 for none), sd
        per member and slot, log scale per slot, floor per state, key, streams, table."""
        ns = len(self.states)
        nz = np.full(max(ns, 1), -1, dtype=np.int64)
        floor = np.array([st.kind == "nonneg" for st in self.states] or [False])
        if noise is not None and len(noise.states):
            nz[np.asarray(noise.states, dtype=np.int64)] = np.arange(len(noise.states))
            nsd = np.ascontiguousarray(np.broadcast_to(noise.sd, (n, len(noise.states))), dtype=float)
            nlog = np.asarray(noise.log, dtype=np.bool_)
            key = int(np.int64(np.uint64(noise.key & (2**64 - 1)).view(np.int64)))
            base = np.ascontiguousarray(np.broadcast_to(noise.streams, (n,)), dtype=np.int64)
        else:
            nsd, nlog, key, base = np.zeros((n, 1)), np.zeros(1, np.bool_), 0, np.zeros(n, np.int64)
        return nz, nsd, nlog, floor, key, base, (np.zeros(1) if table is None else table)

    def _advance_blocks(self, blocks, inputs, times, dt, k0, k1, S, noise, table, threads) -> None:
        n, ns = S.shape
        nz, nsd, nlog, floor, key, base, table = self._noise_arrays(noise, table, n)
        P = inputs[0]
        threads = max(1, min(threads or _CORES, n // BLOCK_MIN))
        # Pieces for the threads: each block cut at multiples of BLOCK_ALIGN members from its
        # start. LLVM runs the members that do not fill a vector in a scalar loop, whose
        # roundings differ in the last bit, so which members those are must not depend on the
        # number of threads: with aligned cuts they are always the last ones of the block.
        size = BLOCK_ALIGN * int(math.ceil(n / threads / BLOCK_ALIGN))
        pieces = [(c, min(c + size, b)) for a, b in blocks for c in range(a, b, size)]

        # Each piece's arrays (see _workspace) are allocated here, before the threads start
        # (pages first touched in two threads at once cost more than the steps), and kept for
        # the next call (a filter makes one per observation interval).
        cache = self._buffers.__dict__.setdefault("pieces", {})
        if len(cache) > 64:
            cache.clear()
        spaces = {}
        for a, b in pieces:
            shape = (a, b, ns)
            if shape not in cache:
                cache[shape] = _workspace(b - a, ns)
            spaces[(a, b)] = cache[shape]

        def work(piece):
            a, b = piece
            ST, Z, IDX, BASE = spaces[piece]
            ST[:, :b - a] = S[a:b].T
            BASE[:] = base[a:b]
            self.block(np.ascontiguousarray(P[a]), times, int(k0), int(k1), float(dt), b - a, ST, Z, IDX, nz,
                       np.ascontiguousarray(nsd[a]), nlog, floor, key, BASE, table)
            S[a:b] = ST[:, :b - a].T

        if len(pieces) == 1 or threads == 1:
            for piece in pieces:
                work(piece)
        else:
            list(_pool().map(work, pieces))

    def _advance(self, inputs, times, dt, k0, k1, S, init, noise, table, outputs, threads):
        P, sidx, SX, SY, SL = inputs
        n = P.shape[0]
        want = np.asarray(outputs if outputs is not None else [], dtype=np.int64)
        out = np.empty((n, want.size))
        ok = np.ones(n, dtype=np.int8)
        nz, nsd, nlog, floor, key, base, table = self._noise_arrays(noise, table, n)
        threads = max(1, min(threads or _CORES, n))
        # Small batches are not worth a thread's start.
        if n * max(1, k1 - k0) * max(1, len(self.recordable)) < 2e5:
            threads = 1
        size = int(math.ceil(n / threads))
        parts = [slice(i, min(i + size, n)) for i in range(0, n, size)]

        def work(part: slice):
            self.function(P[part], sidx, SX, SY, SL, times, int(k0), int(k1), float(dt), bool(init), S[part], nz,
                          nsd[part], nlog, floor, key, base[part], table, want, out[part], ok[part])

        if len(parts) == 1:
            work(parts[0])
        else:
            list(_pool().map(work, parts))
        if (ok == 2).any():
            raise KernelUnsupported("a DELAY", "has order x TIME STEP above its delay time (PySD lowers the order)")
        return out, ok == 1

    @staticmethod
    def clock(settings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """PySD's float clock of a run and the rounded times (see :func:`pysd_runner.kernel.clock_grid`)."""
        times, _, _ = clock_grid(settings)
        prec = float(settings["time_step"]) * RPREC
        return times, np.round(times, -int(np.log10(prec)))


_POOL = None


def _changes(rows: np.ndarray) -> np.ndarray:
    """Whether each row differs from the one before it (NaN equal to NaN)."""
    if rows.shape[0] < 2 or (rows == rows[0]).all():
        return np.zeros(max(rows.shape[0] - 1, 0), dtype=bool)
    with np.errstate(invalid="ignore"):
        return ((rows[1:] != rows[:-1]) & ~(np.isnan(rows[1:]) & np.isnan(rows[:-1]))).any(axis=1)


def _pool():
    """The threads that run members in parallel, started once (a filter advances its members
    once per observation, and starting threads each time cost a fifth of a likelihood)."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(_CORES, thread_name_prefix="crisis-stepper")
    return _POOL


def _workspace(n: int, ns: int):
    """The arrays a piece of ``n`` members works in: states and draws (``ns`` rows each, one
    column per member), the draws' table indices and the members' streams.

    Every page is written here. The block function reads the draw rows of stocks without
    noise too (a vector loop computes both sides of a branch and selects), and fresh pages
    that are only read all map to the kernel's one zero page: on this machine's AMD cores
    such aliased reads made the whole step three times slower, by chance of allocation.
    """
    W = np.empty((2 * ns, n))
    W.fill(0.0)
    IDX = np.empty(n, dtype=np.int64)
    IDX.fill(0)
    return W[:ns], W[ns:], IDX, np.empty(n, dtype=np.int64)


_STEPPERS: dict[tuple, Stepper | KernelUnsupported] = {}
_LOCK = threading.Lock()


def _load(model: CompiledModel) -> Stepper:
    allow_alias_checks()
    source, p, states = generate_stepper(model)
    digest = hashlib.sha256((KERNEL_VERSION + STEPPER_VERSION + source).encode()).hexdigest()[:16]
    path = model.py_file.with_name(f"stepper_{digest}.py")
    if not path.is_file():
        with atomic_output(path.with_suffix(".npz"), "stepper cache") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **(p.arrays or {"_": np.zeros(1)}))
        atomic_write(path, source, what="stepper cache")
    spec = importlib.util.spec_from_file_location(f"crisis_stepper_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return Stepper(model, module.advance, list(p.constants), list(p.recordable), p.defaults, states,
                   getattr(module, "advance_block", None))


def stepper_for(model: CompiledModel) -> Stepper:
    """The model's compiled stepper (built once per process, machine code cached on disk).

    Raises :class:`KernelUnsupported` naming the first element the kernel cannot translate.
    """
    key = (str(model.py_file), model.sha256)
    with _LOCK:
        found = _STEPPERS.get(key)
        if found is None:
            try:
                found = _load(model)
            except KernelUnsupported as exc:
                found = exc
            _STEPPERS[key] = found
    if isinstance(found, KernelUnsupported):
        raise found
    return found


def run_inputs(model: CompiledModel, *, scenario=None, params=None, **time: float | None) -> tuple[dict, dict]:
    """What a run of ``model`` uses: the constants and policies of the scenario with ``params``
    on top (Python name -> number or ``(times, values)``), and its time settings (``time``
    overrides final_time, time_step, saveper)."""
    from .inputs import merged_params, time_settings
    from .scenarios import load_scenario

    scen = load_scenario(scenario, model) if scenario is not None else None
    fixed = merged_params(model, scen, params, True)
    settings = time_settings(model, scen, fixed, **time)
    return fixed, settings
