"""Fit statistics per series: RMSE, MAPE, R^2, Theil's U and its decomposition.

Theil's inequality statistics follow Sterman (1984), "Appropriate summary statistics for
evaluating the historical fit of system dynamics models", Dynamica 10(2): the mean
squared error splits into bias U^M = (mean(S) - mean(A))^2 / MSE, unequal variation
U^S = (s_S - s_A)^2 / MSE and unequal covariation U^C = 2 (1 - r) s_S s_A / MSE, which
sum to one (population standard deviations s, correlation r of simulated S and actual A).
Theil's inequality coefficient is U = RMSE / (sqrt(mean(S^2)) + sqrt(mean(A^2))).

On a hold-out window the model's RMSE is also compared with a naive persistence forecast
(the last observation before the window, held constant): a ratio below 1 beats it. On the
fit window its sum of squared residuals is compared with that of a straight line fitted to
the series: a measurement equation with a free scale and offset alone can bring R^2 to 0 or
above, so beating a fitted trend (ratio below 1) is the test that the model's dynamics
explain something.

R^2 = 1 - SSR/SST compares the model with the series' own mean: below 0, the model is a
worse description of the window than that flat line.

The residuals' lag-1 autocorrelation ``rho1`` (the sample autocorrelation of the errors in
time order) says how much independent information they hold: the effective sample size of
an AR(1) series, ``n_eff = n (1 - rho1) / (1 + rho1)`` (n when rho1 <= 0), is what a mean or
an interval computed from them can count on (Bayley and Hammersley 1946).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fit_statistics", "persistence_rmse", "linear_trend_ssr", "STATISTICS", "STATISTIC_NAMES"]

STATISTICS = ("n", "rmse", "mape", "r2", "theil_u", "theil_um", "theil_us", "theil_uc", "rho1", "n_eff")
#: What each statistic is, for the long names of a fit result.
STATISTIC_NAMES = {
    "n": "number of observations",
    "rmse": "root mean squared error",
    "mape": "mean absolute percentage error (percent)",
    "r2": "coefficient of determination 1 - SSR/SST",
    "theil_u": "Theil's inequality coefficient U",
    "theil_um": "Theil bias fraction U^M (Sterman 1984)",
    "theil_us": "Theil variance fraction U^S (Sterman 1984)",
    "theil_uc": "Theil covariance fraction U^C (Sterman 1984)",
    "rho1": "lag-1 autocorrelation of the residuals",
    "n_eff": "effective sample size n (1 - rho1) / (1 + rho1) of the residuals",
}


def fit_statistics(simulated, actual) -> dict[str, float]:
    """Statistics of simulated against actual values (1-D, NaNs dropped pairwise).

    Returns ``n``, ``rmse``, ``mape`` (percent; NaN when an actual value is zero),
    ``r2`` (1 - SSR/SST), ``theil_u``, ``theil_um``/``theil_us``/``theil_uc``, and the
    residuals' lag-1 autocorrelation ``rho1`` with the effective sample size ``n_eff``
    (values in time order; NaN with fewer than three points).

    Examples
    --------
    >>> stats = fit_statistics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    >>> round(stats["rmse"], 4), round(stats["theil_um"] + stats["theil_us"] + stats["theil_uc"], 6)
    (0.5774, 1.0)
    """
    s = np.asarray(simulated, dtype=float).ravel()
    a = np.asarray(actual, dtype=float).ravel()
    keep = np.isfinite(s) & np.isfinite(a)
    s, a = s[keep], a[keep]
    n = s.size
    out = dict.fromkeys(STATISTICS, math.nan)
    out["n"] = float(n)
    if n == 0:
        return out
    error = s - a
    mse = float(np.mean(error**2))
    out["rmse"] = math.sqrt(mse)
    if np.all(a != 0):
        out["mape"] = float(np.mean(np.abs(error / a))) * 100
    sst = float(np.sum((a - a.mean()) ** 2))
    if sst > 0:
        out["r2"] = 1 - float(np.sum(error**2)) / sst
    denominator = math.sqrt(float(np.mean(s**2))) + math.sqrt(float(np.mean(a**2)))
    if denominator > 0:
        out["theil_u"] = out["rmse"] / denominator
    if mse > 0:
        sd_s, sd_a = float(np.std(s)), float(np.std(a))
        if sd_s > 0 and sd_a > 0:
            r = float(np.corrcoef(s, a)[0, 1])
        else:
            r = 1.0
        out["theil_um"] = (float(s.mean()) - float(a.mean())) ** 2 / mse
        out["theil_us"] = (sd_s - sd_a) ** 2 / mse
        out["theil_uc"] = 2 * (1 - r) * sd_s * sd_a / mse
    else:
        out["theil_um"], out["theil_us"], out["theil_uc"] = 0.0, 0.0, 0.0
    if n >= 3:
        centred = error - error.mean()
        denominator = float(np.sum(centred**2))
        if denominator > 0:
            rho = float(np.sum(centred[1:] * centred[:-1])) / denominator
            out["rho1"] = rho
            out["n_eff"] = n * (1 - rho) / (1 + rho) if rho > 0 else float(n)
    return out


def persistence_rmse(last_value: float, actual) -> float:
    """RMSE of the naive forecast that holds ``last_value`` over the window."""
    a = np.asarray(actual, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0 or not math.isfinite(last_value):
        return math.nan
    return math.sqrt(float(np.mean((a - last_value) ** 2)))


def linear_trend_ssr(times: np.ndarray, values: np.ndarray) -> float:
    """Sum of squared residuals of the least-squares straight line through a series."""
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    if values.size < 3:
        return math.nan
    coefficients = np.polyfit(times - times.mean(), values, 1)
    return float(np.sum((np.polyval(coefficients, times - times.mean()) - values) ** 2))
