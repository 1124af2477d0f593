"""The compiled kernel: the same numbers as PySD, named fallbacks, PySD's clock."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pysd_runner import ParameterError, SimulationError, compile_model, run, run_ensemble
from pysd_runner.kernel import clock_grid, kernel_blockers, kernel_for

from ..conftest import FIXTURES, MODELS
from ..tolerance import assert_close_to_scale

# The kernel evaluates PySD's own expressions in the same order with the same float
# operations; on the development machine the runs are bit-identical. The bound (the
# ensemble engine's acceptance bound) leaves room for a machine whose libm exp/log differ
# from numpy's in the last bit, which a long run can carry forward.
RTOL = 1e-10

MODEL_FILES = sorted(p.relative_to(MODELS).as_posix() for p in MODELS.glob("*/*.mdl"))
FIXTURE_FILES = ["population.mdl", "decay.mdl", "smooth.mdl", "delay1.mdl", "if_then_else.mdl", "lookup.mdl",
                 "step_ramp.mdl", "ishigami.mdl", "loops_smooth.mdl", "loops_logistic.mdl"]


def assert_same_run(a, b):
    assert list(a.data_vars) == list(b.data_vars)
    np.testing.assert_array_equal(a["time"].values, b["time"].values)
    for name in a.data_vars:
        assert_close_to_scale(a[name].values, b[name].values, RTOL, err_msg=name)
        assert a[name].attrs == b[name].attrs


@pytest.mark.filterwarnings("ignore:_hardcodedlookup")
@pytest.mark.parametrize("fixture", FIXTURE_FILES)
def test_fixture_runs_equal_pysd(fixture):
    model = compile_model(FIXTURES / fixture)
    compiled = run(model, engine="compiled")
    assert compiled.attrs["engine"] == "compiled"
    reference = run(model, engine="pysd")
    assert reference.attrs["engine"] == "pysd"
    assert_same_run(compiled, reference)


@pytest.mark.parametrize("mdl", MODEL_FILES)
def test_model_runs_equal_pysd_over_the_default_horizon(mdl):
    model = compile_model(MODELS / mdl)
    horizon = min(model.control["final_time"], 60.0)
    assert_same_run(run(model, final_time=horizon, engine="compiled"), run(model, final_time=horizon, engine="pysd"))


def test_scenario_with_a_time_series_policy_equals_pysd():
    model = compile_model(MODELS / "reformism" / "reformism.mdl")
    policy = {"tax rate on profits": {"time": [0, 10, 20], "value": [0.2, 0.35, 0.25]}}
    kwargs = dict(scenario="recession_austerity", final_time=40.0, variables=["welfare_spending_per_head", "legitimacy"])
    compiled = run(model, policy, engine="compiled", **kwargs)
    assert_same_run(compiled, run(model, policy, engine="pysd", **kwargs))
    # and the policy mattered
    plain = run(model, engine="compiled", **kwargs)
    assert not np.allclose(plain["welfare_spending_per_head"], compiled["welfare_spending_per_head"])


def test_auto_engine_uses_the_kernel_and_records_it():
    model = compile_model(MODELS / "goodwin" / "goodwin.mdl")
    assert run(model).attrs["engine"] == "compiled"
    assert run(model, knockout=["wage_share"]).attrs["engine"] == "compiled"
    assert run(model, engine="pysd").attrs["engine"] == "pysd"


def test_a_non_finite_run_is_repeated_under_pysd_which_names_the_element(blowup):
    model = blowup
    with pytest.raises(SimulationError, match="'x' became non-finite") as info:
        run(model, {"rate": 100.0})
    assert info.value.variable == "x"
    assert run(model, {"rate": 0.01}).attrs["engine"] == "compiled"


def test_what_the_kernel_cannot_translate_is_named():
    assert "'fixed delayed signal' uses DelayFixed" in kernel_blockers(compile_model(FIXTURES / "vector_functions.mdl"))
    assert "'Population' is subscripted" in kernel_blockers(compile_model(FIXTURES / "subscripted.mdl"))
    assert kernel_blockers(compile_model(FIXTURES / "delay1.mdl")) is None
    subscripted = compile_model(FIXTURES / "subscripted.mdl")
    with pytest.raises(ParameterError, match="cannot run on the compiled kernel: 'Population' is subscripted"):
        run(subscripted, engine="compiled")
    assert run(subscripted).attrs["engine"] == "pysd"


def test_a_delay_whose_order_pysd_lowers_runs_under_pysd_instead(tmp_path):
    path = tmp_path / "short_delay.mdl"
    path.write_text("""{UTF-8}
inflow = 1 + STEP(1, 2)
	~	Thing/Year
	~	A step in the input.
	|
delay time = 0.5
	~	Year [0.1, 10]
	~	Shorter than three time steps: PySD lowers DELAY3's order.
	|
delayed = DELAY3(inflow, delay time)
	~	Thing/Year
	~	The delayed input.
	|
FINAL TIME = 10 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 0.25 ~ Year ~ Step. |
""")
    model = compile_model(path)
    assert kernel_blockers(model) is None
    auto = run(model)
    assert auto.attrs["engine"] == "pysd"
    assert_same_run(auto, run(model, engine="pysd"))
    # A delay long enough for the full order runs compiled, with PySD's numbers.
    assert_same_run(run(model, {"delay time": 2.0}), run(model, {"delay time": 2.0}, engine="pysd"))
    assert run(model, {"delay time": 2.0}).attrs["engine"] == "compiled"
    # In an ensemble the chunk falls back to the vectorised pass.
    ensemble = run_ensemble(model, {"delay_time": [0.5, 2.0]})
    assert ensemble.attrs["engine"] == "vectorised"


@pytest.mark.parametrize("settings", [
    dict(initial_time=0.0, final_time=10.0, time_step=0.25, saveper=1.0),
    dict(initial_time=1950.0, final_time=2019.0, time_step=1 / 64, saveper=0.25),
    dict(initial_time=0.0, final_time=10.0, time_step=0.3, saveper=0.9),
    dict(initial_time=0.0, final_time=1.0, time_step=0.1, saveper=0.1),
])
def test_clock_grid_saves_the_times_pysd_saves(settings):
    model = compile_model(FIXTURES / "decay.mdl")
    reference = run(model, engine="pysd", **{k: v for k, v in settings.items() if k != "initial_time"}
                    ) if settings["initial_time"] == 0 else None
    _, record, saved = clock_grid(settings)
    if reference is not None:
        np.testing.assert_array_equal(saved, reference["time"].values)
    assert saved[0] == settings["initial_time"]
    assert record.sum() == len(saved)


def test_kernel_is_cached_per_process_and_on_disk():
    model = compile_model(MODELS / "goodwin" / "goodwin.mdl")
    first = kernel_for(model)
    assert kernel_for(model) is first
    files = list(model.py_file.parent.glob("kernel_*.py"))
    assert files, "the generated kernel is written beside the translation"
    assert list(model.py_file.parent.glob("__pycache__/kernel_*.nbi")), "numba's machine-code index is on disk"


@pytest.mark.parametrize("mdl,knockout", [
    ("goodwin/goodwin.mdl", ["wage_share"]),
    ("goodwin/goodwin.mdl", [{"source": "wage share", "value": 0.6}]),
    ("reformism/reformism.mdl", [("output", "profits")]),
    ("reformism/reformism.mdl", [("potential output", "output"), "legitimacy"]),
])
def test_knock_outs_run_compiled_with_pysds_numbers_and_held_values(mdl, knockout):
    model = compile_model(MODELS / mdl)
    horizon = min(model.control["final_time"], 60.0)
    compiled = run(model, final_time=horizon, knockout=knockout)
    assert compiled.attrs["engine"] == "compiled"
    reference = run(model, final_time=horizon, knockout=knockout, engine="pysd")
    assert_same_run(compiled, reference)
    held, expected = json.loads(compiled.attrs["knockout"]), json.loads(reference.attrs["knockout"])
    assert [(h["source"], h["target"]) for h in held] == [(h["source"], h["target"]) for h in expected]
    np.testing.assert_allclose([h["value"] for h in held], [h["value"] for h in expected], rtol=RTOL)
    # And the knock-out changed the run.
    plain = run(model, final_time=horizon)
    assert any(not np.allclose(plain[v], compiled[v]) for v in compiled.data_vars)


def test_a_knock_out_of_a_link_that_does_not_exist_is_refused_as_before():
    model = compile_model(MODELS / "goodwin" / "goodwin.mdl")
    with pytest.raises(ParameterError):
        run(model, knockout=[("capital_output_ratio", "wage_share")])


def test_the_kernels_interp_is_numpys_bit_for_bit():
    # Generated modules route lookups to an allocation-free _interp (numba's np.interp
    # allocates two arrays per call). Same arithmetic as numpy's: equal, not just close,
    # including the ends, the table's own points, repeated x values and NaN.
    from numba import njit

    from pysd_runner.kernel_codegen import HELPERS, SMALL_VENSIM, numba_source

    namespace = {"np": np, "njit": njit, "SMALL_VENSIM": SMALL_VENSIM}
    exec(HELPERS.replace("cache=True", "cache=False"), namespace)  # no file to cache to
    interp = namespace["_interp"]
    rng = np.random.default_rng(3)
    tables = [
        (np.array([0.0]), np.array([2.5])),
        (np.array([0.0, 1.0]), np.array([1.0, -1.0])),
        (np.array([0.0, 1.0, 1.0, 2.0, 3.5]), np.array([0.0, 1.0, 3.0, 3.0, -2.0])),
        (np.sort(rng.uniform(-5, 5, 1001)), rng.standard_normal(1001)),
    ]
    for xs, ys in tables:
        points = np.concatenate([rng.uniform(xs[0] - 2, xs[-1] + 2, 500), xs, [np.nan, np.inf, -np.inf]])
        got = np.array([interp(x, xs, ys) for x in points])
        np.testing.assert_array_equal(got, np.interp(points, xs, ys))
    assert numba_source("y = np.interp(x, A, B)") == "y = _interp(x, A, B)"
