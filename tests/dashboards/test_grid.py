"""The lever grid: one run per combination of lever values, identical to direct runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dashboards.errors import DashboardInputError
from dashboards.grid import build_lever_grid, describe_lever
from pysd_runner import CrisisError, ParameterError, compile_model, run

from ..conftest import FIXTURES
from .conftest import GRID_VALUES, SHORT


def test_grid_shape_coords_and_provenance(grid):
    assert dict(grid.sizes) == {"scenario": 2, "phillips_slope": 5, "phillips_intercept": 5, "time": 301}
    assert json.loads(grid.attrs["levers"]) == ["phillips_slope", "phillips_intercept"]
    assert list(grid["phillips_slope"].values) == GRID_VALUES["phillips slope"]
    assert grid["phillips_slope"].attrs["long_name"] == "phillips slope"
    assert grid["phillips_slope"].attrs["units"] == "1/Year"
    assert grid["wage_share"].attrs["units"] == "Dmnl"
    assert grid.attrs["model_name"] == "goodwin" and grid.attrs["n_failed_runs"] == 0
    assert bool(grid["ok"].all())


def test_each_grid_point_equals_a_direct_run(grid, goodwin):
    # small_orbit sets the initial values, so its runs differ from the baseline's at every point.
    direct = run(goodwin, {"phillips slope": 1.4, "phillips intercept": 1.05}, scenario="small_orbit", **SHORT)
    point = grid.sel(scenario="small_orbit", phillips_slope=1.4, phillips_intercept=1.05)
    for name in ("wage_share", "employment_rate", "profit_rate"):
        np.testing.assert_array_equal(point[name].values, direct[name].values)


def test_default_values_span_the_vensim_range():
    decay = compile_model(FIXTURES / "decay.mdl")
    grid = build_lever_grid(decay, ["tau"], n_steps=3, variables=["stock"])
    np.testing.assert_allclose(grid["tau"].values, [0.1, 50.05, 100])
    assert dict(grid.sizes) == {"tau": 3, "time": 21}
    np.testing.assert_allclose(grid["stock"].sel(tau=0.1).values[-1], 0, atol=1e-6)


@pytest.mark.parametrize(
    "levers, options, error, message",
    [
        (["tau", "initial stock", "stock"], {}, DashboardInputError, "one or two levers"),
        (["tau", "tau"], {}, DashboardInputError, "must differ"),
        (["tua"], {}, ParameterError, "Did you mean 'tau'"),
        (["stock"], {}, ParameterError, "not a lever"),
        (["tau"], {"values": {"tau": [3, 2]}}, DashboardInputError, "strictly increasing"),
        (["tau"], {"values": {"tau": [1, 500]}}, ParameterError, "outside its Vensim range"),
        (["tau"], {"n_steps": 1}, DashboardInputError, "n_steps must be an integer of at least 2"),
        (["tau"], {"variables": ["tau"]}, CrisisError, "only stocks|not a variable|is a constant"),
    ],
)
def test_grid_errors_say_what_is_wrong(levers, options, error, message):
    decay = compile_model(FIXTURES / "decay.mdl")
    with pytest.raises(error, match=message):
        build_lever_grid(decay, levers, **options)


def test_command_line_lever_specs():
    assert describe_lever("phillips slope") == ("phillips slope", None)
    assert describe_lever("phillips slope=1:1.5") == ("phillips slope", (1.0, 1.5))
    assert describe_lever("tau=1,2,4") == ("tau", [1.0, 2.0, 4.0])
    with pytest.raises(DashboardInputError, match="lo < hi"):
        describe_lever("tau=3:1")
    with pytest.raises(DashboardInputError, match="NAME=lo:hi"):
        describe_lever("=3")
