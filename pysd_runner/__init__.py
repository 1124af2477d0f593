"""Compile Vensim/XMILE models with PySD and run them into xarray Datasets.

The only package of crisis-dynamics that imports PySD.
"""

from .compiler import CompiledModel, Element, compile_model
from .errors import (
    CrisisError,
    ModelCompileError,
    ModelFileError,
    OutputError,
    ParameterError,
    ScenarioError,
    SimulationError,
)
from .results import load_result, save
from .runner import NonFiniteWarning, run, run_scenarios
from .scenarios import Scenario, list_scenarios, load_scenario

__all__ = [
    "compile_model",
    "run",
    "run_scenarios",
    "load_scenario",
    "list_scenarios",
    "save",
    "load_result",
    "CompiledModel",
    "Element",
    "Scenario",
    "CrisisError",
    "ModelCompileError",
    "ModelFileError",
    "OutputError",
    "ParameterError",
    "ScenarioError",
    "SimulationError",
    "NonFiniteWarning",
]
