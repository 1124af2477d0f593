"""Fixtures for the dashboards tests: short Goodwin runs, a lever grid, synthetic fit,
ensemble, loop and sensitivity Datasets, and a headless chromium."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr

from ..conftest import MODELS
from .browser import OUTPUT, in_ci, launch, missing_browser

GOODWIN = MODELS / "goodwin" / "goodwin.mdl"
#: Short runs keep the suite fast; the figures do not depend on the horizon.
SHORT = {"final_time": 30, "time_step": 0.05}
#: Named loops for a copy of the Goodwin model (its own loops.toml names only B1): the
#: profit squeeze, and the wage share's own growth loop, whose polarity the structure leaves open.
GOODWIN_LOOPS_TOML = """\
[B1]
name = "Profit squeeze"
polarity = "B"
variables = ["employment rate", "wage growth rate", "wage share", "profit rate", "employment growth rate"]

[S1]
name = "Wage share growth"
variables = ["wage share", "change in wage share"]
"""
GRID_VALUES = {"phillips slope": [1.0, 1.1, 1.25, 1.4, 1.5], "phillips intercept": [1.0, 1.05, 1.13, 1.2, 1.3]}


@pytest.fixture(scope="session")
def goodwin():
    from pysd_runner import compile_model

    return compile_model(GOODWIN)


@pytest.fixture(scope="session")
def goodwin_loops_path(tmp_path_factory):
    """A copy of the Goodwin model with a loops.toml beside it (loop switches in the app)."""
    folder = tmp_path_factory.mktemp("goodwin-loops")
    path = folder / "goodwin.mdl"
    shutil.copyfile(GOODWIN, path)
    (folder / "loops.toml").write_text(GOODWIN_LOOPS_TOML)
    return path


@pytest.fixture(scope="session")
def goodwin_loops(goodwin_loops_path):
    from pysd_runner import compile_model

    return compile_model(goodwin_loops_path)


@pytest.fixture(scope="session")
def runs(goodwin):
    from pysd_runner import run_scenarios

    return run_scenarios(goodwin, ["baseline", "small_orbit", "strong_unions"], **SHORT)


@pytest.fixture(scope="session")
def single_run(goodwin):
    from pysd_runner import run

    return run(goodwin, scenario="baseline", **SHORT)


@pytest.fixture(scope="session")
def grid(goodwin):
    from dashboards.grid import build_lever_grid

    return build_lever_grid(goodwin, list(GRID_VALUES), values=GRID_VALUES, scenarios=["baseline", "small_orbit"],
                            variables=["wage_share", "employment_rate", "profit_rate"], **SHORT)


@pytest.fixture(scope="session")
def fit(single_run):
    """A fit result as the calibration layer will write it (see dashboards.figures.fit_figure)."""
    rng = np.random.default_rng(0)
    series = ["wage_share", "employment_rate"]
    fitted = np.stack([single_run[s].values for s in series])
    observed = fitted + rng.normal(0, 0.005, fitted.shape)
    observed[:, np.arange(observed.shape[1]) % 10 != 0] = np.nan  # data are sparser than model output
    return xr.Dataset(
        {
            "observed": (("series", "time"), observed, {"long_name": "observed"}),
            "fitted": (("series", "time"), fitted, {"long_name": "fitted"}),
            "fitted_lower": (("series", "time"), fitted - 0.01),
            "fitted_upper": (("series", "time"), fitted + 0.01),
        },
        coords={
            "series": series, "time": single_run["time"],
            "long_name": ("series", ["wage share", "employment rate"]), "units": ("series", ["Dmnl", "Dmnl"]),
        },
        attrs={"holdout_start": 20.0, "band_level": 0.9},
    )


@pytest.fixture(scope="session")
def ensemble(goodwin):
    """Eight members over the Phillips slope, one marked not ok, stacked along ``run``."""
    from pysd_runner import run

    slopes = np.linspace(1.1, 1.45, 8)
    members = [run(goodwin, {"phillips slope": s}, variables=["wage_share", "employment_rate"], **SHORT) for s in slopes]
    ds = xr.concat([m.drop_attrs(deep=False) for m in members], dim="run")
    ds = ds.assign_coords(run=np.arange(8), phillips_slope=("run", slopes))
    ok = np.ones(8, dtype=bool)
    ok[3] = False
    ds["wage_share"][3] = np.nan
    ds["ok"] = ("run", ok)
    ds.attrs = members[0].attrs
    return ds


@pytest.fixture(scope="session")
def loops(single_run):
    time = single_run["time"].values
    balancing = np.cos(time / 3.0) ** 2
    scores = np.stack([-balancing, 1 - balancing])
    return xr.Dataset(
        {"relative_score": (("loop", "time"), scores, {"long_name": "relative loop score", "units": "Dmnl"})},
        coords={"loop": ["B1", "R1"], "time": single_run["time"], "name": ("loop", ["B1 Profit squeeze", "R1 Accumulation"]),
                "polarity": ("loop", ["B", "R"])},
    )


@pytest.fixture(scope="session")
def sensitivity():
    params = ["phillips_slope", "phillips_intercept", "capital_output_ratio"]
    return xr.Dataset(
        {"S1": ("param", [0.2, 0.5, 0.1]), "ST": ("param", [0.3, 0.6, 0.15]),
         "S1_conf": ("param", [0.02, 0.03, 0.01]), "ST_conf": ("param", [0.03, 0.04, 0.02])},
        coords={"param": params},
    )


@pytest.fixture(scope="session")
def full_report(tmp_path_factory, runs, grid, fit, ensemble, loops, sensitivity):
    from dashboards.report import write_report

    import json

    path = tmp_path_factory.mktemp("report") / "report.html"
    # Every panel, the opening story included: the scenarios declare a crisis window.
    events = json.dumps([{"name": "crisis", "start": 10.0, "end": 15.0, "label": "crisis window"}])
    told = runs.copy()
    told.coords["scenario_events"] = ("scenario", [events] * told.sizes["scenario"])
    story = {"headline": "wage share", "against": "baseline",
             "choices": {"small_orbit": "a small orbit", "strong_unions": "strong unions"}}
    return write_report(path, told, fit=fit, ensemble=ensemble, loops=loops, grid=grid, sensitivity=sensitivity,
                        model=GOODWIN, story=story)


@pytest.fixture(scope="session")
def browser():
    """A headless Debian chromium. In CI a missing browser fails the tests; elsewhere they skip."""
    reason = missing_browser()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true and the browser tests cannot run: {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()
