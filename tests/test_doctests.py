"""The examples in the packages' docstrings run, from the repository root, as written.

An example that needs a server or minutes of work says so with ``# doctest: +SKIP``;
every other example is executed and its output compared.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pysd_runner", "calibration", "dashboards")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text():
                names.append(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return names


MODULES = _modules()


def test_there_are_examples_to_run():
    finder = doctest.DocTestFinder()
    run = sum(
        1 for name in MODULES for test in finder.find(importlib.import_module(name))
        for example in test.examples if not example.options.get(doctest.SKIP)
    )
    assert run >= 30, f"only {run} docstring examples run"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name models by their path in the repository
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
