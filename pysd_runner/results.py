"""Write and read run results: netCDF (identical round trip) or CSV, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import xarray as xr

from .errors import OutputError

__all__ = ["save", "load_result", "check_output", "atomic_output"]

FORMATS = (".nc", ".csv")
ROW_DIMS = ("scenario", "run", "time")


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None, *, what: str = "output") -> Path:
    """Check, before any work, that a result can be written at ``path``; return it.

    The extension must be one of ``suffixes``; the path must not be a folder; its folder
    is created if missing and must take a new file. Raises :class:`OutputError` naming the
    path, what is wrong and what is allowed.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        allowed = f" ending in {' or '.join(suffixes)}" if suffixes else ""
        raise OutputError(f"{what} '{target}' is a folder; give a file name{allowed}")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise OutputError(
            f"{what} '{target}' has extension '{target.suffix}'; allowed: {', '.join(suffixes)}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{what} '{target}' cannot be written: {reason} ('{exc.filename or target.parent}')") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{what} '{target}' cannot be written: the file exists and is read-only")
    return target


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class atomic_output:
    """``with atomic_output(path) as tmp:`` write ``tmp``; it replaces ``path`` on success.

    Nothing is left behind on failure or interruption (an earlier file at ``path`` stays
    whole), and the file gets the mode a plain ``open`` would give (the umask's).
    """

    def __init__(self, path: str | os.PathLike, what: str = "output"):
        self.target = Path(path).expanduser()
        self.what = what
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        except OSError as exc:
            raise OutputError(f"{self.what} '{self.target}' cannot be written: {exc.strerror or exc}") from None
        os.close(handle)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, kind, value, tb) -> bool:
        assert self.tmp is not None
        if kind is None:
            try:
                os.chmod(self.tmp, _umask_mode())
                os.replace(self.tmp, self.target)
                return False
            except OSError as exc:
                self.tmp.unlink(missing_ok=True)
                raise OutputError(f"{self.what} '{self.target}' cannot be written: {exc.strerror or exc}") from None
        self.tmp.unlink(missing_ok=True)
        if isinstance(value, OSError) and not isinstance(value, OutputError):
            raise OutputError(
                f"{self.what} '{self.target}' cannot be written: {value.strerror or value}"
            ) from None
        return False


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
