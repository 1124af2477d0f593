"""The report and the app in a real headless chromium (Debian's, driven by Playwright).

Screenshots go to tests/output/ for reviewers. Without chromium or playwright these
tests skip, except in CI (CI=true), where they fail: see the ``browser`` fixture.
"""

from __future__ import annotations

import time
from pathlib import Path
import tomllib

import numpy as np
import pytest

from dashboards.app import make_app
from dashboards.report import PANELS, write_report
from pysd_runner import compile_model, run

from ..conftest import FIXTURES
from .browser import OUTPUT, Watch, serve
from .conftest import GOODWIN, SHORT

#: The y values of every trace of a Plotly graph div, as plotly.js holds them after decoding.
TRACES = """(selector) => {
    const root = document.querySelector(selector);
    const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
    return gd._fullData.map(t => Array.from(t.y || []));
}"""
#: Remember a graph's data in the page, to wait for it to change (compared in JavaScript:
#: Python and JavaScript write some numbers differently, e.g. 1e-05 and 0.00001).
REMEMBER = """(selector) => {
    const root = document.querySelector(selector);
    const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
    window.__remembered = JSON.stringify(gd._fullData.map(t => Array.from(t.y || [])));
}"""
CHANGED = """(selector) => {
    const root = document.querySelector(selector);
    const gd = root && (root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot'));
    if (!gd || !gd._fullData) { return false; }
    return JSON.stringify(gd._fullData.map(t => Array.from(t.y || []))) !== window.__remembered;
}"""
#: Whether a lever's slider shows a value (Dash writes a dict id as JSON with sorted keys).
SLIDER_AT = """([name, value]) => {
    const root = document.getElementById(JSON.stringify({name: name, type: 'lever'}));
    const slider = root && root.querySelector('[role=slider]');
    return slider !== null && slider.getAttribute('aria-valuenow') === value;
}"""
HOSTILE_DESCRIPTION = "</dd><script>window.__xss = 5</script> & more"


def _remember(page, selector):
    page.evaluate(REMEMBER, selector)
    return page.evaluate(TRACES, selector)


def _wait_changed(page, selector):
    """Wait until the graph's data differ from what :func:`_remember` saw, and return them."""
    page.wait_for_function(CHANGED, arg=selector, timeout=20_000)
    return page.evaluate(TRACES, selector)


# --------------------------------------------------------------------------- the report

def test_report_opens_offline_shows_every_panel_and_its_sliders_move_the_data(page, full_report, grid):
    watch = Watch().attach(page)
    url = full_report.as_uri()
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)  # the first view is drawn
    assert page.locator("#plot-trajectories .main-svg").count() > 0
    page.wait_for_selector("body[data-complete=true]", timeout=20_000)  # and then the rest
    # "states" appears only with a state-space fit (tests/calibration/test_state_space.py builds one).
    for key in [k for k in PANELS if k != "states"]:
        panel = page.locator(f"#panel-{key}")
        assert panel.is_visible(), key
        if key == "variables":
            assert panel.locator("tbody tr").count() == 16
        elif key == "live":  # the model runs in the page and draws on canvas
            page.wait_for_function("() => window.crisis && window.crisis.lastDraw !== null")
            assert panel.locator("#figure canvas").count() > 0
        else:
            assert panel.locator(".main-svg").count() > 0, f"panel {key} drew no figure"
    page.screenshot(path=OUTPUT / "report.png", full_page=True)

    _remember(page, "#plot-grid")
    page.focus("#lever-0")
    page.keyboard.press("ArrowRight")
    _wait_changed(page, "#plot-grid")
    after = _remember(page, "#plot-grid")
    expected = grid["wage_share"].sel(scenario="baseline").isel(phillips_slope=3, phillips_intercept=2)
    np.testing.assert_allclose(after[0], expected.values, rtol=1e-6)
    assert page.inner_text("#lever-0-value") == "1.4"
    page.select_option("#grid-scenario", "small_orbit")
    unions = _wait_changed(page, "#plot-grid")
    expected = grid["wage_share"].sel(scenario="small_orbit").isel(phillips_slope=3, phillips_intercept=2)
    np.testing.assert_allclose(unions[0], expected.values, rtol=1e-6)

    page.uncheck("input.scenario-toggle[value=small_orbit]")
    hidden = page.evaluate("""() => document.getElementById('plot-trajectories').data
        .filter(t => t.meta.scenario === 'small_orbit').every(t => t.visible === false)""")
    assert hidden

    page.fill("#table-search", "wage share")
    visible = page.locator("#variables-table tbody tr:visible td:nth-child(2)").all_inner_texts()
    assert "wage_share" in visible and "employment_rate" not in visible
    assert page.inner_text("#table-count") == f"{len(visible)} of 16 variables"
    page.screenshot(path=OUTPUT / "report-after-interaction.png", full_page=True)

    assert watch.errors == []
    # Itself, and the live levers' engine: a Worker made in the page from a blob: URL.
    assert [u for u in watch.requests if not u.startswith("blob:")] == [url], "the report must not request anything but itself"
    assert all(u.startswith("blob:") for u in watch.requests[1:])


def test_report_first_screen_is_the_story_figure(page, full_report):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(full_report.as_uri())
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    box = page.locator("#plot-crossroads").bounding_box()
    # Drawn in the first view, and most of it on the first screen.
    assert page.locator("#plot-crossroads[data-drawn]").count() == 1
    assert box["y"] < 400 and box["y"] + 0.6 * box["height"] < 800, box
    page.screenshot(path=OUTPUT / "report-first-screen.png")


def test_report_figures_download_as_png_svg_and_csv(page, full_report, runs):
    import csv
    import io

    page.goto(full_report.as_uri())
    page.wait_for_selector("body[data-complete=true]", timeout=20_000)
    drawn = page.locator("[data-figure][data-drawn]").count()
    assert page.locator(".downloads").count() == drawn > 0
    bar = page.locator("#panel-trajectories .downloads")
    with page.expect_download() as info:
        bar.locator("button[data-download=csv]").click()
    download = info.value
    assert download.suggested_filename == "trajectories.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    # Every point of every trace, with its scenario and variable: the run's own numbers.
    wage = [r for r in rows if r["scenario"] == "baseline" and r["variable"] == "wage_share"]
    np.testing.assert_allclose([float(r["y"]) for r in wage], runs["wage_share"].sel(scenario="baseline").values,
                               rtol=1e-12)
    np.testing.assert_allclose([float(r["x"]) for r in wage], runs["time"].values, rtol=1e-12)
    for kind, start in (("svg", b"<svg"), ("png", b"\x89PNG")):
        with page.expect_download() as info:
            bar.locator(f"button[data-download={kind}]").click()
        download = info.value
        assert download.suggested_filename == f"trajectories.{kind}"
        assert Path(download.path()).read_bytes()[:4] == start[:4], kind


def test_report_shows_html_in_model_documentation_as_text(page, tmp_path):
    model = compile_model(FIXTURES / "html_docs.mdl")
    scenario = tmp_path / "hostile.toml"
    scenario.write_text(f'description = "{HOSTILE_DESCRIPTION}"\n[params]\n"growth rate" = 0.3\n')
    report = write_report(tmp_path / "hostile.html", run(model, scenario=scenario))
    watch = Watch().attach(page)
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-complete=true]", timeout=20_000)
    assert page.evaluate("() => window.__xss") is None
    page.click("#scenario-selector summary")  # the descriptions fold away below the toggles
    assert HOSTILE_DESCRIPTION in page.inner_text("#scenario-selector")
    table = page.inner_text("#variables-table")
    model = compile_model(FIXTURES / "html_docs.mdl")
    for element in (model.elements["stock"], model.elements["inflow"]):
        assert element.comment in table  # shown exactly as written
    assert page.locator("#variables-table b, #variables-table img, #variables-table i").count() == 0
    page.screenshot(path=OUTPUT / "report-html-in-docs.png", full_page=True)
    assert watch.errors == [] and watch.requests == [report.as_uri()]


# --------------------------------------------------------------------------- the app

@pytest.fixture(scope="module")
def short_scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("app") / "short.toml"
    path.write_text('description = "The Goodwin baseline over a short horizon."\n[time]\n'
                    f'final_time = {SHORT["final_time"]}\ntime_step = {SHORT["time_step"]}\n')
    return path


@pytest.fixture(scope="module")
def app_url(short_scenario):
    with serve(make_app(GOODWIN, scenario=short_scenario)) as url:
        yield url


def _slider(page, py_name):
    return page.locator(f'[id=\'{{"name":"{py_name}","type":"lever"}}\'] [role=slider]')


def test_app_reruns_on_slider_moves_pins_runs_and_keeps_the_view_in_the_address(page, app_url):
    watch = Watch().attach(page)
    page.goto(app_url + "?phillips_slope=1.4&capital_output_ratio=99")
    page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
    page.wait_for_function("() => document.getElementById('message').innerText.includes('outside its range')")
    assert "99 for 'capital output ratio' is outside its range [1, 6]; kept 3" in page.inner_text("#message")
    assert _slider(page, "phillips_slope").get_attribute("aria-valuenow") == "1.4"
    assert _slider(page, "capital_output_ratio").get_attribute("aria-valuenow") == "3"
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.4'")

    _remember(page, "#trajectories")
    _slider(page, "phillips_slope").focus()
    page.keyboard.press("ArrowRight")
    moved = _wait_changed(page, "#trajectories")
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.41'")
    assert page.inner_text("#message") == ""

    page.click("#pin")
    page.wait_for_selector("#pin-list li")
    assert page.inner_text("#pin-list") == "pin 1: phillips slope 1.41"
    pinned = page.wait_for_function(
        "() => document.querySelector('#trajectories .js-plotly-plot').data.some(t => t.meta.scenario.startsWith('pin 1'))")
    assert pinned
    _remember(page, "#trajectories")
    _slider(page, "phillips_slope").focus()
    page.keyboard.press("ArrowRight")
    with_pin = _wait_changed(page, "#trajectories")
    metas = page.evaluate("() => document.querySelector('#trajectories .js-plotly-plot').data.map(t => t.meta.scenario)")
    assert metas.count("current") == metas.count("pin 1: phillips slope 1.41") == len(moved)
    pin_traces = [y for y, m in zip(with_pin, metas) if m.startswith("pin 1")]
    assert pin_traces == moved, "the pinned run stays as it was pinned"
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.42&pin=phillips_slope:1.41'")
    page.screenshot(path=OUTPUT / "app.png", full_page=True)

    # A link reproduces the view: the same address in a fresh page.
    link = page.url
    page.goto(link)
    page.wait_for_selector("#pin-list li", timeout=30_000)
    assert _slider(page, "phillips_slope").get_attribute("aria-valuenow") == "1.42"
    assert page.inner_text("#pin-list") == "pin 1: phillips slope 1.41"

    with page.expect_download() as download:
        page.click("#export")
    exported = tomllib.loads(open(download.value.path(), encoding="utf-8").read())
    assert exported["params"] == {"phillips slope": 1.42}
    assert exported["time"] == {"final_time": SHORT["final_time"], "time_step": SHORT["time_step"]}

    page.click("#reset")
    page.wait_for_function("() => window.location.search === '?pin=phillips_slope:1.41'")
    assert _slider(page, "phillips_slope").get_attribute("aria-valuenow") == "1.25"
    assert watch.errors == []
    assert all(r.startswith(app_url) for r in watch.requests), "the app must load nothing from elsewhere"


def _check_run(page, values, scenario):
    """The trajectories shown are those of a run of the Goodwin model at these lever values."""
    shown = page.evaluate(TRACES, "#trajectories")
    variables = page.evaluate(
        "() => document.querySelector('#trajectories .js-plotly-plot').data.map(t => t.meta.variable)")
    expected = run(GOODWIN, values, scenario=scenario, variables=sorted(set(variables)))
    for name, y in zip(variables, shown):
        np.testing.assert_allclose(y, expected[name].values, rtol=1e-9, err_msg=name)


def _wait_run(page, values, scenario, timeout=20.0):
    """Wait until the trajectories shown are those of the run at these values (see :func:`_check_run`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _check_run(page, values, scenario)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.wait_for_timeout(100)


def test_app_redraws_one_run_in_place_with_that_runs_values(page, app_url, short_scenario):
    """One run's figure after a move is the new run's y values swapped in by the page (the
    figure is not sent again); after pinned runs are cleared the full figure comes back,
    and the next moves swap values again."""
    watch = Watch().attach(page)
    page.goto(app_url)
    page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
    page.wait_for_function(SLIDER_AT, arg=["phillips_slope", "1.25"])
    _remember(page, "#trajectories")
    _slider(page, "phillips_slope").focus()
    page.keyboard.press("ArrowRight")
    _wait_changed(page, "#trajectories")
    _check_run(page, {"phillips slope": 1.26}, short_scenario)

    page.click("#pin")
    page.wait_for_selector("#pin-list li")
    page.wait_for_function(
        "() => document.querySelector('#trajectories .js-plotly-plot').data.some(t => t.meta.scenario.startsWith('pin 1'))")
    with page.expect_response(lambda r: "_dash-update-component" in r.url
                              and "trajectories-next" in (r.request.post_data or "")) as response:
        page.click("#clear-pins")
    sent = response.value.json()["response"]
    assert "trajectories" in sent and "trajectories-next" not in sent, sorted(sent)  # the whole figure
    page.wait_for_function(
        "() => !document.querySelector('#trajectories .js-plotly-plot').data.some(t => t.meta.scenario.startsWith('pin'))")
    _check_run(page, {"phillips slope": 1.26}, short_scenario)
    for expected in (1.27, 1.28):
        _remember(page, "#trajectories")
        _slider(page, "phillips_slope").focus()
        with page.expect_response(lambda r: "_dash-update-component" in r.url
                                  and "trajectories-next" in (r.request.post_data or "")) as response:
            page.keyboard.press("ArrowRight")
        sent = response.value.json()["response"]
        assert "trajectories-next" in sent and "trajectories" not in sent, sorted(sent)  # values only
        _wait_changed(page, "#trajectories")
        _check_run(page, {"phillips slope": expected}, short_scenario)
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.28'")
    assert page.inner_text("#message") == ""
    assert watch.errors == []


def test_app_back_button_returns_to_the_previous_settings(page, app_url, short_scenario):
    page.goto(app_url + "?phillips_slope=1.4")
    page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
    page.wait_for_function(SLIDER_AT, arg=["phillips_slope", "1.4"])
    _wait_run(page, {"phillips slope": 1.4}, short_scenario)  # the address's run, not the scenario's
    _slider(page, "phillips_slope").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.41'")
    page.go_back()
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.4'")
    page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
    page.wait_for_function(SLIDER_AT, arg=["phillips_slope", "1.4"], timeout=30_000)
    _wait_run(page, {"phillips slope": 1.4}, short_scenario)


def test_app_rejects_malformed_addresses_and_keeps_running(page, app_url):
    page.goto(app_url + "?phillips_slope=abc&nope=1&pin=phillips_slope:99")
    page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
    page.wait_for_function("() => document.getElementById('message').innerText.includes('must be a number')")
    message = page.inner_text("#message")
    assert "unknown lever 'nope'" in message and "that pinned run was left out" in message
    assert _slider(page, "phillips_slope").get_attribute("aria-valuenow") == "1.25"
    page.screenshot(path=OUTPUT / "app-rejected-address.png", full_page=True)
    page.goto(app_url + "?phillips_slope=1.3")  # the server is still there
    page.wait_for_function("() => window.location.search === '?phillips_slope=1.3'", timeout=30_000)


def test_app_shows_html_in_model_documentation_as_text(page, tmp_path):
    scenario = tmp_path / "<b>hostile.toml"  # names come from file names, which may hold markup too
    scenario.write_text(f'description = "{HOSTILE_DESCRIPTION}"\n')
    with serve(make_app(FIXTURES / "html_docs.mdl", scenario=scenario)) as url:
        watch = Watch().attach(page)
        page.goto(url)
        page.wait_for_selector("#variables .main-svg", timeout=30_000)
        assert page.evaluate("() => window.__xss") is None
        assert page.title() == "crisis app: html_docs — <b>hostile"
        assert page.inner_text("h1") == "crisis app: html_docs — <b>hostile"
        assert page.inner_text("#scenario-description") == HOSTILE_DESCRIPTION
        lever = page.locator(".lever", has_text="growth rate")
        assert lever.get_attribute("title") == "<script>window.__xss = 4</script> The growth rate, a lever."
        table = page.locator("#variables").text_content()
        assert "<script>window.__xss" in table and "<b>bold?</b>" in table
        page.screenshot(path=OUTPUT / "app-html-in-docs.png", full_page=True)
        assert watch.errors == []


def _switch(page, loop_id):
    return page.locator(f"#loop-switches input[value='{loop_id}']")


def test_app_loop_switches_knock_out_a_loop_and_keep_it_in_the_address(page, goodwin_loops_path, short_scenario):
    with serve(make_app(goodwin_loops_path, scenario=short_scenario)) as url:
        watch = Watch().attach(page)
        page.goto(url)
        page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
        assert page.locator("#loop-switches input").count() == 2
        assert "B1 Profit squeeze (B): cut employment rate \u2192 wage growth rate" in page.inner_text("#loop-switches")
        assert _switch(page, "B1").is_checked() and _switch(page, "S1").is_checked()

        before = _remember(page, "#trajectories")
        _switch(page, "B1").uncheck()
        after = _wait_changed(page, "#trajectories")
        page.wait_for_function("() => window.location.search === '?off=B1'")
        assert after != before and page.inner_text("#message") == ""
        assert page.locator("#trajectories .gtitle").text_content() == "current run: loops off: B1"
        # The plotted data are those of a run with the loop's link knocked out.
        expected = run(goodwin_loops_path, scenario=short_scenario, variables=["wage_share"],
                       knockout=[("employment_rate", "wage_growth_rate")])
        variables = page.evaluate(
            "() => document.querySelector('#trajectories .js-plotly-plot').data.map(t => t.meta.variable)")
        np.testing.assert_allclose(after[variables.index("wage_share")], expected["wage_share"].values, rtol=1e-6)

        page.click("#pin")
        page.wait_for_selector("#pin-list li")
        assert page.inner_text("#pin-list") == "pin 1: as the scenario; loops off: B1"
        page.wait_for_function("() => window.location.search === '?off=B1&pin=off:B1'")
        metas = page.evaluate("() => document.querySelector('#trajectories .js-plotly-plot').data.map(t => t.meta.scenario)")
        assert set(metas) == {"current (loops off: B1)", "pin 1: as the scenario; loops off: B1"}
        with page.expect_download() as download:
            page.click("#export")
        text = open(download.value.path(), encoding="utf-8").read()
        assert "#   B1 Profit squeeze (B)" in text and tomllib.loads(text)["params"] == {}
        page.screenshot(path=OUTPUT / "app-loop-switches.png", full_page=True)

        _remember(page, "#trajectories")
        _switch(page, "B1").check()
        _wait_changed(page, "#trajectories")
        page.wait_for_function("() => window.location.search === '?pin=off:B1'")

        # A link reproduces the switches; an unknown loop gives a message and the app runs on.
        page.goto(url + "?off=B1,B7")
        page.wait_for_selector("#trajectories .main-svg", timeout=30_000)
        page.wait_for_function("() => document.getElementById('message').innerText.includes('unknown loop')",
                               timeout=30_000)
        assert "address: unknown loop 'B7'" in page.inner_text("#message")
        assert not _switch(page, "B1").is_checked() and _switch(page, "S1").is_checked()
        page.wait_for_function("() => window.location.search === '?off=B1'")
        assert watch.errors == []
        assert all(r.startswith(url) for r in watch.requests)
