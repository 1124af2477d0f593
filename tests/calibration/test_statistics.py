"""Fit statistics against hand-computed values (Sterman 1984's decomposition)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration import fit_statistics
from calibration.statistics import persistence_rmse


def test_known_values():
    simulated = np.array([1.0, 2.0, 3.0, 4.0])
    actual = np.array([2.0, 2.0, 4.0, 4.0])
    stats = fit_statistics(simulated, actual)
    mse = (1 + 0 + 1 + 0) / 4
    assert stats["n"] == 4
    assert stats["rmse"] == pytest.approx(math.sqrt(mse))
    assert stats["mape"] == pytest.approx(100 * (0.5 + 0 + 0.25 + 0) / 4)
    assert stats["r2"] == pytest.approx(1 - 2 / 4)
    assert stats["theil_u"] == pytest.approx(math.sqrt(mse) / (math.sqrt(30 / 4) + math.sqrt(40 / 4)))
    # Bias: means 2.5 and 3.0; variation: sd 1.118 and 1.0; the rest is covariation.
    assert stats["theil_um"] == pytest.approx(0.25 / mse)
    assert stats["theil_us"] == pytest.approx((math.sqrt(1.25) - 1.0) ** 2 / mse)
    assert stats["theil_um"] + stats["theil_us"] + stats["theil_uc"] == pytest.approx(1.0)


def test_pure_bias_is_all_um():
    stats = fit_statistics(np.arange(5.0) + 1, np.arange(5.0))
    assert stats["theil_um"] == pytest.approx(1.0) and stats["theil_uc"] == pytest.approx(0.0, abs=1e-12)


def test_perfect_fit_and_nans():
    stats = fit_statistics([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    assert stats["n"] == 2 and stats["rmse"] == 0 and stats["r2"] == 1
    empty = fit_statistics([], [])
    assert empty["n"] == 0 and math.isnan(empty["rmse"])


def test_persistence_forecast():
    assert persistence_rmse(1.0, [1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(persistence_rmse(math.nan, [1.0]))
