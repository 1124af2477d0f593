"""Parameter recovery of the state-space fit (issue "State-space calibration", verification):
synthetic Goodwin data with process noise on both stocks and observation noise, over 20 seeds.
The filtered fit's 95% profile intervals must contain the true Phillips curve in at least 90%
of the seeds; the open-loop least-squares fit of the same data is recorded beside it (its
intervals assume independent errors, which process noise breaks)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from calibration import calibrate

from ..conftest import MODELS

TRUTH = {"phillips slope": 1.3, "phillips intercept": 1.15}
DT, YEARS, PROCESS_SD, SIGMA = 0.05, 60, 0.01, 0.004
SEEDS = range(20)


@pytest.fixture(scope="module")
def goodwin():
    from pysd_runner import compile_model

    return compile_model(MODELS / "goodwin" / "goodwin.mdl")


def synthetic(model, seed: int) -> dict[str, xr.DataArray]:
    """A Goodwin run at the truth with relative process noise on both stocks at every Euler step
    (its own random numbers, not the fit's), observed yearly with Gaussian noise."""
    from pysd_runner import Noise, normal_table, stepper_for
    from pysd_runner.kernel import clock_grid

    stepper = stepper_for(model)
    times, _, _ = clock_grid({"initial_time": 0.0, "final_time": float(YEARS), "time_step": DT, "saveper": 1.0})
    inputs = stepper.inputs({"phillips_slope": np.array([TRUTH["phillips slope"]]),
                             "phillips_intercept": np.array([TRUTH["phillips intercept"]])}, 1, {})
    states = np.zeros((1, len(stepper.states)))
    want = np.array([stepper.recordable.index("wage_share"), stepper.recordable.index("employment_rate")])
    noise = Noise(np.array([0, 1]), np.full((1, 2), PROCESS_SD), np.array([True, True]), 10**9 + seed,
                  np.array([seed]))
    table = normal_table(10**6 + seed)
    rows, previous = [], 0
    for j, step in enumerate(int(round(year / DT)) for year in range(YEARS + 1)):
        values, _ = stepper.advance(inputs, times, DT, previous, step, states, init=j == 0, noise=noise,
                                    table=table, outputs=want)
        rows.append(values[0])
        previous = step
    observed = np.array(rows) + SIGMA * np.random.default_rng(seed).standard_normal((YEARS + 1, 2))
    years = 1950.0 + np.arange(YEARS + 1)
    return {name: xr.DataArray(observed[:, i], dims="time", coords={"time": years}, name=name)
            for i, name in enumerate(["wage_share", "employment_rate"])}


def _spec(model, data, seed: int, filtered: bool) -> dict:
    spec = {"model": model, "seed": seed, "time": {"origin": 1950, "time_step": DT, "fit": [1950, 2010]},
            "parameters": {"phillips slope": {"bounds": [0.8, 2.0]}, "phillips intercept": {"bounds": [0.6, 1.6]}},
            "observations": [{"variable": "wage share", "series": data["wage_share"]},
                             {"variable": "employment rate", "series": data["employment_rate"]}],
            "method": {"name": "differential_evolution", "popsize": 10, "maxiter": 40}}
    if filtered:
        for observation in spec["observations"]:
            observation["sigma"] = {"bounds": [1e-4, 0.05], "log": True}
        noise = {"bounds": [1e-4, 0.1], "log": True, "scale": "log"}
        spec["state_space"] = {"method": "kalman", "process_noise": {"wage share": noise, "employment rate": noise}}
    return spec


def _covered(fit) -> list[bool]:
    return [float(fit["lower"].sel(param=p)) <= v <= float(fit["upper"].sel(param=p)) for p, v in TRUTH.items()]


def test_filtered_intervals_cover_the_truth_in_nine_seeds_of_ten(goodwin, record_property):
    filtered, open_loop = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in SEEDS:
            data = synthetic(goodwin, seed)
            filtered.append(_covered(calibrate(_spec(goodwin, data, seed, True))))
            open_loop.append(_covered(calibrate(_spec(goodwin, data, seed, False))))
    coverage = np.mean(filtered, axis=0)
    deterministic = np.mean(open_loop, axis=0)
    record_property("filtered_coverage", coverage.tolist())
    record_property("least_squares_coverage", deterministic.tolist())
    print(f"coverage of the 95% intervals over {len(SEEDS)} seeds: filtered {coverage}, least squares {deterministic}")
    assert np.all(coverage >= 0.9), coverage
    # Process noise makes the open-loop fit's independent-error intervals too narrow: it covers less.
    assert deterministic.mean() < coverage.mean()
