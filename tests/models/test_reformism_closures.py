"""The reformism model's closures for extreme conditions, each checked on its own.

The hypercube tests in test_validation.py count what the closures achieve over all
ranges at once; these tests check that each one does what its equation says, that its
switch turns it off, and that it is exactly inactive in every shipped scenario, as the
model README ("Extreme conditions") states:

- lost wages (B7): strike reserves rebuild only in the working time not on strike;
- the return of public assets: net public assets beyond ``public asset ceiling`` are
  handed back at the ``restructuring rate``;
- the welfare ceiling: the welfare the government aims at saturates towards ``welfare
  spending ceiling`` of output, and is never negative;
- the free cash payout: firms whose net debt nears 0 pay out their free cash flow (here
  only its inactivity in the shipped scenarios; the hypercube counts what it does).

Model outputs are compared with recomputed values to a relative 1e-12, not bit for bit:
numba compiles for the host CPU, which may fuse a multiply and an add.
"""

from __future__ import annotations

import numpy as np
import pytest

from pysd_runner import ImplausibleWarning, compile_model, run

from ..conftest import MODELS
from .test_reformism_claims import END, mean

MODEL = MODELS / "reformism" / "reformism.mdl"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="models/reformism is not there yet")

SHIPPED = sorted(p.stem for p in (MODELS / "reformism" / "scenarios").glob("*.toml"))


@pytest.fixture(scope="module")
def model():
    return compile_model(MODEL)


def test_strikers_cannot_rebuild_their_reserves_while_on_strike(model):
    # A militant minority whose militancy saturates (organisation's pull at its range's top,
    # no repression, no official damping) and strike reserves that run down slowly (drain
    # 0.3 a year: reserves carry every worker through three years of full strike). With
    # lost wages (B7) reserves rebuild only in the working time not on strike; knocking
    # out the link strike activity -> reserve rebuilding lets them rebuild as if everyone
    # worked, and the strike settles higher.
    params = {"strike fund drain": 0.3, "organisation militancy sensitivity": 10,
              "repression deterrence": 0, "official leadership damping": 0,
              "legitimacy grievance sensitivity": 10}
    variables = ["strike_activity", "strike_reserves", "militancy"]
    with_b7 = run(model, params, scenario="militant_minority", variables=variables)
    without_b7 = run(model, params, scenario="militant_minority", variables=variables,
                     knockout=["strike activity->reserve rebuilding"])
    # Over the last two decades (END).
    assert mean(with_b7, "militancy", END) > 0.99 and mean(without_b7, "militancy", END) > 0.99
    strikes, strikes_without = mean(with_b7, "strike_activity", END), mean(without_b7, "strike_activity", END)
    reserves, reserves_without = mean(with_b7, "strike_reserves", END), mean(without_b7, "strike_reserves", END)
    # Measured: strikes 0.48 against 0.63, reserves 0.48 against 0.63.
    assert strikes < strikes_without - 0.1, (strikes, strikes_without)
    assert reserves < reserves_without - 0.1, (reserves, reserves_without)
    # Without strikes beyond the sustainable level the loop is inactive: reserves stay full.
    calm = run(model, scenario="baseline", variables=variables,
               knockout=["strike activity->reserve rebuilding"])
    baseline = run(model, scenario="baseline", variables=variables)
    assert float(baseline["strike_reserves"].min()) > 0.97
    np.testing.assert_allclose(baseline["strike_reserves"].values, calm["strike_reserves"].values, rtol=0.01)


def test_a_government_in_lasting_surplus_hands_back_its_assets(model):
    # Taxes of half of wages and profits, no tax relief and a small welfare programme: a
    # surplus of about 40% of output a year. Without the return (restructuring rate 0, its
    # switch) net public assets pile up to tens of years of output; with it they stay
    # within a surplus's year of the ceiling (0.25 years of output).
    params = {"tax rate on wages": 0.5, "tax rate on profits": 0.5, "maximum wage tax relief": 0,
              "welfare ambition": 0.05}
    variables = ["public_debt_ratio", "public_debt_restructuring", "output", "deficit_ratio"]
    # Both leave plausible.toml's range (public debt below -0.5 years of output), and
    # the run says so.
    with pytest.warns(ImplausibleWarning, match="public debt ratio"):
        returned = run(model, params, variables=variables)
    with pytest.warns(ImplausibleWarning, match="public debt ratio"):
        piled_up = run(model, {**params, "restructuring rate": 0}, variables=variables)
    assert float(piled_up["public_debt_ratio"].min()) < -10
    surplus = -float(returned["deficit_ratio"].min())
    assert 0.2 < surplus < 0.6, surplus
    lowest = float(returned["public_debt_ratio"].min())
    assert -0.25 - 1.1 * surplus < lowest < -0.25, (lowest, surplus)
    handed_back = -(returned["public_debt_restructuring"] / returned["output"])
    assert float(handed_back.max()) > 0.2
    assert float(handed_back.min()) >= 0  # never restructured above 2.5 at the same time


# keen_core (no restructuring, as in keen.mdl) leaves plausible.toml's public debt range.
@pytest.mark.filterwarnings("ignore::pysd_runner.ImplausibleWarning")
@pytest.mark.parametrize("scenario", SHIPPED)
def test_the_closures_are_inactive_in_every_shipped_scenario(model, scenario):
    ds = run(model, scenario=scenario, variables=[
        "public_debt_restructuring", "free_cash_payout", "desired_welfare", "welfare_ambition_in_force",
        "automatic_stabiliser_strength", "unemployment_rate", "welfare_spending_ceiling"])
    assert float(np.abs(ds["public_debt_restructuring"]).max()) == 0.0
    assert float(np.abs(ds["free_cash_payout"]).max()) == 0.0
    uncapped = ds["welfare_ambition_in_force"] + ds["automatic_stabiliser_strength"] * ds["unemployment_rate"]
    np.testing.assert_allclose(ds["desired_welfare"].values, uncapped.values, rtol=1e-12)
    # The welfare aimed at costs at most 0.29 of output, below half the ceiling (0.35).
    cost = uncapped / (1 - ds["unemployment_rate"])
    assert float(cost.max()) < float(ds["welfare_spending_ceiling"].min()) / 2


def test_the_welfare_aimed_at_saturates_below_the_ceiling_and_is_never_negative(model):
    # An economy that cannot keep up with its labour force and productivity (a
    # capital-output ratio of 6 with natural growth of 7% a year) collapses, employment
    # falling below a tenth. The welfare aimed at per head over the employment rate is its
    # cost as a share of output at full capacity: with a full automatic stabiliser it would
    # pass output many times over; it saturates towards the ceiling (0.5 here) and never
    # passes it.
    ceiling = 0.5
    ds = run(model, {"capital output ratio": 6, "productivity growth rate": 0.04, "labour force growth rate": 0.03,
                     "automatic stabiliser strength": 1, "welfare spending ceiling": ceiling},
             variables=["desired_welfare", "employment_rate", "welfare_ambition_in_force", "unemployment_rate"])
    employment = ds["employment_rate"].values
    assert employment.min() < 0.1
    uncapped = (ds["welfare_ambition_in_force"] + ds["unemployment_rate"]).values / employment
    cost = ds["desired_welfare"].values / employment
    assert uncapped.max() > 5
    assert cost.max() > 0.99 * ceiling
    assert cost.max() <= ceiling * (1 + 1e-9)
    # Identity below half the ceiling.
    below = uncapped < ceiling / 2
    assert below.any()
    np.testing.assert_allclose(cost[below], uncapped[below], rtol=1e-12)
    assert ds["desired_welfare"].values.min() >= 0
