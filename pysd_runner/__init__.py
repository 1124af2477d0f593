"""Compile Vensim/XMILE models with PySD and run them into xarray Datasets.

The only package of crisis-dynamics that imports PySD. Names are imported lazily (PEP 562)
so that ``crisis --help`` does not pay for importing PySD, pandas and xarray.

Examples
--------
>>> from pysd_runner import compile_model, run
>>> model = compile_model("models/goodwin/goodwin.mdl")  # doctest: +SKIP
>>> ds = run(model, {"phillips slope": 1.5}, scenario="baseline")  # doctest: +SKIP
"""

from importlib import import_module

_EXPORTS = {
    "compile_model": "compiler",
    "CompiledModel": "compiler",
    "Element": "compiler",
    "run": "runner",
    "run_scenarios": "runner",
    "scenarios_on_one_axis": "runner",
    "control_values": "compiler",
    "check_output": "results",
    "atomic_output": "results",
    "did_you_mean": "errors",
    "OutputFile": "cli_options",
    "ByteSize": "cli_options",
    "max_memory_option": "cli_options",
    "NonFiniteWarning": "runner",
    "LargeRunWarning": "runner",
    "ImplausibleWarning": "plausible",
    "load_plausible": "plausible",
    "PlausibleRange": "plausible",
    "member_exits": "plausible",
    "first_exits": "plausible",
    "furthest_outside": "plausible",
    "run_ensemble": "ensemble",
    "VectorisationWarning": "ensemble",
    "ExecutorError": "ensemble",
    "sample": "sampling",
    "sensitivity": "sensitivity",
    "causal_graph": "loops",
    "find_loops": "loops",
    "loop_dominance": "loops",
    "Loop": "loops",
    "cutting_link": "loops",
    "load_scenario": "scenarios",
    "list_scenarios": "scenarios",
    "Scenario": "scenarios",
    "save": "results",
    "load_result": "results",
    "CrisisError": "errors",
    "ModelCompileError": "errors",
    "ModelFileError": "errors",
    "OutputError": "errors",
    "ParameterError": "errors",
    "ScenarioError": "errors",
    "SimulationError": "errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pysd_runner' has no attribute '{name}'")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
