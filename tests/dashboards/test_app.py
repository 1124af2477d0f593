"""The live app without a browser: levers, address encoding, validation, export, the command."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from plotly.utils import PlotlyJSONEncoder

from dashboards.app import page as app_page
from dashboards.app import settings as app_settings
from dashboards.app import (
    MAX_PINS,
    OFF_KEY,
    LoopSwitch,
    Simulator,
    decode_settings,
    encode_settings,
    export_scenario,
    levers_of,
    loop_switches,
    make_app,
)
from pysd_runner import compile_model, load_scenario, run
from pysd_runner.cli import main

from ..conftest import MODELS
from .conftest import GOODWIN


@pytest.fixture(scope="module")
def levers(goodwin):
    return levers_of(goodwin, load_scenario("strong_unions", goodwin))


def test_levers_are_the_constants_with_vensim_ranges_at_scenario_values(goodwin, levers):
    by_name = {lv.py_name: lv for lv in levers}
    assert len(levers) == len(goodwin.constants) == 8
    slope = by_name["phillips_slope"]
    assert (slope.low, slope.high, slope.step, slope.base) == (0.2, 2.5, 0.01, 1.5)  # strong_unions sets 1.5
    assert by_name["capital_output_ratio"].base == 3.0  # the model's default


def test_constants_set_over_time_by_the_scenario_are_not_levers(goodwin, tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('[policies]\n"phillips slope" = { time = [0, 10], value = [1.2, 1.4] }\n')
    names = [lv.py_name for lv in levers_of(goodwin, load_scenario(path, goodwin))]
    assert "phillips_slope" not in names and "phillips_intercept" in names


def test_settings_round_trip_through_the_address(levers):
    values = {lv.py_name: lv.base for lv in levers}
    values["phillips_slope"] = 1.7
    pins = [dict(values, phillips_intercept=1.2), {lv.py_name: lv.base for lv in levers}]
    search = encode_settings(levers, values, pins)
    assert search == "?phillips_slope=1.7&pin=phillips_intercept:1.2,phillips_slope:1.7&pin="
    assert decode_settings(levers, search) == (values, pins, [])
    assert encode_settings(levers, {lv.py_name: lv.base for lv in levers}, []) == ""


@pytest.mark.parametrize(
    "search, message",
    [
        ("?phillips_slope=9", "9 for 'phillips slope' is outside its range [0.2, 2.5]; kept 1.5"),
        ("?phillips_slope=abc", "'phillips slope' must be a number; got 'abc'"),
        ("?phillips_slope=nan", "must be finite"),
        ("?phillips_slop=1", "unknown lever 'phillips_slop'. Did you mean 'phillips_slope'"),
        ("?pin=phillips_slope:7", "outside its range"),
        ("?pin=phillips_slope", "a pinned run is written name:value"),
    ],
)
def test_bad_address_values_are_rejected_with_a_message(levers, search, message):
    values, pins, messages = decode_settings(levers, search)
    assert values == {lv.py_name: lv.base for lv in levers} and pins == []
    assert len(messages) == 1 and message in messages[0]


def test_valid_parts_of_an_address_survive_bad_ones(levers):
    values, pins, messages = decode_settings(levers, "?phillips_slope=1.3&capital_output_ratio=99&phillips%20intercept=1.2")
    assert values["phillips_slope"] == 1.3 and values["phillips_intercept"] == 1.2
    assert values["capital_output_ratio"] == 3.0 and len(messages) == 1


def test_at_most_four_pins(levers):
    search = "?" + "&".join(f"pin=phillips_slope:{1 + i / 10}" for i in range(MAX_PINS + 2))
    _, pins, messages = decode_settings(levers, search)
    assert len(pins) == MAX_PINS and "at most 4 pinned runs" in messages[0]


def test_pins_sent_back_by_the_browser_are_validated(levers):
    good = {lv.py_name: lv.base for lv in levers}
    pins, messages = app_settings.validate_pins(levers, [good, {"phillips_slope": 99}, "junk"])
    assert pins == [good] and len(messages) == 2
    assert app_settings.validate_pins(levers, {"not": "a list"})[1] == ["pinned runs: malformed data was discarded"]


def test_export_reproduces_the_current_run(goodwin, levers, tmp_path):
    scenario = load_scenario("strong_unions", goodwin)
    values = {lv.py_name: lv.base for lv in levers}
    values.update(phillips_slope=1.6, capital_output_ratio=3.2)
    text = export_scenario(goodwin, levers, values, scenario)
    data = tomllib.loads(text)
    assert data["params"] == {"capital output ratio": 3.2, "phillips intercept": 1.33, "phillips slope": 1.6}
    assert "strong_unions" in data["description"]
    path = tmp_path / "exported.toml"
    path.write_text(text)
    options = {"final_time": 10, "variables": ["wage_share"]}
    exported = run(goodwin, scenario=path, **options)
    direct = Simulator(goodwin, scenario=scenario, variables=["wage_share"]).run(values)
    np.testing.assert_array_equal(exported["wage_share"].values[:101], direct["wage_share"].values[:101])


def test_export_keeps_policies_and_time_settings(goodwin, tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text('description = "p"\n[policies]\n"phillips slope" = { time = [0, 10], value = [1.2, 1.4] }\n'
                    "[time]\nfinal_time = 20\n")
    scenario = load_scenario(path, goodwin)
    levers = levers_of(goodwin, scenario)
    text = export_scenario(goodwin, levers, {lv.py_name: lv.base for lv in levers}, scenario)
    data = tomllib.loads(text)
    assert data["policies"] == {"phillips slope": {"time": [0.0, 10.0], "value": [1.2, 1.4]}}
    assert data["time"] == {"final_time": 20.0} and data["params"] == {}


def test_simulator_caches_pure_runs(goodwin):
    simulator = Simulator(goodwin, variables=["wage_share"])
    calls = []
    original = simulator.run
    simulator.run = lambda values: calls.append(dict(values)) or original(values)
    first = simulator({"phillips_slope": 1.3})
    assert simulator({"phillips_slope": 1.3}) is first and len(calls) == 1
    assert not simulator({"phillips_slope": 1.4}).equals(first)


# --------------------------------------------------------------------------- loop switches

REFORMISM = MODELS / "reformism" / "reformism.mdl"
SWITCHES = (
    LoopSwitch("R1", "Accumulation", "R", ("output", "profits"), ("output", "profits"), ("B2",)),
    LoopSwitch("B2", "Fiscal dependence", "B", ("output", "profits"), ("output", "profits"), ("R1",)),
    LoopSwitch("B4", "Repression", "B", ("repression", "indicated_militancy"), ("repression", "indicated militancy")),
)


def test_loop_switches_name_every_loop_of_reformism_with_the_link_that_cuts_it():
    model = compile_model(REFORMISM)
    switches = loop_switches(model)
    assert [sw.id for sw in switches] == ["R1", "B1", "R2", "B2", "B3", "R3", "R4", "B4", "R5", "B5", "B6", "B7"]
    named = tomllib.loads((REFORMISM.parent / "loops.toml").read_text())
    for switch in switches:
        entry = named[switch.id]
        assert switch.name == entry["name"] and switch.polarity == entry["polarity"]
        # The link lies on the loop: consecutive (cyclically) among the loop's variables.
        cycle = [model.resolve(v).py_name for v in entry["variables"]]
        assert switch.link in list(zip(cycle, cycle[1:] + cycle[:1])), switch
        assert switch.link_names == tuple(model.elements[v].name for v in switch.link)
    by_id = {sw.id: sw for sw in switches}
    assert by_id["B4"].link == ("repression", "indicated_militancy") and by_id["B4"].also == ()
    # One link can cut several named loops; the switch says so.
    assert set(by_id["R1"].also) >= {"B2", "R4"} and "also cuts" in by_id["R1"].label
    assert loop_switches(model) is switches, "cached per model"


def test_no_loop_switches_without_a_loops_file(tmp_path):
    path = tmp_path / "goodwin.mdl"
    shutil.copyfile(GOODWIN, path)
    assert loop_switches(compile_model(path)) == ()


def test_no_loop_switches_when_the_loops_file_is_unusable(tmp_path):
    path = tmp_path / "goodwin.mdl"
    shutil.copyfile(GOODWIN, path)
    (tmp_path / "loops.toml").write_text('[B1]\nvariables = ["employment rate", "no such variable"]\n')
    with pytest.warns(UserWarning, match="no loop switches for model 'goodwin'.*no such variable"):
        assert loop_switches(compile_model(path)) == ()


def test_loop_switches_of_a_small_model(goodwin_loops):
    switches = loop_switches(goodwin_loops)
    assert [(sw.id, sw.name, sw.polarity, sw.link) for sw in switches] == [
        ("B1", "Profit squeeze", "B", ("employment_rate", "wage_growth_rate")),
        ("S1", "Wage share growth", "?", ("wage_share", "change_in_wage_share")),
    ]


def test_loop_switches_are_kept_on_disk_beside_the_translated_model(goodwin_loops):
    switches = loop_switches(goodwin_loops)
    # One file per model content and loops.toml text (other loops files may share the folder).
    stored = [p for p in goodwin_loops.py_file.parent.glob("loop_switches_*.json")
              if [tuple(e["link"]) for e in json.loads(p.read_text())] == [sw.link for sw in switches]]
    assert len(stored) == 1
    app_settings._SWITCHES.clear()  # a new process: read back from disk, not enumerated again
    again = loop_switches(goodwin_loops)
    assert again == switches and again is not switches
    stored[0].write_text("not json")  # a damaged copy is rebuilt
    app_settings._SWITCHES.clear()
    assert loop_switches(goodwin_loops) == switches
    assert json.loads(stored[0].read_text())[0]["id"] == "B1"


def test_switched_off_loops_round_trip_through_the_address(levers):
    values = {lv.py_name: lv.base for lv in levers}
    values.update(phillips_slope=1.7)
    values[OFF_KEY] = ("R1", "B4")
    pins = [dict(values), {**{lv.py_name: lv.base for lv in levers}, OFF_KEY: ("B2",)}]
    search = encode_settings(levers, values, pins)
    assert search == "?phillips_slope=1.7&off=R1,B4&pin=phillips_slope:1.7,off:R1,off:B4&pin=off:B2"
    assert decode_settings(levers, search, SWITCHES) == (values, pins, [])
    # Ids are matched case-insensitively, kept once and in the switches' order.
    decoded, _, messages = decode_settings(levers, "?off=b4&off=r1,B4", SWITCHES)
    assert decoded[OFF_KEY] == ("R1", "B4") and messages == []
    assert OFF_KEY not in decode_settings(levers, "?off=", SWITCHES)[0]


@pytest.mark.parametrize(
    "search, message",
    [
        ("?off=R9", "address: unknown loop 'R9'."),
        ("?off=B44", "address: unknown loop 'B44'. Did you mean 'B4'?"),
        ("?off=R1;B2", "unknown loop 'R1;B2'"),
        ("?pin=phillips_slope:1.3,off:X1", "unknown loop 'X1'"),
    ],
)
def test_unknown_loops_in_the_address_are_rejected_with_a_message(levers, search, message):
    values, pins, messages = decode_settings(levers, search, SWITCHES)
    assert OFF_KEY not in values and pins == []
    assert len(messages) == 1 and message in messages[0] and "Loops: R1, B2, B4" in messages[0]


def test_valid_loops_in_the_address_survive_unknown_ones(levers):
    values, _, messages = decode_settings(levers, "?off=R1,nope&phillips_slope=1.3", SWITCHES)
    assert values[OFF_KEY] == ("R1",) and values["phillips_slope"] == 1.3
    assert len(messages) == 1 and "unknown loop 'nope'" in messages[0]


def test_switched_off_loops_in_the_address_of_a_model_without_switches(levers):
    values, _, messages = decode_settings(levers, "?off=R1")
    assert OFF_KEY not in values
    assert messages == ["address: this model has no loop switches; loop 'R1' was ignored"]


def test_switched_off_loops_of_pins_sent_back_by_the_browser_are_validated(levers):
    base = {lv.py_name: lv.base for lv in levers}
    stored = [{**base, OFF_KEY: ["B2", "R1"]}, {**base, OFF_KEY: ["Z9"]}, {**base, OFF_KEY: "R1"}]
    pins, messages = app_settings.validate_pins(levers, stored, SWITCHES)
    assert pins == [{**base, OFF_KEY: ("R1", "B2")}] and len(messages) == 2
    assert "unknown loop 'Z9'" in messages[0] and "malformed loop switches" in messages[1]


def test_pin_and_current_labels_name_the_switched_off_loops(levers):
    pin = {**{lv.py_name: lv.base for lv in levers}, "phillips_slope": 1.7, OFF_KEY: ("R1", "B4")}
    assert app_page._pin_label(levers, pin, 2) == "pin 2: phillips slope 1.7; loops off: R1, B4"
    assert app_page._current_label(pin) == "current (loops off: R1, B4)"
    assert app_page._current_label({}) == "current"


def test_simulator_runs_with_loops_knocked_out(goodwin_loops):
    switches = loop_switches(goodwin_loops)
    simulator = Simulator(goodwin_loops, variables=["wage_share"])
    calls = []
    original_run = simulator.run
    original_knockout = simulator.run_knockout
    simulator.run = lambda values, knockout=(): calls.append(("run", tuple(knockout))) or original_run(values, knockout)
    simulator.run_knockout = lambda values, links: calls.append(("knockout", tuple(links))) or original_knockout(values, links)
    values = {"phillips_slope": 1.3}
    plain = simulator(values)
    cut = simulator(values, knockout=[switches[0].link])
    assert not cut.equals(plain)
    assert json.loads(cut.attrs["knockout"])[0]["source"] == "employment_rate"
    # The cache tells the runs apart by their switches, and knows each again.
    assert simulator(values) is plain and simulator(values, knockout=[switches[0].link]) is cut
    assert calls == [("run", ()), ("run", (switches[0].link,)), ("knockout", (switches[0].link,))]
    both = simulator(values, knockout=[switches[1].link, switches[0].link])
    assert not both.equals(cut) and simulator(values, knockout=[switches[0].link, switches[1].link]) is both


def test_export_lists_switched_off_loops_in_a_comment_the_loader_accepts(goodwin_loops, tmp_path):
    switches = loop_switches(goodwin_loops)
    levers = levers_of(goodwin_loops)
    values = {**{lv.py_name: lv.base for lv in levers}, "phillips_slope": 1.3, OFF_KEY: ("B1",)}
    text = export_scenario(goodwin_loops, levers, values, None, switches)
    assert text.startswith("# Loops switched off in the app")
    assert "#   B1 Profit squeeze (B): cut employment rate \u2192 wage growth rate" in text
    assert "knockout=[('employment_rate', 'wage_growth_rate')]" in text
    assert tomllib.loads(text)["params"] == {"phillips slope": 1.3}
    path = tmp_path / "exported.toml"
    path.write_text(text)
    assert load_scenario(path).params == {"phillips slope": 1.3}
    # Names with line breaks stay inside their comment.
    odd = (LoopSwitch("B1", "two\nlines", "B", switches[0].link, switches[0].link_names),)
    assert tomllib.loads(export_scenario(goodwin_loops, levers, values, None, odd))["params"] == {"phillips slope": 1.3}
    assert "Loops switched off" not in export_scenario(goodwin_loops, levers, dict(values, **{OFF_KEY: ()}), None, switches)


def test_the_app_shows_loop_switches_only_when_there_are_some(goodwin_loops_path, tmp_path):
    scenario = tmp_path / "short.toml"
    scenario.write_text("[time]\nfinal_time = 10\n")
    layout = json.dumps(make_app(goodwin_loops_path, scenario=scenario).layout, cls=PlotlyJSONEncoder)
    assert '"loop-switches"' in layout and "B1 Profit squeeze (B)" in layout
    bare = tmp_path / "bare" / "goodwin.mdl"  # a copy with no loops.toml beside it
    bare.parent.mkdir()
    shutil.copyfile(GOODWIN, bare)
    layout = json.dumps(make_app(bare, scenario=scenario).layout, cls=PlotlyJSONEncoder)
    assert '"loop-switches"' not in layout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_app_command_serves_on_loopback(tmp_path):
    port = _free_port()
    command = [sys.executable, "-c", "from pysd_runner.cli import main; main()", "app", str(GOODWIN), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server/_dash-layout", timeout=5) as response:
                    layout = response.read().decode()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the app did not start: {process.stdout.read() if process.poll() is not None else 'timeout'}")
                time.sleep(0.2)
        assert "phillips_slope" in layout
        # At the root, the page that runs the model in the browser, linking to the server view.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            page = response.read().decode()
        assert 'id="crisis-engine"' in page and 'href="server/"' in page
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert f"Serving the crisis app at http://127.0.0.1:{port}/" in output


def test_app_command_errors(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["app", str(GOODWIN), "--port", str(port)])
    assert result.exit_code == 1 and result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
    result = CliRunner().invoke(main, ["app", str(GOODWIN), "--scenario", "nope"])
    assert result.exit_code == 1 and "unknown scenario 'nope'" in result.output


def test_single_run_figures_equal_the_full_build_for_every_run():
    from dashboards import figures

    model = compile_model(GOODWIN)
    first, second = run(model, final_time=30), run(model, {"phillips slope": 1.4}, final_time=30)
    panels = figures.sector_panels(first)
    fast = app_page._SingleRunFigures(panels, phase=True)
    encode = lambda fig: json.loads(json.dumps(fig, cls=PlotlyJSONEncoder))  # noqa: E731
    for ds in (first, second):  # the first call builds, the second swaps the data
        expected = [figures.trajectories(ds, panels, title=""), figures.phase_portrait(ds)]
        got = fast(ds)
        assert len(got) == 2
        for fig, quick in zip(expected, got):
            fig.update_layout(uirevision="levers")
            full = fig.to_plotly_json()
            assert encode(quick["data"]) == encode(full["data"])
            assert encode(quick["layout"]) == encode(app_page._quick_layout(full["layout"]))
    assert fast(first)[0]["data"][0]["y"] != fast(second)[0]["data"][0]["y"]
    assert fast(first)[1]["data"][0]["x"] != fast(second)[1]["data"][0]["x"]


def test_quick_layout_changes_only_what_slows_redraws():
    from dashboards import figures

    ds = run(compile_model(GOODWIN), final_time=30)
    layout = figures.trajectories(ds).to_plotly_json()["layout"]
    quick = app_page._quick_layout(layout)
    axes = [key for key in layout if key.startswith(("xaxis", "yaxis"))]
    assert len(axes) >= 4
    for key in axes:
        assert quick[key] == {**layout[key], "ticklabeloverflow": "allow", "automargin": False}
    assert quick["template"]["layout"] == layout["template"]["layout"]
    assert set(quick["template"]["data"]) == {"scatter"}
    rest = lambda d: {k: v for k, v in d.items() if k not in axes and k != "template"}  # noqa: E731
    assert rest(quick) == rest(layout)


def test_arrays_go_to_the_browser_in_plotly_base64_form():
    from _plotly_utils.utils import to_typed_array_spec

    for values in (np.linspace(0.0, 1.0, 401), np.array([1.5]), np.arange(10.0)[::2], [1, 2, 3]):
        assert app_page._array(values) == to_typed_array_spec(np.asarray(values, dtype=float))
