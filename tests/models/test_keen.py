"""The Keen debt-cycle model checked against Grasselli & Costa Lima's analysis.

kappa(pi) = c + s exp(k pi) (investment share), Phi(lambda) = phi1 / (1 - lambda)^2 - phi0.
Good interior equilibrium (Grasselli & Costa Lima 2012, section 3):
  pi* = kappa^-1(nu (alpha + beta + delta)),  lambda* = Phi^-1(alpha),
  d* = (kappa(pi*) - pi*) / (alpha + beta),  omega* = 1 - pi* - r d*.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pysd_runner import compile_model, run

from ..conftest import MODELS

RATIOS = ["wage_share", "employment_rate", "debt_ratio", "profit_share", "profit_rate"]


@pytest.fixture(scope="module")
def keen():
    return compile_model(MODELS / "keen" / "keen.mdl")


def good_equilibrium(model, overrides=None):
    p = {e.py_name: e.default for e in model.constants}
    p.update(overrides or {})
    nu, alpha, beta, delta, r = (p["capital_output_ratio"], p["productivity_growth_rate"],
                                 p["labour_force_growth_rate"], p["depreciation_rate"], p["interest_rate"])
    c, s, k = p["investment_function_constant"], p["investment_function_scale"], p["investment_function_slope"]
    phi0, phi1 = p["phillips_curve_intercept"], p["phillips_curve_curvature"]
    kappa = lambda x: c + s * math.exp(k * x)  # noqa: E731
    pi = math.log((nu * (alpha + beta + delta) - c) / s) / k
    lam = 1 - math.sqrt(phi1 / (alpha + phi0))
    d = (kappa(pi) - pi) / (alpha + beta)
    return {"profit_share": pi, "employment_rate": lam, "debt_ratio": d, "wage_share": 1 - pi - r * d,
            "profit_rate": pi / nu}


def test_closed_form_matches_published_values(keen):
    # Grasselli & Costa Lima (2012) report omega* ~ 0.836, lambda* ~ 0.969, d* ~ 0.070 for
    # their parameters, the model's defaults.
    eq = good_equilibrium(keen)
    assert eq["wage_share"] == pytest.approx(0.836, abs=0.001)
    assert eq["employment_rate"] == pytest.approx(0.9686, abs=0.001)
    assert eq["debt_ratio"] == pytest.approx(0.0702, abs=0.001)


def test_good_equilibrium_scenario_reaches_the_closed_form(keen):
    ds = run(keen, scenario="good_equilibrium", variables=RATIOS)
    eq = good_equilibrium(keen)
    for name in RATIOS:
        # Within 1% at the end of the 300-year run (issue acceptance).
        assert float(ds[name][-1]) == pytest.approx(eq[name], rel=0.01), name


def test_equilibrium_for_other_parameters(keen):
    """A different interest rate and productivity growth: a fresh closed form, still reached."""
    overrides = {"interest_rate": 0.04, "productivity_growth_rate": 0.03}
    eq = good_equilibrium(keen, overrides)
    start = {"initial_wage_share": eq["wage_share"] + 0.005, "initial_employment_rate": eq["employment_rate"] - 0.01,
             "initial_debt_ratio": eq["debt_ratio"]}
    ds = run(keen, {**overrides, **start}, variables=RATIOS, final_time=300)
    for name in RATIOS:
        assert float(ds[name][-1]) == pytest.approx(eq[name], rel=0.01), name


def test_debt_crisis_diverges_to_the_bad_equilibrium(keen):
    ds = run(keen, scenario="debt_crisis", variables=RATIOS)
    end = ds.isel(time=-1)
    assert float(end["wage_share"]) < 0.01 and float(end["employment_rate"]) < 0.01
    assert float(end["debt_ratio"]) > 100
    # The debt ratio keeps rising over the last half of the run: divergence, not a new rest point.
    debt = ds["debt_ratio"].values
    assert np.all(np.diff(debt[len(debt) // 2:]) > 0)
    for name in RATIOS:
        assert np.isfinite(ds[name]).all()
    assert ((ds["employment_rate"] >= 0) & (ds["employment_rate"] <= 1)).all()


def test_every_element_documented_with_units(keen):
    for element in keen.elements.values():
        assert element.comment, element.name
        assert element.units, element.name
