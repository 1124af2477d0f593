"""The page: its layout, the figures of one run or several, and the callbacks."""

from __future__ import annotations

import base64
from html import escape as html_escape
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import figures
from ..errors import DashboardInputError
from .settings import Lever, MAX_PINS, OFF_KEY, Simulator, check_off, decode_settings, encode_settings, export_scenario, format_value, levers_of, links_of, loop_switches, validate_pins


def _static(name: str) -> str:
    """A file of the page's CSS or client-side JavaScript (dashboards/app/static/)."""
    return (Path(__file__).with_name("static") / name).read_text(encoding="utf-8")


_INDEX = """<!DOCTYPE html>
<html lang="en"><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}
<style>
{css}</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>"""
_INDEX = _INDEX.replace("{css}", _static("app.css"))


def _off_label(settings: Mapping[str, Any]) -> str:
    off = settings.get(OFF_KEY, ())
    return f"loops off: {', '.join(off)}" if off else ""


def _pin_label(levers: Sequence[Lever], pin: Mapping[str, Any], number: int) -> str:
    changed = [f"{lv.name} {format_value(pin[lv.py_name])}" for lv in levers if pin[lv.py_name] != lv.base]
    text = ", ".join(changed) if changed else "as the scenario"
    off = _off_label(pin)
    return f"pin {number}: {text}" + (f"; {off}" if off else "")


def _current_label(values: Mapping[str, Any]) -> str:
    off = _off_label(values)
    return f"current ({off})" if off else "current"


def _quick_layout(layout: dict) -> dict:
    """A figure layout that Plotly redraws faster and that looks the same for the app's figures.

    - Tick labels may overflow the plot area. Otherwise Plotly measures every label on
      every redraw, about 30 ms for the trajectories.
    - Axes do not push the margins. Plotly's default margins hold these figures' labels.
    - The template keeps its layout part and its lines (``scatter``) part. The parts for
      other trace types cost time on each redraw and change nothing here.
    """
    out = dict(layout)
    for key, axis in layout.items():
        if key.startswith(("xaxis", "yaxis")) and isinstance(axis, dict):
            out[key] = {**axis, "ticklabeloverflow": "allow", "automargin": False}
    template = layout.get("template")
    if isinstance(template, dict) and "layout" in template:
        data = template.get("data") or {}
        out["template"] = {"layout": template["layout"], **({"data": {"scatter": data["scatter"]}}
                                                            if "scatter" in data else {})}
    return out


def _array(values) -> dict:
    """Numbers in plotly.js's base64 array form (as plotly's ``to_typed_array_spec`` writes
    float arrays, without its checks of the input, which cost more than the encoding)."""
    array = np.ascontiguousarray(values, dtype="<f8")
    return {"dtype": "f8", "bdata": base64.b64encode(array.tobytes()).decode("ascii")}


class _SingleRunFigures:
    """The figures of one run, fast: built once, then only the data swapped.

    Building the subplot figure costs about 80 ms for the reformism model, more than the
    run; a slider move changes only the data, so later calls copy the first figures' JSON
    form with each trace's data taken from the new run (traces carry their variables in
    ``meta``). The results equal ``figures.trajectories(ds, panels, title="")`` and
    ``figures.phase_portrait(ds)``, with ``uirevision="levers"`` and :func:`_quick_layout`
    (a test checks it).
    """

    def __init__(self, panels, phase: bool):
        self.panels = panels
        self.phase = phase
        self.skeletons: list[dict] | None = None

    def __call__(self, ds: xr.Dataset) -> list[dict]:
        if self.skeletons is None:
            built = [figures.trajectories(ds, self.panels, title="")]
            if self.phase:
                built.append(figures.phase_portrait(ds))
            self.skeletons = [_finish(fig) for fig in built]
        out = []
        for skeleton in self.skeletons:
            data = []
            for trace in skeleton["data"]:
                meta = trace["meta"]
                if "variable" in meta:  # a trajectory
                    data.append({**trace, "y": _array(ds[meta["variable"]].values)})
                else:  # an orbit of the phase portrait, or its first point
                    points = slice(0, 1) if meta.get("start") else slice(None)
                    data.append({**trace, "x": _array(ds[meta["x"]].values[points]),
                                 "y": _array(ds[meta["y"]].values[points])})
            out.append({"data": data, "layout": skeleton["layout"]})
        return out


def _finish(fig) -> dict:
    """A figure of the app as sent to the browser: the zoom survives a redraw, and it is quick to redraw."""
    fig.update_layout(uirevision="levers")
    figure = fig.to_plotly_json()
    return {"data": figure["data"], "layout": _quick_layout(figure["layout"])}


def make_app(model, *, scenario=None, prefix="/"):
    """Build the Dash app for a model.

    Parameters
    ----------
    model : pysd_runner.CompiledModel or path
        The model (compiled with :func:`pysd_runner.compile_model` if a path).
    scenario : str or path, optional
        A scenario name under the model's ``scenarios/`` folder, or a TOML file: the
        levers start at its values, and its policies and time settings apply to every run.
    prefix : str, optional
        The path the app is served under (``crisis app`` serves it under ``/server/``, beside
        the page that runs the model in the browser: :func:`dashboards.app.make_live_app`).

    Returns
    -------
    dash.Dash
        Serve it with ``app.run(host="127.0.0.1", port=8050)`` (or ``crisis app``).

    Examples
    --------
    >>> app = make_app("models/goodwin/goodwin.mdl", scenario="baseline")  # doctest: +SKIP
    >>> app.run(host="127.0.0.1", port=8050)  # doctest: +SKIP
    """
    import dash
    from dash import ALL, Input, Output, State, ctx, dcc, html

    from pysd_runner import CompiledModel, CrisisError, compile_model, load_scenario, run

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    scen = load_scenario(scenario, model) if scenario is not None else None
    levers = levers_of(model, scen)
    base_values = {lv.py_name: lv.base for lv in levers}

    # One full run tells which variables to show; later runs compute only those.
    full = run(model, base_values, scenario=scen)
    panels = figures.sector_panels(full)
    shown = list(dict.fromkeys(v for names in panels.values() for v in names))
    phase = "employment_rate" in full and "wage_share" in full
    if phase:
        shown += [v for v in ("employment_rate", "wage_share") if v not in shown]
    simulator = Simulator(model, scenario=scen, variables=shown)
    records = figures.variable_records(full)
    switches = loop_switches(model)
    switch_ids = [sw.id for sw in switches]

    def simulate(settings: Mapping[str, Any]) -> xr.Dataset:
        values = {lv.py_name: settings[lv.py_name] for lv in levers}
        return simulator(values, knockout=links_of(switches, settings.get(OFF_KEY, ())))

    single_run_figures = _SingleRunFigures(panels, phase)

    def figures_for(values: Mapping[str, Any], pins: Sequence[Mapping[str, Any]]) -> tuple[list[dict], bool]:
        """The figures for the current run and the pinned ones, and whether they are one
        run's figures built from :class:`_SingleRunFigures` (whose traces never change)."""
        runs = [(_current_label(values), simulate(values))]
        runs += [(_pin_label(levers, pin, i), simulate(pin)) for i, pin in enumerate(pins, start=1)]
        if len(runs) == 1:
            combined = runs[0][1]
        else:
            combined = xr.concat([ds.drop_attrs(deep=False) for _, ds in runs], dim="scenario",
                                 coords="minimal", compat="override", join="override")
            combined = combined.assign_coords(scenario=[name for name, _ in runs])
            combined.attrs = runs[0][1].attrs
        # With loops switched off the current run says so, also when it is the only run shown.
        off = _off_label(values)
        if len(runs) == 1 and not off:
            return single_run_figures(combined), True
        out = [_finish(figures.trajectories(combined, panels, title=f"current run: {off}" if off else ""))]
        if phase:
            out.append(_finish(figures.phase_portrait(combined)))
        return out, False

    title = f"{model.name}{f' — {scen.name}' if scen else ''}"
    # Dash writes the title into the page as it is: escape the model and scenario names.
    app = dash.Dash(__name__, title=html_escape(f"crisis app: {title}", quote=False), update_title=None,
                    serve_locally=True, routes_pathname_prefix=prefix, requests_pathname_prefix=prefix)
    app.index_string = _INDEX

    def lever_control(lever: Lever):
        label = f"{lever.name} ({lever.units})" if lever.units else lever.name
        return html.Div(className="lever", title=lever.comment, children=[
            html.Label(label),
            dcc.Slider(
                id={"type": "lever", "name": lever.py_name}, min=lever.low, max=lever.high, step=lever.step,
                value=lever.base, marks={lever.low: format_value(lever.low), lever.high: format_value(lever.high)},
                updatemode="mouseup", tooltip={"placement": "bottom", "always_visible": False},
            ),
        ])

    initial, _ = figures_for(base_values, [])
    loop_panel = []
    if switches:
        loop_panel = [html.Div(className="card loops", children=[
            html.H2("Feedback loops"),
            html.P("Untick a loop to switch it off: the link named is held at its initial value as its target "
                   "sees it, which cuts the loop (and any other loop through that link)."),
            dcc.Checklist(id="loop-switches", options=[{"label": sw.label, "value": sw.id} for sw in switches],
                          value=list(switch_ids), labelStyle={"display": "block"}),
        ])]
    graphs = [html.Div(className="card", children=dcc.Graph(id="trajectories", figure=initial[0]))]
    if phase:
        graphs.append(html.Div(className="card", children=dcc.Graph(id="phase", figure=initial[1])))
    description = scen.description if scen is not None else ""
    app.layout = html.Div(className="page", children=[
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="pins", data=[]),
        dcc.Store(id="address"),
        dcc.Store(id="address-messages", data=[]),
        *([dcc.Store(id="phase-next")] if phase else []),
        dcc.Store(id="trajectories-next"),
        dcc.Store(id="view", data="single"),
        dcc.Download(id="download"),
        html.H1(f"crisis app: {title}"),
        html.P(description, id="scenario-description"),
        html.Div(id="message", className="message", role="alert"),
        html.Div(className="levers", children=[lever_control(lv) for lv in levers]),
        html.Div(className="buttons", children=[
            html.Button("Pin this run", id="pin", n_clicks=0),
            html.Button("Clear pins", id="clear-pins", n_clicks=0),
            html.Button("Reset levers", id="reset", n_clicks=0),
            html.Button("Export scenario TOML", id="export", n_clicks=0),
        ]),
        html.Ul(id="pin-list"),
        *loop_panel,
        *graphs,
        html.Pre(id="export-text"),
        html.H2("Variables"),
        dcc.Input(id="table-search", type="search", placeholder="Search variables, units, documentation",
                  debounce=True, style={"width": "420px", "padding": ".4rem"}),
        html.Div(className="card", children=dcc.Graph(id="variables", figure=figures.variable_table(full))),
    ])

    def switched_off(switched_on: Any) -> tuple[tuple[str, ...], list[str]]:
        """The loops a checklist value (the ids of the loops left on) switches off."""
        if not isinstance(switched_on, list):
            return (), ["loop switches: malformed values were discarded; every loop is on"]
        on, messages = check_off(switches, switched_on, "loop switches")
        return tuple(i for i in switch_ids if i not in on), messages

    def switches_on(off: Sequence[str]) -> list[str]:
        return [i for i in switch_ids if i not in off]

    def pin_items(pins):
        return [html.Li(_pin_label(levers, pin, i)) for i, pin in enumerate(pins, start=1)]

    # Two callbacks, so that a slider move stays cheap in the browser:
    # - `settings` sets the levers (and switches and pins) from the page address when the
    #   page opens, and resets them; it is the only callback that writes the 113 lever
    #   values of a big model, which costs the browser ~100 ms per call;
    # - `update` runs on every move: it validates the values, runs the model and sends
    #   back the figures, the messages and the new address (written into the page's
    #   history by a small browser-side function, so the address is an output of no
    #   callback that reads it; going back in history reloads the page at that address).
    switch_outputs = [Output("loop-switches", "value")] if switches else []

    @app.callback(
        Output({"type": "lever", "name": ALL}, "value"),
        *switch_outputs,
        Output("pins", "data"),
        Output("pin-list", "children"),
        Output("address-messages", "data"),
        Input("url", "search"),
        Input("reset", "n_clicks"),
    )
    def settings(search, _reset):
        if ctx.triggered_id == "reset":
            # The levers go back to the scenario; switches and pins stay as they are.
            return ([lv.base for lv in levers], *[dash.no_update] * len(switch_outputs),
                    dash.no_update, dash.no_update, [])
        values, pins, messages = decode_settings(levers, search, switches)
        return ([values[lv.py_name] for lv in levers],
                *([switches_on(values.get(OFF_KEY, ()))] if switches else []),
                pins, pin_items(pins), messages)

    outputs = [
        Output("address", "data"),
        Output("pins", "data", allow_duplicate=True),
        Output("pin-list", "children", allow_duplicate=True),
        Output("address-messages", "data", allow_duplicate=True),
        Output("message", "children"),
        Output("trajectories", "figure"),
        Output("trajectories-next", "data"),
        Output("view", "data"),
    ]
    if phase:
        outputs.append(Output("phase-next", "data"))
    switch_inputs = [Input("loop-switches", "value")] if switches else []

    @app.callback(
        *outputs,
        Input({"type": "lever", "name": ALL}, "value"),
        *switch_inputs,
        Input("pin", "n_clicks"),
        Input("clear-pins", "n_clicks"),
        State("pins", "data"),
        State("address-messages", "data"),
        State("address", "data"),
        State("message", "children"),
        State("view", "data"),
        prevent_initial_call=True,
    )
    def update(slider_values, *rest):
        switched_on = rest[0] if switches else None
        stored_pins, address_messages, address, shown_message, view = rest[-5:]
        trigger = ctx.triggered_id
        pins, messages = validate_pins(levers, stored_pins, switches)
        pins_changed = pins != stored_pins
        # What the address said when the page opened, shown once with this run.
        if isinstance(address_messages, list):
            messages = [str(m) for m in address_messages] + messages
        values = dict(base_values)
        if not isinstance(slider_values, list) or len(slider_values) != len(levers):
            messages.append("levers: malformed values were discarded; showing the scenario's values")
        else:
            for lever, raw in zip(levers, slider_values):
                try:
                    values[lever.py_name] = lever.check(raw, "lever")
                except DashboardInputError as exc:
                    messages.append(str(exc))
        if switches:
            off, problems = switched_off(switched_on)
            messages += problems
            if off:
                values[OFF_KEY] = off
        if trigger == "clear-pins":
            pins, pins_changed = [], True
        elif trigger == "pin":
            if len(pins) >= MAX_PINS:
                messages.append(f"At most {MAX_PINS} runs can be pinned; clear the pins to pin another.")
            elif values in pins:
                messages.append("This run is already pinned.")
            else:
                pins, pins_changed = [*pins, dict(values)], True
        try:
            figs, single = figures_for(values, pins)
        except CrisisError as exc:
            messages.append(f"{exc}; showing the scenario's values")
            values, pins, pins_changed = dict(base_values), [], True
            figs, single = figures_for(values, pins)
        # One run's figure again, where one run's figure is shown: only the new y values go
        # to the browser, which swaps them into the figure it shows (see `trajectories-next`).
        direct = single and view == "single"
        new_view = "single" if single else "full"
        new_address = encode_settings(levers, values, pins)
        text = "\n".join(messages)
        # Only what changed goes back: the browser redraws whatever it receives.
        return (new_address if new_address != address else dash.no_update,
                pins if pins_changed else dash.no_update,
                pin_items(pins) if pins_changed else dash.no_update,
                [] if address_messages else dash.no_update,
                text if text != (shown_message or "") else dash.no_update,
                dash.no_update if direct else figs[0],
                {"y": [trace["y"] for trace in figs[0]["data"]]} if direct else dash.no_update,
                new_view if new_view != view else dash.no_update,
                *figs[1:])

    if phase:
        # The phase portrait is drawn after the trajectories, the main view: in the next
        # frame, not in the same turn.
        app.clientside_callback(
            _static("phase_next.js"),
            Output("phase", "figure"),
            Input("phase-next", "data"),
            prevent_initial_call=True,
        )

    # One run's new y values into the trajectories shown (one run's figure, built from the
    # same skeleton, so only the y values differ): Plotly redraws it directly, without the
    # work of Dash's graph component on each move. While the graph is still being drawn for
    # the first time (the page has just opened), the newest values wait for it.
    app.clientside_callback(
        _static("trajectories_next.js"),
        Output("trajectories-next", "modified_timestamp"),
        Input("trajectories-next", "data"),
        prevent_initial_call=True,
    )

    # The address into the page's history (no request: this runs in the browser).
    app.clientside_callback(
        _static("address.js"),
        Output("address", "modified_timestamp"),
        Input("address", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("download", "data"),
        Output("export-text", "children"),
        Input("export", "n_clicks"),
        State({"type": "lever", "name": ALL}, "value"),
        *([State("loop-switches", "value")] if switches else []),
        prevent_initial_call=True,
    )
    def export(_clicks, slider_values, *rest):
        values: dict[str, Any] = dict(base_values)
        if isinstance(slider_values, list) and len(slider_values) == len(levers):
            for lever, raw in zip(levers, slider_values):
                try:
                    values[lever.py_name] = lever.check(raw, "lever")
                except DashboardInputError:
                    pass  # the main callback has already said so; export the scenario's value
        if switches:
            off, _ = switched_off(rest[0])  # a problem is reported by the main callback
            if off:
                values[OFF_KEY] = off
        text = export_scenario(model, levers, values, scen, switches)
        filename = f"{model.name}_{scen.name if scen else 'custom'}_app.toml"
        return dcc.send_string(text, filename), text

    @app.callback(Output("variables", "figure"), Input("table-search", "value"), prevent_initial_call=True)
    def search_table(query):
        rows = figures.filter_records(records, query if isinstance(query, str) else "")
        subset = full[[r["name"] for r in rows]] if rows else full[[]]
        return figures.variable_table(subset)

    return app
