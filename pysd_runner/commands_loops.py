"""``crisis loops``: a thin click wrapper over :mod:`pysd_runner.loops`."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import ParameterError

#: Widest variables column before the loop's path is wrapped onto further lines.
PATH_WIDTH = 100


def _wrap_path(text: str, width: int) -> list[str]:
    lines, current = [], ""
    for part in text.split(" -> "):
        piece = part if not current else f"{current} -> {part}"
        if current and len(piece) > width:
            lines.append(current + " ->")
            current = part
        else:
            current = piece
    lines.append(current)
    return lines


def _periods_text(periods: list[tuple[float, float]]) -> str:
    return ", ".join(f"{a:g}" if a == b else f"{a:g}-{b:g}" for a, b in periods)


@click.command("loops")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scenario", "-s", metavar="NAME|PATH", help="Scenario for the run (polarities the equations leave open, dominance).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Set a constant by Vensim or Python name.")
@click.option("--dominance", is_flag=True, help="Score the loops over a run and print when each one dominates.")
@click.option("--max-length", type=int, help="Longest loop to list, in variables.")
@click.option("--max-loops", type=int, default=None, help="Cap on the number of loops (default 10000).")
@click.option("--knockout", "knockouts", multiple=True, metavar="SOURCE->TARGET",
              help="Hold a link's source at its initial value as the target sees it (cuts its loops). Repeatable; "
                   "a bare SOURCE holds it for every reader.")
@click.option("--final-time", type=float, help="Override the final time of the run.")
@click.option("--saveper", type=float, help="Save period of the dominance scores.")
@click.option("--names", type=click.Path(dir_okay=False, path_type=Path),
              help="A loops.toml naming loops (default: the one beside the model, if any).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the loop dominance Dataset (.nc); implies --dominance.")
def loops(model, scenario, sets, dominance, max_length, max_loops, knockouts, final_time, saveper, names, output):
    """List a model's feedback loops with their polarity; with --dominance, when each one dominates.

    Loops come from the causal graph of the compiled model (Johnson's algorithm). Polarity R
    is reinforcing, B balancing, ? depends on the state. Names come from loops.toml beside the
    model. Dominance follows Loops That Matter (Schoenberg et al. 2020, with the 2023
    flow-to-stock correction): a loop dominates when it (or the smallest set of loops it
    belongs to) explains at least half of the change in the model.

    \b
    Example:
      crisis loops models/goodwin/goodwin.mdl
      crisis loops models/goodwin/goodwin.mdl --dominance --final-time 22 --output out/goodwin-loops.nc
      crisis loops models/goodwin/goodwin.mdl --knockout "wage share->profit share"
    """
    from .commands import _parse_set
    from .compiler import compile_model
    from .loops import DEFAULT_MAX_LOOPS, dominance_periods, find_loops, loop_dominance
    from .results import save

    if output is not None and Path(output).suffix.lower() != ".nc":
        raise ParameterError(f"--output '{output}' must end in .nc")
    if max_length is not None and max_length < 1:
        raise ParameterError(f"--max-length must be a positive integer; got {max_length}")
    compiled = compile_model(model)
    params = _parse_set(sets)
    options = dict(scenario=scenario, max_length=max_length, max_loops=max_loops or DEFAULT_MAX_LOOPS,
                   names=names, knockout=list(knockouts) or None, final_time=final_time)
    dataset = None
    if dominance or output is not None:
        dataset = loop_dominance(compiled, params, saveper=saveper, **options)
        rows = [
            (str(loop), str(dataset["name"].sel(loop=loop).item()), str(dataset["polarity"].sel(loop=loop).item()),
             int(dataset["length"].sel(loop=loop).item()), str(dataset["variables"].sel(loop=loop).item()))
            for loop in dataset["loop"].values
        ]
    else:
        found = find_loops(compiled, params, **options)
        rows = [(lp.id, lp.name, lp.polarity, lp.length, lp.describe()) for lp in found]
    knocked = f" with {len(knockouts)} knock-out(s)" if knockouts else ""
    click.echo(f"{len(rows)} feedback loop(s) in {compiled.name}{knocked}"
               + (f" (length up to {max_length})" if max_length else ""))
    if rows:
        name_width = max([4] + [len(r[1]) for r in rows])
        click.echo(f"  {'id':<5} {'name':<{name_width}} {'pol':<3} {'len':>3}  variables")
        for ident, name, polarity, length, path in rows:
            lines = _wrap_path(path, PATH_WIDTH)
            click.echo(f"  {ident:<5} {name:<{name_width}} {polarity:<3} {length:>3}  {lines[0]}")
            for more in lines[1:]:
                click.echo(f"  {'':<5} {'':<{name_width}} {'':<3} {'':>3}    {more}")
    if dataset is not None:
        times = dataset["time"].values
        click.echo(f"\nDominance over {times[0]:g}-{times[-1]:g} {compiled.time_units} "
                   f"(save period {dataset.attrs['saveper']:g}): periods in which each loop dominates")
        for loop in dataset["loop"].values:
            periods = dominance_periods(dataset, str(loop))
            share = float(dataset["dominant"].sel(loop=loop).mean())
            label = str(loop) + (f" {dataset['name'].sel(loop=loop).item()}" if dataset["name"].sel(loop=loop).item() else "")
            text = _periods_text(periods) if periods else "never"
            if len(text) > PATH_WIDTH:
                text = _periods_text(periods[:8]) + f", ... ({len(periods)} periods)"
            click.echo(f"  {label}: {share:.0%} of the time: {text}")
        approximated = dataset.attrs.get("approximated_links", "[]")
        if approximated != "[]":
            click.echo(f"Approximated link scores (stateful functions): {approximated}")
    if output is not None:
        written = save(dataset, output)
        click.echo(f"Wrote {written}")
