"""Observations matched to concepts: measurement equations (data = scale x model + offset),
constants read off the data (initial states), plausibility in the fit, and the comparison
with a fitted straight line."""

from __future__ import annotations

import json
import textwrap
import warnings

import numpy as np
import pytest

from calibration import CalibrationWarning, SpecError, calibrate, load_spec
from calibration.data import load_series
from calibration.problem import Problem
from calibration.statistics import linear_trend_ssr

from ..conftest import MODELS
from .conftest import GOODWIN_TRUTH, goodwin_spec

SCALE, OFFSET = 0.8, 0.05


def _measured_spec(goodwin, seed, scale, offset):
    """Goodwin's known-answer spec whose wage-share data were measured as 0.8 x model + 0.05."""
    spec = goodwin_spec(goodwin, seed, noise=0.002)
    obs = spec["observations"][0]
    obs["series"] = obs["series"] * SCALE + OFFSET
    obs["scale"], obs["offset"] = scale, offset
    return spec


def test_free_scale_and_offset_are_recovered_with_the_model_parameters(goodwin):
    free_scale = {"bounds": [0.5, 1.5], "reason": "the data count a different aggregate"}
    free_offset = {"bounds": [-0.2, 0.2], "reason": "the data include a part the model leaves out"}
    fit = calibrate(_measured_spec(goodwin, 3, free_scale, free_offset))
    expected = {**GOODWIN_TRUTH, "scale of wage_share": SCALE, "offset of wage_share": OFFSET}
    assert list(fit["param"].values) == ["phillips slope", "phillips intercept", "scale of wage_share", "offset of wage_share"]
    for name, value in expected.items():
        row = fit.sel(param=name)
        assert float(row["lower"]) <= value <= float(row["upper"]), name
        # Scale and offset trade off against each other: each within half its interval's width.
        assert abs(float(row["estimate"]) - value) < 0.5 * float(row["upper"] - row["lower"]), name
    assert fit["identified"].all()
    # The terms count as parameters in AIC: 4 free values and 2 estimated error scales.
    assert float(fit["aic"]) == pytest.approx(2 * 6 + 2 * float(fit["nll"]))
    assert float(fit["measurement_scale"][0]) == float(fit["estimate"].sel(param="scale of wage_share"))
    assert "the data count a different aggregate" in str(fit["measurement_reason"].values[0])
    assert (fit["r2"].sel(period="fit") > 0.9).all()


def test_fixed_terms_apply_and_a_wrong_one_shows(goodwin):
    right = calibrate(_measured_spec(goodwin, 4, {"value": SCALE, "reason": "r"}, {"value": OFFSET, "reason": "r"}))
    assert float(right["estimate"].sel(param="phillips slope")) == pytest.approx(1.3, rel=0.05)
    np.testing.assert_allclose(right["fitted"][0] - right["observed"][0], -right["residual"][0])
    assert float(right["measurement_offset"][0]) == OFFSET
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        wrong = calibrate(_measured_spec(goodwin, 4, 1.0, 0.0))  # the identity on data measured otherwise
    assert float(wrong["r2"].sel(series="wage_share", period="fit")) < float(right["r2"].sel(series="wage_share", period="fit"))


@pytest.mark.parametrize("term, value, message", [
    ("scale", 0.8, r"observations\[0\].scale: 0.8 needs a reason"),
    ("offset", {"bounds": [-1, 1]}, r"observations\[0\].offset.reason: is required for a free offset"),
    ("scale", {"bounds": [-1, 1], "reason": "x"}, r"a scale must stay above zero"),
    ("scale", {"value": 2, "bounds": [1, 3], "reason": "x"}, "either value .* or bounds"),
    ("offset", {"value": 0.1, "reason": "x", "log": True}, "log only apply to a free term"),
    ("offset", {"bounds": [0, 1], "reason": "x", "step": 1}, r"offset.step: unknown key"),
])
def test_bad_measurement_terms_name_the_key(goodwin, term, value, message):
    spec = goodwin_spec(goodwin, 1)
    spec["observations"][0][term] = value
    with pytest.raises(SpecError, match=message):
        load_spec(spec)


SPEC = """
model = "{model}"
seed = 1

[time]
origin = 1950
fit = [1950, 1980]

[parameters."phillips slope"]
bounds = [0.8, 2.0]

[fixed]
"initial wage share" = {initial}

[[observations]]
variable = "wage share"
series = "pwt.labour_share"
country = "US"
"""


def _spec_file(tmp_path, initial: str):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(SPEC).replace("{model}", str(MODELS / "goodwin" / "goodwin.mdl"))
                    .replace("{initial}", initial))
    return path


def test_a_constant_can_be_read_off_the_data(tmp_path):
    spec = load_spec(_spec_file(tmp_path, '{ series = "pwt.labour_share", country = "US", at = 1950 }'))
    expected = float(load_series("pwt.labour_share", country="US").sel(time=1950))
    assert spec.fixed["initial wage share"] == expected
    assert spec.fixed_sources["initial wage share"] == "pwt.labour_share US at 1950"
    # `at` defaults to the time origin; the value and its source reach the fit's attrs.
    default = load_spec(_spec_file(tmp_path, '{ series = "pwt.labour_share", country = "US" }'))
    assert default.fixed["initial wage share"] == expected


@pytest.mark.parametrize("initial, message", [
    ('{ series = "pwt.labour_share", country = "US", at = 1900 }', "has no value at 1900 .*spans 1950-2019"),
    ('{ series = "pwt.labour_share" }', "is a panel; give a country"),
    ('{ series = "pwt.labour_shares", country = "US" }', "Did you mean 'pwt.labour_share'"),
    ('{ country = "US" }', r"fixed.initial wage share.series: is required"),
    ('{ series = "pwt.labour_share", country = "US", transform = "scale:10" }', "gives? 6.28.*outside the Vensim range"),
    ('{ series = "pwt.labour_share", country = "US", when = 1950 }', "unknown key"),
])
def test_bad_data_constants_name_the_key(tmp_path, initial, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_spec_file(tmp_path, initial))


def test_candidates_leaving_plausible_ranges_are_penalised_and_counted(goodwin):
    """Goodwin at phillips slope 1.2 overshoots full employment (plausible.toml says the
    employment rate stays within [0, 1]): data from that run pull an unconstrained fit onto
    it, the penalised fit stops at the range, and both say how many candidates left it."""
    spec = goodwin_spec(goodwin, 5, params={"phillips slope": {"bounds": [0.8, 2.0]}})
    from .conftest import synthetic

    data = synthetic(goodwin, {"phillips slope": 1.2}, ["wage_share", "employment_rate"], seed=5, noise=0.002,
                     origin=1950, final_time=30, time_step=0.1)
    spec["observations"][0]["series"] = data["wage_share"]
    spec["observations"][1]["series"] = data["employment_rate"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignored = calibrate({**spec, "plausibility": "ignore"})
        penalised = calibrate(spec)
    assert float(ignored["estimate"].sel(param="phillips slope")) == pytest.approx(1.2, rel=0.01)
    assert "employment rate" in str(ignored["opt_best_implausible"].values)
    assert any("leaves a plausible range" in str(w.message) for w in caught)
    # Penalised: the estimate moves to where the run stays within [0, 1], or on its edge within
    # the penalty's tolerance (a thousandth of the range's width).
    best = str(penalised["opt_best_implausible"].values)
    assert best == "" or best.startswith("along the edge: ")
    assert float(penalised["estimate"].sel(param="phillips slope")) > 1.2
    assert np.nanmax(penalised["fitted"].sel(series="employment_rate").values) <= 1.0 + 1e-3
    for fit in (ignored, penalised):
        by_range = json.loads(str(fit["opt_implausible_by_range"].values))
        assert int(fit["opt_n_implausible"]) == sum(by_range.values()) > 0
        assert set(by_range) <= {"wage share", "employment rate"}
        assert 0 < int(fit["opt_n_implausible"]) <= int(fit["opt_n_candidates"])


def test_status_and_exceedance_per_member(goodwin):
    problem = Problem(load_spec(goodwin_spec(goodwin, 1)))
    sims, status, exceedance = problem.simulate_with_status(np.array([[1.3, 1.15], [1.2, 1.15]]))
    assert status[0] == 0 and exceedance[0] == 0
    # Slope 1.2: employment passes 1 first, then the wage share; the exceedance is the furthest
    # either goes above 1 (ranges of width 1), as a plain run at the same settings shows.
    from pysd_runner import run

    names = [r.name for r in problem.ranges]
    assert names[int(status[1]) - 1] == "employment rate"
    plain = run(goodwin, {"phillips slope": 1.2, "phillips intercept": 1.15}, **problem.settings,
                variables=["wage_share", "employment_rate"], check_ranges=False)
    furthest = max(float(plain["wage_share"].max()), float(plain["employment_rate"].max())) - 1
    assert exceedance[1] == pytest.approx(furthest, rel=1e-9)
    assert np.isfinite(sims[0]).all() and np.isfinite(sims[1]).all()


def test_linear_trend_ssr_known_answers():
    t = np.arange(1950.0, 2000.0)
    assert linear_trend_ssr(t, 3 + 0.1 * t) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=t.size)
    line = 2 - 0.5 * (t - 1975)
    slope, intercept = np.polyfit(t, line + noise, 1)
    expected = float(np.sum((line + noise - (slope * t + intercept)) ** 2))
    assert linear_trend_ssr(t, line + noise) == pytest.approx(expected, rel=1e-9)
    # A U-shaped series: a line leaves most of it unexplained.
    u = (t - t.mean()) ** 2  # symmetric about the centre: the best line is flat
    assert linear_trend_ssr(t, u) == pytest.approx(np.sum((u - u.mean()) ** 2), rel=1e-9)


def test_fit_reports_the_ratio_to_a_fitted_trend(goodwin):
    fit = calibrate(goodwin_spec(goodwin, 2))
    for s in fit["series"].values:
        target = fit.sel(series=s)
        times = fit["time"].values[np.isfinite(target["observed"].values) & (fit["time"].values <= 1975)]
        observed = target["observed"].sel(time=times).values
        residual = target["residual"].sel(time=times).values
        assert float(target["trend_ssr"]) == pytest.approx(linear_trend_ssr(times, observed))
        assert float(target["ssr_ratio_to_trend"]) == pytest.approx(np.sum(residual**2) / linear_trend_ssr(times,
                                                                                                      observed))
        # Goodwin's cycles are no straight line: the model explains far more than a trend.
        assert float(target["ssr_ratio_to_trend"]) < 0.2


def _two_country_spec(goodwin):
    import xarray as xr

    from .conftest import synthetic

    panels = []
    for code, slope in {"AAA": 1.2, "BBB": 1.4}.items():
        data = synthetic(goodwin, {"phillips slope": slope}, ["wage_share"], seed=len(panels), noise=0.003,
                         origin=1950, final_time=30, time_step=0.1)["wage_share"]
        panels.append(data.expand_dims(country=[code]))
    panel = xr.concat(panels, dim="country").transpose("time", "country")
    return {"model": goodwin, "seed": 1, "countries": ["AAA", "BBB"],
            "time": {"origin": 1950, "time_step": 0.1, "fit": [1950, 1980]},
            "parameters": {"phillips slope": {"bounds": [0.8, 2.0]}},
            "observations": [{"variable": "wage share", "series": panel.rename("wage_share")}],
            "method": {"name": "least_squares", "n_starts": 1}, "uncertainty": {"method": "none"}}


def test_counts_are_per_country_and_a_resumed_fit_reports_the_same(goodwin, tmp_path):
    from dashboards.figures import fit_figure

    spec = _two_country_spec(goodwin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        fit = calibrate(spec, checkpoint=tmp_path / "ck", remove_checkpoint=False)
        resumed = calibrate(spec, checkpoint=tmp_path / "ck", resume=True)
    assert resumed.attrs["resumed_batches"] > 0
    for name in ("opt_n_candidates", "opt_n_implausible", "opt_implausible_by_range"):
        assert list(resumed[name].values) == list(fit[name].values), name
    # Each country counts its own candidates: together they are every evaluation, once.
    assert int(fit["opt_n_candidates"].sum()) == fit.attrs["n_evaluations"]
    assert json.loads(str(fit["opt_implausible_by_range"].sel(country="AAA").values))
    # The report's fit panel draws a multi-country fit (no per-panel R2 with a country dim left).
    fig = fit_figure(fit.sel(country="AAA"))
    assert "R²" in fig.layout.annotations[0].text


def test_the_fingerprint_holds_what_the_spec_resolves(goodwin):
    from calibration.fit import _fingerprint

    spec = load_spec(goodwin_spec(goodwin, 1))
    problem = Problem(spec)
    before = _fingerprint(spec, [problem], 1)
    spec.fixed = {"initial wage share": 0.7}  # as a data series that changed would give
    assert _fingerprint(spec, [problem], 1) != before
    spec.fixed = {}
    assert _fingerprint(spec, [problem], 1) == before
    spec.plausible = [problem.ranges[0].__class__("employment rate", "employment_rate", 0.0, 0.95, "narrower")]
    assert _fingerprint(spec, [Problem(spec)], 1) != before


def test_ignored_ranges_keep_the_bands_and_say_so(goodwin):
    """With plausibility = "ignore", draws that overshoot still make the bands, and the
    printed fit says they were only counted."""
    from calibration.commands import fit_table

    from .conftest import synthetic

    spec = goodwin_spec(goodwin, 5, params={"phillips slope": {"bounds": [0.8, 2.0]}})
    data = synthetic(goodwin, {"phillips slope": 1.2}, ["wage_share", "employment_rate"], seed=5, noise=0.002,
                     origin=1950, final_time=30, time_step=0.1)
    spec["observations"][0]["series"] = data["wage_share"]
    spec["observations"][1]["series"] = data["employment_rate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        fit = calibrate({**spec, "plausibility": "ignore"})
    band = fit["fitted_lower"].sel(series="employment_rate").values
    assert np.isfinite(band).mean() > 0.9
    text = "\n".join(fit_table(fit))
    assert "counted but not penalised" in text and "were penalised" not in text
    # nll and AIC are the likelihood's; the penalty, 0 here, is reported beside them.
    assert float(fit["opt_plausibility_penalty"]) == 0


def test_data_constants_are_refused_with_countries(tmp_path):
    text = textwrap.dedent(SPEC).replace("{model}", str(MODELS / "goodwin" / "goodwin.mdl")).replace(
        "{initial}", '{ series = "pwt.labour_share", country = "US" }').replace('country = "US"\n', "", 1)
    text = text.replace('seed = 1\n', 'seed = 1\ncountries = ["US", "JP"]\n')
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"fixed.initial wage share: a value read off a data series would hold for "
                                        r"every country"):
        load_spec(path)
