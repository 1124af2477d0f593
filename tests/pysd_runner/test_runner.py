"""run(): the Dataset contract, purity, parameters, time settings, non-finite results, seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pysd_runner import (
    NonFiniteWarning,
    ParameterError,
    SimulationError,
    compile_model,
    load_result,
    run,
    save,
)

from ..conftest import FIXTURES


def _without_clock(ds: xr.Dataset) -> xr.Dataset:
    """The creation time is the one attr that differs between two identical calls."""
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "created_utc"}
    return out


def test_dataset_contract(population):
    ds = run(population)
    assert list(ds.dims) == ["time"]
    assert sorted(ds.data_vars) == ["births", "deaths", "population"]
    assert ds["time"].attrs == {"units": "Year", "long_name": "Time"}
    np.testing.assert_array_equal(ds["time"], np.arange(0.0, 11.0))
    assert ds["population"].attrs == {"units": "Person", "long_name": "Population", "comment": "People alive."}
    for key in ("model_file", "model_sha256", "pysd_version", "toolkit_version", "params", "scenario",
                "seed", "created_utc", "time_step", "final_time", "saveper", "initial_time"):
        assert key in ds.attrs, key
    assert ds.attrs["model_sha256"] == population.sha256
    assert ds.attrs["toolkit_version"] not in ("", "unknown")


def test_values_follow_euler_by_hand(population):
    ds = run(population, time_step=0.25, saveper=0.25)
    net = 0.1 - 1 / 5
    expected = 100 * (1 + net * 0.25) ** np.arange(ds.sizes["time"])
    np.testing.assert_allclose(ds["population"], expected, rtol=1e-12)


def test_equal_to_pysd_own_run(population):
    """Driving PySD's loop directly must give PySD's numbers."""
    import pysd

    ours = run(population, {"growth rate": 0.15}, variables=["population", "births"])
    theirs = pysd.load(str(population.py_file)).run(
        params={"growth_rate": 0.15}, return_columns=["Population", "births"]
    )
    np.testing.assert_array_equal(ours["population"].values, theirs["Population"].values)
    np.testing.assert_array_equal(ours["births"].values, theirs["births"].values)


def test_runs_are_pure(population):
    first = run(population)
    changed = run(population, {"growth rate": 0.5, "lifetime": 2})
    again = run(population)
    assert not np.allclose(changed["population"], first["population"])
    xr.testing.assert_identical(_without_clock(first), _without_clock(again))


def test_time_series_parameter_is_a_policy(population):
    ds = run(population, {"growth rate": {"time": [0, 5, 5.25], "value": [0.2, 0.2, 0.0]}},
             time_step=0.25, saveper=0.25)
    births = ds["births"].to_series()
    # Before t = 5 births are 0.2 per person; from 5.25 on none.
    assert births.loc[4.0] == pytest.approx(0.2 * ds["population"].sel(time=4.0).item())
    assert births.loc[6.0] == 0.0
    params = json.loads(ds.attrs["params"])
    assert params["growth_rate"] == {"time": [0.0, 5.0, 5.25], "value": [0.2, 0.2, 0.0]}
    # A pandas Series and (time, value) pairs mean the same.
    series = run(population, {"growth_rate": pd.Series([0.2, 0.2, 0.0], index=[0, 5, 5.25])},
                 time_step=0.25, saveper=0.25)
    pairs = run(population, {"growth_rate": [(0, 0.2), (5, 0.2), (5.25, 0.0)]}, time_step=0.25, saveper=0.25)
    np.testing.assert_array_equal(series["population"], ds["population"])
    np.testing.assert_array_equal(pairs["population"], ds["population"])


def test_time_overrides(population):
    ds = run(population, final_time=4, time_step=0.5, saveper=2)
    np.testing.assert_array_equal(ds["time"], [0.0, 2.0, 4.0])
    assert (ds.attrs["final_time"], ds.attrs["time_step"], ds.attrs["saveper"]) == (4.0, 0.5, 2.0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"time_step": 0}, "time_step must be positive"),
        ({"final_time": -1}, "final_time must be after the initial time 0"),
        ({"saveper": 0.1}, r"saveper \(0.1\) must be at least the time step \(0.25\)"),
        ({"final_time": "soon"}, "final_time must be a number"),
    ],
)
def test_bad_time_settings(population, kwargs, pattern):
    with pytest.raises(ParameterError, match=pattern):
        run(population, **kwargs)


@pytest.mark.parametrize(
    "params, pattern",
    [
        ({"growth rat": 0.1}, r"unknown parameter 'growth rat'.*Did you mean 'growth rate'"),
        ({"lifetme": 3}, r"Did you mean 'lifetime'"),
        ({"births": 3}, r"'births' .* is a flow, not a parameter"),
        ({"growth rate": "fast"}, r"parameter 'growth rate' must be a number; got 'fast'"),
        ({"growth rate": True}, r"must be a number; got the boolean True"),
        ({"growth rate": float("nan")}, r"must be finite; got nan"),
        ({"growth rate": math.inf}, r"must be finite; got inf"),
        ({"growth rate": 1.5}, r"value 1.5 for 'growth rate' is outside its Vensim range \[0, 1\]"),
        ({"lifetime": 0.5}, r"outside its Vensim range \[1, 20\]"),
        ({"growth rate": {"time": [0, 5], "value": [0.1, 2.0]}}, r"value 2 for 'growth rate' is outside"),
        ({"growth rate": {"time": [5, 0], "value": [0.1, 0.2]}}, r"times must be strictly increasing"),
        ({"growth rate": object()}, r"must be a number or a time series"),
    ],
)
def test_bad_parameters_are_clear_errors(population, params, pattern):
    with pytest.raises(ParameterError, match=pattern):
        run(population, params)


def test_range_check_can_be_switched_off(population):
    ds = run(population, {"growth rate": 1.5}, check_ranges=False)
    assert ds["population"][-1] > ds["population"][0]


def test_python_and_vensim_names_are_equivalent(population):
    a = run(population, {"growth rate": 0.3})
    b = run(population, {"growth_rate": 0.3})
    c = run(population, {"Growth Rate": 0.3})
    np.testing.assert_array_equal(a["population"], b["population"])
    np.testing.assert_array_equal(a["population"], c["population"])


def test_variables_selection(population):
    ds = run(population, variables="Population, deaths")
    assert sorted(ds.data_vars) == ["deaths", "population"]
    with pytest.raises(ParameterError, match=r"unknown variable 'brths'.*Did you mean 'births'"):
        run(population, variables=["brths"])


NONFINITE = """{UTF-8}
x = INTEG(growth, 1)
	~	Thing
	~	A quantity that explodes once the rate turns on.
	|
growth = x * x * IF THEN ELSE(Time >= 2, 1e6, 0)
	~	Thing/Year
	~	Growth that overflows.
	|
ratio = 1 / (x - x)
	~	Dmnl
	~	Always a division by zero.
	|
FINAL TIME = 10 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 1 ~ Year ~ Step. |
"""


@pytest.fixture(scope="module")
def exploding(tmp_path_factory):
    path = tmp_path_factory.mktemp("nonfinite") / "explode.mdl"
    path.write_text(NONFINITE)
    return compile_model(path)


def test_non_finite_raises_with_first_time_and_variable(exploding):
    # By hand: x = 1 until t = 2, then x(t+1) = x + 1e6 x^2: 1e6, 1e18, 1e42, 1e90, 1e186,
    # then 1e378 overflows float64 at t = 8.
    with pytest.raises(SimulationError, match=r"'x' became non-finite \(infinite\) at time 8") as info:
        run(exploding, variables=["x"])
    assert (info.value.time, info.value.variable) == (8.0, "x")
    # 1 / (x - x) on Python floats raises instead of giving inf: named from the traceback.
    with pytest.raises(SimulationError, match=r"division by zero in 'ratio' at time 0"):
        run(exploding)


def test_non_finite_warns_and_returns_when_asked(exploding):
    with pytest.warns(NonFiniteWarning, match="'x' became non-finite"):
        ds = run(exploding, variables=["x"], errors="warn")
    assert ds["x"].sel(time=7.0) == pytest.approx(1e186, rel=1e-4) and np.isinf(ds["x"].sel(time=8.0))
    with pytest.raises(ParameterError, match="errors must be 'raise' or 'warn'"):
        run(exploding, errors="ignore")


RANDOM = """{UTF-8}
noise = RANDOM UNIFORM(0, 1, 0)
	~	Dmnl
	~	Uniform noise.
	|
level = INTEG(noise, 0)
	~	Dmnl
	~	Accumulated noise.
	|
FINAL TIME = 5 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 1 ~ Year ~ Step. |
"""


def test_seeded_random_runs_reproduce_and_leave_global_state(tmp_path):
    path = tmp_path / "noise.mdl"
    path.write_text(RANDOM)
    model = compile_model(path)
    assert model.uses_random
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = run(model, seed=0)
    b = run(model, seed=0)
    c = run(model, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(a["noise"], b["noise"])
    assert not np.array_equal(a["noise"], c["noise"])
    assert a.attrs["seed"] == 0  # seed=0 is a seed, not "no seed"
    unseeded = run(model)
    drawn = unseeded.attrs["seed"]
    assert isinstance(drawn, int)
    np.testing.assert_array_equal(run(model, seed=drawn)["noise"], unseeded["noise"])
    with pytest.raises(ParameterError, match="seed must be a non-negative integer"):
        run(model, seed=-1.5)


def test_seed_is_recorded_for_deterministic_models(population):
    assert run(population, seed=7).attrs["seed"] == 7
    assert run(population).attrs["seed"] == "none"


def test_netcdf_round_trip_is_identical(population, tmp_path):
    ds = run(population, {"growth rate": {"time": [0, 5], "value": [0.1, 0.3]}})
    path = save(ds, tmp_path / "out" / "run.nc")
    xr.testing.assert_identical(load_result(path), ds)


def test_subscripted_round_trip_and_csv(tmp_path):
    model = compile_model(FIXTURES / "subscripted.mdl")
    ds = run(model)
    xr.testing.assert_identical(load_result(save(ds, tmp_path / "s.nc")), ds)
    save(ds, tmp_path / "s.csv")
    frame = pd.read_csv(tmp_path / "s.csv", index_col=0)
    stock = next(name for name, da in ds.data_vars.items() if "region" in da.dims)
    assert f"{stock}[north]" in frame.columns
    np.testing.assert_allclose(frame[f"{stock}[south]"], ds[stock].sel(region="south"))


def test_save_is_atomic_and_keeps_the_old_file_on_failure(population, tmp_path, monkeypatch):
    from pysd_runner import OutputError

    target = tmp_path / "run.nc"
    ds = run(population)
    save(ds, target)
    before = target.read_bytes()

    def broken(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OutputError, match="cannot be written: disk full"):
        save(ds, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def test_save_rejects_unknown_format(population, tmp_path):
    from pysd_runner import OutputError

    with pytest.raises(OutputError, match=r"extension '\.xlsx'; allowed: \.nc, \.csv"):
        save(run(population), tmp_path / "run.xlsx")


def test_progress_bar_goes_to_stderr(population, capsys, monkeypatch):
    import pysd_runner.runner as runner

    monkeypatch.setattr(runner, "PROGRESS_DELAY", 0)
    # Not a terminal (a log file, a pipe): no bar, so nothing is glued onto the next line.
    run(population, progress=True, engine="pysd")
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(runner, "stderr_is_terminal", lambda: True)
    # PySD's step loop shows steps; a compiled run takes milliseconds and needs no bar.
    run(population, progress=True, engine="pysd")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "population:" in captured.err and "/40 " in captured.err
    run(population)
    assert capsys.readouterr().err == ""
