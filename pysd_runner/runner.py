"""Run a compiled model once (or once per scenario) into an xarray Dataset with provenance."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .compiler import CompiledModel, Element, compile_model
from .errors import (ImplausibleWarning, LargeRunWarning, NonFiniteWarning, ParameterError, SimulationError,
                     stderr_is_terminal)
from .inputs import (check_memory, check_seed, element_in_traceback, merged_params, output_cells, output_elements, provenance,
                     stateful_owners, time_settings, to_pysd)
from .knockouts import knockout_key, normalise_knockouts
from .scenarios import Scenario, load_scenario
from .plausible import load_plausible, member_exits, plausible_path

__all__ = ["run", "simulate_compiled", "configure_pysd", "NonFiniteWarning", "LargeRunWarning", "ImplausibleWarning"]

#: Seconds a run must last before its progress bar appears (short runs stay quiet).
PROGRESS_DELAY = 1.0


# --------------------------------------------------------------------------- parameters


#: Engines a single run can use.
RUN_ENGINES = ("auto", "pysd", "compiled")


# --------------------------------------------------------------------------- time settings


# --------------------------------------------------------------------------- memory


# --------------------------------------------------------------------------- seeds


# --------------------------------------------------------------------------- the run


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
        :mod:`pysd_runner.analysis.loops`.
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
    >>> ds = run("models/goodwin/goodwin.mdl", scenario="baseline", variables=["employment rate"])
    >>> round(float(ds["employment_rate"].max()), 2)
    0.95
    """
    if errors not in ("raise", "warn"):
        raise ParameterError(f"errors must be 'raise' or 'warn'; got {errors!r}")
    if engine not in RUN_ENGINES:
        raise ParameterError(f"engine must be one of {', '.join(RUN_ENGINES)}; got {engine!r}")
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    scen = load_scenario(scenario, model) if scenario is not None else None
    merged = merged_params(model, scen, params, check_ranges)
    settings = time_settings(model, scen, merged, final_time=final_time, time_step=time_step, saveper=saveper)
    outputs = output_elements(model, variables)
    ranges = load_plausible(model)
    asked = {e.py_name for e in outputs}
    outputs += [model.elements[r.py_name] for r in ranges if r.py_name not in asked]
    check_memory(settings, output_cells(model, outputs), 1, max_memory)
    seed = check_seed(seed)
    knocked = None
    if knockout is not None:
        knocked = normalise_knockouts(model, knockout)
    if model.uses_random and seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])

    compiled = None
    if engine != "pysd":
        compiled = simulate_compiled(model, merged, settings, outputs, knocked, engine == "compiled", progress)
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
    dataset.attrs.update(provenance(model, merged, scen, seed, settings))
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


def simulate_compiled(model, merged, settings, outputs, knocked, required: bool, progress: bool = False):
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
        knocked.values = {knockout_key(link.source, link.target): float(held[0, j])
                          for j, link in enumerate(knocked.links)}
    return times, {name: values[name][0] for name in names}


def configure_pysd(pysd_model, params: Mapping[str, Any], outputs: Sequence[str], settings: Mapping[str, Any],
                   *, knocked=None) -> None:
    """Configure a freshly loaded PySD model for a run that this toolkit steps itself.

    Sets ``params`` (numbers, ``(times, values)`` policies or DataArrays), the outputs read
    and the time settings (those PySD re-evaluates at every step, ``settings["dynamic"]``,
    are left to the model), then holds the knock-outs' values. One configuration for every
    engine that drives PySD's Euler step (run, the ensembles, the loop analysis).
    """
    pysd_model._stepper_mode = False
    dynamic = settings.get("dynamic", ())
    with warnings.catch_warnings():
        # A time series on a constant is this API's documented way to give a policy;
        # PySD announces it with a UserWarning each time, which is not news to the caller.
        warnings.filterwarnings("ignore", message="Replacing a constant value with a time-dependent value")
        pysd_model._config_simulation(
            {k: to_pysd(v) for k, v in params.items()} or None, list(outputs), None, "original",
            *(None if k in dynamic else settings[k] for k in ("final_time", "time_step", "saveper")),
            True, progress=False,
        )
    if knocked is not None:
        knocked.fix(pysd_model)


def _simulate(model, merged, settings, outputs, errors, progress, knocked=None):
    """Configure a fresh PySD model and integrate it, reading only the requested outputs."""
    pysd_model = model.load() if knocked is None else knocked.load()
    configure_pysd(pysd_model, merged, [e.py_name for e in outputs], settings, knocked=knocked)
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
            element = element_in_traceback(model, exc) or "an equation"
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
        owners = stateful_owners(model)
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


