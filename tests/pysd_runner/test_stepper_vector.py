"""The stepper's block function (members of one parameter set in SIMD lanes): its exp, log and
power against numpy, its lookups against numpy's interp, and its steps against the
member-by-member stepper, on real models, with and without noise, on one thread or two."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from pysd_runner import Noise, compile_model, normal_table, stepper_for
from pysd_runner.kernel import clock_grid
from pysd_runner.stepper import BLOCK_MIN
from pysd_runner.stepper_vector import VECTOR_HELPERS, lookup_function

from ..conftest import MODELS


def _compiled(source: str, **arrays):
    namespace = {"np": np, "njit": njit, **arrays}
    exec(source.replace("cache=True", "cache=False"), namespace)  # no file to cache to
    return namespace


@pytest.fixture(scope="module")
def helpers():
    ns = _compiled(VECTOR_HELPERS)

    @njit
    def many(fn_id, x, y):
        out = np.empty(x.size)
        for i in range(x.size):
            if fn_id == 0:
                out[i] = ns_exp(x[i])
            elif fn_id == 1:
                out[i] = ns_log(x[i])
            else:
                out[i] = ns_pow(x[i], y[i])
        return out

    ns_exp, ns_log, ns_pow = ns["_vexp"], ns["_vlog"], ns["_vpow"]
    return lambda fn_id, x, y=None: many(fn_id, np.asarray(x, float), np.asarray(x if y is None else y, float))


def _ulps(got, expected):
    return np.abs(got - expected) / np.spacing(np.abs(expected))


def test_vector_exp_is_numpys_to_a_few_ulp(helpers):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-708, 709.7, 20000), rng.uniform(-1, 1, 5000), [0.0, -0.0, 1.0, -1.0, 709.78]])
    assert _ulps(helpers(0, x), np.exp(x)).max() <= 2
    # Beyond the range: exactly what numpy gives, except subnormal results, which are flushed to 0.
    edges = np.array([710.0, 1e308, np.inf, -np.inf, np.nan, -745.2, -800.0, -1e308])
    np.testing.assert_array_equal(helpers(0, edges), [np.inf, np.inf, np.inf, 0.0, np.nan, 0.0, 0.0, 0.0])
    flushed = np.array([-708.5, -720.0, -745.0])
    assert (helpers(0, flushed) == 0).all() and (np.exp(flushed) < np.finfo(float).tiny).all()


def test_vector_log_is_numpys_to_a_few_ulp(helpers):
    rng = np.random.default_rng(2)
    x = np.concatenate([10 ** rng.uniform(-300, 300, 20000), rng.uniform(0.5, 2.0, 5000), 1 + rng.uniform(-1e-6, 1e-6, 100),
                        [1e-310, 5e-324, np.finfo(float).tiny, np.finfo(float).max, 2.0, 0.5]])
    assert _ulps(helpers(1, x), np.log(x)).max() <= 2
    np.testing.assert_array_equal(helpers(1, [1.0]), [0.0])
    with np.errstate(all="ignore"):
        edges = np.array([0.0, -1.0, np.inf, np.nan, -np.inf])
        np.testing.assert_array_equal(helpers(1, edges), np.log(edges))


def test_vector_power_follows_pythons_float_power(helpers):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(1e-3, 10, 20000), rng.uniform(-6, 6, 20000)
    np.testing.assert_allclose(helpers(2, x, y), x ** y, rtol=2e-14)
    # Signs and special cases, as Python's float power gives them.
    bases = np.array([-2.0, -2.0, -2.0, -0.5, 0.0, 0.0, 3.0, -3.0, 0.0])
    powers = np.array([3.0, 2.0, 0.5, -3.0, 2.5, 0.0, 0.0, 0.0, -1.0])
    with np.errstate(all="ignore"):
        expected = np.power(bases, powers)
    np.testing.assert_allclose(helpers(2, bases, powers), expected, rtol=1e-14, equal_nan=True)


@pytest.mark.parametrize("xs, ys", [
    (np.array([0.0]), np.array([2.5])),
    (np.array([0.0, 1.0]), np.array([1.0, -1.0])),
    (np.array([0.0, 1.0, 1.0, 2.0, 3.5]), np.array([0.0, 1.0, 3.0, 3.0, -2.0])),
    (np.sort(np.random.default_rng(4).uniform(-5, 5, 1001)), np.random.default_rng(5).standard_normal(1001)),
    (np.arange(1001.0), np.random.default_rng(6).standard_normal(1001)),  # like reformism's noise table
])
def test_block_lookups_are_numpys_interp(xs, ys):
    ns = _compiled(lookup_function("XP", "FP", xs), XP=xs, FP=ys)
    lookup = ns["_lookup_XP_FP"]
    rng = np.random.default_rng(7)
    points = np.concatenate([rng.uniform(xs[0] - 2, xs[-1] + 2, 2000), xs, [np.nan, np.inf, -np.inf]])
    got = np.array([lookup(x) for x in points])
    np.testing.assert_array_equal(got, np.interp(points, xs, ys))


# --------------------------------------------------------------------------- block against member by member

def _members(name: str, sets: int, per_set: int, noisy: dict[str, tuple[float, bool]], final_time: float,
             time_step: float, threads: int | None, vector: bool):
    model = compile_model(MODELS / name / f"{name}.mdl")
    stepper = stepper_for(model)
    settings = {"initial_time": float(model.control["initial_time"]), "final_time": final_time,
                "time_step": time_step, "saveper": time_step}
    times, _, _ = clock_grid(settings)
    n = sets * per_set
    # Parameter sets differ in one constant (so members come in blocks of per_set).
    first = stepper.constants[0]
    values = {first: np.repeat(stepper.defaults[0] * np.linspace(0.97, 1.03, sets), per_set)}
    inputs = stepper.inputs(values, n, {})
    states = np.zeros((n, len(stepper.states)))
    stepper.advance(inputs, times, time_step, 0, 0, states, init=True)
    index = [stepper.state_index(element) for element in noisy]
    sd = np.repeat(np.array([[s for s, _ in noisy.values()]] * sets), per_set, axis=0)
    noise = Noise(np.array(index), sd, np.array([log for _, log in noisy.values()]), 12345, np.arange(n))
    k = len(times) - 1
    out, ok = stepper.advance(inputs, times, time_step, 0, k, states, noise=noise, table=normal_table(1),
                              outputs=np.arange(len(stepper.recordable)), threads=threads, vector=vector)
    return stepper, states, out, ok


NOISY = {
    "goodwin": {"wage_share": (0.02, True), "employment_rate": (0.01, False)},
    "reformism": {"wage_rate": (0.01, True), "capital": (0.01, True), "business_confidence": (0.02, False),
                  "militancy": (0.05, True), "public_debt": (0.01, True)},
}


@pytest.mark.parametrize("name", ["goodwin", "reformism"])
def test_block_steps_are_the_member_by_member_steps(name):
    # Two parameter sets of 40 members, 20 years at a time step of 1/64, noise on several stocks.
    runs = [_members(name, 2, 40, NOISY[name], 20.0, 1 / 64, None, vector) for vector in (False, True)]
    (stepper, scalar, out_s, ok_s), (_, vector, out_v, ok_v) = runs
    assert ok_s.all() and ok_v.all()
    assert scalar[:, 0].std() > 0  # the noise did move the members apart
    # The same draws and arithmetic, but exp, log and ** to within an ulp or two of the C
    # library's: the paths agree to about 1e-12 of each state's scale after 1,280 steps.
    scale = np.maximum(np.abs(scalar).max(axis=0), 1e-12)
    assert (np.abs(vector - scalar) / scale).max() < 1e-9
    finite = np.isfinite(out_s).all(axis=0)
    scale = np.maximum(np.abs(out_s[:, finite]).max(axis=0), 1e-12)
    assert (np.abs(out_v[:, finite] - out_s[:, finite]) / scale).max() < 1e-9


def test_block_steps_are_the_same_on_one_thread_or_two():
    one = _members("reformism", 1, 300, NOISY["reformism"], 10.0, 1 / 64, 1, True)[1]
    two = _members("reformism", 1, 300, NOISY["reformism"], 10.0, 1 / 64, 2, True)[1]
    np.testing.assert_array_equal(one, two)


def test_members_that_share_no_constants_step_one_by_one():
    model = compile_model(MODELS / "goodwin" / "goodwin.mdl")
    stepper = stepper_for(model)
    n = 4 * BLOCK_MIN
    first = stepper.constants[0]
    shared = stepper.inputs({}, n, {})
    own = stepper.inputs({first: np.linspace(0.9, 1.1, n) * stepper.defaults[0]}, n, {})
    assert stepper._blocks(shared, None, 0, 10) == [(0, n)]
    assert stepper._blocks(own, None, 0, 10) is None          # runs of one member
    assert stepper._blocks(shared, None, 5, 5) is None        # no steps
    halves = stepper.inputs({first: np.repeat([1.0, 1.1], n // 2) * stepper.defaults[0]}, n, {})
    assert stepper._blocks(halves, None, 0, 10) == [(0, n // 2), (n // 2, n)]
