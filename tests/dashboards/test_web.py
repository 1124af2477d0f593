"""`crisis web`: the model simulating in a real headless chromium, opened from file://.

The page's numbers are checked against ``pysd_runner.run`` (the compiled kernel, which
equals PySD); the controls are driven as a reader would: keys on a slider, a loop switch,
pin, a copied address, a phone-width screen. Screenshots go to tests/output/.
"""

from __future__ import annotations

import json
import tomllib
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from dashboards.web import write_web
from pysd_runner import ImplausibleWarning, compile_model, load_scenario, run
from pysd_runner.cli import main

from ..conftest import FIXTURES, MODELS
from ..tolerance import assert_close_to_scale
from .browser import OUTPUT, Watch

REFORMISM = MODELS / "reformism" / "reformism.mdl"
RTOL = 1e-9


@pytest.fixture(scope="module")
def reformism_page(tmp_path_factory):
    path = tmp_path_factory.mktemp("web") / "reformism.html"
    return write_web(path, REFORMISM, ["recession_austerity", "baseline"])


def _open(page, path, hash_=""):
    watch = Watch().attach(page)
    page.goto(path.as_uri() + hash_)
    page.wait_for_function("() => window.crisis && window.crisis.lastDraw !== null", timeout=60_000)
    return watch


SETTLED = """() => window.crisis && window.crisis.lastDraw !== null &&
    JSON.stringify(window.crisis.lastDraw.settings) === JSON.stringify(window.crisis.state())"""


def _settled(page):
    """Wait until the figure shows the run of the page's current settings."""
    page.wait_for_function(SETTLED, timeout=30_000)


def _drawn(page):
    """What the figure shows: per panel, the y values of each run (pins first, the current run last)."""
    return page.evaluate("() => window.crisis.drawn()")


def test_page_opens_offline_with_the_figure_and_the_scenarios_levers_on_the_first_screen(browser, reformism_page):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    watch = _open(page, reformism_page)
    assert not watch.errors, watch.errors
    assert all(u.startswith(("file:", "blob:", "data:")) for u in watch.requests), watch.requests
    assert page.evaluate("() => window.crisis.engine") == "worker"
    figure = page.locator("#figure").bounding_box()
    assert figure["y"] < 200 and figure["y"] + figure["height"] <= 800, figure
    assert page.locator("#figure canvas").count() == len(page.evaluate("() => window.crisis.model.panels"))
    first_lever = page.locator("#scenario-levers .lever").first.bounding_box()
    assert first_lever["y"] < 400 and first_lever["x"] > figure["x"] + 0.5 * figure["width"]
    own = page.locator("#scenario-levers label").all_inner_texts()
    assert own == [model_name for model_name in ["reform size", "reform start year", "profitability shock size",
                                                 "shock start year", "shock duration", "government resolve"]]
    shown = page.locator("#scenario-levers output").all_inner_texts()
    assert "0.100 Dmnl" in shown, shown  # the scenario's resolve, not the model's default
    assert page.locator(".panel-title").count() == len(page.evaluate("() => window.crisis.model.panels"))
    # The shared cursor reads every run's value at one time.
    box = page.locator("#figure canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.getElementById('readout').textContent.includes(' at ')")
    page.screenshot(path=str(OUTPUT / "web_reformism_first_screen.png"))
    context.close()


def test_the_page_equals_the_kernel_for_any_levers_and_knock_outs(page, reformism_page):
    _open(page, reformism_page)
    model = compile_model(REFORMISM)
    params = {"government resolve": 0.6, "tax rate on profits": 0.3}
    got = page.evaluate("""async (params) => {
        const r = await window.crisis.run(params, {scenario: 'recession_austerity', knockouts: ['B1'], final_time: 60});
        return {time: r.time, legitimacy: r.values.legitimacy, profit_rate: r.values.profit_rate, bad: r.bad};
    }""", params)
    loop = next(lp for lp in page.evaluate("() => window.crisis.model.loops") if lp["id"] == "B1")
    link = page.evaluate("() => window.crisis.model.links")[loop["link"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplausibleWarning)  # cutting the profit squeeze leaves the plausible ranges
        expected = run(model, params, scenario="recession_austerity", final_time=60, knockout=[tuple(link)],
                       variables=["legitimacy", "profit_rate"])
    assert got["bad"] is None
    np.testing.assert_array_equal(got["time"], expected["time"].values)
    for name in ("legitimacy", "profit_rate"):
        assert_close_to_scale(got[name], expected[name].values, RTOL, err_msg=name)
    plain = page.evaluate("async () => (await window.crisis.run({'government resolve': 0.6}, {scenario: 'recession_austerity', final_time: 60})).values.legitimacy")
    assert not np.allclose(plain, got["legitimacy"]), "the knock-out changed the run"


@pytest.mark.parametrize(("params", "options", "message"), [
    ({"goverment resolve": 0.5}, {}, "unknown constant 'goverment resolve'. Did you mean 'government resolve'?"),
    ({"government_resolve": 7}, {}, "7 for 'government resolve' is outside its range [0, 1]"),
    ({}, {"scenario": "nope"}, "unknown scenario 'nope'"),
    ({}, {"knockouts": ["Z9"]}, "unknown loop 'Z9'"),
    ({}, {"final_tim": 10}, "unknown option 'final_tim'"),
])
def test_the_api_rejects_bad_input_naming_it(page, reformism_page, params, options, message):
    _open(page, reformism_page)
    error = page.evaluate("""async ([params, options]) => {
        try { await window.crisis.run(params, options); return null; } catch (err) { return err.message; }
    }""", [params, options])
    assert error is not None and message in error, error


def test_a_slider_key_press_redraws_with_the_kernels_numbers_and_keeps_the_address(page, reformism_page):
    _open(page, reformism_page)
    slider = page.locator("#own-government_resolve")
    slider.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    _settled(page)
    state = page.evaluate("() => window.crisis.state()")
    resolve = state["values"]["government_resolve"]
    assert resolve == pytest.approx(0.13)
    assert f"government_resolve={resolve}" in page.evaluate("() => location.hash") or page.wait_for_function(
        "() => location.hash.includes('government_resolve=')")
    panels = page.evaluate("() => window.crisis.model.panels")
    expected = run(compile_model(REFORMISM), {"government resolve": resolve}, scenario="recession_austerity",
                   variables=panels)
    for name, (drawn,) in zip(panels, _drawn(page)):
        assert_close_to_scale(drawn, expected[name].values, RTOL, err_msg=name)
    assert page.locator("#scenario-levers .lever.moved").count() == 1


def test_loop_switch_pin_and_a_copied_address(page, reformism_page):
    _open(page, reformism_page)
    page.locator("#pin").click()
    page.locator('input[data-loop="B1"]').uncheck()
    page.wait_for_function("() => window.crisis.state().off.includes('B1')")
    _settled(page)
    page.wait_for_function("() => location.hash.includes('off=B1')")
    assert page.locator("#legend > span").count() == 2
    drawn = _drawn(page)
    assert all(len(runs) == 2 for runs in drawn), "the pinned run and the current one, in every panel"
    assert any(not np.allclose(pinned, now, equal_nan=True) for pinned, now in drawn), "cutting B1 changed the run"
    address = page.evaluate("() => location.href")
    copy = page.context.new_page()
    try:
        copy.goto(address)
        copy.wait_for_function("() => window.crisis && window.crisis.lastDraw !== null", timeout=60_000)
        assert copy.evaluate("() => window.crisis.state()") == page.evaluate("() => window.crisis.state()")
        assert not copy.locator('input[data-loop="B1"]').is_checked()
        assert np.allclose([runs[-1] for runs in _drawn(copy)], [runs[-1] for runs in drawn], equal_nan=True)
    finally:
        copy.close()


def test_a_bad_address_names_only_what_is_wrong(page, reformism_page):
    _open(page, reformism_page, "#scenario=baseline&goverment_resolve=0.3&tax_rate_on_profits=9&off=B1,Q7&x=%E0%A4%A")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('Ignored')")
    text = page.locator("#status").inner_text()
    assert "goverment_resolve" in text and "Did you mean 'government resolve'" in text
    assert "outside its range" in text and "'Q7'" in text and "bad %-escape" in text
    assert len(text) < 600, "one short message, not every lever's name"
    assert page.evaluate("() => window.crisis.state()") == {"scenario": "baseline", "values": {}, "off": ["B1"]}


def test_export_downloads_a_scenario_file_the_toolkit_reads(page, reformism_page, tmp_path):
    _open(page, reformism_page, "#scenario=recession_austerity&government_resolve=0.4")
    with page.expect_download() as info:
        page.locator("#export").click()
    path = tmp_path / "exported.toml"
    info.value.save_as(path)
    data = tomllib.loads(path.read_text())
    assert data["params"]["government resolve"] == 0.4 and data["params"]["shock start year"] == 45
    scenario = load_scenario(path, compile_model(REFORMISM))
    assert scenario.time["time_step"] == 1 / 1024


def test_phone_width_has_no_sideways_scroll(browser, reformism_page):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    try:
        _open(page, reformism_page)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        figure = page.locator("#figure canvas").first.bounding_box()
        assert figure["x"] + figure["width"] <= 390 and figure["y"] < 844
        page.screenshot(path=str(OUTPUT / "web_reformism_phone.png"), full_page=False)
    finally:
        context.close()


BLOWUP_LEVER = "rate"


def test_a_non_finite_run_names_the_variable_and_time_and_the_page_recovers(page, blowup, tmp_path):
    path = write_web(tmp_path / "blowup.html", blowup.source)
    _open(page, path)
    problems = page.evaluate("() => window.crisis.set({values: {rate: 50}})")
    assert problems == []
    _settled(page)
    text = page.locator("#status").inner_text()
    assert "went non-finite" in text and "'x' at time" in text, text
    page.evaluate("() => window.crisis.set({values: {rate: 0.02}})")
    _settled(page)
    assert "Simulated in" in page.locator("#status").inner_text()


def test_crisis_web_writes_the_page_and_names_what_it_cannot_take(tmp_path):
    out = tmp_path / "goodwin.html"
    result = CliRunner().invoke(main, ["web", str(MODELS / "goodwin" / "goodwin.mdl"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    meta = json.loads(text.split('id="crisis-model">', 1)[1].split("</script>", 1)[0])
    assert meta["scenarios"][0]["name"] == "baseline" and meta["scenarios"][-1]["name"] == "defaults"
    assert "connect-src 'none'" in text
    result = CliRunner().invoke(main, ["web", str(FIXTURES / "subscripted.mdl"), "--output", str(tmp_path / "s.html")])
    assert result.exit_code == 1
    assert "cannot run in the page: 'Population' is subscripted" in result.output
    assert "Traceback" not in result.output


def test_fixed_axes_keep_their_ranges_while_a_lever_moves(page, reformism_page):
    _open(page, reformism_page)
    free = page.evaluate("() => window.crisis.ranges()")
    page.locator("#fix-axes").check()
    page.evaluate("() => window.crisis.set({scenario: 'recession_austerity', values: {'profitability shock size': 0.2}})")
    _settled(page)
    assert page.evaluate("() => window.crisis.ranges()") == free
    page.locator("#fix-axes").uncheck()
    _settled(page)
    assert page.evaluate("() => window.crisis.ranges()") != free, "a bigger shock needs other axes once they are free"


def test_the_vendored_uplot_is_the_recorded_file():
    from dashboards.web import UPLOT_VERSION, uplot_bundle

    javascript, css = uplot_bundle()
    assert f"(v{UPLOT_VERSION})" in javascript[:200] and ".uplot" in css


def test_the_reports_live_levers_run_the_model_in_the_page(page, tmp_path):
    from dashboards.report import write_report

    runs = tmp_path / "runs.nc"
    CliRunner().invoke(main, ["run", str(REFORMISM), "-s", "baseline", "-s", "recession_austerity",
                              "--final-time", "100", "--output", str(runs)], catch_exceptions=False)
    report = write_report(tmp_path / "report.html", runs, model=REFORMISM)
    watch = _open(page, report)
    assert not watch.errors, watch.errors
    assert all(u.startswith(("file:", "blob:", "data:")) for u in watch.requests), watch.requests
    assert page.evaluate("() => window.crisis.state().scenario") == "recession_austerity", "story first"
    assert [s["name"] for s in page.evaluate("() => window.crisis.model.scenarios")] == [
        "recession_austerity", "baseline", "defaults"]
    page.locator("#own-government_resolve").focus()
    page.keyboard.press("ArrowRight")
    _settled(page)
    resolve = page.evaluate("() => window.crisis.state().values.government_resolve")
    panels = page.evaluate("() => window.crisis.model.panels")
    expected = run(compile_model(REFORMISM), {"government resolve": resolve}, scenario="recession_austerity",
                   variables=panels)
    for name, (drawn,) in zip(panels, _drawn(page)):
        assert_close_to_scale(drawn, expected[name].values, RTOL, err_msg=name)
    page.locator("#panel-live").screenshot(path=str(OUTPUT / "report_live_levers.png"))


def test_a_report_refuses_a_model_its_runs_were_not_made_from(tmp_path):
    from dashboards.errors import DashboardInputError
    from dashboards.report import build_report

    runs = tmp_path / "goodwin.nc"
    CliRunner().invoke(main, ["run", str(MODELS / "goodwin" / "goodwin.mdl"), "--output", str(runs)],
                       catch_exceptions=False)
    with pytest.raises(DashboardInputError, match="is not the model file the runs were made from"):
        build_report(runs, model=REFORMISM)


def test_crisis_app_runs_the_model_in_the_page_with_the_server_view_beside_it(page):
    from dashboards.app import make_live_app

    from .browser import serve

    app, reason = make_live_app(MODELS / "goodwin" / "goodwin.mdl", scenario="strong_unions")
    assert reason is None
    with serve(app) as url:
        watch = Watch().attach(page)
        page.goto(url)
        page.wait_for_function("() => window.crisis && window.crisis.lastDraw !== null", timeout=60_000)
        assert page.evaluate("() => window.crisis.engine") == "worker"
        assert page.evaluate("() => window.crisis.state().scenario") == "strong_unions"
        page.locator('#controls details').first.evaluate("d => d.open = true")
        page.locator("#lever-phillips_slope").focus()
        page.keyboard.press("ArrowRight")
        _settled(page)
        assert not watch.errors, watch.errors
        page.locator("a.server-link").click()
        page.wait_for_selector("#trajectories .main-svg", timeout=60_000)
        assert page.url == url + "server/"


def test_crisis_app_serves_a_model_the_page_cannot_take_from_the_server():
    from dashboards.app import make_live_app

    app, reason = make_live_app(FIXTURES / "vector_functions.mdl")
    assert "cannot run in the page: 'fixed delayed signal' uses DelayFixed" in reason
    assert app.config.routes_pathname_prefix == "/"
