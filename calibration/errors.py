"""Exception and warning classes raised by calibration.

Every error derives from pysd_runner's :class:`~pysd_runner.CrisisError`, so the ``crisis``
command prints ``Error: ...`` without a traceback. Messages name the input (the series,
the spec file and key), what was wrong and what is allowed.
"""

from __future__ import annotations

from pysd_runner import did_you_mean  # noqa: F401 - one implementation, re-exported

from pysd_runner import CrisisError, CrisisWarning


class DataError(CrisisError, ValueError):
    """A data series is unknown, malformed or does not cover the window asked for."""


class FredError(DataError):
    """A FRED series could not be downloaded and no cached copy exists."""


class SpecError(CrisisError, ValueError):
    """A calibration spec is malformed; the message names the file and the key."""


class CheckpointError(CrisisError):
    """A checkpoint is missing, does not match the spec, or an output would be overwritten."""


class CalibrationWarning(CrisisWarning):
    """Something about a fit the analyst must know: non-convergence, a flat profile, a short chain."""


