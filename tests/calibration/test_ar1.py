"""AR(1) error models: the likelihood against statsmodels' exact AR(1) likelihood, the
residual autocorrelation statistics against known answers, and intervals that widen (and
cover the truth) when errors are autocorrelated."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from calibration import CalibrationWarning, calibrate, fit_statistics, load_spec
from calibration.errors import SpecError
from calibration.problem import MAX_RHO, Problem, ar1_rho, ar1_whiten

from .conftest import GOODWIN_TRUTH, goodwin_spec


def _ar1_noise(rng, n, rho, sd):
    """Stationary AR(1) noise with innovation sd ``sd``."""
    e = np.empty(n)
    e[0] = rng.normal(0, sd / math.sqrt(1 - rho**2))
    for t in range(1, n):
        e[t] = rho * e[t - 1] + rng.normal(0, sd)
    return e


def test_whitening_and_rho_by_hand():
    e = np.array([[1.0, 0.5, -0.5, 0.25]])
    rho = ar1_rho(e)
    assert rho[0] == pytest.approx((1 * 0.5 + 0.5 * -0.5 + -0.5 * 0.25) / (1 + 0.25 + 0.25))
    u = ar1_whiten(e, rho)
    r = rho[0]
    assert u[0] == pytest.approx([math.sqrt(1 - r * r), 0.5 - r, -0.5 - 0.5 * r, 0.25 + 0.5 * r])
    # A random walk's rho is clipped: the stationary likelihood needs |rho| < 1.
    assert ar1_rho(np.cumsum(np.ones((1, 50)), axis=1))[0] == MAX_RHO


@pytest.mark.parametrize("sigma", [None, 0.004])
def test_likelihood_equals_statsmodels_exact_ar1_likelihood(goodwin, sigma):
    from statsmodels.tsa.arima.model import ARIMA

    spec = goodwin_spec(goodwin, 7)
    for obs in spec["observations"]:
        obs["error"] = "ar1"
        if sigma is not None:
            obs["sigma"] = sigma
    problem = Problem(load_spec(spec))
    values = np.array([[1.25, 1.1], [1.35, 1.2]])  # two members away from the truth
    sims = problem.simulate(values)
    nll = problem.nll_from_ssr(problem.ssr(sims))
    residuals = problem.residuals(sims)
    for m in range(values.shape[0]):
        expected = 0.0
        for r in residuals:
            e = r[m]
            rho = float(ar1_rho(e[None, :])[0])
            u = ar1_whiten(e[None, :], [rho])[0]
            s2 = sigma**2 if sigma is not None else float(np.sum(u * u)) / e.size
            # statsmodels: Kalman filter from the stationary distribution, at the same rho and sigma.
            expected -= ARIMA(e, order=(1, 0, 0), trend="n").loglike(np.array([rho, s2]))
        assert nll[m] == pytest.approx(expected, rel=1e-9)


def test_rho1_and_effective_sample_size():
    rng = np.random.default_rng(3)
    e = _ar1_noise(rng, 20000, 0.8, 1.0)
    stats = fit_statistics(e, np.zeros_like(e))
    assert stats["rho1"] == pytest.approx(0.8, abs=0.02)
    assert stats["n_eff"] == pytest.approx(20000 * 0.2 / 1.8, rel=0.1)
    white = fit_statistics(rng.normal(size=20000), np.zeros(20000))
    assert abs(white["rho1"]) < 0.03 and white["n_eff"] > 19000
    # Negative autocorrelation does not raise n_eff above n; fewer than three points say nothing.
    alternating = fit_statistics(np.array([1.0, -1, 1, -1, 1, -1]), np.zeros(6))
    assert alternating["rho1"] < 0 and alternating["n_eff"] == 6
    assert math.isnan(fit_statistics([1.0, 2.0], [0.0, 0.0])["rho1"])


def _ar1_spec(goodwin, seed, error):
    """The known-answer Goodwin spec, with AR(1) noise (rho 0.85) instead of independent noise."""
    spec = goodwin_spec(goodwin, seed, noise=0.0, settings={"n_starts": 1})
    rng = np.random.default_rng(seed)
    for obs in spec["observations"]:
        data = obs["series"]
        obs["series"] = data.copy(data=data.values + _ar1_noise(rng, data.size, 0.85, 0.003))
        obs["error"] = error
    return spec


def test_autocorrelated_errors_widen_the_intervals_and_keep_their_coverage(goodwin):
    """With AR(1) noise (rho 0.85, 26 annual points), 95% profile intervals under the AR(1)
    error model hold the truth (both parameters) in at least 18 of 20 data sets, the issue's
    90%; under independent errors they hold it in 11 of 20 (measured), because they count 26
    independent points where the residuals hold about 3. The AR(1) intervals are wider for
    every data set (1.1-1.5 times; the estimated rho is biased low on 26 points, so the
    widening is smaller than the (1 + rho) / (1 - rho) of a mean)."""
    hits = {"normal": 0, "ar1": 0}
    widths = {"normal": [], "ar1": []}
    for seed in range(20):
        for error in hits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CalibrationWarning)
                fit = calibrate(_ar1_spec(goodwin, 500 + seed, error))
            inside = [float(fit["lower"].sel(param=k)) <= v <= float(fit["upper"].sel(param=k))
                      for k, v in GOODWIN_TRUTH.items()]
            hits[error] += all(inside)
            widths[error].append(float((fit["upper"] - fit["lower"]).sel(param="phillips slope")))
            if error == "ar1":
                assert (fit["error_rho"].values > 0.3).all(), fit["error_rho"].values
                assert list(fit["error_model"].values) == ["ar1", "ar1"]
            else:
                assert np.isnan(fit["error_rho"].values).all()
    ratio = np.array(widths["ar1"]) / np.array(widths["normal"])
    assert (ratio > 1.05).all() and np.median(ratio) > 1.2, ratio
    assert hits["ar1"] >= 18, hits
    assert hits["normal"] < hits["ar1"], hits


def test_ar1_needs_evenly_spaced_data(goodwin):
    spec = goodwin_spec(goodwin, 1)
    obs = spec["observations"][0]
    obs["error"] = "ar1"
    obs["series"] = obs["series"].isel(time=[0, 1, 2, *range(5, obs["series"].sizes["time"])])  # 1953-54 missing
    with pytest.raises(SpecError, match=r"observations\[0\].error: 'ar1' needs evenly spaced observations"):
        Problem(load_spec(spec))
    obs["series"] = spec["observations"][1]["series"]
    obs["window"] = [1950, 1951]
    with pytest.raises(SpecError, match="needs at least three points"):
        Problem(load_spec(spec))
    spec["observations"][0]["error"] = "autoregressive"
    with pytest.raises(SpecError, match="allowed: normal, lognormal, ar1, lognormal_ar1"):
        load_spec(spec)
