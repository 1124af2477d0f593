"""Calibrate crisis-dynamics models against real public macro series.

A data catalogue that works offline (:mod:`calibration.data`), calibration specs in TOML
(:mod:`calibration.spec`), a vectorised objective fed by :func:`pysd_runner.run_ensemble`,
three methods (multi-start ``least_squares``, ``differential_evolution``, ``mcmc`` with
emcee), uncertainty (profile likelihood, residual bootstrap, posterior), fit statistics
(RMSE, MAPE, R^2, Theil's U with Sterman's decomposition) and checkpoints that survive a
killed process. Uses pysd_runner's public API only; never imports pysd.

Names are imported lazily (PEP 562) so ``crisis --help`` stays fast.

Examples
--------
>>> from calibration import calibrate, load_series
>>> share = load_series("pwt.labour_share", country="US")
>>> int(share["time"].min()), int(share["time"].max())
(1950, 2019)
>>> fit = calibrate("models/keen/calibration/us.toml", seed=1)  # doctest: +SKIP
>>> fit["estimate"].to_series()  # doctest: +SKIP
"""

from importlib import import_module

_EXPORTS = {
    "calibrate": "fit",
    "load_series": "data",
    "list_series": "data",
    "read_csv_series": "data",
    "load_spec": "spec",
    "CalibrationSpec": "spec",
    "fit_statistics": "statistics",
    "DataError": "errors",
    "FredError": "errors",
    "SpecError": "errors",
    "CheckpointError": "errors",
    "CalibrationWarning": "errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'calibration' has no attribute '{name}'")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
