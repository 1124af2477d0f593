"""State-space (filtered) calibration: the Kalman filter against statsmodels' exact Kalman filter
on linear Gaussian models, the particle filter within Monte Carlo error of it, the compiled
stepper against the kernel, spec errors, evaluation without fitting, the fit's outputs and
checkpoints."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import xarray as xr

from calibration import calibrate, load_spec
from calibration.errors import SpecError
from calibration.problem import Problem
from calibration.state_space import StateSpaceFilter

from ..conftest import MODELS

FIXTURES = MODELS.parent / "tests" / "fixtures"
LINEAR = FIXTURES / "linear_gaussian.mdl"
TRUTH = {"decay": 0.2, "intercept": 1.0, "noise": 0.5, "sigma": 0.3, "x0": 2.0}


def _linear_data(seed: int, n: int = 41, *, variable: str = "level") -> xr.DataArray:
    """Data from the linear Gaussian model of the fixture, simulated here in numpy (not by the toolkit)."""
    rng = np.random.default_rng(seed)
    x, x2, ys = TRUTH["x0"], 0.0, []
    for _ in range(n):
        value = x if variable == "level" else x + 0.5 * x2
        ys.append(value + TRUTH["sigma"] * rng.standard_normal())
        x, x2 = x + (TRUTH["intercept"] - TRUTH["decay"] * x) + TRUTH["noise"] * rng.standard_normal(), x2 + (x - x2)
    return xr.DataArray(np.array(ys), dims="time", coords={"time": np.arange(float(n))}, name=variable)


def _spec(data, filter_method="kalman", *, time_step=1.0, particles=2000, parameters=None, sigma=0.3, noise=0.5,
          initial=None, variable="level", **extra):
    table = {"method": filter_method, "process_noise": {"level": noise}, "initial_sd": initial or {"level": 0.7}}
    if filter_method == "particle":
        table["particles"] = particles
    return {"model": str(LINEAR), "seed": 5, "time": {"fit": [0, float(data["time"].max())], "time_step": time_step},
            "parameters": parameters or {},
            "observations": [{"variable": variable, "series": data, "sigma": sigma}], "state_space": table, **extra}


def _statsmodels_loglike(data, *, two_states=False, initial_sd=(0.7, 0.0)):
    import statsmodels.api as sm

    y = data.values
    if not two_states:
        mod = sm.tsa.statespace.MLEModel(y, k_states=1)
        mod.ssm["design"] = np.array([[1.0]])
        mod.ssm["transition"] = np.array([[1 - TRUTH["decay"]]])
        mod.ssm["state_intercept"] = np.array([TRUTH["intercept"]])
        mod.ssm["selection"] = np.array([[1.0]])
        mod.ssm["state_cov"] = np.array([[TRUTH["noise"] ** 2]])
        mod.ssm["obs_cov"] = np.array([[TRUTH["sigma"] ** 2]])
        mod.ssm.initialize_known(np.array([TRUTH["x0"]]), np.array([[initial_sd[0] ** 2]]))
        return float(mod.ssm.loglike())
    # Two states: level, and second level that follows it with a one-year lag; the sum is observed.
    mod = sm.tsa.statespace.MLEModel(y, k_states=2, k_posdef=1)
    mod.ssm["design"] = np.array([[1.0, 0.5]])
    mod.ssm["transition"] = np.array([[1 - TRUTH["decay"], 0.0], [1.0, 0.0]])
    mod.ssm["state_intercept"] = np.array([TRUTH["intercept"], 0.0])
    mod.ssm["selection"] = np.array([[1.0], [0.0]])
    mod.ssm["state_cov"] = np.array([[TRUTH["noise"] ** 2]])
    mod.ssm["obs_cov"] = np.array([[TRUTH["sigma"] ** 2]])
    mod.ssm.initialize_known(np.array([TRUTH["x0"], 0.0]), np.diag(np.asarray(initial_sd) ** 2))
    return float(mod.ssm.loglike())


def _loglike(spec_dict, seed=1):
    spec = load_spec(spec_dict)
    filt = StateSpaceFilter(Problem(spec), spec.state_space, seed)
    return float(filt.loglike(np.zeros((1, 0)))[0])


# --------------------------------------------------------------------------- the filters

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kalman_equals_statsmodels_on_a_linear_gaussian_model(seed):
    data = _linear_data(seed)
    assert _loglike(_spec(data)) == pytest.approx(_statsmodels_loglike(data), abs=1e-6)


def test_kalman_equals_statsmodels_with_two_states_and_a_combined_observation():
    data = _linear_data(4, variable="observed_sum")
    spec = _spec(data, variable="observed sum", initial={"level": 0.7, "second level": 0.4})
    assert _loglike(spec) == pytest.approx(_statsmodels_loglike(data, two_states=True, initial_sd=(0.7, 0.4)),
                                           abs=1e-6)


def test_particle_likelihood_is_within_monte_carlo_error_of_kalman():
    data = _linear_data(1)
    exact = _statsmodels_loglike(data)
    estimates = np.array([_loglike(_spec(data, "particle", particles=2000), seed=s) for s in range(12)])
    mc_sd = estimates.std(ddof=1)
    # A particle filter's log-likelihood is biased low by about half its variance (Jensen).
    assert abs(estimates.mean() + 0.5 * mc_sd**2 - exact) < 3 * mc_sd / math.sqrt(estimates.size) + 0.05
    assert mc_sd < 1.0


def test_particle_and_kalman_agree_with_several_euler_steps_per_observation():
    data = _linear_data(2)
    kalman = _loglike(_spec(data, time_step=0.25))
    estimates = np.array([_loglike(_spec(data, "particle", time_step=0.25, particles=2000), seed=s)
                          for s in range(8)])
    assert abs(estimates.mean() - kalman) < 4 * estimates.std(ddof=1) / math.sqrt(estimates.size) + 0.3


def test_common_random_numbers_make_the_particle_likelihood_repeatable():
    data = _linear_data(1)
    spec = _spec(data, "particle", particles=500)
    assert _loglike(spec, seed=7) == _loglike(spec, seed=7)
    assert _loglike(spec, seed=7) != _loglike(spec, seed=8)


def test_log_scale_noise_keeps_a_positive_stock_positive():
    data = _linear_data(1)
    spec = _spec(data, "particle", particles=200)
    spec["state_space"]["process_noise"] = {"level": {"sd": 3.0, "scale": "log"}}
    loaded = load_spec(spec)
    filt = StateSpaceFilter(Problem(loaded), loaded.state_space, 3)
    run = filt.run(np.zeros((1, 0)))
    assert np.all(run.filtered_lower[0] > 0)


# --------------------------------------------------------------------------- the stepper

@pytest.mark.parametrize("name", ["goodwin", "reformism"])
def test_stepper_without_noise_equals_the_kernel(name):
    from pysd_runner import compile_model, stepper_for
    from pysd_runner.kernel import clock_grid, kernel_for

    model = compile_model(MODELS / name / f"{name}.mdl")
    kernel, stepper = kernel_for(model), stepper_for(model)
    settings = {"initial_time": float(model.control["initial_time"]), "final_time": 30.0, "time_step": 1 / 64,
                "saveper": 1.0}
    times, record, _ = clock_grid(settings)
    outputs = ["wage_share", "employment_rate"]
    _, expected, ok, _ = kernel.run({}, 2, {}, settings, outputs)
    inputs = stepper.inputs({}, 2, {})
    states = np.zeros((2, len(stepper.states)))
    want = np.array([stepper.recordable.index(o) for o in outputs])
    got, previous = [], 0
    for j, k in enumerate(np.flatnonzero(record)):
        values, fine = stepper.advance(inputs, times, settings["time_step"], previous, k, states, init=j == 0,
                                       outputs=want)
        got.append(values)
        previous = k
    got = np.stack(got, axis=1)
    for i, name_ in enumerate(outputs):
        scale = np.max(np.abs(expected[name_]))
        np.testing.assert_allclose(got[:, :, i], expected[name_], rtol=0, atol=1e-12 * scale)


def test_stepper_noise_is_the_same_on_one_thread_or_two():
    from pysd_runner import Noise, compile_model, normal_table, stepper_for
    from pysd_runner.kernel import clock_grid

    model = compile_model(MODELS / "goodwin" / "goodwin.mdl")
    stepper = stepper_for(model)
    times, _, _ = clock_grid({"initial_time": 0.0, "final_time": 10.0, "time_step": 0.01, "saveper": 0.01})
    n = 400
    noise = Noise(np.array([0, 1]), np.full((n, 2), 0.05), np.array([False, True]), 99, np.arange(n))
    results = []
    for threads in (1, 2):
        inputs = stepper.inputs({}, n, {})
        states = np.zeros((n, len(stepper.states)))
        stepper.advance(inputs, times, 0.01, 0, 0, states, init=True)
        stepper.advance(inputs, times, 0.01, 0, 900, states, noise=noise, table=normal_table(1), threads=threads)
        results.append(states.copy())
    np.testing.assert_array_equal(results[0], results[1])
    assert results[0][:, 0].std() > 0.01  # the noise did move the members apart


# --------------------------------------------------------------------------- specs

@pytest.mark.parametrize("change, message", [
    (lambda s: s["state_space"].update(method="unscented"), "unknown filter 'unscented'"),
    (lambda s: s["state_space"].update(process_noise={"drift": 0.1}), "state_space.process_noise.drift"),
    (lambda s: s["state_space"].update(process_noise={}), "must name at least one stock"),
    (lambda s: s["state_space"].update(particles=100), "only applies to method = 'particle'"),
    (lambda s: s["state_space"].update(colour="red"), "state_space.colour: unknown key"),
    (lambda s: s["state_space"]["process_noise"].update(level={"sd": 0.1, "bounds": [0, 1]}), "not both"),
    (lambda s: s["state_space"]["process_noise"].update(level=-0.1), "cannot be negative"),
    (lambda s: s["observations"][0].update(error="ar1"), "open-loop error model"),
    (lambda s: s["observations"][0].update(sigma="estimate"), "needs the observation noise"),
    (lambda s: s.update(method={"name": "mcmc"}), "estimated by 'differential_evolution'"),
    (lambda s: s.update(method={"name": "if2"}), "'if2' (iterated filtering) needs state_space.method = 'particle'"),
    (lambda s: s.update(uncertainty={"method": "bootstrap"}), "'profile' intervals or 'none'"),
])
def test_bad_state_space_specs_are_named(change, message):
    spec = _spec(_linear_data(1))
    change(spec)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(spec)


def test_if2_without_a_state_space_table_is_refused():
    spec = _spec(_linear_data(1))
    del spec["state_space"]
    spec["parameters"] = {"decay": {"bounds": [0.01, 0.9]}}
    spec["method"] = {"name": "if2"}
    with pytest.raises(SpecError, match="needs a \\[state_space\\] table"):
        load_spec(spec)


# --------------------------------------------------------------------------- fits

def test_a_spec_without_free_parameters_evaluates_the_likelihood():
    data = _linear_data(3)
    fit = calibrate(_spec(data))
    assert fit.sizes["param"] == 0
    assert fit.attrs["loglike"] == pytest.approx(_statsmodels_loglike(data), abs=1e-6)
    assert float(fit["nll"]) == pytest.approx(-fit.attrs["loglike"])
    # Statistics of the one-step predictions are there, at the given values.
    assert np.isfinite(fit["one_step_rmse"].sel(period="fit")).all()


@pytest.fixture(scope="module")
def kalman_fit():
    data = _linear_data(11, n=81)
    spec = _spec(data, parameters={"decay": {"bounds": [0.01, 0.9]}, "intercept": {"bounds": [0.0, 3.0]}},
                 sigma={"bounds": [0.01, 2.0], "log": True}, noise={"bounds": [0.01, 2.0], "log": True},
                 method={"name": "differential_evolution", "popsize": 10, "maxiter": 60},
                 time={"fit": [0, 72], "holdout": [73, 80], "time_step": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calibrate(spec), data


def test_the_kalman_fit_finds_the_maximum_likelihood_of_statsmodels(kalman_fit):
    import statsmodels.api as sm

    fit, data = kalman_fit
    y = data.values[:73]

    class Linear(sm.tsa.statespace.MLEModel):
        def __init__(self, endog):
            super().__init__(endog, k_states=1)
            self.ssm["design"] = np.array([[1.0]])
            self.ssm["selection"] = np.array([[1.0]])
            self.ssm.initialize_known(np.array([TRUTH["x0"]]), np.array([[0.49]]))

        def update(self, params, **kwargs):
            params = super().update(params, **kwargs)
            self.ssm["transition", 0, 0] = 1 - params[0]
            self.ssm["state_intercept", 0] = params[1]
            self.ssm["obs_cov", 0, 0] = params[2] ** 2
            self.ssm["state_cov", 0, 0] = params[3] ** 2

        @property
        def start_params(self):
            return np.array([0.2, 1.0, 0.3, 0.5])

    reference = Linear(y).fit(disp=False, method="nm", maxiter=4000)
    reference = Linear(y).fit(reference.params, disp=False, method="bfgs")
    assert fit.attrs["loglike"] == pytest.approx(reference.llf, abs=0.02)
    assert fit.attrs["loglike"] >= reference.llf - 0.02


def test_the_kalman_fit_reports_its_outputs(kalman_fit):
    from statsmodels.stats.diagnostic import acorr_ljungbox

    fit, data = kalman_fit
    names = list(fit["param"].values)
    assert names == ["decay", "intercept", "sigma of level", "process noise of level"]
    assert list(fit["param_kind"].values) == ["model", "model", "sigma", "noise"]
    for name, truth in (("decay", 0.2), ("intercept", 1.0), ("sigma of level", 0.3), ("process noise of level", 0.5)):
        row = fit.sel(param=name)
        assert float(row["lower"]) < float(row["estimate"]) < float(row["upper"])
        assert float(row["lower"]) < truth < float(row["upper"]), name
    # One-step predictions in the fit window, a forecast with a widening band after it.
    pred, lo, hi = (fit[k].sel(series="level") for k in ("predicted", "predicted_lower", "predicted_upper"))
    assert np.isfinite(pred).all() and (lo < pred).all() and (pred < hi).all()
    width = (hi - lo).sel(time=slice(73, 80)).values
    assert np.all(np.diff(width) >= -1e-9)
    # The states: filtered and smoothed means with bands, flagged when they get noise.
    assert list(fit["stock"].values) == ["level", "second level"]
    assert bool(fit["process_noise"].sel(stock="level")) and not bool(fit["process_noise"].sel(stock="second level"))
    smoothed = fit["state_smoothed"].sel(stock="level", time=slice(0, 72))
    assert (fit["state_smoothed_lower"].sel(stock="level", time=slice(0, 72)) <= smoothed + 1e-12).all()
    # The smoother uses every observation: it follows the data more closely than the filter's prediction.
    y = data.values[:73]
    assert np.mean((smoothed.values - y) ** 2) < np.mean((pred.sel(time=slice(0, 72)).values - y) ** 2)
    # Whiteness statistics equal statsmodels' on the standardised one-step errors.
    e = fit["standardised_innovation"].sel(series="level", time=slice(0, 72)).values
    table = acorr_ljungbox(e, lags=4, return_df=True)
    np.testing.assert_allclose(fit["ljung_box_pvalue"].sel(series="level").values, table["lb_pvalue"].values)
    assert float(fit["one_step_ratio_to_persistence"].sel(series="level")) < 1
    assert fit.attrs["loglike"] == pytest.approx(-float(fit["nll"]))
    assert float(fit["aic"]) == pytest.approx(2 * 4 + 2 * float(fit["nll"]))
    assert "extended Kalman" in fit.attrs["objective"]


def test_a_filtered_fit_resumes_from_its_checkpoint(tmp_path):
    data = _linear_data(5)
    spec = _spec(data, parameters={"decay": {"bounds": [0.01, 0.9]}},
                 method={"name": "differential_evolution", "popsize": 6, "maxiter": 5},
                 uncertainty={"method": "none"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = calibrate(spec, checkpoint=tmp_path / "ck", remove_checkpoint=False)
        again = calibrate(spec, checkpoint=tmp_path / "ck", resume=True)
    assert again.attrs["resumed_batches"] > 0
    assert float(again["estimate"].sel(param="decay")) == float(first["estimate"].sel(param="decay"))


def test_if2_moves_the_swarm_to_the_likelihood_s_high_ground():
    data = _linear_data(3)
    spec = _spec(data, "particle", particles=300, parameters={"decay": {"bounds": [0.01, 0.9]}},
                 method={"name": "if2", "iterations": 30, "particles": 300}, uncertainty={"method": "none"})
    fit = calibrate(spec)
    estimate = float(fit["estimate"].sel(param="decay"))
    # The Kalman likelihood (exact here) at IF2's estimate is near its maximum over a fine grid.
    grid = np.linspace(0.05, 0.6, 56)
    exact = [_loglike(_spec(data, parameters={}, fixed={"decay": float(v)})) for v in grid]
    at_estimate = _loglike(_spec(data, parameters={}, fixed={"decay": estimate}))
    assert at_estimate > max(exact) - 2.0
    assert "IF2" in str(fit["opt_optimizer"].values)


def test_the_fit_figures_show_the_filter_beside_the_open_loop_run(kalman_fit):
    from dashboards import figures

    fit, _ = kalman_fit
    fig = figures.fit_figure(fit)
    names = {t.name for t in fig.data}
    assert {"one-step-ahead prediction (filter)", "95% one-step band"} <= names
    predicted = next(t for t in fig.data if t.name == "one-step-ahead prediction (filter)")
    np.testing.assert_array_equal(predicted.y, fit["predicted"].sel(series="level").values)
    assert "one step" in fig.layout.annotations[0].text
    states = figures.filtered_states_figure(fit)
    smoothed = next(t for t in states.data if t.name == "smoothed (all observations)")
    np.testing.assert_array_equal(smoothed.y, fit["state_smoothed"].sel(stock="level").values)
    # By default only the stocks that receive process noise are drawn.
    assert [a.text for a in states.layout.annotations if a.text != "forecast"] == ["level"]


def test_crisis_calibrate_runs_a_filtered_spec_and_prints_the_one_step_table(tmp_path):
    from click.testing import CliRunner

    from pysd_runner.cli import main

    data = _linear_data(2, n=41)
    csv = tmp_path / "level.csv"
    csv.write_text("time,level\n" + "\n".join(f"{t:g},{float(v)!r}" for t, v in zip(data["time"].values, data.values)))
    spec = tmp_path / "filtered.toml"
    spec.write_text(f'''model = "{LINEAR}"
seed = 3
[time]
fit = [0, 32]
holdout = [33, 40]
time_step = 1
[parameters.decay]
bounds = [0.01, 0.9]
[state_space]
method = "kalman"
[state_space.process_noise]
level = {{ bounds = [0.01, 2], log = true }}
[state_space.initial_sd]
level = 0.7
[[observations]]
variable = "level"
series = "csv:{csv}#level"
sigma = 0.3
[method]
name = "differential_evolution"
popsize = 8
maxiter = 20
''')
    out = tmp_path / "fit.nc"
    result = CliRunner().invoke(main, ["calibrate", str(spec), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "one-step-ahead" in result.output and "LB p(4)" in result.output
    assert "filter: one-step-ahead errors" in result.output
    assert "process noise of level" in result.output
    bad = spec.read_text().replace('method = "kalman"', 'method = "kalmann"')
    spec.write_text(bad)
    result = CliRunner().invoke(main, ["calibrate", str(spec), "--output", str(tmp_path / "again.nc")])
    assert result.exit_code == 1
    assert "state_space.method: unknown filter 'kalmann'" in result.output and "Traceback" not in result.output


def test_the_report_adds_the_filtered_states_panel_for_a_filtered_fit(kalman_fit, tmp_path):
    from dashboards.report import build_report
    from pysd_runner import run

    fit, _ = kalman_fit
    runs = run(LINEAR, final_time=10)
    text = build_report(runs, fit=fit)
    assert 'id="panel-fit"' in text and 'id="panel-states"' in text
    assert "one-step-ahead prediction (filter)" in text and "smoothed (all observations)" in text
    plain = build_report(runs, fit=fit.drop_vars([v for v in fit.data_vars if v.startswith("state_")]))
    assert 'id="panel-states"' not in plain


def test_the_report_refuses_a_fit_of_another_model(kalman_fit):
    from dashboards import DashboardInputError
    from dashboards.report import build_report
    from pysd_runner import run

    fit, _ = kalman_fit
    other = run(MODELS / "goodwin" / "goodwin.mdl", final_time=5)
    with pytest.raises(DashboardInputError, match=r"fit is of model .*linear_gaussian\.mdl.*runs of .*goodwin\.mdl"):
        build_report(other, fit=fit)
