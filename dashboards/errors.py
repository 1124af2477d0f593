"""Exception classes raised by dashboards.

They derive from :class:`pysd_runner.errors.CrisisError`, so the ``crisis`` command line
prints ``Error: ...`` and exits 1 without a traceback. (``pysd_runner.errors`` imports
neither PySD nor anything heavy.)
"""

from __future__ import annotations

from pysd_runner import CrisisError, did_you_mean

__all__ = ["DashboardInputError", "did_you_mean"]


class DashboardInputError(CrisisError, ValueError):
    """A Dataset or file given to a figure, the report or the app lacks what it needs."""
