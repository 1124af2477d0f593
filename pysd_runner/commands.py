"""``crisis info`` and ``crisis run``: thin click wrappers over the pysd_runner API."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import click

from .cli_options import OutputFile, max_memory_option, parse_set
from .errors import ParameterError


def _model_argument(function):
    return click.argument("model", type=click.Path(dir_okay=False, path_type=Path))(function)


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("info")
@_model_argument
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable description instead of tables.")
def info(model: Path, as_json: bool) -> None:
    """Describe a model: stocks, flows, auxiliaries, constants with units, ranges and documentation.

    \b
    Example:
      crisis info models/goodwin/goodwin.mdl
    """
    from .compiler import compile_model
    from .scenarios import list_scenarios, load_scenario

    compiled = compile_model(model)
    scenarios = {}
    for name in list_scenarios(compiled):
        scenarios[name] = load_scenario(name, compiled).description
    if as_json:
        payload = {
            "model": str(compiled.source),
            "sha256": compiled.sha256,
            "time_units": compiled.time_units,
            "time_settings": compiled.control,
            "elements": [
                {
                    "name": e.name, "py_name": e.py_name, "kind": e.kind, "units": e.units,
                    "range": list(e.limits), "default": e.default, "subscripts": list(e.subscripts),
                    "documentation": e.comment,
                }
                for e in compiled.elements.values()
            ],
            "scenarios": scenarios,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    c = compiled.control
    click.echo(f"Model {compiled.name}  ({compiled.source})")
    click.echo(f"sha256 {compiled.sha256[:16]}…  PySD {compiled.pysd_version}")
    click.echo(
        f"Time: {c['initial_time']:g} to {c['final_time']:g} {compiled.time_units}, "
        f"step {c['time_step']:g}, saved every {c['saveper']:g}"
    )
    sections = [
        ("Stocks", compiled.stocks),
        ("Flows", compiled.flows),
        ("Auxiliaries", compiled.auxiliaries),
        ("Lookups", [e for e in compiled.elements.values() if e.kind == "lookup"]),
    ]
    for title, elements in sections:
        if not elements:
            continue
        click.echo(f"\n{title} ({len(elements)})")
        for e in sorted(elements, key=lambda e: e.name.lower()):
            subs = f" [{', '.join(e.subscripts)}]" if e.subscripts else ""
            click.echo(f"  {e.name}{subs}  ({e.units or 'dimensionless'})")
            if e.comment:
                click.echo(textwrap.indent(textwrap.fill(" ".join(e.comment.split()), 88), "      "))
    constants = sorted(compiled.constants, key=lambda e: e.name.lower())
    if constants:
        click.echo(f"\nConstants ({len(constants)}): name = default  units  range")
        for e in constants:
            default = "subscripted" if e.default is None else f"{e.default:g}"
            click.echo(f"  {e.name} = {default}  ({e.units or 'dimensionless'})  {e.range_text}")
            if e.comment:
                click.echo(textwrap.indent(textwrap.fill(" ".join(e.comment.split()), 88), "      "))
    if scenarios:
        click.echo(f"\nScenarios ({len(scenarios)})")
        for name, description in scenarios.items():
            text = " ".join(description.split())
            click.echo(textwrap.fill(f"{name}: {text}", 88, initial_indent="  ", subsequent_indent="      "))


#: Stocks shown in `crisis run`'s summary when --vars does not choose.
SUMMARY_ROWS = 20


def _summary(dataset, names: list[str]) -> list[str]:
    """One line per scenario and variable: start, minimum, maximum, end."""
    from .results import display_name

    lines = []
    scenarios = list(dataset["scenario"].values) if "scenario" in dataset.dims else [None]
    width = max(len(display_name(n, dataset[n])) for n in names)
    lines.append(f"{'':2}{'variable':<{width}}  {'start':>10} {'min':>10} {'max':>10} {'end':>10}  units")
    for scenario in scenarios:
        part = dataset if scenario is None else dataset.sel(scenario=scenario)
        if scenario is not None:
            lines.append(f"[{scenario}]")
        for name in names:
            da = part[name]
            label = display_name(name, da)
            if set(da.dims) != {"time"}:
                da = da.mean([d for d in da.dims if d != "time"])
            v = da.values
            lines.append(
                f"  {label:<{width}}  {v[0]:>10.4g} {v.min():>10.4g} {v.max():>10.4g} {v[-1]:>10.4g}  "
                f"{part[name].attrs.get('units', '')}"
            )
    return lines


@click.command("run")
@_model_argument
@click.option("--scenario", "-s", "scenarios", multiple=True, metavar="NAME|PATH",
              help="Scenario name under the model's scenarios/ folder, or a TOML file. Repeat to "
                   "compare several (stacked along a 'scenario' dim).")
@click.option("--all-scenarios", is_flag=True, help="Run every scenario in the model's scenarios/ folder.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Set a constant by Vensim or Python name; NAME=t:v,t:v gives a time-varying policy.")
@click.option("--final-time", type=float, help="Override the final time.")
@click.option("--time-step", type=float, help="Override the integration time step.")
@click.option("--saveper", type=float, help="Override the save period.")
@click.option("--vars", "variables", metavar="A,B", help="Comma-separated variables to keep (default: all).")
@click.option("--seed", type=int, help="Seed for models with random functions.")
@click.option("--summary", "summaries", multiple=True, metavar="[LABEL=]FUNC(VAR[,ARGS])",
              help="Print this metric per scenario instead of the stock table (as in `crisis sensitivity`: "
                   "min, max, final, change, mean(x,t0,t1), ...; LABEL= titles the column). Repeatable.")
@click.option("--against", metavar="SCENARIO",
              help="With --summary: also print each metric's change relative to this scenario (one of those "
                   "run), for example the same economy without the shock.")
@click.option("--nonfinite", type=click.Choice(["error", "keep"]), default="error", show_default=True,
              help="A value that becomes NaN or infinite: stop with an error naming it, or keep it in the "
                   "output with a warning (for models that use :NA: on purpose).")
@click.option("--output", "-o", required=True, type=OutputFile(".nc", ".csv"),
              help="Where to write the result: .nc (netCDF) or .csv.")
@max_memory_option
def run_command(model, scenarios, all_scenarios, sets, final_time, time_step, saveper, variables, seed, summaries,
                against, nonfinite, output, max_memory):
    """Simulate a model (optionally under scenarios) and write the trajectories.

    Prints a summary (start, min, max, end) of the stocks or of the chosen variables.

    \b
    Example:
      crisis run models/goodwin/goodwin.mdl --scenario baseline --set "phillips slope=0.6" --output g.nc
      crisis run models/goodwin/goodwin.mdl --all-scenarios --output out/goodwin.nc
    """
    from .compiler import compile_model
    from .results import save
    from .scenario_runs import run_scenarios, scenarios_on_one_axis
    from .runner import run
    from .scenarios import chosen_scenarios
    from .analysis.sensitivity import parse_metric

    compiled = compile_model(model)
    names = chosen_scenarios(compiled, scenarios, all_scenarios)
    options = dict(final_time=final_time, time_step=time_step, saveper=saveper,
                   variables=variables, seed=seed, progress=True,
                   errors="warn" if nonfinite == "keep" else "raise", max_memory=max_memory)
    params = parse_set(sets)
    if len(names) > 1:
        names, notes = scenarios_on_one_axis(compiled, names, params, final_time=final_time, time_step=time_step,
                                             saveper=saveper)
        for note in notes:
            click.echo(f"Note: {note}", err=True)
    if len(names) > 1:
        dataset = run_scenarios(compiled, names, params=params, **options)
    else:
        dataset = run(compiled, params, scenario=names[0] if names else None, **options)
    metrics = [parse_metric(text, compiled) for text in summaries]
    if against is not None:
        if not metrics:
            raise ParameterError("--against compares --summary metrics between scenarios; give --summary too")
        run_names = [str(s) for s in dataset["scenario"].values] if "scenario" in dataset.dims else []
        if against not in run_names:
            raise ParameterError(f"--against {against!r} is not one of the scenarios run "
                                 f"({', '.join(run_names) or 'none: run two or more with -s'})")
    for metric in metrics:
        missing = [v for v in metric.variables if v not in dataset]
        if missing:
            raise ParameterError(f"--summary {metric.name} needs '{missing[0]}', which --vars left out")
    written = save(dataset, output)
    if metrics:
        for line in _metric_table(dataset, metrics, against):
            click.echo(line)
    else:
        shown = list(dataset.data_vars) if variables else [e.py_name for e in compiled.stocks]
        shown = [n for n in shown if n in dataset] or list(dataset.data_vars)
        limit = len(shown) if variables else SUMMARY_ROWS
        if shown:
            for line in _summary(dataset, shown[:limit]):
                click.echo(line)
        if len(shown) > limit:
            click.echo(f"  ... and {len(shown) - limit} more stocks in the file; --vars chooses the rows shown")
    click.echo(f"Wrote {written}")


def _metric_table(dataset, metrics, against: str | None = None) -> list[str]:
    """Scenarios as rows, metrics as columns; with ``against``, each metric's change relative to
    that scenario's value follows it (a ``vs %`` column)."""
    scenarios = list(dataset["scenario"].values) if "scenario" in dataset.dims else [dataset.attrs.get("scenario") or "run"]
    scenarios = [str(s) for s in scenarios]
    columns = []
    for metric in metrics:
        result = metric.function(dataset)
        values = [float(v) for v in (result if getattr(result, "ndim", 0) else [result])]
        columns.append((metric.name, [f"{v:.4g}" for v in values]))
        if against is not None:
            ref = values[scenarios.index(against)]
            changes = [(v - ref) / abs(ref) * 100 if ref != 0 else float("nan") for v in values]
            columns.append(("vs %", ["" if name == against else f"{c:+.1f}%" for name, c in zip(scenarios, changes)]))
    first = max(len("scenario"), *(len(s) for s in scenarios))
    widths = [max(7 if title == "vs %" else 12, len(title)) for title, _ in columns]
    lines = [f"{'scenario':<{first}}  " + "  ".join(f"{title:>{w}}" for (title, _), w in zip(columns, widths))]
    for i, scenario in enumerate(scenarios):
        lines.append(f"{scenario:<{first}}  " + "  ".join(f"{cells[i]:>{w}}" for (_, cells), w in zip(columns, widths)))
    if against is not None:
        lines.append(f"vs %: change against {against} (the metric's value there)")
    return lines


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ParameterError("--params needs at least one name")
    return names


def _centre(model, scenario, sets) -> dict:
    """The values --width is measured from: the scenario's, then --set's, over the model file's."""
    from .compiler import CompiledModel, compile_model
    from .scenarios import load_scenario

    compiled = model if isinstance(model, CompiledModel) else compile_model(model)
    centre = dict(load_scenario(scenario, compiled).params) if scenario else {}
    centre.update(parse_set(sets))
    return centre


def _distributions(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--dist expects name=distribution(args), e.g. 'phillips slope=norm(1.25,0.05)'; got {item!r}")
        out[name.strip()] = spec.strip()
    return out


def _ensemble_options(function):
    options = [
        click.option("--params", "params_text", metavar="A,B", help="Constants to vary (default: every constant with a Vensim range)."),
        click.option("--n", "n", type=click.IntRange(min=1), default=None,
                     help="Members (grid: points per parameter) [default: 100; sensitivity: 256 base samples for "
                          "sobol, 20 trajectories for morris]."),
        click.option("--seed", type=int, help="Seed for the design (and random functions)."),
        click.option("--scenario", "-s", metavar="NAME|PATH", help="Scenario applied to every member."),
        click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A constant shared by every member."),
        click.option("--width", type=float, metavar="W",
                     help="Vary each constant only this share (0-1] of the way from its value in the model file "
                          "to each end of its Vensim range: 0.25 samples a neighbourhood of the shipped values "
                          "[default: 1, the whole ranges]."),
        click.option("--final-time", type=float, help="Override the final time."),
        click.option("--time-step", type=float, help="Override the time step."),
        click.option("--saveper", type=float, help="Override the save period."),
        click.option("--scheduler", metavar="local:N|tcp://HOST:PORT",
                     help="Run chunks on Dask: a local cluster of N workers on loopback, or a scheduler address."),
        click.option("--chunk-size", type=int, help="Members per chunk."),
        click.option("--output", "-o", required=True, type=OutputFile(".nc"),
                     help="Where to write the result (.nc)."),
        max_memory_option,
    ]
    for option in reversed(options):
        function = option(function)
    return _model_argument(function)


@click.command("ensemble")
@_ensemble_options
@click.option("--sample", "method", type=click.Choice(["lhs", "sobol", "grid", "random"]), default="lhs",
              show_default=True, help="Design of the members.")
@click.option("--dist", "dists", multiple=True, metavar="NAME=DIST(ARGS)",
              help="A scipy.stats distribution for one parameter, e.g. 'phillips slope=norm(1.25,0.05)'.")
@click.option("--vars", "variables", metavar="A,B", help="Variables to keep (default: all).")
def ensemble_command(model, params_text, n, seed, scenario, sets, width, final_time, time_step, saveper, scheduler,
                     chunk_size, output, max_memory, method, dists, variables):
    """Run many members of a model in one vectorised pass and write them along a `run` dim.

    Without --params every constant with a Vensim range varies within it. Each member's
    parameters are coordinates along `run`; `ok` marks members that stayed finite.

    \b
    Example:
      crisis ensemble models/goodwin/goodwin.mdl --params "phillips slope,capital output ratio" \\
          --sample lhs --n 1000 --seed 1 --output out/goodwin_ensemble.nc
    """
    from .compiler import compile_model
    from .ensemble import run_ensemble
    from .results import save
    from .analysis.sampling import sample

    if Path(output).suffix.lower() != ".nc":
        raise ParameterError(f"--output '{output}' must end in .nc")
    compiled = compile_model(model)
    samples = sample(compiled, _names(params_text), method=method, n=100 if n is None else n, seed=seed,
                     distributions=_distributions(dists) or None, width=width,
                     centre=_centre(compiled, scenario, sets) if width is not None else None)
    dataset = run_ensemble(
        compiled, samples, params=parse_set(sets), variables=variables, scenario=scenario,
        final_time=final_time, time_step=time_step, saveper=saveper, seed=seed, executor=scheduler,
        chunk_size=chunk_size, progress=True, max_memory=max_memory,
    )
    # Provenance: how the members were drawn (the values themselves are the run coordinates).
    dataset.attrs["sample"] = method
    dataset.attrs["width"] = width if width is not None else "whole Vensim ranges"
    dataset.attrs["marginals"] = samples.attrs.get("marginals", "")
    written = save(dataset, output)
    plausible = ""
    if "n_plausible" in dataset.attrs:
        plausible = f", {dataset.attrs['n_plausible']} within the plausible ranges of plausible.toml"
    click.echo(f"{dataset.attrs['n_members']} members ({dataset.attrs['n_ok']} finite{plausible}), engine "
               f"{dataset.attrs['engine']}, varied: {', '.join(samples.columns)}")
    if "n_plausible" in dataset.attrs:
        import numpy as np

        texts = [str(t) for t in dataset["implausible"].values if str(t)]
        if texts:
            click.echo(f"First exit of member {int(np.flatnonzero(~dataset['plausible'].values)[0])}: {texts[0]}")
    click.echo(f"Wrote {written}")


@click.command("sensitivity")
@_ensemble_options
@click.option("--metric", "metrics", multiple=True, required=True, metavar="FUNC(VAR[,ARGS])",
              help="final, initial, at(x,t), min, max, time_of_min, time_of_max, mean(x[,t0,t1]). Repeatable.")
@click.option("--method", type=click.Choice(["sobol", "morris"]), default="sobol", show_default=True)
def sensitivity_command(model, params_text, n, seed, scenario, sets, width, final_time, time_step, saveper, scheduler,
                        chunk_size, output, max_memory, metrics, method):
    """Global sensitivity (Sobol indices with confidence intervals, or Morris) of trajectory metrics.

    \b
    Example:
      crisis sensitivity models/goodwin/goodwin.mdl --params "phillips slope,phillips intercept,capital output ratio" \\
          --metric "min(employment_rate)" --metric "mean(wage_share)" --n 256 --seed 1 --output out/sobol.nc
    """
    from .results import save
    from .analysis.sensitivity import sensitivity

    if Path(output).suffix.lower() != ".nc":
        raise ParameterError(f"--output '{output}' must end in .nc")
    dataset = sensitivity(
        model, _names(params_text), metrics=list(metrics), method=method, n=n if n is not None else (256 if method == "sobol" else 20),
        seed=seed, width=width, centre=_centre(model, scenario, sets) if width is not None else None,
        shared_params=parse_set(sets), scenario=scenario, final_time=final_time, time_step=time_step,
        saveper=saveper, executor=scheduler, chunk_size=chunk_size, progress=True, max_memory=max_memory,
    )
    written = save(dataset, output)
    columns = ["S1", "S1_conf", "ST", "ST_conf"] if method == "sobol" else ["mu_star", "mu_star_conf", "sigma"]
    for metric in dataset["metric"].values:
        click.echo(f"{metric}  ({dataset.attrs['members']} members)")
        click.echo("  " + f"{'parameter':<28}" + "".join(f"{c:>13}" for c in columns))
        for param in dataset["param"].values:
            row = dataset.sel(metric=metric, param=param)
            click.echo("  " + f"{param:<28}" + "".join(f"{float(row[c]):>13.4f}" for c in columns))
    click.echo(f"Wrote {written}")
