"""Behaviour-reproduction tests: the stylized facts of the postwar US cycle.

Sterman (Business Dynamics, ch. 21) asks of a model, before its policy conclusions mean
anything, whether it reproduces the behaviour of the system it stands for. This module
states the facts of the postwar US economy that THEORY.md lists, computes each one from
the data the catalogue ships (no network), measures the same statistic on a model run in
the same way, and judges it against an acceptance band around the data.

A model folder says which of its variables stands for each concept and how long its
warm-up is, in ``facts.toml``. A scenario's crisis window is the ``crisis`` window of its own
``[events]`` table (scenario TOML); ``facts.toml`` can override it::

    description = "..."
    warm_up = 20                       # model years left out at the start
    [variables]                        # concept -> the model's variable (Vensim or Python name)
    output = "output"
    unemployment_rate = "unemployment rate"
    profit_rate = "profit rate"
    investment_share = "investment share"
    real_wage = "wage rate"
    private_debt_ratio = "debt ratio"
    public_debt_ratio = "public debt ratio"
    # A model in ratio form, with no level of output or of the real wage, gives its growth
    # rate instead (1/year); the level is rebuilt as exp of its integral over the run
    # (trapezoid rule on the saved values: as accurate as SAVEPER resolves the rate):
    # output = { growth_rate = "growth rate of output" }
    [scenarios.recession_austerity]    # optional: overrides the scenario's [events] crisis window
    crisis = [45, 60]                  # the shock and its aftermath: judged by the crisis bounds
    [known_failures.baseline]          # facts the model does not yet meet, each with the evidence
    output_declines = "output never falls: ..."
    [histories]                        # optional: the model's random history, for `--histories`
    parameter = "demand noise realisation"   # the constant that picks a history (a seed)
    spacing = 11                       # history i sets it to i x spacing

The facts are judged on each scenario's own run, one history of the model's random
impulses. A stochastic model's extremes (its highest unemployment, say) depend on that
draw, just as the US record is one draw; ``judge_histories`` runs each scenario over many
histories and reports, for each fact, the share of them that meet it and the median of
the statistic, so a failure can be told apart as typical of the model or as a tail event
of the shipped history. Histories that start ``spacing`` years apart in one noise table
overlap when the run is longer than that: they are distinct draws, not independent ones.

``known_failures`` is a ratchet: the tests fail when a listed fact starts to pass (take
it off the list) and when an unlisted one fails, so the table in the model's README and
the tests can never drift apart, and a shortfall is stated, never hidden.

Concepts a model does not have are simply left out of ``[variables]``; the facts that
need them are reported as not applicable, never as passed.

Examples
--------
>>> from calibration.facts import data_facts
>>> facts = data_facts()
>>> round(facts["growth"].data_value, 3)
0.031
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import SpecError, did_you_mean

__all__ = ["Fact", "FactsSpec", "data_facts", "load_facts_spec", "measure", "judge", "FactResult", "CONCEPTS",
           "HistoriesResult", "judge_histories", "histories_table"]

#: Concepts a model can map to its variables.
CONCEPTS = {
    "output": "real output (any scale)",
    "unemployment_rate": "unemployment rate, as a fraction",
    "profit_rate": "profit rate, 1/year",
    "investment_share": "gross investment as a share of output",
    "real_wage": "real wage per worker (any scale)",
    "private_debt_ratio": "firms' debt in years of output",
    "public_debt_ratio": "public debt in years of output",
}

#: Concepts that are levels of any scale, which a model may give as a growth rate instead
#: (``output = { growth_rate = "..." }``): every fact on them reads relative changes only.
LEVEL_CONCEPTS = ("output", "real_wage")

#: Smoothing parameter of the Hodrick-Prescott filter for annual series (the common choice
#: of 100 for annual data; Ravn and Uhlig's 6.25 gives a smaller cycle on data and model alike).
HP_LAMBDA = 100.0
#: A peak of unemployment counts as a recession when it stands this far (in rate points)
#: above the lower of the two troughs beside it: about the smallest postwar US recession.
RECESSION_PROMINENCE = 0.01


@dataclass(frozen=True)
class Fact:
    """One stylized fact: what the data say, how a run is measured, what a run must meet."""

    name: str
    description: str
    unit: str
    concepts: tuple[str, ...]
    data_value: float | tuple[float, float]
    source: str
    band: tuple[float, float]
    measure: Callable[..., float | tuple[float, float]] = field(repr=False, compare=False)
    crisis_band: tuple[float, float] | None = None  # the bound inside a declared crisis window

    def within(self, value, band=None) -> bool:
        low, high = band or self.band
        if isinstance(value, tuple):
            return all(math.isfinite(v) for v in value) and low <= value[0] and value[1] <= high
        return math.isfinite(value) and low <= value <= high


@dataclass(frozen=True)
class FactResult:
    fact: Fact
    value: float | tuple[float, float] | None  # None: the model has no variable for the concept
    passed: bool | None
    band: tuple[float, float]
    #: What was judged: (value, band) pairs, all of which must hold; in a crisis window the
    #: value outside it against the band and the value inside against the crisis band.
    checks: tuple = ()

    def text(self) -> str:
        # Enough digits that each judged value, printed, lands on the same side of its band
        # as the measured one: 11.0125 against a band up to 11 reads "11.01 FAIL", not "11 FAIL".
        if self.value is None or self.passed is None or not np.all(np.isfinite(self.value)):
            return format_value(self.value)
        checks = self.checks or ((self.value, self.band),)
        for digits in range(3, 11):
            if all(self.fact.within(_rounded(v, digits), b) == self.fact.within(v, b) for v, b in checks):
                break
        if len(checks) == 2 and all(isinstance(v, tuple) and np.all(np.isfinite(v)) for v, _ in checks):
            # A range with a crisis window: the part outside it (ordinary band) and the part
            # inside (historical extremes), so a reader sees which one a verdict is about.
            (outside, _), (inside, _) = checks
            return f"{format_value(outside, digits)}; crisis {format_value(inside, digits)}"
        return format_value(self.value, digits)


def _rounded(value, digits: int):
    if isinstance(value, tuple):
        return tuple(float(f"{v:.{digits}g}") for v in value)
    return float(f"{value:.{digits}g}")


def format_value(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, tuple):
        return f"{value[0]:.{digits}g} to {value[1]:.{digits}g}"
    if math.isinf(value):
        return "no cycle"  # fewer than two recessions after the warm-up
    return f"{value:.{digits}g}"


# --------------------------------------------------------------------------- statistics
# Each takes annual (or finer) series as numpy arrays with their times, so that the data
# and a model run go through the same code.

def cycle_length(times: np.ndarray, unemployment: np.ndarray) -> float:
    """Mean time between recessions: peaks of unemployment with the given prominence."""
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(np.asarray(unemployment, dtype=float), prominence=RECESSION_PROMINENCE)
    if len(peaks) < 2:
        return math.inf  # no recurring cycle at all
    return float(np.mean(np.diff(np.asarray(times, dtype=float)[peaks])))


def annual(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values at whole years (a model saves more often; data are already annual)."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    years = np.arange(math.ceil(times[0] - 1e-9), math.floor(times[-1] + 1e-9) + 1)
    return years, np.interp(years, times, values)


def growth(times, values) -> float:
    years, y = annual(times, values)
    return float(np.mean(np.diff(np.log(y))))


def decline_frequency(times, values) -> float:
    """Share of years in which the (annual) series fell."""
    years, y = annual(times, values)
    if not np.all(np.isfinite(y)):
        return math.nan  # a run that went non-finite has no share of declines
    return float(np.mean(np.diff(y) < 0))


def hp_volatility(times, values) -> float:
    """Hodrick-Prescott cyclical sd of the annual series, relative to its mean."""
    from statsmodels.tsa.filters.hp_filter import hpfilter

    years, y = annual(times, values)
    cycle, _ = hpfilter(y, lamb=HP_LAMBDA)
    return float(np.std(cycle) / abs(np.mean(y)))


def value_range(times, values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.min(v)), float(np.max(v))


def annual_means(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calendar-year means [y, y + 1) of a series, as annual statistics such as the BLS
    unemployment rate (an annual average) are. Years holding no more than half the saved
    points of a full year (the final time alone) are left out, unless no year is full
    enough. A series saved once a year is returned as is. With a crisis window, years are
    averaged whole first and then assigned to a side (:func:`_annual_split`)."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    years = np.floor(times + 1e-9)
    labels, inverse, counts = np.unique(years, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=values) / counts
    step = float(np.median(np.diff(times))) if times.size > 1 else 1.0
    full = max(1, round(1.0 / step)) if step < 1 else 1
    keep = counts * 2 > full if full > 1 else counts >= 1
    if not keep.any():
        keep[:] = True
    return labels[keep], means[keep]


def annual_range(times, values) -> tuple[float, float]:
    """Lowest and highest calendar-year mean (see :func:`annual_means`); NaN when any value
    is not finite, so that a run which broke down fails rather than losing the bad year."""
    if not np.all(np.isfinite(np.asarray(values, dtype=float))):
        return math.nan, math.nan
    _, means = annual_means(times, values)
    return float(np.min(means)), float(np.max(means))


def growth_range(times, values) -> tuple[float, float]:
    """Smallest and largest annual growth rate (log change per year)."""
    years, y = annual(times, values)
    g = np.diff(np.log(y))
    return float(np.min(g)), float(np.max(g))


# --------------------------------------------------------------------------- the facts

def _us(name: str, window=(1950, 2019), country: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    from .data import load_series

    da = load_series(name, country=country, window=window)
    return da["time"].values.astype(float), da.values.astype(float)


@lru_cache(maxsize=1)
def data_facts() -> dict[str, Fact]:
    """The facts, each with its value computed from the shipped data."""
    unemployment_q = _us("us.q.unemployment_rate", window=None)
    unemployment = _us("us.unemployment_rate", window=(1948, 2019))
    output = _us("pwt.output", country="US")
    profit_rate = _us("pwt.profit_rate", country="US")
    investment = _us("us.q.investment_share", window=None)
    labsh = _us("pwt.labour_share", country="US")
    productivity = _us("pwt.labour_productivity", country="US")
    real_wage = (labsh[0], labsh[1] * productivity[1])
    debt = _us("us.federal_debt_ratio")
    facts = [
        Fact("cycle_length", "mean time between recessions (peaks of unemployment)", "year",
             ("unemployment_rate",), cycle_length(*unemployment_q),
             "US quarterly unemployment 1959-2009 (statsmodels macrodata); NBER: 5.8 years trough to trough",
             band=(4.0, 11.0), measure=cycle_length),
        # BLS's annual rate is an annual average (and the Depression's 25% a yearly figure),
        # so a run is judged on its calendar-year means too, not on single saved points: in
        # reformism's scenarios the highest quarter is about 0.2-1.3 points above the highest
        # year's mean.
        Fact("unemployment_range", "lowest and highest annual (calendar-year mean) unemployment rate", "1",
             ("unemployment_rate",), annual_range(*unemployment),
             "US unemployment 1948-2019 (BLS annual means in the catalogue)", band=(0.02, 0.12),
             measure=annual_range, crisis_band=(0.0, 0.25)),
        Fact("output_declines", "share of years in which output fell", "1", ("output",),
             decline_frequency(*output), "PWT 10 rgdpna, US 1950-2019", band=(0.05, 0.25),
             measure=decline_frequency),
        Fact("growth", "mean growth of real output", "1/year", ("output",), growth(*output),
             "PWT 10 rgdpna, US 1950-2019", band=(0.02, 0.04), measure=growth),
        Fact("profit_rate_volatility", f"HP-filtered (lambda {HP_LAMBDA:g}) sd of the profit rate over its mean",
             "1", ("profit_rate",), hp_volatility(*profit_rate),
             "PWT 10, US 1950-2019: (1 - labsh) rgdpna / rnna", band=(0.01, 0.05), measure=hp_volatility),
        Fact("investment_share_range", "lowest and highest gross investment share of output", "1",
             ("investment_share",), value_range(*investment),
             "US real gross private investment / real GDP 1959-2009 (statsmodels macrodata)",
             band=(0.05, 0.25), measure=value_range),
        Fact("real_wage_growth_range", "slowest and fastest annual growth of the real wage", "1/year",
             ("real_wage",), growth_range(*real_wage),
             "PWT 10, US 1950-2019: labsh x rgdpna / emp", band=(-0.06, 0.08), measure=growth_range,
             crisis_band=(-0.15, 0.10)),
        Fact("private_debt_range", "firms' debt in years of output: net borrowers, a fraction of a year",
             "year", ("private_debt_ratio",), (0.3, 0.8),
             "no shipped series: US non-financial business debt is about 0.3-0.8 of GDP (Fed Z.1); a sign and a range",
             band=(0.0, 1.5), measure=value_range, crisis_band=(0.0, 2.0)),
        Fact("public_debt_range", "public debt in years of output", "year", ("public_debt_ratio",),
             value_range(*debt), "US federal debt / GDP 1950-2019 (federal budget series)",
             band=(0.0, 1.5), measure=value_range, crisis_band=(0.0, 2.0)),
    ]
    return {fact.name: fact for fact in facts}


# --------------------------------------------------------------------------- a model's facts

@dataclass(frozen=True)
class FactsSpec:
    path: Path
    description: str
    warm_up: float
    variables: dict[str, str]
    crisis: dict[str, tuple[float, float]]
    known_failures: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The constant that selects one history of the model's random impulses, and the step
    #: between histories (``[histories]``); None when the facts file has no such table.
    history_parameter: str | None = None
    history_spacing: float = 1.0
    #: Level concepts the model gives as a growth rate (``{ growth_rate = ... }``): their
    #: variable in ``variables`` is the rate, and the level is rebuilt from it.
    growth_rates: frozenset[str] = frozenset()


def load_facts_spec(path: str | Path) -> FactsSpec:
    """Read and check a model folder's ``facts.toml`` (see the module docstring)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"facts file '{path}' does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"facts file '{path}' is not valid TOML: {exc}") from None
    allowed = {"description", "warm_up", "variables", "scenarios", "known_failures", "histories"}
    for key in raw:
        if key not in allowed:
            raise SpecError(f"facts file '{path}': unknown key '{key}'.{did_you_mean(key, allowed)} "
                            f"Allowed: {', '.join(sorted(allowed))}")
    warm_up = raw.get("warm_up", 0)
    if not isinstance(warm_up, (int, float)) or isinstance(warm_up, bool) or warm_up < 0:
        raise SpecError(f"facts file '{path}': warm_up must be a non-negative number of years; got {warm_up!r}")
    variables, growth_rates = {}, set()
    for concept, name in raw.get("variables", {}).items():
        if concept not in CONCEPTS:
            raise SpecError(f"facts file '{path}': unknown concept '{concept}'.{did_you_mean(concept, CONCEPTS)} "
                            f"Allowed: {', '.join(CONCEPTS)}")
        level = concept in LEVEL_CONCEPTS
        allowed_here = ('a variable name, or { growth_rate = "<variable>" } for a level given by its growth rate'
                        if level else f"a variable name (only {' and '.join(LEVEL_CONCEPTS)} may be given as a "
                                      "growth rate)")
        if isinstance(name, dict):
            if not level:
                raise SpecError(f"facts file '{path}': [variables] {concept} must be {allowed_here}; got {name!r}")
            for key in name:
                if key != "growth_rate":
                    raise SpecError(f"facts file '{path}': [variables] {concept} has unknown key '{key}'."
                                    f"{did_you_mean(key, ['growth_rate'])} Allowed: growth_rate")
            if "growth_rate" not in name:
                raise SpecError(f"facts file '{path}': [variables] {concept} must be {allowed_here}; got {name!r}")
            name = name["growth_rate"]
            growth_rates.add(concept)
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"facts file '{path}': [variables] {concept} must be {allowed_here}; got {name!r}")
        variables[concept] = name
    crisis = {}
    for scenario, table in raw.get("scenarios", {}).items():
        window = table.get("crisis") if isinstance(table, dict) else None
        if (not isinstance(window, list) or len(window) != 2
                or not all(isinstance(v, (int, float)) for v in window) or window[0] >= window[1]):
            raise SpecError(f"facts file '{path}': [scenarios.{scenario}] needs crisis = [start, end] with "
                            f"start < end; got {window!r}")
        crisis[scenario] = (float(window[0]), float(window[1]))
    known = {}
    names = set(data_facts())
    for scenario, table in raw.get("known_failures", {}).items():
        if not isinstance(table, dict):
            raise SpecError(f"facts file '{path}': [known_failures.{scenario}] must be a table of fact = \"reason\"")
        for fact, reason in table.items():
            if fact not in names:
                raise SpecError(f"facts file '{path}': [known_failures.{scenario}] names unknown fact '{fact}'."
                                f"{did_you_mean(fact, names)} Allowed: {', '.join(sorted(names))}")
            if not isinstance(reason, str) or not reason.strip():
                raise SpecError(f"facts file '{path}': [known_failures.{scenario}] {fact} needs the evidence, "
                                "a non-empty string")
        known[scenario] = dict(table)
    histories = raw.get("histories", {})
    if not isinstance(histories, dict) or set(histories) - {"parameter", "spacing"}:
        raise SpecError(f"facts file '{path}': [histories] takes parameter = \"<constant>\" and spacing = <years>; "
                        f"got {histories!r}")
    parameter = histories.get("parameter")
    if histories and (not isinstance(parameter, str) or not parameter.strip()):
        raise SpecError(f"facts file '{path}': [histories] parameter must name the model constant that picks "
                        f"a history (a seed or a noise offset); got {parameter!r}")
    spacing = histories.get("spacing", 1)
    if not isinstance(spacing, (int, float)) or isinstance(spacing, bool) or not spacing > 0:
        raise SpecError(f"facts file '{path}': [histories] spacing must be a positive number; got {spacing!r}")
    return FactsSpec(path, str(raw.get("description", "")), float(warm_up), variables, crisis, known,
                     parameter, float(spacing), frozenset(growth_rates))


def crisis_event(ds: xr.Dataset) -> tuple[float, float] | None:
    """The crisis window the run's scenario declares (its ``[events]`` table's ``crisis``), if any."""
    import json

    if "scenario_events" in ds.coords and ds["scenario_events"].ndim == 0:
        text = str(ds["scenario_events"].values)
    else:
        text = str(ds.attrs.get("scenario_events", "[]"))
    try:
        events = json.loads(text or "[]")
    except ValueError:
        return None
    for event in events:
        if event.get("name") == "crisis" and float(event["end"]) > float(event["start"]):
            return float(event["start"]), float(event["end"])
    return None


def _series(ds: xr.Dataset, name: str) -> xr.DataArray:
    if name not in ds:
        # A Vensim name: every variable of a run carries its Vensim name as long_name.
        named = [v for v in ds.data_vars if ds[v].attrs.get("long_name") == name]
        name = named[0] if named else "_".join(name.lower().split())
    if name not in ds:
        raise SpecError(f"the run has no variable '{name}'.{did_you_mean(name, list(ds.data_vars))}")
    return ds[name]


def measure(ds: xr.Dataset, spec: FactsSpec, scenario: str | None = None,
            facts: Mapping[str, Fact] | None = None) -> list[FactResult]:
    """Measure every fact on one run (a Dataset without a ``scenario`` dimension).

    Time before ``warm_up`` is left out. In a scenario with a crisis window, ranges are
    judged against the crisis bounds (historical extremes) and every other statistic on
    the time outside the window; a statistic that needs a continuous series (cycle
    length, growth, volatility) uses the longest stretch outside it.
    """
    facts = dict(facts or data_facts())
    names = {concept: name for concept, name in spec.variables.items()}
    time = ds["time"].values.astype(float)
    keep = time >= time[0] + spec.warm_up
    window = spec.crisis.get(scenario) if scenario else None
    if window is None:
        window = crisis_event(ds)
    results = []
    for fact in facts.values():
        if not all(c in names for c in fact.concepts):
            results.append(FactResult(fact, None, None, fact.band))
            continue
        series = [_level(time, _series(ds, names[c]).values.astype(float)) if c in spec.growth_rates
                  else _series(ds, names[c]).values.astype(float) for c in fact.concepts]
        ranged = fact.measure in (value_range, annual_range)
        band = fact.band
        mask = keep.copy()
        if window is not None:
            inside = (time >= window[0]) & (time <= window[1])
            if ranged or fact.measure is growth_range:
                # The whole run, judged against the crisis bounds inside the window and the
                # ordinary bounds outside it: both must hold.
                if fact.measure is annual_range:
                    outside_value, inside_value = _annual_split(time[mask], series[0][mask], window)
                else:
                    outside_value = fact.measure(time[mask & ~inside], *[s[mask & ~inside] for s in series])
                    inside_value = fact.measure(time[mask & inside], *[s[mask & inside] for s in series])
                crisis_band = fact.crisis_band or fact.band
                checks = tuple((v, b) for v, b in ((outside_value, band), (inside_value, crisis_band))
                               if v is not None)  # a side without a whole year has nothing to judge
                passed = all(fact.within(v, b) for v, b in checks)
                # np.min/np.max propagate NaN (Python's min and max depend on the order).
                value = (float(np.min([v[0] for v, _ in checks])), float(np.max([v[1] for v, _ in checks])))
                results.append(FactResult(fact, value, passed, (band[0], band[1]), checks))
                continue
            mask = _longest_stretch(mask & ~inside)
        value = fact.measure(time[mask], *[s[mask] for s in series])
        results.append(FactResult(fact, value, fact.within(value, band), band))
    return results


def _annual_split(time, values, window) -> tuple[tuple[float, float], tuple[float, float]]:
    """Calendar-year ranges outside and inside a crisis window: the years are averaged
    whole over the run first, and a year the window touches for any length of time counts
    inside it, so a year the window's edge cuts is neither split into part-year means nor
    lost. A side with no year has no bound to break."""
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        nan = (math.nan, math.nan)
        return nan, nan
    years, means = annual_means(time, values)
    touched = (years < window[1]) & (years + 1 > window[0])
    def span(selected):
        return (float(np.min(means[selected])), float(np.max(means[selected]))) if selected.any() else None
    return span(~touched), span(touched)


def _level(time: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """A level (1 at the first saved time) rebuilt from its growth rate: exp of the rate's
    integral, by the trapezoid rule over the saved times."""
    from scipy.integrate import cumulative_trapezoid

    with np.errstate(over="ignore", invalid="ignore"):
        level = np.exp(cumulative_trapezoid(rate, time, initial=0.0))
    # A non-finite rate (or a level beyond float range) leaves the level undefined from
    # there on: NaN, which fails every fact on it, never inf (which would read "no cycle").
    level[~np.isfinite(level)] = np.nan
    return level


def _longest_stretch(mask: np.ndarray) -> np.ndarray:
    """The longest run of True in a boolean array, as a mask."""
    best = (0, 0)
    start = None
    for i, flag in enumerate(np.append(mask, False)):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    out = np.zeros_like(mask)
    out[best[0]:best[1]] = True
    return out


def judge(ds: xr.Dataset, spec: FactsSpec) -> dict[str, list[FactResult]]:
    """Every scenario of a (possibly stacked) run: scenario name -> its facts."""
    if "scenario" in ds.dims:
        return {str(s): measure(ds.sel(scenario=s), spec, str(s)) for s in ds["scenario"].values}
    name = ds.attrs.get("scenario") or None
    return {name or "run": measure(ds, spec, name)}


def facts_table(results: Mapping[str, list[FactResult]], markdown: bool = False) -> list[str]:
    """One row per fact: the data's value, the band, and each scenario's value with a mark."""
    scenarios = list(results)
    facts = [r.fact for r in next(iter(results.values()))]
    header = ["fact", "data", "band", *scenarios]
    rows = []
    for i, fact in enumerate(facts):
        cells = [fact.name, format_value(fact.data_value), format_value(fact.band)]
        for scenario in scenarios:
            r = results[scenario][i]
            mark = "" if r.passed is None else (" ok" if r.passed else " FAIL")
            cells.append(r.text() + mark)
        rows.append(cells)
    if markdown:
        # A README table: the source of each target too.
        header = [*header[:3], "source", *header[3:]]
        rows = [[*row[:3], fact.source, *row[3:]] for fact, row in zip(facts, rows)]
    return _render(header, rows, markdown)


def _render(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """A table's lines: Markdown for a README, or aligned columns for a terminal."""
    if markdown:
        return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                + ["| " + " | ".join(str(c).strip() for c in row) + " |" for row in rows])
    widths = [max(len(str(r[j])) for r in [header, *rows]) for j in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def unexpected(results: Mapping[str, list[FactResult]], spec: FactsSpec) -> list[tuple[str, str, str]]:
    """Facts that fail without being listed as known failures, and listed ones that now pass."""
    out = []
    for scenario, rows in results.items():
        known = spec.known_failures.get(scenario, {})
        for r in rows:
            if r.passed is False and r.fact.name not in known:
                out.append((scenario, r.fact.name, "fails"))
            elif r.passed and r.fact.name in known:
                out.append((scenario, r.fact.name, "now passes: take it off known_failures"))
    return out


# --------------------------------------------------------------------------- many histories

@dataclass(frozen=True)
class HistoriesResult:
    """One fact over many histories of a scenario: the share that meet it and the median."""

    fact: Fact
    share: float | None  # None: not applicable
    median: float | tuple[float, float] | None
    count: int

    def text(self) -> str:
        if self.share is None:
            return "n/a"
        return f"{self.share:.0%} ({format_value(self.median)})"


def history_values(model, spec: FactsSpec, count: int) -> tuple[str, np.ndarray]:
    """The constant that picks a history (its Python name) and its value in each of ``count``
    histories; a :class:`SpecError` that says what is allowed if the facts file, the model
    or ``count`` cannot give them. ``model`` is a compiled model."""
    if spec.history_parameter is None:
        raise SpecError(f"facts file '{spec.path}' has no [histories] table: add parameter = \"<constant that "
                        "picks a history>\" and spacing = <years> to judge many histories")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise SpecError(f"the number of histories must be a positive whole number; got {count!r}")
    try:
        element = model.resolve(spec.history_parameter)
    except Exception as exc:  # noqa: BLE001 - the resolver's own message names the candidates
        raise SpecError(f"facts file '{spec.path}': [histories] parameter: {exc}") from None
    if element.kind != "constant":
        raise SpecError(f"facts file '{spec.path}': [histories] parameter '{element.name}' is not a constant "
                        f"(it is {element.kind}); it must be a constant that picks a history (a seed or a noise offset)")
    values = np.arange(count) * spec.history_spacing
    high = element.limits[1]
    if high is not None and values[-1] > high:
        raise SpecError(f"{count} histories {spec.history_spacing:g} apart need '{element.name}' up to "
                        f"{values[-1]:g}, above the top of its range {element.range_text}: use at most "
                        f"{int(high // spec.history_spacing) + 1} histories or a smaller spacing")
    return element.py_name, values


def judge_histories(model, scenarios: list[str] | None, spec: FactsSpec, count: int,
                    *, progress: bool = False) -> dict[str, list[HistoriesResult]]:
    """Each scenario run over ``count`` histories of its random impulses (history ``i``
    sets the facts file's ``[histories] parameter`` to ``i x spacing``; history 0 is the
    model's default when that default is 0), every fact measured on each.

    Returns scenario name -> one :class:`HistoriesResult` per fact. The histories of a
    scenario run as one vectorised ensemble. For a range, the median is that of the
    lowest and of the highest values.
    """
    from pysd_runner import CompiledModel, compile_model, run_ensemble

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    parameter, values = history_values(model, spec, count)
    variables = sorted({model.resolve(v).py_name for v in spec.variables.values()})
    facts = data_facts()
    out = {}
    for name in scenarios or [None]:
        ds = run_ensemble(model, {parameter: values}, scenario=name, variables=variables,
                          progress=progress)
        member_dim = next(d for d in ds[variables[0]].dims if d != "time")
        runs = [measure(ds.isel({member_dim: i}), spec, name, facts) for i in range(count)]
        rows = []
        for j, fact in enumerate(facts.values()):
            if runs[0][j].passed is None:
                rows.append(HistoriesResult(fact, None, None, count))
                continue
            share = float(np.mean([r[j].passed for r in runs]))
            measured = [r[j].value for r in runs]
            if isinstance(measured[0], tuple):
                median = (float(np.median([v[0] for v in measured])), float(np.median([v[1] for v in measured])))
            else:
                median = float(np.median(measured))
            rows.append(HistoriesResult(fact, share, median, count))
        out[name or "run"] = rows
    return out


def histories_table(results: Mapping[str, list[HistoriesResult]], markdown: bool = False) -> list[str]:
    """One row per fact: its band and, for each scenario, the share of histories meeting
    it with the median statistic in brackets."""
    scenarios = list(results)
    facts = [r.fact for r in next(iter(results.values()))]
    count = next(iter(results.values()))[0].count
    header = ["fact", "band", *scenarios]
    rows = [[fact.name, format_value(fact.band), *(results[s][i].text() for s in scenarios)]
            for i, fact in enumerate(facts)]
    title = [f"Share of {count} histories meeting each fact (median in brackets):", *([""] if markdown else [])]
    return title + _render(header, rows, markdown)


def model_facts_path(model_path: str | Path) -> Path:
    return Path(model_path).with_name("facts.toml")

