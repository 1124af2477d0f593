"""The compiled kernel: a model's equations as one machine-code loop (numba).

PySD evaluates every element through a Python function call, a cache lookup and, for
ensembles, a numpy call per element and time step. For the reformism model that is about
half a millisecond per step, whatever the number of members. This module translates the
Python that PySD generated (not the Vensim file: PySD stays the one translator) into a
single straight-line function over the model's elements, in dependency order, and lets
numba compile it once per model file (cached on disk beside the translation):

- every constant is one slot of a parameter matrix, one row per member, so any constant
  can vary between members; a constant can instead follow a time series (a policy),
  interpolated as PySD does with ``np.interp``;
- stocks (INTEG, and non-negative ones), SMOOTH and DELAY of any literal order and INITIAL
  are state variables, integrated with PySD's Euler step and its clock (the same sequence of
  float times, the same save times);
- IF THEN ELSE, XIDZ, ZIDZ, STEP, RAMP, PULSE (TRAIN), lookups and the numpy functions
  PySD emits are translated to the same formulas.

Anything else (subscripts, DELAY FIXED, TREND, FORECAST, data, random numbers, unusual code) is named by
:func:`kernel_blockers`; the ensemble engine then falls back to its vectorised numpy pass,
so results are never wrong, only slower. Members equal scalar PySD runs to rounding
(tests/pysd_runner/test_kernel.py).

Code generation lives in :mod:`pysd_runner.kernel_codegen`; this module loads, caches and runs
the generated kernel.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compiler import CompiledModel
from .errors import stderr_is_terminal
from .files import atomic_output, atomic_write
from .kernel_codegen import KERNEL_VERSION, KernelUnsupported, RPREC, engine_error, generate  # noqa: F401 - re-exported

__all__ = ["Kernel", "KernelUnsupported", "kernel_for", "kernel_blockers", "clock_grid", "constant_inputs"]


# --------------------------------------------------------------------------- loading

@dataclass
class Kernel:
    """A compiled model: call :meth:`run` with one row of constants per member."""

    model: CompiledModel
    function: Any
    constants: list[str]
    recordable: list[str]
    defaults: np.ndarray
    delays: list = field(default_factory=list)
    knockouts: tuple[tuple[str, str], ...] = ()

    def run(self, values: dict[str, np.ndarray], n: int, fixed: dict[str, Any], settings: dict[str, float],
            outputs: list[str], on_fraction=None, threads: int | None = None, held=None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Times, {output: (members, times)}, ok and the held values for ``n`` members.

        ``held`` gives a value per knocked-out link (NaN: the source's initial value); the
        values the links held come back as an array (members, links).

        ``values`` maps constants to per-member arrays; ``fixed`` maps constants to numbers
        or ``(times, values)`` series shared by every member. Members are split into slices
        run on ``threads`` threads (default: one per core; the machine code releases the
        GIL), and ``on_fraction`` is told the share of members done after each slice.
        """
        P, sidx, SX, SY, SL = constant_inputs(self.constants, self.defaults, values, n, fixed)
        times, record, saved = clock_grid(settings)
        want = np.full(len(self.recordable), -1, dtype=np.int64)
        index = {name: i for i, name in enumerate(self.recordable)}
        for j, name in enumerate(outputs):
            want[index[name]] = j
        out = np.empty((n, int(record.sum()), len(outputs)))
        codes = np.ones(n, dtype=np.int8)
        KV = np.full(max(1, len(self.knockouts)), np.nan)
        if held is not None:
            KV[: len(self.knockouts)] = np.asarray(held, dtype=float)
        KOUT = np.full((n, max(1, len(self.knockouts))), np.nan)
        args = (float(settings["time_step"]), float(settings["initial_time"]), float(settings["final_time"]),
                float(settings["saveper"]), want, KV)
        threads = max(1, min(threads or os.cpu_count() or 1, n))
        # Slices of about a tenth of a second of work keep the progress bar moving.
        per_member = max(1e-7, len(times) * len(self.recordable) * 2e-9)
        size = max(1, min(int(math.ceil(n / threads)), int(0.1 / per_member) + 1))
        slices = [slice(i, min(i + size, n)) for i in range(0, n, size)]

        def work(part: slice) -> int:
            self.function(P[part], sidx, SX, SY, SL, times, record, *args, KOUT[part], out[part], codes[part])
            return part.stop - part.start

        if threads == 1 or len(slices) == 1:
            done = 0
            for part in slices:
                done += work(part)
                if on_fraction is not None:
                    on_fraction(done / n)
        else:
            run_slices(work, slices, threads, None if on_fraction is None else lambda done: on_fraction(done / n))
        if (codes == 2).any():
            delays = [st.owner for st in self.delays]
            raise KernelUnsupported(
                delays[0] if delays else "a DELAY",
                "has order x TIME STEP above its delay time for some members (PySD lowers the order)")
        return (saved, {name: out[:, :, j] for j, name in enumerate(outputs)}, codes == 1,
                KOUT[:, : len(self.knockouts)])

    def can_run(self, fixed: dict[str, Any], varied: list[str], outputs: list[str]) -> str | None:
        """Why these inputs cannot run on the kernel, or None."""
        known = set(self.constants)
        for name in list(fixed) + list(varied):
            if name not in known:
                return f"'{self.model.elements[name].name}' is set but is not a plain constant of the model"
        recordable = set(self.recordable)
        for name in outputs:
            if name not in recordable:
                return f"'{self.model.elements[name].name}' cannot be recorded by the kernel"
        return None


def run_slices(work, slices: list, threads: int, on_done=None) -> None:
    """Run ``work(part)`` (which returns a member count) for every slice on ``threads`` threads.

    The threads take slices one at a time and stop taking them once the caller is
    interrupted, so Ctrl-C returns after the slices already running (about a tenth of a
    second), not after every queued slice as a thread pool's exit would, and a second
    Ctrl-C cannot strand a queue. They are daemon threads: an interrupted command exits
    without waiting for them. ``on_done`` is told the number of members done so far.
    """
    import queue
    import threading

    stop = threading.Event()
    take = threading.Lock()
    pending = iter(slices)
    finished: queue.SimpleQueue = queue.SimpleQueue()

    def worker() -> None:
        try:
            while not stop.is_set():
                with take:
                    part = next(pending, None)
                if part is None:
                    return
                finished.put(work(part))
        except BaseException as exc:  # handed to the caller, who raises it
            stop.set()
            finished.put(exc)

    try:
        for _ in range(threads):
            threading.Thread(target=worker, name="crisis-kernel", daemon=True).start()
        done = 0
        for _ in slices:
            item = finished.get()
            if isinstance(item, BaseException):
                raise item
            done += item
            if on_done is not None:
                on_done(done)
    finally:
        stop.set()


def constant_inputs(constants: list[str], defaults: np.ndarray, values: dict[str, np.ndarray], n: int,
                    fixed: dict[str, Any]):
    """What a compiled engine reads its constants from, for ``n`` members: the matrix P (one row
    per member, one slot per constant: the defaults, then ``fixed`` numbers, then ``values``),
    and the time series of ``fixed`` policies (slot -> series index SIDX, padded times SX and
    values SY, lengths SL)."""
    slot = {name: i for i, name in enumerate(constants)}
    P = np.repeat(defaults[None, :], n, axis=0)
    sidx = np.full(len(constants), -1, dtype=np.int64)
    series = []
    for name, value in fixed.items():
        if isinstance(value, tuple):
            sidx[slot[name]] = len(series)
            series.append((np.asarray(value[0], float), np.asarray(value[1], float)))
        else:
            P[:, slot[name]] = float(value)
    for name, array in values.items():
        P[:, slot[name]] = array
    width = max([len(s[0]) for s in series], default=1)
    SX = np.zeros((max(1, len(series)), width))
    SY = np.zeros_like(SX)
    SL = np.ones(max(1, len(series)), dtype=np.int64)
    for j, (xs, ys) in enumerate(series):
        SX[j, : len(xs)], SY[j, : len(ys)], SL[j] = xs, ys, len(xs)
    return P, sidx, SX, SY, SL


def clock_grid(settings: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PySD's clock: the float times it steps through, which it saves, and their rounded values.

    Remembered for recent time settings: building them costs about 4 ms for 100,000 steps,
    a tenth of such a run; each call gets its own copies.
    """
    grid = _clock(float(settings["initial_time"]), float(settings["final_time"]), float(settings["time_step"]),
                  float(settings["saveper"]))
    return tuple(array.copy() for array in grid)


@functools.lru_cache(maxsize=32)
def _clock(t0: float, tf: float, dt: float, saveper: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prec = dt * RPREC
    count = int(math.ceil((tf - t0) / dt)) + 3
    # np.add.accumulate adds one step at a time, exactly as PySD's clock does.
    times = np.add.accumulate(np.concatenate([[t0], np.full(count, dt)]))
    inside = times + prec < tf
    last = int(np.argmin(inside)) if not inside.all() else len(times) - 1
    times = times[: last + 1]  # the steps taken, plus the first time past the end
    delay = times - t0
    record = (delay % saveper < prec) | (-delay % saveper < prec)
    saved = np.round(times[record], -int(np.log10(prec)))
    return times, record, saved


_KERNELS: dict[tuple, Kernel | KernelUnsupported] = {}
_LOCK = threading.Lock()


def _load(model: CompiledModel, knockouts: tuple[tuple[str, str], ...] = ()) -> Kernel:
    source, arrays, constants, recordable, delays, defaults = generate(model, knockouts)
    digest = hashlib.sha256((KERNEL_VERSION + source).encode()).hexdigest()[:16]
    path = model.py_file.with_name(f"kernel_{digest}.py")
    if not path.is_file():
        with atomic_output(path.with_suffix(".npz"), "kernel cache") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **(arrays or {"_": np.zeros(1)}))
        atomic_write(path, source, what="kernel cache")
    spec = importlib.util.spec_from_file_location(f"crisis_kernel_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    # numba's disk cache finds the module again by name when it loads machine code.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    kernel = Kernel(model, module.kernel, constants, recordable, defaults, delays, knockouts)
    _warm(kernel)
    return kernel


def _warm(kernel: Kernel) -> None:
    """Compile (or load from numba's disk cache) with a two-step run of one member."""
    settings = {"initial_time": 0.0, "final_time": 1.0, "time_step": 0.5, "saveper": 0.5}
    with np.errstate(all="ignore"):
        try:
            kernel.run({}, 1, {}, settings, [], threads=1)
        except KernelUnsupported:
            pass  # a DELAY longer than this toy step; the machine code is compiled anyway


def kernel_for(model: CompiledModel, *, progress: bool = False,
               knockouts: tuple[tuple[str, str], ...] = ()) -> Kernel:
    """The compiled kernel of a model (built once per process; machine code cached on disk).

    The first use of a model file on a machine compiles it (seconds; a note on stderr when
    ``progress``); later processes load the machine code from the disk cache. Raises
    :class:`KernelUnsupported` naming the first element it cannot translate, or ImportError
    when numba is not installed.
    """
    knockouts = tuple(tuple(link) for link in knockouts)
    key = (str(model.py_file), model.sha256, knockouts)
    with _LOCK:
        found = _KERNELS.get(key)
        if found is None:
            import numba  # noqa: F401 - ImportError here means "use PySD"

            from tqdm.auto import tqdm

            cached = any(model.py_file.parent.glob("__pycache__/kernel_*.nbi"))
            with tqdm(total=1, disable=not progress or cached or not stderr_is_terminal(), file=sys.stderr, leave=False,
                      desc=f"{model.name}: compiling to machine code (once per model file)") as bar:
                try:
                    found = _load(model, knockouts)
                except KernelUnsupported as exc:
                    found = exc
                bar.update()
            _KERNELS[key] = found
    if isinstance(found, KernelUnsupported):
        raise found
    return found


def kernel_blockers(model: CompiledModel) -> str | None:
    """Why the model cannot run on the compiled kernel, or None if it can."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed"
    try:
        kernel_for(model)
    except KernelUnsupported as exc:
        return str(exc)
    return None
