"""Exception classes raised by pysd_runner.

Every class derives from :class:`CrisisError`, the base the command line catches to print
``Error: ...`` without a traceback. Messages name the input, what was wrong and what is
allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CrisisWarning(UserWarning):
    """Base of every warning the toolkit gives, whichever module it is attributed to.

    Warnings are raised with ``stacklevel`` pointing at the caller, so a filter by module
    misses them; filter by this category instead (the test suite turns it into an error).
    """


class CrisisError(Exception):
    """A user-facing error: bad input, a model that cannot be used, a failed run."""


class ModelFileError(CrisisError, FileNotFoundError):
    """The model file is missing or has an extension that cannot be translated."""


class ModelCompileError(CrisisError):
    """The model could not be translated or uses functions PySD does not implement."""


class ParameterError(CrisisError, ValueError):
    """A parameter name or value given to a run is not acceptable."""


class ScenarioError(CrisisError, ValueError):
    """A scenario file is missing, malformed or refers to unknown parameters."""


class SimulationError(CrisisError, ArithmeticError):
    """A run produced non-finite values (reported with the first time and variable)."""

    def __init__(self, message: str, *, time: float, variable: str):
        super().__init__(message)
        self.time = time
        self.variable = variable


class OutputError(CrisisError, ValueError):
    """A result cannot be written where or in the format asked."""


# --------------------------------------------------------------------------- warnings and
# errors of single engines and analyses (all here, so that every layer can import them)

class VectorisationWarning(CrisisWarning):
    """Some members were run one by one because an element cannot run on member arrays."""


class ExecutorError(CrisisError):
    """The executor (e.g. a Dask scheduler) cannot be reached or failed."""

class TooManyLoopsError(CrisisError):
    """The model has more feedback loops than the cap allows."""


class LoopsFileError(CrisisError, ValueError):
    """A loops.toml file is malformed or names variables the model does not have."""


class LoopScoreWarning(CrisisWarning):
    """Some link scores were approximated (a stateful function that is not scored exactly)."""


class LargeRunWarning(CrisisWarning):
    """A run will take more than a gigabyte of memory: said before it starts, never silent."""


class NonFiniteWarning(CrisisWarning):
    """A run produced non-finite values and ``errors="warn"`` was asked for."""


class ImplausibleWarning(CrisisWarning):
    """A run left a plausible range its model folder declares (plausible.toml)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for close matches of ``name``, or ``""``."""
    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    matches = difflib.get_close_matches(str(name).lower(), list(lowered), n=3, cutoff=0.6)
    if not matches:
        return ""
    quoted = " or ".join(f"'{lowered[m]}'" for m in matches)
    return f" Did you mean {quoted}?"


def stderr_is_terminal() -> bool:
    """Progress bars go to stderr only when it is a terminal (never into logs or pipes)."""
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
