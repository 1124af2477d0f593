"""Check the Vensim builtins used by crisis-dynamics against hand-computed values.

Every expected value here comes from a closed-form Euler recursion or an
analytic solution written out in this file, never from PySD output.

Conventions (PySD 3.14.3, same as Vensim):
* Integration is explicit Euler: S(t + dt) = S(t) + dt * netflow(t).
* The row saved at time t holds the stocks at t and the auxiliaries computed
  from them, before the step from t to t + dt; the first row is INITIAL TIME.
* Every fixture uses a TIME STEP that is a power of two, so model time is exact
  in binary floating point and comparisons like ``Time > 10`` hit the grid
  exactly.
"""
from math import e

from pathlib import Path

import numpy as np
import pytest

from pysd_runner import ModelCompileError, compile_model, run

FIXTURES = Path(__file__).parents[1] / "fixtures"

# Explicit Euler repeats a rounded multiply-add at every step, so the model and
# the closed-form power below differ by a few ulps per step. Runs have at most
# ~2,000 steps: 2e3 * 2.2e-16 is about 5e-13, so 1e-12 leaves a margin while
# still catching any real difference in the scheme (which would be >= 1e-4).
EULER_RTOL = 1e-12
# Absolute floor for values that should be exactly 0 (relative tolerance is
# meaningless there).
EULER_ATOL = 1e-12


def euler_exp_bound(amplitude, h):
    """Upper bound on |amplitude*exp(-x) - amplitude*(1-h)**(x/h)| over x >= 0.

    h = dt / time constant. Since -ln(1-h)/h <= 1 + h/(2(1-h)), the Euler value
    is amplitude*exp(-x)*exp(-x*c) with c <= h/(2(1-h)); so the gap is at most
    amplitude * x*exp(-x) * c <= amplitude * c / e.
    """
    return amplitude * h / (2 * e * (1 - h))


@pytest.fixture(scope="module")
def decay():
    return compile_model(FIXTURES / "decay.mdl")


def test_compile_does_not_write_beside_fixture(decay):
    # PySD writes the translated .py next to the .mdl; the runner must not.
    assert not (FIXTURES / "decay.py").exists()


def test_decay_time_axis(decay):
    ds = run(decay)
    # SAVEPER = 1 from INITIAL TIME 0 to FINAL TIME 20, both ends included.
    np.testing.assert_array_equal(ds["time"].values, np.arange(0.0, 21.0))


def test_decay_matches_euler_formula(decay):
    dt, tau = 0.0625, 5.0
    ds = run(decay)
    t = ds["time"].values
    n = t / dt  # integer step counts (t and dt are exact binary numbers)
    expected = 100.0 * (1.0 - dt / tau) ** n
    np.testing.assert_allclose(ds["stock"].values, expected, rtol=EULER_RTOL)
    np.testing.assert_allclose(ds["outflow"].values, expected / tau, rtol=EULER_RTOL)


def test_decay_close_to_continuous_solution(decay):
    dt, tau = 0.0625, 5.0
    ds = run(decay)
    t = ds["time"].values
    # Tolerance: proven Euler-vs-exponential bound for h = dt/tau = 0.0125
    # (about 0.23 widgets on a stock starting at 100).
    np.testing.assert_allclose(
        ds["stock"].values, 100.0 * np.exp(-t / tau),
        rtol=0, atol=euler_exp_bound(100.0, dt / tau))


def test_decay_error_is_first_order_in_dt(decay):
    # Halving TIME STEP must halve the error against exp(-t/tau): the ratio of
    # the errors at t = 20 is 2 + O(dt), i.e. 2.0 +- 0.05 for these dt.
    t_end, tau = 20.0, 5.0
    exact = 100.0 * np.exp(-t_end / tau)
    errors = []
    for dt in (0.0625, 0.03125):
        ds = run(decay, time_step=dt, saveper=1.0)
        errors.append(abs(float(ds["stock"].sel(time=t_end)) - exact))
    assert errors[0] / errors[1] == pytest.approx(2.0, abs=0.05)


def test_decay_params_override(decay):
    dt, tau = 0.0625, 10.0
    ds = run(decay, params={"tau": tau})
    n = ds["time"].values / dt
    # Same rounding argument as EULER_RTOL.
    np.testing.assert_allclose(
        ds["stock"].values, 100.0 * (1.0 - dt / tau) ** n, rtol=EULER_RTOL)


def test_decay_variables_selection(decay):
    ds = run(decay, variables=["stock"])
    assert "stock" in ds.data_vars
    assert "outflow" not in ds.data_vars


def test_smooth_of_step():
    dt, T, height, t_step = 0.25, 4.0, 10.0, 5.0
    ds = run(compile_model(FIXTURES / "smooth.mdl"))
    t = ds["time"].values
    # Input is 0 before t_step and height from t_step on (STEP fires at
    # Time >= t_step on the grid). SMOOTH starts at the initial input (0) and
    # follows s(t+dt) = s(t) + dt*(input(t) - s(t))/T, so for
    # t = t_step + m*dt: s = height*(1 - (1 - dt/T)**m), and 0 before.
    m = np.clip((t - t_step) / dt, 0, None)
    expected = height * (1.0 - (1.0 - dt / T) ** m)
    np.testing.assert_array_equal(ds["input_signal"].values,
                                  np.where(t >= t_step, height, 0.0))
    np.testing.assert_allclose(ds["smoothed_input"].values, expected,
                               rtol=EULER_RTOL, atol=EULER_ATOL)
    # Value at t_step itself is still 0: the input jump is seen one step later.
    assert float(ds["smoothed_input"].sel(time=t_step)) == 0.0
    # Continuous first-order approach height*(1 - exp(-(t-t_step)/T));
    # tolerance: proven Euler bound for h = dt/T = 1/16 (about 0.12).
    continuous = height * (1.0 - np.exp(-np.clip(t - t_step, 0, None) / T))
    np.testing.assert_allclose(ds["smoothed_input"].values, continuous,
                               rtol=0, atol=euler_exp_bound(height, dt / T))


def test_delay1_of_step():
    dt, D, base, jump, t_step = 0.125, 3.0, 2.0, 4.0, 2.0
    ds = run(compile_model(FIXTURES / "delay1.mdl"))
    t = ds["time"].values
    # DELAY1: internal stock starts at inflow*D, so the outflow starts at the
    # initial inflow (2) and stays there until the step. Outflow = stock/D,
    # giving out(t+dt) = out(t) + dt*(inflow(t) - out(t))/D; for
    # t = t_step + m*dt: out = base + jump*(1 - (1 - dt/D)**m).
    m = np.clip((t - t_step) / dt, 0, None)
    expected = base + jump * (1.0 - (1.0 - dt / D) ** m)
    np.testing.assert_array_equal(ds["inflow"].values,
                                  np.where(t >= t_step, base + jump, base))
    np.testing.assert_allclose(ds["delayed_outflow"].values, expected,
                               rtol=EULER_RTOL)
    assert float(ds["delayed_outflow"].sel(time=0.0)) == base
    # Continuous solution; tolerance: proven Euler bound for h = dt/D = 1/24
    # (about 0.032).
    continuous = base + jump * (1.0 - np.exp(-np.clip(t - t_step, 0, None) / D))
    np.testing.assert_allclose(ds["delayed_outflow"].values, continuous,
                               rtol=0, atol=euler_exp_bound(jump, dt / D))


def test_if_then_else_min_max():
    ds = run(compile_model(FIXTURES / "if_then_else.mdl"))
    t = ds["time"].values
    np.testing.assert_array_equal(t, np.arange(0.0, 20.5, 0.5))
    # All values are small multiples of 0.5: exact in floating point, so the
    # comparisons are exact.
    factor = np.where(t > 10.0, 2.0, 1.0)  # strict: Time = 10 still gives 1
    np.testing.assert_array_equal(ds["regime_factor"].values, factor)
    np.testing.assert_array_equal(ds["switched_value"].values, 3.0 * factor)
    assert float(ds["switched_value"].sel(time=10.0)) == 3.0
    assert float(ds["switched_value"].sel(time=10.5)) == 6.0
    np.testing.assert_array_equal(ds["clipped_time"].values,
                                  np.minimum(np.maximum(t, 2.0), 7.0))
    np.testing.assert_array_equal(ds["hinge_plus_saturation"].values,
                                  np.maximum(t - 5.0, 0.0) + np.minimum(t, 1.0))


# PySD emits a UserWarning at every step where a lookup is evaluated outside
# its x range; that is the behaviour under test, so silence it here.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lookup_interpolation_and_end_values():
    ds = run(compile_model(FIXTURES / "lookup.mdl"))
    # Interpolation of (0,0),(1,1),(2,4) computes a*x + b in floats; 1e-12
    # absolute covers rounding on values of order 1.
    atol = 1e-12
    tol = dict(rtol=0, atol=atol)  # numpy spelling
    ptol = dict(rel=0, abs=atol)   # pytest.approx spelling

    def at(name, time):
        return float(ds[name].sel(time=time))

    # Hand-computed points: input = Time/5.
    hand = {0.0: 0.0,    # x = 0: first point
            2.5: 0.5,    # x = 0.5: halfway between (0,0) and (1,1)
            5.0: 1.0,    # x = 1: middle point
            7.5: 2.5,    # x = 1.5: halfway between (1,1) and (2,4)
            10.0: 4.0,   # x = 2: last point
            12.5: 4.0,   # x = 2.5: beyond the end, holds 4
            15.0: 4.0}   # x = 3: beyond the end, holds 4
    for time, value in hand.items():
        assert at("effect", time) == pytest.approx(value, **ptol), time
        assert at("effect_with_lookup", time) == pytest.approx(value, **ptol), time
    # Input shifted down by 1: below 0 the table holds its first value 0.
    assert at("effect_below_range", 2.5) == pytest.approx(0.0, **ptol)  # x = -0.5
    assert at("effect_below_range", 7.5) == pytest.approx(0.5, **ptol)  # x = 0.5
    assert at("effect_below_range", 15.0) == pytest.approx(4.0, **ptol)  # x = 2
    # Whole trajectory: piecewise-linear with flat ends (np.interp holds the
    # end values too).
    x = ds["time"].values / 5.0
    xp, fp = [0.0, 1.0, 2.0], [0.0, 1.0, 4.0]
    np.testing.assert_allclose(ds["effect"].values, np.interp(x, xp, fp), **tol)
    np.testing.assert_allclose(ds["effect_with_lookup"].values,
                               np.interp(x, xp, fp), **tol)
    np.testing.assert_allclose(ds["effect_below_range"].values,
                               np.interp(x - 1.0, xp, fp), **tol)


@pytest.fixture(scope="module")
def step_ramp():
    return compile_model(FIXTURES / "step_ramp.mdl")


def test_step_ramp_pulse(step_ramp):
    ds = run(step_ramp)
    t = ds["time"].values
    # Values are small multiples of 0.25: exact comparisons.
    # STEP(5, 3): 0 before 3, 5 from 3 on.
    np.testing.assert_array_equal(ds["step_signal"].values, np.where(t >= 3.0, 5.0, 0.0))
    # RAMP(2, 2, 6): 0 before 2, 2*(Time-2) up to 6, then 2*(6-2) = 8.
    np.testing.assert_array_equal(ds["ramp_signal"].values,
                                  2.0 * np.clip(t - 2.0, 0.0, 4.0))
    # PULSE(4, 2): 1 for 4 <= Time < 6, else 0.
    np.testing.assert_array_equal(ds["pulse_signal"].values,
                                  np.where((t >= 4.0) & (t < 6.0), 1.0, 0.0))
    edges = {2.75: (0.0, 1.5, 0.0), 3.0: (5.0, 2.0, 0.0), 4.0: (5.0, 4.0, 1.0),
             5.75: (5.0, 7.5, 1.0), 6.0: (5.0, 8.0, 0.0), 10.0: (5.0, 8.0, 0.0)}
    for time, (s, r, p) in edges.items():
        got = tuple(float(ds[v].sel(time=time))
                    for v in ("step_signal", "ramp_signal", "pulse_signal"))
        assert got == (s, r, p), time


@pytest.mark.parametrize("step_time, first_on", [
    (3.1, 3.0),   # 3.0 + dt/2 = 3.125 > 3.1: fires at 3.0, before step_time
    (3.2, 3.25),  # 3.0 + dt/2 = 3.125 <= 3.2: fires at 3.25
])
def test_step_off_grid_rounds_to_nearest_time_step(step_ramp, step_time, first_on):
    # PySD (like Vensim) tests Time + TIME STEP/2 > step time, so a step time
    # between grid points fires at the nearest grid point, which can be
    # earlier than the step time itself.
    ds = run(step_ramp, params={"step_time": step_time})
    t = ds["time"].values
    np.testing.assert_array_equal(ds["step_signal"].values,
                                  np.where(t >= first_on, 5.0, 0.0))


def test_subscripted_growth():
    dt = 0.125
    ds = run(compile_model(FIXTURES / "subscripted.mdl"))
    pop = ds["population"]
    assert set(pop.dims) == {"time", "region"}
    assert list(pop["region"].values) == ["north", "south", "east"]
    t = ds["time"].values
    n = t / dt
    for region, p0, r in (("north", 10.0, 0.1), ("south", 20.0, 0.2),
                          ("east", 30.0, -0.05)):
        got = pop.sel(region=region).values
        euler = p0 * (1.0 + r * dt) ** n
        np.testing.assert_allclose(got, euler, rtol=EULER_RTOL, err_msg=region)
        np.testing.assert_allclose(ds["growth"].sel(region=region).values,
                                   euler * r, rtol=EULER_RTOL, err_msg=region)
        # Against p0*exp(r*t): relative Euler error is at most
        # |r|t * c with c = |r|dt/(2(1-|r|dt)) (see euler_exp_bound); at
        # t = 10 that is 2.5% for south, 0.6% north, 0.16% east.
        h = abs(r) * dt
        bound = abs(r) * t * h / (2 * (1 - h))
        np.testing.assert_array_less(np.abs(got / (p0 * np.exp(r * t)) - 1.0),
                                     bound + 1e-12, err_msg=region)


# Error handling. Raw PySD raises parsimonious.exceptions.IncompleteParseError
# (a ParseError) for malformed.mdl without naming the element, and only *warns*
# (UserWarning "Trying to translate 'NPV' which it is not implemented on PySD.
# The translated model will crash...") for unsupported.mdl, raising
# NotImplementedError when run. compile_model turns both into
# ModelCompileError naming the element(s).

def test_malformed_model_names_element():
    with pytest.raises(ModelCompileError) as excinfo:
        compile_model(FIXTURES / "malformed.mdl")
    message = str(excinfo.value)
    assert "'outflow'" in message
    assert "line 12" in message  # the line of "outflow = Stock / (tau"


def test_unsupported_functions_list_every_element():
    with pytest.raises(ModelCompileError) as excinfo:
        compile_model(FIXTURES / "unsupported.mdl")
    message = str(excinfo.value)
    assert "2 element(s)" in message
    assert "'present value of outflow' uses npv" in message
    assert "'random arrivals' uses random_poisson" in message
