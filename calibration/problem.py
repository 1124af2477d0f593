"""The calibration problem for one country: observed data, vectorised simulation, likelihood.

Simulation goes through :func:`pysd_runner.run_ensemble`: a whole batch of parameter
vectors (a DE population, the walkers of an MCMC step, finite-difference neighbours) is
one vectorised pass of the model. The objective is the Gaussian negative
log-likelihood of the weighted residuals over the fit window, with each series' error
scale given in the spec or estimated (profiled out: sigma^2 = SSR/n).

Autocorrelated errors (``error = "ar1"`` or ``"lognormal_ar1"``): a model run open loop
misses the data in long swings, so its residuals follow e_t = rho e_{t-1} + u_t with
independent Gaussian u_t, not independent errors. For each series and each member, rho is
estimated from the residuals by least squares on their lag (Cochrane and Orcutt 1949),
clipped to |rho| <= 0.99, and the likelihood is the exact stationary AR(1) likelihood at
that rho (Prais and Winsten 1954): the whitened residuals u_1 = sqrt(1 - rho^2) e_1,
u_t = e_t - rho e_{t-1} replace the residuals, with the term -log(1 - rho^2) / 2. It is
folded into the SSR the rest of the code works with, exactly: SSR (1 - rho^2)^(-1/n) for an
estimated sigma, SSR - sigma^2 log(1 - rho^2) for a given one. With rho near 1 a series
carries far less information than its n points, and the profile intervals widen to say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from pysd_runner import CrisisError, first_exits, furthest_outside, load_plausible, member_exits, run_ensemble

from . import transforms
from .data import load_series, select
from .errors import DataError, SpecError
from .spec import AR1_ERRORS, LOG_ERRORS, CalibrationSpec, Observation

#: Negative log-likelihood given to members whose run went non-finite: worse than any
#: finite fit, but finite, so optimisers can compare and move away from them.
PENALTY = 1e12
#: Weight w of the plausibility penalty w x e^2 added to the negative log-likelihood, where e is
#: how far a member leaves its model's plausible ranges (the distance outside, as a fraction of
#: the range's width). Quadratic, so the likelihood stays smooth and least squares, DE and the
#: profile intervals all minimise the same function (its Gauss-Newton form is one residual,
#: sqrt(2 w) e); heavy, so a fit whose data pull it out of a plausible economy stops within
#: about 1e-3 of the range's width outside it.
PLAUSIBILITY_WEIGHT = 1e7
#: Largest |rho| of an AR(1) error model (rho = 1 is a random walk, with no stationary scale).
MAX_RHO = 0.99


def ar1_rho(residuals: np.ndarray) -> np.ndarray:
    """Least-squares lag-1 coefficient of each row of residuals, clipped to ``MAX_RHO``."""
    r = np.atleast_2d(residuals)
    with np.errstate(all="ignore"):
        rho = np.sum(r[:, 1:] * r[:, :-1], axis=1) / np.sum(r[:, :-1] ** 2, axis=1)
    return np.clip(np.where(np.isfinite(rho), rho, 0.0), -MAX_RHO, MAX_RHO)


def ar1_whiten(residuals: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Prais-Winsten whitened residuals: sqrt(1 - rho^2) e_1, then e_t - rho e_{t-1}."""
    r = np.atleast_2d(residuals)
    rho = np.asarray(rho, dtype=float)[:, None]
    return np.concatenate([np.sqrt(1 - rho**2) * r[:, :1], r[:, 1:] - rho * r[:, :-1]], axis=1)


@dataclass
class Target:
    """One observation's data: fit-window and hold-out points, on calendar times."""

    observation: Observation
    fit_times: np.ndarray
    fit_values: np.ndarray
    holdout_times: np.ndarray
    holdout_values: np.ndarray
    data: xr.DataArray        # the transformed series over its whole span (for plots)
    before_holdout: float     # last observed value before the hold-out window (persistence forecast)

    @property
    def times(self) -> np.ndarray:
        return np.concatenate([self.fit_times, self.holdout_times])

    def source_text(self) -> str:
        """Where the data come from: the series, its country and its dataset."""
        series = self.observation.series
        name = series if isinstance(series, str) else str(series.name or "given DataArray")
        attrs = self.data.attrs
        parts = [name]
        if attrs.get("country"):
            parts.append(str(attrs["country"]))
        if attrs.get("dataset"):
            parts.append(str(attrs["dataset"]))
        return " | ".join(parts)


class Problem:
    """Data and simulation for one spec and (optionally) one country."""

    def __init__(self, spec: CalibrationSpec, country: str | None = None, *, fred_url=None, cache_dir=None):
        self.spec = spec
        self.country = country
        self.parameters = spec.parameters
        self.targets = [self._target(i, o, fred_url, cache_dir) for i, o in enumerate(spec.observations)]
        self.variables = sorted({t.observation.variable for t in self.targets})
        model = spec.model
        t0 = float(model.control["initial_time"])
        last = max(float(t.times.max()) for t in self.targets)
        step = spec.time_step or float(model.control["time_step"])
        all_times = np.unique(np.concatenate([t.times for t in self.targets]))
        spacing = float(np.min(np.diff(all_times))) if all_times.size > 1 else 1.0
        saveper = spec.saveper or max(step, math.floor(spacing / step + 1e-9) * step)
        span = last - spec.origin
        # Round the horizon up to the save grid so the last observation is simulated.
        final = t0 + math.ceil(span / saveper - 1e-9) * saveper
        self.settings = {"final_time": max(final, t0 + saveper), "time_step": step, "saveper": saveper}
        self.t0 = t0
        self.n_fit = np.array([t.fit_times.size for t in self.targets])

    # ------------------------------------------------------------------ data
    def _target(self, index: int, obs: Observation, fred_url, cache_dir) -> Target:
        spec = self.spec
        key = f"{spec.where}: observations[{index}]"
        country = self.country if self.country is not None else obs.country
        try:
            if isinstance(obs.series, xr.DataArray):
                data = obs.series
                data = data.sortby("time") if data.sizes["time"] > 1 else data
                if country is not None or "country" in data.dims:
                    data = select(data, country=country)
            else:
                data = load_series(obs.series, country=country, base_dir=spec.base_dir, fred_url=fred_url,
                                   cache_dir=cache_dir)
            if "country" in data.dims:
                raise SpecError(f"{key}.country: series '{obs.series}' is a panel; give a country (or countries)")
            data = transforms.apply(data, obs.transform)
        except SpecError:
            raise
        except CrisisError as exc:
            raise SpecError(f"{key}.series: {exc}") from None
        data = data.sel(time=data.notnull().values)
        fit_window = obs.window or spec.fit
        try:
            fit = select(data, window=fit_window)
        except DataError as exc:
            raise SpecError(f"{key}: the fit window {'(observations.window)' if obs.window else '(time.fit)'}: "
                            f"{exc}") from None
        if fit.sizes["time"] == 0:
            raise SpecError(f"{key}: the fit window {fit_window[0]:g}-{fit_window[1]:g} holds no data of "
                            f"'{obs.name}'")
        values = fit.values
        if obs.error in AR1_ERRORS:
            steps = np.diff(fit["time"].values.astype(float))
            if steps.size < 2:
                raise SpecError(f"{key}.error: '{obs.error}' needs at least three points in the fit window; "
                                f"'{obs.name}' has {steps.size + 1}")
            if not np.allclose(steps, steps[0], rtol=1e-3, atol=1e-6):
                raise SpecError(f"{key}.error: '{obs.error}' needs evenly spaced observations in the fit window; "
                                f"'{obs.name}' has gaps (spacing {steps.min():g} to {steps.max():g}); give "
                                f"error = 'normal' or a window without gaps")
        if obs.error in LOG_ERRORS and (values <= 0).any():
            raise SpecError(f"{key}.error: '{obs.error}' needs positive data; '{obs.name}' has {values.min():g}")
        holdout_times = holdout_values = np.empty(0)
        if spec.holdout is not None:
            try:
                held = select(data, window=spec.holdout)
            except DataError as exc:
                raise SpecError(f"{spec.where}: time.holdout: {exc}") from None
            holdout_times, holdout_values = held["time"].values.astype(float), held.values.astype(float)
        if spec.holdout is not None:
            before = data.sel(time=data["time"].values < spec.holdout[0] - 1e-9)
            previous = float(before.values[-1]) if before.sizes["time"] else math.nan
        else:
            previous = math.nan
        return Target(obs, fit["time"].values.astype(float), values.astype(float), holdout_times, holdout_values,
                      data, previous)

    # ------------------------------------------------------------------ simulation
    def simulate(self, values: np.ndarray) -> list[np.ndarray]:
        """Model values at each target's times (fit then hold-out) for a batch of parameter rows.

        ``values`` is (members, parameters) in model units. Returns one (members, times)
        array per target, through each observation's measurement equation; rows of members
        that went non-finite are NaN.
        """
        return self.simulate_with_status(values)[0]

    def measurement(self, values: np.ndarray, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """An observation's measurement terms (scale, offset) per row of parameter values:
        its fixed terms, or the rows' values of its free ones."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        terms = {"scale": np.full(values.shape[0], obs.scale), "offset": np.full(values.shape[0], obs.offset)}
        for j, p in enumerate(self.parameters):
            if p.observation == obs.name:
                terms[p.kind] = values[:, j]
        return terms["scale"], terms["offset"]

    def reasons(self, obs: Observation) -> dict[str, str]:
        """Why an observation's measurement terms are there (fixed and free), by term."""
        return {**obs.reasons, **{p.kind: p.reason for p in self.parameters if p.observation == obs.name}}

    @property
    def ranges(self) -> list:
        """The plausible ranges every candidate must keep: the model's (plausible.toml beside
        it), with the spec's own [plausible] ranges in place of those of the same variable."""
        own = {r.py_name: r for r in self.spec.plausible}
        model = [own.pop(r.py_name, r) for r in load_plausible(self.spec.model)]
        return model + list(own.values())

    def first_exit(self, values: np.ndarray) -> str:
        """Where the run at one parameter row first leaves a plausible range ("" if never),
        in calendar years."""
        values = np.atleast_2d(np.asarray(values, dtype=float))[:1]
        samples = {p.py_name: values[:, j] for j, p in enumerate(self.parameters) if p.is_model}
        ranges = self.ranges
        ds = run_ensemble(self.spec.model, samples, params=self.spec.fixed or None,
                          variables=sorted({r.py_name for r in ranges}), scenario=self.spec.scenario,
                          seed=self.spec.seed, **self.settings)
        calendar = self.spec.origin + (ds["time"].values - self.t0)
        exits = member_exits(calendar, {r.py_name: ds[r.py_name].values for r in ranges}, ranges)[0]
        return exits[0]["text"].replace(" at time ", " in ") if exits else ""

    def simulate_with_status(self, values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """:meth:`simulate`, a status per member and how far each member left the model's
        plausible ranges.

        The status is 0 for a member within every range, -1 for one that went non-finite and
        k > 0 for one that left the k-th range of :attr:`ranges` first. The exceedance is the
        largest distance outside any range over the run (fit and hold-out), as a fraction of
        that range's width (0 within every range): the likelihood's penalty grows with it
        (:data:`PLAUSIBILITY_WEIGHT`), so optimisers are led back into plausible economies
        instead of meeting a flat wall.
        """
        values = np.atleast_2d(np.asarray(values, dtype=float))
        samples = {p.py_name: values[:, j] for j, p in enumerate(self.parameters) if p.is_model}
        ranges = self.ranges
        wanted = sorted(set(self.variables) | {r.py_name for r in ranges})
        ds = run_ensemble(self.spec.model, samples, params=self.spec.fixed or None, variables=wanted,
                          scenario=self.spec.scenario, seed=self.spec.seed, **self.settings)
        calendar = self.spec.origin + (ds["time"].values - self.t0)
        ok = ds["ok"].values
        status = np.where(ok, 0.0, -1.0)
        exceedance = np.zeros(values.shape[0])
        first = np.full(values.shape[0], np.inf)
        for k, r in enumerate(ranges):
            when, _ = first_exits(calendar, ds[r.py_name].values, r)
            when = np.where(ok & ~np.isnan(when), when, np.inf)
            status = np.where(when < first, k + 1.0, status)
            first = np.minimum(first, when)
            exceedance = np.where(ok, np.maximum(exceedance, furthest_outside(ds[r.py_name].values, r)), 0.0)
        out = []
        for target in self.targets:
            obs = target.observation
            da = xr.DataArray(ds[obs.variable].values, dims=("run", "time"),
                              coords={"time": calendar}, name=obs.variable)
            da = transforms.apply(da, obs.model_transform)
            scale, offset = self.measurement(values, obs)
            da = da * scale[:, None] + offset[:, None]
            grid = da["time"].values
            times = target.times
            position = np.searchsorted(grid, times - 1e-9)
            exact = (position < grid.size) & np.isclose(grid[np.minimum(position, grid.size - 1)], times, atol=1e-9)
            if exact.all():
                sim = da.values[:, position]
            else:
                sim = np.stack([np.interp(times, grid, row, left=np.nan, right=np.nan) for row in da.values])
            sim = np.where(ok[:, None], sim, np.nan)
            out.append(sim)
        return out, status, exceedance

    # ------------------------------------------------------------------ likelihood pieces
    def residuals(self, simulated: list[np.ndarray], fit_only: bool = True) -> list[np.ndarray]:
        """Residuals (model - data; logs for lognormal) per target, (members, points)."""
        out = []
        for target, sim in zip(self.targets, simulated):
            n = target.fit_times.size
            model = sim[:, :n] if fit_only else sim
            data = target.fit_values if fit_only else np.concatenate([target.fit_values, target.holdout_values])
            if target.observation.error in LOG_ERRORS:
                with np.errstate(all="ignore"):
                    out.append(np.log(model) - np.log(data))
            else:
                out.append(model - data)
        return out

    def ssr(self, simulated: list[np.ndarray]) -> np.ndarray:
        """Sum of squared fit-window residuals, (members, targets); inf for non-finite members.

        For AR(1) error models, the SSR of the whitened residuals with the AR(1) likelihood's
        log-determinant folded in (see the module docstring).
        """
        columns = []
        for target, r in zip(self.targets, self.residuals(simulated)):
            obs = target.observation
            with np.errstate(all="ignore"):
                if obs.error in AR1_ERRORS:
                    rho = ar1_rho(r)
                    u = ar1_whiten(r, rho)
                    s = np.sum(u * u, axis=1)
                    log_det = np.log(1 - rho**2)
                    if obs.sigma is None:
                        s = s * np.exp(-log_det / r.shape[1])
                    else:
                        s = s - obs.sigma**2 * log_det
                else:
                    s = np.sum(r * r, axis=1)
            columns.append(np.where(np.isfinite(s), s, np.inf))
        return np.stack(columns, axis=1)

    def rho(self, simulated: list[np.ndarray]) -> np.ndarray:
        """Lag-1 coefficient of the fit-window residuals per member and target (NaN for
        targets with independent errors)."""
        return np.stack([ar1_rho(r) if t.observation.error in AR1_ERRORS else np.full(r.shape[0], np.nan)
                         for t, r in zip(self.targets, self.residuals(simulated))], axis=1)

    def nll_from_ssr(self, ssr: np.ndarray) -> np.ndarray:
        """Weighted Gaussian negative log-likelihood from SSRs (members, targets) -> (members,)."""
        ssr = np.atleast_2d(ssr)
        total = np.zeros(ssr.shape[0])
        for i, target in enumerate(self.targets):
            n = target.fit_times.size
            obs = target.observation
            s = ssr[:, i]
            with np.errstate(all="ignore"):
                if obs.sigma is None:
                    # sigma profiled out: sigma^2 = SSR/n
                    term = 0.5 * n * (np.log(2 * math.pi * np.maximum(s, 1e-300) / n) + 1)
                else:
                    term = 0.5 * s / obs.sigma**2 + n * math.log(obs.sigma) + 0.5 * n * math.log(2 * math.pi)
            total += obs.weight * term
        return np.where(np.isfinite(total), total, PENALTY)

    def sigmas(self, ssr_row: np.ndarray) -> np.ndarray:
        """Error scale per target: given, or estimated from the SSR of the best fit."""
        return np.array([
            t.observation.sigma if t.observation.sigma is not None else math.sqrt(max(s, 1e-300) / t.fit_times.size)
            for t, s in zip(self.targets, np.ravel(ssr_row))
        ])

    def scaled_residuals(self, simulated: list[np.ndarray], sigmas: np.ndarray) -> np.ndarray:
        """sqrt(weight) * residual / sigma, concatenated over targets: (members, points).

        Minimising their sum of squares with sigmas fixed at the optimum's is the
        likelihood's Gauss-Newton form; non-finite members get large finite residuals.
        """
        parts = []
        for target, r, sigma in zip(self.targets, self.residuals(simulated), sigmas):
            if target.observation.error in AR1_ERRORS:
                # Whitened at each member's own rho. The log-determinant is left out of
                # this Gauss-Newton form; the likelihood keeps it, and the methods choose
                # among local results (starts, DE's polish) by the likelihood.
                with np.errstate(all="ignore"):
                    r = ar1_whiten(r, ar1_rho(r))
            parts.append(math.sqrt(target.observation.weight) * r / sigma)
        out = np.concatenate(parts, axis=1)
        bad = ~np.isfinite(out).all(axis=1)
        out[bad] = 1e6
        return out

    @property
    def n_points(self) -> int:
        return int(self.n_fit.sum())
