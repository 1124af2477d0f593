"""The crisis command line: output, errors without tracebacks, lazy loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import xarray as xr
from click.testing import CliRunner

from pysd_runner.cli import main

from ..conftest import FIXTURES, MODELS

GOODWIN = str(MODELS / "goodwin" / "goodwin.mdl")


def invoke(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_info_lists_every_kind_of_element():
    result = invoke("info", GOODWIN)
    assert result.exit_code == 0, result.output
    out = result.output
    for heading in ("Stocks (2)", "Flows (2)", "Auxiliaries", "Constants", "Scenarios"):
        assert heading in out
    assert "phillips slope = 1.25  (1/Year)  [0.2, 2.5]" in out
    assert "wage share  (Dmnl)" in out
    assert "small_orbit:" in out


def test_info_json():
    result = invoke("info", GOODWIN, "--json")
    payload = json.loads(result.output)
    kinds = {e["name"]: e["kind"] for e in payload["elements"]}
    assert kinds["wage share"] == "stock" and kinds["phillips slope"] == "constant"


def test_run_writes_dataset_with_provenance(tmp_path):
    out = tmp_path / "g.nc"
    result = invoke("run", GOODWIN, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "wage_share" in result.output and f"Wrote {out}" in result.output
    ds = xr.load_dataset(out)
    assert "time" in ds.dims
    assert ds["wage_share"].attrs["units"] == "Dmnl" and ds["wage_share"].attrs["long_name"] == "wage share"
    for key in ("model_sha256", "pysd_version", "params", "seed"):
        assert key in ds.attrs


def test_run_set_by_vensim_or_python_name_and_time_series(tmp_path):
    a, b, c = (tmp_path / f"{n}.nc" for n in "abc")
    assert invoke("run", GOODWIN, "--set", "phillips slope=1.5", "--final-time", "20", "-o", str(a)).exit_code == 0
    assert invoke("run", GOODWIN, "--set", "phillips_slope=1.5", "--final-time", "20", "-o", str(b)).exit_code == 0
    xr.testing.assert_equal(xr.load_dataset(a)["wage_share"], xr.load_dataset(b)["wage_share"])
    result = invoke("run", GOODWIN, "--set", "phillips slope=0:1.25,10:1.5", "--final-time", "20",
                    "--vars", "wage_share,employment_rate", "-o", str(c))
    assert result.exit_code == 0, result.output
    ds = xr.load_dataset(c)
    assert sorted(ds.data_vars) == ["employment_rate", "wage_share"]
    assert json.loads(ds.attrs["params"])["phillips_slope"] == {"time": [0.0, 10.0], "value": [1.25, 1.5]}


def test_run_several_scenarios_and_csv(tmp_path):
    out = tmp_path / "g.csv"
    result = invoke("run", GOODWIN, "-s", "baseline", "-s", "strong_unions", "--final-time", "10", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "[baseline]" in result.output and "[strong_unions]" in result.output
    header = out.read_text().splitlines()[0].split(",")
    assert header[:2] == ["scenario", "time"] and "wage_share" in header


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nothere.mdl", "-o", "x.nc"], "model file 'nothere.mdl' does not exist"),
        (["run", str(FIXTURES / "population.mdl").replace(".mdl", ".txt"), "-o", "x.nc"], "extension '.txt'"),
        (["info", str(FIXTURES / "malformed.mdl")], "does not parse"),
        (["info", str(FIXTURES / "unsupported.mdl")], "does not implement"),
        (["run", GOODWIN, "--set", "phillips slop=1", "-o", "x.nc"], "Did you mean 'phillips slope'"),
        (["run", GOODWIN, "--set", "phillips slope=abc", "-o", "x.nc"], "must be a number; got 'abc'"),
        (["run", GOODWIN, "--set", "phillips slope=inf", "-o", "x.nc"], "must be finite"),
        (["run", GOODWIN, "--set", "phillips slope=9", "-o", "x.nc"], "outside its Vensim range [0.2, 2.5]"),
        (["run", GOODWIN, "--set", "phillips slope", "-o", "x.nc"], "--set expects name=value"),
        (["run", GOODWIN, "--scenario", "nope", "-o", "x.nc"], "unknown scenario 'nope'"),
        (["run", GOODWIN, "-o", "x.xlsx"], "allowed: .nc, .csv"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.nc").exists()


def test_every_command_has_an_example_in_its_help():
    from pysd_runner.cli import COMMANDS

    assert len(COMMANDS) >= 11
    for name in COMMANDS:
        result = invoke(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert "Example" in result.output and f"crisis {name} " in result.output, name


def test_help_is_fast_because_commands_load_lazily():
    code = (
        "import sys; from click.testing import CliRunner; from pysd_runner.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'pysd' not in sys.modules and 'xarray' not in sys.modules, 'heavy import at start-up'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_reports_errors_without_traceback(tmp_path):
    crisis = [sys.executable, "-c", "from pysd_runner.cli import main; main()"]
    result = subprocess.run([*crisis, "run", "missing.mdl", "-o", "x.nc"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: model file 'missing.mdl' does not exist"


def test_run_summary_metrics_per_scenario(tmp_path):
    out = tmp_path / "g.nc"
    result = invoke("run", GOODWIN, "-s", "baseline", "-s", "strong_unions", "--final-time", "30",
                    "--summary", "min(profit_rate)", "--summary", "change(wage share)", "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the progress bar, if any, is on stderr
    assert lines[0].split() == ["scenario", "min(profit_rate)", "change(wage_share)"]
    ds = xr.load_dataset(out)
    base = ds.sel(scenario="baseline")
    expected = float(base["wage_share"][-1] - base["wage_share"][0])
    assert lines[1].split()[0] == "baseline"
    assert float(lines[1].split()[2]) == pytest.approx(expected, rel=1e-3)
    bad = CliRunner().invoke(main, ["run", GOODWIN, "--summary", "median(x)", "-o", str(out)])
    assert bad.exit_code == 1 and "FUNCTION one of" in bad.output


def test_run_summary_labels_and_change_against_a_scenario(tmp_path):
    out = tmp_path / "g.nc"
    result = invoke("run", GOODWIN, "-s", "baseline", "-s", "strong_unions", "--final-time", "30",
                    "--summary", "lowest profit=min(profit_rate)", "--summary", "mean wage share=mean(wage share, 10, 20)",
                    "--against", "baseline", "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["scenario", "lowest", "profit", "vs", "%", "mean", "wage", "share", "vs", "%"]
    ds = xr.load_dataset(out)
    base, strong = (float(ds.sel(scenario=s)["profit_rate"].min()) for s in ("baseline", "strong_unions"))
    share = [float(ds.sel(scenario=s)["wage_share"].sel(time=slice(10, 20)).mean()) for s in ("baseline", "strong_unions")]
    row = dict(zip(["baseline", "strong_unions"], (line.split() for line in lines[1:3])))
    assert row["baseline"][1:] == [f"{base:.4g}", f"{share[0]:.4g}"]  # no change against itself
    assert row["strong_unions"][1:] == [f"{strong:.4g}", f"{(strong - base) / abs(base) * 100:+.1f}%",
                                        f"{share[1]:.4g}", f"{(share[1] - share[0]) / abs(share[0]) * 100:+.1f}%"]
    assert lines[3] == "vs %: change against baseline (the metric's value there)"
    not_run = CliRunner().invoke(main, ["run", GOODWIN, "-s", "baseline", "-s", "strong_unions", "--final-time", "5",
                                        "--summary", "min(profit_rate)", "--against", "small_orbit", "-o", str(out)])
    assert not_run.exit_code == 1
    assert "--against 'small_orbit' is not one of the scenarios run (baseline, strong_unions)" in not_run.output
    alone = CliRunner().invoke(main, ["run", GOODWIN, "--against", "baseline", "-o", str(out)])
    assert alone.exit_code == 1 and "give --summary too" in alone.output
    empty = CliRunner().invoke(main, ["run", GOODWIN, "--summary", "=min(profit_rate)", "-o", str(out)])
    assert empty.exit_code == 1 and "a label goes before '='" in empty.output
