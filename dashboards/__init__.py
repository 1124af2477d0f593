"""Dashboards: Plotly figures, a self-contained HTML report and a live Dash app.

Consumes xarray Datasets and result files; never imports PySD (the live app and the lever
grid run models through :mod:`pysd_runner`'s public API). Names are imported lazily so
that ``crisis --help`` stays fast.

Examples
--------
>>> from dashboards import write_report
>>> write_report("out/report.html", "out/goodwin.nc")  # doctest: +SKIP
"""

from importlib import import_module

_EXPORTS = {
    "build_report": "report",
    "write_report": "report",
    "build_lever_grid": "grid",
    "make_app": "app",
    "trajectories": "figures",
    "scenario_comparison": "figures",
    "phase_portrait": "figures",
    "fit_figure": "figures",
    "filtered_states_figure": "figures",
    "fan_chart": "figures",
    "sensitivity_bars": "figures",
    "loop_dominance": "figures",
    "lever_grid_figure": "figures",
    "variable_table": "figures",
    "sector_panels": "figures",
    "DashboardInputError": "errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dashboards' has no attribute '{name}'")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
