"""Property tests: for any parameters inside the Vensim ranges, runs are exact, pure and round-trip."""

from __future__ import annotations

import numpy as np
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from pysd_runner import compile_model, load_result, run, save

from ..conftest import FIXTURES

_MODEL = {}


def population():
    # Compiled once per process; compile_model is itself cached, this only saves the load.
    if "m" not in _MODEL:
        _MODEL["m"] = compile_model(FIXTURES / "population.mdl")
    return _MODEL["m"]


params = st.fixed_dictionaries({
    "growth_rate": st.floats(0, 1, allow_nan=False),
    "lifetime": st.floats(1, 20, allow_nan=False),
    "initial_population": st.floats(0, 1000, allow_nan=False),
})


@settings(max_examples=40, deadline=None)
@given(values=params, step=st.sampled_from([0.0625, 0.125, 0.25, 0.5]))
def test_population_is_the_euler_power_law(values, step):
    ds = run(population(), values, time_step=step, saveper=step, final_time=5)
    n = np.round(ds["time"].values / step)
    factor = 1 + (values["growth_rate"] - 1 / values["lifetime"]) * step
    expected = values["initial_population"] * factor**n
    np.testing.assert_allclose(ds["population"].values, expected, rtol=1e-11, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(values=params)
def test_purity_and_netcdf_round_trip(values):
    import tempfile
    from pathlib import Path

    first = run(population(), values)
    default = run(population())
    second = run(population(), values)
    for ds in (first, second):
        ds.attrs.pop("created_utc")
    xr.testing.assert_identical(first, second)
    np.testing.assert_array_equal(default["population"][0], 100.0)
    with tempfile.TemporaryDirectory() as folder:
        path = save(first, Path(folder) / "r.nc")
        xr.testing.assert_identical(load_result(path), first)
