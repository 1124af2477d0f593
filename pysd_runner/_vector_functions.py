"""Array-aware replacements for the PySD runtime functions that branch on scalars.

The vectorising pass (:mod:`pysd_runner.vectorise`) points the generated model's imports
here. Each function behaves exactly like PySD's for scalars and DataArrays (it calls
PySD's own implementation) and evaluates element-wise for numpy arrays of ensemble
members. Vensim semantics are kept: IF THEN ELSE evaluates both branches only when the
condition differs between members.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from pysd.py_backend import functions as _pysd_functions
from pysd.py_backend.lookups import HardcodedLookups as _HardcodedLookups

SMALL_VENSIM = _pysd_functions.SMALL_VENSIM

__all__ = ["if_then_else", "xidz", "zidz", "pulse", "HardcodedLookups"]


def _is_members(value) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0


def if_then_else(condition, val_if_true, val_if_false):
    """IF THEN ELSE over member arrays: one branch when all members agree, else ``np.where``."""
    if not _is_members(condition):
        return _pysd_functions.if_then_else(condition, val_if_true, val_if_false)
    if condition.all():
        return val_if_true()
    if not condition.any():
        return val_if_false()
    with np.errstate(all="ignore"):
        return np.where(condition, val_if_true(), val_if_false())


def xidz(numerator, denominator, x):
    """XIDZ: ``x`` where ``|denominator|`` is below Vensim's small number, else the quotient."""
    if not (_is_members(numerator) or _is_members(denominator) or _is_members(x)):
        return _pysd_functions.xidz(numerator, denominator, x)
    small = np.abs(denominator) < SMALL_VENSIM
    with np.errstate(all="ignore"):
        quotient = np.divide(numerator, np.where(small, 1.0, denominator))
    return np.where(small, x, quotient)


def zidz(numerator, denominator):
    """ZIDZ: zero where ``|denominator|`` is below Vensim's small number, else the quotient."""
    if not (_is_members(numerator) or _is_members(denominator)):
        return _pysd_functions.zidz(numerator, denominator)
    small = np.abs(denominator) < SMALL_VENSIM
    with np.errstate(all="ignore"):
        quotient = np.divide(numerator, np.where(small, 1.0, denominator))
    return np.where(small, 0.0, quotient)


def pulse(time, start, repeat_time=0, width=None, magnitude=None, end=None):
    """PULSE / PULSE TRAIN with member arrays for any argument (same formulas as PySD)."""
    arrays = [v for v in (start, repeat_time, width, magnitude, end) if _is_members(v)]
    if not arrays:
        return _pysd_functions.pulse(time, start, repeat_time, width, magnitude, end)
    t = time()
    width = 0.5 * time.time_step() if width is None else width
    out = magnitude / time.time_step() if magnitude is not None else 1
    start = np.asarray(start, dtype=float)
    repeat = np.asarray(repeat_time, dtype=float)
    single = (start - SMALL_VENSIM <= t) & (t < start + width)
    with np.errstate(all="ignore"):
        train = (start <= t) & ((t - start + SMALL_VENSIM) % np.where(repeat == 0, 1.0, repeat) < width)
    if end is not None:
        train = train & (t < end)
    on = np.where(repeat == 0, single, train)
    return np.where(on, out, 0) * np.ones(np.broadcast_shapes(*(np.shape(a) for a in arrays)))


class HardcodedLookups(_HardcodedLookups):
    """Lookups that interpolate member arrays with ``np.interp`` (ends held, as in Vensim).

    PySD's lookup tests ``x in ...`` on a scalar; for a 1-D table and a numpy input this
    class interpolates all members at once. XMILE's ``extrapolate`` tables extend the end
    segments linearly, ``hold_backward`` tables step, as in PySD.
    """

    def __call__(self, x, final_subs=None):
        data = self.data
        if not _is_members(x) or not isinstance(data, xr.DataArray) or data.dims != ("lookup_dim",):
            return super().__call__(x, final_subs)
        xs = data["lookup_dim"].values.astype(float)
        ys = data.values.astype(float)
        if self.interp == "hold_backward":
            index = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 1)
            return ys[index]
        values = np.interp(x, xs, ys)
        if self.interp == "extrapolate" and len(xs) > 1:
            low = (ys[1] - ys[0]) / (xs[1] - xs[0])
            high = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            values = np.where(x < xs[0], ys[0] + low * (x - xs[0]), values)
            values = np.where(x > xs[-1], ys[-1] + high * (x - xs[-1]), values)
        return values
