"""Synthetic data for known-answer tests: a model run at known parameters plus seeded noise."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ..conftest import MODELS

GOODWIN_TRUTH = {"phillips slope": 1.3, "phillips intercept": 1.15}
# Short horizon and coarse step keep each ensemble pass cheap; the data come from the same
# settings, so the known answer is exact for the model as integrated.
GOODWIN_TIME = {"origin": 1950, "time_step": 0.1, "fit": [1950, 1975], "holdout": [1976, 1980]}


@pytest.fixture(scope="session")
def goodwin():
    from pysd_runner import compile_model

    return compile_model(MODELS / "goodwin" / "goodwin.mdl")


@pytest.fixture(scope="session")
def keen():
    from pysd_runner import compile_model

    return compile_model(MODELS / "keen" / "keen.mdl")


def synthetic(model, truth, variables, *, seed, noise, origin, final_time, time_step, saveper=1.0, fixed=None):
    """Noisy observations of ``variables`` from a run at ``truth``: {variable: DataArray}."""
    from pysd_runner import run

    ds = run(model, {**(fixed or {}), **truth}, final_time=final_time, time_step=time_step, saveper=saveper,
             variables=variables)
    rng = np.random.default_rng(seed)
    out = {}
    for name in variables:
        values = ds[name].values + rng.normal(0.0, noise, ds.sizes["time"])
        out[name] = xr.DataArray(values, coords={"time": origin + ds["time"].values}, dims="time", name=name,
                                 attrs={"units": "1", "description": f"synthetic {name}"})
    return out


def goodwin_spec(model, seed, *, method="least_squares", noise=0.005, uncertainty="profile", settings=None,
                 params=None):
    data = synthetic(model, GOODWIN_TRUTH, ["wage_share", "employment_rate"], seed=seed, noise=noise,
                     origin=1950, final_time=30, time_step=GOODWIN_TIME["time_step"])
    params = params or {"phillips slope": {"bounds": [0.8, 2.0]}, "phillips intercept": {"bounds": [0.6, 1.6]}}
    method_table = {"name": method, **(settings or {})}
    return {
        "model": model,
        "seed": seed,
        "time": dict(GOODWIN_TIME),
        "parameters": params,
        "observations": [
            {"variable": "wage share", "series": data["wage_share"]},
            {"variable": "employment rate", "series": data["employment_rate"]},
        ],
        "method": method_table,
        "uncertainty": {"method": uncertainty},
    }
