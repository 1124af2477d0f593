"""The JavaScript engine (pysd_runner.javascript) under Node equals the compiled kernel.

Every shipped model under every scenario, with and without knock-outs, a time-series
policy, the kernel's fixtures and PySD's clock, to 1e-9 of each series' scale (the issue's
bar; the two engines run the same statements, so they agree to rounding). The peer suite's
models are checked in tests/peer/test_peer_suite.py.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from pysd_runner import compile_model
from pysd_runner.inputs import merged_params, time_settings
from pysd_runner.javascript import web_engine
from pysd_runner.kernel import KernelUnsupported, clock_grid, kernel_for
from pysd_runner.scenarios import list_scenarios, load_scenario

from ..conftest import FIXTURES, MODELS
from ..node import run_engines
from ..tolerance import assert_close_to_scale

RTOL = 1e-9
MODEL_FILES = sorted(p.relative_to(MODELS).as_posix() for p in MODELS.glob("*/*.mdl"))
FIXTURE_FILES = ["population.mdl", "decay.mdl", "smooth.mdl", "delay1.mdl", "if_then_else.mdl", "lookup.mdl",
                 "step_ramp.mdl", "ishigami.mdl", "loops_smooth.mdl", "loops_logistic.mdl"]


def named_links(model) -> list[tuple[str, str]]:
    """One link per named loop of the model's loops.toml: its first variable -> the second."""
    path = model.source.parent / "loops.toml"
    if not path.is_file():
        return []
    links = []
    for key, entry in tomllib.loads(path.read_text()).items():
        if key == "exclude":  # loops left out of dominance, not named loops
            continue
        names = entry["variables"]
        link = (model.resolve(names[0]).py_name, model.resolve(names[1]).py_name)
        if link not in links:
            links.append(link)
    return links


def inputs(kernel, params):
    """Kernel inputs (fixed) and the JavaScript options (constants, series) for merged params."""
    slot = {name: i for i, name in enumerate(kernel.constants)}
    constants = kernel.defaults.copy()
    series = []
    for name, value in params.items():
        if isinstance(value, tuple):
            series.append([slot[name], [float(x) for x in value[0]], [float(y) for y in value[1]]])
        else:
            constants[slot[name]] = float(value)
    return {"constants": [float(v) for v in constants], "series": series}


def assert_same(js, saved, values, names, what):
    np.testing.assert_array_equal(js["time"], saved, err_msg=f"{what}: save times")
    for name in names:
        assert_close_to_scale(js["values"][name], values[name][0], RTOL, err_msg=f"{what}: '{name}'")


@pytest.mark.parametrize("mdl", MODEL_FILES)
def test_every_scenario_and_knock_out_equals_the_kernel(mdl, tmp_path):
    model = compile_model(MODELS / mdl)
    links = named_links(model)
    assert links, f"{mdl}: no named loops to switch"
    engine = web_engine(model, links)
    kernel = kernel_for(model)
    names = kernel.recordable
    cases, expected = [], []
    for scenario in [None, *list_scenarios(model)]:
        scen = load_scenario(scenario, model) if scenario else None
        params = merged_params(model, scen, None, True)
        settings = time_settings(model, scen, params)
        fixed = {k: v for k, v in params.items()}
        saved, values, ok, _ = kernel.run({}, 1, fixed, settings, names)
        options = {**inputs(kernel, params), **{k: float(settings[k]) for k in
                                                 ("initial_time", "final_time", "time_step", "saveper")}}
        cases.append({"engine": engine.source, "options": options})
        expected.append((scenario or "defaults", saved, values, bool(ok[0])))
    if links:
        # Every link cut at once, the source held at its initial value; and the first held at a given value.
        cut = kernel_for(model, knockouts=tuple(links))
        # 30 years: with every named loop of Goodwin cut (the squeeze and both self-links),
        # employment passes 1 and its conserved quantity (a log) is undefined from year 40.
        settings = time_settings(model, None, final_time=30.0)
        saved, values, ok, held = cut.run({}, 1, {}, settings, names)
        cases.append({"engine": engine.source, "options": {"cut": [1] * len(links), "final_time": 30.0}})
        expected.append(("every link cut", saved, values, bool(ok[0])))
        one = kernel_for(model, knockouts=(links[0],))
        value = float(held[0, 0]) * 0.9 + 0.01
        saved, values, ok, _ = one.run({}, 1, {}, settings, names, held=[value])
        cases.append({"engine": engine.source,
                      "options": {"cut": [1] + [0] * (len(links) - 1), "held": [value] + [None] * (len(links) - 1),
                                  "final_time": 30.0}})
        expected.append((f"{links[0]} held at {value:.4g}", saved, values, bool(ok[0])))
    results = run_engines(cases, tmp_path)
    for (what, saved, values, ok), js in zip(expected, results):
        assert ok, f"{mdl} {what}: the kernel run went non-finite"
        assert js["bad"] is None and not js["redo"], f"{mdl} {what}: {js['bad']}"
        assert_same(js, saved, values, names, f"{mdl} {what}")
    if links:
        moved = [n for n in names if not np.allclose(results[-2]["values"][n],
                                                     results[0]["values"][n][: len(results[-2]["values"][n])])]
        assert moved, f"{mdl}: cutting every named loop changed nothing"


def test_a_time_series_policy_equals_the_kernel(tmp_path):
    model = compile_model(MODELS / "reformism" / "reformism.mdl")
    kernel = kernel_for(model)
    scen = load_scenario("recession_austerity", model)
    policy = {"tax rate on profits": {"time": [0, 10, 20], "value": [0.2, 0.35, 0.25]}}
    params = merged_params(model, scen, policy, True)
    settings = time_settings(model, scen, params, final_time=40.0)
    names = ["welfare_spending_per_head", "legitimacy", "tax_rate_on_profits"]
    saved, values, _, _ = kernel.run({}, 1, params, settings, names)
    options = {**inputs(kernel, params), "final_time": 40.0, "time_step": settings["time_step"],
               "saveper": settings["saveper"]}
    (js,) = run_engines([{"engine": web_engine(model).source, "options": options, "want": names}], tmp_path)
    assert_same(js, saved, values, names, "policy")
    assert np.ptp(js["values"]["tax_rate_on_profits"]) > 0.1, "the policy moved the tax rate"


@pytest.mark.parametrize("fixture", FIXTURE_FILES)
def test_fixtures_equal_the_kernel(fixture, tmp_path):
    model = compile_model(FIXTURES / fixture)
    kernel = kernel_for(model)
    settings = time_settings(model, None)
    saved, values, _, _ = kernel.run({}, 1, {}, settings, kernel.recordable)
    (js,) = run_engines([{"engine": web_engine(model).source}], tmp_path)
    assert_same(js, saved, values, kernel.recordable, fixture)


@pytest.mark.parametrize("settings", [
    (0.0, 10.0, 0.1, 0.1), (0.0, 1.0, 1 / 3, 2 / 3), (1950.0, 2020.0, 0.25, 1.0), (0.0, 100.0, 1 / 1024, 0.25),
    (2.0, 3.0, 0.3, 0.3), (0.0, 5.0, 0.0625, 0.5),
])
def test_pysds_clock_gives_the_same_save_times(settings, tmp_path):
    model = compile_model(FIXTURES / "decay.mdl")
    t0, tf, dt, saveper = settings
    expected = clock_grid({"initial_time": t0, "final_time": tf, "time_step": dt, "saveper": saveper})[2]
    options = {"initial_time": t0, "final_time": tf, "time_step": dt, "saveper": saveper}
    (js,) = run_engines([{"engine": web_engine(model).source, "options": options, "want": []}], tmp_path)
    np.testing.assert_array_equal(js["time"], expected)


def test_a_non_finite_run_names_the_first_variable_and_time(blowup, tmp_path):
    kernel = kernel_for(blowup)
    settings = time_settings(blowup, None)
    slot = kernel.constants.index("rate")
    saved, values, ok, _ = kernel.run({"rate": np.array([2.0])}, 1, {}, settings, kernel.recordable)
    assert not ok[0]
    first = min(int(np.flatnonzero(~np.isfinite(values[n][0]))[0]) for n in kernel.recordable
                if not np.isfinite(values[n][0]).all())
    constants = [float(v) for v in kernel.defaults]
    constants[slot] = 2.0
    (js,) = run_engines([{"engine": web_engine(blowup).source, "options": {"constants": constants}}], tmp_path)
    assert js["bad"] is not None
    assert js["bad"]["time"] == saved[first]
    assert not np.isfinite(values[js["bad"]["name"]][0][first])


def test_what_javascript_cannot_take_is_named_by_element():
    with pytest.raises(KernelUnsupported, match="'Population' is subscripted"):
        web_engine(compile_model(FIXTURES / "subscripted.mdl"))
    with pytest.raises(KernelUnsupported, match="'fixed delayed signal' uses DelayFixed"):
        web_engine(compile_model(FIXTURES / "vector_functions.mdl"))
