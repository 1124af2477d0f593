"""A run's checked inputs, shared by every engine: parameter values, time settings, seeds,
outputs, memory estimates, and the provenance a result carries.

Each function raises :class:`~pysd_runner.errors.ParameterError` (or ScenarioError for a
scenario file's values) naming the input, what is wrong and what is allowed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .compiler import CompiledModel, Element, control_values
from .errors import LargeRunWarning, ParameterError, ScenarioError
from .scenarios import Scenario, events_json

__all__ = [
    "toolkit_version", "as_number", "normalise_params", "merged_params", "to_pysd", "params_json",
    "time_settings", "available_memory", "memory_limit", "output_cells", "check_memory", "check_seed",
    "output_elements", "provenance", "stateful_owners", "element_in_traceback",
]


SETTABLE = ("constant",)


#: Runs whose results take more memory than this are announced with a LargeRunWarning.
LARGE_RUN_BYTES = 2**30


def toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crisis-dynamics")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def as_number(value: Any, where: str) -> float:
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
    times = [as_number(t, f"{where}: a time") for t in times]
    values = [as_number(v, f"{where}: a value") for v in values]
    if len(times) != len(values) or not times:
        raise ParameterError(f"{where}: time and value must be non-empty and of equal length")
    if any(b <= a for a, b in zip(times, times[1:])):
        raise ParameterError(f"{where}: times must be strictly increasing; got {times}")
    return np.asarray(times, dtype=float), np.asarray(values, dtype=float)


def normalise_params(model: CompiledModel, params: Mapping[str, Any] | None, check_ranges: bool) -> dict[str, Any]:
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
        number = as_number(value, where)
        if check_ranges:
            element.check_value(number)
        resolved[element.py_name] = number
    return resolved


def merged_params(model: CompiledModel, scen: Scenario | None, params, check_ranges: bool) -> dict[str, Any]:
    """The scenario's constants and policies, then ``params`` on top, all validated.

    Errors in the scenario's values are reported against its file.
    """
    merged: dict[str, Any] = {}
    if scen is not None:
        policies = {k: {"time": t, "value": v} for k, (t, v) in scen.policies.items()}
        try:
            merged.update(normalise_params(model, scen.params, check_ranges))
            merged.update(normalise_params(model, policies, check_ranges))
        except ParameterError as exc:
            raise ScenarioError(f"scenario file '{scen.path}': {exc}") from None
    merged.update(normalise_params(model, params, check_ranges))
    return merged


def to_pysd(value: Any) -> Any:
    if isinstance(value, tuple):
        times, values = value
        return pd.Series(values, index=times)
    return value


def params_json(values: Mapping[str, Any]) -> str:
    out = {}
    for key, value in sorted(values.items()):
        if isinstance(value, tuple):
            out[key] = {"time": value[0].tolist(), "value": value[1].tolist()}
        elif isinstance(value, xr.DataArray):
            out[key] = {"dims": list(value.dims), "values": np.asarray(value).tolist()}
        else:
            out[key] = value
    return json.dumps(out, sort_keys=True)


def time_settings(
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
            fixed[key] = as_number(value, key)
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


def check_seed(seed: Any) -> int | None:
    """A seed as an int, or None; the one check behind every ``seed=`` of the toolkit."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ParameterError(f"seed must be a non-negative integer below 2**32, or None; got {seed!r}")
    return int(seed)


def output_elements(model: CompiledModel, variables: Sequence[str] | str | None) -> list[Element]:
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


def provenance(model: CompiledModel, merged, scen: Scenario | None, seed: int | None, settings) -> dict:
    import pysd

    return {
        "model_file": str(model.source),
        "model_name": model.name,
        "model_sha256": model.sha256,
        "pysd_version": pysd.__version__,
        "toolkit_version": toolkit_version(),
        "params": params_json(merged),
        "scenario": scen.name if scen is not None else "",
        "scenario_description": scen.description if scen is not None else "",
        "scenario_events": events_json(scen.events if scen is not None else ()),
        "seed": seed if seed is not None else "none",
        "integration_method": "euler",
        "initial_time": settings["initial_time"],
        "final_time": settings["final_time"],
        "time_step": settings["time_step"],
        "saveper": settings["saveper"],
        "dynamic_time_settings": ",".join(settings.get("dynamic", ())),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def stateful_owners(model: CompiledModel) -> dict[str, str]:
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


def element_in_traceback(model: CompiledModel, exc: BaseException) -> str | None:
    """The Vensim name of the innermost generated-model function in the traceback."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if Path(code.co_filename).parent == model.py_file.parent and code.co_name in model.elements:
            found = model.elements[code.co_name].name
        tb = tb.tb_next
    return found
