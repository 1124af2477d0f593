"""Transforms of series (xarray DataArrays with a ``time`` coordinate in decimal years).

Each function returns a new DataArray with its ``units`` and ``description`` attrs
updated and the step appended to a ``transforms`` attr, so a transformed series still
says what it is. :func:`parse` turns the short forms used in calibration specs
(``"log"``, ``"growth"``, ``"index:1950"``, ``"scale:0.01"``, ``"annual_mean"``) into
functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from .errors import DataError

__all__ = ["share", "ratio", "log", "growth", "index", "scale", "annual_mean", "parse", "apply"]


def _name(da: xr.DataArray) -> str:
    return str(da.name or da.attrs.get("long_name") or "series")


def _note(result: xr.DataArray, source: xr.DataArray, step: str, **attrs) -> xr.DataArray:
    result.attrs = {**source.attrs, **attrs}
    previous = source.attrs.get("transforms", "")
    result.attrs["transforms"] = f"{previous}; {step}" if previous else step
    result.name = source.name
    return result


def share(part: xr.DataArray, total: xr.DataArray) -> xr.DataArray:
    """``part / total`` for two series in the same units: a share (dimensionless)."""
    if part.attrs.get("units") != total.attrs.get("units"):
        raise DataError(
            f"share of '{_name(part)}' in '{_name(total)}' needs both in the same units; got "
            f"{part.attrs.get('units')!r} and {total.attrs.get('units')!r} (use ratio for different units)"
        )
    result = part / total
    return _note(result, part, f"share of {_name(total)}", units="1",
                 description=f"{part.attrs.get('description', _name(part))} as a share of {_name(total)}")


def ratio(numerator: xr.DataArray, denominator: xr.DataArray) -> xr.DataArray:
    """``numerator / denominator`` on common times (and countries); units become ``a/(b)``."""
    result = numerator / denominator
    if result.sizes.get("time", 0) == 0:
        raise DataError(f"ratio of '{_name(numerator)}' to '{_name(denominator)}': the series share no times")
    units = f"({numerator.attrs.get('units', '')})/({denominator.attrs.get('units', '')})"
    return _note(result, numerator, f"ratio to {_name(denominator)}", units=units,
                 description=f"{numerator.attrs.get('description', _name(numerator))} divided by "
                             f"{denominator.attrs.get('description', _name(denominator))}")


def log(da: xr.DataArray) -> xr.DataArray:
    """Natural logarithm; non-positive values are an error, not NaN."""
    values = np.asarray(da)
    bad = np.isfinite(values) & (values <= 0)
    if bad.any():
        first = float(da["time"].values[np.argwhere(bad)[0][da.dims.index("time")]])
        raise DataError(f"log of '{_name(da)}': values must be positive; got {values[bad][0]:g} at time {first:g}")
    return _note(np.log(da), da, "log", units=f"log({da.attrs.get('units', '')})")


def growth(da: xr.DataArray, kind: str = "log") -> xr.DataArray:
    """Growth rate per year between consecutive times: ``diff(log x)/dt`` or ``(x1/x0 - 1)/dt``.

    The result is dated at the end of each interval and has one time fewer.
    """
    if kind not in ("log", "simple"):
        raise DataError(f"growth kind must be 'log' or 'simple'; got {kind!r}")
    if da.sizes.get("time", 0) < 2:
        raise DataError(f"growth of '{_name(da)}' needs at least two times; got {da.sizes.get('time', 0)}")
    dt = da["time"].diff("time")
    if kind == "log":
        rate = log(da).diff("time") / dt
    else:
        rate = (da / da.shift(time=1)).isel(time=slice(1, None)) - 1
        rate = rate / dt
    return _note(rate, da, f"growth ({kind})", units="1/year")


def index(da: xr.DataArray, base: float, value: float = 100.0) -> xr.DataArray:
    """Rescale so that the value at time ``base`` (a year) equals ``value`` (default 100)."""
    times = da["time"].values
    if not np.any(np.isclose(times, base)):
        raise DataError(
            f"index of '{_name(da)}' to base year {base:g}: no observation at that time "
            f"(the series spans {times.min():g}-{times.max():g})"
        )
    at_base = da.sel(time=times[np.isclose(times, base)][0])
    return _note(da / at_base * value, da, f"index {base:g}={value:g}", units=f"index ({base:g}={value:g})")


def scale(da: xr.DataArray, factor: float, units: str | None = None) -> xr.DataArray:
    """Multiply by ``factor`` (e.g. 0.01 for percent to fraction) and optionally rename units."""
    return _note(da * factor, da, f"scale {factor:g}", units=units if units is not None else da.attrs.get("units", ""))


def annual_mean(da: xr.DataArray, min_count: int | None = None) -> xr.DataArray:
    """Average sub-annual observations (quarters as decimal years) into calendar years.

    A year is kept only when it has ``min_count`` observations (default: the most
    observations any year has, so incomplete first and last years are dropped).
    """
    years = np.floor(da["time"].values + 1e-9)
    grouped = da.assign_coords(year=("time", years)).groupby("year")
    counts = da.notnull().assign_coords(year=("time", years)).groupby("year").sum("time")
    needed = int(counts.max()) if min_count is None else int(min_count)
    mean = grouped.mean("time")
    mean = mean.where(counts >= needed)
    mean = mean.rename(year="time")
    if "country" in mean.dims:
        keep = mean.notnull().any("country")
    else:
        keep = mean.notnull()
    mean = mean.sel(time=keep.values)
    mean["time"].attrs = {"units": "year", "long_name": "Time"}
    return _note(mean, da, "annual mean", frequency="annual")


_SIMPLE: dict[str, Callable[..., xr.DataArray]] = {
    "log": log,
    "growth": growth,
    "annual_mean": annual_mean,
}


def parse(step: str) -> Callable[[xr.DataArray], xr.DataArray]:
    """A transform from its short form: ``log``, ``growth``, ``growth:simple``, ``index:1950``,
    ``index:1950:1``, ``scale:0.01``, ``annual_mean``."""
    if not isinstance(step, str) or not step.strip():
        raise DataError(f"a transform must be a non-empty string; got {step!r}")
    name, _, rest = step.strip().partition(":")
    args = [a for a in rest.split(":") if a] if rest else []
    try:
        if name in ("log", "annual_mean") and not args:
            return _SIMPLE[name]
        if name == "growth" and len(args) <= 1:
            return lambda da: growth(da, *(args or ["log"]))
        if name == "index" and 1 <= len(args) <= 2:
            numbers = [float(a) for a in args]
            return lambda da: index(da, *numbers)
        if name == "scale" and len(args) == 1:
            factor = float(args[0])
            return lambda da: scale(da, factor)
    except ValueError:
        raise DataError(f"transform {step!r}: arguments must be numbers") from None
    raise DataError(
        f"unknown transform {step!r}; allowed: log, growth[:log|simple], index:YEAR[:VALUE], scale:FACTOR, annual_mean"
    )


def apply(da: xr.DataArray, steps) -> xr.DataArray:
    """Apply a transform given as a short form or a list of them, in order."""
    if steps is None:
        return da
    if isinstance(steps, str):
        steps = [steps]
    for step in steps:
        da = parse(step)(da)
    return da
