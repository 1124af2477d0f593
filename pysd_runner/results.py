"""Write and read run results: netCDF (identical round trip) or CSV, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from .errors import OutputError
from .files import atomic_output, check_output

__all__ = ["save", "load_result"]

FORMATS = (".nc", ".csv")
ROW_DIMS = ("scenario", "run", "time")


def save(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a result atomically to netCDF (``.nc``) or CSV (``.csv``).

    The file is written under a temporary name in the same folder and renamed into
    place, so an interrupted write never leaves a half-written file or destroys an
    earlier one. A netCDF round trip through :func:`load_result` gives an identical
    Dataset, attrs included.

    CSV holds one row per time (and scenario or run); subscripted variables become one
    column per element, named ``name[element]``.
    """
    target = check_output(path, FORMATS, what="output file")
    suffix = target.suffix.lower()
    with atomic_output(target, "output file") as tmp:
        if suffix == ".nc":
            dataset.to_netcdf(tmp, engine="netcdf4")
        else:
            _to_frame(dataset).to_csv(tmp, index=True)
    return target


def display_name(name: str, da) -> str:
    """The name to show for a variable: its Python name, or its Vensim name where PySD
    could keep no letter of it (non-ASCII names become ``nvs_``, ``nvs__1``, ...)."""
    if str(name).startswith("nvs") and da.attrs.get("long_name"):
        return str(da.attrs["long_name"])
    return str(name)


def _to_frame(dataset: xr.Dataset):
    import pandas as pd

    rows = [d for d in ROW_DIMS if d in dataset.dims]
    if not rows:
        raise OutputError("cannot write CSV: the Dataset has no time, run or scenario dim")
    frame_coords = xr.Dataset(coords={d: dataset[d] for d in rows})
    frames = []
    for name, da in dataset.data_vars.items():
        da = da.broadcast_like(frame_coords)
        other = [d for d in da.dims if d not in rows]
        da = da.transpose(*rows, *other)
        series = da.to_series()
        label = display_name(name, da)
        if other:
            frame = series.unstack(other)
            frame.columns = [
                f"{label}[{','.join(map(str, c if isinstance(c, tuple) else (c,)))}]" for c in frame.columns
            ]
        else:
            frame = series.to_frame(label)
        frames.append(frame)
    return pd.concat(frames, axis=1)


def load_result(path: str | os.PathLike) -> xr.Dataset:
    """Read a result written by :func:`save` (netCDF) fully into memory."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise OutputError(f"result file '{source}' does not exist")
    if source.suffix.lower() != ".nc":
        raise OutputError(f"result file '{source}' must be netCDF (.nc); got '{source.suffix}'")
    try:
        return xr.load_dataset(source, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise OutputError(f"result file '{source}' is not a readable netCDF file: {exc}") from None
