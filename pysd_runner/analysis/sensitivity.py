"""Global sensitivity of trajectory metrics with SALib: Sobol indices and Morris screening.

A metric turns each member's trajectory into one number. Written as text, a metric is
``FUNCTION(variable[, arguments])``:

- ``final(x)``, ``initial(x)``: the value at the last or first save time;
- ``change(x)``: final minus initial value;
- ``at(x, t)``: the value at time ``t`` (nearest save time);
- ``min(x)``, ``max(x)``: extremes over the run; ``time_of_min(x)``, ``time_of_max(x)``;
- ``mean(x)`` or ``mean(x, t0, t1)``: the time mean, optionally over a window;
- or any Python callable taking the ensemble Dataset and returning one value per ``run``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..compiler import CompiledModel, compile_model
from ..errors import ParameterError, SimulationError
from .sampling import check_width, marginals_json, resolve_marginals

__all__ = ["sensitivity", "Metric", "parse_metric"]

FUNCTIONS = {
    "final": 0, "initial": 0, "change": 0, "min": 0, "max": 0, "time_of_min": 0, "time_of_max": 0,
    "at": 1, "mean": (0, 2),
}


class Metric:
    """A named scalar summary of each member's trajectory."""

    def __init__(self, name: str, function: Callable[[xr.Dataset], Any], variables: tuple[str, ...] = ()):
        self.name = name
        self.function = function
        self.variables = variables

    def __call__(self, dataset: xr.Dataset) -> np.ndarray:
        values = np.asarray(self.function(dataset), dtype=float)
        if values.shape != (dataset.sizes["run"],):
            raise ParameterError(
                f"metric '{self.name}' must give one number per member, shape ({dataset.sizes['run']},); "
                f"got shape {values.shape}"
            )
        return values


def parse_metric(text: str | Callable | Metric, model: CompiledModel) -> Metric:
    """Turn ``"min(profit rate)"`` (Vensim or Python names) or a callable into a :class:`Metric`.

    ``"LABEL=FUNCTION(variable, ...)"`` names the metric ``LABEL`` (a short column title).
    """
    if isinstance(text, Metric):
        return text
    if callable(text):
        return Metric(getattr(text, "__name__", "metric"), text)
    label, sep, body = str(text).partition("=")
    if not sep or "(" in label:
        label, body = None, str(text)
    else:
        label = label.strip()
        if not label:
            raise ParameterError(f"metric {text!r}: a label goes before '=' (LABEL=FUNCTION(variable)); it is empty")
    match = re.fullmatch(r"\s*([a-z_]+)\s*\((.*)\)\s*", body)
    if not match or match.group(1) not in FUNCTIONS:
        raise ParameterError(
            f"metric must look like FUNCTION(variable[, args]) with FUNCTION one of "
            f"{', '.join(FUNCTIONS)}; got {text!r}"
        )
    function, inner = match.groups()
    parts = [p.strip() for p in inner.split(",")]
    variable = model.resolve(parts[0], kinds=("stock", "flow", "auxiliary", "stateful", "constant")).py_name
    try:
        args = [float(p) for p in parts[1:]]
    except ValueError:
        raise ParameterError(f"metric {text!r}: arguments after the variable must be numbers") from None
    allowed = FUNCTIONS[function]
    counts = allowed if isinstance(allowed, tuple) else (allowed,)
    if len(args) not in counts:
        raise ParameterError(f"metric {function}() takes {' or '.join(map(str, counts))} number(s) after the variable; got {len(args)}")
    name = label or f"{function}({variable}{''.join(f', {a:g}' for a in args)})"

    def compute(ds: xr.Dataset) -> np.ndarray:
        da = ds[variable]
        if set(da.dims) - {"run", "time", "scenario"}:
            raise ParameterError(f"metric {name}: '{variable}' is subscripted; use a callable metric for it")
        t = ds["time"].values
        if function == "final":
            return da.isel(time=-1).values
        if function == "initial":
            return da.isel(time=0).values
        if function == "change":
            return (da.isel(time=-1) - da.isel(time=0)).values
        if function == "min":
            return da.min("time").values
        if function == "max":
            return da.max("time").values
        if function == "time_of_min":
            return t[da.argmin("time").values]
        if function == "time_of_max":
            return t[da.argmax("time").values]
        if function == "at":
            if not t[0] <= args[0] <= t[-1]:
                raise ParameterError(f"metric {name}: time {args[0]:g} is outside the run [{t[0]:g}, {t[-1]:g}]")
            return da.sel(time=args[0], method="nearest").values
        if len(args) == 2:
            lo, hi = args
            if not (t[0] <= lo < hi <= t[-1]):
                raise ParameterError(f"metric {name}: window [{lo:g}, {hi:g}] must lie inside the run [{t[0]:g}, {t[-1]:g}] with start < end")
            da = da.sel(time=slice(lo, hi))
        return da.mean("time").values

    return Metric(name, compute, (variable,))


def sensitivity(
    model: CompiledModel | str,
    params: Sequence[str] | None = None,
    *,
    metrics: Sequence[str | Callable | Metric],
    method: str = "sobol",
    n: int = 512,
    seed: int | None = None,
    bounds: dict | None = None,
    width: float | None = None,
    centre: dict | None = None,
    calc_second_order: bool = False,
    num_levels: int = 4,
    conf_level: float = 0.95,
    num_resamples: int = 200,
    shared_params: dict | None = None,
    **ensemble_kwargs: Any,
) -> xr.Dataset:
    """Sobol indices (Saltelli design) or Morris elementary effects of trajectory metrics.

    Parameters
    ----------
    model : CompiledModel or path
    params : list of str, optional
        Constants to vary (default: every constant with a finite Vensim range), uniformly
        within their ranges or ``bounds``.
    width : float in (0, 1], optional
        Vary each constant without ``bounds`` only this share of the way from its value in
        the model file (or ``centre``'s value) to each end of its range (see :func:`sample`).
    centre : mapping, optional
        ``{name: value}`` the width is measured from, e.g. a scenario's values.
    metrics : list of str or callables
        See the module docstring.
    method : {"sobol", "morris"}
    n : int
        Sobol: base sample size N (a power of two; N (D + 2) members without second-order
        indices). Morris: number of trajectories (N (D + 1) members).
    seed : int, optional
        Seeds the design and SALib's bootstrap, so results reproduce exactly.
    shared_params : mapping, optional
        Constants held at these values for every member (``params`` of :func:`run_ensemble`).
    **ensemble_kwargs
        Passed to :func:`run_ensemble` (scenario, final_time, executor, chunk_size, ...).

    Returns
    -------
    xarray.Dataset
        Dims ``metric`` and ``param``. Sobol: ``S1``, ``S1_conf``, ``ST``, ``ST_conf``
        (and ``S2``, ``S2_conf`` over ``param``, ``param2`` with second order). Morris:
        ``mu``, ``mu_star``, ``sigma``, ``mu_star_conf``. Attrs: method, n, seed,
        members, and the ensemble's provenance.
    """
    from ..ensemble import run_ensemble

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    if method not in ("sobol", "morris"):
        raise ParameterError(f"method must be 'sobol' or 'morris'; got {method!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ParameterError(f"n must be an integer of at least 2; got {n!r}")
    if not metrics:
        raise ParameterError("give at least one metric, e.g. 'min(profit_rate)'")
    parsed = [parse_metric(m, model) for m in metrics]
    width = check_width(width)
    elements, marginals = resolve_marginals(model, params, bounds, None, width, centre)
    names = [e.py_name for e in elements]
    problem = {"num_vars": len(names), "names": names, "bounds": [list(spec) for _, spec in marginals]}
    if len(names) < 2:
        raise ParameterError("sensitivity analysis needs at least two parameters")
    if method == "sobol":
        if n & (n - 1):
            raise ParameterError(f"n must be a power of two for Sobol indices; got {n}")
        from SALib.sample import sobol as design

        X = design.sample(problem, int(n), calc_second_order=calc_second_order, seed=seed)
    else:
        from SALib.sample import morris as design

        X = design.sample(problem, int(n), num_levels=num_levels, seed=seed)
    needed = {v for m in parsed for v in m.variables}
    variables = ensemble_kwargs.pop("variables", None) or sorted(needed) or None
    ensemble = run_ensemble(model, {name: X[:, j] for j, name in enumerate(names)}, variables=variables,
                            params=shared_params, seed=seed, **ensemble_kwargs)
    bad = ~ensemble["ok"].values
    if bad.any():
        first = int(np.argmax(bad))
        values = ", ".join(f"{k}={X[first, j]:g}" for j, k in enumerate(names))
        raise SimulationError(
            f"{int(bad.sum())} of {bad.size} members went non-finite (first: member {first} with {values}); "
            "sensitivity indices need every member: narrow the bounds",
            time=float("nan"), variable="",
        )
    results = []
    for metric in parsed:
        Y = metric(ensemble)
        if not np.isfinite(Y).all():
            raise ParameterError(f"metric '{metric.name}' is not finite for every member")
        if method == "sobol":
            from SALib.analyze import sobol as analyse

            out = analyse.analyze(problem, Y, calc_second_order=calc_second_order, conf_level=conf_level,
                                  num_resamples=num_resamples, seed=seed)
            keys = ["S1", "S1_conf", "ST", "ST_conf"]
        else:
            from SALib.analyze import morris as analyse

            out = analyse.analyze(problem, X, Y, conf_level=conf_level, num_resamples=num_resamples,
                                  num_levels=num_levels, seed=seed)
            keys = ["mu", "mu_star", "sigma", "mu_star_conf"]
        part = xr.Dataset({k: ("param", np.asarray(out[k], dtype=float)) for k in keys})
        if method == "sobol" and calc_second_order:
            part["S2"] = (("param", "param2"), np.asarray(out["S2"], float))
            part["S2_conf"] = (("param", "param2"), np.asarray(out["S2_conf"], float))
        results.append(part)
    dataset = xr.concat(results, dim="metric")
    coords = {"metric": [m.name for m in parsed], "param": names}
    if method == "sobol" and calc_second_order:
        coords["param2"] = names
    dataset = dataset.assign_coords(coords)
    dataset["param_long_name"] = ("param", [e.name for e in elements])
    dataset["param_units"] = ("param", [e.units for e in elements])
    labels = {
        "S1": "first-order Sobol index", "ST": "total-order Sobol index",
        "S1_conf": f"{conf_level:.0%} confidence half-width of S1", "ST_conf": f"{conf_level:.0%} confidence half-width of ST",
        "mu": "mean elementary effect", "mu_star": "mean absolute elementary effect",
        "sigma": "standard deviation of elementary effects", "mu_star_conf": f"{conf_level:.0%} confidence half-width of mu_star",
        "S2": "second-order Sobol index", "S2_conf": "confidence half-width of S2",
    }
    for key in dataset.data_vars:
        if key in labels:
            dataset[key].attrs = {"long_name": labels[key], "units": "1" if key.startswith("S") else ""}
    attrs = dict(ensemble.attrs)
    attrs.update({"method": method, "n": int(n), "members": int(X.shape[0]), "seed": seed if seed is not None else "none",
                  "conf_level": conf_level, "width": width if width is not None else "whole Vensim ranges",
                  "marginals": marginals_json(elements, marginals)})
    dataset.attrs = attrs
    return dataset
