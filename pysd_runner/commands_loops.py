"""``crisis loops``: a thin click wrapper over :mod:`pysd_runner.analysis.loops`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click

from .cli_options import OutputFile, parse_set
from .errors import ParameterError

#: Widest variables column before the loop's path is wrapped onto further lines.
PATH_WIDTH = 100
#: Loops listed by default besides the named ones (the rest are counted); --all lists every one.
DEFAULT_LIMIT = 5
#: Dominance periods printed per loop by default.
DEFAULT_PERIODS = 6


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


def _periods_text(periods: list[tuple[float, float]], everything: bool = False) -> str:
    text = ", ".join(f"{a:g}" if a == b else f"{a:g}-{b:g}" for a, b in periods)
    if not everything and (len(periods) > DEFAULT_PERIODS or len(text) > PATH_WIDTH - 40):
        text = ", ".join(f"{a:g}" if a == b else f"{a:g}-{b:g}" for a, b in periods[:DEFAULT_PERIODS])
        text += f", ... ({len(periods)} periods; --all lists them)"
    return text


def _one_line(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 4].rsplit(" -> ", 1)[0] + " ..."


@click.command("loops")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scenario", "-s", metavar="NAME|PATH", help="Scenario for the run (polarities the equations leave open, dominance).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Set a constant by Vensim or Python name.")
@click.option("--dominance", is_flag=True, help="Score the loops over a run and print when each one dominates.")
@click.option("--max-length", type=int, help="Longest loop to list, in variables.")
@click.option("--max-loops", type=int, default=None, help="Cap on the number of loops (default 250,000).")
@click.option("--limit", type=int, default=DEFAULT_LIMIT, show_default=True,
              help="Loops to print besides the named ones (the most dominant first with --dominance, else the "
                   "shortest); 0 prints every loop.")
@click.option("--all", "everything", is_flag=True,
              help="Print everything: every loop with its whole path, and every dominance period "
                   "(by default the output fits one screen).")
@click.option("--knockout", "knockouts", multiple=True, metavar="SOURCE->TARGET",
              help="Hold a link's source at its initial value as the target sees it (cuts its loops). Repeatable; "
                   "a bare SOURCE holds it for every reader.")
@click.option("--final-time", type=float, help="Override the final time of the run.")
@click.option("--saveper", type=float, help="Save period of the dominance scores.")
@click.option("--names", type=click.Path(dir_okay=False, path_type=Path),
              help="A loops.toml naming loops (default: the one beside the model, if any).")
@click.option("--output", "-o", type=OutputFile(".nc"),
              help="Write the loop dominance Dataset (.nc); implies --dominance.")
@click.option("--ensemble", "members", type=click.IntRange(min=2), default=None, metavar="N",
              help="Loop dominance under uncertainty: N members drawn (Latin hypercube) over --params within their "
                   "Vensim ranges; prints how likely each named loop dominates. Implies --dominance.")
@click.option("--params", "params_text", metavar="A,B", help="Constants to vary with --ensemble (default: every "
              "constant with a Vensim range).")
@click.option("--seed", type=int, help="Seed for the --ensemble design.")
def loops(model, scenario, sets, dominance, max_length, max_loops, limit, everything, knockouts, final_time, saveper,
          names, output, members, params_text, seed):
    """List a model's feedback loops with their polarity; with --dominance, when each one dominates.

    Loops come from the causal graph of the compiled model (Johnson's algorithm). Polarity R
    is reinforcing, B balancing, ? depends on the state. Names come from loops.toml beside the
    model, and so do the loops it leaves out of dominance with a reason ([exclude.KEY]). A
    named loop's id is its loops.toml key; any other loop's id comes from its path, so it is
    the same under knock-outs and in every run. Dominance follows Loops That Matter
    (Schoenberg et al. 2020, with the 2023 flow-to-stock correction). Two summaries: the
    strongest loop at each time (one per time, so the shares add up to 100%), and the
    dominant set (the loops that together explain at least half of the change; several at
    once, so those shares overlap).

    \b
    Example:
      crisis loops models/goodwin/goodwin.mdl
      crisis loops models/goodwin/goodwin.mdl --dominance --final-time 22 --output out/goodwin-loops.nc
      crisis loops models/goodwin/goodwin.mdl --knockout "wage share->profit share"
      crisis loops models/keen/keen.mdl --ensemble 20 --params "interest rate" --seed 1
    """
    import numpy as np

    from .compiler import compile_model
    from .analysis.loops import DEFAULT_MAX_LOOPS, LoopScoreWarning, find_loops, loop_dominance, strongest_shares
    from .analysis.loops.dominance import flag_periods
    from .analysis.loops.named import exclusion_report, excluded_entries, match_report, named_entries
    from .results import save

    if output is not None and Path(output).suffix.lower() != ".nc":
        raise ParameterError(f"--output '{output}' must end in .nc")
    if max_length is not None and max_length < 1:
        raise ParameterError(f"--max-length must be a positive integer; got {max_length}")
    if limit < 0:
        raise ParameterError(f"--limit must be 0 (every loop) or a positive number of loops; got {limit}")
    if everything:
        limit = 0
    compiled = compile_model(model)
    params = parse_set(sets)
    if members is not None:
        if knockouts:
            raise ParameterError("--ensemble and --knockout cannot be combined; knock a link out in --set runs instead")
        _dominance_under_uncertainty(compiled, params, members, params_text, seed, scenario, max_length, max_loops,
                                     names, final_time, saveper, output)
        return
    options = dict(scenario=scenario, max_length=max_length, max_loops=max_loops or DEFAULT_MAX_LOOPS,
                   names=names, knockout=list(knockouts) or None, final_time=final_time)
    dataset = None
    if dominance or output is not None:
        with warnings.catch_warnings():
            # Approximated link scores are listed below the table instead.
            warnings.simplefilter("ignore", LoopScoreWarning)
            dataset = loop_dominance(compiled, params, saveper=saveper, **options)
        named = dataset["named"].values.astype(bool)
        rows = list(zip(
            (str(v) for v in dataset["loop"].values),
            (str(n).partition(" ")[2] if f else "" for n, f in zip(dataset["name"].values, named)),
            (str(v) for v in dataset["polarity"].values),
            (int(v) for v in dataset["length"].values),
            (str(v) for v in dataset["variables"].values),
        ))
        flags = dataset["dominant"].values
        # Shares of the time the scores are defined (not the first steps), as for the strongest loop.
        defined = np.asarray([bool(str(v)) for v in dataset["strongest"].values], dtype=bool)
        share = flags[defined].mean(axis=0) if defined.any() else np.zeros(len(rows))
        strength = np.nan_to_num(np.abs(dataset["relative_score"].values)).mean(axis=0) if flags.size else share
        order = sorted(range(len(rows)), key=lambda j: (not named[j], -share[j], -strength[j], j))
        report = json.loads(dataset.attrs["named_loops"])
        left_out = json.loads(dataset.attrs["excluded_loops"])
    else:
        found = find_loops(compiled, params, **options)
        rows = [(lp.id, lp.title if lp.name else "", lp.polarity, lp.length, lp.describe()) for lp in found]
        named = np.asarray([bool(lp.name) for lp in found], dtype=bool)
        order = list(range(len(rows)))  # named first, then by length
        report = match_report(named_entries(compiled, names), found)
        left_out = exclusion_report(excluded_entries(compiled, names), [lp for lp in found if lp.excluded])
        kept = [j for j, lp in enumerate(found) if not lp.excluded]
        rows = [rows[j] for j in kept]
        named = named[kept]
        order = list(range(len(rows)))
    shown = [j for j in order if named[j]]
    others = [j for j in order if not named[j]]
    shown += others if limit == 0 else others[:limit]
    knocked = f" with {len(knockouts)} knock-out(s)" if knockouts else ""
    dropped = sum(1 for entry in left_out if entry["loop"])
    click.echo(f"{len(rows)} feedback loop(s) in {compiled.name}{knocked}"
               + (f" (length up to {max_length})" if max_length else "")
               + (f"; {dropped} more left out by loops.toml" if dropped else ""))
    if rows:
        id_width = max([2] + [len(rows[j][0]) for j in shown])
        click.echo(f"  {'id':<{id_width}} {'pol':<3} {'len':>3}  name: variables")
        for j in shown:
            ident, title, polarity, length, path = rows[j]
            text = f"{title}: {path}" if title else path
            lines = _wrap_path(text, PATH_WIDTH) if everything else [_one_line(text, PATH_WIDTH)]
            click.echo(f"  {ident:<{id_width}} {polarity:<3} {length:>3}  {lines[0]}")
            for more in lines[1:]:
                click.echo(f"  {'':<{id_width}} {'':<3} {'':>3}    {more}")
        if len(shown) < len(rows):
            ranking = "by dominance" if dataset is not None else "by length"
            click.echo(f"  ... and {len(rows) - len(shown)} more loop(s) ({ranking}; --all lists every loop)")
    for entry in left_out:
        if entry["loop"]:
            click.echo(f"  left out: {entry['loop']} {entry['variables']}: {entry['reason']}")
        else:
            click.echo(f"  loops.toml leaves out {entry['key']} ({entry['variables']}), but no such loop was found")
    for entry in report:
        if not entry["found"]:
            click.echo(f"  named loop {entry['id']} not found: {entry['variables']}")
        elif not entry["agrees"]:
            click.echo(f"  named loop {entry['id']} is {entry['polarity']} here, not {entry['stated']} as loops.toml says")
    if dataset is not None:
        times = dataset["time"].values
        click.echo(f"\nDominance over {times[0]:g}-{times[-1]:g} {compiled.time_units} "
                   f"(save period {dataset.attrs['saveper']:g}).")
        strongest = [str(v) for v in dataset["strongest"].values]
        leaders = strongest_shares(dataset)
        if leaders:
            click.echo("Strongest loop at each time (the largest share of the change; one loop at a time, "
                       "so the shares add up to 100%):")
            width = max(len(label) for _, label, _ in leaders)
            named_ids = {str(v) for v in dataset["loop"].values[named]}
            for ident, label, part in leaders:
                if ident == "other":
                    flags_of = np.asarray([bool(v) and v not in named_ids for v in strongest])
                else:
                    flags_of = np.asarray([v == ident for v in strongest])
                periods = _periods_text(flag_periods(flags_of, times), everything)
                click.echo(f"  {label:<{width}} {part:>4.0%}  {periods}")
            silent = [rows[j][0] for j in range(len(rows)) if named[j] and rows[j][0] not in {i for i, _, _ in leaders}]
            if silent:
                click.echo(f"  never the strongest: {', '.join(silent)}")
        click.echo("In the dominant set (the fewest loops that together explain half of the change; several "
                   "loops at once, so these shares overlap):")
        for j in shown:
            if not named[j] and share[j] == 0:
                continue
            label = rows[j][0] + (f" {rows[j][1]}" if rows[j][1] else "")
            periods = flag_periods(flags[:, j], times)
            click.echo(f"  {label}: {share[j]:.0%} of the time: "
                       f"{_periods_text(periods, everything) if periods else 'never'}")
        never = int((share[[j for j in range(len(rows)) if not named[j]]] == 0).sum()) if len(rows) else 0
        if never:
            click.echo(f"  {never} other loop(s) never in it")
        approximated = dataset.attrs.get("approximated_links", "[]")
        if approximated != "[]":
            listed = json.loads(approximated)
            if everything or len(listed) <= 3:
                click.echo(f"Approximated link scores (stateful functions): {', '.join(listed)}")
            else:
                click.echo(f"Approximated link scores (stateful functions): {len(listed)} links "
                           "(--all lists them)")
    if output is not None:
        written = save(dataset, output)
        click.echo(f"Wrote {written}")


def _dominance_under_uncertainty(compiled, params, members, params_text, seed, scenario, max_length, max_loops, names,
                                 final_time, saveper, output) -> None:
    """``crisis loops --ensemble N``: how likely each named loop dominates, over N members."""
    import numpy as np

    from .analysis.loops import DEFAULT_MAX_LOOPS, loop_dominance_ensemble
    from .analysis.sampling import sample
    from .results import save

    varied = [n.strip() for n in params_text.split(",") if n.strip()] if params_text else None
    if params_text is not None and not varied:
        raise ParameterError("--params needs at least one name")
    design = sample(compiled, varied, method="lhs", n=members, seed=seed)
    ds = loop_dominance_ensemble(compiled, design, params, scenario=scenario, final_time=final_time, saveper=saveper,
                                 seed=seed, max_length=max_length, max_loops=max_loops or DEFAULT_MAX_LOOPS,
                                 names=names, progress=True)
    times = ds["time"].values
    defined = ~np.isnan(ds["p_strongest"].values).all(axis=1)
    window = None
    for event in json.loads(ds.attrs.get("scenario_events", "[]") or "[]"):
        if event.get("name") == "crisis" and float(event["end"]) > float(event["start"]):
            window = (float(event["start"]), float(event["end"]))
    inside = defined & ((times >= window[0]) & (times <= window[1]) if window else False)
    varied_names = ", ".join(compiled.elements[n].name for n in json.loads(ds.attrs["varied"]))
    click.echo(f"Loop dominance under uncertainty in {compiled.name}: {members} members (Latin hypercube over "
               f"{varied_names}), {ds.attrs['n_loops']} loops, {times[0]:g}-{times[-1]:g} {compiled.time_units}.")
    head = "  P(strongest): mean over the run, highest (when)"
    head += f", mean in the crisis window {window[0]:g}-{window[1]:g}" if window else ""
    click.echo(head + "; P(in the dominant set): mean over the run")
    p = ds["p_strongest"].values
    dominant = ds["p_dominant"].values
    loops = [str(v) for v in ds["loop"].values]
    labels = [str(v) for v in ds["category_name"].values]
    width = max(len(label) for label in labels)
    for k, category in enumerate(str(c) for c in ds["category"].values):
        series = p[defined, k]
        peak = int(np.argmax(series))
        when = f"({times[defined][peak]:g})" if series.max() > 0 else "(never)"
        text = f"  {labels[k]:<{width}}  {series.mean():>4.0%}  {series.max():>4.0%} {when:<9}"
        if window:
            text += f"  {p[inside, k].mean() if inside.any() else float('nan'):>5.0%}"
        if category in loops:
            text += f"  {dominant[defined, loops.index(category)].mean():>5.0%}"
        click.echo(text)
    if output is not None:
        written = save(ds, output)
        click.echo(f"Wrote {written}")
