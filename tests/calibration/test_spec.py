"""Calibration specs: the shipped specs load; bad specs give errors naming the file and the key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from calibration import SpecError, calibrate, load_spec

from ..conftest import MODELS

GOOD = """
model = "{model}"
seed = 1

[time]
origin = 1950
fit = [1950, 2007]
holdout = [2008, 2019]

[parameters."phillips slope"]
bounds = [0.8, 2.0]

[[observations]]
variable = "wage share"
series = "pwt.labour_share"
country = "US"

[method]
name = "least_squares"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(text).replace("{model}", str(MODELS / "goodwin" / "goodwin.mdl")))
    return path


def test_good_spec_loads(tmp_path):
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.names == ["phillips slope"]
    assert spec.observations[0].variable == "wage_share"
    assert spec.fit == (1950, 2007) and spec.holdout == (2008, 2019)
    assert spec.uncertainty == "profile" and spec.seed == 1
    assert load_spec(spec, seed=0).seed == 0  # seed=0 is a seed like any other


@pytest.mark.parametrize("old, new, key, message", [
    ('[parameters."phillips slope"]', '[parameters."phillips slop"]', "parameters.'phillips slop'",
     "unknown constant 'phillips slop'.*Did you mean 'phillips slope'"),
    ("bounds = [0.8, 2.0]", "bounds = [2.0, 0.8]", "parameters.'phillips slope'.bounds", "reversed"),
    ("bounds = [0.8, 2.0]", "bounds = [0.1, 2.0]", "parameters.'phillips slope'.bounds", "leave the Vensim range"),
    ('series = "pwt.labour_share"', 'series = "pwt.labor_share"', r"observations\[0\].series",
     "'pwt.labor_share' is not in the catalogue.*Did you mean 'pwt.labour_share'"),
    ('name = "least_squares"', 'name = "simplex"', "method.name", "unknown method 'simplex'; allowed"),
    ('variable = "wage share"', 'variable = "wage shares"', r"observations\[0\].variable", "unknown variable"),
    ("fit = [1950, 2007]", "fit = [2007, 1950]", "time.fit", "reversed"),
    ('name = "least_squares"', 'name = "least_squares"\npopsize = 3', "method.popsize", "unknown key"),
    ("seed = 1", "seed = -1", "seed", "must be an integer"),
    ("[time]", "[times]", "times", "unknown key"),
])
def test_bad_spec_names_file_and_key(tmp_path, old, new, key, message):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert text.startswith(f"spec '{path}': ")
    assert re.search(key, text), text
    assert re.search(message, text), text


def test_window_with_no_data_names_the_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("fit = [1950, 2007]", "fit = [1900, 1940]").replace(
        "holdout = [2008, 2019]", "holdout = [1941, 1945]").replace("origin = 1950", "origin = 1900"))
    with pytest.raises(SpecError, match=r"observations\[0\]: the fit window \(time.fit\): window 1900-1940 is "
                                        r"outside the span of 'pwt.labour_share' \(1950-2019\) for USA"):
        calibrate(path)


def test_holdout_outside_data_names_the_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("holdout = [2008, 2019]", "holdout = [2008, 2030]"))
    with pytest.raises(SpecError, match=r"time.holdout: window 2008-2030 is outside the span"):
        calibrate(path)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)


def test_shipped_specs_load():
    paths = sorted(MODELS.glob("*/calibration/*.toml"))
    assert paths, "no shipped calibration specs"
    for path in paths:
        spec = load_spec(path)
        assert spec.parameters and spec.observations, path
