"""A precomputed grid of runs over one or two levers, for the report's sliders.

The report has no server, so its sliders move over runs computed in advance: for every
combination of lever values (5 x 5 by default) one run, per scenario. The grid is an
xarray Dataset:

- dims: one per lever, named by the lever's Python name (coordinate: the lever values,
  with the constant's ``long_name`` and ``units``), ``time``, and ``scenario`` when
  scenarios are given;
- data variables: the chosen outputs, dims ``([scenario,] lever_1[, lever_2], time)``,
  with their ``long_name``, ``units`` and ``comment`` attrs;
- ``ok([scenario,] lever_1[, lever_2])``: False where a run did not stay finite (its values
  are NaN);
- attrs: ``levers`` (JSON list of the lever dims, in order) and the provenance of the
  first run (model file and sha256, versions, time settings).

Runs go through :func:`pysd_runner.run`, the public API; a vectorised engine will make
this faster without changing the result.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .errors import DashboardInputError
from .figures import sector_panels

__all__ = ["build_lever_grid"]

#: Grid points per lever when values are not given.
DEFAULT_STEPS = 5
#: Provenance attrs copied from the first run into the grid.
_KEPT_ATTRS = ("model_file", "model_name", "model_sha256", "pysd_version", "toolkit_version",
               "integration_method", "initial_time", "final_time", "time_step", "saveper")


def _lever_values(element, given: Sequence[float] | None, n_steps: int) -> np.ndarray:
    if given is not None:
        values = np.asarray([float(v) for v in given], dtype=float)
        if values.size < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
            raise DashboardInputError(
                f"values for lever '{element.name}' must be at least two finite, strictly increasing numbers; "
                f"got {list(given)}"
            )
        for v in values:
            element.check_value(float(v), what="grid value")
        return values
    lo, hi = element.limits
    if lo is None or hi is None:
        raise DashboardInputError(
            f"lever '{element.name}' has no Vensim range {element.range_text or '[min, max]'} to span; "
            "give its grid values explicitly"
        )
    return np.linspace(lo, hi, n_steps)


def build_lever_grid(
    model: Any,
    levers: Sequence[str],
    *,
    values: Mapping[str, Sequence[float]] | None = None,
    n_steps: int = DEFAULT_STEPS,
    scenarios: Sequence[str | os.PathLike] | None = None,
    variables: Sequence[str] | None = None,
    **run_options: Any,
) -> xr.Dataset:
    """Run a model over a grid of values of one or two levers (constants).

    Parameters
    ----------
    model : pysd_runner.CompiledModel or path
        The model (compiled with :func:`pysd_runner.compile_model` if a path).
    levers : list of str
        One or two constants, by Vensim or Python name.
    values : mapping of lever -> values, optional
        The grid values of a lever; default ``n_steps`` values spanning its Vensim range.
    n_steps : int
        Values per lever when not given (default 5: a 5 x 5 grid for two levers).
    scenarios : list of scenario names or paths, optional
        Run the grid under each scenario (adds a ``scenario`` dim); the lever values
        override the scenario's.
    variables : list of str, optional
        Outputs to keep; default the first variable of each panel of
        :func:`dashboards.figures.sector_panels`.
    **run_options
        Passed to :func:`pysd_runner.run` (``final_time``, ``time_step``, ``saveper``, ...).

    Returns
    -------
    xarray.Dataset
        The grid described in this module's docstring.

    Examples
    --------
    >>> grid = build_lever_grid("models/goodwin/goodwin.mdl", ["phillips slope", "phillips intercept"],
    ...                         values={"phillips slope": [1.0, 1.25, 1.5]}, final_time=20)
    >>> dict(grid.sizes)
    {'phillips_slope': 3, 'phillips_intercept': 5, 'time': 201}
    """
    from pysd_runner import CompiledModel, ScenarioError, compile_model, load_scenario, run, run_design

    if isinstance(levers, str) or not 1 <= len(levers) <= 2:
        raise DashboardInputError(f"a lever grid spans one or two levers; got {levers!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise DashboardInputError(f"n_steps must be an integer of at least 2; got {n_steps!r}")
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    elements = [model.resolve(name, kinds=("constant",), role="lever") for name in levers]
    if len({e.py_name for e in elements}) != len(elements):
        raise DashboardInputError(f"the levers of a grid must differ; got {list(levers)}")
    given = {model.resolve(k, kinds=("constant",), role="lever").py_name: v for k, v in (values or {}).items()}
    unknown = set(given) - {e.py_name for e in elements}
    if unknown:
        raise DashboardInputError(f"values given for {sorted(unknown)}, which are not levers of this grid {list(levers)}")
    axes = [(e, _lever_values(e, given.get(e.py_name), n_steps)) for e in elements]
    scenario_list = list(scenarios) if scenarios else [None]

    first = run(model, scenario=scenario_list[0], **run_options)
    if variables is None:
        variables = [group[0] for group in sector_panels(first).values()]
    variables = [model.resolve(v, kinds=("stock", "flow", "auxiliary", "stateful")).py_name for v in variables]
    lever_names = {e.py_name for e in elements}
    if lever_names & set(variables):
        raise DashboardInputError(f"a lever cannot also be an output of its grid: {sorted(lever_names & set(variables))}")

    shape = [len(vals) for _, vals in axes]
    points = list(np.ndindex(*shape))
    samples = {e.py_name: [float(vals[point[i]]) for point in points] for i, (e, vals) in enumerate(axes)}
    try:
        design = run_design(model, samples, scenario_list, variables=variables, **run_options)
    except ScenarioError as exc:
        raise DashboardInputError(f"lever grid: {exc}") from None
    if design.sizes["time"] != first.sizes["time"]:
        raise DashboardInputError("the grid's runs have a different time axis from the first run; give the same "
                                  "final_time, time_step and saveper to every scenario of a grid")
    n_time = first.sizes["time"]
    data = {v: design[v].values.reshape(len(scenario_list), *shape, n_time) for v in variables}
    ok = design["ok"].values.reshape(len(scenario_list), *shape)

    dims = ["scenario", *(e.py_name for e, _ in axes)]
    coords: dict[str, Any] = {
        e.py_name: (e.py_name, vals, {"long_name": e.name, "units": e.units, "comment": e.comment})
        for e, vals in axes
    }
    coords["time"] = first["time"]
    data_vars = {
        v: ((*dims, "time"), data[v], {k: first[v].attrs.get(k, "") for k in ("long_name", "units", "comment")})
        for v in variables
    }
    data_vars["ok"] = (dims, ok, {"long_name": "run stayed finite"})
    if scenarios:
        labels = [load_scenario(s, model).name for s in scenario_list]
        if len(set(labels)) != len(labels):
            raise DashboardInputError(f"the scenarios of a grid must have distinct names; got {labels}")
        coords["scenario"] = ("scenario", np.asarray(labels, dtype=str), {"long_name": "Scenario"})
    grid = xr.Dataset(data_vars, coords=coords)
    if not scenarios:
        grid = grid.isel(scenario=0, drop=True)
    grid.attrs = {k: first.attrs[k] for k in _KEPT_ATTRS if k in first.attrs}
    grid.attrs["levers"] = json.dumps([e.py_name for e, _ in axes])
    grid.attrs["n_failed_runs"] = int(ok.size - ok.sum())
    return grid


def describe_lever(spec: str) -> tuple[str, list[float] | tuple[float, float] | None]:
    """Parse a command-line lever: ``NAME``, ``NAME=lo:hi`` (a range) or ``NAME=v1,v2,...``."""
    name, sep, raw = spec.partition("=")
    name = name.strip()
    if not name:
        raise DashboardInputError(f"--lever expects NAME, NAME=lo:hi or NAME=v1,v2,...; got {spec!r}")
    if not sep:
        return name, None
    try:
        if ":" in raw:
            lo, _, hi = raw.partition(":")
            bounds = (float(lo), float(hi))
            if not all(math.isfinite(b) for b in bounds) or bounds[1] <= bounds[0]:
                raise ValueError
            return name, bounds
        return name, [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise DashboardInputError(
            f"--lever {name}: give lo:hi with lo < hi, or a comma-separated list of numbers; got {raw!r}"
        ) from None
