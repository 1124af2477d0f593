"""Plausible ranges: finite is not the same as believable.

A model folder may declare, in ``plausible.toml`` beside the model file, the range its key
variables can take in any economy worth reading (a share between 0 and 1, an employment
rate below 1, a debt ratio of a few years of output)::

    description = "..."
    [ranges]
    "wage share" = { range = [0, 1.2], why = "wages can exceed output only briefly, in a slump" }
    "employment rate" = [0, 1]

:func:`pysd_runner.run` warns (:class:`ImplausibleWarning`) and records in the
``implausible`` attribute each variable that leaves its range, with the first time and the
value; :func:`pysd_runner.run_ensemble` adds ``plausible(run)`` (true for members that
stay within every range) and ``implausible(run)`` (what the first exit was) beside
``ok(run)``, which keeps meaning "stayed finite", and counts them in ``n_plausible``.

Examples
--------
>>> from pysd_runner import compile_model
>>> from pysd_runner.plausible import load_plausible
>>> ranges = load_plausible(compile_model("models/goodwin/goodwin.mdl"))
>>> [(r.name, r.low, r.high) for r in ranges][:1]
[('wage share', 0.0, 1.0)]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImplausibleWarning, ParameterError, did_you_mean

__all__ = ["PlausibleRange", "ImplausibleWarning", "load_plausible", "plausible_path", "first_exits", "member_exits",
           "furthest_outside"]

PLAUSIBLE_FILE = "plausible.toml"


@dataclass(frozen=True)
class PlausibleRange:
    name: str      # Vensim name
    py_name: str
    low: float
    high: float
    why: str = ""

    def describe(self) -> str:
        return f"{_fmt(self.low)} to {_fmt(self.high)}"


def _fmt(value: float) -> str:
    return f"{value:g}"


def plausible_path(model) -> Path:
    return Path(model.source).with_name(PLAUSIBLE_FILE)


def load_plausible(model, path: str | Path | None = None) -> list[PlausibleRange]:
    """The plausible ranges declared beside ``model`` (none when there is no file).

    Read once per file version and model: every run and ensemble asks, so loops of runs
    (fits, grids) do not reread and re-resolve the file."""
    path = Path(path) if path is not None else plausible_path(model)
    try:
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
    except FileNotFoundError:
        return []
    key = (str(path), stamp, str(model.source), getattr(model, "sha256", None))
    if key not in _LOADED:
        _LOADED[key] = _read(model, path)
    return list(_LOADED[key])


_LOADED: dict[tuple, tuple[PlausibleRange, ...]] = {}


def _read(model, path: Path) -> tuple[PlausibleRange, ...]:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"plausible ranges '{path}' are not valid TOML: {exc}") from None
    allowed = {"description", "ranges"}
    for key in raw:
        if key not in allowed:
            raise ParameterError(f"plausible ranges '{path}': unknown key '{key}'.{did_you_mean(key, allowed)} "
                                 f"Allowed: {', '.join(sorted(allowed))}")
    out = []
    for name, value in raw.get("ranges", {}).items():
        why = ""
        if isinstance(value, dict):
            unknown = set(value) - {"range", "why"}
            if unknown:
                raise ParameterError(f"plausible ranges '{path}': '{name}' has unknown key(s) "
                                     f"{', '.join(sorted(unknown))}; allowed: range, why")
            why = str(value.get("why", ""))
            value = value.get("range")
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or not value[0] < value[1]):
            raise ParameterError(f"plausible ranges '{path}': '{name}' needs [low, high] with low < high; "
                                 f"got {value!r}")
        try:
            element = model.resolve(name)
        except Exception as exc:  # an unknown name: the model's own message says which names exist
            raise ParameterError(f"plausible ranges '{path}': {exc}") from None
        out.append(PlausibleRange(element.name, element.py_name, float(value[0]), float(value[1]), why))
    return tuple(out)


def first_exits(times: np.ndarray, values: np.ndarray, r: PlausibleRange) -> tuple[np.ndarray, np.ndarray]:
    """For values shaped (members, times, ...): per member the first time outside the range
    (NaN if none) and the value there (for a subscripted variable, the element furthest
    outside). Non-finite values are not exits: the ``ok`` flag already reports them."""
    values = np.asarray(values, dtype=float)
    values = values.reshape(values.shape[0], values.shape[1], -1)
    distance = _distance(values, r)
    with np.errstate(invalid="ignore"):
        outside = distance > 0
    by_time = outside.any(axis=2)
    hit = by_time.any(axis=1)
    rows = np.arange(values.shape[0])
    index = np.argmax(by_time, axis=1)
    first_time = np.where(hit, np.asarray(times, dtype=float)[index], np.nan)
    at = distance[rows, index]  # (members, elements) at the first exit
    worst = np.argmax(np.where(at > 0, at, -np.inf), axis=1)
    first_value = np.where(hit, values[rows, index, worst], np.nan)
    return first_time, first_value


def _distance(values: np.ndarray, r: PlausibleRange) -> np.ndarray:
    """How far each value lies outside the range (> 0 outside, NaN where the value is)."""
    with np.errstate(invalid="ignore"):
        return np.maximum(values - r.high, r.low - values)


def furthest_outside(values: np.ndarray, r: PlausibleRange) -> np.ndarray:
    """For values shaped (members, times, ...): per member the largest distance outside the
    range over the run, as a fraction of the range's width (0 within it; non-finite values
    are not counted). A measure of how implausible a member is, for penalties."""
    values = np.asarray(values, dtype=float)
    distance = _distance(values.reshape(values.shape[0], -1), r) / (r.high - r.low)
    return np.nanmax(np.where(distance > 0, distance, 0.0), axis=1, initial=0.0)


def member_exits(times: np.ndarray, arrays, ranges) -> list[list[dict]]:
    """Per member, every range it leaves, earliest first: variable, time, value, range and
    a one-line text. ``arrays`` maps each range's Python name to (members, times, ...)."""
    found = [(r, *first_exits(times, arrays[r.py_name], r)) for r in ranges]
    n = len(found[0][1]) if found else 0
    out: list[list[dict]] = [[] for _ in range(n)]
    for r, when, value in found:
        for i in np.flatnonzero(~np.isnan(when)):
            out[i].append({"variable": r.name, "time": float(when[i]), "value": float(value[i]),
                           "range": [r.low, r.high], "text": exit_text(r, when[i], value[i])})
    for exits in out:
        exits.sort(key=lambda e: e["time"])
    return out


def exit_text(r: PlausibleRange, time: float, value: float) -> str:
    return f"{r.name} {value:.4g} at time {time:g} (plausible {r.describe()})"
