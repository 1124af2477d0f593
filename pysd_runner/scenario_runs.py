"""Runs of several scenarios: stacked along a ``scenario`` dim (:func:`run_scenarios`), or
crossed with a design of parameter values (:func:`run_design`, behind the report's lever grid).

Scenarios that differ only in constants and share their time settings run as members of one
ensemble (:func:`pysd_runner.run_ensemble`), equal to single runs to rounding; others run one by one.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .compiler import CompiledModel, compile_model
from .errors import ImplausibleWarning, ScenarioError, SimulationError
from .ensemble import normalise_samples, run_ensemble
from .inputs import merged_params, normalise_params, output_elements, params_json, provenance, time_settings
from .plausible import plausible_path
from .runner import run
from .scenarios import Scenario, events_json, load_scenario
from .vectorise import vectorisation_blockers

__all__ = ["run_scenarios", "scenarios_on_one_axis", "run_design"]


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
    events = [ds.attrs.get("scenario_events", "[]") for ds in runs]
    stacked = xr.concat(
        [ds.drop_attrs(deep=False) for ds in runs], dim="scenario", coords="minimal", compat="override", join="exact"
    )
    stacked = stacked.assign_coords(
        scenario=("scenario", np.asarray(names, dtype=str), {"long_name": "Scenario"}),
        scenario_description=("scenario", np.asarray(descriptions, dtype=str)),
        scenario_events=("scenario", np.asarray(events, dtype=str), {"long_name": "the scenario's events (JSON)"}),
    )
    attrs = dict(runs[0].attrs)
    attrs["scenario_events"] = "[]"
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
        settings = time_settings(model, scen, merged_params(model, scen, params, False), **given)
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


def _design_ensemble(model: CompiledModel, scenarios: Sequence[Scenario | None], members: Mapping[str, np.ndarray],
                     outputs: list[str] | None, options: Mapping[str, Any]) -> tuple[xr.Dataset, list[dict]] | None:
    """Every scenario x member combination as one member of one ensemble, or None.

    Possible when the scenarios set only constants (no policies), share their time settings
    and the model has no random functions; members equal single runs to rounding (the tests
    check every model). ``options`` holds the run's ``params`` (shared by every scenario),
    ``final_time``, ``time_step``, ``saveper``, ``check_ranges``, ``progress`` and
    ``max_memory``. Returns the ensemble (members scenario-major) and each scenario's constants.
    """
    check = options.get("check_ranges", True)
    given = {k: options.get(k) for k in ("final_time", "time_step", "saveper")}
    if model.uses_random or any(s is not None and s.policies for s in scenarios):
        return None
    effective = [time_settings(model, s, merged_params(model, s, options.get("params"), False), **given) for s in scenarios]
    if any(e != effective[0] for e in effective):
        return None
    shared = normalise_params(model, options.get("params"), check)
    per_scenario = []
    for scen in scenarios:
        values = merged_params(model, scen, None, check)
        values.update(shared)
        if any(not isinstance(v, float) for v in values.values()):
            return None  # a time series: run one by one
        per_scenario.append(values)
    n = len(next(iter(members.values()))) if members else 1
    rows = [{**base, **{k: float(v[i]) for k, v in members.items()}} for base in per_scenario for i in range(n)]
    names = sorted({k for row in rows for k in row} | {next(iter(model.constants)).py_name})
    defaults = {k: model.elements[k].default for k in names}
    if any(v is None for v in defaults.values()):
        return None  # a subscripted or computed constant: no scalar default to fill in
    design = {k: np.array([row.get(k, defaults[k]) for row in rows]) for k in names}
    settings = {k: effective[0][k] for k in ("final_time", "time_step", "saveper")}
    ensemble = run_ensemble(model, design, variables=outputs, check_ranges=check, progress=options.get("progress", False),
                            max_memory=options.get("max_memory"), **settings)
    return ensemble, per_scenario


def _scenarios_as_members(model: CompiledModel, scenarios: list[Scenario], kwargs: dict) -> xr.Dataset | None:
    """Run scenarios as members of one ensemble (:func:`_design_ensemble`) when that gives the
    same numbers and is fast (the model vectorises); all scenarios then cost about one run.
    Returns None when not possible, or when a member went non-finite (the single runs then
    report the first non-finite time and variable).
    """
    allowed = {"params", "final_time", "time_step", "saveper", "variables", "check_ranges", "max_memory"}
    if len(scenarios) < 2 or set(kwargs) - allowed - {"progress", "seed", "errors"} or kwargs.get("errors", "raise") != "raise":
        return None
    if len({s.name for s in scenarios}) != len(scenarios) or vectorisation_blockers(model):
        return None
    found = _design_ensemble(model, scenarios, {}, kwargs.get("variables"), kwargs)
    if found is None:
        return None
    ensemble, per_scenario = found
    if not ensemble["ok"].values.all():
        return None
    names = [s.name for s in scenarios]
    exits = {}
    if "plausible" in ensemble:
        exits = {name: str(text) for name, text, fine in
                 zip(names, ensemble["implausible"].values, ensemble["plausible"].values) if not fine}
        for name, text in exits.items():
            warnings.warn(f"scenario '{name}' of model '{model.source.name}' left its plausible ranges "
                          f"({plausible_path(model).name}): {text}", ImplausibleWarning, stacklevel=3)
        ensemble = ensemble.drop_vars(["plausible", "implausible"])
    samples = [k for k in ensemble.data_vars if ensemble[k].dims == ("run",)]
    data = ensemble.drop_vars(samples).rename({"run": "scenario"})
    data = data.assign_coords(
        scenario=("scenario", np.asarray(names, dtype=str), {"long_name": "Scenario"}),
        scenario_description=("scenario", np.asarray([s.description for s in scenarios], dtype=str)),
        scenario_events=("scenario", np.asarray([events_json(s.events) for s in scenarios], dtype=str),
                         {"long_name": "the scenario's events (JSON)"}),
    )
    shared = normalise_params(model, kwargs.get("params"), kwargs.get("check_ranges", True))
    given = {k: kwargs.get(k) for k in ("final_time", "time_step", "saveper")}
    settings = time_settings(model, scenarios[0], merged_params(model, scenarios[0], kwargs.get("params"), False), **given)
    attrs = provenance(model, shared, scenarios[0], kwargs.get("seed"), settings)
    attrs["scenario"] = ",".join(names)
    attrs["scenario_description"] = ""
    attrs["scenario_events"] = "[]"
    attrs["params"] = json.dumps({n: json.loads(params_json(v)) for n, v in zip(names, per_scenario)}, sort_keys=True)
    attrs["engine"] = ensemble.attrs["engine"]
    if "n_plausible" in ensemble.attrs:
        attrs["implausible"] = json.dumps(exits)
    data.attrs = attrs
    return data.transpose("scenario", "time", ...)


def run_design(
    model: CompiledModel | str | os.PathLike,
    samples: Mapping[str, Sequence[float]] | pd.DataFrame,
    scenarios: Sequence[str | os.PathLike | Scenario | None] | None = None,
    *,
    variables: Sequence[str] | str | None = None,
    **run_options: Any,
) -> xr.Dataset:
    """Every member of a design (one row of ``samples`` each) under every scenario.

    Returns a Dataset with dims ``(scenario, run, time)`` for the variables, and ``ok``
    with dims ``(scenario, run)``: a member that went non-finite is ``ok=False`` with NaN
    values. When the scenarios differ only in constants (no policies) and share their time
    settings, all scenario x member combinations are one ensemble (compiled kernel or
    vectorised), equal to single runs to rounding; otherwise each is one :func:`run`.
    ``scenarios`` may hold None for the model's defaults. ``run_options`` are
    ``final_time``, ``time_step``, ``saveper`` and, for single runs, :func:`run`'s others.

    >>> ds = run_design("models/goodwin/goodwin.mdl", {"phillips slope": [1.0, 1.5]},
    ...                 ["baseline", "strong_unions"], variables=["wage share"], final_time=10)
    >>> dict(ds["wage_share"].sizes), bool(ds["ok"].all())
    ({'scenario': 2, 'run': 2, 'time': 101}, True)
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    members = normalise_samples(model, samples, check_ranges=run_options.get("check_ranges", True))
    n = len(next(iter(members.values())))
    loaded = [load_scenario(s, model) if s is not None else None for s in (scenarios or [None])]
    labels = [s.name if s is not None else "defaults" for s in loaded]
    if len(set(labels)) != len(labels):
        raise ScenarioError(f"the scenarios of a design must have distinct names; got {labels}")
    outputs = [e.py_name for e in output_elements(model, variables)]
    found = None
    if not set(run_options) - {"final_time", "time_step", "saveper", "check_ranges", "max_memory"}:
        found = _design_ensemble(model, loaded, members, outputs, run_options)
    if found is not None:
        ensemble = found[0]
        time = ensemble["time"]
        values = {v: ensemble[v].values.reshape(len(loaded), n, -1) for v in outputs}
        ok = ensemble["ok"].values.reshape(len(loaded), n)
        engine = ensemble.attrs.get("engine", "")
        attrs = {v: ensemble[v].attrs for v in outputs}
    else:
        time, values, ok, engine, attrs = None, {}, np.zeros((len(loaded), n), bool), "pysd", {}
        for s_index, scen in enumerate(loaded):
            for i in range(n):
                params = {k: float(v[i]) for k, v in members.items()}
                try:
                    ds = run(model, params, scenario=scen, variables=outputs, **run_options)
                except SimulationError:
                    continue
                if time is None:
                    time = ds["time"]
                    values = {v: np.full((len(loaded), n, ds.sizes["time"]), np.nan) for v in outputs}
                    attrs = {v: ds[v].attrs for v in outputs}
                    engine = ds.attrs.get("engine", "pysd")
                elif ds.sizes["time"] != time.size or not np.array_equal(ds["time"].values, time.values):
                    raise ScenarioError(
                        f"scenario '{labels[s_index]}' has a different time axis from '{labels[0]}'; give the "
                        "same final_time, time_step and saveper to every scenario of a design")
                for v in outputs:
                    values[v][s_index, i] = ds[v].values
                ok[s_index, i] = True
        if time is None:
            raise SimulationError(f"every run of the design went non-finite (model '{model.source.name}')",
                                  time=float("nan"), variable="")
    data = {v: (("scenario", "run", "time"), values[v], attrs[v]) for v in outputs}
    data["ok"] = (("scenario", "run"), ok, {"long_name": "run stayed finite"})
    coords = {"scenario": ("scenario", np.asarray(labels, dtype=str), {"long_name": "Scenario"}),
              "run": ("run", np.arange(n)), "time": time}
    out = xr.Dataset(data, coords=coords)
    out.attrs["engine"] = engine
    return out
