"""run_ensemble: every member equals the scalar run; fallbacks are named; bad input is clear."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pysd_runner import (
    ParameterError,
    VectorisationWarning,
    compile_model,
    load_result,
    run,
    run_ensemble,
    save,
)

from ..conftest import FIXTURES, MODELS
from ..tolerance import assert_close_to_scale

# Members and scalar runs execute the same floating-point operations in the same order,
# so they agree to rounding; 1e-10 relative is the acceptance bound of the issue.
RTOL = 1e-10


def _bounded_constants(model, exclude=()):
    return [
        e for e in model.constants
        if e.limits[0] is not None and e.limits[1] is not None and e.py_name not in exclude
    ]


def _random_samples(model, n, seed, exclude=()):
    rng = np.random.default_rng(seed)
    return {e.py_name: rng.uniform(*e.limits, n) for e in _bounded_constants(model, exclude)}


def assert_members_equal_scalar_runs(model, samples, ensemble, members, **kwargs):
    for i in members:
        single = run(model, {k: float(v[i]) for k, v in samples.items()}, errors="warn", engine="pysd", **kwargs)
        for name in single.data_vars:
            assert_close_to_scale(ensemble[name].isel(run=i).values, single[name].values, RTOL,
                                  err_msg=f"member {i}, variable {name}")


FIXTURE_CASES = {
    # fixture: constants that must stay fixed (a DELAY FIXED transit time sets the pipeline
    # length once, so it cannot differ between members; see the fallback test).
    "population.mdl": (),
    "decay.mdl": (),
    "smooth.mdl": (),
    "delay1.mdl": (),
    "if_then_else.mdl": (),
    "lookup.mdl": (),
    "step_ramp.mdl": (),
    "vector_functions.mdl": ("fixed_delay_time",),
}


#: Fixtures the compiled kernel does not translate (it names the element; "auto" then uses
#: the vectorised pass): DELAY FIXED keeps a pipeline whose length is set at run time.
NOT_COMPILED = {"vector_functions.mdl": "fixed delayed signal"}

ENGINE_CASES = [(f, e) for f in sorted(FIXTURE_CASES) for e in ("compiled", "vectorised")
                if not (e == "compiled" and f in NOT_COMPILED)]


@pytest.mark.filterwarnings("ignore:_hardcodedlookup")
@pytest.mark.parametrize("fixture,engine", ENGINE_CASES)
def test_fixture_members_equal_scalar_runs(fixture, engine):
    model = compile_model(FIXTURES / fixture)
    samples = _random_samples(model, 7, seed=3, exclude=FIXTURE_CASES[fixture])
    assert samples, "fixture has no bounded constants to vary"
    with warnings.catch_warnings():
        warnings.simplefilter("error", VectorisationWarning)
        ensemble = run_ensemble(model, samples, engine=engine)
    assert ensemble.attrs["engine"] == engine
    assert_members_equal_scalar_runs(model, samples, ensemble, range(7))


@pytest.mark.parametrize("fixture", sorted(NOT_COMPILED))
def test_auto_engine_falls_back_to_vectorised_and_compiled_names_the_element(fixture):
    model = compile_model(FIXTURES / fixture)
    samples = _random_samples(model, 3, seed=3, exclude=FIXTURE_CASES[fixture])
    assert run_ensemble(model, samples).attrs["engine"] == "vectorised"
    with pytest.raises(ParameterError, match=f"cannot run on the compiled kernel: '{NOT_COMPILED[fixture]}'"):
        run_ensemble(model, samples, engine="compiled")


def test_unknown_engine_is_rejected():
    model = compile_model(FIXTURES / "decay.mdl")
    with pytest.raises(ParameterError, match="engine must be one of auto, compiled"):
        run_ensemble(model, {"tau": [1.0]}, engine="fast")


@pytest.mark.parametrize("engine", ["compiled", "vectorised"])
@pytest.mark.parametrize("mdl", sorted(p.relative_to(MODELS).as_posix() for p in MODELS.glob("*/*.mdl")))
def test_model_members_equal_scalar_runs(mdl, engine):
    model = compile_model(MODELS / mdl)
    # Keep members inside the middle of every range so that they stay finite and the check
    # compares numbers rather than NaNs; extreme ranges are the validation tests' job.
    rng = np.random.default_rng(11)
    samples = {}
    for e in _bounded_constants(model):
        lo, hi = e.limits
        centre = e.default if e.default is not None and lo <= e.default <= hi else (lo + hi) / 2
        width = 0.1 * (hi - lo)
        samples[e.py_name] = np.clip(centre + rng.uniform(-width, width, 4), lo, hi)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VectorisationWarning)
        ensemble = run_ensemble(model, samples, final_time=min(model.control["final_time"], 40), engine=engine)
    assert ensemble.attrs["engine"] == engine
    assert_members_equal_scalar_runs(model, samples, ensemble, [0, 3], final_time=min(model.control["final_time"], 40))


def test_dataset_contract_and_round_trip(tmp_path):
    model = compile_model(FIXTURES / "population.mdl")
    frame = pd.DataFrame({"growth rate": [0.1, 0.2, 0.3], "lifetime": [5.0, 6.0, 7.0]})
    ensemble = run_ensemble(model, frame, variables=["population"])
    assert dict(ensemble.sizes) == {"run": 3, "time": 11}
    np.testing.assert_array_equal(ensemble["growth_rate"], [0.1, 0.2, 0.3])
    assert ensemble["growth_rate"].attrs == {"units": "1/Year", "long_name": "growth rate"}
    assert ensemble["ok"].dtype == bool and ensemble["ok"].all()
    assert ensemble.attrs["n_members"] == 3 and ensemble.attrs["model_sha256"] == model.sha256
    xr.testing.assert_identical(load_result(save(ensemble, tmp_path / "e.nc")), ensemble)


def test_mapping_and_dataset_samples_agree():
    model = compile_model(FIXTURES / "population.mdl")
    values = np.array([0.1, 0.5])
    a = run_ensemble(model, {"growth_rate": values})
    b = run_ensemble(model, xr.Dataset({"growth rate": ("member", values)}))
    xr.testing.assert_equal(a["population"], b["population"])


def test_non_finite_members_do_not_poison_the_others(blowup):
    model = blowup
    ensemble = run_ensemble(model, {"rate": [0.01, 100.0, 0.02]})
    np.testing.assert_array_equal(ensemble["ok"], [True, False, True])
    for i, rate in [(0, 0.01), (2, 0.02)]:
        np.testing.assert_allclose(ensemble["x"].isel(run=i), run(model, {"rate": rate})["x"], rtol=RTOL)
    assert ensemble.attrs["n_ok"] == 2


@pytest.mark.filterwarnings("ignore:_hardcodedlookup")
def test_function_that_cannot_vectorise_is_named_and_results_stay_equal():
    model = compile_model(FIXTURES / "not_vectorisable.mdl")
    samples = _random_samples(model, 3, seed=5, exclude=("fixed_delay_time",))
    with pytest.warns(VectorisationWarning, match=r"'rounded' cannot run on member arrays"):
        ensemble = run_ensemble(model, samples)
    assert ensemble.attrs["engine"] == "member-by-member"
    assert_members_equal_scalar_runs(model, samples, ensemble, range(3))


@pytest.mark.filterwarnings("ignore:_hardcodedlookup")
def test_varied_pipeline_delay_time_falls_back_by_name():
    model = compile_model(FIXTURES / "vector_functions.mdl")
    samples = {"fixed delay time": [1.0, 2.0, 3.0]}
    with pytest.warns(VectorisationWarning, match="cannot run on member arrays"):
        ensemble = run_ensemble(model, samples)
    assert_members_equal_scalar_runs(model, samples, ensemble, range(3))


SUBSCRIPTED = """{UTF-8}
region: north, south
	~	~	Two regions.
	|
people[region] = INTEG(people[region] * rate[region] * multiplier, 10)
	~	Person
	~	People in each region.
	|
rate[region] = 0.1, 0.2
	~	1/Year
	~	Growth rate per region.
	|
multiplier = 1
	~	Dmnl [0,2]
	~	Scales every region's growth.
	|
FINAL TIME = 4 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 1 ~ Year ~ Step. |
"""


def test_subscripted_models_run_member_by_member_with_a_warning(tmp_path):
    # Two members and two regions: broadcasting member arrays against the region dim would
    # silently align them, so the engine must refuse to vectorise.
    path = tmp_path / "regions.mdl"
    path.write_text(SUBSCRIPTED)
    model = compile_model(path)
    with pytest.warns(VectorisationWarning, match=r"'people' subscripted over region"):
        ensemble = run_ensemble(model, {"multiplier": [0.5, 1.5]}, variables=["people"])
    assert ensemble.attrs["engine"] == "member-by-member"
    for i, m in enumerate([0.5, 1.5]):
        expected = 10 * (1 + np.array([0.1, 0.2]) * m) ** 4
        np.testing.assert_allclose(ensemble["people"].isel(run=i, time=-1), expected, rtol=1e-12)


def test_random_models_seed_members_from_children_of_the_seed(tmp_path):
    path = tmp_path / "noise.mdl"
    path.write_text("""{UTF-8}
noise = RANDOM UNIFORM(0, 1, 0) * scale
	~	Dmnl
	~	Uniform noise.
	|
scale = 1
	~	Dmnl [0,2]
	~	Noise amplitude.
	|
FINAL TIME = 3 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 1 ~ Year ~ Step. |
""")
    model = compile_model(path)
    with pytest.warns(VectorisationWarning, match="random numbers"):
        first = run_ensemble(model, {"scale": [1.0, 1.0]}, seed=0)
    with pytest.warns(VectorisationWarning):
        again = run_ensemble(model, {"scale": [1.0, 1.0]}, seed=0)
    xr.testing.assert_equal(first["noise"], again["noise"])
    assert not np.array_equal(first["noise"][0], first["noise"][1])  # members draw their own numbers
    child = int(np.random.SeedSequence(0).spawn(2)[1].generate_state(1)[0])
    np.testing.assert_array_equal(first["noise"][1], run(model, {"scale": 1.0}, seed=child)["noise"])


@pytest.mark.parametrize(
    "samples, pattern",
    [
        ({"growth rat": [0.1]}, r"unknown parameter 'growth rat'.*Did you mean 'growth rate'"),
        ({"births": [0.1]}, r"is a flow, not a parameter"),
        ({"growth rate": [0.1, 2.0, 3.0]}, r"2 of 3 samples of 'growth rate' are outside its Vensim range \[0, 1\] \(member 1 is 2\)"),
        ({}, r"samples are empty"),
        ({"growth rate": []}, r"samples are empty"),
        ({"growth rate": [[0.1, 0.2]]}, r"one value per member \(1-D\); got shape \(1, 2\)"),
        ({"growth rate": [0.1, 0.2], "lifetime": [5.0]}, r"'lifetime' has 1 values, the others 2"),
        ({"growth rate": [0.1, np.nan]}, r"must be finite; member 1 is nan"),
        ({"growth rate": ["a", "b"]}, r"must be numbers"),
        ([0.1, 0.2], r"samples must be a pandas DataFrame"),
    ],
)
def test_bad_samples_are_clear_errors(samples, pattern):
    model = compile_model(FIXTURES / "population.mdl")
    with pytest.raises(ParameterError, match=pattern):
        run_ensemble(model, samples)


def test_chunks_give_the_same_result():
    model = compile_model(FIXTURES / "decay.mdl")
    samples = _random_samples(model, 10, seed=8)
    whole = run_ensemble(model, samples)
    chunked = run_ensemble(model, samples, chunk_size=3)
    tiny_memory = run_ensemble(model, samples, max_bytes=1)
    for other in (chunked, tiny_memory):
        xr.testing.assert_identical(other.drop_attrs(), whole.drop_attrs())
    with pytest.raises(ParameterError, match="chunk_size must be a positive integer"):
        run_ensemble(model, samples, chunk_size=0)
