"""The SDXorg/test-models suite through `crisis run` and every engine that takes each model.

For each Vensim model of the vendored suite, plain PySD is run here (not recorded):
- if it fails, the model must be listed in ``pysd_failures.toml`` (so the list stays
  current, and a model a new PySD passes is noticed);
- if it passes, the model must not be listed, ``crisis run`` must give the canonical output
  (rtol 1e-3, PySD's own comparison), and the compiled kernel and the vectorised ensemble,
  where they take the model, must equal plain PySD to 1e-10 of each series' scale, and the
  JavaScript engine (under Node) must equal the kernel to 1e-9.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from pysd_runner import compile_model, run, run_ensemble
from pysd_runner.cli import main
from pysd_runner.errors import ParameterError
from pysd_runner.javascript import web_engine
from pysd_runner.vectorise import vectorisation_blockers

from ..node import run_engines
from ..tolerance import assert_close_to_scale
from .suite import (
    assert_matches_canonical,
    canonical_frame,
    dataset_frame,
    discover,
    load_failures,
    plain_pysd,
    requested_variables,
    uses_na,
)

CASES = discover()
FAILURES = load_failures()
ENGINE_RTOL = 1e-10
JS_RTOL = 1e-9

#: Engines each passing model ran on, filled as the tests run (printed at the end).
ENGINES_USED: dict[str, list[str]] = {}


def test_suite_is_vendored():
    # The suite's Vensim models with canonical output: a lost folder fails here.
    assert len(CASES) >= 140, f"only {len(CASES)} models found under tests/peer/test-models"
    assert set(FAILURES) <= {c.id for c in CASES}, "pysd_failures.toml names models that are not in the suite"


def _assert_close_to_scale(actual, expected, what):
    for column in expected.columns:
        assert_close_to_scale(actual[column], expected[column], ENGINE_RTOL, err_msg=f"{what}: column '{column}'")


def _one_constant(model):
    for element in model.constants:
        if element.default is not None and not element.subscripts:
            return element
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model(case, tmp_path):
    expected, reason = plain_pysd(case)
    if reason is not None:
        assert case.id in FAILURES, f"plain PySD now fails on {case.id} ({reason}); list it in pysd_failures.toml"
        return
    assert case.id not in FAILURES, (
        f"plain PySD now passes {case.id}; remove it from pysd_failures.toml (python -m tests.peer.suite)"
    )
    canon = canonical_frame(case)
    model = compile_model(case.model)
    names = [model.resolve(n).py_name for n in requested_variables(canon.columns)]

    # 1. `crisis run`, as a user would call it, gives the canonical output.
    out = tmp_path / "run.nc"
    args = ["run", str(case.model), "--vars", ",".join(names), "--output", str(out)]
    if uses_na(canon):
        args += ["--nonfinite", "keep"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown as `Warning:` lines, as a user sees them
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, f"crisis run failed: {result.output}"
    ds = xr.load_dataset(out)
    assert_matches_canonical(dataset_frame(ds, canon.columns, canon.index), canon)
    used = [f"run:{ds.attrs['engine']}"]

    # 2. Each engine that takes the model equals plain PySD to 1e-10 of the series' scale.
    columns = [c for c in canon.columns if c in expected.columns]
    expected = expected[columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compiled = run(model, variables=names, engine="compiled", errors="warn")
        except ParameterError as exc:
            assert "cannot run on the compiled kernel" in str(exc)
            compiled = None
    if compiled is not None:
        frame = dataset_frame(compiled, columns, expected.index)
        _assert_close_to_scale(frame, expected[list(frame.columns)], "compiled kernel")
        used.append("compiled")
        # The JavaScript engine (under Node) runs what the kernel runs: equal to it to 1e-9.
        engine = web_engine(model)
        (js,) = run_engines([{"engine": engine.source, "want": [n for n in names if n in engine.recordable]}], tmp_path)
        np.testing.assert_array_equal(js["time"], compiled["time"].values, err_msg="JavaScript: save times")
        for name, column in js["values"].items():
            assert_close_to_scale(column, compiled[name].values, JS_RTOL, err_msg=f"JavaScript: '{name}'")
        used.append("javascript")

    constant = _one_constant(model)
    if constant is not None and not vectorisation_blockers(model) and not model.control_dynamic:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ensemble = run_ensemble(model, {constant.py_name: [constant.default] * 2}, variables=names,
                                    engine="vectorised", check_ranges=False)
        member = ensemble.isel(run=1)
        frame = dataset_frame(member, columns, expected.index)
        _assert_close_to_scale(frame, expected[list(frame.columns)], "vectorised ensemble")
        used.append("vectorised")
    ENGINES_USED[case.id] = used
