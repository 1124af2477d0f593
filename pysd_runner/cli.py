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
    "web": "dashboards.commands:web",
    "calibrate": "calibration.commands:calibrate",
    "data": "calibration.commands:data",
    "facts": "calibration.commands:facts",
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
        """The one error boundary of the command line.

        Every failure a user can cause or meet becomes one ``Error:`` line with exit
        status 1 and no traceback: the toolkit's own errors (bad input, a model that
        cannot be used, a failed run), the operating system's (an unwritable path, a full
        disk, an unusable cache folder) and memory that runs out. Ctrl-C exits with 130.
        Warnings become one ``Warning:`` line each.
        """
        import warnings

        from .errors import CrisisError

        previous = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except CrisisError as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError as exc:
            detail = str(exc).strip() or "the operating system refused an allocation"
            raise click.ClickException(
                f"not enough memory ({detail}); reduce the run with --vars, --saveper, --final-time or fewer "
                "members, or check the limit given with --max-memory"
            ) from None
        except OSError as exc:
            raise click.ClickException(_os_error_text(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            # A library's clean-up can fail while Ctrl-C unwinds it (numba, stopped mid-way
            # through compiling, has no object to free): that is still an interruption.
            if not _during_interrupt(exc):
                raise
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(130) from None
        finally:
            warnings.showwarning = previous


def _during_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt was being handled."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def _os_error_text(exc: OSError) -> str:
    import errno

    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = {
        errno.ENOSPC: "; free some disk space, or write somewhere else",
        errno.EACCES: "; choose a path you may write to",
        errno.EROFS: "; the file system is read-only, choose another path",
        errno.ENOENT: "",
    }.get(exc.errno or -1, "")
    return f"{reason}: '{where}'{hint}" if where else f"{reason}{hint}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """One ``Warning: ...`` line on stderr, without the file and source line Python adds."""
    text = " ".join(str(message).split())
    click.echo(f"Warning: {text}", err=True)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="crisis-dynamics", prog_name="crisis")
def main() -> None:
    """crisis-dynamics: stock-and-flow models of profitability, tax revenue, welfare and legitimacy.

    \b
    Example:
      crisis info models/goodwin/goodwin.mdl
      crisis run models/goodwin/goodwin.mdl --scenario baseline --output out/goodwin.nc
    """
