"""Sampling designs and global sensitivity analysis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pysd_runner import ParameterError, compile_model, sample, sensitivity

from ..conftest import FIXTURES, MODELS


@pytest.fixture(scope="module")
def goodwin():
    return compile_model(MODELS / "goodwin" / "goodwin.mdl")


@pytest.fixture(scope="module")
def ishigami():
    return compile_model(FIXTURES / "ishigami.mdl")


def test_default_parameters_are_the_constants_with_ranges(goodwin):
    frame = sample(goodwin, n=16, seed=0)
    assert set(frame.columns) == {e.py_name for e in goodwin.constants}
    for element in goodwin.constants:
        lo, hi = element.limits
        assert frame[element.py_name].between(lo, hi).all()


@pytest.mark.parametrize("method", ["lhs", "sobol", "random", "grid"])
def test_designs_are_reproducible_and_seed_zero_counts(goodwin, method):
    params = ["phillips slope", "capital output ratio"]
    a = sample(goodwin, params, method=method, n=8, seed=0)
    b = sample(goodwin, params, method=method, n=8, seed=0)
    np.testing.assert_array_equal(a.values, b.values)
    if method != "grid":
        c = sample(goodwin, params, method=method, n=8, seed=1)
        assert not np.array_equal(a.values, c.values)


def test_latin_hypercube_has_one_point_per_stratum(goodwin):
    frame = sample(goodwin, ["phillips slope"], method="lhs", n=10, seed=3)
    lo, hi = goodwin.elements["phillips_slope"].limits
    strata = np.floor((frame["phillips_slope"] - lo) / (hi - lo) * 10)
    assert sorted(strata) == list(range(10))


def test_grid_covers_the_corners(goodwin):
    frame = sample(goodwin, ["phillips slope", "phillips intercept"], method="grid", n=3)
    assert len(frame) == 9
    lo, hi = goodwin.elements["phillips_slope"].limits
    assert sorted(set(frame["phillips_slope"])) == pytest.approx([lo, (lo + hi) / 2, hi])


def test_distributions_and_bounds(goodwin):
    frame = sample(goodwin, ["phillips slope", "capital output ratio"], n=4000, seed=2,
                   distributions={"phillips slope": "norm(1.25, 0.05)"}, bounds={"capital output ratio": (2.5, 3.5)})
    assert frame["phillips_slope"].mean() == pytest.approx(1.25, abs=0.01)
    assert frame["phillips_slope"].std() == pytest.approx(0.05, rel=0.05)
    assert frame["capital_output_ratio"].between(2.5, 3.5).all()
    frozen = sample(goodwin, ["phillips slope"], n=100, seed=2, distributions={"phillips slope": stats.uniform(1, 0.5)})
    assert frozen["phillips_slope"].between(1, 1.5).all()


def test_width_samples_a_neighbourhood_of_the_model_s_own_values(goodwin):
    # Each constant moves only a share w of the way from its value in the model file to each
    # end of its range: [d - w (d - min), d + w (max - d)], asymmetric where d is.
    full = sample(goodwin, n=2000, seed=5)
    near = sample(goodwin, n=2000, seed=5, width=0.25)
    for element in goodwin.constants:
        lo, hi = element.limits
        d = element.default
        column = near[element.py_name]
        assert column.min() >= d - 0.25 * (d - lo) - 1e-12 and column.max() <= d + 0.25 * (hi - d) + 1e-12
        # The Latin hypercube still fills the narrower interval: its ends are within a stratum.
        assert column.min() < d - 0.25 * (d - lo) + 0.25 * (hi - lo) / 2000 + 1e-12
        assert column.max() > d + 0.25 * (hi - d) - 0.25 * (hi - lo) / 2000 - 1e-12
        # The same design, mapped onto the narrower interval.
        lo_w, hi_w = d - 0.25 * (d - lo), d + 0.25 * (hi - d)
        np.testing.assert_allclose((column - lo_w) / (hi_w - lo_w), (full[element.py_name] - lo) / (hi - lo), atol=1e-9)
    whole = sample(goodwin, n=50, seed=5, width=1)
    np.testing.assert_array_equal(whole.values, sample(goodwin, n=50, seed=5).values)
    # Bounds given for a constant win over the width; a distribution too.
    mixed = sample(goodwin, ["phillips slope", "capital output ratio"], n=500, seed=5, width=0.1,
                   bounds={"capital output ratio": (2.0, 4.0)}, distributions={"phillips slope": "norm(1.25, 0.05)"})
    assert mixed["capital_output_ratio"].min() < 2.01 and mixed["capital_output_ratio"].max() > 3.99
    assert mixed["phillips_slope"].std() == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"width": 0}, r"width must be a number in \(0, 1\].*got 0"),
        ({"width": 1.5}, r"width must be a number in \(0, 1\].*got 1.5"),
        ({"width": float("nan")}, r"width must be a number in \(0, 1\]"),
        ({"width": "half"}, r"width must be a number in \(0, 1\].*got 'half'"),
        ({"method": "halton"}, "method must be one of lhs, sobol, grid, random"),
        ({"method": "sobol", "n": 100}, "power of two.*use 64 or 128"),
        ({"n": 0}, "n must be a positive integer"),
        ({"seed": -3}, "seed must be a non-negative integer"),
        ({"params": ["phillips slop"]}, "Did you mean 'phillips slope'"),
        ({"params": ["wage share"]}, "is a stock, not a parameter"),
        ({"bounds": {"phillips slope": (2, 1)}}, r"min < max; got \[2, 1\]"),
        ({"distributions": {"phillips slope": "banana(1)"}}, "'banana' is not a scipy.stats distribution"),
        ({"distributions": {"phillips slope": "norm(a)"}}, "arguments must be numbers"),
        ({"method": "grid", "n": 100}, "above 5,000,000"),
    ],
)
def test_bad_sampling_input(goodwin, kwargs, pattern):
    kwargs.setdefault("params", None)
    with pytest.raises(ParameterError, match=pattern):
        sample(goodwin, **kwargs)


# Ishigami (a = 7, b = 0.1) on [-pi, pi]^3, analytic indices (Ishigami & Homma 1990;
# Saltelli et al. 2008): S1 = (0.3139, 0.4424, 0), ST = (0.5576, 0.4424, 0.2437).
ISHIGAMI_S1 = np.array([0.3139, 0.4424, 0.0])
ISHIGAMI_ST = np.array([0.5576, 0.4424, 0.2437])


def test_sobol_indices_of_ishigami_match_the_known_values(ishigami):
    result = sensitivity(ishigami, metrics=["final(y)"], n=2048, seed=4)
    s = result.sel(metric="final(y)")
    assert list(result["param"].values) == ["x1", "x2", "x3"]
    # The known values lie inside the bootstrap confidence intervals (plus a small
    # allowance because the ranges are +-3.14159, not exactly pi).
    slack = 0.01
    assert (np.abs(s["S1"].values - ISHIGAMI_S1) <= s["S1_conf"].values + slack).all(), s["S1"].values
    assert (np.abs(s["ST"].values - ISHIGAMI_ST) <= s["ST_conf"].values + slack).all(), s["ST"].values
    assert result.attrs["members"] == 2048 * 5


def test_morris_ranks_ishigami_inputs(ishigami):
    result = sensitivity(ishigami, metrics=["final(y)"], method="morris", n=200, seed=4)
    mu_star = result["mu_star"].sel(metric="final(y)").values
    # x1 and x2 matter most; x3 acts only through x1 and has the smallest mean effect.
    assert mu_star[2] < mu_star[0] and mu_star[2] < mu_star[1]
    assert {"mu", "sigma", "mu_star_conf"} <= set(result.data_vars)


def test_metrics_on_goodwin(goodwin):
    result = sensitivity(goodwin, ["phillips slope", "phillips intercept"], metrics=[
        "min(employment_rate)", "mean(wage share, 20, 80)", "time_of_max(wage_share)", "at(employment_rate, 50)",
        "max(employment_rate)", lambda ds: ds["employment_rate"].max("time").values,
    ], method="morris", n=4, seed=1, final_time=100)
    assert list(result["metric"].values) == [
        "min(employment_rate)", "mean(wage_share, 20, 80)", "time_of_max(wage_share)", "at(employment_rate, 50)",
        "max(employment_rate)", "<lambda>"]
    for name in ("mu", "mu_star", "sigma", "mu_star_conf"):
        assert np.isfinite(result[name].values).all(), name
        # The string metric and the same metric as a function give the same indices.
        np.testing.assert_array_equal(result[name].sel(metric="max(employment_rate)").values,
                                      result[name].sel(metric="<lambda>").values, err_msg=name)
    # Time of the peak moves by years when the Phillips curve changes, a level by far less.
    assert float(result["mu_star"].sel(metric="time_of_max(wage_share)").max()) > 1
    assert float(result["mu_star"].sel(metric="min(employment_rate)").max()) < 1


@pytest.mark.parametrize(
    "metric, pattern",
    [
        ("median(y)", "FUNCTION one of"),
        ("final(z)", "unknown variable 'z'"),
        ("at(y)", r"at\(\) takes 1 number"),
        ("at(y, 5)", r"time 5 is outside the run \[0, 1\]"),
        ("mean(y, 1, 0)", "window"),
    ],
)
def test_bad_metrics(ishigami, metric, pattern):
    with pytest.raises(ParameterError, match=pattern):
        sensitivity(ishigami, metrics=[metric], n=4, method="morris", seed=0)


def test_structural_switches_are_not_sampled_by_default(tmp_path):
    path = tmp_path / "switched.mdl"
    path.write_text("""{UTF-8}
x = INTEG(rate * x * (1 - limit switch * x), 1)
	~	Thing
	~	Grows exponentially, or logistically when the switch is on.
	|
rate = 0.1
	~	1/Year [0,1]
	~	Growth rate.
	|
limit switch = 1
	~	Dmnl [0,1,1]
	~	1 turns the limit on, 0 off.
	|
FINAL TIME = 5 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 1 ~ Year ~ Step. |
""")
    model = compile_model(path)
    assert list(sample(model, n=4, seed=0).columns) == ["rate"]
    assert set(sample(model, ["rate", "limit switch"], n=4, seed=0).columns) == {"rate", "limit_switch"}
    # A switch named explicitly keeps both of its values under --width (a fifth of [0, 1]
    # around 1 would never turn it off).
    near = sample(model, ["rate", "limit switch"], n=200, seed=0, width=0.2)
    assert near["limit_switch"].min() < 0.05 and near["rate"].between(0.1 - 0.02, 0.1 + 0.18).all()


def test_width_is_measured_from_a_scenario_s_values_and_records_how_members_were_drawn(goodwin):
    import json

    centre = sample(goodwin, ["phillips slope"], n=500, seed=1, width=0.1, centre={"phillips slope": 2.0})
    lo, hi = goodwin.elements["phillips_slope"].limits
    assert centre["phillips_slope"].min() >= 2.0 - 0.1 * (2.0 - lo) - 1e-12
    assert centre["phillips_slope"].max() <= 2.0 + 0.1 * (hi - 2.0) + 1e-12
    drawn = json.loads(sample(goodwin, ["phillips slope", "capital output ratio"], n=10, seed=1, width=0.5,
                              distributions={"phillips slope": "norm(1.25, 0.05)"}).attrs["marginals"])
    d = goodwin.elements["capital_output_ratio"].default
    c_lo, c_hi = goodwin.elements["capital_output_ratio"].limits
    assert drawn == {"phillips_slope": "norm(1.25, 0.05)",
                     "capital_output_ratio": [pytest.approx(d - 0.5 * (d - c_lo)), pytest.approx(d + 0.5 * (c_hi - d))]}
    # A value outside the range has no neighbourhood inside it.
    with pytest.raises(ParameterError, match=r"'phillips slope' is 99, outside its Vensim range"):
        sample(goodwin, ["phillips slope"], n=4, width=0.2, centre={"phillips slope": 99})
