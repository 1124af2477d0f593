"""The Goodwin model checked against analysis, not against itself.

u = wage share, v = employment rate, sigma = capital-output ratio, alpha = productivity
growth, beta = labour-force growth, delta = depreciation, Phillips curve
Phi(v) = -gamma + rho v. Equilibrium v* = (gamma + alpha) / rho, u* = 1 - sigma (alpha +
beta + delta); first integral V = rho (v - v* ln v) + (u - u* ln u) / sigma; linearised
angular frequency omega^2 = rho u* v* / sigma.
"""

from __future__ import annotations

import numpy as np
import pytest

from pysd_runner import compile_model, run

from ..conftest import MODELS


@pytest.fixture(scope="module")
def goodwin():
    return compile_model(MODELS / "goodwin" / "goodwin.mdl")


def _parameters(model, overrides=None):
    values = {e.py_name: e.default for e in model.constants}
    values.update(overrides or {})
    return {
        "sigma": values["capital_output_ratio"],
        "alpha": values["productivity_growth_rate"],
        "beta": values["labour_force_growth_rate"],
        "delta": values["depreciation_rate"],
        "gamma": values["phillips_intercept"],
        "rho": values["phillips_slope"],
    }


def _equilibrium(p):
    return 1 - p["sigma"] * (p["alpha"] + p["beta"] + p["delta"]), (p["gamma"] + p["alpha"]) / p["rho"]


def _first_integral(u, v, p):
    u_star, v_star = _equilibrium(p)
    return p["rho"] * (v - v_star * np.log(v)) + (u - u_star * np.log(u)) / p["sigma"]


# A second parameter set, away from the defaults, so no check passes by tuning alone.
STRONG = {"phillips_slope": 1.5, "phillips_intercept": 1.33, "capital_output_ratio": 2.8}


@pytest.mark.parametrize("overrides", [{}, STRONG], ids=["defaults", "other-parameters"])
def test_first_integral_drifts_less_than_half_a_percent(goodwin, overrides):
    ds = run(goodwin, overrides, time_step=0.01, final_time=100, variables=["wage_share", "employment_rate"])
    p = _parameters(goodwin, overrides)
    V = _first_integral(ds["wage_share"].values, ds["employment_rate"].values, p)
    drift = np.abs(V / V[0] - 1).max()
    assert drift < 0.005, drift
    # The orbit really cycles (not a fixed point that would conserve V trivially).
    assert np.ptp(ds["wage_share"].values) > 0.02


def _periods(series: np.ndarray, times: np.ndarray, level: float) -> np.ndarray:
    """Times between successive upward crossings of ``level``, by linear interpolation."""
    above = series - level
    idx = np.where((above[:-1] < 0) & (above[1:] >= 0))[0]
    crossings = times[idx] - above[idx] * (times[idx + 1] - times[idx]) / (above[idx + 1] - above[idx])
    return np.diff(crossings)


@pytest.mark.parametrize("overrides", [{}, STRONG], ids=["defaults", "other-parameters"])
def test_small_orbit_period_matches_linearisation(goodwin, overrides):
    p = _parameters(goodwin, overrides)
    u_star, v_star = _equilibrium(p)
    start = {"initial_wage_share": u_star + 0.003, "initial_employment_rate": v_star}
    ds = run(goodwin, {**overrides, **start}, time_step=0.005, saveper=0.01, final_time=60,
             variables=["wage_share"])
    periods = _periods(ds["wage_share"].values, ds["time"].values, u_star)
    assert len(periods) >= 3
    expected = 2 * np.pi / np.sqrt(p["rho"] * u_star * v_star / p["sigma"])
    assert np.mean(periods) == pytest.approx(expected, rel=0.05)


def test_small_orbit_scenario_period(goodwin):
    ds = run(goodwin, scenario="small_orbit", variables=["wage_share"])
    p = _parameters(goodwin)
    u_star, v_star = _equilibrium(p)
    expected = 2 * np.pi / np.sqrt(p["rho"] * u_star * v_star / p["sigma"])
    assert np.mean(_periods(ds["wage_share"].values, ds["time"].values, u_star)) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("overrides", [{}, STRONG], ids=["defaults", "other-parameters"])
def test_equilibrium_matches_closed_form(goodwin, overrides):
    p = _parameters(goodwin, overrides)
    u_star, v_star = _equilibrium(p)
    # Started exactly at the closed-form equilibrium, nothing moves.
    ds = run(goodwin, {**overrides, "initial_wage_share": u_star, "initial_employment_rate": v_star},
             final_time=30, variables=["wage_share", "employment_rate", "equilibrium_wage_share",
                                       "equilibrium_employment_rate"])
    np.testing.assert_allclose(ds["wage_share"], u_star, rtol=1e-10)
    np.testing.assert_allclose(ds["employment_rate"], v_star, rtol=1e-10)
    # The model's own equilibrium auxiliaries agree with the closed forms.
    assert ds["equilibrium_wage_share"][0] == pytest.approx(u_star, rel=1e-12)
    assert ds["equilibrium_employment_rate"][0] == pytest.approx(v_star, rel=1e-12)


def test_cycle_average_is_the_equilibrium(goodwin):
    """Over whole cycles the time averages of u and v equal u* and v* (Volterra's law)."""
    p = _parameters(goodwin)
    u_star, v_star = _equilibrium(p)
    ds = run(goodwin, scenario="baseline", time_step=0.005, saveper=0.005)
    u, t = ds["wage_share"].values, ds["time"].values
    above = u - u_star
    idx = np.where((above[:-1] < 0) & (above[1:] >= 0))[0]
    window = slice(idx[0], idx[-1])
    assert len(idx) >= 5
    # 0.5%: Euler's slow outward spiral shifts the averages slightly.
    assert np.mean(u[window]) == pytest.approx(u_star, rel=0.005)
    assert np.mean(ds["employment_rate"].values[window]) == pytest.approx(v_star, rel=0.005)
    del t


def test_profit_squeeze_phase_order(goodwin):
    """Employment peaks before the wage share: the wage share follows employment (predator after prey)."""
    ds = run(goodwin, scenario="baseline", final_time=40)
    t = ds["time"].values
    v_peak = t[np.argmax(ds["employment_rate"].values[:150])]
    u_peak = t[np.argmax(ds["wage_share"].values[:150])]
    period = 11.0
    lag = (u_peak - v_peak) % period
    assert 0 < lag < period / 2


def test_every_element_documented_with_units(goodwin):
    for element in goodwin.elements.values():
        assert element.comment, element.name
        assert element.units, element.name
    for constant in goodwin.constants:
        assert constant.limits != (None, None), constant.name


def test_every_scenario_runs(goodwin):
    from pysd_runner import list_scenarios

    names = list_scenarios(goodwin)
    assert {"baseline", "small_orbit", "strong_unions"} <= set(names)
    for name in names:
        ds = run(goodwin, scenario=name, variables=["wage_share", "employment_rate"])
        assert ((ds["wage_share"] > 0) & (ds["wage_share"] < 1)).all()
        assert ((ds["employment_rate"] > 0) & (ds["employment_rate"] < 1)).all()


def test_model_file_carries_a_sketch_with_every_stock():
    """The .mdl opens as a diagram in Vensim: a sketch section with a view showing each stock."""
    text = (MODELS / "goodwin" / "goodwin.mdl").read_text()
    head, sep, sketch = text.partition("\\\\\\---/// Sketch information")
    assert sep, "no sketch section"
    assert "*View 1" in sketch and "V300" in sketch
    names = {line.split(",")[2] for line in sketch.splitlines() if line.startswith("10,")}
    for stock in ("wage share", "employment rate"):
        assert stock in names
