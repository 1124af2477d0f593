"""A live Dash app for teachers: move a lever, the model runs again, the figures redraw.

- A slider for every constant with a Vensim range ``[min, max]`` (the model's levers),
  starting at the scenario's value (or the model's default).
- Every move re-simulates through :class:`Simulator`, the one place the app runs the
  model (today :func:`pysd_runner.run`; a vectorised engine can replace it there).
- Pin up to :data:`MAX_PINS` runs to compare with; reset the levers; export the current
  settings as a scenario TOML file (the format of :mod:`pysd_runner.scenarios`).
- The page address holds the settings (``?phillips_slope=1.4&pin=phillips_slope:1.6``),
  so a link reproduces the view.
- Every input is validated on the server: values from the sliders, the address and the
  pinned runs. A malformed or out-of-range value is rejected with a visible message and
  the lever keeps its scenario value; the app keeps running.
- Feedback-loop knock-out switches: see :func:`loop_switches` (a hook, empty until loop
  analysis exists; the app shows no switch that would do nothing).

The app binds to 127.0.0.1 unless told otherwise (``crisis app --host``).
"""

from __future__ import annotations

import json
import math
import threading
from html import escape as html_escape
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import xarray as xr

from . import figures
from .errors import DashboardInputError, did_you_mean

__all__ = ["make_app", "Simulator", "Lever", "levers_of", "export_scenario", "loop_switches", "MAX_PINS"]

#: At most this many runs can be pinned for comparison.
MAX_PINS = 4
#: Simulated settings remembered (runs are pure, so a repeated setting is not run again).
CACHE_SIZE = 64
#: Slider steps across a range when the model gives no Vensim step.
DEFAULT_STEPS_PER_RANGE = 100


@dataclass(frozen=True)
class Lever:
    """A constant the app offers as a slider."""

    name: str
    py_name: str
    units: str
    comment: str
    low: float
    high: float
    step: float
    base: float  # the value in the scenario, or the model's default

    def check(self, raw: Any, where: str) -> float:
        """The value as a float within the range, or :class:`DashboardInputError` saying why not."""
        if isinstance(raw, bool) or raw is None:
            raise DashboardInputError(f"{where}: '{self.name}' must be a number; got {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise DashboardInputError(f"{where}: '{self.name}' must be a number; got {raw!r}") from None
        if not math.isfinite(value):
            raise DashboardInputError(f"{where}: '{self.name}' must be finite; got {raw!r}")
        if not self.low <= value <= self.high:
            raise DashboardInputError(
                f"{where}: {value:g} for '{self.name}' is outside its range [{self.low:g}, {self.high:g}]; "
                f"kept {self.base:g}"
            )
        return value


def levers_of(model, scenario=None) -> list[Lever]:
    """The model's constants with a finite Vensim range, at the scenario's values.

    Constants the scenario sets over time (a policy) are not offered: a slider would hide
    the policy.
    """
    base = {}
    policies = set()
    if scenario is not None:
        for name, value in scenario.params.items():
            base[model.resolve(name, kinds=("constant",), role="parameter").py_name] = float(value)
        for name in scenario.policies:
            policies.add(model.resolve(name, kinds=("constant",), role="parameter").py_name)
    levers = []
    for element in sorted(model.constants, key=lambda e: e.name.lower()):
        low, high = element.limits
        if low is None or high is None or element.default is None or element.py_name in policies:
            continue
        if not high > low:
            continue
        step = element.step if element.step and element.step > 0 else (high - low) / DEFAULT_STEPS_PER_RANGE
        value = base.get(element.py_name, element.default)
        levers.append(Lever(element.name, element.py_name, element.units, element.comment,
                            float(low), float(high), float(step), float(value)))
    return levers


def loop_switches(model) -> tuple:
    """Feedback loops the app could switch off: none until loop analysis exists.

    Hook for issue 7 (loop analysis). When pysd_runner can name a model's loops (from
    ``models/<name>/loops.toml`` or its own enumeration) and run with a loop's link held
    at a fixed value (a knock-out), return one ``(loop id, name, polarity)`` per loop
    here, add a ``dcc.Checklist`` of them to the layout in :func:`make_app`, and pass the
    switched-off loops to :class:`Simulator`. While this returns nothing the app shows
    no switch, rather than one that does nothing.
    """
    return ()


class Simulator:
    """The one place the app runs the model: settings in, a Dataset out.

    Today each call is one :func:`pysd_runner.run` (cached, since runs are pure); the
    vectorised ensemble engine can replace the body of :meth:`run` without touching the
    rest of the app. Calls are serialised: the runs are CPU-bound, so threads gain
    nothing by overlapping them.
    """

    def __init__(self, model, *, scenario=None, variables: Sequence[str] | None = None):
        self.model = model
        self.scenario = scenario
        self.variables = list(variables) if variables is not None else None
        self._cache: OrderedDict[tuple, xr.Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def run(self, values: Mapping[str, float]) -> xr.Dataset:
        """Run the model at the lever values (Python name -> value)."""
        from pysd_runner import run

        return run(self.model, dict(values), scenario=self.scenario, variables=self.variables)

    def __call__(self, values: Mapping[str, float]) -> xr.Dataset:
        key = tuple(sorted((k, float(v)) for k, v in values.items()))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            result = self.run(values)
            self._cache[key] = result
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return result


# --------------------------------------------------------------------------- settings <-> address

def _format(value: float) -> str:
    return f"{value:.10g}"


def encode_settings(levers: Sequence[Lever], values: Mapping[str, float], pins: Sequence[Mapping[str, float]]) -> str:
    """The page address query for lever values and pinned runs (only what differs from the base)."""
    pairs = [(lv.py_name, _format(values[lv.py_name])) for lv in levers if values[lv.py_name] != lv.base]
    for pin in pins:
        changed = [f"{lv.py_name}:{_format(pin[lv.py_name])}" for lv in levers if pin[lv.py_name] != lv.base]
        pairs.append(("pin", ",".join(changed)))
    return "?" + urlencode(pairs, quote_via=quote, safe=":,") if pairs else ""


def _find_lever(levers: Sequence[Lever], name: str, where: str) -> Lever:
    key = name.strip()
    for lever in levers:
        if key in (lever.py_name, lever.name) or key.lower().replace(" ", "_") == lever.py_name:
            return lever
    names = [lv.py_name for lv in levers]
    raise DashboardInputError(
        f"{where}: unknown lever '{key}'.{did_you_mean(key, names)} Levers: {', '.join(names)}"
    )


def decode_settings(levers: Sequence[Lever], search: str | None) -> tuple[dict[str, float], list[dict[str, float]], list[str]]:
    """Lever values and pins from the page address, with a message for every rejected part."""
    values = {lv.py_name: lv.base for lv in levers}
    pins: list[dict[str, float]] = []
    messages: list[str] = []
    if not search:
        return values, pins, messages
    text = str(search)
    if text.startswith("?"):
        text = text[1:]
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except ValueError as exc:
        return values, pins, [f"address: could not read the settings ({exc}); showing the scenario's values"]
    for key, raw in pairs:
        if key == "pin":
            if len(pins) >= MAX_PINS:
                messages.append(f"address: at most {MAX_PINS} pinned runs; the others were left out")
                continue
            pin = {lv.py_name: lv.base for lv in levers}
            try:
                for item in filter(None, raw.split(",")):
                    name, sep, number = item.partition(":")
                    if not sep:
                        raise DashboardInputError(f"address: a pinned run is written name:value,name:value; got {raw!r}")
                    lever = _find_lever(levers, name, "address (pinned run)")
                    pin[lever.py_name] = lever.check(number, "address (pinned run)")
            except DashboardInputError as exc:
                messages.append(f"{exc}; that pinned run was left out")
                continue
            pins.append(pin)
            continue
        try:
            lever = _find_lever(levers, key, "address")
            values[lever.py_name] = lever.check(raw, "address")
        except DashboardInputError as exc:
            messages.append(str(exc))
    return values, pins, messages


def _validate_pins(levers: Sequence[Lever], stored: Any) -> tuple[list[dict[str, float]], list[str]]:
    """Pinned runs sent back by the browser: trust nothing."""
    if not isinstance(stored, list):
        return [], [] if stored in (None, "") else ["pinned runs: malformed data was discarded"]
    pins, messages = [], []
    for item in stored[:MAX_PINS]:
        if not isinstance(item, dict):
            messages.append("pinned runs: a malformed entry was discarded")
            continue
        try:
            pins.append({lv.py_name: lv.check(item.get(lv.py_name, lv.base), "pinned run") for lv in levers})
        except DashboardInputError as exc:
            messages.append(f"{exc}; that pinned run was discarded")
    return pins, messages


# --------------------------------------------------------------------------- export

def _toml_string(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(text), ensure_ascii=False)


def export_scenario(model, levers: Sequence[Lever], values: Mapping[str, float], scenario=None) -> str:
    """The current settings as a scenario TOML file (see :mod:`pysd_runner.scenarios`).

    Holds the scenario's own parameters, policies and time settings, with every lever
    that differs from the model's default value; loading it with
    :func:`pysd_runner.load_scenario` and running it reproduces the app's current run.
    """
    defaults = {e.py_name: e.default for e in model.constants}
    by_py = {lv.py_name: lv for lv in levers}
    params: dict[str, float] = {}
    if scenario is not None:
        for name, value in scenario.params.items():
            element = model.resolve(name, kinds=("constant",), role="parameter")
            if element.py_name not in by_py:
                params[element.name] = float(value)
    for lever in levers:
        value = float(values[lever.py_name])
        if value != defaults.get(lever.py_name):
            params[lever.name] = value
    based_on = f", starting from scenario '{scenario.name}'" if scenario is not None else ""
    lines = [f"description = {_toml_string(f'Exported from the crisis app for model {model.name}{based_on}.')}", ""]
    lines.append("[params]")
    lines += [f"{_toml_string(name)} = {value!r}" for name, value in params.items()]
    if scenario is not None and scenario.policies:
        lines += ["", "[policies]"]
        for name, (times, vals) in scenario.policies.items():
            lines.append(f"{_toml_string(name)} = {{ time = {list(times)!r}, value = {list(vals)!r} }}")
    if scenario is not None and scenario.time:
        lines += ["", "[time]"]
        lines += [f"{key} = {value!r}" for key, value in scenario.time.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the app

_INDEX = """<!DOCTYPE html>
<html lang="en"><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2430;background:#f6f7fb}
.page{max-width:1300px;margin:0 auto;padding:1rem 2rem}
.levers{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:.6rem 2rem;background:#fff;
        padding:1rem;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.lever label{font-weight:600;font-size:.9rem}
.buttons button{margin:.8rem .6rem .8rem 0;padding:.4rem .9rem;font-size:.95rem}
.message{color:#b00020;min-height:1.3em;white-space:pre-line}
.message:empty{display:none}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin:1rem 0;padding:.5rem}
pre{background:#fff;padding:.8rem;border-radius:6px;overflow:auto}
pre:empty{display:none}
</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>"""


def _pin_label(levers: Sequence[Lever], pin: Mapping[str, float], number: int) -> str:
    changed = [f"{lv.name} {_format(pin[lv.py_name])}" for lv in levers if pin[lv.py_name] != lv.base]
    return f"pin {number}: " + (", ".join(changed) if changed else "as the scenario")


def make_app(model, *, scenario=None):
    """Build the Dash app for a model.

    Parameters
    ----------
    model : pysd_runner.CompiledModel or path
        The model (compiled with :func:`pysd_runner.compile_model` if a path).
    scenario : str or path, optional
        A scenario name under the model's ``scenarios/`` folder, or a TOML file: the
        levers start at its values, and its policies and time settings apply to every run.

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

    def figures_for(values: Mapping[str, float], pins: Sequence[Mapping[str, float]]):
        runs = [("current", simulator(values))]
        runs += [(_pin_label(levers, pin, i), simulator(pin)) for i, pin in enumerate(pins, start=1)]
        if len(runs) == 1:
            combined = runs[0][1]
        else:
            combined = xr.concat([ds.drop_attrs(deep=False) for _, ds in runs], dim="scenario",
                                 coords="minimal", compat="override", join="override")
            combined = combined.assign_coords(scenario=[name for name, _ in runs])
            combined.attrs = runs[0][1].attrs
        trajectories = figures.trajectories(combined, panels, title="")
        trajectories.update_layout(uirevision="levers")
        out = [trajectories]
        if phase:
            portrait = figures.phase_portrait(combined)
            portrait.update_layout(uirevision="levers")
            out.append(portrait)
        return out

    title = f"{model.name}{f' — {scen.name}' if scen else ''}"
    # Dash writes the title into the page as it is: escape the model and scenario names.
    app = dash.Dash(__name__, title=html_escape(f"crisis app: {title}", quote=False), update_title=None,
                    serve_locally=True)
    app.index_string = _INDEX

    def lever_control(lever: Lever):
        label = f"{lever.name} ({lever.units})" if lever.units else lever.name
        return html.Div(className="lever", title=lever.comment, children=[
            html.Label(label),
            dcc.Slider(
                id={"type": "lever", "name": lever.py_name}, min=lever.low, max=lever.high, step=lever.step,
                value=lever.base, marks={lever.low: _format(lever.low), lever.high: _format(lever.high)},
                updatemode="mouseup", tooltip={"placement": "bottom", "always_visible": False},
            ),
        ])

    initial = figures_for(base_values, [])
    graphs = [html.Div(className="card", children=dcc.Graph(id="trajectories", figure=initial[0]))]
    if phase:
        graphs.append(html.Div(className="card", children=dcc.Graph(id="phase", figure=initial[1])))
    description = scen.description if scen is not None else ""
    app.layout = html.Div(className="page", children=[
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="pins", data=[]),
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
        *graphs,
        html.Pre(id="export-text"),
        html.H2("Variables"),
        dcc.Input(id="table-search", type="search", placeholder="Search variables, units, documentation",
                  debounce=True, style={"width": "420px", "padding": ".4rem"}),
        html.Div(className="card", children=dcc.Graph(id="variables", figure=figures.variable_table(full))),
    ])

    outputs = [
        Output({"type": "lever", "name": ALL}, "value"),
        Output("url", "search"),
        Output("pins", "data"),
        Output("message", "children"),
        Output("pin-list", "children"),
        Output("trajectories", "figure"),
    ]
    if phase:
        outputs.append(Output("phase", "figure"))

    @app.callback(
        *outputs,
        Input("url", "search"),
        Input({"type": "lever", "name": ALL}, "value"),
        Input("reset", "n_clicks"),
        Input("pin", "n_clicks"),
        Input("clear-pins", "n_clicks"),
        State("pins", "data"),
    )
    def update(search, slider_values, _reset, _pin, _clear, stored_pins):
        trigger = ctx.triggered_id
        messages: list[str] = []
        if trigger is None or trigger == "url":
            values, pins, messages = decode_settings(levers, search)
        else:
            pins, messages = _validate_pins(levers, stored_pins)
            values = dict(base_values)
            if not isinstance(slider_values, list) or len(slider_values) != len(levers):
                messages.append("levers: malformed values were discarded; showing the scenario's values")
            else:
                for lever, raw in zip(levers, slider_values):
                    try:
                        values[lever.py_name] = lever.check(raw, "lever")
                    except DashboardInputError as exc:
                        messages.append(str(exc))
            if trigger == "reset":
                values = dict(base_values)
            elif trigger == "clear-pins":
                pins = []
            elif trigger == "pin":
                if len(pins) >= MAX_PINS:
                    messages.append(f"At most {MAX_PINS} runs can be pinned; clear the pins to pin another.")
                elif values in pins:
                    messages.append("This run is already pinned.")
                else:
                    pins.append(dict(values))
        try:
            figs = figures_for(values, pins)
        except CrisisError as exc:
            messages.append(f"{exc}; showing the scenario's values")
            values, pins = dict(base_values), []
            figs = figures_for(values, pins)
        new_search = encode_settings(levers, values, pins)
        pin_items = [html.Li(_pin_label(levers, pin, i)) for i, pin in enumerate(pins, start=1)]
        return ([values[lv.py_name] for lv in levers],
                new_search if new_search != (search or "") else dash.no_update,
                pins, "\n".join(messages), pin_items, *figs)

    @app.callback(
        Output("download", "data"),
        Output("export-text", "children"),
        Input("export", "n_clicks"),
        State({"type": "lever", "name": ALL}, "value"),
        prevent_initial_call=True,
    )
    def export(_clicks, slider_values):
        values = dict(base_values)
        if isinstance(slider_values, list) and len(slider_values) == len(levers):
            for lever, raw in zip(levers, slider_values):
                try:
                    values[lever.py_name] = lever.check(raw, "lever")
                except DashboardInputError:
                    pass  # the main callback has already said so; export the scenario's value
        text = export_scenario(model, levers, values, scen)
        filename = f"{model.name}_{scen.name if scen else 'custom'}_app.toml"
        return dcc.send_string(text, filename), text

    @app.callback(Output("variables", "figure"), Input("table-search", "value"), prevent_initial_call=True)
    def search_table(query):
        rows = figures.filter_records(records, query if isinstance(query, str) else "")
        subset = full[[r["name"] for r in rows]] if rows else full[[]]
        return figures.variable_table(subset)

    return app
