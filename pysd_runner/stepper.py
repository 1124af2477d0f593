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
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compiler import CompiledModel
from .files import atomic_output, atomic_write
from .kernel import clock_grid, constant_inputs
from .kernel_codegen import (HELPERS, KERNEL_VERSION, RPREC, SERIES_LINES, SMALL_VENSIM, KernelUnsupported, numba_source,
                             plan, state_var)

__all__ = ["Stepper", "StateVariable", "Noise", "stepper_for", "normal_table", "run_inputs"]

STEPPER_VERSION = "1"
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
    return numba_source("\n".join(lines) + "\n"), p, states


@dataclass
class Stepper:
    """A model's compiled state stepper; see the module docstring."""

    model: CompiledModel
    function: Any
    constants: list[str]
    recordable: list[str]
    defaults: np.ndarray
    states: list[StateVariable]

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
                threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Take steps ``k0 .. k1 - 1`` of ``times`` for every row of ``S`` (changed in place).

        Returns the requested recordables (indices into :attr:`recordable`) at ``times[k1]``,
        one row per member, and each member's status (1 finite, 0 not).
        """
        P, sidx, SX, SY, SL = inputs
        n = P.shape[0]
        ns = len(self.states)
        want = np.asarray(outputs if outputs is not None else [], dtype=np.int64)
        out = np.empty((n, want.size))
        ok = np.ones(n, dtype=np.int8)
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
        if table is None:
            table = np.zeros(1)
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
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(parts)) as pool:
                list(pool.map(work, parts))
        if (ok == 2).any():
            raise KernelUnsupported("a DELAY", "has order x TIME STEP above its delay time (PySD lowers the order)")
        return out, ok == 1

    @staticmethod
    def clock(settings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """PySD's float clock of a run and the rounded times (see :func:`pysd_runner.kernel.clock_grid`)."""
        times, _, _ = clock_grid(settings)
        prec = float(settings["time_step"]) * RPREC
        return times, np.round(times, -int(np.log10(prec)))


_STEPPERS: dict[tuple, Stepper | KernelUnsupported] = {}
_LOCK = threading.Lock()


def _load(model: CompiledModel) -> Stepper:
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
    return Stepper(model, module.advance, list(p.constants), list(p.recordable), p.defaults, states)


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
