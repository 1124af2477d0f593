"""The ``crisis`` command: one click group whose subcommands are loaded lazily.

Each subcommand lives in the package it drives and is named here by an import string,
so ``crisis --help`` stays fast and no package imports one above it.
"""

from __future__ import annotations

import importlib

import click

#: Subcommand name -> "module:attribute". Later packages add their commands here.
COMMANDS = {
    "info": "pysd_runner.commands:info",
    "run": "pysd_runner.commands:run_command",
    "ensemble": "pysd_runner.commands:ensemble_command",
    "sensitivity": "pysd_runner.commands:sensitivity_command",
    "loops": "pysd_runner.commands_loops:loops",
    "report": "dashboards.commands:report",
    "grid": "dashboards.commands:grid",
    "app": "dashboards.commands:app",
    "calibrate": "calibration.commands:calibrate",
    "data": "calibration.commands:data",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand only when it is listed or invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):
        from .errors import CrisisError

        try:
            return super().invoke(ctx)
        except CrisisError as exc:
            # User errors: one clear line, exit status 1, no traceback.
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crisis-dynamics", prog_name="crisis")
def main() -> None:
    """crisis-dynamics: stock-and-flow models of profitability, tax revenue, welfare and legitimacy.

    \b
    Example:
      crisis info models/goodwin/goodwin.mdl
      crisis run models/goodwin/goodwin.mdl --scenario baseline --output out/goodwin.nc
    """
