"""``calibrate``: run a calibration spec and return the fit as an xarray Dataset.

The FitResult contract (ARCHITECTURE.md, "Fit result"):

- ``estimate(param)``, ``lower(param)``, ``upper(param)`` (interval at ``attrs["level"]``
  by ``attrs["uncertainty"]``), ``identified(param)``, the search bounds and scale;
- ``correlation(param, param_other)``;
- ``draws(draw, param)``: posterior (mcmc) or bootstrap draws, when sampled;
- ``observed``, ``fitted``, ``fitted_lower``, ``fitted_upper``, ``residual``
  (``series``, ``time`` in calendar years), residual = observed - fitted; the bands are
  the ``level`` quantiles of trajectories of the parameter draws (parameter uncertainty
  only); attrs ``holdout_start`` / ``holdout_end`` (NaN without a hold-out window);
- per-series statistics (``series``, ``period`` = fit, holdout): ``rmse``, ``mape``,
  ``r2``, ``theil_u``, ``theil_um``, ``theil_us``, ``theil_uc``, ``rho1`` (lag-1
  autocorrelation of the residuals), ``n_eff`` (their effective sample size), ``n_points``;
  ``error_rho(series)``, the AR(1) coefficient of the likelihood's error model at the best
  estimate (NaN for series with independent errors);
  ``persistence_rmse(series)`` and ``rmse_ratio_to_persistence(series)`` on the hold-out;
- optimiser diagnostics as 0-d variables prefixed ``opt_`` (and ``nll``, ``aic``, ``bic``),
  profiles (``profile_value``, ``profile_nll``), multi-start ends, autocorrelation times;
- a leading ``country`` dim when the spec lists countries.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from pysd_runner import toolkit_version

from . import methods, uncertainty
from .checkpoint import Store
from .errors import CalibrationWarning
from .problem import Problem
from .spec import AR1_ERRORS, CalibrationSpec, load_spec
from .statistics import STATISTIC_NAMES, STATISTICS, fit_statistics, linear_trend_ssr, persistence_rmse

__all__ = ["calibrate"]

BAND_DRAWS = 200
#: A best estimate outside a plausible range by less than this fraction of the range's width
#: runs along its edge (the penalty's tolerance, see calibration.problem.PLAUSIBILITY_WEIGHT).
EDGE = 1e-3


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, xr.DataArray):
        return f"<DataArray {value.name}>"
    return f"<{type(value).__name__}>"


def _fingerprint(spec: CalibrationSpec, problems: list[Problem], seed: int) -> dict:
    data = hashlib.sha256()
    for problem in problems:
        for target in problem.targets:
            data.update(np.ascontiguousarray(target.fit_times).tobytes())
            data.update(np.ascontiguousarray(target.fit_values).tobytes())
    return {
        "spec": hashlib.sha256(json.dumps(_jsonable(spec.raw), sort_keys=True).encode()).hexdigest(),
        "model_sha256": spec.model.sha256,
        "data": data.hexdigest(),
        "seed": seed,
        "method": spec.method,
        "uncertainty": spec.uncertainty,
        "checkpoint_format": 2,  # batches carry each member's status (plausible, non-finite)
        # What the spec resolves beyond its text: constants read off the data, and the ranges
        # (plausible.toml and the spec's own) that the penalty uses.
        "fixed": json.dumps(spec.fixed, sort_keys=True),
        "ranges": json.dumps([[r.py_name, r.low, r.high] for r in problems[0].ranges]),
        "plausibility": spec.plausibility,
    }


def _stored_seed(checkpoint) -> int | None:
    meta = Path(checkpoint) / "meta.json"
    try:
        return int(json.loads(meta.read_text())["fingerprint"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def calibrate(spec_or_objects, *, seed: int | None = None, checkpoint: str | os.PathLike | None = None,
              resume: bool = False, remove_checkpoint: bool = True, fred_url: str | None = None,
              cache_dir: str | os.PathLike | None = None) -> xr.Dataset:
    """Fit a model to data as a calibration spec says, with uncertainty and fit statistics.

    Parameters
    ----------
    spec_or_objects : path, mapping or CalibrationSpec
        A TOML spec file, or the same structure as a mapping (``model`` may be a
        compiled model and an observation's ``series`` a DataArray); see
        :mod:`calibration.spec`.
    seed : int, optional
        Replaces the spec's seed. Without any seed one is drawn and recorded in the
        result's ``seed`` attribute, so the fit can be repeated exactly.
    checkpoint : path, optional
        A folder for the checkpoint (see :mod:`calibration.checkpoint`). With
        ``resume=True`` an existing checkpoint of the same fit is continued.
    remove_checkpoint : bool
        Delete the checkpoint once the fit is complete (the CLI keeps it until the
        output is written).
    fred_url, cache_dir
        FRED base address and cache folder for ``fred:`` series.

    Returns
    -------
    xarray.Dataset
        The FitResult (see the module docstring).

    Examples
    --------
    >>> fit = calibrate("models/keen/calibration/us.toml", seed=1)  # doctest: +SKIP
    >>> fit[["estimate", "lower", "upper"]].to_dataframe()  # doctest: +SKIP
    """
    started = time.perf_counter()
    spec = load_spec(spec_or_objects, seed=seed)
    chosen = spec.seed
    if chosen is None and resume and checkpoint is not None:
        chosen = _stored_seed(checkpoint)
    if chosen is None:
        chosen = int(np.random.SeedSequence().generate_state(1)[0])
    countries = spec.countries or [None]
    problems = [Problem(spec, c, fred_url=fred_url, cache_dir=cache_dir) for c in countries]
    store = Store(checkpoint, fingerprint=_fingerprint(spec, problems, chosen), resume=resume,
                  interval=spec.checkpoint_interval)
    try:
        children = np.random.SeedSequence(chosen).spawn(len(problems))
        results = []
        for problem, child, country in zip(problems, children, countries):
            if country is None:
                results.append(_fit_one(spec, problem, store, child))
                continue
            # Say which country a warning is about.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                results.append(_fit_one(spec, problem, store, child))
            code = problem.targets[0].data.attrs.get("country", country)
            for w in caught:
                warnings.warn(f"country {code}: {w.message}", w.category, stacklevel=2)
    except BaseException:
        store.close()
        raise
    if spec.countries:
        codes = [p.targets[0].data.attrs.get("country", c) for p, c in zip(problems, countries)]
        dataset = xr.concat(results, dim="country", join="outer", coords="different", compat="equals",
                            combine_attrs="drop")
        dataset = dataset.assign_coords(country=("country", np.asarray(codes, dtype=str),
                                                 {"long_name": "Country (ISO 3166 alpha-3)"}))
    else:
        dataset = results[0]
    dataset.attrs = _attrs(spec, chosen, store, time.perf_counter() - started)
    if spec.state_space is not None:
        from .state_space import describe

        dataset.attrs.update({
            "loglike": float(-dataset["nll"].sum()),
            "state_space": describe(spec.state_space),
            "objective": f"log-likelihood of the one-step-ahead prediction errors of the "
                         f"{'extended Kalman' if spec.state_space.method == 'kalman' else 'bootstrap particle'} "
                         "filter (a state-space fit); the open-loop run at the estimate is reported beside it",
        })
    store.close(remove=remove_checkpoint)
    return dataset


def _attrs(spec: CalibrationSpec, seed: int, store: Store, elapsed: float) -> dict:
    return {
        "title": "crisis-dynamics calibration",
        "description": spec.description,
        "spec_file": str(spec.path) if spec.path else "",
        "spec": json.dumps(_jsonable(spec.raw), sort_keys=True),
        "model_file": str(spec.model.source),
        "model_name": spec.model.name,
        "model_sha256": spec.model.sha256,
        "scenario": spec.scenario or "",
        "method": spec.method,
        "method_settings": json.dumps(_jsonable(spec.settings), sort_keys=True),
        "uncertainty": spec.uncertainty,
        "level": float(spec.uncertainty_settings["level"]),
        "seed": int(seed),
        "time_origin": float(spec.origin),
        "fit_start": float(spec.fit[0]),
        "fit_end": float(spec.fit[1]),
        "holdout_start": float(spec.holdout[0]) if spec.holdout else math.nan,
        "holdout_end": float(spec.holdout[1]) if spec.holdout else math.nan,
        "fixed": json.dumps(spec.fixed, sort_keys=True),
        "fixed_from_data": json.dumps(spec.fixed_sources, sort_keys=True),
        "plausibility": spec.plausibility,
        "objective": "weighted Gaussian negative log-likelihood of residuals over the fit window "
                     "(error scales given or profiled out); candidates that go non-finite are rejected"
                     + (", those that leave a plausible range penalised by their distance outside"
                        if spec.plausibility == "penalise" else ""),
        "n_evaluations": int(store.evaluations),
        "n_batches": len(store.records),
        "resumed_batches": int(store.replayed),
        "elapsed_seconds": float(elapsed),
        "toolkit_version": toolkit_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _fit_one(spec: CalibrationSpec, problem: Problem, store: Store, seed_sequence) -> xr.Dataset:
    if spec.state_space is not None:
        from .filtered import fit_filtered

        return fit_filtered(spec, problem, store, seed_sequence)
    method_seed, uncertainty_seed, band_seed = seed_sequence.spawn(3)
    obj = methods.Objective(problem, store)
    rng = np.random.default_rng(method_seed)
    if spec.method == "least_squares":
        fit = methods.least_squares(obj, rng, spec.settings)
    elif spec.method == "differential_evolution":
        fit = methods.differential_evolution(obj, rng, spec.settings)
    else:
        start = None
        if spec.settings.get("start", "fit") == "fit":
            start = methods.least_squares(obj, rng, {"n_starts": 2})
        fit = methods.mcmc(obj, rng, spec.settings, start)

    level = float(spec.uncertainty_settings["level"])
    u_rng = np.random.default_rng(uncertainty_seed)
    u = spec.uncertainty_settings
    if spec.uncertainty == "profile":
        intervals = uncertainty.profile(obj, fit, level, n_points=int(u.get("n_points", 13)),
                                        span=float(u.get("span", 4.0)))
        if intervals.better is not None:
            # The profile walked into a better optimum than the optimiser's: say so, refit from
            # there and profile again (once), so the intervals surround the best fit found.
            warnings.warn(
                f"the profile likelihood found a better fit (negative log-likelihood {intervals.better[1]:.6g} < "
                f"{fit.nll:.6g}): the optimiser stopped short of the optimum; refitting from it (use more starts "
                "or generations)", CalibrationWarning, stacklevel=2)
            result, z, sigmas = methods.refine(obj, intervals.better[0], spec.settings)
            value = float(obj.nll(z[None, :])[0])
            if value > intervals.better[1]:
                z, value = intervals.better[0], intervals.better[1]
                sigmas = problem.sigmas(obj.ssr(z[None, :])[0])
            fit.z, fit.nll, fit.sigmas = z, value, sigmas
            fit.diagnostics["profile_restart"] = 1
            intervals = uncertainty.profile(obj, fit, level, n_points=int(u.get("n_points", 13)),
                                            span=float(u.get("span", 4.0)))
    elif spec.uncertainty == "bootstrap":
        intervals = uncertainty.bootstrap(obj, fit, level, u_rng, n_bootstrap=int(u.get("n_bootstrap", 100)),
                                          block_length=int(u.get("block_length", 1)))
    elif spec.uncertainty == "posterior":
        intervals = uncertainty.posterior(fit, level, obj)
    else:
        cov = uncertainty._covariance(obj, fit)
        nan = np.full(obj.dim, np.nan)
        intervals = uncertainty.Intervals(nan, nan.copy(), "none", level, np.ones(obj.dim, bool),
                                          correlation=uncertainty.correlation_from_covariance(cov))

    band_rng = np.random.default_rng(band_seed)
    if intervals.draws is not None:
        draws = intervals.draws
        if draws.shape[0] > BAND_DRAWS:
            draws = draws[band_rng.choice(draws.shape[0], BAND_DRAWS, replace=False)]
    else:
        draws = uncertainty.laplace_draws(obj, fit, band_rng, BAND_DRAWS)
    # Draws that leave the plausible ranges are left out of the bands, unless the spec ignores them.
    band_sims = obj.simulate(obj.to_internal(draws), implausible=obj.penalty_weight == 0)
    best_sims = obj.simulate(fit.z[None, :], implausible=True)
    best_exit = ""
    exceedance = float(obj.exceedance(fit.z[None, :])[0])
    if exceedance > 0:
        best_exit = problem.first_exit(obj.to_model(fit.z[None, :])[0])
        if exceedance > EDGE or obj.penalty_weight == 0:
            warnings.warn(f"the best estimate leaves a plausible range: {best_exit}; the data pull the fit towards "
                          "an implausible economy (the ranges are the model's plausible.toml and the spec's "
                          "[plausible] table)", CalibrationWarning, stacklevel=2)
        else:
            # Within the penalty's tolerance: the fit runs along the edge of the range.
            best_exit = f"along the edge: {best_exit}"
    return _dataset(spec, problem, obj, fit, intervals, best_sims, band_sims, level, best_exit)


def _dataset(spec, problem, obj, fit, intervals, best_sims, band_sims, level, best_exit="") -> xr.Dataset:
    params = [p.name for p in obj.parameters]
    series = [t.observation.name for t in problem.targets]
    nll = float(problem.nll_from_ssr(obj.ssr(fit.z[None, :]))[0])  # the likelihood alone, without the penalty
    best_values = obj.to_model(fit.z[None, :])
    times = np.unique(np.concatenate([t.times for t in problem.targets]))
    shape = (len(series), times.size)
    observed, fitted = np.full(shape, np.nan), np.full(shape, np.nan)
    band_lo, band_hi = np.full(shape, np.nan), np.full(shape, np.nan)
    alpha = (1 - level) / 2
    stats = {name: np.full((len(series), 2), np.nan) for name in STATISTICS}
    persistence, ratio = np.full(len(series), np.nan), np.full(len(series), np.nan)
    trend_ssr, trend_ratio = np.full(len(series), np.nan), np.full(len(series), np.nan)
    for i, (target, best, band) in enumerate(zip(problem.targets, best_sims, band_sims)):
        index = np.searchsorted(times, target.times)
        data = np.concatenate([target.fit_values, target.holdout_values])
        observed[i, index] = data
        fitted[i, index] = best[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of failed draws
            band_lo[i, index] = np.nanquantile(band, alpha, axis=0)
            band_hi[i, index] = np.nanquantile(band, 1 - alpha, axis=0)
        n = target.fit_times.size
        for k, (sim, act) in enumerate(((best[0, :n], target.fit_values), (best[0, n:], target.holdout_values))):
            values = fit_statistics(sim, act)
            for name in STATISTICS:
                stats[name][i, k] = values[name]
        trend_ssr[i] = linear_trend_ssr(target.fit_times, target.fit_values)
        model_ssr = float(np.nansum((best[0, :n] - target.fit_values) ** 2))
        if trend_ssr[i] > 0 and np.isfinite(best[0, :n]).all():
            trend_ratio[i] = model_ssr / trend_ssr[i]
        if target.holdout_times.size:
            persistence[i] = persistence_rmse(target.before_holdout, target.holdout_values)
            if persistence[i] > 0:
                ratio[i] = stats["rmse"][i, 1] / persistence[i]

    units = [p.units for p in obj.parameters]
    draws = intervals.draws
    data_vars = {
        "estimate": ("param", obj.to_model(fit.z[None, :])[0], {"long_name": "best estimate"}),
        "lower": ("param", intervals.lower, {"long_name": f"lower end of the {level:.0%} interval",
                                             "method": intervals.method}),
        "upper": ("param", intervals.upper, {"long_name": f"upper end of the {level:.0%} interval",
                                             "method": intervals.method}),
        "identified": ("param", intervals.identified.astype(bool),
                       {"long_name": "interval closed on both sides within the bounds"}),
        "bound_lower": ("param", np.array([p.lower for p in obj.parameters]), {"long_name": "search bound"}),
        "bound_upper": ("param", np.array([p.upper for p in obj.parameters]), {"long_name": "search bound"}),
        "log_scale": ("param", np.array([p.log for p in obj.parameters]), {"long_name": "searched on a log scale"}),
        "correlation": (("param", "param_other"), np.asarray(intervals.correlation, dtype=float),
                        {"long_name": "parameter correlation"}),
        "observed": (("series", "time"), observed, {"long_name": "observed (transformed) data",
                                                    "holdout_start": spec.holdout[0] if spec.holdout else math.nan,
                                                    "holdout_end": spec.holdout[1] if spec.holdout else math.nan}),
        "fitted": (("series", "time"), fitted, {"long_name": "model at the best estimate"}),
        "fitted_lower": (("series", "time"), band_lo,
                         {"long_name": f"lower {level:.0%} band of the model over parameter draws"}),
        "fitted_upper": (("series", "time"), band_hi,
                         {"long_name": f"upper {level:.0%} band of the model over parameter draws"}),
        "residual": (("series", "time"), observed - fitted, {"long_name": "observed - fitted"}),
        "sigma": ("series", fit.sigmas, {"long_name": "error scale (given or estimated) of the likelihood"}),
        "error_rho": ("series", problem.rho(best_sims)[0],
                      {"long_name": "AR(1) coefficient of the error model at the best estimate (NaN: independent)"}),
        "error_model": ("series", np.asarray([t.observation.error for t in problem.targets], dtype=str),
                        {"long_name": "error model of the likelihood (spec's observations.error)"}),
        "weight": ("series", np.array([t.observation.weight for t in problem.targets]), {"long_name": "weight"}),
        "persistence_rmse": ("series", persistence,
                             {"long_name": "hold-out RMSE of the naive persistence forecast"}),
        "rmse_ratio_to_persistence": ("series", ratio,
                                      {"long_name": "hold-out RMSE of the model / of persistence (< 1 is better)"}),
        "trend_ssr": ("series", trend_ssr,
                      {"long_name": "fit-window sum of squared residuals of a straight line fitted to the series"}),
        "ssr_ratio_to_trend": ("series", trend_ratio,
                               {"long_name": "fit-window SSR of the model / of a fitted straight line (< 1: the "
                                             "model's dynamics explain more than a trend)"}),
        "measurement_scale": ("series", [float(problem.measurement(best_values, t.observation)[0][0])
                                         for t in problem.targets],
                              {"long_name": "scale of the measurement equation data = scale * model + offset"}),
        "measurement_offset": ("series", [float(problem.measurement(best_values, t.observation)[1][0])
                                          for t in problem.targets],
                               {"long_name": "offset of the measurement equation data = scale * model + offset"}),
        "nll": ((), nll, {"long_name": "negative log-likelihood at the best estimate"}),
        "opt_plausibility_penalty": ((), float(fit.nll) - nll,
                                     {"long_name": "plausibility penalty at the best estimate (added to nll in the "
                                                   "optimisation, not in nll, AIC or BIC)"}),
    }
    # Free parameters, estimated error scales and estimated AR(1) coefficients.
    k = obj.dim + sum(t.observation.sigma is None for t in problem.targets) + sum(
        t.observation.error in AR1_ERRORS for t in problem.targets)
    n_points = problem.n_points
    data_vars["aic"] = ((), 2 * k + 2 * nll, {"long_name": "Akaike information criterion"})
    data_vars["bic"] = ((), k * math.log(max(n_points, 1)) + 2 * nll,
                        {"long_name": "Bayesian information criterion"})
    for name in STATISTICS:
        key = "n_points" if name == "n" else name
        data_vars[key] = (("series", "period"), stats[name], {"long_name": STATISTIC_NAMES[name]})
    for key, value in fit.diagnostics.items():
        if isinstance(value, str):
            data_vars[f"opt_{key}"] = ((), np.array(value, dtype=object), {})
        else:
            data_vars[f"opt_{key}"] = ((), float(value), {})
    if intervals.notes:
        data_vars["opt_identifiability"] = ((), np.array(" | ".join(intervals.notes), dtype=object), {})
    evaluated, nonfinite, by_range = obj.rejections()
    data_vars["opt_n_candidates"] = ((), float(evaluated), {"long_name": "parameter sets evaluated"})
    data_vars["opt_n_nonfinite"] = ((), float(nonfinite), {"long_name": "candidates whose run went non-finite"})
    data_vars["opt_n_implausible"] = ((), float(sum(by_range.values())), {
        "long_name": "candidates that left a plausible range (penalised unless the spec's plausibility is "
                     "'ignore')"})
    # A variable, not an attr: multi-country fits keep one per country.
    data_vars["opt_implausible_by_range"] = ((), np.array(json.dumps(by_range), dtype=object), {
        "long_name": "candidates by the plausible range they left first (JSON)"})
    data_vars["opt_n_ranges"] = ((), float(len(problem.ranges)), {"long_name": "plausible ranges checked"})
    data_vars["opt_best_implausible"] = ((), np.array(best_exit, dtype=object),
                                         {"long_name": "where the run at the best estimate leaves a plausible range "
                                                       "(empty: it stays within every range)"})
    coords = {
        "param": ("param", np.asarray(params, dtype=str), {"long_name": "free parameter (Vensim name)"}),
        "param_other": ("param_other", np.asarray(params, dtype=str)),
        "param_units": ("param", np.asarray(units, dtype=str)),
        "series": ("series", np.asarray(series, dtype=str), {"long_name": "observed series"}),
        "model_variable": ("series", np.asarray([t.observation.variable_long_name for t in problem.targets],
                                                dtype=str)),
        "source": ("series", np.asarray([t.source_text() for t in problem.targets], dtype=str)),
        "measurement_reason": ("series", np.asarray(["; ".join(f"{k}: {v}" for k, v in
                                                               problem.reasons(t.observation).items())
                                                     for t in problem.targets], dtype=str)),
        "series_units": ("series", np.asarray([str(t.data.attrs.get("units", "")) for t in problem.targets],
                                              dtype=str)),
        "time": ("time", times, {"units": "year", "long_name": "Time (calendar year)"}),
        "period": ("period", np.array(["fit", "holdout"]), {"long_name": "fit window or hold-out window"}),
    }
    if draws is not None:
        data_vars["draws"] = (("draw", "param"), draws, {"long_name": f"{intervals.method} draws"})
        coords["draw"] = ("draw", np.arange(draws.shape[0]))
    if intervals.profile_values is not None:
        data_vars["profile_value"] = (("param", "profile_point"), intervals.profile_values,
                                      {"long_name": "parameter value along its profile"})
        data_vars["profile_nll"] = (("param", "profile_point"), intervals.profile_nll,
                                    {"long_name": "negative log-likelihood minimised over the other parameters"})
    if fit.start_z is not None:
        data_vars["start_value"] = (("start", "param"), obj.to_model(fit.start_z),
                                    {"long_name": "multi-start: starting point"})
        data_vars["start_end"] = (("start", "param"), obj.to_model(fit.start_end),
                                  {"long_name": "multi-start: where the local fit ended"})
        data_vars["start_nll"] = ("start", fit.start_nll, {"long_name": "multi-start: final negative log-likelihood"})
    if fit.autocorr is not None:
        data_vars["autocorr_time"] = ("param", fit.autocorr, {"long_name": "integrated autocorrelation time (steps)"})
    return xr.Dataset(data_vars, coords=coords)
