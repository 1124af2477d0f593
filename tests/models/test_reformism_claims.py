"""Behaviour tests: each claim of THEORY.md that the reformism model carries, as a check on
simulated behaviour (in the spirit of Vensim's Reality Checks).

Every scenario and every control run is a member of ONE vectorised ensemble (members equal
scalar runs to rounding: tests/pysd_runner/test_ensemble.py), so the whole file costs about
one simulation. Thresholds are stated next to each check with the reason for them.

Windows used throughout (the shock starts in year 45 in every recession scenario):
- "before": the five years before the shock, [40, 45);
- "crossroads": the two decades from the shock, [45, 65], when the government must choose;
- "end": the last two decades of the century, [80, 100], for what the crisis leaves behind.

Whether welfare "ends lower" is judged against the same scenario without the shock
(``profitability shock size`` = 0), not against the same run before the shock. Welfare per
head is already measured in output per worker, so productivity growth does not lift it;
but a same-run comparison still mixes the shock with the cycle: the five years before the
shock can fall in a boom or a slump, when automatic stabilisers are low or high, and which
way a same-run comparison comes out then depends on the window chosen. The counterfactual
isolates the shock. (The numbers quoted in comments below are printed by
``python -m tests.models.reformism_numbers``.)

Negative controls: for several checks (C2, C1, C3/C11, C6, C9/C10) a parameter change that removes
the mechanism makes the same check fail; those runs are members of the same ensemble and
the tests assert the check is False for them, so the checks are shown able to fail.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pysd_runner import compile_model, load_scenario, run, run_ensemble

from ..conftest import MODELS

MODEL = MODELS / "reformism" / "reformism.mdl"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="models/reformism is not there yet")

SHOCK = 45.0
BEFORE = (40.0, 44.99)
CROSSROADS = (45.0, 65.0)
END = (80.0, 100.0)
VARIABLES = [
    "profit_rate", "tax_revenue", "welfare_spending_per_head", "public_debt_ratio", "legitimacy",
    "strike_activity", "break_pressure", "business_confidence", "austerity_intensity", "militant_minority",
    "repression", "employment_rate", "reform_commitment", "fiscal_capacity", "unemployment_rate",
    "tax_revenue_share", "output",
]

# Members: (label, scenario, overrides).
MEMBERS = [
    ("baseline", "baseline", {}),
    ("reform_victory", "reform_victory", {}),
    ("austerity", "recession_austerity", {}),
    ("hold", "recession_hold_the_line", {}),
    ("militant", "militant_minority", {}),
    ("gradualist", "gradualist_world", {}),
    # Negative controls.
    ("baseline_no_animal_spirits", "baseline", {"profitability sensitivity of confidence": 0}),
    ("baseline_no_noise", "baseline", {"demand noise size": 0}),
    ("austerity_no_shock", "recession_austerity", {"profitability shock size": 0}),
    ("austerity_no_grievance", "recession_austerity", {"austerity grievance sensitivity": 0, "betrayal sensitivity": 0}),
    ("militant_unorganised", "militant_minority", {"rank and file organising effort": 0, "initial militant minority": 0}),
    # Graded organisation under the same weak government, and repression on and off.
    ("austerity_organised", "recession_austerity", {"rank and file organising effort": 0.03, "initial militant minority": 0.25}),
    ("very_organised", "militant_minority", {"rank and file organising effort": 0.15, "initial militant minority": 0.5}),
    ("extreme_organised", "militant_minority", {"rank and file organising effort": 0.5, "initial militant minority": 0.6}),
    ("austerity_repression_max", "recession_austerity", {"repression capacity": 1.0}),
    ("austerity_repression_none", "recession_austerity", {"repression capacity": 0.0}),
    # No-shock counterfactuals for the lasting loss (austerity_no_shock above is the first).
    ("hold_no_shock", "recession_hold_the_line", {"profitability shock size": 0}),
    # Holding the line chosen at the crossroads, not for the whole run: the reformed economy's
    # history up to the shock (resolve 0.3), then resolve 0.9; and its no-shock twin.
    ("hold_at_crossroads", "recession_hold_the_line", {"government resolve": 0.3, "resolve change at the crossroads": 0.6}),
    ("hold_at_crossroads_no_shock", "recession_hold_the_line",
     {"government resolve": 0.3, "resolve change at the crossroads": 0.6, "profitability shock size": 0}),
    ("militant_no_shock", "militant_minority", {"profitability shock size": 0}),
    ("gradualist_no_shock", "gradualist_world", {"profitability shock size": 0}),
    # Negative controls for the lasting loss: a brief shock, the austerity ratchet off
    # (commitment is not eroded, so cuts are restored once austerity lifts), and holding the
    # line without bond-market discipline (no financing constraint, no risk premium); each
    # with its own counterfactual where the change alters the unshocked economy too.
    ("austerity_short_shock", "recession_austerity", {"shock duration": 1}),
    ("austerity_no_ratchet", "recession_austerity", {"commitment erosion rate": 0}),
    ("austerity_no_ratchet_no_shock", "recession_austerity", {"commitment erosion rate": 0, "profitability shock size": 0}),
    # (Holding the line had a control without the bond market's risk premium; since holding
    # the line no longer leaves a lasting loss, a control that removes its cause cannot
    # fail, and it was dropped: see test_c11_where_it_fails_holding_the_line_leaves_no_lasting_loss.)
]


@pytest.fixture(scope="module")
def model():
    return compile_model(MODEL)


def members_ensemble(model, members=MEMBERS):
    """One vectorised run of ``(label, scenario, overrides)`` members, labelled along ``run``."""
    rows = []
    for _, scenario, overrides in members:
        values = dict(load_scenario(scenario, model).params)
        values.update(overrides)
        rows.append({model.resolve(k, kinds=("constant",)).py_name: v for k, v in values.items()})
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        frame[column] = frame[column].fillna(model.elements[column].default)
    settings = load_scenario("baseline", model).time
    ensemble = run_ensemble(model, frame, variables=VARIABLES, **settings)
    return ensemble.assign_coords(run=[label for label, _, _ in members])


@pytest.fixture(scope="module")
def runs(model):
    ensemble = members_ensemble(model)
    assert ensemble["ok"].all()
    # A claim shown in an implausible economy shows nothing: every member, scenario and
    # control alike, stays within the model's plausible.toml.
    left = [str(label) for label in ensemble["run"].values[~ensemble["plausible"].values]]
    assert not left, f"members leave plausible.toml: {left}: {ensemble.attrs.get('implausible', '')[:400]}"
    return ensemble


def member(runs, label):
    return runs.sel(run=label)


def mean(ds, name, window):
    return float(ds[name].sel(time=slice(*window)).mean())


def lowest(ds, name, window):
    return float(ds[name].sel(time=slice(*window)).min())


def highest(ds, name, window):
    return float(ds[name].sel(time=slice(*window)).max())


# --------------------------------------------------------------------------- C2

def recurring_downturns(ds, window=(50.0, 100.0), depth=0.05) -> int:
    """Profit-rate peaks in the window followed by a fall of at least ``depth`` (relative)."""
    series = ds["profit_rate"].sel(time=slice(*window)).values
    peaks = [i for i in range(1, len(series) - 1) if series[i - 1] < series[i] >= series[i + 1]]
    count = 0
    for p in peaks:
        following = series[p:]
        nxt = [q for q in peaks if q > p]
        trough = following[: (nxt[0] - p) if nxt else None].min()
        if (series[p] - trough) / series[p] >= depth:
            count += 1
    return count


def cyclical_volatility(ds, window=(20.0, 100.0)) -> float:
    """Standard deviation over mean of the profit rate in the window."""
    series = ds["profit_rate"].sel(time=slice(*window))
    return float(series.std() / series.mean())


def test_c2_profit_rate_downturns_recur_without_any_profitability_shock(runs):
    # Over the second half of the century (years 50-100) at least three downturns of the
    # profit rate of 5% or more, in the baseline with no profitability shock. (5% is a
    # recession-sized fall in the profit rate; three in 50 years means roughly one a decade
    # or more often.) The impulses are the model's small yearly demand noise; the cycle they
    # set off is the model's own (profit squeeze, animal spirits, investment).
    assert recurring_downturns(member(runs, "baseline")) >= 3


def test_c2_where_it_fails_without_impulses_the_cycle_dies_out(runs):
    # C2's strong form, a cycle that sustains itself with no impulse at all, does not hold
    # in the economy that meets the stylized facts: with the demand noise off the profit
    # cycle is damped and no downturn of 5% recurs (the profit rate's sd/mean over years
    # 20-100 is about 0.002). The self-sustaining version (profitability sensitivity 22.9,
    # confidence range 0.109) swung the profit rate three to four times as much as the US
    # one (model README, 'Endogenous cycle'). Asserted, so that the README's statement of
    # this failure is kept true.
    quiet = member(runs, "baseline_no_noise")
    assert recurring_downturns(quiet) == 0
    assert cyclical_volatility(quiet) < 0.1 * cyclical_volatility(member(runs, "baseline"))


def test_c2_negative_control_animal_spirits_amplify_the_same_impulses(runs):
    # Under the same demand noise, confidence that follows profitability makes the profit
    # rate swing more (sd/mean about 0.065 against 0.053 over years 20-100): the cycle
    # propagates through profitability. The threshold (10% more) is about half the gap.
    with_spirits = cyclical_volatility(member(runs, "baseline"))
    without = cyclical_volatility(member(runs, "baseline_no_animal_spirits"))
    assert with_spirits > 1.1 * without, (with_spirits, without)


# --------------------------------------------------------------------------- C1

def revenue_falls_after_shock(shocked, unshocked, years=5.0, fall=0.05) -> bool:
    """Revenue falls at least ``fall`` below the same economy without the shock within ``years``.

    The comparison is with the counterfactual run, not with the level at the shock: the
    endogenous cycle moves revenue too, and only the counterfactual isolates the shock.
    """
    window = (SHOCK, SHOCK + years)
    ratio = shocked["tax_revenue"].sel(time=slice(*window)) / unshocked["tax_revenue"].sel(time=slice(*window))
    return float(ratio.min()) < 1 - fall


def test_c1_tax_revenue_falls_within_a_few_years_of_the_shock(runs):
    # More than 5% below the no-shock counterfactual within five years of the shock.
    assert revenue_falls_after_shock(member(runs, "austerity"), member(runs, "austerity_no_shock"))


def test_c1_negative_control_no_shock_no_fall(runs):
    # The same check on two runs without a shock (the reform economy against itself
    # and against the baseline's calmer path) finds no fall.
    assert not revenue_falls_after_shock(member(runs, "austerity_no_shock"), member(runs, "austerity_no_shock"))


# --------------------------------------------------------------------------- C3, C4, C11

def welfare_cut(ds, margin=0.02) -> bool:
    """Welfare per head over the crossroads is at least ``margin`` (relative) below its pre-shock level."""
    return mean(ds, "welfare_spending_per_head", CROSSROADS) < (1 - margin) * mean(ds, "welfare_spending_per_head", BEFORE)


def test_c3_austerity_cuts_welfare(runs):
    ds = member(runs, "austerity")
    # 2% below the pre-shock level on average over two decades: a cut, not noise of the cycle
    # (the baseline's welfare moves by less than that between these windows).
    assert welfare_cut(ds)
    assert highest(ds, "austerity_intensity", CROSSROADS) > 0.3


def test_c3_c4_c11_holding_the_line_builds_debt_and_an_investment_strike_and_still_cuts(runs):
    ds = member(runs, "hold")
    before_debt = mean(ds, "public_debt_ratio", BEFORE)
    # Public debt rises by a tenth or more (C11: the crisis is financed with debt); it goes
    # from about 0.99 to 1.15 years of output.
    assert highest(ds, "public_debt_ratio", CROSSROADS) > 1.1 * before_debt
    # Capital withholds investment: confidence falls below its pre-shock level (C4).
    assert lowest(ds, "business_confidence", CROSSROADS) < mean(ds, "business_confidence", BEFORE) - 0.02
    # And welfare is still not sustained (C3): the reforms give way either way.
    assert welfare_cut(ds)
    # The government did refuse austerity: far less than under recession_austerity.
    assert highest(ds, "austerity_intensity", CROSSROADS) < 0.5 * highest(member(runs, "austerity"), "austerity_intensity", CROSSROADS)


# Lasting loss: welfare per head over the last two decades against the same economy without
# the shock. The window is longer than one full cycle of the post-shock economy (peak to peak
# 10-12 years in the recession scenarios), so the two runs are compared over whole cycles
# even though the shock shifts the cycle's phase. Threshold 4%: with the mechanisms that
# make a loss last switched off (the controls below), shocked and unshocked runs still differ
# by up to 2.1% over this window (the phase shift alone); a loss of about twice that is not
# explained by phase. The losses found are 15% (austerity) and 19% (gradualist world);
# holding the line loses 1.3%, below the threshold (see the test after next).
LASTING_LOSS = 0.04


def lasting_loss(shocked, unshocked) -> float:
    """Relative shortfall of welfare per head over ``END`` against the no-shock counterfactual."""
    return 1 - mean(shocked, "welfare_spending_per_head", END) / mean(unshocked, "welfare_spending_per_head", END)


def test_c3_welfare_ends_lower_than_without_the_shock_when_the_government_gives_in(runs):
    # Giving in, and giving in in Chibber's world, end the century with less welfare per
    # head than the same economy spared the shock: the loss lasts.
    for label in ("austerity", "gradualist"):
        loss = lasting_loss(member(runs, label), member(runs, f"{label}_no_shock"))
        assert loss > LASTING_LOSS, (label, loss)
    # Why it lasts, by route. Giving in (C3): the cuts are not restored. Austerity eroded the
    # government's commitment to its programme, and decades later it is still 0.05 or more
    # below the counterfactual's (about 0.72 against 0.87).
    austerity, spared = member(runs, "austerity"), member(runs, "austerity_no_shock")
    assert mean(austerity, "reform_commitment", END) < mean(spared, "reform_commitment", END) - 0.05


def test_c11_where_it_fails_holding_the_line_leaves_no_lasting_loss(runs):
    # C11 says the crisis debt of a government that holds the line limits what it can
    # finance afterwards, so that welfare gives way in the end. In the economy that meets
    # the stylized facts (growth about 3%, equilibrium unemployment about 6%) the crisis
    # debt is grown out of: by the last two decades public debt is back at the no-shock
    # counterfactual's (within 0.05 years of output), fiscal capacity is the same (within
    # 0.02), and welfare per head ends 1.3% below the counterfactual, under the 4% threshold.
    # (Before the recalibration, with 7-10% equilibrium unemployment, the loss was 11.8%.)
    # Asserted so that the README's statement of this failure stays true.
    hold, spared = member(runs, "hold"), member(runs, "hold_no_shock")
    assert lasting_loss(hold, spared) < LASTING_LOSS
    assert abs(mean(hold, "reform_commitment", END) - mean(spared, "reform_commitment", END)) < 0.01
    assert abs(mean(hold, "public_debt_ratio", END) - mean(spared, "public_debt_ratio", END)) < 0.05
    assert abs(mean(hold, "fiscal_capacity", END) - mean(spared, "fiscal_capacity", END)) < 0.02


def test_where_it_fails_a_government_that_holds_the_line_only_at_the_crossroads_meets_no_investment_strike(runs):
    # recession_hold_the_line has resolve 0.9 for the whole run: a government that never cuts
    # enters the crisis with public debt near 1.0 years of output, and the investment strike
    # (C4) comes with it; but its unemployment reaches 13% in the reform years, above the
    # stylized facts' 12% (facts.toml, known_failures). Made at the crossroads instead (the
    # same history as reform_victory up to the shock, then resolve 0.9), the choice meets the
    # facts, enters the crisis with debt near 0.35, and capital does not strike: confidence
    # falls no further than under austerity or without the shock (about 0.978 against 0.980
    # and 0.983). Asserted so that the README's statement of this trade-off stays true.
    chosen, spared, austerity = member(runs, "hold_at_crossroads"), member(runs, "hold_at_crossroads_no_shock"), \
        member(runs, "austerity")
    reform_years = (20.0, 44.99)
    assert 1 - lowest(chosen, "employment_rate", reform_years) < 0.12
    assert 1 - lowest(member(runs, "hold"), "employment_rate", reform_years) > 0.12
    assert mean(chosen, "public_debt_ratio", BEFORE) < 0.5 < mean(member(runs, "hold"), "public_debt_ratio", BEFORE)
    before = mean(chosen, "business_confidence", BEFORE)
    assert lowest(chosen, "business_confidence", CROSSROADS) > before - 0.02  # no strike by the C4 test's measure
    assert lowest(chosen, "business_confidence", CROSSROADS) > lowest(austerity, "business_confidence", CROSSROADS) - 0.005
    assert mean(chosen, "business_confidence", CROSSROADS) > mean(spared, "business_confidence", CROSSROADS)


def test_c3_c11_negative_controls_no_lasting_loss_without_its_mechanisms(runs):
    # No shock, no lasting loss: the check's zero point.
    assert lasting_loss(member(runs, "austerity_no_shock"), member(runs, "austerity_no_shock")) == 0
    # A one-year shock brings brief, mild austerity; commitment erosion rises with the fourth
    # power of austerity, so the programme is hardly given up and welfare recovers.
    assert lasting_loss(member(runs, "austerity_short_shock"), member(runs, "austerity_no_shock")) < LASTING_LOSS
    # The same three-year shock and weak government, with the ratchet off: the cuts are
    # restored once austerity lifts.
    assert lasting_loss(member(runs, "austerity_no_ratchet"), member(runs, "austerity_no_ratchet_no_shock")) < LASTING_LOSS


def test_c9_c10_organisation_prevents_a_lasting_loss(runs):
    # The organised case is the exception the issue allows: the militant minority wins back
    # the government's commitment (struggle restoration), and welfare ends within the
    # threshold of its counterfactual (3.0% below, against a threshold of 4%), unlike the unorganised
    # weak government.
    assert lasting_loss(member(runs, "militant"), member(runs, "militant_no_shock")) < LASTING_LOSS
    assert lasting_loss(member(runs, "austerity"), member(runs, "austerity_no_shock")) > LASTING_LOSS


def test_c9_c10_an_organised_rank_and_file_changes_the_outcome(runs):
    militant = member(runs, "militant")
    # Over the crossroads the organised case keeps more welfare per head than either
    # choice of an unorganised government (giving in, or holding the line)...
    for other in ("austerity", "hold"):
        assert mean(militant, "welfare_spending_per_head", CROSSROADS) > 1.05 * mean(member(runs, other), "welfare_spending_per_head", CROSSROADS)
    # ...and it is the organisation that does it: the same weak government facing the same
    # shock, with and without an organised minority built beforehand.
    organised, unorganised = member(runs, "austerity_organised"), member(runs, "austerity")
    assert mean(organised, "welfare_spending_per_head", CROSSROADS) > 1.05 * mean(unorganised, "welfare_spending_per_head", CROSSROADS)
    assert highest(organised, "austerity_intensity", CROSSROADS) < highest(unorganised, "austerity_intensity", CROSSROADS)
    # What the model does NOT show: welfare rising through the crisis. The organised case
    # holds it within 2% of its own (higher) pre-shock level (0.204 against 0.206), but not
    # above it: organisation defends the reform, it does not make the crisis a gain.
    assert not welfare_cut(militant)
    assert mean(militant, "welfare_spending_per_head", CROSSROADS) < mean(militant, "welfare_spending_per_head", BEFORE)


def test_c9_c10_negative_control_without_organisation_welfare_is_cut(runs):
    assert welfare_cut(member(runs, "militant_unorganised"))
    assert welfare_cut(member(runs, "austerity"))


def test_c9_c10_more_organisation_means_less_austerity(runs):
    # Graded organisation (militant minority at the shock): the peak austerity the
    # government imposes at the crossroads falls step by step.
    labels = ("austerity", "austerity_organised", "militant", "very_organised")
    minority = [float(member(runs, label)["militant_minority"].sel(time=SHOCK, method="nearest")) for label in labels]
    austerity = [highest(member(runs, label), "austerity_intensity", CROSSROADS) for label in labels]
    assert minority == sorted(minority), minority
    assert austerity == sorted(austerity, reverse=True), austerity


def test_where_the_argument_fails_very_high_militancy_costs_welfare(runs):
    # A limit the model exposes: with an extreme minority (organising effort 0.5, a
    # militant minority of 0.6 at the start), strike losses and capital's investment strike
    # shrink output so much that welfare per head over the crossroads is lower (about 0.201)
    # than with a very organised one (effort 0.15: about 0.207), even though austerity is
    # weakest and the break indicator highest. Organisation helps up to a point.
    very, moderate = member(runs, "extreme_organised"), member(runs, "very_organised")
    assert mean(very, "welfare_spending_per_head", CROSSROADS) < mean(moderate, "welfare_spending_per_head", CROSSROADS)
    assert highest(very, "break_pressure", (0, 100)) > highest(moderate, "break_pressure", (0, 100))


# --------------------------------------------------------------------------- C6, C8

def strikes_rise(ds, factor=2.0) -> bool:
    return highest(ds, "strike_activity", (SHOCK, SHOCK + 15)) > factor * mean(ds, "strike_activity", BEFORE)


def test_c6_c8_austerity_raises_strikes_and_lowers_legitimacy(runs):
    ds = member(runs, "austerity")
    # Strikes at least double at the crossroads; legitimacy loses 0.05 or more (on a 0-1
    # scale where the calm baseline moves by about 0.02 over a whole cycle).
    assert strikes_rise(ds)
    assert lowest(ds, "legitimacy", (SHOCK, SHOCK + 25)) < mean(ds, "legitimacy", BEFORE) - 0.05


def test_c6_negative_control_without_grievances_strikes_do_not_rise(runs):
    assert not strikes_rise(member(runs, "austerity_no_grievance"))


def test_c6_c8_repression_lowers_legitimacy(runs):
    repressed = member(runs, "austerity_repression_max")
    spared = member(runs, "austerity_repression_none")
    assert highest(repressed, "repression", CROSSROADS) > highest(spared, "repression", CROSSROADS) + 0.05
    assert lowest(repressed, "legitimacy", CROSSROADS) < lowest(spared, "legitimacy", CROSSROADS)


# --------------------------------------------------------------------------- limits of the argument

def test_gradualist_world_gives_no_break_where_the_organised_case_does(runs):
    # The break indicator is bounded in [0, 1]; 0.5 is its midpoint.
    assert highest(member(runs, "gradualist"), "break_pressure", (0, 100)) < 0.5
    assert highest(member(runs, "militant"), "break_pressure", (0, 100)) > 0.5
    for label, _, _ in MEMBERS:
        values = member(runs, label)["break_pressure"].values
        assert ((values >= 0) & (values <= 1)).all(), label


# --------------------------------------------------------------------------- descriptions

AFTER_WARM_UP = (20.0, 100.0)


def tax_fall(runs, label) -> float:
    """Percent by which tax revenue falls below the no-shock run within five years of the shock (C1)."""
    window = (SHOCK, SHOCK + 5)
    ratio = member(runs, label)["tax_revenue"].sel(time=slice(*window)) / \
        member(runs, f"{label}_no_shock")["tax_revenue"].sel(time=slice(*window))
    return 100 * (1 - float(ratio.min()))


def growth(ds, window) -> float:
    """Mean exponential growth of output over ``window``, percent a year."""
    output = ds["output"].sel(time=slice(*window))
    span = float(output["time"][-1] - output["time"][0])
    return 100 * float(np.log(output[-1] / output[0])) / span


# Every number a scenario's description quotes, with how to measure it. The report and
# `crisis scenarios` show these texts to readers, so a number the model no longer produces is
# a false statement about it. In a phrase, {} is a value quoted to its last digit (it must
# round to the measured one, with a quarter of a unit to spare for other CPUs), {<} a bound
# the measured value stays below and {>} one it stays above.
DESCRIBED = {
    "baseline": [
        ("welfare per head about {} of output per worker",
         lambda r: [mean(member(r, "baseline"), "welfare_spending_per_head", AFTER_WARM_UP)]),
        ("after-tax profit rate between about {} and {}",
         lambda r: [lowest(member(r, "baseline"), "profit_rate", AFTER_WARM_UP), highest(member(r, "baseline"), "profit_rate", AFTER_WARM_UP)]),
        ("employment rate between {} and {}",
         lambda r: [lowest(member(r, "baseline"), "employment_rate", AFTER_WARM_UP), highest(member(r, "baseline"), "employment_rate", AFTER_WARM_UP)]),
        ("some austerity (at most about {})", lambda r: [highest(member(r, "baseline"), "austerity_intensity", AFTER_WARM_UP)]),
        ("legitimacy stays between {} and {}",
         lambda r: [lowest(member(r, "baseline"), "legitimacy", AFTER_WARM_UP), highest(member(r, "baseline"), "legitimacy", AFTER_WARM_UP)]),
        ("militant minority stays below {<}", lambda r: [highest(member(r, "baseline"), "militant_minority", AFTER_WARM_UP)]),
        ("break indicator below {<}", lambda r: [highest(member(r, "baseline"), "break_pressure", AFTER_WARM_UP)]),
    ],
    "reform_victory": [
        ("about {}% a year over years 20-100", lambda r: [growth(member(r, "reform_victory"), AFTER_WARM_UP)]),
        ("welfare per head averages about {} against {} in the baseline",
         lambda r: [mean(member(r, label), "welfare_spending_per_head", (30, 45)) for label in ("reform_victory", "baseline")]),
        ("tax revenue about {}% of output against {}%",
         lambda r: [100 * mean(member(r, label), "tax_revenue_share", (30, 45)) for label in ("reform_victory", "baseline")]),
        ("public debt stays between {} and {} years",
         lambda r: [lowest(member(r, "reform_victory"), "public_debt_ratio", AFTER_WARM_UP),
                    highest(member(r, "reform_victory"), "public_debt_ratio", AFTER_WARM_UP)]),
    ],
    "recession_austerity": [
        ("tax revenue falls to about {}% below", lambda r: [tax_fall(r, "austerity")]),
        ("(up to about {})", lambda r: [highest(member(r, "austerity"), "austerity_intensity", CROSSROADS)]),
        ("about {} in the five years before the shock and {} on average over the two decades after it",
         lambda r: [mean(member(r, "austerity"), "welfare_spending_per_head", window) for window in (BEFORE, CROSSROADS)]),
        ("still about {}% below the same economy without the shock",
         lambda r: [100 * lasting_loss(member(r, "austerity"), member(r, "austerity_no_shock"))]),
        ("down to about {}", lambda r: [lowest(member(r, "austerity"), "legitimacy", (SHOCK, 100))]),
    ],
    "recession_hold_the_line": [
        ("already about {} years of output before the shock, rises to about {}",
         lambda r: [mean(member(r, "hold"), "public_debt_ratio", BEFORE), highest(member(r, "hold"), "public_debt_ratio", CROSSROADS)]),
        ("business confidence falls from about {} to {}",
         lambda r: [mean(member(r, "hold"), "business_confidence", BEFORE), lowest(member(r, "hold"), "business_confidence", CROSSROADS)]),
        ("(about {} against {})",
         lambda r: [highest(member(r, label), "unemployment_rate", CROSSROADS) for label in ("hold", "austerity")]),
        ("averages about {} over the two decades after the shock, against {} in the five years before it",
         lambda r: [mean(member(r, "hold"), "welfare_spending_per_head", window) for window in (CROSSROADS, BEFORE)]),
        ("within about {}% of the same economy without the shock",
         lambda r: [100 * lasting_loss(member(r, "hold"), member(r, "hold_no_shock"))]),
    ],
    "militant_minority": [
        ("its peak is about {}, against {} in recession_austerity",
         lambda r: [highest(member(r, label), "austerity_intensity", CROSSROADS) for label in ("militant", "austerity")]),
        ("pre-shock level of about {}", lambda r: [mean(member(r, "militant"), "welfare_spending_per_head", BEFORE)]),
        ("about {} on average over the two decades from the shock, against about {} in recession_austerity and {} in",
         lambda r: [mean(member(r, label), "welfare_spending_per_head", CROSSROADS) for label in ("militant", "austerity", "hold")]),
        ("a peak of about {}, against {} under austerity",
         lambda r: [highest(member(r, label), "strike_activity", (SHOCK, SHOCK + 15)) for label in ("militant", "austerity")]),
        ("(to about {})", lambda r: [highest(member(r, "militant"), "break_pressure", (0, 100))]),
        ("falls back (about {}, against {} with",
         lambda r: [mean(member(r, label), "welfare_spending_per_head", CROSSROADS) for label in ("extreme_organised", "very_organised")]),
    ],
    "gradualist_world": [
        ("about {} on average over the two decades after the shock, against {} in the five years before it",
         lambda r: [mean(member(r, "gradualist"), "welfare_spending_per_head", window) for window in (CROSSROADS, BEFORE)]),
        ("legitimacy stays above {>}", lambda r: [lowest(member(r, "gradualist"), "legitimacy", AFTER_WARM_UP)]),
        ("militant minority stays below {<}", lambda r: [highest(member(r, "gradualist"), "militant_minority", AFTER_WARM_UP)]),
    ],
}

_NUMBER = r"(-?\d+(?:\.\d+)?)"


def quoted_against_measured(text: str, phrase: str, measured: list[float]) -> str | None:
    """None if ``text`` holds ``phrase`` with numbers that say ``measured``; else what is wrong."""
    kinds = re.findall(r"\{([<>]?)\}", phrase)
    pattern = re.escape(phrase)
    for kind in ("\\{\\}", "\\{<\\}", "\\{>\\}"):
        pattern = pattern.replace(kind, _NUMBER)
    found = re.search(pattern, text)
    if not found:
        return f"the phrase '{phrase}' is not in the description"
    wrong = []
    for kind, quoted, value in zip(kinds, found.groups(), measured):
        digits = len(quoted.split(".")[1]) if "." in quoted else 0
        number = float(quoted)
        if kind == "<":
            good = value < number
        elif kind == ">":
            good = value > number
        else:
            good = abs(number - value) <= 0.75 * 10.0 ** -digits
        if not good:
            wrong.append(f"{quoted} (measured {value:.{digits + 2}f})")
    return f"'{found.group(0)}': " + ", ".join(wrong) if wrong else None


@pytest.mark.parametrize("scenario", sorted(DESCRIBED))
def test_scenario_descriptions_quote_what_the_runs_show(runs, model, scenario):
    text = load_scenario(scenario, model).description
    problems = [problem for phrase, measure in DESCRIBED[scenario]
                if (problem := quoted_against_measured(text, phrase, measure(runs))) is not None]
    assert not problems, f"{scenario}'s description: " + "; ".join(problems)


def test_description_check_catches_a_stale_number():
    # Negative control for the check above: the old text of recession_hold_the_line (before
    # the model's rework) quoted public debt rising "from about 1.0 to 1.5".
    assert quoted_against_measured("debt rises from about 1.0 to 1.5", "from about {} to {}", [0.99, 1.15]) \
        == "'from about 1.0 to 1.5': 1.5 (measured 1.150)"
    assert quoted_against_measured("stays below 0.08", "stays below {<}", [0.073]) is None
    assert quoted_against_measured("stays below 0.07", "stays below {<}", [0.073]) is not None
    assert quoted_against_measured("another text", "stays below {<}", [0.073]).endswith("not in the description")


# --------------------------------------------------------------------------- structure

def test_keen_core_is_recovered_exactly_with_extensions_off(model):
    keen = compile_model(MODELS / "keen" / "keen.mdl")
    shared = ["capital", "output", "wage_share", "employment_rate", "debt_ratio", "profit_rate", "private_debt"]
    # Sixty years at the coarsest allowed step keep this test quick; the equality is exact
    # at any step because both models execute the same equations.
    settings = dict(variables=shared, final_time=60, time_step=1 / 128)
    reformism = run(model, scenario="keen_core", **settings)
    core = run(keen, scenario="good_equilibrium", **settings)
    for name in shared:
        np.testing.assert_array_equal(reformism[name].values, core[name].values, err_msg=name)


def test_every_element_documented_with_units(model):
    undocumented = [e.name for e in model.elements.values() if not e.comment]
    without_units = [e.name for e in model.elements.values() if not e.units]
    assert not undocumented and not without_units, (undocumented, without_units)
    for constant in model.constants:
        assert constant.limits != (None, None), f"{constant.name} has no Vensim range"
