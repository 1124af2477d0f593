"""The command line's one error boundary, tried on every command that writes a file.

A user's bad output path, a run too large for memory, or Ctrl-C gives one ``Error:`` (or
``Interrupted.``) line, the documented exit status, no traceback, and no file left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

from pysd_runner import compile_model
from pysd_runner.cli import main

from .conftest import BLOWUP_MDL, FIXTURES, MODELS

GOODWIN = str(MODELS / "goodwin" / "goodwin.mdl")
REFORMISM = str(MODELS / "reformism" / "reformism.mdl")
POPULATION = str(FIXTURES / "population.mdl")


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "runs.nc"
    result = CliRunner().invoke(main, ["run", POPULATION, "--output", str(path)])
    assert result.exit_code == 0, result.output
    return path


#: Each writing command, with arguments that are otherwise valid; OUT is the output path.
WRITERS = {
    "run": ["run", POPULATION, "--output", "OUT.nc"],
    "ensemble": ["ensemble", POPULATION, "--n", "4", "--output", "OUT.nc"],
    "sensitivity": ["sensitivity", POPULATION, "--n", "8", "--output", "OUT.nc"],
    "loops": ["loops", str(FIXTURES / "loops_logistic.mdl"), "--dominance", "--output", "OUT.nc"],
    "grid": ["grid", GOODWIN, "--lever", "phillips slope=1:1.5", "--steps", "2", "--output", "OUT.nc"],
    "report": ["report", "--runs", "RUNS", "--output", "OUT.html"],
    "data show": ["data", "show", "us.federal_debt_ratio", "--output", "OUT.csv"],
    "calibrate": ["calibrate", str(MODELS / "keen" / "calibration" / "us.toml"), "--output", "OUT.nc"],
}


def _args(name, out, runs_file):
    return [a.replace("OUT", str(out)).replace("RUNS", str(runs_file)) for a in WRITERS[name]]


def _assert_one_error_line(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_unwritable_output_is_refused_before_any_work(name, runs_file, tmp_path):
    started = time.perf_counter()
    result = CliRunner().invoke(main, _args(name, "/proc/no-such-folder/out", runs_file))
    line = _assert_one_error_line(result, "/proc/no-such-folder")
    assert "cannot" in line or "not" in line
    # Refused at the command line, not after a simulation or a fit.
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_output_that_is_a_folder_is_refused(name, runs_file, tmp_path):
    folder = tmp_path / "already-a-folder"
    folder.mkdir()
    suffix = Path(WRITERS[name][-1]).suffix
    target = folder.with_suffix(suffix)
    target.mkdir()
    args = _args(name, target.with_suffix(""), runs_file)
    result = CliRunner().invoke(main, args)
    _assert_one_error_line(result, "folder")
    assert target.is_dir() and not any(target.iterdir())


@pytest.mark.parametrize("name", ["run", "report", "data show"])
def test_wrong_extension_names_what_is_allowed(name, runs_file, tmp_path):
    args = _args(name, tmp_path / "out", runs_file)
    args[-1] = str(tmp_path / "out.xlsx")
    result = CliRunner().invoke(main, args)
    line = _assert_one_error_line(result, "out.xlsx", "allowed:")
    assert WRITERS[name][-1].rsplit(".", 1)[1] in line
    assert not (tmp_path / "out.xlsx").exists()


def test_a_run_too_large_for_memory_is_refused_with_an_estimate(tmp_path):
    out = tmp_path / "huge.nc"
    result = CliRunner().invoke(main, ["run", GOODWIN, "--final-time", "1e9", "--output", str(out)])
    line = _assert_one_error_line(result, "GiB", "--final-time")
    assert "memory" in line
    assert not out.exists()
    # An explicit limit is honoured too, and the refusal says how to raise it.
    result = CliRunner().invoke(main, ["ensemble", POPULATION, "--n", "1000", "--max-memory", "1KB",
                                       "--output", str(out)])
    _assert_one_error_line(result, "--max-memory")
    assert not out.exists()
    result = CliRunner().invoke(main, ["run", GOODWIN, "--max-memory", "lots", "--output", str(out)])
    assert result.exit_code == 2 and "lots" in result.output


def test_width_outside_its_range_is_one_error_line_and_a_good_one_is_recorded(tmp_path):
    out = tmp_path / "w.nc"
    for command in ("ensemble", "sensitivity"):
        args = [command, POPULATION, "--n", "8", "--width", "1.5", "--output", str(out)]
        if command == "sensitivity":
            args += ["--metric", "final(population)"]
        line = _assert_one_error_line(CliRunner().invoke(main, args), "width", "(0, 1]", "1.5")
        assert "Vensim range" in line
        assert not out.exists()
    result = CliRunner().invoke(main, ["ensemble", POPULATION, "--n", "8", "--seed", "1", "--width", "0.5",
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    ds = xr.load_dataset(out)
    assert ds.attrs["width"] == 0.5 and ds.attrs["sample"] == "lhs"
    drawn = json.loads(ds.attrs["marginals"])
    assert all(lo <= value <= hi for (lo, hi), value in
               ((drawn[name], float(ds[name].min())) for name in drawn))
    # Without --width the whole ranges are recorded as such; sensitivity records the same.
    result = CliRunner().invoke(main, ["ensemble", POPULATION, "--n", "4", "--seed", "1", "--output", str(out)])
    assert result.exit_code == 0 and xr.load_dataset(out).attrs["width"] == "whole Vensim ranges"
    # With a scenario, the neighbourhood is the scenario's (strong_unions: phillips slope 1.5).
    result = CliRunner().invoke(main, ["ensemble", GOODWIN, "-s", "strong_unions", "--params", "phillips slope",
                                       "--n", "50", "--seed", "1", "--width", "0.05", "--final-time", "1",
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    lo, hi = json.loads(xr.load_dataset(out).attrs["marginals"])["phillips_slope"]
    assert lo < 1.5 < hi and hi - lo < 0.5
    sens = tmp_path / "s.nc"
    result = CliRunner().invoke(main, ["sensitivity", POPULATION, "--n", "8", "--seed", "1", "--width", "0.5",
                                       "--metric", "final(population)", "--output", str(sens)])
    assert result.exit_code == 0, result.output
    attrs = xr.load_dataset(sens).attrs
    assert attrs["width"] == 0.5 and set(json.loads(attrs["marginals"])) == set(drawn)


def test_member_counts_must_be_positive_and_defaults_are_shown():
    for command in ("ensemble", "sensitivity"):
        result = CliRunner().invoke(main, [command, POPULATION, "--n", "0", "--output", "x.nc"])
        assert result.exit_code == 2 and "--n" in result.output and "x>=1" in result.output
        helptext = CliRunner().invoke(main, [command, "--help"]).output
        assert "default:" in helptext


def test_all_scenarios_leave_out_another_time_axis_with_a_note(tmp_path):
    out = tmp_path / "all.nc"
    result = CliRunner().invoke(main, ["run", REFORMISM, "--all-scenarios", "--output", str(out)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("Note: ")]
    assert notes and "keen_core" in notes[0]
    ds = xr.load_dataset(out)
    assert "keen_core" not in ds["scenario"].values and "baseline" in ds["scenario"].values


def test_summary_shows_every_requested_variable(tmp_path):
    out = tmp_path / "r.nc"
    result = CliRunner().invoke(main, ["run", REFORMISM, "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    stocks = {e.py_name for e in compile_model(REFORMISM).stocks}
    assert stocks <= rows, stocks - rows
    ds = xr.load_dataset(out)
    wanted = sorted(ds.data_vars)[:25]
    result = CliRunner().invoke(main, ["run", REFORMISM, "--vars", ",".join(wanted), "--output", str(out)])
    assert result.exit_code == 0, result.output
    for name in wanted:
        assert any(line.split()[0] == name for line in result.stdout.splitlines() if line.strip()), name


def _crisis(*args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-c", "from pysd_runner.cli import main; main()", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _interrupt_when_running(process, cache: Path, timeout=120, pattern="*.py", presses=1):
    """Ctrl-C once a file matching ``pattern`` is in the cache, i.e. the command is doing its work.

    ``*.py``: the model is translated; ``*.nbi``: the compiled kernel is in numba's cache
    and the members are running. ``presses`` Ctrl-Cs, as an impatient user gives them.
    """
    deadline = time.monotonic() + timeout
    while not any(cache.rglob(pattern)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never started its work"
        time.sleep(0.1)
    time.sleep(1.5)
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
    # The command must stop within seconds, not after its work.
    return process.communicate(timeout=30)


@pytest.mark.parametrize("scheduler, pattern, presses", [
    (None, "*.py", 1),    # while the kernel is being built
    (None, "*.nbi", 1),   # while a million members run on two threads
    (None, "*.nbi", 2),   # twice, while they run
    ("local:2", "*.py", 1),
])
def test_ctrl_c_exits_130_without_traceback_or_file(tmp_path, scheduler, pattern, presses):
    cache = tmp_path / "cache"
    out = tmp_path / "interrupted.nc"
    args = ["ensemble", GOODWIN, "--params", "phillips slope", "--n", "1000000", "--final-time", "2000",
            "--saveper", "100", "--vars", "wage_share", "--output", str(out)]
    if scheduler:
        args += ["--scheduler", scheduler]
    process = _crisis(*args, cwd=tmp_path, env={"CRISIS_CACHE_DIR": str(cache)})
    stdout, stderr = _interrupt_when_running(process, cache, pattern=pattern, presses=presses)
    # A second Ctrl-C that comes while Python exits ends the process by the signal itself,
    # which a shell reports as 130 too.
    assert process.returncode == 130 or (presses > 1 and process.returncode == -signal.SIGINT), stderr
    assert "Traceback" not in stderr and "distributed" not in stderr, stderr
    assert "Interrupted." in stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []


@pytest.mark.filterwarnings("default")
def test_warnings_are_one_line_each(tmp_path):
    model = tmp_path / "blowup.mdl"
    model.write_text(BLOWUP_MDL)
    out = tmp_path / "w.nc"
    result = CliRunner().invoke(main, ["run", str(model), "--set", "rate=100", "--nonfinite", "keep",
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("Warning")]
    assert len(warned) == 1 and warned[0].startswith("Warning: ") and "non-finite" in warned[0], result.output
    assert "UserWarning" not in result.output and "warnings.warn" not in result.output
    assert out.exists()
    # Without --nonfinite keep, the same run is an error and writes nothing.
    again = CliRunner().invoke(main, ["run", str(model), "--set", "rate=100", "--output", str(tmp_path / "e.nc")])
    _assert_one_error_line(again, "non-finite", "'x'")
    assert not (tmp_path / "e.nc").exists()


def test_a_large_run_is_announced_before_it_starts():
    from pysd_runner import LargeRunWarning
    from pysd_runner.inputs import check_memory

    settings = {"initial_time": 0.0, "final_time": 300.0, "saveper": 0.1, "time_step": 0.1}
    with pytest.warns(LargeRunWarning, match=r"about 1\.\d+ GiB in memory and its file about 0\.\d+ GiB"):
        need = check_memory(settings, 2, 20_000, 64 * 2**30, what="the ensemble of 20,000 members")
    assert 2**30 < need < 2 * 2**30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_memory(settings, 2, 10, None)  # small: not a word
