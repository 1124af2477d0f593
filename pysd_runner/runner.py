"""Run a compiled model once (or once per scenario) into an xarray Dataset with provenance."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .compiler import CompiledModel, Element, compile_model, control_values
from .errors import ParameterError, ScenarioError, SimulationError, stderr_is_terminal
from .scenarios import Scenario, load_scenario
from .plausible import ImplausibleWarning, load_plausible, member_exits, plausible_path

__all__ = ["run", "run_scenarios", "NonFiniteWarning", "LargeRunWarning", "ImplausibleWarning"]

SETTABLE = ("constant",)
#: Seconds a run must last before its progress bar appears (short runs stay quiet).
PROGRESS_DELAY = 1.0


#: Runs whose results take more memory than this are announced with a LargeRunWarning.
LARGE_RUN_BYTES = 2**30


class LargeRunWarning(UserWarning):
    """A run will take more than a gigabyte of memory: said before it starts, never silent."""


class NonFiniteWarning(UserWarning):
    """A run produced non-finite values and ``errors="warn"`` was asked for."""


def toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crisis-dynamics")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


# --------------------------------------------------------------------------- parameters

def _as_number(value: Any, where: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{where} must be a number; got the boolean {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ParameterError(f"{where} must be a number; got {value!r}") from None
    if not isinstance(value, (Real, np.number)):
        raise ParameterError(f"{where} must be a number or a time series; got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(f"{where} must be finite; got {number!r}")
    return number


def _as_series(value: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Accept a pandas Series, a {time, value} mapping or a sequence of (time, value) pairs."""
    if isinstance(value, pd.Series):
        times, values = value.index.to_numpy(), value.to_numpy()
    elif isinstance(value, Mapping) and set(value) == {"time", "value"}:
        times, values = value["time"], value["value"]
    elif isinstance(value, Sequence) and value and all(
        isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in value
    ):
        times, values = zip(*value)
    else:
        raise ParameterError(
            f"{where} must be a number or a time series (pandas Series, {{'time': [...], 'value': [...]}} "
            f"or a list of (time, value) pairs); got {type(value).__name__}"
        )
    times = [_as_number(t, f"{where}: a time") for t in times]
    values = [_as_number(v, f"{where}: a value") for v in values]
    if len(times) != len(values) or not times:
        raise ParameterError(f"{where}: time and value must be non-empty and of equal length")
    if any(b <= a for a, b in zip(times, times[1:])):
        raise ParameterError(f"{where}: times must be strictly increasing; got {times}")
    return np.asarray(times, dtype=float), np.asarray(values, dtype=float)


def _normalise_params(model: CompiledModel, params: Mapping[str, Any] | None, check_ranges: bool) -> dict[str, Any]:
    """Resolve names to Python names and validate values; returns py_name -> float | (times, values) | DataArray."""
    resolved: dict[str, Any] = {}
    for name, value in (params or {}).items():
        element = model.resolve(name, kinds=SETTABLE, role="parameter")
        where = f"parameter '{element.name}'"
        if isinstance(value, xr.DataArray):
            if not element.subscripts:
                raise ParameterError(f"{where} is not subscripted; give a number or a time series")
            arr = np.asarray(value, dtype=float)
            if not np.isfinite(arr).all():
                raise ParameterError(f"{where} must be finite everywhere; got {value.values!r}")
            if check_ranges:
                for v in arr.ravel():
                    element.check_value(float(v))
            resolved[element.py_name] = value
            continue
        if isinstance(value, (pd.Series, Mapping)) or (
            isinstance(value, Sequence) and not isinstance(value, str)
        ):
            times, values = _as_series(value, where)
            if check_ranges:
                for v in values:
                    element.check_value(float(v))
            resolved[element.py_name] = (times, values)
            continue
        number = _as_number(value, where)
        if check_ranges:
            element.check_value(number)
        resolved[element.py_name] = number
    return resolved


def _merged_params(model: CompiledModel, scen: Scenario | None, params, check_ranges: bool) -> dict[str, Any]:
    """The scenario's constants and policies, then ``params`` on top, all validated.

    Errors in the scenario's values are reported against its file.
    """
    merged: dict[str, Any] = {}
    if scen is not None:
        policies = {k: {"time": t, "value": v} for k, (t, v) in scen.policies.items()}
        try:
            merged.update(_normalise_params(model, scen.params, check_ranges))
            merged.update(_normalise_params(model, policies, check_ranges))
        except ParameterError as exc:
            raise ScenarioError(f"scenario file '{scen.path}': {exc}") from None
    merged.update(_normalise_params(model, params, check_ranges))
    return merged


def _to_pysd(value: Any) -> Any:
    if isinstance(value, tuple):
        times, values = value
        return pd.Series(values, index=times)
    return value


def _params_json(values: Mapping[str, Any]) -> str:
    out = {}
    for key, value in sorted(values.items()):
        if isinstance(value, tuple):
            out[key] = {"time": value[0].tolist(), "value": value[1].tolist()}
        elif isinstance(value, xr.DataArray):
            out[key] = {"dims": list(value.dims), "values": np.asarray(value).tolist()}
        else:
            out[key] = value
    return json.dumps(out, sort_keys=True)


#: Engines a single run can use.
RUN_ENGINES = ("auto", "pysd", "compiled")


# --------------------------------------------------------------------------- time settings

def _time_settings(
    model: CompiledModel, scenario: Scenario | None, params: Mapping[str, Any] | None = None, **given: float | None
) -> dict[str, float]:
    """The run's time settings: given here, else the scenario's, else the model's own.

    A model setting defined by an expression (Vensim's default ``SAVEPER = TIME STEP``)
    is evaluated again from what the run changes: a new time step, or a new value of a
    constant it reads (``params``, by Python name).
    """
    fixed: dict[str, float] = {}
    if scenario is not None:
        fixed.update({k: float(v) for k, v in scenario.time.items()})
    for key, value in given.items():
        if value is not None:
            fixed[key] = _as_number(value, key)
    settings: dict[str, Any] = control_values(model, dict(params or {}), fixed)
    # Settings that PySD evaluates again at every step; the values above are their start.
    settings["dynamic"] = tuple(k for k in model.control_dynamic if k not in fixed)
    for key in ("time_step", "saveper"):
        if not settings[key] > 0:
            raise ParameterError(f"{key} must be positive; got {settings[key]:g}")
    if not settings["final_time"] > settings["initial_time"]:
        raise ParameterError(
            f"final_time must be after the initial time {settings['initial_time']:g}; got {settings['final_time']:g}"
        )
    if settings["saveper"] < settings["time_step"] * (1 - 1e-9):
        raise ParameterError(
            f"saveper ({settings['saveper']:g}) must be at least the time step ({settings['time_step']:g})"
        )
    return settings


# --------------------------------------------------------------------------- memory

def available_memory() -> int:
    """Bytes of memory available to this process now (psutil, which Dask already needs)."""
    import psutil

    return int(psutil.virtual_memory().available)


def memory_limit(max_memory: float | None) -> float:
    """The memory a run may use: ``max_memory`` bytes, or half of what is available."""
    if max_memory is None:
        return available_memory() / 2
    if isinstance(max_memory, bool) or not isinstance(max_memory, Real) or not max_memory > 0:
        raise ParameterError(f"max_memory must be a positive number of bytes; got {max_memory!r}")
    return float(max_memory)


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.3g} MiB"


def output_cells(model: CompiledModel, outputs: Sequence[Element | str]) -> int:
    """Values saved per time: one per scalar output, one per element of a subscripted one."""
    total = 0
    for item in outputs:
        element = model.elements[item] if isinstance(item, str) else item
        cells = 1
        for dim in element.subscripts:
            cells *= max(1, len(model.subscripts.get(dim, ())))
        total += cells
    return total


def check_memory(settings: Mapping[str, float], n_outputs: int, members: int, max_memory: float | None,
                 *, what: str = "the run", width: int = 1) -> float:
    """Estimate the memory a run needs and refuse it, naming how to reduce it, past the limit.

    The estimate counts the saved trajectories (save times x outputs x members x elements
    of subscripted outputs x 8 bytes, twice: while integrated and in the Dataset) and the
    compiled kernel's clock (one float per Euler step). Returns the estimate in bytes.
    """
    span = settings["final_time"] - settings["initial_time"]
    saves = math.floor(span / settings["saveper"] + 1e-9) + 1
    steps = math.ceil(span / settings["time_step"] - 1e-9) + 1
    need = 2.0 * saves * max(1, n_outputs) * width * members * 8 + 8.0 * steps
    limit = memory_limit(max_memory)
    if need > limit:
        reduce = "fewer variables (--vars), a longer save period (--saveper), a shorter horizon (--final-time)"
        if members > 1:
            reduce += ", fewer members (--n)"
        raise ParameterError(
            f"{what} would need about {_gib(need)} of memory ({saves:,} save times x {max(1, n_outputs)} variables"
            + (f" x {members:,} members" if members > 1 else "")
            + f", {steps:,} time steps), over the limit of {_gib(limit)}"
            + (" (half of the memory available)" if max_memory is None else "")
            + f"; use {reduce}, or raise the limit with --max-memory"
        )
    if need > LARGE_RUN_BYTES:
        warnings.warn(
            f"{what} will hold about {_gib(need)} in memory and its file about {_gib(need / 2)} "
            f"({saves:,} save times x {max(1, n_outputs)} variables"
            + (f" x {members:,} members" if members > 1 else "") + ")",
            LargeRunWarning, stacklevel=3,
        )
    return need


# --------------------------------------------------------------------------- seeds

def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be a non-negative integer or None; got {seed!r}")
    if not 0 <= int(seed) < 2**32:
        raise ParameterError(f"seed must be between 0 and 2**32 - 1; got {seed}")
    return int(seed)


# --------------------------------------------------------------------------- the run

def _output_elements(model: CompiledModel, variables: Sequence[str] | str | None) -> list[Element]:
    if variables is None:
        return [e for e in model.elements.values() if e.kind not in ("constant", "lookup", "data")]
    if isinstance(variables, str):
        variables = [v for v in variables.split(",") if v.strip()]
    if not variables:
        raise ParameterError("variables must name at least one model variable")
    chosen: list[Element] = []
    for name in variables:
        element = model.resolve(name, kinds=("stock", "flow", "auxiliary", "stateful", "constant", "data"))
        if element not in chosen:
            chosen.append(element)
    return chosen


def _stateful_owners(model: CompiledModel) -> dict[str, str]:
    """Map PySD's internal stateful objects (``_integ_x``) to the Vensim name that owns them."""
    owners = {}
    for py_name, deps in model.dependencies.items():
        element = model.elements.get(py_name)
        if element is None or not isinstance(deps, dict):
            continue
        for key in deps:
            if key.startswith("_"):
                owners.setdefault(key, element.name)
    return owners


def _finite(value: Any) -> bool:
    if isinstance(value, float):  # the common scalar case (numpy float64 included), without numpy
        return math.isfinite(value)
    return bool(np.isfinite(np.asarray(value, dtype=float)).all())


def run(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | Scenario | None = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    variables: Sequence[str] | str | None = None,
    seed: int | None = None,
    errors: str = "raise",
    check_ranges: bool = True,
    progress: bool = False,
    knockout: Sequence[Any] | None = None,
    engine: str = "auto",
    max_memory: float | None = None,
) -> xr.Dataset:
    """Simulate a model once and return its trajectories as an xarray Dataset.

    Runs are pure: each run loads its own PySD model object, so parameters set here never
    leak into the next run, and the same call twice returns identical Datasets (apart from
    the ``created_utc`` attribute).

    Parameters
    ----------
    model : CompiledModel or path
        A model from :func:`compile_model`, or a model file to compile.
    params : mapping, optional
        Constants by Vensim or Python name. A value is a number, or a time series
        (pandas Series indexed by time, ``{"time": [...], "value": [...]}``, or a list of
        ``(time, value)`` pairs) interpolated linearly: a time-varying policy. Values
        given here override the scenario's.
    scenario : str, path or Scenario, optional
        A scenario name under the model's ``scenarios/`` folder, or a TOML file.
    final_time, time_step, saveper : float, optional
        Override the time settings of the scenario and the model.
    variables : list of str or comma-separated str, optional
        Variables to return (Vensim or Python names); default every stock, flow and
        auxiliary.
    seed : int, optional
        Seed for the model's random functions (RANDOM UNIFORM, ...). Models without random
        functions ignore it. A model with random functions run without a seed draws one
        and records it in the ``seed`` attribute, so every run can be reproduced.
    errors : {"raise", "warn"}
        What to do when a value becomes non-finite: raise :class:`SimulationError`
        naming the first time and variable, or warn (:class:`NonFiniteWarning`) and return
        the trajectories with the non-finite values in them.
    check_ranges : bool
        Reject parameter values outside the constants' Vensim ranges (default True).
    progress : bool
        Show a progress bar on stderr for runs longer than a second.
    knockout : list, optional
        Links to cut: each link's source is held at a fixed value as its target sees it
        (its value at the initial time, or a given value), so the loops through the link
        are switched off. Items are ``("source", "target")``, ``("source", "target",
        value)``, ``"source->target"``, or ``"source"`` (held for every variable reading
        it). The held values are recorded in the ``knockout`` attr (JSON). See
        :mod:`pysd_runner.loops`.
    engine : "auto", "pysd" or "compiled"
        "auto" runs the model's compiled kernel (:mod:`pysd_runner.kernel`, the same
        numbers as PySD, hundreds of times faster; knock-outs included) when it can
        translate the model and it uses no random function, and PySD otherwise; a run that goes
        non-finite is repeated under PySD, whose diagnostics name the element. "pysd"
        always uses PySD; "compiled" fails with the reason when the kernel cannot run it.
        The engine used is recorded in the ``engine`` attr.
    max_memory : float, optional
        Bytes the run may use (default: half of the memory available). A run estimated
        to need more is refused before it starts, with what to change
        (:class:`ParameterError`).

    Returns
    -------
    xarray.Dataset
        Dims ``time`` plus the model's subscript dims; variables by Python name with
        ``units``, ``long_name`` (Vensim name) and ``comment`` attrs; provenance attrs
        (``model_file``, ``model_sha256``, ``pysd_version``, ``toolkit_version``,
        ``params``, ``scenario``, ``seed``, ``created_utc`` and the time settings).

    Examples
    --------
    >>> ds = run("models/goodwin/goodwin.mdl", {"phillips slope": 0.6}, final_time=50)  # doctest: +SKIP
    >>> float(ds["wage_share"].max())  # doctest: +SKIP
    """
    if errors not in ("raise", "warn"):
        raise ParameterError(f"errors must be 'raise' or 'warn'; got {errors!r}")
    if engine not in RUN_ENGINES:
        raise ParameterError(f"engine must be one of {', '.join(RUN_ENGINES)}; got {engine!r}")
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    scen = load_scenario(scenario, model) if scenario is not None else None
    merged = _merged_params(model, scen, params, check_ranges)
    settings = _time_settings(model, scen, merged, final_time=final_time, time_step=time_step, saveper=saveper)
    outputs = _output_elements(model, variables)
    ranges = load_plausible(model)
    asked = {e.py_name for e in outputs}
    outputs += [model.elements[r.py_name] for r in ranges if r.py_name not in asked]
    check_memory(settings, output_cells(model, outputs), 1, max_memory)
    seed = _check_seed(seed)
    knocked = None
    if knockout is not None:
        from .loops import _knockouts

        knocked = _knockouts(model, knockout)
    if model.uses_random and seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])

    compiled = None
    if engine != "pysd":
        compiled = _simulate_compiled(model, merged, settings, outputs, knocked, engine == "compiled", progress)
    if compiled is not None:
        times, columns = compiled
        failure = None
    else:
        rng_state = np.random.get_state()
        try:
            if seed is not None:
                np.random.seed(seed)
            times, columns, failure = _simulate(model, merged, settings, outputs, errors, progress, knocked)
        finally:
            np.random.set_state(rng_state)

    if failure is not None:
        message = (
            f"model '{model.source.name}': '{failure[1]}' became non-finite ({failure[2]}) at time "
            f"{failure[0]:g}; check the parameter values (or the time step) that drive it"
        )
        if errors == "raise":
            raise SimulationError(message, time=failure[0], variable=failure[1])
        warnings.warn(message, NonFiniteWarning, stacklevel=2)

    dataset = _to_dataset(model, times, columns, outputs)
    dataset.attrs.update(_provenance(model, merged, scen, seed, settings))
    dataset.attrs["engine"] = "compiled" if compiled is not None else "pysd"
    if ranges:
        exits = member_exits(dataset["time"].values, {r.py_name: dataset[r.py_name].values[None, ...]
                                                      for r in ranges}, ranges)[0]
        if exits:
            warnings.warn(f"model '{model.source.name}' left its plausible ranges ({plausible_path(model).name}): "
                          + "; ".join(e["text"] for e in exits), ImplausibleWarning, stacklevel=2)
        dataset.attrs["implausible"] = json.dumps([{k: v for k, v in e.items() if k != "text"} for e in exits])
        dataset = dataset.drop_vars([r.py_name for r in ranges if r.py_name not in asked])
    if knocked is not None:
        dataset.attrs["knockout"] = json.dumps(knocked.describe())
    return dataset


def _simulate_compiled(model, merged, settings, outputs, knocked, required: bool, progress: bool = False):
    """Times and columns from the compiled kernel, or None when PySD must run instead.

    None when the kernel cannot take this run (random functions, subscripts, an element
    it does not translate, numba missing) or when the run goes non-finite, so
    that PySD's run names the element and time. With ``required`` those become errors.
    """
    from .kernel import KernelUnsupported, engine_error, kernel_for

    def unavailable(reason: str):
        if required:
            raise engine_error(model, reason)
        return None

    if model.uses_random:
        return unavailable("it uses random functions")
    if settings.get("dynamic"):
        return unavailable(f"its time settings ({', '.join(settings['dynamic'])}) change during the run")
    links = tuple((link.source, link.target) for link in knocked.links) if knocked is not None else ()
    try:
        kernel = kernel_for(model, progress=progress, knockouts=links)
    except ImportError:
        return unavailable("numba is not installed")
    except KernelUnsupported as exc:
        return unavailable(str(exc))
    names = [e.py_name for e in outputs]
    reason = kernel.can_run(merged, [], names)
    if reason is not None:
        return unavailable(reason)
    given = [np.nan if link.value is None else link.value for link in knocked.links] if knocked is not None else None
    try:
        with np.errstate(all="ignore"):
            times, values, ok, held = kernel.run({}, 1, merged, settings, names, threads=1, held=given)
    except KernelUnsupported as exc:
        return unavailable(str(exc))
    if not ok[0]:
        return None  # PySD repeats the run and reports the first non-finite element
    if knocked is not None:
        from .loops import _knockout_key

        knocked.values = {_knockout_key(link.source, link.target): float(held[0, j])
                          for j, link in enumerate(knocked.links)}
    return times, {name: values[name][0] for name in names}


def _simulate(model, merged, settings, outputs, errors, progress, knocked=None):
    """Configure a fresh PySD model and integrate it, reading only the requested outputs."""
    pysd_model = model.load() if knocked is None else knocked.load()
    pysd_model._stepper_mode = False
    with warnings.catch_warnings():
        # A time series on a constant is this API's documented way to give a policy;
        # PySD announces it with a UserWarning each time, which is not news to the caller.
        warnings.filterwarnings("ignore", message="Replacing a constant value with a time-dependent value")
        pysd_model._config_simulation(
            {k: _to_pysd(v) for k, v in merged.items()} or None,
            [e.py_name for e in outputs],
            None,
            "original",
            *(None if k in settings.get("dynamic", ()) else settings[k] for k in ("final_time", "time_step", "saveper")),
            True,
            progress=False,
        )
    if knocked is not None:
        knocked.fix(pysd_model)
    integration = _Integration(model, pysd_model, outputs, errors)
    n_steps = int(round((settings["final_time"] - settings["initial_time"]) / settings["time_step"]))
    clock = pysd_model.time
    from tqdm.auto import tqdm

    with tqdm(total=n_steps, disable=not (progress and stderr_is_terminal()), file=sys.stderr, delay=PROGRESS_DELAY,
              unit="step", desc=model.name, leave=False) as bar, np.errstate(all="ignore"):
        try:
            integration.integrate(bar)
        except (ZeroDivisionError, OverflowError, FloatingPointError) as exc:
            # Python floats raise instead of giving inf/NaN; no run can continue past this.
            element = _element_in_traceback(model, exc) or "an equation"
            what = "division by zero" if isinstance(exc, ZeroDivisionError) else "overflow"
            raise SimulationError(
                f"model '{model.source.name}': {what} in '{element}' at time {float(clock()):g}; "
                "check the parameter values (or the time step) that drive it",
                time=float(clock()), variable=element,
            ) from None
    return integration.times, integration.columns, integration.failure


class _Integration:
    """PySD's Euler loop, driven here so that output goes straight into lists.

    PySD's own ``run()`` collects every output into a DataFrame per step, its largest
    cost. This loop mirrors ``Model._integrate`` and also watches every stock for
    non-finite values after each step.
    """

    def __init__(self, model: CompiledModel, pysd_model, outputs: list[Element], errors: str):
        self.pysd_model = pysd_model
        self.clock = pysd_model.time
        self.errors = errors
        components = pysd_model.components
        self.getters = [(e, getattr(components, e.py_name)) for e in outputs]
        owners = _stateful_owners(model)
        self.statefuls = [(owners.get(s.py_name, s.py_name), s) for s in pysd_model._dynamicstateful_elements]
        self.times: list[float] = []
        self.columns: dict[str, list] = {e.py_name: [] for e in outputs}
        self.failure: tuple[float, str, str] | None = None
        self.undefined: dict[str, np.ndarray] = {}

    def _record(self) -> None:
        now = float(self.clock.round())
        first = not self.times
        self.times.append(now)
        for element, getter in self.getters:
            value = getter()
            if isinstance(value, xr.DataArray):
                value = value.copy()
                if first:
                    # A Vensim array defined over part of its range only (``x[A] = ...``,
                    # ``x[C] = ...``) is NaN where it has no equation: not a failure.
                    undefined = np.isnan(value.values)
                    if undefined.any() and not undefined.all():
                        self.undefined[element.py_name] = undefined
            self.columns[element.py_name].append(value)
            if self.failure is None and not _finite(value):
                mask = self.undefined.get(element.py_name)
                if mask is not None and np.isfinite(np.asarray(value, dtype=float)[~mask]).all():
                    continue
                self.failure = (now, element.name, _kind_of_bad(value))

    def _check_stocks(self) -> None:
        for owner, stateful in self.statefuls:
            if not _finite(stateful.state):
                self.failure = (float(self.clock()), owner, _kind_of_bad(stateful.state))
                return

    def _stop(self) -> bool:
        return self.failure is not None and self.errors == "raise"

    def integrate(self, bar) -> None:
        clock = self.clock
        while clock.in_bounds():
            if clock.in_return():
                self._record()
                if self._stop():
                    return
            self.pysd_model._integrate_step()
            bar.update()
            if self.failure is None:
                self._check_stocks()
                if self._stop():
                    return
        if clock.in_return():
            self._record()


def _element_in_traceback(model: CompiledModel, exc: BaseException) -> str | None:
    """The Vensim name of the innermost generated-model function in the traceback."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if Path(code.co_filename).parent == model.py_file.parent and code.co_name in model.elements:
            found = model.elements[code.co_name].name
        tb = tb.tb_next
    return found


def _kind_of_bad(value) -> str:
    arr = np.asarray(value, dtype=float)
    return "NaN" if np.isnan(arr).any() else "infinite"


def _to_dataset(model: CompiledModel, times: list[float], columns: dict[str, list], outputs: list[Element]) -> xr.Dataset:
    time_units = model.time_units
    coords = {"time": ("time", np.asarray(times, dtype=float), {"units": time_units, "long_name": "Time"})}
    data_vars = {}
    for element in outputs:
        values = columns[element.py_name]
        if len(values) and isinstance(values[0], xr.DataArray):
            da = xr.concat(values, dim="time", coords="minimal", compat="override", join="override")
            da = da.assign_coords(time=coords["time"][1]).transpose("time", ...)
            for dim in da.dims:
                if dim != "time":
                    da = da.assign_coords({dim: np.asarray(da[dim].values, dtype=str)})
            da = da.astype(float)
        else:
            # A plain Variable: no index to align, which matters for the live app's latency.
            data_vars[element.py_name] = xr.Variable(
                ("time",), np.asarray(values, dtype=float).reshape(len(times)),
                {"units": element.units, "long_name": element.name, "comment": element.comment})
            continue
        da.attrs = {"units": element.units, "long_name": element.name, "comment": element.comment}
        data_vars[element.py_name] = da.drop_vars("time", errors="ignore")
    return xr.Dataset(data_vars, coords=coords)


def _provenance(model: CompiledModel, merged, scen: Scenario | None, seed: int | None, settings) -> dict:
    import pysd

    return {
        "model_file": str(model.source),
        "model_name": model.name,
        "model_sha256": model.sha256,
        "pysd_version": pysd.__version__,
        "toolkit_version": toolkit_version(),
        "params": _params_json(merged),
        "scenario": scen.name if scen is not None else "",
        "scenario_description": scen.description if scen is not None else "",
        "seed": seed if seed is not None else "none",
        "integration_method": "euler",
        "initial_time": settings["initial_time"],
        "final_time": settings["final_time"],
        "time_step": settings["time_step"],
        "saveper": settings["saveper"],
        "dynamic_time_settings": ",".join(settings.get("dynamic", ())),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def run_scenarios(
    model: CompiledModel | str | os.PathLike,
    scenarios: Sequence[str | os.PathLike | Scenario],
    **kwargs: Any,
) -> xr.Dataset:
    """Run several scenarios and stack them along a ``scenario`` dim.

    Keyword arguments are passed to :func:`run` for every scenario. All scenarios must
    share the same time axis (the same time settings). The ``params`` attr holds each
    scenario's parameters as JSON keyed by scenario name, and the coordinate
    ``scenario_description`` carries each scenario's description.
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    if not scenarios:
        raise ScenarioError(f"no scenarios given for model '{model.source.name}'")
    loaded = [load_scenario(s, model) for s in scenarios]
    fast = _scenarios_as_members(model, loaded, kwargs)
    if fast is not None:
        return fast
    runs = [run(model, scenario=s, **kwargs) for s in loaded]
    names = [ds.attrs["scenario"] for ds in runs]
    if len(set(names)) != len(names):
        raise ScenarioError(f"scenario names must be distinct; got {names}")
    reference = runs[0]["time"].values
    for name, ds in zip(names, runs):
        if ds.sizes["time"] != reference.size or not np.array_equal(ds["time"].values, reference):
            raise ScenarioError(
                f"scenario '{name}' has a different time axis from '{names[0]}'; give the same "
                "final_time, time_step and saveper to compare scenarios (e.g. with final_time=...)"
            )
    descriptions = [ds.attrs["scenario_description"] for ds in runs]
    stacked = xr.concat(
        [ds.drop_attrs(deep=False) for ds in runs], dim="scenario", coords="minimal", compat="override", join="exact"
    )
    stacked = stacked.assign_coords(
        scenario=("scenario", np.asarray(names, dtype=str), {"long_name": "Scenario"}),
        scenario_description=("scenario", np.asarray(descriptions, dtype=str)),
    )
    attrs = dict(runs[0].attrs)
    attrs["engine"] = ",".join(sorted({ds.attrs.get("engine", "pysd") for ds in runs}))
    attrs["scenario"] = ",".join(names)
    attrs["scenario_description"] = ""
    attrs["params"] = json.dumps({n: json.loads(ds.attrs["params"]) for n, ds in zip(names, runs)}, sort_keys=True)
    stacked.attrs = attrs
    return stacked


def scenarios_on_one_axis(
    model: CompiledModel, scenarios: Sequence[str | os.PathLike | Scenario], params: Mapping[str, Any] | None = None,
    **given: float | None,
) -> tuple[list[str | os.PathLike | Scenario], list[str]]:
    """Split scenarios into those that share the first one's time axis and those that do not.

    Scenarios can only be stacked along a ``scenario`` dim when their time settings agree.
    Returns ``(kept, notes)``: the scenarios on the most common axis (the first scenario's
    on a tie) and one line per scenario left out, naming its time settings and the shared ones.
    """
    axes = []
    for ref in scenarios:
        scen = load_scenario(ref, model)
        settings = _time_settings(model, scen, _merged_params(model, scen, params, False), **given)
        axes.append((scen.name, tuple(settings[k] for k in ("initial_time", "final_time", "time_step", "saveper"))))
    counts: dict[tuple, int] = {}
    for _, axis in axes:
        counts[axis] = counts.get(axis, 0) + 1
    best = max(counts, key=lambda a: (counts[a], a == axes[0][1]))
    fmt = lambda a: f"from {a[0]:g} to {a[1]:g}, time step {a[2]:g}, saved every {a[3]:g}"  # noqa: E731
    kept, notes = [], []
    for ref, (name, axis) in zip(scenarios, axes):
        if axis == best:
            kept.append(ref)
        else:
            notes.append(
                f"scenario '{name}' left out: its time axis ({fmt(axis)}) differs from the other scenarios' "
                f"({fmt(best)}); run it on its own, or give --final-time, --time-step and --saveper to put all on one axis"
            )
    return kept, notes


def _scenarios_as_members(model: CompiledModel, scenarios: list[Scenario], kwargs: dict) -> xr.Dataset | None:
    """Run scenarios as members of one vectorised ensemble when that gives the same numbers.

    Possible when the scenarios differ only in constants (no policies), share their time
    settings, and the model vectorises (no random functions, subscripts or blocked
    functions). Members equal scalar runs to rounding (tests check every model), and all
    scenarios then cost about as much as one run. Returns None when not possible.
    """
    from .ensemble import run_ensemble
    from .vectorize import vectorisation_blockers

    allowed = {"params", "final_time", "time_step", "saveper", "variables", "check_ranges", "max_memory"}
    if len(scenarios) < 2 or set(kwargs) - allowed - {"progress", "seed", "errors"} or kwargs.get("errors", "raise") != "raise":
        return None
    given = {k: kwargs.get(k) for k in ("final_time", "time_step", "saveper")}
    effective = [_time_settings(model, s, _merged_params(model, s, kwargs.get("params"), False), **given) for s in scenarios]
    if model.uses_random or any(s.policies for s in scenarios) or any(e != effective[0] for e in effective):
        return None
    if len({s.name for s in scenarios}) != len(scenarios) or vectorisation_blockers(model):
        return None
    check = kwargs.get("check_ranges", True)
    shared = _normalise_params(model, kwargs.get("params"), check)
    if any(not isinstance(v, float) for v in shared.values()):
        return None  # time-varying shared values: run one by one
    per_scenario = []
    for scen in scenarios:
        try:
            values = _normalise_params(model, scen.params, check)
        except ParameterError as exc:
            raise ScenarioError(f"scenario file '{scen.path}': {exc}") from None
        values.update(shared)
        per_scenario.append(values)
    varied = sorted({k for values in per_scenario for k in values} | {next(iter(model.constants)).py_name})
    samples = {k: [values.get(k, model.elements[k].default) for values in per_scenario] for k in varied}
    if any(v is None for column in samples.values() for v in column):
        return None  # a subscripted or computed constant: no scalar default to fill in
    settings = {k: effective[0][k] for k in ("final_time", "time_step", "saveper")}
    ensemble = run_ensemble(model, samples, variables=kwargs.get("variables"), check_ranges=check,
                            progress=kwargs.get("progress", False), max_memory=kwargs.get("max_memory"), **settings)
    bad = np.flatnonzero(~ensemble["ok"].values)
    if bad.size:
        return None  # let the scalar runs report the first non-finite time and variable
    names = [s.name for s in scenarios]
    exits = {}
    if "plausible" in ensemble:
        exits = {name: str(text) for name, text, fine in
                 zip(names, ensemble["implausible"].values, ensemble["plausible"].values) if not fine}
        for name, text in exits.items():
            warnings.warn(f"scenario '{name}' of model '{model.source.name}' left its plausible ranges "
                          f"({plausible_path(model).name}): {text}", ImplausibleWarning, stacklevel=3)
        ensemble = ensemble.drop_vars(["plausible", "implausible"])
    data = ensemble.drop_vars(["ok", *samples]).rename({"run": "scenario"})
    data = data.assign_coords(
        scenario=("scenario", np.asarray(names, dtype=str), {"long_name": "Scenario"}),
        scenario_description=("scenario", np.asarray([s.description for s in scenarios], dtype=str)),
    )
    attrs = _provenance(model, shared, scenarios[0], kwargs.get("seed"), effective[0])
    attrs["scenario"] = ",".join(names)
    attrs["scenario_description"] = ""
    attrs["params"] = json.dumps({n: json.loads(_params_json(v)) for n, v in zip(names, per_scenario)}, sort_keys=True)
    attrs["engine"] = ensemble.attrs["engine"]
    if "n_plausible" in ensemble.attrs:
        attrs["implausible"] = json.dumps(exits)
    data.attrs = attrs
    return data.transpose("scenario", "time", ...)
