"""crisis data / crisis calibrate through click's CliRunner."""

from __future__ import annotations

from click.testing import CliRunner

from pysd_runner.cli import main
from pysd_runner import load_result

from .test_checkpoint import _spec


def test_data_list():
    result = CliRunner().invoke(main, ["data", "list"])
    assert result.exit_code == 0, result.output
    assert "pwt.profit_rate" in result.output and "1950-2019" in result.output
    assert "fred:SERIES_ID" in result.output


def test_data_show_and_csv(tmp_path):
    out = tmp_path / "share.csv"
    result = CliRunner().invoke(main, ["data", "show", "pwt.labour_share", "--country", "US", "--window",
                                       "1950:1960", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "CC BY 4.0" in result.output and "span: 1950-1960, 11 times" in result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "time,pwt.labour_share" and lines[1].startswith("1950.0,0.6283")


def test_data_errors_are_one_line():
    result = CliRunner().invoke(main, ["data", "show", "pwt.labour_share", "--country", "Atlantis"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: country 'Atlantis' is not in 'pwt.labour_share'")
    result = CliRunner().invoke(main, ["data", "show", "nothing"])
    assert result.exit_code == 1 and "unknown series 'nothing'" in result.output


def test_calibrate_prints_the_fit_table(goodwin, tmp_path):
    spec = _spec(tmp_path, goodwin)
    text = spec.read_text().replace('name = "differential_evolution"\npopsize = 10\nmaxiter = 60\ntol = 0',
                                    'name = "least_squares"\nn_starts = 1')
    spec.write_text(text)
    out = tmp_path / "fit.nc"
    result = CliRunner().invoke(main, ["calibrate", str(spec), "--output", str(out)])
    assert result.exit_code == 0, result.output
    for expected in ("phillips slope", "Theil U", "U^M", "holdout", "vs naive", f"Wrote {out}"):
        assert expected in result.output
    assert load_result(out)["estimate"].sizes["param"] == 2
    again = CliRunner().invoke(main, ["calibrate", str(spec), "--output", str(out)])
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    forced = CliRunner().invoke(main, ["calibrate", str(spec), "--output", str(out), "--force", "--seed", "0"])
    assert forced.exit_code == 0, forced.output
    assert load_result(out).attrs["seed"] == 0


def test_calibrate_bad_spec_is_one_line(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('model = "nowhere.mdl"\n')
    result = CliRunner().invoke(main, ["calibrate", str(spec), "--output", str(tmp_path / "x.nc")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: spec '{spec}': model:")
