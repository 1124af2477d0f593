"""The stylized facts: their values computed from the shipped data against published
numbers, the statistics on series with a known answer, facts files that are wrong, and
``crisis facts`` from the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from calibration.errors import SpecError
from calibration.facts import (
    cycle_length,
    data_facts,
    decline_frequency,
    growth,
    growth_range,
    histories_table,
    hp_volatility,
    judge_histories,
    load_facts_spec,
    measure,
    unexpected,
    annual_means,
    annual_range,
    value_range,
)
from pysd_runner.cli import main

from ..conftest import FIXTURES, MODELS

REFORMISM = MODELS / "reformism" / "reformism.mdl"
POPULATION = FIXTURES / "population.mdl"

# NBER business-cycle troughs 1960-2009 (https://www.nber.org/research/data/us-business-cycle-expansions-and-contractions).
# Unemployment peaks at or a little after each trough.
NBER_TROUGHS = [1961.1, 1970.9, 1975.2, 1980.5, 1982.9, 1991.2, 2001.9, 2009.5]


# --------------------------------------------------------------------------- the data's facts

@pytest.fixture(scope="module")
def facts():
    return data_facts()


def test_every_fact_has_a_value_a_source_and_a_band_around_it(facts):
    assert set(facts) == {"cycle_length", "unemployment_range", "output_declines", "growth",
                          "profit_rate_volatility", "investment_share_range", "real_wage_growth_range",
                          "private_debt_range", "public_debt_range"}
    for fact in facts.values():
        assert fact.source and fact.description
        assert fact.within(fact.data_value), fact.name  # the data meet their own band


def test_recessions_found_in_the_data_are_the_nber_recessions():
    from calibration.data import load_series
    from calibration.facts import RECESSION_PROMINENCE
    from scipy.signal import find_peaks

    u = load_series("us.q.unemployment_rate")
    peaks, _ = find_peaks(u.values, prominence=RECESSION_PROMINENCE)
    times = u["time"].values[peaks]
    # Each unemployment peak lies within a quarter or two before and two years after an NBER trough...
    for t in times:
        assert any(-0.5 <= t - trough <= 2.0 for trough in NBER_TROUGHS), t
    # ... and all but the 1980 recession (its unemployment peak merges with 1982's) are found.
    assert len(times) >= len(NBER_TROUGHS) - 2


def test_data_values_match_published_numbers(facts):
    # PWT 10 US real GDP growth 1950-2019: about 3.1% a year (BEA: 3.2% for 1950-2019).
    assert facts["growth"].data_value == pytest.approx(0.031, abs=0.002)
    # BLS unemployment 1948-2019: lowest 2.9% (1953), highest 9.7% (1982) in annual averages.
    low, high = facts["unemployment_range"].data_value
    assert low == pytest.approx(0.029, abs=0.002) and high == pytest.approx(0.097, abs=0.002)
    # Real GDP fell in 1954, 1958, 1974, 1975, 1980, 1982, 1991, 2009 (BEA annual): 8-9 of 69 years.
    assert facts["output_declines"].data_value == pytest.approx(9 / 69, abs=0.02)
    # Federal debt held by the public: about 0.31 of GDP at its 1974 low, about 1.06 in the 1940s-50s
    # start of the window or in 2019 terms of gross debt.
    low, high = facts["public_debt_range"].data_value
    assert 0.2 < low < 0.4 and 0.8 < high < 1.2
    # Postwar mean expansion plus contraction is 5-7 years (NBER); peak to peak of unemployment
    # the mean interval is longer because 1980 and 1982 merge.
    assert 5.0 < facts["cycle_length"].data_value < 10.0
    assert 0.01 < facts["profit_rate_volatility"].data_value < 0.04


# --------------------------------------------------------------------------- the statistics

YEARS = np.arange(0.0, 80.0, 0.25)


def test_cycle_length_of_a_cycle_with_a_known_period():
    u = 0.06 + 0.02 * np.sin(2 * np.pi * YEARS / 7.0)
    assert cycle_length(YEARS, u) == pytest.approx(7.0, abs=0.05)


def test_cycle_length_ignores_wiggles_smaller_than_a_recession():
    u = 0.06 + 0.002 * np.sin(2 * np.pi * YEARS / 3.0)
    assert math.isinf(cycle_length(YEARS, u))


def test_growth_and_declines_of_known_series():
    y = 100 * np.exp(0.03 * YEARS)
    assert growth(YEARS, y) == pytest.approx(0.03, rel=1e-3)
    assert decline_frequency(YEARS, y) == 0.0
    lo, hi = growth_range(YEARS, y)
    assert lo == pytest.approx(0.03, rel=1e-6) and hi == pytest.approx(lo, rel=1e-9)  # log growth
    # Growth with one year in eight of 2% decline.
    years = np.arange(0.0, 81.0)
    rates = np.where(np.arange(80) % 8 == 7, -0.02, 0.04)
    y = 100 * np.concatenate([[1.0], np.cumprod(1 + rates)])
    assert decline_frequency(years, y) == pytest.approx(1 / 8)


def test_hp_volatility_of_a_trend_with_a_cycle():
    years = np.arange(0.0, 80.0)
    flat = np.full_like(years, 0.1)
    assert hp_volatility(years, flat) == pytest.approx(0.0, abs=1e-12)
    cycle = 0.1 * (1 + 0.03 * np.sin(2 * np.pi * years / 7.0))
    # The HP filter (lambda 100) leaves a 7-year cycle almost whole: sd of a sine is amplitude/sqrt 2.
    assert hp_volatility(years, cycle) == pytest.approx(0.03 / math.sqrt(2), rel=0.15)


def test_value_range_uses_the_whole_series():
    assert value_range(YEARS, np.sin(YEARS)) == pytest.approx((-1.0, 1.0), abs=1e-3)


def test_annual_range_is_the_range_of_calendar_year_means():
    # Data saved once a year come back as they are (the BLS series is already annual means).
    years = np.arange(1948.0, 2020.0)
    u = 0.05 + 0.02 * np.sin(years)
    assert annual_range(years, u) == (float(u.min()), float(u.max()))
    # A quarterly run: one quarter at 15% in a year of 6% is a year of 8.25%, not a peak of 15%.
    u = np.full_like(YEARS, 0.06)
    u[YEARS == 30.5] = 0.15
    assert annual_range(YEARS, u) == pytest.approx((0.06, 0.0825), abs=1e-12)
    # Years with fewer than half a year's saved points are left out: a run ending at year 80
    # saves one point in year 80, and the edge of a crisis window cuts a year short.
    time = np.arange(0.0, 80.0 + 1e-9, 0.25)
    u = np.where(time >= 80, 0.5, 0.06)
    labels, means = annual_means(time, u)
    assert labels[-1] == 79 and means.max() == pytest.approx(0.06)
    short = time[(time > 60) & (time <= 62)]  # three quarters of year 60, all of 61, 62.0 alone
    labels, _ = annual_means(short, np.zeros_like(short))
    assert list(labels) == [60, 61]
    # A stretch of no more than half a year still has a mean (no year is full enough).
    assert annual_range(np.array([5.0, 5.25]), np.array([0.1, 0.2])) == pytest.approx((0.15, 0.15))
    # Saved every half year, the final time alone is not a year either.
    half = np.arange(0.0, 10.0 + 1e-9, 0.5)
    labels, _ = annual_means(half, np.where(half >= 10, 0.5, 0.06))
    assert labels[-1] == 9
    # A run that broke down fails, even where the bad value sits in a year left out.
    broken = np.full_like(time, 0.06)
    broken[-1] = np.nan
    assert all(math.isnan(v) for v in annual_range(time, broken))


def test_a_year_the_crisis_window_touches_is_judged_whole_inside_it(tmp_path):
    # The window starts mid-year: year 45 is averaged whole (not split into two half-year
    # means) and judged against the crisis bound, which 30% breaks.
    u = np.full_like(YEARS, 0.06)
    u[(YEARS >= 45) & (YEARS < 46)] = 0.3
    spec = _spec(tmp_path, 'warm_up = 10\n[variables]\nunemployment_rate = "unemployment_rate"\n'
                           '[scenarios.shock]\ncrisis = [45.5, 60]\n')
    result = {r.fact.name: r for r in measure(_run(u), spec, "shock")}["unemployment_range"]
    assert result.passed is False and result.checks[1][0] == pytest.approx((0.06, 0.3))
    assert result.checks[0][0] == pytest.approx((0.06, 0.06))  # outside: every other year
    u[(YEARS >= 45) & (YEARS < 46)] = 0.2  # within the Depression's 25%
    assert {r.fact.name: r for r in measure(_run(u), spec, "shock")}["unemployment_range"].passed is True
    # A window beyond the run leaves the ordinary band alone to judge.
    late = _spec(tmp_path, 'warm_up = 10\n[variables]\nunemployment_rate = "unemployment_rate"\n'
                           '[scenarios.shock]\ncrisis = [200, 210]\n')
    result = {r.fact.name: r for r in measure(_run(u), late, "shock")}["unemployment_range"]
    assert result.passed is False and len(result.checks) == 1  # 20% outside any window
    # A NaN inside the window is not hidden by the combined range.
    u[(YEARS >= 45) & (YEARS < 46)] = 0.06
    u[YEARS == 50] = np.nan
    result = {r.fact.name: r for r in measure(_run(u), spec, "shock")}["unemployment_range"]
    assert result.passed is False and all(math.isnan(v) for v in result.value)


# --------------------------------------------------------------------------- measuring a run

def _run(unemployment, output=None):
    time = YEARS
    data = {"unemployment_rate": ("time", unemployment)}
    if output is not None:
        data["output"] = ("time", output)
    return xr.Dataset(data, coords={"time": time})


def _spec(tmp_path, text):
    path = tmp_path / "facts.toml"
    path.write_text(text)
    return load_facts_spec(path)


def test_facts_without_a_variable_are_not_applicable_never_passed(tmp_path):
    spec = _spec(tmp_path, '[variables]\nunemployment_rate = "unemployment rate"\n')
    results = {r.fact.name: r for r in measure(_run(0.06 + 0.02 * np.sin(YEARS)), spec)}
    assert results["growth"].passed is None and results["growth"].text() == "n/a"
    assert results["unemployment_range"].passed is True


def test_crisis_window_is_judged_against_historical_extremes(tmp_path):
    u = np.full_like(YEARS, 0.06)
    u[(YEARS >= 45) & (YEARS <= 50)] = 0.2  # a depression inside the window
    spec = _spec(tmp_path, 'warm_up = 10\n[variables]\nunemployment_rate = "unemployment_rate"\n'
                           '[scenarios.shock]\ncrisis = [45, 60]\n')
    inside = {r.fact.name: r for r in measure(_run(u), spec, "shock")}
    assert inside["unemployment_range"].passed is True  # 20% is within the Depression's 25%
    ordinary = {r.fact.name: r for r in measure(_run(u), spec, "other")}
    assert ordinary["unemployment_range"].passed is False
    u[(YEARS >= 45) & (YEARS <= 50)] = 0.3  # worse than the Great Depression
    assert {r.fact.name: r for r in measure(_run(u), spec, "shock")}["unemployment_range"].passed is False
    u[(YEARS >= 45) & (YEARS <= 50)] = 0.06
    u[(YEARS >= 70) & (YEARS < 71)] = 0.2  # a year outside the window: the ordinary band holds
    assert {r.fact.name: r for r in measure(_run(u), spec, "shock")}["unemployment_range"].passed is False


def test_the_crisis_window_comes_from_the_scenario_s_events(tmp_path):
    import json

    u = np.full_like(YEARS, 0.06)
    u[(YEARS >= 45) & (YEARS <= 50)] = 0.2
    spec = _spec(tmp_path, 'warm_up = 10\n[variables]\nunemployment_rate = "unemployment_rate"\n')
    run = _run(u)
    assert {r.fact.name: r for r in measure(run, spec, "shock")}["unemployment_range"].passed is False
    run.attrs["scenario_events"] = json.dumps([{"name": "shock", "start": 45, "end": 48, "label": ""},
                                               {"name": "crisis", "start": 45, "end": 60, "label": ""}])
    assert {r.fact.name: r for r in measure(run, spec, "shock")}["unemployment_range"].passed is True
    # facts.toml's own window wins over the scenario's.
    spec = _spec(tmp_path, 'warm_up = 10\n[variables]\nunemployment_rate = "unemployment_rate"\n'
                           '[scenarios.shock]\ncrisis = [70, 80]\n')
    assert {r.fact.name: r for r in measure(run, spec, "shock")}["unemployment_range"].passed is False


def test_warm_up_is_left_out(tmp_path):
    u = np.full_like(YEARS, 0.06)
    u[YEARS < 10] = 0.5
    spec = _spec(tmp_path, 'warm_up = 10\n[variables]\nunemployment_rate = "unemployment_rate"\n')
    assert {r.fact.name: r for r in measure(_run(u), spec)}["unemployment_range"].value == (0.06, 0.06)


def test_known_failures_are_a_ratchet(tmp_path):
    spec = _spec(tmp_path, '[variables]\nunemployment_rate = "unemployment_rate"\n'
                           '[known_failures.run]\nunemployment_range = "slumps too deep"\n')
    deep = {"run": measure(_run(0.06 + 0.1 * np.sin(YEARS)), spec)}
    assert unexpected(deep, spec) == []
    fine = {"run": measure(_run(0.06 + 0.02 * np.sin(YEARS)), spec)}
    assert unexpected(fine, spec) == [("run", "unemployment_range", "now passes: take it off known_failures")]
    bare = _spec(tmp_path, '[variables]\nunemployment_rate = "unemployment_rate"\n')
    assert unexpected(deep, bare) == [("run", "unemployment_range", "fails")]


def test_a_level_given_by_its_growth_rate_is_rebuilt_from_it(tmp_path):
    # Output exp(0.03 t + 0.05 sin t) falls where 0.03 + 0.05 cos t < 0; given as that
    # rate instead (a model in ratio form), every fact on output reads the same.
    time = np.arange(0, 100.001, 0.1)
    run = xr.Dataset({"output": ("time", 7.0 * np.exp(0.03 * time + 0.05 * np.sin(time))),
                      "g": ("time", 0.03 + 0.05 * np.cos(time))}, coords={"time": time})
    level = {r.fact.name: r for r in measure(run, _spec(tmp_path, '[variables]\noutput = "output"\n'))}
    rate = {r.fact.name: r for r in measure(run, _spec(tmp_path, '[variables]\noutput = { growth_rate = "g" }\n'))}
    assert rate["growth"].value == pytest.approx(level["growth"].value, rel=1e-4)
    assert rate["growth"].value == pytest.approx(0.03, rel=0.02)
    assert rate["output_declines"].value == level["output_declines"].value > 0.2


def test_a_rate_that_goes_non_finite_fails_the_facts_on_its_level(tmp_path):
    # Not "0 declines" nor "no cycle": the level is undefined from the first NaN on.
    time = np.arange(0, 100.001, 0.1)
    rate = 0.03 + 0.05 * np.cos(time)
    rate[600] = np.nan
    run = xr.Dataset({"g": ("time", rate)}, coords={"time": time})
    results = {r.fact.name: r for r in measure(run, _spec(tmp_path, '[variables]\noutput = { growth_rate = "g" }\n'))}
    for name in ("growth", "output_declines"):
        assert results[name].passed is False and math.isnan(results[name].value), name
        assert results[name].text() == "nan"


def test_values_print_with_enough_digits_to_land_on_their_side_of_the_band(facts):
    from calibration.facts import FactResult

    cycle = facts["cycle_length"]
    assert FactResult(cycle, 11.0125, False, (4.0, 11.0)).text() == "11.01"
    assert FactResult(cycle, 10.2, True, (4.0, 11.0)).text() == "10.2"
    assert FactResult(cycle, 11.0, True, (4.0, 11.0)).text() == "11"  # on the edge is inside
    ranged = facts["unemployment_range"]
    assert FactResult(ranged, (0.0269, 0.12004), False, (0.02, 0.12)).text() == "0.0269 to 0.12004"
    # In a crisis window the value inside is judged against the crisis band (0.25 here).
    inside = FactResult(ranged, (0.03, 0.25004), False, (0.02, 0.12),
                        (((0.03, 0.1), (0.02, 0.12)), ((0.05, 0.25004), (0.0, 0.25))))
    # Both parts print, so a reader sees which one a verdict is about.
    assert inside.text() == "0.03 to 0.1; crisis 0.05 to 0.25004"
    outside = FactResult(ranged, (0.03, 0.2), False, (0.02, 0.12),
                         (((0.03, 0.12004), (0.02, 0.12)), ((0.03, 0.2), (0.0, 0.25))))
    assert outside.text() == "0.03 to 0.12004; crisis 0.03 to 0.2"


def test_a_ratio_form_model_s_rates_give_the_facts_of_its_levels(tmp_path):
    # Keen's model saves both the levels and their growth rates: judged either way, its
    # facts on output and the real wage agree to integration error, once SAVEPER resolves
    # the rate (at the scenario's 0.25 the boom's spike of wage growth is undersampled:
    # its fastest annual growth reads 0.195 from the rate against 0.213).
    from pysd_runner import compile_model, run

    model = compile_model(MODELS / "keen" / "keen.mdl")
    ds = run(model, scenario="boom_bust", saveper=1 / 16,
             variables=["output", "wage_rate", "output_growth_rate", "wage_growth_rate"])
    by_level = _spec(tmp_path, 'warm_up = 20\n[variables]\noutput = "output"\nreal_wage = "wage rate"\n')
    by_rate = _spec(tmp_path, 'warm_up = 20\n[variables]\noutput = { growth_rate = "output growth rate" }\n'
                              'real_wage = { growth_rate = "wage growth rate" }\n')
    assert by_rate.growth_rates == {"output", "real_wage"}
    level = {r.fact.name: r for r in measure(ds, by_level, "boom_bust")}
    rate = {r.fact.name: r for r in measure(ds, by_rate, "boom_bust")}
    for name in ("growth", "output_declines", "real_wage_growth_range"):
        assert level[name].passed is not None
        scale = np.max(np.abs(level[name].value))
        assert np.allclose(rate[name].value, level[name].value, rtol=1e-3, atol=1e-3 * scale), name


@pytest.mark.parametrize("text, fragment", [
    ("warm_up = -1\n", "warm_up must be a non-negative number"),
    ("warmup = 10\n", "unknown key 'warmup'. Did you mean 'warm_up'?"),
    ('[variables]\nunemployment = "u"\n', "unknown concept 'unemployment'"),
    ("[variables]\noutput = 3\n", "[variables] output must be a variable name"),
    ('[variables]\noutput = { rate = "g" }\n', "output has unknown key 'rate'. Allowed: growth_rate"),
    ('[variables]\noutput = { growth_rate = "g", at = 1 }\n', "output has unknown key 'at'"),
    ('[variables]\noutput = ""\n', 'or { growth_rate = "<variable>" } for a level'),
    ('[variables]\nreal_wage = { growth_rate = "" }\n', "[variables] real_wage must be a variable name, or"),
    ('[variables]\nunemployment_rate = { growth_rate = "g" }\n', "only output and real_wage may be given"),
    ("[scenarios.s]\ncrisis = [60, 45]\n", "needs crisis = [start, end] with start < end"),
    ('[known_failures.s]\ngrowht = "x"\n', "names unknown fact 'growht'. Did you mean 'growth'?"),
    ('[known_failures.s]\ngrowth = ""\n', "growth needs the evidence"),
    ("warm_up = [\n", "is not valid TOML"),
    ("[histories]\nspacing = 11\n", "[histories] parameter must name the model constant"),
    ('[histories]\nparameter = "seed"\nspacing = 0\n', "[histories] spacing must be a positive number"),
    ('[histories]\nparameter = "seed"\nstep = 2\n', "[histories] takes parameter ="),
])
def test_bad_facts_files_are_named_with_what_is_allowed(tmp_path, text, fragment):
    with pytest.raises(SpecError) as info:
        _spec(tmp_path, text)
    assert fragment in str(info.value) and "facts.toml" in str(info.value)


# --------------------------------------------------------------------------- many histories

def _histories_spec(tmp_path, histories='[histories]\nparameter = "demand noise realisation"\nspacing = 11\n'):
    shipped = (REFORMISM.parent / "facts.toml").read_text().split("[histories]")[0]
    return _spec(tmp_path, shipped + histories)


def test_histories_agree_with_separate_runs_of_each_history(tmp_path):
    # The ensemble over histories against one scalar run per history: the same shares and
    # medians. militant_minority fails its unemployment fact in history 0 (the shipped run).
    from pysd_runner import compile_model, run

    spec = _histories_spec(tmp_path)
    model = compile_model(REFORMISM)
    variables = sorted({model.resolve(v).py_name for v in spec.variables.values()})
    count = 4
    many = judge_histories(model, ["militant_minority"], spec, count)["militant_minority"]
    runs = [measure(run(model, scenario="militant_minority", variables=variables,
                        params={"demand noise realisation": 11.0 * i}), spec, "militant_minority")
            for i in range(count)]
    for j, row in enumerate(many):
        assert row.count == count
        assert row.share == pytest.approx(np.mean([r[j].passed for r in runs])), row.fact.name
        values = [r[j].value for r in runs]
        if isinstance(values[0], tuple):
            expected = (np.median([v[0] for v in values]), np.median([v[1] for v in values]))
            assert row.median == pytest.approx(expected, rel=1e-9, abs=1e-12), row.fact.name
        else:
            assert row.median == pytest.approx(np.median(values), rel=1e-9, abs=1e-12), row.fact.name
    # One history is the shipped run itself.
    one = {r.fact.name: r for r in judge_histories(model, ["militant_minority"], spec, 1)["militant_minority"]}
    shipped = {r.fact.name: r for r in runs[0]}
    assert one["unemployment_range"].share == 0.0 and shipped["unemployment_range"].passed is False
    assert one["growth"].median == pytest.approx(shipped["growth"].value, rel=1e-9)


def test_histories_table_gives_share_and_median_and_not_applicable(tmp_path):
    spec = _spec(tmp_path, '[variables]\nunemployment_rate = "unemployment rate"\n'
                           '[histories]\nparameter = "demand noise realisation"\nspacing = 11\n')
    results = judge_histories(REFORMISM, ["baseline"], spec, 3)
    rows = {r.fact.name: r for r in results["baseline"]}
    assert rows["growth"].share is None and rows["growth"].text() == "n/a"
    assert 0.0 <= rows["unemployment_range"].share <= 1.0
    lines = histories_table(results, markdown=True)
    assert lines[0] == "Share of 3 histories meeting each fact (median in brackets):"
    assert lines[2] == "| fact | band | baseline |"
    row = next(line for line in lines if line.startswith("| unemployment_range |"))
    low, high = rows["unemployment_range"].median
    assert f"% ({low:.3g} to {high:.3g}) |" in row


@pytest.mark.parametrize("histories, count, fragment", [
    ("", 3, "has no [histories] table"),
    ('[histories]\nparameter = "unemployment rate"\nspacing = 1\n', 3,
     "'unemployment rate' is not a constant (it is auxiliary)"),
    ('[histories]\nparameter = "demand noise realisaton"\nspacing = 1\n', 3, "demand noise realisaton"),
    ('[histories]\nparameter = "demand noise realisation"\nspacing = 11\n', 70,
     "need 'demand noise realisation' up to 759, above the top of its range [0, 700]: use at most 64"),
    ('[histories]\nparameter = "demand noise realisation"\nspacing = 11\n', 0, "positive whole number"),
])
def test_bad_histories_are_named_with_what_is_allowed(tmp_path, histories, count, fragment):
    spec = _histories_spec(tmp_path, histories)
    with pytest.raises(SpecError) as info:
        judge_histories(REFORMISM, ["baseline"], spec, count)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- the command

def test_facts_command_prints_the_table_and_fails_on_an_unlisted_failure(tmp_path):
    # A population that dies out: its "output" falls every year and shrinks 10% a year.
    spec = tmp_path / "facts.toml"
    spec.write_text('[variables]\noutput = "population"\n')
    result = CliRunner().invoke(main, ["facts", str(POPULATION), "--facts", str(spec), "--markdown"])
    assert result.exit_code == 1, result.output
    assert "| output_declines | 0.13 | 0.05 to 0.25 | PWT 10 rgdpna, US 1950-2019 | 1 FAIL |" in result.output
    assert "| unemployment_range | 0.0292 to 0.0971 | 0.02 to 0.12 | US unemployment 1948-2019 (BLS annual means in the catalogue) | n/a |" in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == ("Error: 2 fact(s) fail that facts.toml does not list "
                                                      "under [known_failures]")
    # Listed with their evidence, the same failures are expected and the command succeeds.
    spec.write_text(spec.read_text() + '[known_failures.run]\noutput_declines = "dies out"\n'
                                       'growth = "dies out"\n')
    result = CliRunner().invoke(main, ["facts", str(POPULATION), "--facts", str(spec)])
    assert result.exit_code == 0, result.output


def test_shipped_facts_file_holds_for_the_reformism_baseline():
    result = CliRunner().invoke(main, ["facts", str(REFORMISM), "-s", "baseline"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == ["fact", "data", "band", "baseline"]


def test_facts_command_names_a_missing_facts_file(tmp_path):
    result = CliRunner().invoke(main, ["facts", str(REFORMISM), "--facts", str(tmp_path / "none.toml")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output


def test_facts_command_judges_many_histories(tmp_path):
    result = CliRunner().invoke(main, ["facts", str(REFORMISM), "-s", "baseline", "--histories", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("Share of 2 histories meeting each fact (median in brackets):")
    assert lines[start + 1].split() == ["fact", "band", "baseline"]
    assert len(lines) - start - 2 == 9  # one row per fact
    result = CliRunner().invoke(main, ["facts", str(REFORMISM), "-s", "baseline", "--histories", "65"])
    assert result.exit_code == 1 and "use at most 64 histories" in result.output
    assert "Traceback" not in result.output
    assert "cycle_length" not in result.output  # refused before any scenario runs
