"""Calibration specs: a TOML file (or the same structure as Python objects), validated.

A spec says which model and scenario to fit, which constants are free (bounds, prior,
log scale), which model variable is compared with which data series (transform, weight,
error model), the fit and hold-out windows, the method and its settings, the uncertainty
method and the seed. Every error names the file and the key::

    description = "Keen core, US 1950-2019"
    model = "../keen.mdl"              # relative to this file
    scenario = "good_equilibrium"      # optional
    seed = 1
    countries = ["US", "GB"]           # optional: one fit per country, stacked along `country`
    plausibility = "penalise"          # candidates leaving the model's plausible.toml are penalised by
                                       # their distance outside; "ignore" only counts them

    [plausible]                        # optional: narrower ranges for this fit (as in plausible.toml)
    "debt ratio" = { range = [0, 1.5], why = "US business debt stayed within 0.3-0.8 of output" }

    [time]
    origin = 1950                      # calendar year at the model's initial time
    time_step = 0.03125                # optional overrides of the model's time settings
    fit = [1950, 2007]
    holdout = [2008, 2019]             # optional

    [parameters."Phillips curve intercept"]
    bounds = [0.02, 0.08]
    prior = { dist = "norm", loc = 0.04, scale = 0.01 }   # optional; default uniform in bounds
    log = false                        # optimise log(value) (bounds must be positive)
    initial = 0.04                     # optional starting value (least_squares, mcmc)

    [fixed]                            # optional constants held at given values
    "initial debt ratio" = 0.5
    # ... or taken from a data series at a time (default: time.origin): initial states
    "initial wage share" = { series = "pwt.labour_share", country = "US", at = 1950 }

    [[observations]]
    variable = "wage share"            # model variable (Vensim or Python name)
    series = "pwt.labour_share"        # catalogue name, fred:ID or csv:PATH[#COLUMN]
    country = "US"                     # for panel series (omit with `countries`)
    transform = ["scale:1"]            # optional, applied to the data
    model_transform = []               # optional, applied to the model variable
    weight = 1.0
    error = "normal"                   # or "lognormal" (residuals of logs); "ar1" or
                                       # "lognormal_ar1": the same residuals with AR(1)
                                       # autocorrelation, estimated per series
    sigma = "estimate"                 # or a number: the error scale
    # Measurement equation: data = scale * model + offset. Each term is fixed (a number, or
    # { value = ..., reason = "..." }) or free ({ bounds = [low, high], reason = "..." }).
    # Anything but scale 1 and offset 0 needs a reason: the known gap between the model's
    # concept and the data's. A free term is a parameter of the fit (AIC, intervals,
    # identification), named "scale of NAME" / "offset of NAME".
    scale = { bounds = [0.5, 1.5], reason = "..." }
    offset = 0.0

    [state_space]                      # optional: a filtered fit (calibration.state_space)
    method = "kalman"                  # extended Kalman filter, or "particle"
    particles = 2000                   # particle only
    [state_space.process_noise]        # sd per square root of the time unit, on named stocks:
    "capital" = { bounds = [0.001, 0.1], log = true, scale = "log" }   # or a number
    [state_space.initial_sd]           # sd of named stocks' initial values (default 0)
    "private debt" = 0.1
    # ...and each observation's sigma is a number or { bounds = [low, high] } (estimated).

    [method]
    name = "differential_evolution"    # least_squares | differential_evolution | mcmc
                                       # (a filtered fit: differential_evolution, or if2
                                       # with the particle filter)
    popsize = 15                       # further settings per method (see calibration.methods)

    [uncertainty]
    method = "profile"                 # profile | bootstrap | posterior | none
    level = 0.95
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from pysd_runner import CompiledModel, CrisisError, compile_model

from .errors import DataError, SpecError, did_you_mean

__all__ = ["CalibrationSpec", "FreeParameter", "Observation", "StateSpaceSettings", "NoiseTerm", "load_spec", "METHODS",
           "UNCERTAINTY", "FILTERS"]

METHODS = ("least_squares", "differential_evolution", "mcmc", "if2")
UNCERTAINTY = ("profile", "bootstrap", "posterior", "none")
ERRORS = ("normal", "lognormal", "ar1", "lognormal_ar1")
#: Error models on the residuals of logs, and those with AR(1) autocorrelation.
LOG_ERRORS = ("lognormal", "lognormal_ar1")
AR1_ERRORS = ("ar1", "lognormal_ar1")
PRIORS = ("uniform", "norm", "lognorm", "truncnorm", "beta", "gamma")

_TOP = {"description", "model", "scenario", "seed", "countries", "time", "parameters", "fixed", "observations",
        "method", "uncertainty", "checkpoint", "plausibility", "plausible", "state_space"}
#: What a fit does with candidates that leave the model's plausible ranges (plausible.toml).
PLAUSIBILITY = ("penalise", "ignore")
_TIME = {"origin", "time_step", "saveper", "fit", "holdout"}
_PARAMETER = {"bounds", "prior", "log", "initial"}
_MEASUREMENT = {"bounds", "prior", "log", "initial", "value", "reason"}
_FIXED_FROM_DATA = {"series", "country", "at", "transform"}
_OBSERVATION = {"variable", "series", "country", "transform", "model_transform", "weight", "error", "sigma", "window",
                "name", "scale", "offset"}
#: The terms of a measurement equation and their neutral values.
MEASUREMENT_TERMS = {"scale": 1.0, "offset": 0.0}
_METHOD_SETTINGS = {
    "least_squares": {"n_starts", "max_nfev", "ftol", "xtol", "gtol", "loss", "diff_step"},
    "differential_evolution": {"popsize", "maxiter", "tol", "atol", "mutation", "recombination", "strategy", "polish",
                               "init", "polish_maxiter"},
    "mcmc": {"n_walkers", "n_steps", "burn", "thin", "start", "init_scale", "moves"},
    # Iterated filtering (Ionides et al. 2015), for a [state_space] fit with method = "particle".
    "if2": {"iterations", "cooling", "rw_sd", "particles"},
}
_UNCERTAINTY_SETTINGS = {"method", "level", "n_bootstrap", "block_length", "n_points", "span",
                         "max_iter", "parameters"}  # the last two: filtered fits' profiles
_CHECKPOINT = {"interval"}


@dataclass(frozen=True)
class FreeParameter:
    """A value the fit may move: a model constant, or a term of an observation's measurement
    equation (``kind`` "scale" or "offset", ``observation`` its name), with bounds, prior and scale."""

    name: str          # Vensim name, or "scale of NAME" / "offset of NAME"
    py_name: str
    lower: float
    upper: float
    log: bool = False
    prior: dict = field(default_factory=lambda: {"dist": "uniform"})
    initial: float | None = None
    units: str = ""
    kind: str = "model"             # "model", "scale" or "offset"
    observation: str | None = None  # the observation a measurement term belongs to
    reason: str = ""                # why a measurement term is needed

    @property
    def is_model(self) -> bool:
        return self.kind == "model"

    def to_internal(self, values):
        """Model values -> optimiser coordinates (log for log-scale parameters)."""
        return np.log(values) if self.log else np.asarray(values, dtype=float)

    def to_model(self, values):
        # exp(log(bound)) can land one rounding step outside the bound: clip back.
        return np.clip(np.exp(values), self.lower, self.upper) if self.log else np.asarray(values, dtype=float)

    @property
    def internal_bounds(self) -> tuple[float, float]:
        return (math.log(self.lower), math.log(self.upper)) if self.log else (self.lower, self.upper)


@dataclass
class Observation:
    """One model variable compared with one data series."""

    name: str                 # label along the result's `series` dim
    variable: str             # model variable, Python name
    variable_long_name: str
    series: Any               # catalogue name, fred:/csv: string, or a DataArray given directly
    country: str | None = None
    transform: list = field(default_factory=list)
    model_transform: list = field(default_factory=list)
    weight: float = 1.0
    error: str = "normal"
    sigma: float | None = None   # None: estimated
    window: tuple[float, float] | None = None
    scale: float = 1.0           # the measurement equation's fixed terms (free ones are parameters)
    offset: float = 0.0
    reasons: dict = field(default_factory=dict)   # term -> why it is there


@dataclass
class CalibrationSpec:
    """A validated calibration spec. Build one with :func:`load_spec`."""

    model: CompiledModel
    parameters: list[FreeParameter]
    observations: list[Observation]
    fit: tuple[float, float]
    holdout: tuple[float, float] | None = None
    origin: float = 0.0
    time_step: float | None = None
    saveper: float | None = None
    scenario: str | None = None
    fixed: dict = field(default_factory=dict)
    method: str = "differential_evolution"
    settings: dict = field(default_factory=dict)
    uncertainty: str = "profile"
    uncertainty_settings: dict = field(default_factory=dict)
    seed: int | None = None
    countries: list[str] | None = None
    description: str = ""
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    checkpoint_interval: float = 5.0
    raw: dict = field(default_factory=dict)
    fixed_sources: dict = field(default_factory=dict)  # constant -> where a value taken from data came from
    plausibility: str = "penalise"
    plausible: list = field(default_factory=list)  # PlausibleRange: the spec's own ranges
    state_space: Any = None  # calibration.state_space.StateSpaceSettings: a filtered (state-space) fit

    @property
    def where(self) -> str:
        return f"spec '{self.path}'" if self.path else "calibration spec"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]


# --------------------------------------------------------------------------- helpers

def _fail(where: str, key: str, message: str) -> SpecError:
    return SpecError(f"{where}: {key}: {message}")


def _number(value, where, key, *, positive=False, integer=False, minimum=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _fail(where, key, f"must be a number; got {value!r}")
    if integer and float(value) != int(value):
        raise _fail(where, key, f"must be a whole number; got {value!r}")
    value = int(value) if integer else float(value)
    if not math.isfinite(value):
        raise _fail(where, key, f"must be finite; got {value!r}")
    if positive and value <= 0:
        raise _fail(where, key, f"must be positive; got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(where, key, f"must be at least {minimum}; got {value!r}")
    return value


def _pair(value, where, key) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(where, key, f"must be a pair [start, end]; got {value!r}")
    a, b = (_number(v, where, key) for v in value)
    if a > b:
        raise _fail(where, key, f"is reversed: {a:g} > {b:g}; write [low, high]")
    return a, b


def _unknown_keys(given: Mapping, allowed: set, where: str, key: str) -> None:
    for name in given:
        if name not in allowed:
            raise _fail(where, f"{key}{'.' if key else ''}{name}",
                        f"unknown key; allowed: {', '.join(sorted(allowed))}.{did_you_mean(str(name), allowed)}")


def _steps(value, where, key) -> list:
    from . import transforms

    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _fail(where, key, f"must be a transform or a list of them; got {value!r}")
    for step in value:
        try:
            transforms.parse(step)
        except DataError as exc:
            raise _fail(where, key, str(exc)) from None
    return list(value)


def _prior(value, where, key, lower, upper) -> dict:
    from scipy import stats

    if value is None or value == "uniform":
        return {"dist": "uniform"}
    if isinstance(value, str):
        value = {"dist": value}
    if not isinstance(value, Mapping) or "dist" not in value:
        raise _fail(where, key, f"must be 'uniform' or a table with dist and its arguments; got {value!r}")
    dist = value["dist"]
    if dist not in PRIORS:
        raise _fail(where, key + ".dist", f"unknown distribution {dist!r}; allowed: {', '.join(PRIORS)}"
                    + "." + did_you_mean(str(dist), PRIORS))
    args = {k: v for k, v in value.items() if k != "dist"}
    if dist == "uniform":
        return {"dist": "uniform"}
    try:
        frozen = getattr(stats, dist)(**args)
        density = frozen.pdf(np.array([lower, (lower + upper) / 2, upper]))
    except (TypeError, ValueError) as exc:
        raise _fail(where, key, f"invalid arguments for {dist}: {exc}") from None
    if not np.all(np.isfinite(density)):
        raise _fail(where, key, f"{dist}{args} has no finite density within the bounds")
    return {"dist": dist, **args}


# --------------------------------------------------------------------------- loading

def load_spec(source: str | os.PathLike | Mapping | CalibrationSpec, *, seed: int | None = None) -> CalibrationSpec:
    """Read and validate a spec from a TOML file, or validate a mapping of the same structure.

    In a mapping, ``model`` may be a :class:`~pysd_runner.CompiledModel` and an
    observation's ``series`` an :class:`xarray.DataArray` (a ``time`` dim in calendar
    years): the "objects" form used from Python and in tests. ``seed``, if given,
    replaces the spec's seed.
    """
    if isinstance(source, CalibrationSpec):
        spec = copy.copy(source)
        if seed is not None:
            spec.seed = _seed(seed, spec.where)
        return spec
    if isinstance(source, Mapping):
        raw, path, base = dict(source), None, Path(source.get("base_dir", Path.cwd()))
        raw.pop("base_dir", None)
        where = "calibration spec"
    else:
        path = Path(source).expanduser()
        where = f"spec '{path}'"
        if not path.is_file():
            raise SpecError(f"{where}: file does not exist")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{where}: not valid TOML: {exc}") from None
        base = path.parent
    return _validate(raw, where, path, base, seed)


def _seed(value, where) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < 2**32:
        raise SpecError(f"{where}: seed: must be an integer between 0 and 2**32 - 1; got {value!r}")
    return int(value)


def _validate(raw: dict, where: str, path: Path | None, base: Path, seed) -> CalibrationSpec:
    _unknown_keys(raw, _TOP, where, "")
    # model
    if "model" not in raw:
        raise _fail(where, "model", "is required: the model file (relative to the spec) or a compiled model")
    model = raw["model"]
    if not isinstance(model, CompiledModel):
        if not isinstance(model, (str, os.PathLike)):
            raise _fail(where, "model", f"must be a path to a model file; got {model!r}")
        model_path = Path(model).expanduser()
        if not model_path.is_absolute():
            model_path = base / model_path
        try:
            model = compile_model(model_path)
        except CrisisError as exc:
            raise _fail(where, "model", str(exc)) from None
    scenario = raw.get("scenario")
    if scenario is not None:
        if not isinstance(scenario, str):
            raise _fail(where, "scenario", f"must be a scenario name or a TOML path; got {scenario!r}")
        from pysd_runner import load_scenario

        candidate = Path(scenario)
        if candidate.suffix == ".toml" and not candidate.is_absolute():
            scenario = str(base / candidate)
        try:
            load_scenario(scenario, model)
        except CrisisError as exc:
            raise _fail(where, "scenario", str(exc)) from None

    # time
    time = raw.get("time", {})
    if not isinstance(time, Mapping):
        raise _fail(where, "time", "must be a table")
    _unknown_keys(time, _TIME, where, "time")
    if "fit" not in time:
        raise _fail(where, "time.fit", "is required: the fit window [start, end] in calendar years")
    fit = _pair(time["fit"], where, "time.fit")
    holdout = _pair(time["holdout"], where, "time.holdout") if time.get("holdout") is not None else None
    if holdout is not None and holdout[0] <= fit[0]:
        raise _fail(where, "time.holdout", f"must start after the fit window starts ({fit[0]:g}); got {holdout[0]:g}")
    initial = float(model.control["initial_time"])
    origin = _number(time.get("origin", initial), where, "time.origin")
    time_step = _number(time["time_step"], where, "time.time_step", positive=True) if "time_step" in time else None
    saveper = _number(time["saveper"], where, "time.saveper", positive=True) if "saveper" in time else None
    if fit[0] < origin:
        raise _fail(where, "time.fit", f"starts at {fit[0]:g}, before the model's start (time.origin = {origin:g})")

    # parameters
    params = raw.get("parameters", {} if "state_space" in raw else None)
    if not isinstance(params, Mapping) or (not params and "state_space" not in raw):
        raise _fail(where, "parameters", "must be a table with at least one free parameter")
    free: list[FreeParameter] = []
    for name, entry in params.items():
        key = f"parameters.{name!r}" if " " in str(name) else f"parameters.{name}"
        try:
            element = model.resolve(name, kinds=("constant",), role="constant")
        except CrisisError as exc:
            raise _fail(where, key, str(exc)) from None
        if isinstance(entry, (list, tuple)):
            entry = {"bounds": entry}
        if not isinstance(entry, Mapping):
            raise _fail(where, key, f"must be a table with bounds (or a pair [low, high]); got {entry!r}")
        _unknown_keys(entry, _PARAMETER, where, key)
        if "bounds" not in entry:
            raise _fail(where, f"{key}.bounds", "is required: [low, high]")
        lower, upper, log, start, prior = _free_value(entry, where, key, element)
        if any(p.py_name == element.py_name for p in free):
            raise _fail(where, key, f"'{element.name}' is given twice")
        free.append(FreeParameter(element.name, element.py_name, lower, upper, log, prior, start, element.units))

    fixed = raw.get("fixed", {})
    if not isinstance(fixed, Mapping):
        raise _fail(where, "fixed", "must be a table of constant = value")
    fixed_resolved, fixed_sources = {}, {}
    for name, value in fixed.items():
        try:
            element = model.resolve(name, kinds=("constant",), role="constant")
        except CrisisError as exc:
            raise _fail(where, f"fixed.{name}", str(exc)) from None
        if any(p.py_name == element.py_name for p in free):
            raise _fail(where, f"fixed.{name}", f"'{element.name}' is also a free parameter")
        if isinstance(value, Mapping):
            value, fixed_sources[element.name] = _value_from_data(value, where, f"fixed.{name}", base, origin)
            lo, hi = element.limits
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise _fail(where, f"fixed.{name}", f"the data give {value:g} ({fixed_sources[element.name]}), "
                                                    f"outside the Vensim range {element.range_text} of '{element.name}'")
        fixed_resolved[element.name] = _number(value, where, f"fixed.{name}")

    # countries
    countries = raw.get("countries")
    if countries is not None:
        if (not isinstance(countries, (list, tuple)) or not countries
                or not all(isinstance(c, str) and c.strip() for c in countries)):
            raise _fail(where, "countries", f"must be a non-empty list of country codes; got {countries!r}")
        countries = [c.strip() for c in countries]
        if len(set(countries)) != len(countries):
            raise _fail(where, "countries", f"lists a country twice: {countries}")

    if countries is not None and fixed_sources:
        name = next(iter(fixed_sources))
        raise _fail(where, f"fixed.{name}", "a value read off a data series would hold for every country of "
                                            "`countries`; give a number, or fit each country with its own spec")

    # observations
    observations = raw.get("observations")
    if not isinstance(observations, (list, tuple)) or not observations:
        raise _fail(where, "observations", "must be a list of at least one [[observations]] table")
    obs: list[Observation] = []
    for i, entry in enumerate(observations):
        key = f"observations[{i}]"
        if not isinstance(entry, Mapping):
            raise _fail(where, key, "must be a table")
        _unknown_keys(entry, _OBSERVATION, where, key)
        for required in ("variable", "series"):
            if required not in entry:
                raise _fail(where, f"{key}.{required}", "is required")
        try:
            element = model.resolve(entry["variable"], kinds=("stock", "flow", "auxiliary"), role="variable")
        except CrisisError as exc:
            raise _fail(where, f"{key}.variable", str(exc)) from None
        series = entry["series"]
        if not isinstance(series, (str, xr.DataArray)):
            raise _fail(where, f"{key}.series", f"must be a series name or a DataArray; got {type(series).__name__}")
        if isinstance(series, xr.DataArray) and "time" not in series.dims:
            raise _fail(where, f"{key}.series", f"a DataArray series needs a 'time' dim; got dims {series.dims}")
        country = entry.get("country")
        if country is not None and countries is not None:
            raise _fail(where, f"{key}.country", "give either countries (top level) or a country per observation")
        weight = _number(entry.get("weight", 1.0), where, f"{key}.weight", positive=True)
        error = entry.get("error", "normal")
        if error not in ERRORS:
            raise _fail(where, f"{key}.error", f"unknown error model {error!r}; allowed: {', '.join(ERRORS)}")
        sigma = entry.get("sigma", "estimate")
        free_sigma = None
        if sigma == "estimate":
            sigma = None
        elif isinstance(sigma, Mapping) and "state_space" in raw:
            # A filtered fit estimates the observation noise as a parameter, within bounds.
            _unknown_keys(sigma, _PARAMETER, where, f"{key}.sigma")
            if "bounds" not in sigma:
                raise _fail(where, f"{key}.sigma.bounds", "is required: [low, high]")
            free_sigma = _free_value(sigma, where, f"{key}.sigma", positive=True)
            sigma = None
        else:
            sigma = _number(sigma, where, f"{key}.sigma", positive=True)
        window = _pair(entry["window"], where, f"{key}.window") if entry.get("window") is not None else None
        label = entry.get("name") or (series if isinstance(series, str) else str(series.name or element.py_name))
        if not isinstance(label, str):
            raise _fail(where, f"{key}.name", f"must be a string; got {label!r}")
        if any(o.name == label for o in obs):
            label = f"{label}~{element.py_name}"
        terms, reasons = {}, {}
        for term, neutral in MEASUREMENT_TERMS.items():
            parsed = _measurement_term(entry.get(term, neutral), neutral, where, f"{key}.{term}", term, label)
            if isinstance(parsed, FreeParameter):
                if any(p.name == parsed.name for p in free):
                    raise _fail(where, f"{key}.{term}", f"'{parsed.name}' is given twice; name the observations apart")
                free.append(parsed)
                terms[term], reasons[term] = neutral, parsed.reason
            else:
                terms[term], reason = parsed
                if reason:
                    reasons[term] = reason
        if free_sigma is not None:
            lower, upper, log, start, prior = free_sigma
            free.append(FreeParameter(f"sigma of {label}", f"sigma of {label}", lower, upper, log, prior, start,
                                      kind="sigma", observation=label, reason="observation noise of a filtered fit"))
        obs.append(Observation(
            name=label, variable=element.py_name, variable_long_name=element.name, series=series,
            country=country, transform=_steps(entry.get("transform"), where, f"{key}.transform"),
            model_transform=_steps(entry.get("model_transform"), where, f"{key}.model_transform"),
            weight=weight, error=error, sigma=sigma, window=window, scale=terms["scale"], offset=terms["offset"],
            reasons=reasons,
        ))
        if isinstance(series, str) and not series.startswith(("fred:", "csv:")):
            from .data import catalogue

            if series not in catalogue():
                raise _fail(where, f"{key}.series", f"{series!r} is not in the catalogue (see `crisis data list`)"
                            + "." + did_you_mean(series, catalogue()))

    # method
    method = raw.get("method", {"name": "differential_evolution"})
    if isinstance(method, str):
        method = {"name": method}
    if not isinstance(method, Mapping):
        raise _fail(where, "method", "must be a table with a name")
    name = method.get("name", "differential_evolution")
    if name not in METHODS:
        raise _fail(where, "method.name", f"unknown method {name!r}; allowed: {', '.join(METHODS)}"
                    + "." + did_you_mean(str(name), METHODS))
    settings = {k: v for k, v in method.items() if k != "name"}
    _unknown_keys(settings, _METHOD_SETTINGS[name], where, "method")
    if name == "if2" and "state_space" not in raw:
        raise _fail(where, "method.name", "'if2' (iterated filtering) needs a [state_space] table with "
                                          "method = 'particle'")
    for k in ("n_starts", "max_nfev", "popsize", "maxiter", "n_walkers", "n_steps", "burn", "thin", "iterations",
              "particles"):
        if k in settings:
            _number(settings[k], where, f"method.{k}", integer=True, minimum=0 if k == "burn" else 1)

    uncertainty = raw.get("uncertainty", {})
    if isinstance(uncertainty, str):
        uncertainty = {"method": uncertainty}
    if not isinstance(uncertainty, Mapping):
        raise _fail(where, "uncertainty", "must be a table with a method")
    _unknown_keys(uncertainty, _UNCERTAINTY_SETTINGS, where, "uncertainty")
    default_uncertainty = "posterior" if name == "mcmc" else "profile"
    u_method = uncertainty.get("method", default_uncertainty)
    if u_method not in UNCERTAINTY:
        raise _fail(where, "uncertainty.method", f"unknown method {u_method!r}; allowed: {', '.join(UNCERTAINTY)}")
    if u_method == "posterior" and name != "mcmc":
        raise _fail(where, "uncertainty.method", "'posterior' needs method.name = 'mcmc'")
    level = _number(uncertainty.get("level", 0.95), where, "uncertainty.level")
    if not 0 < level < 1:
        raise _fail(where, "uncertainty.level", f"must be between 0 and 1; got {level:g}")
    u_settings = {k: v for k, v in uncertainty.items() if k != "method"}
    u_settings["level"] = level

    checkpoint = raw.get("checkpoint", {})
    if not isinstance(checkpoint, Mapping):
        raise _fail(where, "checkpoint", "must be a table")
    _unknown_keys(checkpoint, _CHECKPOINT, where, "checkpoint")
    interval = _number(checkpoint.get("interval", 5.0), where, "checkpoint.interval", minimum=0)

    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(where, "description", "must be a string")
    plausible = _plausible(raw.get("plausible", {}), model, where)
    plausibility = raw.get("plausibility", "penalise")
    if plausibility not in PLAUSIBILITY:
        raise _fail(where, "plausibility", f"must be one of {', '.join(PLAUSIBILITY)}; got {plausibility!r}"
                    + "." + did_you_mean(str(plausibility), PLAUSIBILITY))
    state_space = None
    if "state_space" in raw:
        state_space = parse_state_space(raw["state_space"], model, where, free, obs, name, u_method, uncertainty)
    return CalibrationSpec(
        state_space=state_space, model=model, parameters=free, observations=obs, fit=fit, holdout=holdout, origin=origin,
        time_step=time_step, saveper=saveper, scenario=scenario, fixed=fixed_resolved, method=name,
        settings=settings, uncertainty=u_method, uncertainty_settings=u_settings,
        seed=_seed(raw.get("seed") if seed is None else seed, where), countries=countries,
        description=description, path=path, base_dir=base, checkpoint_interval=interval, raw=raw,
        fixed_sources=fixed_sources, plausibility=plausibility, plausible=plausible,
    )


def _plausible(table, model, where: str) -> list:
    """The spec's own plausible ranges: for this fit, narrower than (or beside) plausible.toml."""
    from pysd_runner import PlausibleRange

    if not isinstance(table, Mapping):
        raise _fail(where, "plausible", "must be a table of variable = { range = [low, high], why = \"...\" }")
    out = []
    for name, entry in table.items():
        key = f"plausible.{name}"
        if not isinstance(entry, Mapping):
            entry = {"range": entry}
        _unknown_keys(entry, {"range", "why"}, where, key)
        why = entry.get("why", "")
        if not isinstance(why, str) or not why.strip():
            raise _fail(where, f"{key}.why", "is required: why no run of this fit should leave the range")
        low, high = _pair(entry.get("range"), where, f"{key}.range")
        if not low < high:
            raise _fail(where, f"{key}.range", f"needs low < high; got [{low:g}, {high:g}]")
        try:
            element = model.resolve(name, kinds=("stock", "flow", "auxiliary"), role="variable")
        except CrisisError as exc:
            raise _fail(where, key, str(exc)) from None
        out.append(PlausibleRange(element.name, element.py_name, low, high, why.strip()))
    return out


def _free_value(entry: Mapping, where: str, key: str, element=None, *, positive: bool = False):
    """Bounds, log scale, starting value and prior of a free value (a constant or a measurement term)."""
    bounds = entry["bounds"]
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise _fail(where, f"{key}.bounds", f"must be a pair [low, high]; got {bounds!r}")
    lower, upper = (_number(b, where, f"{key}.bounds") for b in bounds)
    if not lower < upper:
        raise _fail(where, f"{key}.bounds", f"are reversed or empty: low {lower:g} must be below high {upper:g}")
    if element is not None:
        lo, hi = element.limits
        if (lo is not None and lower < lo) or (hi is not None and upper > hi):
            raise _fail(where, f"{key}.bounds",
                        f"[{lower:g}, {upper:g}] leave the Vensim range {element.range_text} of '{element.name}'")
    if positive and lower <= 0:
        raise _fail(where, f"{key}.bounds", f"a scale must stay above zero; got [{lower:g}, {upper:g}]")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise _fail(where, f"{key}.log", f"must be true or false; got {log!r}")
    if log and lower <= 0:
        raise _fail(where, f"{key}.log", f"a log-scale value needs positive bounds; got low {lower:g}")
    start = entry.get("initial")
    if start is not None:
        start = _number(start, where, f"{key}.initial")
        if not lower <= start <= upper:
            raise _fail(where, f"{key}.initial", f"{start:g} is outside the bounds [{lower:g}, {upper:g}]")
    prior = _prior(entry.get("prior"), where, f"{key}.prior", lower, upper)
    return lower, upper, log, start, prior


def _value_from_data(entry: Mapping, where: str, key: str, base: Path, origin: float) -> tuple[float, str]:
    """A constant read off a data series at one time (an initial state from the data)."""
    from . import transforms
    from .data import load_series

    _unknown_keys(entry, _FIXED_FROM_DATA, where, key)
    series = entry.get("series")
    if not isinstance(series, str):
        raise _fail(where, f"{key}.series", f"is required: a catalogue name, fred:ID or csv:PATH; got {series!r}")
    country = entry.get("country")
    if country is not None and not isinstance(country, str):
        raise _fail(where, f"{key}.country", f"must be a country code; got {country!r}")
    at = _number(entry.get("at", origin), where, f"{key}.at")
    try:
        data = load_series(series, country=country, base_dir=base)
        data = transforms.apply(data, _steps(entry.get("transform"), where, f"{key}.transform"))
    except SpecError:
        raise
    except CrisisError as exc:
        raise _fail(where, f"{key}.series", str(exc)) from None
    if "country" in data.dims:
        raise _fail(where, f"{key}.country", f"series '{series}' is a panel; give a country")
    times = data["time"].values.astype(float)
    hit = np.flatnonzero(np.isclose(times, at, atol=1e-6) & np.isfinite(data.values.astype(float)))
    if hit.size == 0:
        raise _fail(where, f"{key}.at", f"series '{series}' has no value at {at:g} (it spans "
                                        f"{times.min():g}-{times.max():g}); give at = a time it has")
    value = float(data.values[hit[0]])
    source = f"{series}{' ' + country if country else ''} at {at:g}"
    return value, source


def _measurement_term(value, neutral: float, where: str, key: str, term: str, label: str):
    """A measurement term: (fixed value, reason) or a FreeParameter. Anything but the neutral
    value needs a reason, the known gap between the model's concept and the data's."""
    if not isinstance(value, Mapping):
        number = _number(value, where, key)
        if number != neutral:
            raise _fail(where, key, f"{number:g} needs a reason: write {{ value = {number:g}, reason = \"...\" }} "
                                    "saying which gap between the model's concept and the data's it stands for")
        return number, ""
    _unknown_keys(value, _MEASUREMENT, where, key)
    reason = value.get("reason", "")
    if not isinstance(reason, str):
        raise _fail(where, f"{key}.reason", f"must be a string; got {reason!r}")
    if "bounds" in value and "value" in value:
        raise _fail(where, key, "give either value (fixed) or bounds (free), not both")
    if "bounds" not in value:
        extra = set(value) - {"value", "reason"}
        if extra:
            raise _fail(where, key, f"{', '.join(sorted(extra))} only apply to a free term (with bounds)")
        number = _number(value.get("value", neutral), where, f"{key}.value")
        if term == "scale" and number == 0:
            raise _fail(where, f"{key}.value", "a scale of 0 would compare the data with a constant")
        if number != neutral and not reason.strip():
            raise _fail(where, f"{key}.reason", "is required: which gap between the model's concept and the data's "
                                                f"makes {term} = {number:g} necessary")
        return number, reason.strip()
    if not reason.strip():
        raise _fail(where, f"{key}.reason", f"is required for a free {term}: which gap between the model's concept "
                                            "and the data's it stands for")
    lower, upper, log, start, prior = _free_value(value, where, key, positive=term == "scale")
    name = f"{term} of {label}"
    return FreeParameter(name, name, lower, upper, log, prior, start, "1" if term == "scale" else "",
                         kind=term, observation=label, reason=reason.strip())


# --------------------------------------------------------------------------- [state_space]

FILTERS = ("kalman", "particle")
_STATE_SPACE_KEYS = {"method", "particles", "process_noise", "initial_sd"}
_NOISE_KEYS = {"bounds", "log", "initial", "prior", "scale", "sd"}


@dataclass(frozen=True)
class NoiseTerm:
    """Process noise on one stock: a fixed sd, or a free parameter (``parameter`` its name)."""

    stock: str          # Vensim name
    py_name: str
    sd: float | None    # fixed value, or None when estimated
    parameter: str | None = None
    log: bool = False   # relative (multiplicative) noise


@dataclass
class StateSpaceSettings:
    method: str
    particles: int
    noise: list[NoiseTerm]
    initial_sd: dict[str, float]          # stock py_name -> sd of its initial value
    initial_names: dict[str, str] = field(default_factory=dict)   # py_name -> Vensim name

    def describe(self) -> dict:
        return {"method": self.method, "particles": self.particles,
                "process_noise": {t.stock: ({"sd": t.sd} if t.parameter is None else {"estimated": t.parameter})
                                  | ({"scale": "log"} if t.log else {}) for t in self.noise},
                "initial_sd": {self.initial_names[k]: v for k, v in self.initial_sd.items()}}


def _ss_fail(where: str, key: str, message: str) -> SpecError:
    return SpecError(f"{where}: state_space.{key}: {message}")


def _stock(model, name, where, key):
    try:
        return model.resolve(name, kinds=("stock",), role="stock")
    except CrisisError as exc:
        raise _ss_fail(where, key, str(exc)) from None


def _time_unit(model) -> str:
    return getattr(model, "time_units", "") or "time"


def parse_state_space(table, model, where: str, free: list, observations: list, method: str,
                      uncertainty: str, raw_uncertainty=None) -> StateSpaceSettings:
    """Validate a spec's ``[state_space]`` table; free noise terms are appended to ``free``."""
    if not isinstance(table, Mapping):
        raise SpecError(f"{where}: state_space: must be a table with method = 'kalman' or 'particle'")
    _unknown_keys(table, _STATE_SPACE_KEYS, where, "state_space")
    kind = table.get("method", "kalman")
    if kind not in FILTERS:
        raise _ss_fail(where, "method", f"unknown filter {kind!r}; allowed: {', '.join(FILTERS)}."
                    + did_you_mean(str(kind), FILTERS))
    particles = int(_number(table.get("particles", 1000), where, "state_space.particles", integer=True, minimum=10))
    if "particles" in table and kind != "particle":
        raise _ss_fail(where, "particles", "only applies to method = 'particle'")
    noise_table = table.get("process_noise", {})
    if not isinstance(noise_table, Mapping) or not noise_table:
        raise _ss_fail(where, "process_noise", "must name at least one stock and its noise sd: without process noise "
                                            "the filter is the open-loop run (use an ordinary fit)")
    noise: list[NoiseTerm] = []
    for name, entry in noise_table.items():
        key = f"process_noise.{name}"
        element = _stock(model, name, where, key)
        if any(t.py_name == element.py_name for t in noise):
            raise _ss_fail(where, key, f"'{element.name}' is given twice")
        if not isinstance(entry, Mapping):
            entry = {"sd": entry}
        _unknown_keys(entry, _NOISE_KEYS, f"{where}: state_space", key)
        scale = entry.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise _ss_fail(where, f"{key}.scale", f"must be 'linear' or 'log'; got {scale!r}")
        if "bounds" in entry:
            if "sd" in entry:
                raise _ss_fail(where, key, "give either sd (fixed) or bounds (estimated), not both")
            fields = {k: v for k, v in entry.items() if k != "scale"}
            lower, upper, log, start, prior = _free_value(fields, where, f"state_space.{key}")
            if lower < 0:
                raise _ss_fail(where, f"{key}.bounds", f"a noise sd cannot be negative; got low {lower:g}")
            pname = f"process noise of {element.name}"
            units = "1" if scale == "log" else (element.units or "1")
            free.append(FreeParameter(pname, pname, lower, upper, log, prior, start,
                                      f"{units}/sqrt({_time_unit(model)})", kind="noise",
                                      reason="process noise of a filtered fit"))
            noise.append(NoiseTerm(element.name, element.py_name, None, pname, scale == "log"))
        else:
            extra = set(entry) - {"sd", "scale"}
            if extra:
                raise _ss_fail(where, key, f"{', '.join(sorted(extra))} only apply to an estimated sd (with bounds)")
            sd = _number(entry.get("sd"), where, f"state_space.{key}")
            if sd < 0:
                raise _ss_fail(where, key, f"a noise sd cannot be negative; got {sd:g}")
            noise.append(NoiseTerm(element.name, element.py_name, sd, None, scale == "log"))
    initial = table.get("initial_sd", {})
    if not isinstance(initial, Mapping):
        raise _ss_fail(where, "initial_sd", "must be a table of stock = sd")
    initial_sd, names = {}, {}
    for name, value in initial.items():
        element = _stock(model, name, where, f"initial_sd.{name}")
        sd = _number(value, where, f"state_space.initial_sd.{name}")
        if sd < 0:
            raise _ss_fail(where, f"initial_sd.{name}", f"cannot be negative; got {sd:g}")
        initial_sd[element.py_name], names[element.py_name] = sd, element.name
    for i, obs in enumerate(observations):
        key = f"{where}: observations[{i}]"
        if obs.error in AR1_ERRORS:
            raise SpecError(f"{key}.error: '{obs.error}' is an open-loop error model; a filtered fit's process "
                            "noise already carries the autocorrelation: use 'normal' or 'lognormal'")
        if obs.model_transform:
            raise SpecError(f"{key}.model_transform: a filtered fit observes the model's variables at each time; "
                            "transforms of the model's whole run are not supported (transform the data instead)")
        if obs.sigma is None and not any(p.kind == "sigma" and p.observation == obs.name for p in free):
            raise SpecError(f"{key}.sigma: a filtered fit needs the observation noise: a number, or "
                            "{ bounds = [low, high] } to estimate it with the other parameters")
    if method not in ("differential_evolution", "if2"):
        raise SpecError(f"{where}: method.name: a filtered fit is estimated by 'differential_evolution' "
                        f"(or 'if2' with the particle filter); got {method!r}")
    if method == "if2" and kind != "particle":
        raise SpecError(f"{where}: method.name: 'if2' (iterated filtering) needs state_space.method = 'particle'")
    which = (raw_uncertainty or {}).get("parameters", "all") if isinstance(raw_uncertainty, Mapping) else "all"
    if which not in ("all", "model"):
        raise SpecError(f"{where}: uncertainty.parameters: must be 'all' (profile every parameter) or 'model' "
                        f"(profile the model's and measurement parameters, Wald intervals for the noise sds); "
                        f"got {which!r}")
    if uncertainty not in ("profile", "none"):
        raise SpecError(f"{where}: uncertainty.method: a filtered fit reports 'profile' intervals or 'none'; "
                        f"got {uncertainty!r}")
    return StateSpaceSettings(kind, particles, noise, initial_sd, names)
