"""The live app without a browser: levers, address encoding, validation, export, the command."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import tomllib
import urllib.request

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from dashboards import app as app_module
from dashboards.app import (
    MAX_PINS,
    Simulator,
    decode_settings,
    encode_settings,
    export_scenario,
    levers_of,
    loop_switches,
)
from pysd_runner import load_scenario, run
from pysd_runner.cli import main

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
    pins, messages = app_module._validate_pins(levers, [good, {"phillips_slope": 99}, "junk"])
    assert pins == [good] and len(messages) == 2
    assert app_module._validate_pins(levers, {"not": "a list"})[1] == ["pinned runs: malformed data was discarded"]


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


def test_loop_switches_are_a_documented_hook_with_no_switch_yet(goodwin):
    assert loop_switches(goodwin) == ()
    assert "issue 7" in loop_switches.__doc__


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
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as response:
                    layout = response.read().decode()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the app did not start: {process.stdout.read() if process.poll() is not None else 'timeout'}")
                time.sleep(0.2)
        assert "phillips_slope" in layout
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
