"""Floating-point comparison whose absolute slack scales with the size of the series.

Engines that run the same operations can still differ in the last bits on another CPU
(numba compiles for the host, libm's exp/log differ). A value that is a difference of
nearly equal terms (a net flow near zero) then differs by ~1e-16 of the terms' size, far
more than ``rtol`` of its own tiny value. The bound is therefore ``rtol`` of the value
plus ``rtol`` of the largest finite magnitude in the expected series.
"""

from __future__ import annotations

import numpy as np


def series_scale(expected) -> float:
    values = np.asarray(expected, dtype=float)
    finite = values[np.isfinite(values)]
    return float(np.max(np.abs(finite))) if finite.size else 0.0


def assert_close_to_scale(actual, expected, rtol: float, err_msg: str = "") -> None:
    """``assert_allclose`` with ``atol = rtol * max|expected|``; NaN must match NaN."""
    expected = np.asarray(expected, dtype=float)
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=rtol,
                               atol=rtol * series_scale(expected), equal_nan=True, err_msg=err_msg)
