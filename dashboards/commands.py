"""``crisis report``, ``crisis grid``, ``crisis web`` and ``crisis app``: thin click wrappers over dashboards.

Registered lazily in :data:`pysd_runner.cli.COMMANDS`; user errors raise
:class:`pysd_runner.errors.CrisisError` subclasses, which the group prints as
``Error: ...`` with exit status 1.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from pysd_runner import OutputFile

_file = click.Path(dir_okay=False, path_type=Path)


@click.command("report")
@click.option("--runs", required=True, type=_file, help="Run results (.nc) from `crisis run`: one run or several scenarios.")
@click.option("--fit", type=_file, help="Fit result (.nc) from calibration: adds the fit-versus-data panel.")
@click.option("--ensemble", type=_file, help="Ensemble result (.nc, dim 'run'): adds fan charts.")
@click.option("--loops", type=_file, help="Loop dominance result (.nc, dims 'time', 'loop'): adds the loop panel.")
@click.option("--grid", type=_file, help="Lever grid (.nc) from `crisis grid`: adds sliders over its runs.")
@click.option("--sensitivity", type=_file, help="Sobol or Morris indices (.nc, dim 'param'): adds bar charts.")
@click.option("--model", type=_file, help="The runs' model file: adds the live levers panel (the model runs in the page).")
@click.option("--title", help="Page title (default: from the model name).")
@click.option("--story", type=_file, help="A story.toml for the opening figure (default: the one beside the runs' "
              "model, when the runs hold its scenarios).")
@click.option("--no-story", is_flag=True, help="Open with the sectors, without the story figure.")
@click.option("--output", "-o", required=True, type=OutputFile(".html"), help="Where to write the report (.html).")
def report(runs, fit, ensemble, loops, grid, sensitivity, model, title, story, no_story, output):
    """Write one self-contained interactive HTML report (works offline, no server).

    Each optional input adds its panel. plotly.js is inlined, so the file opens anywhere
    without a network.

    \b
    Example:
      crisis report --runs out/goodwin.nc --output out/report.html
      crisis report --runs out/goodwin.nc --grid out/grid.nc --output out/report.html
      crisis report --runs out/goodwin.nc --model models/goodwin/goodwin.mdl --output out/report.html
    """
    from .report import write_report

    written = write_report(output, runs, fit=fit, ensemble=ensemble, loops=loops, grid=grid,
                           sensitivity=sensitivity, title=title, model=model,
                           story=False if no_story else story)
    click.echo(f"Wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")


@click.command("grid")
@click.argument("model", type=_file)
@click.option("--lever", "levers", multiple=True, required=True, metavar="NAME[=LO:HI|=V1,V2,...]",
              help="A constant to vary (give one or two). Without values it spans its Vensim range.")
@click.option("--steps", type=click.IntRange(min=2), default=5, show_default=True,
              help="Grid values per lever for NAME or NAME=LO:HI.")
@click.option("--scenario", "-s", "scenarios", multiple=True, metavar="NAME|PATH",
              help="Run the grid under this scenario (repeat for several).")
@click.option("--all-scenarios", is_flag=True, help="Run the grid under every scenario of the model.")
@click.option("--vars", "variables", metavar="A,B", help="Comma-separated outputs to keep (default: one per panel).")
@click.option("--final-time", type=float, help="Override the final time.")
@click.option("--time-step", type=float, help="Override the integration time step.")
@click.option("--saveper", type=float, help="Override the save period.")
@click.option("--output", "-o", required=True, type=OutputFile(".nc"), help="Where to write the grid (.nc).")
def grid(model, levers, steps, scenarios, all_scenarios, variables, final_time, time_step, saveper, output):
    """Run a model over a grid of one or two levers, for the report's sliders.

    \b
    Example:
      crisis grid models/goodwin/goodwin.mdl --lever "phillips slope=1:1.5" \\
          --lever "phillips intercept=1:1.3" --all-scenarios --output out/grid.nc
    """
    import numpy as np

    from pysd_runner import compile_model, save
    from pysd_runner import scenarios_on_one_axis
    from pysd_runner import chosen_scenarios

    from .errors import DashboardInputError
    from .grid import build_lever_grid, describe_lever

    if Path(output).suffix.lower() != ".nc":
        raise DashboardInputError(f"--output '{output}' must end in .nc")
    if not 1 <= len(levers) <= 2:
        raise DashboardInputError(f"give one or two --lever options; got {len(levers)}")
    compiled = compile_model(model)
    names = chosen_scenarios(compiled, scenarios, all_scenarios)
    if len(names) > 1:
        names, notes = scenarios_on_one_axis(compiled, names, final_time=final_time, time_step=time_step,
                                             saveper=saveper)
        for note in notes:
            click.echo(f"Note: {note}", err=True)
    values = {}
    lever_names = []
    for spec in levers:
        name, given = describe_lever(spec)
        lever_names.append(name)
        if isinstance(given, tuple):
            values[name] = np.linspace(given[0], given[1], steps).tolist()
        elif given is not None:
            values[name] = given
    chosen = [v.strip() for v in variables.split(",") if v.strip()] if variables else None
    result = build_lever_grid(compiled, lever_names, values=values, n_steps=steps, scenarios=names or None,
                              variables=chosen, final_time=final_time, time_step=time_step, saveper=saveper)
    written = save(result, output)
    failed = result.attrs.get("n_failed_runs", 0)
    runs = int(result["ok"].size)
    click.echo(f"Ran {runs} runs ({failed} did not stay finite). Wrote {written}")


@click.command("web")
@click.argument("model", type=_file)
@click.option("--scenario", "-s", "scenarios", multiple=True, metavar="NAME|PATH",
              help="Offer this scenario (repeat for several; the first opens). Default: every scenario of the model.")
@click.option("--vars", "variables", metavar="A,B", help="Comma-separated variables for the figure's panels.")
@click.option("--title", help="Page title (default: from the model name).")
@click.option("--output", "-o", type=OutputFile(".html"), default=None,
              help="Where to write the page (.html; default: out/web/MODEL.html).")
def web(model, scenarios, variables, title, output):
    """Write the model as one HTML page that simulates in the browser (no server, no network).

    The page runs the model's equations as JavaScript generated from the compiled kernel:
    every lever, any combination, loop switches, pins and a scenario export. It opens
    from file:// and can be e-mailed.

    \b
    Example:
      crisis web models/reformism/reformism.mdl --scenario recession_austerity --output out/reformism.html
    """
    from .web import write_web

    if output is None:
        output = Path("out") / "web" / f"{model.stem}.html"
        output.parent.mkdir(parents=True, exist_ok=True)
    names = [v.strip() for v in variables.split(",") if v.strip()] if variables else None
    written = write_web(output, model, list(scenarios) or None, variables=names, title=title)
    click.echo(f"Wrote {written} ({written.stat().st_size / 1e6:.1f} MB): open it in a browser")


@click.command("app")
@click.argument("model", type=_file)
@click.option("--scenario", "-s", metavar="NAME|PATH", help="Start from this scenario (name or TOML file).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only loopback by default: other machines cannot reach the app.")
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True, help="Port to listen on.")
def app(model, scenario, host, port):
    """Start the live app: the model runs in the page (every lever, pins, loop switches,
    export), with the server-run app beside it at /server/.

    Open the printed address in a browser; Ctrl-C stops the app. A model the page cannot
    take (the element is named) is run on the server at the same address.

    \b
    Example:
      crisis app models/goodwin/goodwin.mdl --scenario baseline --port 8050
    """
    from .app import make_live_app

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    _check_port(host, port)
    dash_app, reason = make_live_app(model, scenario=scenario)
    if not loopback:
        click.echo(f"Warning: listening on {host}: other machines on the network can reach this app.", err=True)
    if reason is not None:
        click.echo(f"Note: {reason}; the app runs it on the server.", err=True)
        click.echo(f"Serving the crisis app at http://{host}:{port}/ (Ctrl-C to stop)")
    else:
        click.echo(f"Serving the crisis app at http://{host}:{port}/ (the model runs in your browser; "
                   f"the server-run view is at http://{host}:{port}/server/) (Ctrl-C to stop)")
    dash_app.run(host=host, port=port, debug=False)


def _check_port(host: str, port: int) -> None:
    """Fail with one line before the slow start-up if the address cannot be listened on.

    (The server would otherwise print its own message and exit after the model is compiled.)
    """
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); give an address of this machine")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port"
            ) from None
