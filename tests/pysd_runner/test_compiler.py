"""compile_model: the translation cache, model description and compile errors."""

from __future__ import annotations

import shutil

import pytest

from pysd_runner import ModelCompileError, ModelFileError, compile_model

from ..conftest import FIXTURES


def test_second_compile_uses_the_cache_and_does_not_translate(tmp_path, monkeypatch):
    monkeypatch.setenv("CRISIS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "src" / "population.mdl"
    source.parent.mkdir()
    shutil.copy(FIXTURES / "population.mdl", source)

    import pysd

    calls = []
    real = pysd.read_vensim
    monkeypatch.setattr(pysd, "read_vensim", lambda *a, **k: calls.append(a) or real(*a, **k))

    first = compile_model(source)
    stamp = first.py_file.stat().st_mtime_ns
    second = compile_model(source)

    assert (first.from_cache, second.from_cache) == (False, True)
    assert len(calls) == 1  # the second compile never reached the translator
    assert second.py_file == first.py_file and second.py_file.stat().st_mtime_ns == stamp
    assert first.py_file.is_relative_to(tmp_path / "cache")
    # Nothing is written beside the source file.
    assert sorted(p.name for p in source.parent.iterdir()) == ["population.mdl"]


def test_changed_content_translates_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CRISIS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "population.mdl"
    shutil.copy(FIXTURES / "population.mdl", source)
    first = compile_model(source)
    source.write_text(source.read_text().replace("lifetime=\n\t5", "lifetime=\n\t6"))
    second = compile_model(source)
    assert second.sha256 != first.sha256 and not second.from_cache
    assert second.elements["lifetime"].default == 6


def test_cache_dir_defaults_to_user_cache(monkeypatch, tmp_path):
    from pysd_runner.compiler import cache_dir

    monkeypatch.delenv("CRISIS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "crisis-dynamics"


def test_description_of_elements(population):
    kinds = {e.name: e.kind for e in population.elements.values()}
    assert kinds == {
        "Population": "stock", "births": "flow", "deaths": "flow",
        "growth rate": "constant", "lifetime": "constant", "initial population": "constant",
    }
    growth = population.elements["growth_rate"]
    assert growth.units == "1/Year"
    assert growth.limits == (0.0, 1.0) and growth.step == 0.01
    assert growth.comment == "Births per person per year."
    assert growth.default == 0.1
    assert population.control == {"initial_time": 0.0, "final_time": 10.0, "time_step": 0.25, "saveper": 1.0}
    assert population.time_units == "Year"
    assert [e.name for e in population.stocks] == ["Population"]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match=r"model file '.*nothere\.mdl' does not exist"):
        compile_model(tmp_path / "nothere.mdl")


def test_wrong_extension_names_the_allowed_ones(tmp_path):
    bad = tmp_path / "model.txt"
    bad.write_text("x = 1")
    with pytest.raises(ModelFileError, match=r"extension '\.txt'.*allowed extensions: \.mdl, \.xmile"):
        compile_model(bad)


def test_malformed_model_names_file_element_and_line():
    with pytest.raises(ModelCompileError) as info:
        compile_model(FIXTURES / "malformed.mdl")
    message = str(info.value)
    assert "malformed.mdl" in message
    assert "does not parse" in message
    assert "line " in message


def test_unsupported_functions_list_every_element():
    with pytest.raises(ModelCompileError) as info:
        compile_model(FIXTURES / "unsupported.mdl")
    message = str(info.value)
    assert "does not implement" in message
    # Each offending element is named with the function it uses.
    assert message.count("  - '") >= 2, message


def test_no_translation_left_beside_fixtures():
    assert not list(FIXTURES.glob("*.py"))


def test_xmile_models_compile_and_run():
    from pysd_runner import run

    model = compile_model(FIXTURES / "cooling.xmile")
    assert [s.name for s in model.stocks] == ["Coffee Temperature"]
    assert model.elements["cooling_time"].kind == "constant"
    ds = run(model, {"cooling time": 4}, saveper=0.125)
    # Euler by hand: T_n - 20 = 70 (1 - dt/4)^n.
    n = (ds["time"].values / 0.125).round()
    import numpy as np

    np.testing.assert_allclose(ds["coffee_temperature"], 20 + 70 * (1 - 0.125 / 4) ** n, rtol=1e-12)
    assert ds["coffee_temperature"].attrs["units"] == "Celsius"


def test_malformed_xmile_names_element_and_line(tmp_path):
    bad = tmp_path / "bad.xmile"
    bad.write_text((FIXTURES / "cooling.xmile").read_text().replace("<eqn>20</eqn>", "<eqn>(20</eqn>"))
    with pytest.raises(ModelCompileError, match=r"bad\.xmile', line \d+: the equation of 'Room Temperature' does not parse"):
        compile_model(bad)
    broken = tmp_path / "broken.xmile"
    broken.write_text("<xmile><model>")
    with pytest.raises(ModelCompileError, match=r"broken\.xmile"):
        compile_model(broken)
