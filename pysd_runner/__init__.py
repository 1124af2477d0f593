"""Compile Vensim/XMILE models with PySD and run them into xarray Datasets.

The only package of crisis-dynamics that imports PySD. Names are imported lazily (PEP 562)
so that ``crisis --help`` does not pay for importing PySD, pandas and xarray.

Examples
--------
>>> from pysd_runner import compile_model, run
>>> model = compile_model("models/goodwin/goodwin.mdl")
>>> ds = run(model, scenario="baseline", variables=["wage share", "employment rate"])
>>> ds.sizes["time"], round(float(ds["wage_share"].min()), 2), round(float(ds["wage_share"].max()), 2)
(1001, 0.8, 0.91)
"""

from importlib import import_module

_EXPORTS = {
    "compile_model": "compiler",
    "CompiledModel": "compiler",
    "Element": "compiler",
    "run": "runner",
    "run_scenarios": "scenario_runs",
    "run_design": "scenario_runs",
    "scenarios_on_one_axis": "scenario_runs",
    "control_values": "compiler",
    "check_output": "files",
    "atomic_output": "files",
    "atomic_write": "files",
    "did_you_mean": "errors",
    "toolkit_version": "inputs",
    "OutputFile": "cli_options",
    "ByteSize": "cli_options",
    "max_memory_option": "cli_options",
    "NonFiniteWarning": "errors",
    "LargeRunWarning": "errors",
    "ImplausibleWarning": "errors",
    "load_plausible": "plausible",
    "PlausibleRange": "plausible",
    "member_exits": "plausible",
    "first_exits": "plausible",
    "furthest_outside": "plausible",
    "run_ensemble": "ensemble",
    "stepper_for": "stepper",
    "Stepper": "stepper",
    "StateVariable": "stepper",
    "Noise": "stepper",
    "normal_table": "stepper",
    "run_inputs": "stepper",
    "web_engine": "javascript",
    "WebEngine": "javascript",
    "scenario_inputs": "javascript",
    "KernelUnsupported": "kernel_codegen",
    "sketch_views": "structure",
    "VectorisationWarning": "errors",
    "ExecutorError": "errors",
    "sample": "analysis.sampling",
    "sensitivity": "analysis.sensitivity",
    "causal_graph": "analysis.loops",
    "find_loops": "analysis.loops",
    "loop_dominance": "analysis.loops",
    "Loop": "analysis.loops",
    "cutting_link": "analysis.loops",
    "match_named_loops": "analysis.loops",
    "LOOPS_FILE": "analysis.loops",
    "TooManyLoopsError": "errors",
    "LoopsFileError": "errors",
    "LoopScoreWarning": "errors",
    "load_scenario": "scenarios",
    "Event": "scenarios",
    "events_json": "scenarios",
    "list_scenarios": "scenarios",
    "Scenario": "scenarios",
    "chosen_scenarios": "scenarios",
    "scenario_toml": "scenarios",
    "save": "results",
    "load_result": "results",
    "CrisisError": "errors",
    "CrisisWarning": "errors",
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
