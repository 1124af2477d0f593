"""``crisis calibrate`` and ``crisis data``: thin click wrappers over the calibration API."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import click

from pysd_runner import OutputFile

from .errors import CheckpointError, DataError


def _checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".checkpoint")


def _fmt(value: float, width: int = 11) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.4g}"


def fit_table(fit) -> list[str]:
    """The parameter table, the per-series statistics table and the notes that say how to
    read them, as lines."""
    lines = []
    countries = list(fit["country"].values) if "country" in fit.dims else [None]
    level = fit.attrs.get("level", 0.95)
    for country in countries:
        part = fit.sel(country=country) if country is not None else fit
        if country is not None:
            lines.append(f"[{country}]")
        width = max(len(str(p)) for p in part["param"].values)
        lines.append(f"  {'parameter':<{width}}  {'estimate':>11} {'lower':>11} {'upper':>11}  "
                     f"({level:.0%} {fit.attrs.get('uncertainty', '')})")
        for p in part["param"].values:
            row = part.sel(param=p)
            flag = "" if bool(row["identified"]) else "  not identified (open interval)"
            lines.append(f"  {str(p):<{width}}  {_fmt(float(row['estimate']))} {_fmt(float(row['lower']))} "
                         f"{_fmt(float(row['upper']))}{flag}")
        width = max(len(str(s)) for s in part["series"].values)
        lines.append("")
        lines.append(f"  {'series':<{width}}  {'period':<8}{'n':>4} {'RMSE':>10} {'MAPE%':>8} {'R2':>8} "
                     f"{'vs trend':>9} {'Theil U':>8} {'U^M':>6} {'U^S':>6} {'U^C':>6} {'vs naive':>9} "
                     f"{'rho1':>6} {'n_eff':>6}")
        for s in part["series"].values:
            for period in ("fit", "holdout"):
                row = part.sel(series=s, period=period)
                n = float(row["n_points"])
                if not n > 0:
                    continue
                naive = float(part["rmse_ratio_to_persistence"].sel(series=s)) if period == "holdout" else math.nan
                trend = _get(part.sel(series=s), "ssr_ratio_to_trend") if period == "fit" else math.nan
                r2 = float(row["r2"])
                mark = "  < mean" if period == "fit" and r2 < 0 else ""
                lines.append(
                    f"  {str(s):<{width}}  {period:<8}{int(n):>4} {_fmt(float(row['rmse']), 10)} "
                    f"{_fmt(float(row['mape']), 8)} {_fmt(r2, 8)} {_fmt(trend, 9)} {_fmt(float(row['theil_u']), 8)} "
                    f"{_fmt(float(row['theil_um']), 6)} {_fmt(float(row['theil_us']), 6)} "
                    f"{_fmt(float(row['theil_uc']), 6)} {_fmt(naive, 9)} {_fmt(_get(row, 'rho1'), 6)} "
                    f"{_fmt(_get(row, 'n_eff'), 6)}{mark}"
                )
        filtered = "predicted" in part
        if filtered:
            lines.extend(_filtered_lines(part, width))
        lines.append(f"  negative log-likelihood {float(part['nll']):.6g}, AIC {float(part['aic']):.6g}"
                     + (" (filter: one-step-ahead errors)" if filtered else ""))
        lines.extend(_measurement_lines(part))
        if not filtered:
            lines.extend(_plausibility_lines(part, fit.attrs.get("plausibility", "penalise")))
        lines.extend(_reading_notes(part))
        if filtered:
            lines.extend(_filtered_notes(part))
    return lines


def _filtered_lines(part, width: int) -> list[str]:
    """A filtered fit's one-step-ahead table: the filter's predictions against the data, and the
    whiteness of their errors (FIMLOF's residual checks)."""
    lines = ["", "  one-step-ahead (the filter's prediction from the data up to the year before; hold-out: the "
                 "forecast from the last filtered state)",
             f"  {'series':<{width}}  {'period':<8}{'n':>4} {'RMSE':>10} {'R2':>8} {'vs naive':>9} "
             f"{'acf1':>6} {'acf2':>6} {'acf3':>6} {'acf4':>6} {'LB p(4)':>8}"]
    for s in part["series"].values:
        for period in ("fit", "holdout"):
            n = float(part["one_step_n_points"].sel(series=s, period=period))
            if not n > 0:
                continue
            naive = float(part["one_step_ratio_to_persistence"].sel(series=s)) if period == "fit" else \
                float(part["one_step_rmse"].sel(series=s, period=period)) / float(part["persistence_rmse"].sel(series=s))
            acf = part["acf"].sel(series=s).values if period == "fit" else [math.nan] * 4
            p = float(part["ljung_box_pvalue"].sel(series=s, lag=4)) if period == "fit" else math.nan
            lines.append(f"  {str(s):<{width}}  {period:<8}{int(n):>4} "
                         f"{_fmt(float(part['one_step_rmse'].sel(series=s, period=period)), 10)} "
                         f"{_fmt(float(part['one_step_r2'].sel(series=s, period=period)), 8)} {_fmt(naive, 9)} "
                         + " ".join(_fmt(float(a), 6) for a in acf) + f" {_fmt(p, 8)}")
    return lines


def _filtered_notes(part) -> list[str]:
    import numpy as np

    series = [str(s) for s in part["series"].values]
    ratio = part["one_step_ratio_to_persistence"].values
    beats = [s for s, v in zip(series, ratio) if v < 1]
    p = part["ljung_box_pvalue"].sel(lag=4).values
    white = [s for s, v in zip(series, p) if v >= 0.05]
    return ["  Filtered fit: the table above is the open-loop run at the estimate; the one-step table is what "
            "the likelihood judges.",
            f"  One-step predictions beat last year's value: {len(beats)} of {int(np.isfinite(ratio).sum())} series"
            + (f" ({', '.join(beats)})." if beats else "."),
            f"  One-step errors look white (Ljung-Box p >= 0.05 up to lag 4): {len(white)} of "
            f"{int(np.isfinite(p).sum())} series" + (f" ({', '.join(white)})." if white else ".")]


def _get(row, name: str) -> float:
    """A statistic of a fit row, NaN in fits written before it was recorded."""
    return float(row[name]) if name in row else math.nan


def _measurement_lines(part) -> list[str]:
    """The measurement equations that are not the identity, with their reasons."""
    if "measurement_scale" not in part:
        return []
    estimated = {str(p) for p in part["param"].values}
    lines = []
    for s in part["series"].values:
        scale = float(part["measurement_scale"].sel(series=s))
        offset = float(part["measurement_offset"].sel(series=s))
        if scale == 1 and offset == 0:
            continue
        free = [t for t in ("scale", "offset") if f"{t} of {s}" in estimated]
        reason = str(part["measurement_reason"].sel(series=s).values)
        lines.append(f"  measurement: {s} = {scale:.4g} x {str(part['model_variable'].sel(series=s).values)} "
                     f"{'+' if offset >= 0 else '-'} {abs(offset):.4g}"
                     + (f" ({' and '.join(free)} estimated)" if free else "") + (f"; {reason}" if reason else ""))
    return lines


def _plausibility_lines(part, mode: str = "penalise") -> list[str]:
    if "opt_n_candidates" not in part:
        return []
    import json

    evaluated = int(part["opt_n_candidates"])
    left = int(part["opt_n_implausible"])
    nonfinite = int(part["opt_n_nonfinite"])
    by_range = json.loads(str(part["opt_implausible_by_range"].values)) if "opt_implausible_by_range" in part else {}
    ranges = int(part["opt_n_ranges"]) if "opt_n_ranges" in part else None
    lines = []
    if ranges == 0:
        lines.append(f"  plausibility: the model declares no plausible ranges (plausible.toml) and the spec none "
                     f"([plausible]); {nonfinite:,} of {evaluated:,} candidate parameter sets went non-finite")
    elif not left and not nonfinite:
        lines.append(f"  plausibility: all {evaluated:,} candidate parameter sets stayed finite and within the "
                     "plausible ranges")
    else:
        listed = ", ".join(f"{name} {count:,}" for name, count in by_range.items())
        fate = "were penalised" if mode == "penalise" else "were counted but not penalised (plausibility = \"ignore\")"
        lines.append(f"  plausibility: of {evaluated:,} candidate parameter sets, {left:,} left a plausible range "
                     f"and {fate}" + (f" (first exit: {listed})" if listed else "")
                     + f"; {nonfinite:,} went non-finite and were rejected")
    best = str(part["opt_best_implausible"].values) if "opt_best_implausible" in part else ""
    if best.startswith("along the edge: "):
        lines.append(f"  The best estimate runs along the edge of a plausible range, which holds it there: "
                     f"{best.removeprefix('along the edge: ')}.")
    elif best:
        lines.append(f"  The best estimate itself leaves a plausible range: {best}. Read the fit with care.")
    return lines


def _reading_notes(part) -> list[str]:
    """How to read the table, and what its numbers say about this fit."""
    import numpy as np

    from .spec import AR1_ERRORS

    series = [str(s) for s in part["series"].values]
    fit = part.sel(period="fit")
    notes = ["  How to read this:",
             "    R2 = 1 - SSR/SST: the share of a series' variation around its own mean that the fitted run "
             "follows; below 0 the run describes the fit window worse than a flat line at the mean.",
             "    vs trend: the run's sum of squared residuals over that of a straight line fitted to the same "
             "window; below 1 the model's dynamics explain more than a trend (a free scale and offset alone "
             "cannot do that).",
             "    Theil: U^M is the share of the squared error due to bias, U^S to unequal variation (amplitude), "
             "U^C to unequal covariation (timing and noise); in a good fit most of the error is U^C (Sterman 1984).",
             "    vs naive: hold-out RMSE over that of holding the last observation constant; below 1 beats it."]
    r2 = fit["r2"].values
    worse = [s for s, v in zip(series, r2) if v < 0]
    if worse:
        notes.append(f"  Worse than its mean (R2 < 0): {', '.join(worse)}.")
    if "ssr_ratio_to_trend" in part:
        ratio = part["ssr_ratio_to_trend"].values
        beats = [s for s, v in zip(series, ratio) if v < 1]
        notes.append(f"  Beats a fitted straight line: {len(beats)} of {int(np.isfinite(ratio).sum())} series"
                     + (f" ({', '.join(beats)})." if beats else "."))
    naive = part["rmse_ratio_to_persistence"].values
    if np.isfinite(naive).any():
        beaten = [s for s, v in zip(series, naive) if v < 1]
        notes.append(f"  Beats persistence on the hold-out: {len(beaten)} of {int(np.isfinite(naive).sum())} series"
                     + (f" ({', '.join(beaten)})." if beaten else "."))
    if "rho1" in fit:
        rho = fit["rho1"].values
        high = [s for s, r in zip(series, rho) if r > 0.5]
        # Fits written before error models were recorded said nothing of them.
        independent = [s for s, e in zip(series, part["error_model"].values)
                       if str(e) not in AR1_ERRORS] if "error_model" in part else []
        if high and set(high) & set(independent):
            notes.append(f"  rho1 > 0.5 with independent errors ({', '.join(s for s in high if s in independent)}): "
                         f"the residuals hold about n_eff independent points, so intervals that assume n are too "
                         f"narrow; error = \"ar1\" in the spec models the autocorrelation.")
    return notes


@click.command("calibrate")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", required=True, type=OutputFile(".nc"),
              help="Where to write the FitResult (.nc).")
@click.option("--seed", type=int, help="Replace the spec's seed.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint beside the output (OUTPUT.checkpoint/).")
@click.option("--force", is_flag=True, help="Overwrite an existing output, and discard an existing checkpoint.")
@click.option("--fred-url", metavar="URL", help="Base address of the FRED CSV endpoint (default: $CRISIS_FRED_URL "
                                                "or the public one).")
def calibrate_command(spec, output, seed, resume, force, fred_url):
    """Fit a model to data as a calibration spec says; print estimates, intervals and fit statistics.

    A checkpoint is kept beside the output while the fit runs; after an interruption
    (even kill -9) run the same command with --resume to continue without losing finished
    model evaluations. An existing output is never overwritten without --force.

    \b
    Example:
      crisis calibrate models/keen/calibration/us.toml --output out/keen-us.nc
      crisis calibrate models/keen/calibration/us.toml --output out/keen-us.nc --resume
    """
    from pysd_runner import save

    from .fit import calibrate

    if output.suffix.lower() != ".nc":
        raise DataError(f"--output '{output}' must end in .nc")
    if output.exists() and not force:
        raise CheckpointError(f"output '{output}' exists; pass --force to overwrite it")
    checkpoint = _checkpoint_path(output)
    if checkpoint.exists() and not resume and not force:
        raise CheckpointError(f"a checkpoint of an unfinished fit exists at '{checkpoint}'; pass --resume to continue "
                              "it or --force to start again")
    fit = calibrate(spec, seed=seed, checkpoint=checkpoint, resume=resume, remove_checkpoint=False,
                    fred_url=fred_url)
    if output.exists() and not force:  # appeared while the fit ran
        raise CheckpointError(f"output '{output}' appeared while the fit ran; the checkpoint is kept at "
                              f"'{checkpoint}': pass --resume --force to write it")
    written = save(fit, output)
    shutil.rmtree(checkpoint, ignore_errors=True)
    click.echo(f"{fit.attrs['model_name']}: {fit.attrs['method']} fit, seed {fit.attrs['seed']}, "
               f"{fit.attrs['n_evaluations']} model evaluations in {fit.attrs['elapsed_seconds']:.1f} s"
               + (f" ({fit.attrs['resumed_batches']} batches from the checkpoint)" if fit.attrs["resumed_batches"]
                  else ""))
    for line in fit_table(fit):
        click.echo(line)
    click.echo(f"Wrote {written}")


@click.group("data")
def data():
    """The offline catalogue of public series: list them, show one, export it.

    \b
    Example:
      crisis data list
      crisis data show pwt.labour_share --country US --output us_labour_share.csv
    """


@data.command("list")
def data_list():
    """List the catalogue: name, span, countries, units and description.

    \b
    Example:
      crisis data list
    """
    from .data import list_series

    table = list_series()
    width = max(len(n) for n in table["name"])
    click.echo(f"{'series':<{width}}  {'span':<13} {'countries':>9}  {'units':<22} description")
    for row in table.itertuples():
        span = f"{row.start:g}-{row.end:g}"
        click.echo(f"{row.name:<{width}}  {span:<13} {str(row.countries):>9}  {row.units[:22]:<22} "
                   f"{row.description}")
    click.echo("\nAlso: fred:SERIES_ID (downloaded once, then cached) and csv:PATH[#COLUMN].")


@data.command("show")
@click.argument("series")
@click.option("--country", help="For panel series: ISO code (US or USA) or country name.")
@click.option("--window", metavar="START:END", help="Keep times within START-END (calendar years).")
@click.option("--output", "-o", type=OutputFile(".csv"), help="Write the series as CSV.")
@click.option("--fred-url", metavar="URL", help="Base address of the FRED CSV endpoint.")
def data_show(series, country, window, output, fred_url):
    """Show a series: its provenance and values; optionally write it as CSV.

    \b
    Example:
      crisis data show pwt.profit_rate --country US
      crisis data show us.federal_debt_ratio --window 1950:2019 --output debt.csv
    """
    from .data import load_series

    span = None
    if window:
        start, sep, end = window.partition(":")
        try:
            span = (float(start), float(end))
        except ValueError:
            raise DataError(f"--window expects START:END in years, e.g. 1950:2019; got {window!r}") from None
        if not sep:
            raise DataError(f"--window expects START:END in years, e.g. 1950:2019; got {window!r}")
    da = load_series(series, country=country, window=span, fred_url=fred_url)
    click.echo(f"{da.name}: {da.attrs.get('description', '')}")
    for key in ("units", "frequency", "country", "formula", "source", "licence", "package", "dataset", "transforms"):
        if da.attrs.get(key):
            click.echo(f"  {key}: {da.attrs[key]}")
    frame = da.to_pandas()
    if hasattr(frame, "columns"):
        frame.columns = [str(c) for c in frame.columns]
    times = da["time"].values
    click.echo(f"  span: {times.min():g}-{times.max():g}, {times.size} times"
               + (f", {da.sizes['country']} countries" if "country" in da.dims else ""))
    text = frame.to_string(max_rows=12, float_format=lambda v: f"{v:.6g}")
    click.echo(text)
    if output is not None:
        if output.suffix.lower() != ".csv":
            raise DataError(f"--output '{output}' must end in .csv")
        output.parent.mkdir(parents=True, exist_ok=True)
        out = frame.to_frame(str(da.name)) if not hasattr(frame, "columns") else frame
        out.index.name = "time"
        from pysd_runner import atomic_output

        with atomic_output(output, "--output") as tmp:
            out.to_csv(tmp)
        click.echo(f"Wrote {output}")


@click.command("facts")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scenario", "-s", "scenarios", multiple=True, metavar="NAME",
              help="Scenario to judge (repeatable; default: every scenario the facts file or model names).")
@click.option("--facts", "facts_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Facts file (default: facts.toml beside the model).")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for a model README).")
@click.option("--histories", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also run each scenario over N histories of the model's random impulses (the facts "
                   "file's [histories] table) and print the share of them that meet each fact.")
def facts_command(model, scenarios, facts_path, markdown, histories):
    """Judge a model against the stylized facts of the postwar US economy.

    Each fact (cycle length, unemployment range, output declines, growth, profit-rate
    volatility, investment share, real wage growth, private and public debt) is computed
    from the shipped data and measured the same way on each scenario's run, after the
    facts file's warm-up. Inside a scenario's declared crisis window, ranges are judged
    against historical extremes instead. Exit status 1 when a fact fails that the facts
    file does not list as a known failure.

    \b
    With --histories N, each scenario also runs over N histories of its random
    impulses, and a second table gives the share of them that meet each fact, with
    the median statistic: whether a failure is typical of the model or a tail event
    of the one history the first table judges.

    \b
    Example:
      crisis facts models/reformism/reformism.mdl
      crisis facts models/reformism/reformism.mdl -s baseline --markdown
      crisis facts models/reformism/reformism.mdl --histories 60
    """
    from pysd_runner import compile_model, list_scenarios, run_scenarios, scenarios_on_one_axis

    from .facts import (
        facts_table,
        histories_table,
        history_values,
        judge,
        judge_histories,
        load_facts_spec,
        model_facts_path,
        unexpected,
    )

    spec = load_facts_spec(facts_path or model_facts_path(model))
    compiled = compile_model(model)
    if histories:  # a bad [histories] table or count fails before the first table is run
        history_values(compiled, spec, histories)
    names = list(scenarios) or list_scenarios(compiled)
    if len(names) > 1:
        names, notes = scenarios_on_one_axis(compiled, names, {})
        for note in notes:
            click.echo(f"Note: {note}", err=True)
    variables = sorted({compiled.resolve(v).py_name for v in spec.variables.values()})
    if names:
        dataset = run_scenarios(compiled, names, variables=variables)
    else:  # a model without scenarios: its defaults
        from pysd_runner import run

        dataset = run(compiled, variables=variables)
    results = judge(dataset, spec)
    for line in facts_table(results, markdown=markdown):
        click.echo(line)
    surprises = unexpected(results, spec)
    for scenario, fact, what in surprises:
        click.echo(f"  {scenario}: {fact} {what}", err=True)
    if histories:
        many = judge_histories(compiled, names or None, spec, histories, progress=sys.stderr.isatty())
        click.echo("")
        for line in histories_table(many, markdown=markdown):
            click.echo(line)
    failing = sum(what == "fails" for _, _, what in surprises)
    if failing:
        raise click.ClickException(f"{failing} fact(s) fail that {spec.path.name} does not list under "
                                   "[known_failures]")


# Names registered in pysd_runner.cli.COMMANDS.
calibrate = calibrate_command
facts = facts_command
