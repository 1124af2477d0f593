"""Plausible ranges (plausible.toml beside a model): runs and ensembles report members that
leave them, with the variable, the first time and the value, apart from non-finite members."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pysd_runner import ImplausibleWarning, ParameterError, compile_model, run, run_ensemble
from pysd_runner.cli import main
from pysd_runner.plausible import load_plausible

from ..conftest import FIXTURES, MODELS


@pytest.fixture()
def population(tmp_path):
    """population.mdl: P' = (growth rate - 1/lifetime) P from 100, with a plausible ceiling of 150."""
    shutil.copy(FIXTURES / "population.mdl", tmp_path / "population.mdl")
    (tmp_path / "plausible.toml").write_text(
        '[ranges]\n"Population" = { range = [0, 150], why = "the island holds 150" }\n')
    return tmp_path / "population.mdl"


def test_a_run_that_leaves_a_range_warns_with_variable_time_and_value(population):
    model = compile_model(population)
    with pytest.warns(ImplausibleWarning, match=r"Population 1\d\d\.?\d* at time \d") as record:
        ds = run(model, {"growth rate": 0.3}, variables=["births"])
    exits = json.loads(ds.attrs["implausible"])
    assert [e["variable"] for e in exits] == ["Population"] and exits[0]["range"] == [0, 150]
    # Population grows 10% a year: it first exceeds 150 at ln(1.5)/0.1 = 4.05 years, at the
    # first saved time past that (Euler at TIME STEP 0.25 is a little slower; SAVEPER is 1).
    assert np.log(1.5) / 0.1 <= exits[0]["time"] <= np.log(1.5) / 0.1 + 1.0
    assert exits[0]["value"] > 150
    assert "population" not in ds  # checked, though not asked for, and not added to the output
    assert "plausible.toml" in str(record[0].message)


def test_a_run_within_its_ranges_is_silent(population):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = run(compile_model(population), {"growth rate": 0.1})
    assert json.loads(ds.attrs["implausible"]) == []


def test_ensemble_reports_plausibility_apart_from_finiteness(population):
    model = compile_model(population)
    samples = pd.DataFrame({"growth_rate": [0.1, 0.3, 1.0]})
    ens = run_ensemble(model, samples, variables=["births"])
    np.testing.assert_array_equal(ens["ok"], [True, True, True])
    np.testing.assert_array_equal(ens["plausible"], [True, False, False])
    assert ens.attrs["n_plausible"] == 1 and ens.attrs["n_ok"] == 3
    assert ens["implausible"].values[0] == ""
    assert ens["implausible"].values[1].startswith("Population 1") and "(plausible 0 to 150)" in ens["implausible"].values[1]
    # The faster member leaves sooner.
    t1 = float(ens["implausible"].values[1].split(" at time ")[1].split()[0])
    t2 = float(ens["implausible"].values[2].split(" at time ")[1].split()[0])
    assert t2 < t1
    assert "population" not in ens and json.loads(ens["plausible"].attrs["ranges"]) == {"Population": [0, 150]}


def test_ensemble_command_counts_plausible_members(population, tmp_path):
    out = tmp_path / "ens.nc"
    result = CliRunner().invoke(main, ["ensemble", str(population), "--params", "growth rate", "--n", "20",
                                       "--seed", "1", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "within the plausible ranges of plausible.toml" in result.output
    assert "First exit of member" in result.output and "Population" in result.output


def test_models_without_a_file_have_no_ranges_and_no_new_variables():
    model = compile_model(FIXTURES / "decay.mdl")
    assert load_plausible(model) == []
    ens = run_ensemble(model, pd.DataFrame({next(iter(model.constants)).py_name: [1.0, 2.0]}))
    assert "plausible" not in ens and "n_plausible" not in ens.attrs


def test_shipped_ranges_name_real_variables():
    for folder in ("goodwin", "reformism"):
        ranges = load_plausible(compile_model(MODELS / folder / f"{folder}.mdl"))
        assert ranges and all(r.low < r.high for r in ranges)


@pytest.mark.parametrize("text, fragment", [
    ('[ranges]\n"Populaton" = [0, 1]\n', "Populaton"),
    ('[ranges]\n"Population" = [1, 0]\n', "needs [low, high] with low < high"),
    ('[ranges]\n"Population" = { rnage = [0, 1] }\n', "unknown key(s) rnage"),
    ('[range]\n', "unknown key 'range'. Did you mean 'ranges'?"),
    ('[ranges\n', "not valid TOML"),
])
def test_bad_plausible_files_say_what_is_wrong(population, text, fragment):
    (population.parent / "plausible.toml").write_text(text)
    with pytest.raises(ParameterError) as info:
        load_plausible(compile_model(population))
    assert fragment in str(info.value) and "plausible" in str(info.value)


def test_a_subscripted_variable_reports_the_element_furthest_outside():
    from pysd_runner.plausible import PlausibleRange, first_exits

    r = PlausibleRange("x", "x", 0.0, 1.0)
    times = np.array([0.0, 1.0, 2.0])
    values = np.array([[[0.5, 0.5], [1.2, -0.5], [3.0, 0.0]],   # both elements leave at t=1; -0.5 is further out
                       [[0.5, 0.5], [0.5, 0.5], [0.5, np.nan]]])  # non-finite is not an exit
    when, value = first_exits(times, values, r)
    assert when[0] == 1.0 and value[0] == -0.5
    assert np.isnan(when[1]) and np.isnan(value[1])
    # How far each member goes outside over the whole run, as a fraction of the width (3.0: 2 above 1).
    from pysd_runner.plausible import furthest_outside

    assert list(furthest_outside(values, r)) == [2.0, 0.0]
    assert list(furthest_outside(values, PlausibleRange("x", "x", 0.0, 4.0))) == [0.125, 0.0]  # -0.5 below 0
    assert furthest_outside(values, PlausibleRange("x", "x", -1.0, 1.0))[0] == pytest.approx(1.0)


def test_an_edited_plausible_file_is_read_again(population):
    model = compile_model(population)
    assert load_plausible(model)[0].high == 150
    (population.parent / "plausible.toml").write_text('[ranges]\n"Population" = [0, 1000.5]\n')
    assert load_plausible(model)[0].high == 1000.5
