"""Plotly figures from xarray Datasets: plain functions, one figure each.

Every label (titles, axis titles, legend entries) comes from the Dataset: a variable's
``long_name`` and ``units`` attrs, coordinate values and Dataset attrs. No number is typed
into a figure by hand. Every model-provided string is HTML-escaped before it reaches
Plotly, whose text rendering understands a few HTML tags: a model documentation that
contains ``<b>`` or ``<script>`` shows as those characters, never as markup.

The functions read Datasets and nothing else; they do not run models (see
:mod:`dashboards.grid` and :mod:`dashboards.app` for that).

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset(
...     {"wage_share": ("time", np.linspace(0.8, 0.9, 5), {"long_name": "wage share", "units": "Dmnl"}),
...      "employment_rate": ("time", np.linspace(0.9, 0.95, 5), {"long_name": "employment rate", "units": "Dmnl"})},
...     coords={"time": ("time", np.arange(5.0), {"units": "Year"})})
>>> fig = phase_portrait(ds)
>>> fig.layout.xaxis.title.text
'employment rate (Dmnl)'
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import xarray as xr
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .errors import DashboardInputError, did_you_mean

__all__ = [
    "SECTOR_KEYWORDS",
    "sector_panels",
    "trajectories",
    "scenario_events",
    "mark_events",
    "scenario_comparison",
    "phase_portrait",
    "fit_figure",
    "filtered_states_figure",
    "fan_chart",
    "sensitivity_bars",
    "loop_dominance",
    "lever_grid_figure",
    "variable_records",
    "variable_table",
]

#: The four sectors of the reformism model (THEORY.md, "Sectors") and the words that pick
#: their variables out of a run by Python name, the headline variable's first. A Dataset
#: in which every sector finds a variable is shown in these four panels; any other model
#: falls back to panels grouped by units (see :func:`sector_panels`).
SECTOR_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Profitability": ("profit_rate", "profit_share", "business_confidence", "wage_share", "employment_rate"),
    "Tax revenue": ("tax_revenue_share", "effective_tax_rate", "tax_revenue", "taxes_on", "tax_on", "revenue"),
    "Welfare spending": ("welfare_spending_per_head", "welfare_share_of_output", "welfare", "public_debt_ratio",
                         "public_debt"),
    "Legitimacy": ("legitimacy", "militancy", "strike", "repression", "militant_minority"),
}
#: Name prefixes of a stock's flow, goal or delayed perception ("change in legitimacy",
#: "indicated legitimacy", "perceived profit rate"): in a sector panel only when the
#: sector has nothing else.
DERIVED_PREFIXES = ("change_in_", "indicated_", "perceived_", "desired_", "bargaining_")

#: Dimensions a trajectory variable may have besides ``time``.
_STACK_DIMS = ("scenario",)
PALETTE = qualitative.Plotly
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
#: How each dash style is drawn in a panel's key.
DASH_SYMBOLS = {"solid": "━━", "dash": "╍╍", "dot": "┈┈", "dashdot": "━┈",
                "longdash": "━ ━", "longdashdot": "━ ┈"}
MAX_PANELS = 4
MAX_PER_PANEL = 6
#: Ratio of typical sizes above which variables of the same units go in separate panels.
MAGNITUDE_GAP = 10.0


# --------------------------------------------------------------------------- labels

def _esc(text) -> str:
    """Escape a model-provided string for Plotly's HTML-like text (and for HTML)."""
    return html.escape(str(text), quote=False)


def long_name(da: xr.DataArray, fallback: str | None = None) -> str:
    return str(da.attrs.get("long_name") or fallback or da.name or "")


def units(da: xr.DataArray) -> str:
    return str(da.attrs.get("units") or "")


def axis_title(da: xr.DataArray, fallback: str | None = None) -> str:
    """``long name (units)``, escaped."""
    name, unit = long_name(da, fallback), units(da)
    # "Time (calendar year)" in years needs no second "(year)".
    return _esc(f"{name} ({unit})" if unit and unit.lower() not in name.lower() else name)


def _time_title(ds: xr.Dataset) -> str:
    if "time" not in ds.coords:
        return "Time"
    return axis_title(ds["time"], "Time")


def _require(ds: xr.Dataset, names: Sequence[str], what: str) -> None:
    known = list(ds.data_vars)
    for name in names:
        if name not in ds.data_vars:
            raise DashboardInputError(
                f"{what}: the Dataset has no variable '{name}'.{did_you_mean(name, known)} "
                f"Variables: {', '.join(sorted(known)) or 'none'}"
            )


def _require_dims(ds: xr.Dataset, dims: Sequence[str], what: str) -> None:
    missing = [d for d in dims if d not in ds.dims]
    if missing:
        raise DashboardInputError(
            f"{what}: the Dataset lacks the dims {missing}; it has {list(ds.dims)}"
        )


def scenario_names(ds: xr.Dataset) -> list[str]:
    """The scenarios of a run result: the ``scenario`` coordinate, or one name for a single run."""
    if "scenario" in ds.dims:
        return [str(s) for s in ds["scenario"].values]
    return [str(ds.attrs.get("scenario") or "run")]


def _per_scenario(ds: xr.Dataset, scenarios: Sequence[str] | None = None) -> list[tuple[str, xr.Dataset]]:
    names = scenario_names(ds)
    chosen = list(scenarios) if scenarios is not None else names
    for name in chosen:
        if name not in names:
            raise DashboardInputError(
                f"unknown scenario '{name}'.{did_you_mean(name, names)} Scenarios: {', '.join(names)}"
            )
    if "scenario" not in ds.dims:
        return [(names[0], ds)]
    return [(name, ds.sel(scenario=name)) for name in chosen]


def _time_series(da: xr.DataArray, what: str) -> np.ndarray:
    extra = [d for d in da.dims if d != "time"]
    if "time" not in da.dims or extra:
        raise DashboardInputError(
            f"{what}: variable '{da.name}' must depend on time alone here; it has dims {list(da.dims)} "
            "(select the subscript elements first)"
        )
    return np.asarray(da.values, dtype=float)


# --------------------------------------------------------------------------- panels

def _plottable(ds: xr.Dataset) -> list[str]:
    """Variables along time (and scenario) only, numeric."""
    names = []
    for name, da in ds.data_vars.items():
        if "time" in da.dims and set(da.dims) <= {"time", *_STACK_DIMS} and np.issubdtype(da.dtype, np.number):
            names.append(str(name))
    return names


def _varies(da: xr.DataArray) -> bool:
    """True if the variable changes along time (in any scenario or member)."""
    values = np.asarray(da.values, dtype=float)
    axis = da.dims.index("time") if "time" in da.dims else None
    if axis is None or values.shape[axis] < 2:
        return False
    values = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
    for row in values:
        finite = row[np.isfinite(row)]
        if finite.size and finite.max() > finite.min():
            return True
    return False


def _magnitude(da: xr.DataArray) -> float:
    values = np.abs(np.asarray(da.values, dtype=float))
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if values.size else 0.0


def _split_by_magnitude(ds: xr.Dataset, names: list[str]) -> list[list[str]]:
    """Split variables of one unit where their typical sizes jump by more than MAGNITUDE_GAP.

    A variable ten times larger than the rest of its panel would flatten them into a line;
    variables keep their Dataset order inside each part.
    """
    ordered = sorted(names, key=lambda n: _magnitude(ds[n]))
    parts: list[list[str]] = [[ordered[0]]]
    for previous, name in zip(ordered, ordered[1:]):
        low, high = _magnitude(ds[previous]), _magnitude(ds[name])
        if low > 0 and high / low > MAGNITUDE_GAP:
            parts.append([])
        parts[-1].append(name)
    return [[n for n in names if n in part] for part in parts]


def _sector_variables(ds: xr.Dataset, candidates: Sequence[str], keywords: Sequence[str]) -> list[str]:
    """One sector's panel: its headline variable first, then those that share its axis.

    Variables are ranked by the first keyword they contain, a name equal to the keyword
    first; flows, goals and perceptions (:data:`DERIVED_PREFIXES`) only if nothing else
    matches. The panel keeps the first variable's units, and the variables within
    :data:`MAGNITUDE_GAP` of its typical size, so one axis reads them all.
    """
    def rank(name: str) -> tuple:
        first = next(i for i, k in enumerate(keywords) if k in name)
        return (first, name != keywords[first], name)

    matching = sorted((n for n in candidates if any(k in n for k in keywords)), key=rank)
    plain = [n for n in matching if not n.startswith(DERIVED_PREFIXES)]
    chosen = plain or matching
    if not chosen:
        return []
    lead = chosen[0]
    size = _magnitude(ds[lead])
    same_axis = [
        n for n in chosen
        if units(ds[n]) == units(ds[lead])
        and (size == 0 or _magnitude(ds[n]) == 0 or 1 / MAGNITUDE_GAP <= _magnitude(ds[n]) / size <= MAGNITUDE_GAP)
    ]
    return same_axis[:MAX_PER_PANEL]


def sector_panels(ds: xr.Dataset, panels: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Which variables go in which panel of the trajectory figure.

    Parameters
    ----------
    ds : xarray.Dataset
        A run result (dims ``time`` and optionally ``scenario``).
    panels : mapping of panel title -> variable names, optional
        Given panels are checked against the Dataset and returned as they are.

    Returns
    -------
    dict
        Panel title -> Python names of variables. For the reformism model (every sector of
        :data:`SECTOR_KEYWORDS` finds a variable) the four sectors profitability, tax
        revenue, welfare spending and legitimacy, each led by its headline variable, with
        the variables that share its units and scale. For any other model (Goodwin, Keen, a
        model you bring) the variables that change over time grouped by units, the largest
        groups first: at most four panels of at most six variables.
    """
    if panels is not None:
        out = {str(title): list(names) for title, names in panels.items()}
        for title, names in out.items():
            _require(ds, names, f"panel '{title}'")
        if not out or not all(out.values()):
            raise DashboardInputError("panels must map each panel title to at least one variable")
        return out
    plottable = _plottable(ds)
    # Variables constant over time (equilibria, constants) are left out, unless nothing moves.
    candidates = [n for n in plottable if _varies(ds[n])] or plottable
    sectors = {title: _sector_variables(ds, candidates, keywords) for title, keywords in SECTOR_KEYWORDS.items()}
    if all(sectors.values()):
        return sectors
    by_unit: dict[str, list[str]] = {}
    for name in candidates:
        by_unit.setdefault(units(ds[name]), []).append(name)
    if not by_unit:
        raise DashboardInputError(
            "the Dataset has no numeric variable along time to plot; "
            f"variables: {', '.join(map(str, ds.data_vars)) or 'none'}"
        )
    groups: list[tuple[str, list[str]]] = []
    for unit, names in by_unit.items():
        parts = _split_by_magnitude(ds, names)
        for part in parts:
            title = unit or "dimensionless"
            if len(parts) > 1:
                title = f"{title}: {long_name(ds[part[0]], part[0])}{', …' if len(part) > 1 else ''}"
            groups.append((title, part))
    ordered = sorted(groups, key=lambda item: -len(item[1]))[:MAX_PANELS]
    return {title: names[:MAX_PER_PANEL] for title, names in ordered}


def _grid_shape(n: int) -> tuple[int, int]:
    cols = 1 if n == 1 else 2
    return math.ceil(n / cols), cols


def _subplot_position(index: int, cols: int) -> tuple[int, int]:
    return index // cols + 1, index % cols + 1


# --------------------------------------------------------------------------- trajectories

def trajectories(
    ds: xr.Dataset,
    panels: Mapping[str, Sequence[str]] | None = None,
    *,
    scenarios: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Crisis trajectories in sector panels, for one or several scenarios.

    Parameters
    ----------
    ds : xarray.Dataset
        A run result with dims ``time`` and optionally ``scenario``.
    panels : mapping, optional
        Panel title -> variable names; default :func:`sector_panels`.
    scenarios : list of str, optional
        Scenarios to show (default all).
    title : str, optional
        Figure title (default the model name from the Dataset attrs).

    Returns
    -------
    plotly.graph_objects.Figure
        One subplot per panel. With one scenario each variable has its own colour; with
        several, each scenario has a colour and each variable in a panel a dash style.
        Every trace carries ``meta = {"scenario": ..., "variable": ...}``, which the report's
        scenario selector uses to show and hide traces.
    """
    layout = sector_panels(ds, panels)
    per_scenario = _per_scenario(ds, scenarios)
    rows, cols = _grid_shape(len(layout))
    fig = make_subplots(
        rows=rows, cols=cols, shared_xaxes=True, subplot_titles=[_esc(t) for t in layout],
        vertical_spacing=0.12 if rows > 1 else 0.08, horizontal_spacing=0.1,
    )
    several = len(per_scenario) > 1
    time = ds["time"].values
    for index, (panel, names) in enumerate(layout.items()):
        row, col = _subplot_position(index, cols)
        for s_index, (scenario, part) in enumerate(per_scenario):
            for v_index, name in enumerate(names):
                da = part[name]
                label = _esc(long_name(da, name))
                color = PALETTE[(s_index if several else v_index) % len(PALETTE)]
                values = _time_series(da, "trajectories")
                fig.add_trace(
                    go.Scatter(
                        x=time, y=values, mode="lines",
                        name=_esc(scenario) if several else label,
                        # The legend names the scenarios only (colour means scenario); each
                        # variable is named on its own line, so no legend grows with the panels.
                        legendgroup=_esc(scenario) if several else name,
                        showlegend=several and index == 0 and v_index == 0,
                        hovertemplate=f"{_esc(scenario) + ' · ' if several else ''}{label}: %{{y:.4g}}<extra></extra>",
                        line={"color": color, "dash": DASHES[v_index % len(DASHES)] if several else "solid"},
                        meta={"scenario": scenario, "variable": name, "panel": panel},
                    ),
                    row=row, col=col,
                )
        # The panel's key under its title: each variable's line style (several scenarios) or
        # colour (one scenario), so no legend grows with the panels.
        keys = []
        for v_index, name in enumerate(names):
            label = _esc(long_name(ds[name], name))
            if several:
                keys.append(label if len(names) == 1 else f"{DASH_SYMBOLS[DASHES[v_index % len(DASHES)]]} {label}")
            else:
                keys.append(f'<span style="color:{PALETTE[v_index % len(PALETTE)]}">━ {label}</span>')
        fig.layout.annotations[index].text = (f"{_esc(panel)}<br><span style=\"font-size:11px\">"
                                              f"{' · '.join(keys)}</span>")
        unit_set = {units(ds[n]) for n in names}
        if len(unit_set) == 1 and (unit := unit_set.pop()):
            fig.update_yaxes(title_text=_esc(unit), row=row, col=col)
        if row == rows:
            fig.update_xaxes(title_text=_time_title(ds), row=row, col=col)
        mark_events(fig, scenario_events(ds, [name for name, _ in per_scenario]), row=row, col=col, label=index == 0)
    fig.update_layout(
        title=_esc(title if title is not None else _model_title(ds, "Crisis trajectories")),
        height=330 * rows + 120, legend={"orientation": "h", "y": -0.12}, margin={"t": 80},
        template="plotly_white",
    )
    return fig


def scenario_events(ds: xr.Dataset, scenarios: Sequence[str] | None = None) -> list[dict]:
    """The events the runs' scenarios declare (their ``[events]`` tables), each once, with the
    scenarios that declare it: ``{"name", "start", "end", "label", "scenarios"}``."""
    import json

    if "scenario_events" in ds.coords and "scenario" in ds["scenario_events"].dims:
        texts = {str(n): str(t) for n, t in zip(ds["scenario"].values, ds["scenario_events"].values)}
    else:
        texts = {str(ds.attrs.get("scenario", "")): str(ds.attrs.get("scenario_events", "[]"))}
    found: dict[tuple, dict] = {}
    for name, text in texts.items():
        if scenarios is not None and name not in scenarios:
            continue
        try:
            events = json.loads(text or "[]")
        except ValueError:
            continue
        for event in events:
            key = (event["name"], float(event["start"]), float(event["end"]))
            entry = found.setdefault(key, {**event, "scenarios": []})
            entry["scenarios"].append(name)
    return sorted(found.values(), key=lambda e: (e["start"], e["end"]))


def mark_events(fig: go.Figure, events: Sequence[Mapping], *, row=None, col=None, label: bool = True) -> None:
    """Mark declared events on a subplot: a shaded window, or a dotted line at a moment;
    ``label`` writes each event's label (on one panel, so it is not repeated)."""
    where = {"row": row, "col": col} if row is not None else {}
    for event in events:
        text = _esc(event.get("label") or event["name"]) if label else None
        # A crisis window's label sits at its foot, so it does not cover the label of a shock
        # that starts with it.
        position = "bottom right" if event["name"] == "crisis" else "top left"
        extra = {"annotation_text": text, "annotation_position": position,
                 "annotation_font": {"size": 10, "color": "#555"}} if text else {}
        if float(event["end"]) > float(event["start"]):
            fig.add_vrect(x0=float(event["start"]), x1=float(event["end"]), line_width=0,
                          fillcolor="rgba(214,39,40,0.07)" if event["name"] != "crisis" else "rgba(128,128,128,0.08)",
                          layer="below", **where, **extra)
        else:
            fig.add_vline(x=float(event["start"]), line={"color": "#888", "dash": "dot", "width": 1}, **where, **extra)


def with_origin(ds: xr.Dataset, origin: float) -> xr.Dataset:
    """The runs on calendar years: the model's time 0 is the year ``origin``.

    The time coordinate and every declared scenario event move by ``origin``; the time's
    long name becomes "Time (calendar year)" and its units "year".
    """
    import json

    def shifted(text: str) -> str:
        try:
            events = json.loads(text or "[]")
        except ValueError:
            return text
        return json.dumps([{**e, "start": float(e["start"]) + origin, "end": float(e["end"]) + origin} for e in events])

    out = ds.assign_coords(time=ds["time"].values + float(origin))
    out["time"].attrs = {**ds["time"].attrs, "long_name": "Time (calendar year)", "units": "year"}
    if "scenario_events" in out.coords:
        out = out.assign_coords(scenario_events=(out["scenario_events"].dims,
                                                 np.asarray([shifted(str(t)) for t in np.atleast_1d(out["scenario_events"].values)],
                                                            dtype=str).reshape(out["scenario_events"].shape)))
    if "scenario_events" in out.attrs:
        out.attrs = {**out.attrs, "scenario_events": shifted(str(out.attrs["scenario_events"]))}
    out.attrs = {**out.attrs, "time_origin": float(origin)}
    return out


#: Years before the crisis window that a story's outcomes are measured against.
BEFORE_YEARS = 5.0


def crossroads(ds: xr.Dataset, story: Mapping) -> go.Figure:
    """The story in one figure: the headline variable at the crossroads, annotated.

    ``story`` (a model's ``story.toml``): ``headline`` (a variable), ``against`` (the
    scenario spared the shock), ``window`` (the declared event over which outcomes are
    measured, default "crisis") and ``choices`` (scenario -> the choice it stands for).
    Each chosen scenario is drawn in its colour with the counterfactual dashed (when the
    runs hold it); the
    scenarios' events (reform, shock, crisis window) are marked; at the window's end each
    line carries its choice and its outcome: the headline's mean over the window against its
    own mean over the ``BEFORE_YEARS`` before it (the scenarios need not share a history
    before the crisis, so the counterfactual is drawn, not subtracted).
    """
    headline = str(story.get("headline") or "")
    name = _story_variable(ds, headline)
    choices = {str(k): str(v) for k, v in (story.get("choices") or {}).items()}
    present = scenario_names(ds)
    chosen = [s for s in choices if s in present]
    if not chosen:
        raise DashboardInputError(
            f"story: none of the scenarios it names ({', '.join(choices) or 'none'}) is in the runs "
            f"({', '.join(present)})")
    against = str(story.get("against") or "")
    if against not in present:
        against = ""  # the runs do not hold the counterfactual: the choices are drawn without it
    window_name = str(story.get("window") or "crisis")
    events = scenario_events(ds, chosen)
    window = next((e for e in events if e["name"] == window_name and float(e["end"]) > float(e["start"])), None)
    da = ds[name]
    time = ds["time"].values
    fig = go.Figure()
    if against:
        fig.add_trace(go.Scatter(x=time, y=_time_series(da.sel(scenario=against), "crossroads"), mode="lines",
                                 name=f"{_esc(against)} (no shock)", line={"color": "#777", "dash": "dash"},
                                 meta={"scenario": against, "variable": name}))
    outcomes = []
    for scenario in chosen:
        # The scenario's colour in every other figure (its place among the runs' scenarios).
        color = PALETTE[present.index(scenario) % len(PALETTE)]
        values = _time_series(da.sel(scenario=scenario), "crossroads")
        fig.add_trace(go.Scatter(x=time, y=values, mode="lines", name=_esc(scenario), line={"color": color, "width": 2.5},
                                 meta={"scenario": scenario, "variable": name}))
        if window is not None:
            start, stop = float(window["start"]), float(window["end"])
            inside = (time >= start) & (time <= stop)
            # Against the scenario's own level in the years before the crisis: the scenarios
            # need not share a history before it (their governments and movements differ).
            before = (time >= start - BEFORE_YEARS) & (time < start)
            mean = float(np.nanmean(values[inside]))
            base = float(np.nanmean(values[before])) if before.any() else float("nan")
            text = _esc(choices[scenario])
            if base and math.isfinite(base):
                text += (f"<br>{_esc(long_name(da, name))} over years {start:g}-{stop:g}:<br>"
                         f"{mean / base - 1:+.0%} against the {BEFORE_YEARS:g} years before")
            end = int(np.flatnonzero(inside)[-1])
            outcomes.append((float(values[end]), text, color))
    if window is not None:
        # The outcomes sit in the right margin, in the order of the lines at the window's end,
        # evenly spaced so they never overlap; a dot marks where each is measured.
        ranked = sorted(outcomes, key=lambda o: -o[0])
        for rank, (y, text, color) in enumerate(ranked):
            fig.add_trace(go.Scatter(x=[float(window["end"])], y=[y], mode="markers", showlegend=False,
                                     marker={"color": color, "size": 8}, hoverinfo="skip"))
            place = 0.92 - 0.84 * rank / max(1, len(ranked) - 1) if len(ranked) > 1 else 0.5
            fig.add_annotation(x=1.02, xref="paper", y=place, yref="paper", text=text, showarrow=False,
                               xanchor="left", align="left", font={"size": 11, "color": color})
    mark_events(fig, events)
    title = str(story.get("title") or _model_title(ds, "The crossroads"))
    fig.update_xaxes(range=[float(time[0]), float(time[-1])])
    fig.update_layout(title=_esc(title), template="plotly_white", height=520, margin={"r": 360, "t": 70},
                      xaxis_title=_time_title(ds), yaxis_title=axis_title(da, name),
                      legend={"orientation": "h", "y": -0.18})
    return fig


def _story_variable(ds: xr.Dataset, headline: str) -> str:
    """The runs' variable a story names, by Python or Vensim (long) name."""
    if headline in ds:
        return headline
    for name in ds.data_vars:
        if str(ds[name].attrs.get("long_name", "")).lower() == headline.lower():
            return str(name)
    python = "_".join(headline.lower().split())
    if python in ds:
        return python
    raise DashboardInputError(f"story: the headline variable '{headline}' is not in the runs")


def _model_title(ds: xr.Dataset, what: str) -> str:
    model = ds.attrs.get("model_name")
    return f"{what}: {model}" if model else what


def scenario_comparison(
    ds: xr.Dataset,
    variables: Sequence[str] | None = None,
    *,
    reference: str | None = None,
) -> go.Figure:
    """Scenarios side by side: each variable's trajectories, and their difference from a reference.

    Parameters
    ----------
    ds : xarray.Dataset
        A run result with a ``scenario`` dim of at least two scenarios.
    variables : list of str, optional
        Default: the first variable of each panel of :func:`sector_panels`.
    reference : str, optional
        The scenario others are compared with (default the first).
    """
    _require_dims(ds, ["scenario", "time"], "scenario comparison")
    names = scenario_names(ds)
    if len(names) < 2:
        raise DashboardInputError(f"scenario comparison needs at least two scenarios; got {names}")
    reference = names[0] if reference is None else reference
    if reference not in names:
        raise DashboardInputError(
            f"unknown reference scenario '{reference}'.{did_you_mean(reference, names)} Scenarios: {', '.join(names)}"
        )
    if variables is None:
        variables = [group[0] for group in sector_panels(ds).values()]
    variables = list(variables)
    _require(ds, variables, "scenario comparison")
    titles = []
    for name in variables:
        label = long_name(ds[name], name)
        titles += [_esc(label), _esc(f"{label}: difference from {reference}")]
    fig = make_subplots(rows=len(variables), cols=2, shared_xaxes=True, subplot_titles=titles,
                        vertical_spacing=min(0.12, 0.3 / max(1, len(variables) - 1)) if len(variables) > 1 else 0.1)
    time = ds["time"].values
    base = ds.sel(scenario=reference)
    for row, name in enumerate(variables, start=1):
        for s_index, scenario in enumerate(names):
            part = ds.sel(scenario=scenario)
            values = _time_series(part[name], "scenario comparison")
            common = {"mode": "lines", "legendgroup": _esc(scenario), "line": {"color": PALETTE[s_index % len(PALETTE)]},
                      "meta": {"scenario": scenario, "variable": name}}
            fig.add_trace(go.Scatter(x=time, y=values, name=_esc(scenario), showlegend=row == 1, **common), row=row, col=1)
            diff = values - _time_series(base[name], "scenario comparison")
            fig.add_trace(go.Scatter(x=time, y=diff, name=_esc(scenario), showlegend=False, **common), row=row, col=2)
        unit = units(ds[name])
        if unit:
            fig.update_yaxes(title_text=_esc(unit), row=row, col=1)
            fig.update_yaxes(title_text=_esc(unit), row=row, col=2)
    fig.update_xaxes(title_text=_time_title(ds), row=len(variables), col=1)
    fig.update_xaxes(title_text=_time_title(ds), row=len(variables), col=2)
    fig.update_layout(title=_esc(_model_title(ds, "Scenario comparison")), height=260 * len(variables) + 140,
                      template="plotly_white", legend={"orientation": "h", "y": -0.1})
    return fig


def phase_portrait(
    ds: xr.Dataset,
    x: str = "employment_rate",
    y: str = "wage_share",
    *,
    scenarios: Sequence[str] | None = None,
) -> go.Figure:
    """Phase portrait: one variable against another, one orbit per scenario (the Goodwin cycle).

    The first point of each orbit is marked, so the direction of travel can be read. Every
    trace carries ``meta = {"scenario": ..., "x": x, "y": y}``, and the marker of the first
    point also ``"start": True``.
    """
    _require(ds, [x, y], "phase portrait")
    fig = go.Figure()
    for s_index, (scenario, part) in enumerate(_per_scenario(ds, scenarios)):
        xs, ys = _time_series(part[x], "phase portrait"), _time_series(part[y], "phase portrait")
        color = PALETTE[s_index % len(PALETTE)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=_esc(scenario), legendgroup=_esc(scenario),
                                 line={"color": color}, meta={"scenario": scenario, "x": x, "y": y}))
        fig.add_trace(go.Scatter(x=xs[:1], y=ys[:1], mode="markers", name=_esc(f"{scenario}: start"),
                                 legendgroup=_esc(scenario), showlegend=False, marker={"color": color, "size": 9},
                                 meta={"scenario": scenario, "x": x, "y": y, "start": True}))
    fig.update_layout(
        title=_esc(f"Phase portrait: {long_name(ds[y], y)} against {long_name(ds[x], x)}"),
        xaxis_title=axis_title(ds[x], x), yaxis_title=axis_title(ds[y], y), template="plotly_white", height=480,
    )
    return fig


# --------------------------------------------------------------------------- fit

def fit_figure(fit: xr.Dataset, *, series: Sequence[str] | None = None) -> go.Figure:
    """Fitted trajectories against observed series, with uncertainty bands and the hold-out window.

    The fit Dataset (as written by the calibration layer) must have:

    - dims ``series`` and ``time``;
    - ``observed(series, time)``: the data, NaN where a series has no observation;
    - ``fitted(series, time)``: the model at the best parameters;
    - optionally ``fitted_lower(series, time)`` and ``fitted_upper(series, time)``: the
      uncertainty band (its level, e.g. 0.9, in their ``long_name`` or in the Dataset attr
      ``band_level``);
    - optionally coordinates ``long_name(series)`` and ``units(series)`` naming each series;
    - optionally attrs ``holdout_start`` (and ``holdout_end``, default the last time): the
      hold-out window, shaded.

    One subplot per series.
    """
    _require_dims(fit, ["series", "time"], "fit figure")
    _require(fit, ["observed", "fitted"], "fit figure")
    names = [str(s) for s in fit["series"].values]
    chosen = list(series) if series is not None else names
    for name in chosen:
        if name not in names:
            raise DashboardInputError(f"unknown series '{name}'.{did_you_mean(name, names)} Series: {', '.join(names)}")
    titles = []
    for name in chosen:
        label = str(fit["long_name"].sel(series=name).values) if "long_name" in fit.coords else name
        unit = str(fit["units"].sel(series=name).values) if "units" in fit.coords else ""
        title = f"{label} ({unit})" if unit else label
        r2 = fit["r2"].sel(series=name, period="fit") if "r2" in fit and "period" in fit["r2"].dims else None
        if r2 is not None and r2.ndim == 0:  # one fit (a multi-country fit has one per country)
            # What the fit achieved, where a reader looks: R2 over the fit window and, when
            # recorded, the sum of squared residuals against a straight line's.
            title += f": R² {float(r2):.2f}"
            if "one_step_r2" in fit:
                title = f"{title} open loop, {float(fit['one_step_r2'].sel(series=name, period='fit')):.2f} one step"
            trend = float(fit["ssr_ratio_to_trend"].sel(series=name)) if "ssr_ratio_to_trend" in fit else math.nan
            if np.isfinite(trend):
                title += f", {trend:.2f} of a straight line's squared error"
        titles.append(title)
    fig = make_subplots(rows=len(chosen), cols=1, shared_xaxes=False, subplot_titles=[_esc(t) for t in titles],
                        vertical_spacing=min(0.1, 0.3 / max(1, len(chosen) - 1)) if len(chosen) > 1 else 0.1)
    time = fit["time"].values
    band = "fitted_lower" in fit and "fitted_upper" in fit
    level = fit.attrs.get("band_level", fit.attrs.get("level"))
    band_name = (f"{float(level):.0%} band" if level is not None else long_name(fit["fitted_lower"], "band")) if band \
        else ""
    holdout = fit.attrs.get("holdout_start")
    # A filtered (state-space) fit: the filter's one-step-ahead predictions and their band beside the open-loop run.
    filtered = all(k in fit for k in ("predicted", "predicted_lower", "predicted_upper"))
    for row, name in enumerate(chosen, start=1):
        part = fit.sel(series=name)
        first = row == 1
        if band:
            lower = np.asarray(part["fitted_lower"].values, dtype=float)
            upper = np.asarray(part["fitted_upper"].values, dtype=float)
            fig.add_trace(go.Scatter(x=time, y=upper, mode="lines", line={"width": 0}, showlegend=False,
                                     legendgroup="band", hoverinfo="skip", meta={"series": name}), row=row, col=1)
            fig.add_trace(go.Scatter(x=time, y=lower, mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor="rgba(99,110,250,0.25)", name=_esc(band_name), legendgroup="band",
                                     showlegend=first, meta={"series": name}), row=row, col=1)
        if filtered:
            lower = np.asarray(part["predicted_lower"].values, dtype=float)
            upper = np.asarray(part["predicted_upper"].values, dtype=float)
            fig.add_trace(go.Scatter(x=time, y=upper, mode="lines", line={"width": 0}, showlegend=False,
                                     legendgroup="one-step band", hoverinfo="skip", connectgaps=True,
                                     meta={"series": name}), row=row, col=1)
            fig.add_trace(go.Scatter(x=time, y=lower, mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor="rgba(0,160,120,0.2)", connectgaps=True,
                                     name=_esc(f"{float(level or 0.95):.0%} one-step band"),
                                     legendgroup="one-step band", showlegend=first, meta={"series": name}),
                          row=row, col=1)
            fig.add_trace(go.Scatter(x=time, y=np.asarray(part["predicted"].values, dtype=float), mode="lines",
                                     name="one-step-ahead prediction (filter)", legendgroup="predicted",
                                     connectgaps=True, showlegend=first, line={"color": "rgb(0,130,100)"},
                                     meta={"series": name}), row=row, col=1)
        fig.add_trace(go.Scatter(x=time, y=np.asarray(part["fitted"].values, dtype=float), mode="lines",
                                 name=_esc(long_name(fit["fitted"], "fitted")), legendgroup="fitted",
                                 showlegend=first, line={"color": PALETTE[0], **({"dash": "dot"} if filtered else {})},
                                 meta={"series": name}), row=row, col=1)
        fig.add_trace(go.Scatter(x=time, y=np.asarray(part["observed"].values, dtype=float), mode="markers",
                                 name=_esc(long_name(fit["observed"], "observed")), legendgroup="observed",
                                 showlegend=first, marker={"color": PALETTE[1], "size": 5}, meta={"series": name}),
                       row=row, col=1)
        if holdout is not None:
            end = fit.attrs.get("holdout_end", float(time[-1]))
            # A label on the first panel only (an annotation without text would read "new text").
            label = {"annotation_text": "hold-out", "annotation_position": "top left"} if first else {}
            fig.add_vrect(x0=float(holdout), x1=float(end), fillcolor="rgba(128,128,128,0.15)", line_width=0,
                          row=row, col=1, **label)
    fig.update_xaxes(title_text=_time_title(fit), row=len(chosen), col=1)
    fig.update_layout(title="Fit against observed data", height=260 * len(chosen) + 140, template="plotly_white",
                      legend={"orientation": "h", "y": -0.12})
    return fig


def filtered_states_figure(fit: xr.Dataset, *, stocks: Sequence[str] | None = None) -> go.Figure:
    """A filtered fit's estimates of its stocks: the smoothed mean (every observation used) with its
    band, and the filtered mean (observations up to each time), one panel per stock; by default
    the stocks that receive process noise. Needs ``state_smoothed(stock, time)`` and its bounds."""
    _require(fit, ["state_smoothed", "state_smoothed_lower", "state_smoothed_upper", "state_filtered"],
             "filtered states figure")
    names = [str(s) for s in fit["stock"].values]
    if stocks is None:
        noisy = fit["process_noise"].values if "process_noise" in fit.coords else np.ones(len(names), bool)
        stocks = [n for n, flag in zip(names, noisy) if flag] or names
    for name in stocks:
        if name not in names:
            raise DashboardInputError(f"unknown stock '{name}'.{did_you_mean(name, names)} Stocks: {', '.join(names)}")
    level = fit.attrs.get("level", 0.95)
    fig = make_subplots(rows=len(stocks), cols=1, subplot_titles=[_esc(s) for s in stocks],
                        vertical_spacing=min(0.1, 0.3 / max(1, len(stocks) - 1)) if len(stocks) > 1 else 0.1)
    time = fit["time"].values
    for row, name in enumerate(stocks, start=1):
        part = fit.sel(stock=name)
        first = row == 1
        fig.add_trace(go.Scatter(x=time, y=np.asarray(part["state_smoothed_upper"].values, dtype=float), mode="lines",
                                 line={"width": 0}, showlegend=False, hoverinfo="skip", legendgroup="band",
                                 connectgaps=True), row=row, col=1)
        fig.add_trace(go.Scatter(x=time, y=np.asarray(part["state_smoothed_lower"].values, dtype=float), mode="lines",
                                 line={"width": 0}, fill="tonexty", fillcolor="rgba(99,110,250,0.25)",
                                 name=_esc(f"{float(level):.0%} smoothed band"), legendgroup="band", showlegend=first,
                                 connectgaps=True), row=row, col=1)
        fig.add_trace(go.Scatter(x=time, y=np.asarray(part["state_smoothed"].values, dtype=float), mode="lines",
                                 name="smoothed (all observations)", legendgroup="smoothed", showlegend=first,
                                 line={"color": PALETTE[0]}, connectgaps=True), row=row, col=1)
        fig.add_trace(go.Scatter(x=time, y=np.asarray(part["state_filtered"].values, dtype=float), mode="lines",
                                 name="filtered (observations so far)", legendgroup="filtered", showlegend=first,
                                 line={"color": PALETTE[1], "dash": "dot"}, connectgaps=True), row=row, col=1)
    holdout = fit.attrs.get("holdout_start")
    if holdout is not None and np.isfinite(holdout):
        for row in range(1, len(stocks) + 1):
            label = {"annotation_text": "forecast", "annotation_position": "top left"} if row == 1 else {}
            fig.add_vrect(x0=float(holdout), x1=float(fit.attrs.get("holdout_end", time[-1])),
                          fillcolor="rgba(128,128,128,0.15)", line_width=0, row=row, col=1, **label)
    fig.update_xaxes(title_text=_time_title(fit), row=len(stocks), col=1)
    fig.update_layout(title="The filter's estimate of the model's stocks", height=240 * len(stocks) + 140,
                      template="plotly_white", legend={"orientation": "h", "y": -0.12})
    return fig


# --------------------------------------------------------------------------- ensembles

def fan_chart(
    ensemble: xr.Dataset,
    variables: Sequence[str] | None = None,
    *,
    percentiles: Sequence[float] = (5, 25, 50, 75, 95),
) -> go.Figure:
    """Ensemble fan charts: percentile bands over the ``run`` dim, one subplot per variable.

    Members marked not ``ok`` (non-finite, see the ensemble contract) are left out, and the
    subplot title says how many members were kept. ``percentiles`` must be symmetric pairs
    around an optional median, e.g. (5, 25, 50, 75, 95).
    """
    _require_dims(ensemble, ["run", "time"], "fan chart")
    if variables is None:
        names = [n for n, da in ensemble.data_vars.items()
                 if set(da.dims) == {"run", "time"} and _varies(da)]
        variables = [group[0] for group in sector_panels(ensemble[names].isel(run=0)).values()] if names else []
    variables = list(variables)
    if not variables:
        raise DashboardInputError("fan chart: the ensemble has no variable along (run, time) that changes over time")
    _require(ensemble, variables, "fan chart")
    levels = sorted(float(p) for p in percentiles)
    if any(not 0 <= p <= 100 for p in levels):
        raise DashboardInputError(f"percentiles must lie in [0, 100]; got {list(percentiles)}")
    members = ensemble
    if "ok" in ensemble and ensemble["ok"].dims == ("run",):
        members = ensemble.isel(run=np.asarray(ensemble["ok"].values, dtype=bool))
    kept, total = members.sizes["run"], ensemble.sizes["run"]
    titles = [_esc(f"{long_name(ensemble[n], n)}: {kept} of {total} members") for n in variables]
    rows, cols = _grid_shape(len(variables))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_xaxes=True)
    time = ensemble["time"].values
    pairs = [(levels[i], levels[-1 - i]) for i in range(len(levels) // 2)]
    median = levels[len(levels) // 2] if len(levels) % 2 else None
    for index, name in enumerate(variables):
        row, col = _subplot_position(index, cols)
        values = np.asarray(members[name].transpose("run", "time").values, dtype=float)
        if kept == 0:
            continue
        bands = np.nanpercentile(values, levels, axis=0)
        by_level = dict(zip(levels, bands))
        for depth, (lo, hi) in enumerate(pairs):
            alpha = 0.15 + 0.2 * depth
            label = f"{lo:g}–{hi:g}th percentile"
            fig.add_trace(go.Scatter(x=time, y=by_level[hi], mode="lines", line={"width": 0}, showlegend=False,
                                     hoverinfo="skip", legendgroup=label), row=row, col=col)
            fig.add_trace(go.Scatter(x=time, y=by_level[lo], mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor=f"rgba(99,110,250,{alpha:.2f})", name=label, legendgroup=label,
                                     showlegend=index == 0), row=row, col=col)
        if median is not None:
            fig.add_trace(go.Scatter(x=time, y=by_level[median], mode="lines", line={"color": PALETTE[0]},
                                     name="median" if median == 50 else f"{median:g}th percentile",
                                     legendgroup="median", showlegend=index == 0), row=row, col=col)
        unit = units(ensemble[name])
        if unit:
            fig.update_yaxes(title_text=_esc(unit), row=row, col=col)
        if row == rows:
            fig.update_xaxes(title_text=_time_title(ensemble), row=row, col=col)
    fig.update_layout(title=_esc(_model_title(ensemble, "Ensemble")), height=320 * rows + 120,
                      template="plotly_white", legend={"orientation": "h", "y": -0.12})
    return fig


# --------------------------------------------------------------------------- sensitivity

def sensitivity_bars(ds: xr.Dataset) -> go.Figure:
    """Sobol or Morris sensitivity indices as bar charts, one row per output.

    The Dataset has a ``param`` dim (optionally one more dim, e.g. ``output``, giving one
    row each) and either Sobol indices ``S1``, ``ST`` (optional ``S1_conf``, ``ST_conf`` as
    error bars) or Morris measures ``mu_star``, ``sigma`` (optional ``mu_star_conf``).
    Parameters are sorted by ``ST`` or ``mu_star``, largest first; an optional coordinate
    ``long_name(param)`` labels them.
    """
    _require_dims(ds, ["param"], "sensitivity bars")
    if "S1" in ds and "ST" in ds:
        bars, key = [("S1", "S1_conf"), ("ST", "ST_conf")], "ST"
        what = "Sobol indices"
    elif "mu_star" in ds and "sigma" in ds:
        bars, key = [("mu_star", "mu_star_conf"), ("sigma", None)], "mu_star"
        what = "Morris screening"
    else:
        raise DashboardInputError(
            "sensitivity bars need Sobol indices (S1, ST) or Morris measures (mu_star, sigma); "
            f"the Dataset has {', '.join(map(str, ds.data_vars)) or 'no variables'}"
        )
    others = [d for d in ds[key].dims if d != "param"]
    if len(others) > 1:
        raise DashboardInputError(f"sensitivity bars: at most one dim besides 'param'; got {list(ds[key].dims)}")
    groups = [(None, ds)] if not others else [(str(v), ds.sel({others[0]: v})) for v in ds[others[0]].values]
    fig = make_subplots(rows=len(groups), cols=1, subplot_titles=[_esc(g) for g, _ in groups] if others else None)
    for row, (_, part) in enumerate(groups, start=1):
        order = np.argsort(-np.nan_to_num(np.asarray(part[key].values, dtype=float), nan=-np.inf))
        labels_source = part["long_name"] if "long_name" in part.coords and part["long_name"].dims == ("param",) else part["param"]
        labels = [_esc(v) for v in np.asarray(labels_source.values)[order]]
        for b_index, (name, conf) in enumerate(bars):
            values = np.asarray(part[name].values, dtype=float)[order]
            error = None
            if conf and conf in part:
                error = {"type": "data", "array": np.asarray(part[conf].values, dtype=float)[order]}
            fig.add_trace(go.Bar(x=labels, y=values, error_y=error, name=_esc(long_name(part[name], name)),
                                 marker={"color": PALETTE[b_index]}, showlegend=row == 1, legendgroup=name),
                          row=row, col=1)
    fig.update_layout(title=what, barmode="group", height=300 * len(groups) + 120, template="plotly_white")
    return fig


# --------------------------------------------------------------------------- loops

#: Loops drawn with their relative scores under the dominance timeline (a legend stays short).
LOOP_LINES = 6


def _flag_spans(flags: np.ndarray, time: np.ndarray, step: float) -> list[tuple[float, float]]:
    """(start, end) of each run of True flags, each save time covering ``step`` after it."""
    spans, start = [], None
    for k, flag in enumerate(np.append(flags, False)):
        if flag and start is None:
            start = k
        elif not flag and start is not None:
            spans.append((float(time[start]), float(time[k - 1]) + step))
            start = None
    return spans


def loop_dominance(ds: xr.Dataset) -> go.Figure:
    """Which loop dominates when: a timeline of the strongest loop, and the named loops' scores.

    Top: one row per named loop (and one for all other loops together), with a bar where that
    loop is the strongest (the largest |relative score|, one loop at a time, so the rows
    share out the time). Bottom: the relative scores of the named loops that explain most of
    the change (at most ``LOOP_LINES``, so the legend stays short); reinforcing loops solid,
    balancing dotted. The scenario's declared events (reform, shock, crisis window) are
    shaded on both. A Dataset from :func:`pysd_runner.analysis.loops.loop_dominance`; without
    ``strongest`` (an older file) the timeline is computed from ``relative_score``.
    """
    from plotly.subplots import make_subplots

    if "p_strongest" in ds:
        return loop_dominance_bands(ds)
    _require_dims(ds, ["time", "loop"], "loop dominance")
    _require(ds, ["relative_score"], "loop dominance")
    time = np.asarray(ds["time"].values, dtype=float)
    step = float(np.median(np.diff(time))) if time.size > 1 else 1.0
    ids = [str(v) for v in ds["loop"].values]
    names = [str(v) for v in (ds["name"].values if "name" in ds.coords else ds["loop"].values)]
    named = (np.asarray(ds["named"].values, dtype=bool) if "named" in ds.coords
             else np.ones(len(ids), dtype=bool))
    polarities = [str(v) for v in (ds["polarity"].values if "polarity" in ds.coords else [""] * len(ids))]
    score = np.asarray(ds["relative_score"].transpose("time", "loop").values, dtype=float)
    if "strongest" in ds:
        strongest = np.asarray([str(v) for v in ds["strongest"].values], dtype=object)
    else:
        magnitude = np.abs(score)
        defined = ~np.isnan(magnitude).all(axis=1)
        strongest = np.full(time.size, "", dtype=object)
        strongest[defined] = np.asarray(ids, dtype=object)[np.nanargmax(np.where(defined[:, None], magnitude, 0), axis=1)[defined]]
    named_ids = [i for i, f in zip(ids, named) if f]
    rows = [(i, names[ids.index(i)]) for i in named_ids]
    others = np.asarray([bool(v) and v not in set(named_ids) for v in strongest])
    if others.any() or not rows:
        rows.append(("", f"other loops ({len({v for v in strongest[others]})} distinct)"))
    defined_count = max(1, int(sum(1 for v in strongest if v)))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.55, 0.45], vertical_spacing=0.08,
                        subplot_titles=("Strongest loop at each time (one at a time: the rows share out the time)",
                                        "Relative loop scores of the named loops"))
    labels = []
    for index, (ident, label) in enumerate(rows):
        flags = others if ident == "" else np.asarray([v == ident for v in strongest])
        share = flags.sum() / defined_count
        text = f"{label} ({share:.0%})"
        labels.append(text)
        spans = _flag_spans(flags, time, step)
        colour = "#999999" if ident == "" else PALETTE[index % len(PALETTE)]
        fig.add_trace(go.Bar(
            y=[_esc(text)] * len(spans), x=[b - a for a, b in spans], base=[a for a, _ in spans], orientation="h",
            marker={"color": colour}, showlegend=False, name=_esc(label),
            hovertemplate=_esc(label) + ": strongest from %{base} for %{x}<extra></extra>",
            meta={"loop": ident or "other"},
        ), row=1, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=[_esc(t) for t in labels][::-1], row=1, col=1)
    strength = np.nanmean(np.abs(score), axis=0) if score.size else np.zeros(len(ids))
    drawn = sorted((j for j in range(len(ids)) if named[j] and np.isfinite(strength[j])), key=lambda j: -strength[j])
    for j in drawn[:LOOP_LINES]:
        colour = PALETTE[[i for i, _ in rows].index(ids[j]) % len(PALETTE)] if ids[j] in named_ids else "#444"
        fig.add_trace(go.Scatter(
            x=time, y=score[:, j], mode="lines", name=_esc(f"{names[j]} ({polarities[j]})" if polarities[j] else names[j]),
            line={"color": colour, "dash": "dot" if polarities[j].upper().startswith("B") else "solid", "width": 1.5},
            meta={"loop": ids[j], "polarity": polarities[j]},
        ), row=2, col=1)
    events = scenario_events(ds)
    mark_events(fig, events, row=1, col=1)
    mark_events(fig, events, row=2, col=1, label=False)
    fig.update_layout(title=_model_title(ds, "Loop dominance"), barmode="overlay", template="plotly_white",
                      height=max(480, 260 + 26 * len(rows)), legend={"orientation": "h", "y": -0.12})
    fig.update_xaxes(title_text=_time_title(ds), row=2, col=1)
    fig.update_yaxes(title_text="relative loop score", range=[-1.05, 1.05], row=2, col=1)
    return fig


def loop_dominance_bands(ds: xr.Dataset) -> go.Figure:
    """Loop dominance under uncertainty (:func:`pysd_runner.analysis.loops.loop_dominance_ensemble`).

    Top: the probability over the members that each named loop is the strongest, stacked so
    the bands fill 1 at every time (the rest is "other loops"); at most seven named loops
    get a band of their own, the others join "other loops". Bottom: the probability that
    each is in the dominant set (several at once, so these do not add up). The scenario's
    declared events are shaded.
    """
    from plotly.subplots import make_subplots

    _require_dims(ds, ["time", "category"], "loop dominance under uncertainty")
    _require(ds, ["p_strongest", "p_dominant"], "loop dominance under uncertainty")
    time = np.asarray(ds["time"].values, dtype=float)
    categories = [str(c) for c in ds["category"].values]
    names = [str(n) for n in ds["category_name"].values] if "category_name" in ds.coords else categories
    p = np.asarray(ds["p_strongest"].transpose("time", "category").values, dtype=float)
    named = [k for k, c in enumerate(categories) if c != "other"]
    ranked = sorted(named, key=lambda k: -np.nanmean(p[:, k]) if np.isfinite(p[:, k]).any() else 0)
    kept = [k for k in ranked[:7] if np.nanmax(np.nan_to_num(p[:, k])) > 0]
    rest = [k for k in range(len(categories)) if k not in kept]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.08,
                        subplot_titles=(f"Probability of being the strongest loop ({int(ds.attrs.get('members', ds.sizes.get('member', 0)))} members)",
                                        "Probability of being in the dominant set"))
    for rank, k in enumerate(kept):
        fig.add_trace(go.Scatter(
            x=time, y=p[:, k], mode="lines", stackgroup="strongest", name=_esc(names[k]), legendgroup=categories[k],
            line={"width": 0.5, "color": PALETTE[rank % len(PALETTE)]}, meta={"loop": categories[k]},
            hovertemplate=_esc(names[k]) + ": %{y:.0%}<extra></extra>",
        ), row=1, col=1)
    other = np.nansum(p[:, rest], axis=1) if rest else np.zeros(time.size)
    other[np.isnan(p).all(axis=1)] = np.nan
    fig.add_trace(go.Scatter(
        x=time, y=other, mode="lines", stackgroup="strongest", name="other loops", legendgroup="other",
        line={"width": 0.5, "color": "#bbbbbb"}, meta={"loop": "other"},
        hovertemplate="other loops: %{y:.0%}<extra></extra>",
    ), row=1, col=1)
    dominant = np.asarray(ds["p_dominant"].transpose("time", "loop").values, dtype=float)
    loops = [str(v) for v in ds["loop"].values]
    for rank, k in enumerate(kept):
        if categories[k] not in loops:
            continue
        j = loops.index(categories[k])
        fig.add_trace(go.Scatter(
            x=time, y=dominant[:, j], mode="lines", name=_esc(names[k]), legendgroup=categories[k], showlegend=False,
            line={"color": PALETTE[rank % len(PALETTE)], "width": 1.5}, meta={"loop": categories[k]},
            hovertemplate=_esc(names[k]) + " in the dominant set: %{y:.0%}<extra></extra>",
        ), row=2, col=1)
    events = scenario_events(ds)
    mark_events(fig, events, row=1, col=1)
    mark_events(fig, events, row=2, col=1, label=False)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=2, col=1)
    fig.update_xaxes(title_text=_time_title(ds), row=2, col=1)
    fig.update_layout(title=_model_title(ds, "Loop dominance under uncertainty"), template="plotly_white", height=560,
                      legend={"orientation": "h", "y": -0.12})
    return fig


# --------------------------------------------------------------------------- lever grid

def grid_levers(grid: xr.Dataset) -> list[str]:
    """The lever dims of a lever grid (see :func:`dashboards.grid.build_lever_grid`)."""
    import json

    raw = grid.attrs.get("levers")
    if raw is None:
        raise DashboardInputError("the lever grid has no 'levers' attr naming its lever dims; build it with build_lever_grid")
    try:
        levers = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        raise DashboardInputError(f"the lever grid's 'levers' attr is not a JSON list; got {raw!r}") from None
    _require_dims(grid, levers, "lever grid")
    return [str(lever) for lever in levers]


def grid_variables(grid: xr.Dataset) -> list[str]:
    levers = grid_levers(grid)
    return [str(n) for n, da in grid.data_vars.items() if "time" in da.dims and set(levers) <= set(da.dims)]


def lever_grid_figure(grid: xr.Dataset, *, scenario: str | None = None, position: Mapping[str, int] | None = None) -> go.Figure:
    """The runs of a lever grid at one grid position: one subplot per variable.

    ``position`` maps each lever dim to an index (default the middle of each). The report
    swaps the traces' y values when its sliders move; trace ``i`` shows variable ``i`` of
    :func:`grid_variables`.
    """
    levers = grid_levers(grid)
    variables = grid_variables(grid)
    if not variables:
        raise DashboardInputError("the lever grid has no variable along its levers and time")
    position = dict(position or {})
    index = {lever: int(position.get(lever, grid.sizes[lever] // 2)) for lever in levers}
    part = grid.isel(index)
    if "scenario" in grid.dims:
        part = part.sel(scenario=scenario if scenario is not None else str(grid["scenario"].values[0]))
    rows, cols = _grid_shape(len(variables))
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True,
                        subplot_titles=[_esc(long_name(grid[n], n)) for n in variables])
    for i, name in enumerate(variables):
        row, col = _subplot_position(i, cols)
        fig.add_trace(go.Scatter(x=grid["time"].values, y=_time_series(part[name], "lever grid"), mode="lines",
                                 name=_esc(long_name(grid[name], name)), line={"color": PALETTE[i % len(PALETTE)]},
                                 meta={"variable": name}, showlegend=False), row=row, col=col)
        if units(grid[name]):
            fig.update_yaxes(title_text=_esc(units(grid[name])), row=row, col=col)
        if row == rows:
            fig.update_xaxes(title_text=_time_title(grid), row=row, col=col)
    setting = ", ".join(f"{long_name(grid[lever], lever)} = {float(grid[lever].values[index[lever]]):g}" for lever in levers)
    fig.update_layout(title=_esc(setting), height=300 * rows + 100, template="plotly_white")
    return fig


# --------------------------------------------------------------------------- variable table

def variable_records(ds: xr.Dataset) -> list[dict[str, str]]:
    """One record per variable: Python name, long name, units and documentation (raw, unescaped)."""
    records = []
    for name, da in ds.data_vars.items():
        records.append({
            "name": str(name),
            "long_name": long_name(da, str(name)),
            "units": units(da),
            "documentation": " ".join(str(da.attrs.get("comment", "")).split()),
        })
    return sorted(records, key=lambda r: r["long_name"].lower())


def filter_records(records: Sequence[Mapping[str, str]], query: str = "") -> list[Mapping[str, str]]:
    """Records whose name, long name, units or documentation contain every word of ``query``."""
    words = str(query).lower().split()
    if not words:
        return list(records)
    return [r for r in records if all(w in " ".join(r.values()).lower() for w in words)]


TABLE_COLUMNS = (("long_name", "Variable"), ("name", "Python name"), ("units", "Units"), ("documentation", "Documentation"))


def variable_table(ds: xr.Dataset, query: str = "") -> go.Figure:
    """A table of the Dataset's variables with units and documentation, filtered by ``query``.

    The report adds a search box that filters the same records in the browser; the app
    filters on the server. Cell text is escaped, so documentation shows exactly as written.
    """
    rows = filter_records(variable_records(ds), query)
    columns = [[_esc(r[key]) for r in rows] for key, _ in TABLE_COLUMNS]
    fig = go.Figure(go.Table(
        header={"values": [f"<b>{title}</b>" for _, title in TABLE_COLUMNS], "align": "left", "fill_color": "#e8eaf6"},
        cells={"values": columns, "align": "left", "height": 24},
        columnwidth=[2, 2, 1, 6],
    ))
    fig.update_layout(title=f"Variables ({len(rows)})", height=min(900, 140 + 48 * max(len(rows), 1)),
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig
