"""Scenario files: lookup by name or path, validation, and their effect on runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pysd_runner import ScenarioError, list_scenarios, load_scenario, run, run_scenarios

from ..conftest import MODELS
from ..tolerance import assert_close_to_scale


@pytest.fixture()
def scenario_model(tmp_path):
    """A copy of the population fixture with a scenarios/ folder of its own."""
    from pysd_runner import compile_model

    from ..conftest import FIXTURES

    folder = tmp_path / "population"
    (folder / "scenarios").mkdir(parents=True)
    (folder / "population.mdl").write_text((FIXTURES / "population.mdl").read_text())
    (folder / "scenarios" / "fast.toml").write_text(
        'description = "Fast growth."\n[params]\n"growth rate" = 0.4\n[time]\nfinal_time = 5\n'
    )
    (folder / "scenarios" / "policy.toml").write_text(
        'description = "Births stop at year 2."\n'
        '[policies]\n"growth rate" = { time = [0, 2, 2.25], value = [0.1, 0.1, 0.0] }\n'
    )
    return compile_model(folder / "population.mdl")


def test_scenario_by_name_and_by_path(scenario_model):
    by_name = load_scenario("fast", scenario_model)
    by_path = load_scenario(scenario_model.scenario_dir / "fast.toml")
    assert by_name == by_path
    assert by_name.description == "Fast growth."
    assert by_name.params == {"growth rate": 0.4} and by_name.time == {"final_time": 5.0}
    assert list_scenarios(scenario_model) == ["fast", "policy"]


def test_scenario_changes_the_run_and_explicit_params_win(scenario_model):
    fast = run(scenario_model, scenario="fast")
    assert fast["time"].values[-1] == 5.0 and fast.attrs["scenario"] == "fast"
    assert json.loads(fast.attrs["params"]) == {"growth_rate": 0.4}
    override = run(scenario_model, {"growth_rate": 0.2}, scenario="fast")
    assert json.loads(override.attrs["params"]) == {"growth_rate": 0.2}
    assert override["population"][-1] < fast["population"][-1]


def test_policy_scenario_is_time_varying(scenario_model):
    ds = run(scenario_model, scenario="policy", time_step=0.25, saveper=0.25)
    assert ds["births"].sel(time=1.0) > 0 and ds["births"].sel(time=3.0) == 0


def test_run_scenarios_stacks_along_scenario(scenario_model):
    ds = run_scenarios(scenario_model, ["fast", "policy"], final_time=5)
    assert ds.sizes["scenario"] == 2 and list(ds["scenario"].values) == ["fast", "policy"]
    assert list(ds["scenario_description"].values) == ["Fast growth.", "Births stop at year 2."]
    assert set(json.loads(ds.attrs["params"])) == {"fast", "policy"}
    single = run(scenario_model, scenario="fast")
    np.testing.assert_array_equal(ds["population"].sel(scenario="fast"), single["population"])


def test_run_scenarios_rejects_different_time_axes(scenario_model):
    with pytest.raises(ScenarioError, match="different time axis"):
        run_scenarios(scenario_model, ["fast", "policy"])


def test_unknown_scenario_lists_the_available_ones(scenario_model):
    with pytest.raises(ScenarioError, match=r"unknown scenario 'fastt'.*Did you mean 'fast'.*Available scenarios: fast, policy"):
        run(scenario_model, scenario="fastt")


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ScenarioError, match=r"scenario file '.*nope\.toml' does not exist"):
        load_scenario(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('description = "x"\n[params\n', r"is not valid TOML: .*line 2"),
        ('descripton = "x"\n', r"unknown key 'descripton'. Did you mean 'description'"),
        ('[params]\n"growth rate" = "fast"\n', r"params.'growth rate' must be a number; got 'fast'"),
        ('[params]\n"growth rate" = nan\n', r"must be finite"),
        ('[time]\nfinal_tme = 3\n', r"unknown time setting 'final_tme'. Did you mean 'final_time'"),
        ('[time]\ntime_step = -1\n', r"time.time_step must be positive"),
        ('[policies]\nx = { time = [0, 1], value = [1] }\n', r"non-empty lists of equal length"),
        ('[policies]\nx = { time = [1, 0], value = [1, 2] }\n', r"strictly increasing"),
        ('[policies]\nx = 3\n', r"exactly the keys 'time' and 'value'"),
        ('description = 3\n', r"'description' must be a string"),
        ('[events]\nshock = [48, 45]\n', r"events.'shock': the window ends \(45\) before it starts \(48\)"),
        ('[events]\nshock = { at = 45, from = 45, to = 48 }\n', r"give either 'at' \(a moment\) or 'from' and 'to'"),
        ('[events]\nshock = { when = 45 }\n', r"events.'shock': unknown key 'when'"),
        ('[events]\nshock = { from = 45 }\n', r"needs 'at' \(a moment\) or 'from' and 'to'"),
        ('[events]\nshock = "soon"\n', r"events.'shock' must be a number; got 'soon'"),
        ('[events]\nshock = [1, 2, 3]\n', r"must be a time or a pair \[start, end\]"),
        ('events = 3\n', r"'events' must be a table"),
    ],
)
def test_malformed_scenarios_are_clear_errors(tmp_path, text, pattern):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=pattern) as info:
        load_scenario(path)
    assert "bad.toml" in str(info.value)


def test_unknown_parameter_in_scenario_names_file_and_suggests(scenario_model, tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[params]\n"growth rat" = 0.3\n')
    with pytest.raises(ScenarioError, match=r"typo\.toml.*unknown parameter 'growth rat'.*Did you mean 'growth rate'"):
        run(scenario_model, scenario=path)
    path.write_text('[params]\n"growth rate" = 3\n')
    with pytest.raises(ScenarioError, match=r"typo\.toml.*outside its Vensim range"):
        run(scenario_model, scenario=path)


def test_shipped_scenarios_are_valid():
    """Every scenario file shipped with a model loads and names only the model's constants."""
    from pysd_runner import compile_model

    checked = 0
    for mdl in sorted(MODELS.glob("*/*.mdl")):
        model = compile_model(mdl)
        for name in list_scenarios(model):
            scenario = load_scenario(name, model)
            assert scenario.description, f"{mdl.parent.name}/{name} has no description"
            for key in list(scenario.params) + list(scenario.policies):
                model.resolve(key, kinds=("constant",), role="parameter")
            checked += 1
    assert checked >= 3


def test_scenarios_run_as_one_vectorised_ensemble_with_the_same_numbers():
    from pysd_runner import compile_model

    goodwin = compile_model(MODELS / "goodwin" / "goodwin.mdl")
    names = list_scenarios(goodwin)
    stacked = run_scenarios(goodwin, names, final_time=40)
    assert stacked.attrs["engine"] == "compiled"
    for name in names:
        single = run(goodwin, scenario=name, final_time=40)
        assert json.loads(stacked.attrs["params"])[name] == json.loads(single.attrs["params"])
        for variable in single.data_vars:
            assert_close_to_scale(stacked[variable].sel(scenario=name), single[variable], 1e-10,
                                  err_msg=f"{name}: {variable}")
            assert stacked[variable].attrs == single[variable].attrs


def test_scenarios_with_policies_run_one_by_one(scenario_model):
    ds = run_scenarios(scenario_model, ["fast", "policy"], final_time=5)
    # Run one by one (a policy is a time series), each on the compiled kernel.
    assert ds.attrs["engine"] == "compiled"
    assert list(ds["scenario"].values) == ["fast", "policy"]
    for name in ("fast", "policy"):
        single = run(scenario_model, scenario=name, final_time=5)
        for variable in single.data_vars:
            assert_close_to_scale(ds[variable].sel(scenario=name), single[variable], 1e-12, err_msg=f"{name}: {variable}")
    # The policy bites: births stop after year 2, and only deaths (a fifth a year) remain, so
    # the population falls faster than under births of 0.1 less deaths of 0.2.
    policy = ds["population"].sel(scenario="policy")
    before = float(policy.sel(time=1) / policy.sel(time=0))
    after = float(policy.sel(time=4) / policy.sel(time=3))
    assert 0.88 < before < 0.92 and 0.79 < after < 0.84, (before, after)
    assert float(ds["population"].sel(scenario="fast").isel(time=-1)) > float(policy.isel(time=-1))


def test_events_are_read_in_three_forms_and_carried_by_runs(scenario_model, tmp_path):
    path = tmp_path / "events.toml"
    path.write_text('[params]\n"growth rate" = 0.2\n[time]\nfinal_time = 5\n'
                    '[events]\nreform = 1\nshock = [2, 2.5]\ncrisis = { from = 2, to = 4, label = "the crisis" }\n')
    scenario = load_scenario(path)
    assert [(e.name, e.start, e.end, e.label) for e in scenario.events] == [
        ("reform", 1.0, 1.0, ""), ("shock", 2.0, 2.5, ""), ("crisis", 2.0, 4.0, "the crisis")]
    assert scenario.event("crisis").is_window and not scenario.event("reform").is_window
    assert scenario.event("nothing") is None
    single = run(scenario_model, scenario=path)
    assert json.loads(single.attrs["scenario_events"])[2] == {"name": "crisis", "start": 2.0, "end": 4.0,
                                                              "label": "the crisis"}
    stacked = run_scenarios(scenario_model, [path, "fast"])
    assert [len(json.loads(t)) for t in stacked["scenario_events"].values] == [3, 0]


def test_reformism_events_match_the_scenarios_own_parameters():
    """The declared reform and shock are where the scenario's constants put them."""
    from pysd_runner import compile_model

    model = compile_model(MODELS / "reformism" / "reformism.mdl")
    shocked = 0
    for name in list_scenarios(model):
        scenario = load_scenario(name, model)
        params = scenario.params
        if params.get("reform size", 0) > 0:
            assert scenario.event("reform").start == params["reform start year"], name
        if params.get("profitability shock size", 0) > 0:
            shock = scenario.event("shock")
            assert (shock.start, shock.end) == (params["shock start year"],
                                                params["shock start year"] + params["shock duration"]), name
            crisis = scenario.event("crisis")
            assert crisis.start == shock.start and crisis.end > shock.end, name
            shocked += 1
        else:
            assert scenario.event("shock") is None, name
    assert shocked == 4
