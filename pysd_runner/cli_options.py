"""Click parameter types shared by every ``crisis`` subcommand (the command-line layer)."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import ParameterError


class OutputFile(click.ParamType):
    """An output path checked while the command line is read, before any work starts.

    Its extension must be one of ``suffixes``, it must not be a folder, and its folder must
    take a new file; otherwise the command stops with one ``Error:`` line naming the path.
    """

    name = "file"

    def __init__(self, *suffixes: str):
        self.suffixes = tuple(s.lower() for s in suffixes) or None

    def get_metavar(self, param, ctx=None) -> str:  # click >= 8.2 passes ctx
        return "FILE" if not self.suffixes else "FILE" + "|".join(self.suffixes).upper().replace(".", "")

    def convert(self, value, param, ctx) -> Path:
        flag = f"--{param.name}" if param is not None else "output"
        from .files import check_output

        return check_output(value, self.suffixes, what=flag)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


class ByteSize(click.ParamType):
    """A memory size: bytes, or a number with a unit (``512MB``, ``4GiB``, ``1.5G``)."""

    name = "size"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        import re

        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
            self.fail(f"{value!r} is not a memory size; give bytes or a number with a unit, e.g. 512MB or 4GiB",
                      param, ctx)
        return float(match.group(1)) * _UNITS[unit]


#: ``--max-memory``, shared by the commands that simulate.
max_memory_option = click.option(
    "--max-memory", type=ByteSize(), default=None, metavar="SIZE",
    help="Refuse a run estimated to need more memory than this (e.g. 4GB) [default: half of the available memory].",
)


def parse_set(values: tuple[str, ...]) -> dict:
    """``name=value`` or ``name=t:v,t:v`` (a time series) into a params mapping."""
    params = {}
    for item in values:
        if "=" not in item:
            raise ParameterError(
                f"--set expects name=value (or name=time:value,time:value); got {item!r}"
            )
        name, _, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not name:
            raise ParameterError(f"--set {item!r} has no parameter name before '='")
        if ":" in raw:
            pairs = []
            for pair in raw.split(","):
                t, sep, v = pair.partition(":")
                if not sep:
                    raise ParameterError(
                        f"--set {name}: a time series is written time:value,time:value; got {raw!r}"
                    )
                pairs.append((t.strip(), v.strip()))
            params[name] = pairs
        else:
            params[name] = raw
    return params
