"""Shared test set-up: an isolated translation cache and paths to models and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ROOT / "models"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Translate into a cache of the test session's own, never the user's."""
    old = os.environ.get("CRISIS_CACHE_DIR")
    os.environ["CRISIS_CACHE_DIR"] = str(tmp_path_factory.mktemp("translation-cache"))
    yield
    if old is None:
        os.environ.pop("CRISIS_CACHE_DIR", None)
    else:
        os.environ["CRISIS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def population():
    from pysd_runner import compile_model

    return compile_model(FIXTURES / "population.mdl")


#: A stock that explodes in finite time when ``rate`` is large: non-finite runs on demand.
BLOWUP_MDL = """{UTF-8}
x = INTEG(rate * x * x, 1)
	~	Thing
	~	Explodes in finite time when the rate is large.
	|
rate = 0.01
	~	1/(Thing*Year) [0,100]
	~	Strength of the self-reinforcement.
	|
FINAL TIME = 10 ~ Year ~ End. |
INITIAL TIME = 0 ~ Year ~ Start. |
SAVEPER = 1 ~ Year ~ Save period. |
TIME STEP = 0.5 ~ Year ~ Step. |
"""


@pytest.fixture(scope="session")
def blowup(tmp_path_factory):
    from pysd_runner import compile_model

    path = tmp_path_factory.mktemp("blowup") / "blowup.mdl"
    path.write_text(BLOWUP_MDL)
    return compile_model(path)
