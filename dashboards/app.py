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
- Feedback-loop switches, when the model names its loops (``loops.toml`` beside the model,
  see :mod:`pysd_runner.analysis.loops`): one per named loop; switching a loop off knocks out the
  link that cuts it (:func:`pysd_runner.cutting_link`), holding the link's source at
  its initial value as the target sees it. The address holds them too (``off=R1,B2``).
  Models without named loops get no switch.

The app binds to 127.0.0.1 unless told otherwise (``crisis app --host``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import threading
import warnings
from html import escape as html_escape
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import numpy as np
import xarray as xr

from . import figures
from .errors import DashboardInputError, did_you_mean

__all__ = ["make_app", "Simulator", "Lever", "LoopSwitch", "levers_of", "export_scenario", "loop_switches",
           "MAX_PINS", "OFF_KEY"]

#: At most this many runs can be pinned for comparison.
MAX_PINS = 4
#: Simulated settings remembered (runs are pure, so a repeated setting is not run again).
CACHE_SIZE = 64
#: Slider steps across a range when the model gives no Vensim step.
DEFAULT_STEPS_PER_RANGE = 100
#: Key of the switched-off loops (a tuple of loop ids) in a settings dict (lever values by
#: Python name); never a Python name, so it cannot clash with a lever.
OFF_KEY = "loops off"


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


@dataclass(frozen=True)
class LoopSwitch:
    """A named feedback loop the app can switch off, and the link whose knock-out does it."""

    id: str                      # the id in loops.toml, e.g. "R1"
    name: str                    # its name there, e.g. "Accumulation"
    polarity: str                # "R", "B" or "?" (found by the analysis, else as loops.toml states it)
    link: tuple[str, str]        # (source, target), Python names: pysd_runner.run(knockout=[link])
    link_names: tuple[str, str]  # the same link by Vensim names
    also: tuple[str, ...] = ()   # other named loops the same link cuts

    @property
    def label(self) -> str:
        source, target = self.link_names
        text = f"{self.id} {self.name}".strip() + f" ({self.polarity}): cut {source} \u2192 {target}"
        return text + (f" (also cuts {', '.join(self.also)})" if self.also else "")


_SWITCHES: dict[tuple, tuple[LoopSwitch, ...]] = {}
_SWITCHES_LOCK = threading.Lock()


def loop_switches(model) -> tuple[LoopSwitch, ...]:
    """The model's named feedback loops as switches, or ``()`` when it has none.

    One :class:`LoopSwitch` per loop named in the model's ``loops.toml`` (beside the model
    file) that loop analysis finds (:func:`pysd_runner.find_loops`), in the file's
    order, with the link whose knock-out cuts it and as few other loops as possible
    (:func:`pysd_runner.cutting_link`). A model without a loops.toml, or whose loops
    cannot be named (too many loops, a malformed file: a warning says why), gets ``()``, and
    the app shows no switch. Link polarities left open by the equations are not settled from
    a run (that would cost a simulation at start-up); a loop the structure leaves open shows
    the polarity loops.toml states. Cached per model file, content and loops.toml.
    """
    from pysd_runner import CompiledModel, CrisisError, compile_model
    from pysd_runner import LOOPS_FILE, cutting_link, find_loops, match_named_loops

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    path = model.source.parent / LOOPS_FILE
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError) as exc:
        warnings.warn(f"no loop switches for model '{model.name}': {path} cannot be read ({exc})", stacklevel=2)
        return ()
    if text is None:
        return ()
    key = (str(model.source), model.sha256, text)
    with _SWITCHES_LOCK:
        if key in _SWITCHES:
            return _SWITCHES[key]
        # Models with 100,000 loops take about 20 s to enumerate: the switches are kept on
        # disk beside the translated model, once per model content and loops.toml.
        digest = hashlib.sha256(f"{_SWITCHES_FORMAT}\n{model.sha256}\n{text}".encode()).hexdigest()[:16]
        stored = model.py_file.with_name(f"loop_switches_{digest}.json")
        try:
            switches = tuple(LoopSwitch(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
                             for entry in json.loads(stored.read_text()))
        except (OSError, ValueError, TypeError):
            switches = None
        if switches is not None:
            _SWITCHES[key] = switches
            return switches
        try:
            loops = find_loops(model, names=path, numeric=False)
            report = {entry["id"]: entry for entry in match_named_loops(model, loops, names=path)}
        except CrisisError as exc:
            warnings.warn(f"no loop switches for model '{model.name}': {exc}", stacklevel=2)
            switches: tuple[LoopSwitch, ...] = ()
        else:
            # cutting_link counts the loops through each link; sets of edges make that fast
            # for models with thousands of loops (the same answer as with the loops themselves).
            edges = [_EdgeSet(loop.edges) for loop in loops]
            named = [(loop, edge_set) for loop, edge_set in zip(loops, edges) if loop.name]
            links = {loop.name: tuple(cutting_link(edge_set, edges)) for loop, edge_set in named}
            found = []
            for loop, edge_set in named:
                link = links[loop.name]
                polarity = loop.polarity
                if polarity not in ("R", "B"):
                    polarity = report.get(loop.name, {}).get("stated") or polarity
                also = tuple(other.name for other, other_edges in named
                             if other is not loop and link in other_edges.edges)
                found.append(LoopSwitch(
                    id=loop.name, name=loop.title, polarity=polarity, link=link,
                    link_names=(model.elements[link[0]].name, model.elements[link[1]].name), also=also,
                ))
            switches = tuple(found)
            _store_switches(stored, switches)
        _SWITCHES[key] = switches
        return switches


#: Version of the stored loop switches (change it when LoopSwitch changes).
_SWITCHES_FORMAT = "loop-switches-1"


def _store_switches(path: Path, switches: tuple[LoopSwitch, ...]) -> None:
    """Write the switches atomically; a cache that cannot be written is only slower."""
    from pysd_runner import OutputError, atomic_write

    try:
        atomic_write(path, json.dumps([dataclasses.asdict(sw) for sw in switches]), what="loop switches cache")
    except OutputError:
        pass


class _EdgeSet:
    """A loop's links as :func:`pysd_runner.cutting_link` reads them, in cycle order,
    with constant-time membership."""

    __slots__ = ("edges",)

    def __init__(self, edges):
        self.edges = dict.fromkeys(tuple(e) for e in edges)


def _links_of(switches: Sequence[LoopSwitch], off: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The links to knock out for the switched-off loops (each once, in a fixed order)."""
    by_id = {sw.id: sw for sw in switches}
    return tuple(sorted({by_id[i].link for i in off if i in by_id}))


def _find_switch(switches: Sequence[LoopSwitch], raw: Any, where: str) -> LoopSwitch:
    key = str(raw).strip()
    for switch in switches:
        if key == switch.id or key.lower() == switch.id.lower():
            return switch
    ids = [sw.id for sw in switches]
    if not ids:
        raise DashboardInputError(f"{where}: this model has no loop switches; loop '{key}' was ignored")
    raise DashboardInputError(f"{where}: unknown loop '{key}'.{did_you_mean(key, ids)} Loops: {', '.join(ids)}")


def _ordered(switches: Sequence[LoopSwitch], ids) -> tuple[str, ...]:
    chosen = set(ids)
    return tuple(sw.id for sw in switches if sw.id in chosen)


def _check_off(switches: Sequence[LoopSwitch], raw: Any, where: str) -> tuple[tuple[str, ...], list[str]]:
    """Switched-off loop ids sent back by the browser (a list of ids): known ones, and messages."""
    if raw in (None, "", [], ()):
        return (), []
    if not isinstance(raw, (list, tuple)):
        return (), [f"{where}: malformed loop switches were discarded"]
    ids, messages = [], []
    for item in raw:
        try:
            ids.append(_find_switch(switches, item, where).id)
        except DashboardInputError as exc:
            messages.append(str(exc))
    return _ordered(switches, ids), messages


class Simulator:
    """The one place the app runs the model: settings in, a Dataset out.

    Today each call is one :func:`pysd_runner.run` (cached, since runs are pure); the
    vectorised ensemble engine can replace the no-knock-out path of :meth:`run` without
    touching the rest of the app. Runs with loops switched off (knocked-out links) go
    through :meth:`run_knockout`. Calls are serialised: the runs are CPU-bound, so threads
    gain nothing by overlapping them.
    """

    def __init__(self, model, *, scenario=None, variables: Sequence[str] | None = None):
        self.model = model
        self.scenario = scenario
        self.variables = list(variables) if variables is not None else None
        self._cache: OrderedDict[tuple, xr.Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def run(self, values: Mapping[str, float], knockout: Sequence[tuple[str, str]] = ()) -> xr.Dataset:
        """Run the model at the lever values (Python name -> value), with links knocked out."""
        if knockout:
            return self.run_knockout(values, knockout)
        # The run without knock-outs: a faster engine can replace this call.
        from pysd_runner import run

        return run(self.model, dict(values), scenario=self.scenario, variables=self.variables)

    def run_knockout(self, values: Mapping[str, float], knockout: Sequence[tuple[str, str]]) -> xr.Dataset:
        """Run with each ``(source, target)`` link's source held at its initial value as the target sees it."""
        from pysd_runner import run

        return run(self.model, dict(values), scenario=self.scenario, variables=self.variables,
                   knockout=[tuple(link) for link in knockout])

    def __call__(self, values: Mapping[str, float], knockout: Sequence[tuple[str, str]] = ()) -> xr.Dataset:
        links = tuple(sorted({(str(s), str(t)) for s, t in knockout}))
        key = (tuple(sorted((k, float(v)) for k, v in values.items())), links)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            result = self.run(values, knockout=links) if links else self.run(values)
            self._cache[key] = result
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return result


# --------------------------------------------------------------------------- settings <-> address

def _format(value: float) -> str:
    return f"{value:.10g}"


def encode_settings(levers: Sequence[Lever], values: Mapping[str, Any], pins: Sequence[Mapping[str, Any]]) -> str:
    """The page address query for lever values, switched-off loops and pinned runs (only
    what differs from the base): ``?phillips_slope=1.4&off=R1,B2&pin=phillips_slope:1.6,off:R1``."""
    pairs = [(lv.py_name, _format(values[lv.py_name])) for lv in levers if values[lv.py_name] != lv.base]
    if values.get(OFF_KEY):
        pairs.append(("off", ",".join(values[OFF_KEY])))
    for pin in pins:
        changed = [f"{lv.py_name}:{_format(pin[lv.py_name])}" for lv in levers if pin[lv.py_name] != lv.base]
        changed += [f"off:{ident}" for ident in pin.get(OFF_KEY, ())]
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


def decode_settings(levers: Sequence[Lever], search: str | None, switches: Sequence[LoopSwitch] = ()
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Lever values and pins from the page address, with a message for every rejected part.

    Switched-off loops (``off=R1,B2``, and ``off:R1`` items of a pinned run) are checked
    against ``switches`` and kept under :data:`OFF_KEY` as a tuple of loop ids, only when
    there are some.
    """
    values: dict[str, Any] = {lv.py_name: lv.base for lv in levers}
    off: list[str] = []
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
            pin: dict[str, Any] = {lv.py_name: lv.base for lv in levers}
            pin_off: list[str] = []
            try:
                for item in filter(None, raw.split(",")):
                    name, sep, number = item.partition(":")
                    if not sep:
                        raise DashboardInputError(f"address: a pinned run is written name:value,name:value; got {raw!r}")
                    if name.strip() == "off":
                        pin_off.append(_find_switch(switches, number, "address (pinned run)").id)
                        continue
                    lever = _find_lever(levers, name, "address (pinned run)")
                    pin[lever.py_name] = lever.check(number, "address (pinned run)")
            except DashboardInputError as exc:
                messages.append(f"{exc}; that pinned run was left out")
                continue
            if pin_off:
                pin[OFF_KEY] = _ordered(switches, pin_off)
            pins.append(pin)
            continue
        if key == "off":
            for item in filter(None, (part.strip() for part in raw.split(","))):
                try:
                    off.append(_find_switch(switches, item, "address").id)
                except DashboardInputError as exc:
                    messages.append(str(exc))
            continue
        try:
            lever = _find_lever(levers, key, "address")
            values[lever.py_name] = lever.check(raw, "address")
        except DashboardInputError as exc:
            messages.append(str(exc))
    if off:
        values[OFF_KEY] = _ordered(switches, off)
    return values, pins, messages


def _validate_pins(levers: Sequence[Lever], stored: Any, switches: Sequence[LoopSwitch] = ()
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Pinned runs sent back by the browser: trust nothing."""
    if not isinstance(stored, list):
        return [], [] if stored in (None, "") else ["pinned runs: malformed data was discarded"]
    pins, messages = [], []
    for item in stored[:MAX_PINS]:
        if not isinstance(item, dict):
            messages.append("pinned runs: a malformed entry was discarded")
            continue
        try:
            pin: dict[str, Any] = {lv.py_name: lv.check(item.get(lv.py_name, lv.base), "pinned run") for lv in levers}
        except DashboardInputError as exc:
            messages.append(f"{exc}; that pinned run was discarded")
            continue
        off, problems = _check_off(switches, item.get(OFF_KEY), "pinned run")
        if problems:
            messages += [f"{p}; that pinned run was discarded" for p in problems]
            continue
        if off:
            pin[OFF_KEY] = off
        pins.append(pin)
    return pins, messages


# --------------------------------------------------------------------------- export

def export_scenario(model, levers: Sequence[Lever], values: Mapping[str, Any], scenario=None,
                    switches: Sequence[LoopSwitch] = ()) -> str:
    """The current settings as a scenario TOML file (see :mod:`pysd_runner.scenarios`).

    Holds the scenario's own parameters, policies and time settings, with every lever
    that differs from the model's default value; loading it with
    :func:`pysd_runner.load_scenario` and running it reproduces the app's current run.
    Switched-off loops (``values[OFF_KEY]``) are listed in comments at the top, with the
    links to knock out: a scenario file cannot hold knock-outs, so a run of the file
    reproduces the app's run only with ``run(..., knockout=[...])`` as the comment says.
    """
    from pysd_runner import scenario_toml

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
    comments = []
    by_id = {sw.id: sw for sw in switches}
    off = [by_id[i] for i in values.get(OFF_KEY, ()) if i in by_id]
    if off:
        links = ", ".join(f"({sw.link[0]!r}, {sw.link[1]!r})" for sw in off)
        comments.append("Loops switched off in the app (knock-outs, which a scenario file cannot hold):")
        comments += [f"  {sw.label}" for sw in off]
        comments.append(f"To reproduce the app's run: pysd_runner.run(model, scenario=<this file>, knockout=[{links}])")
    return scenario_toml(f"Exported from the crisis app for model {model.name}{based_on}.", params,
                         policies=scenario.policies if scenario is not None else None,
                         time=scenario.time if scenario is not None else None, comments=comments)


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


def _off_label(settings: Mapping[str, Any]) -> str:
    off = settings.get(OFF_KEY, ())
    return f"loops off: {', '.join(off)}" if off else ""


def _pin_label(levers: Sequence[Lever], pin: Mapping[str, Any], number: int) -> str:
    changed = [f"{lv.name} {_format(pin[lv.py_name])}" for lv in levers if pin[lv.py_name] != lv.base]
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
    switches = loop_switches(model)
    switch_ids = [sw.id for sw in switches]

    def simulate(settings: Mapping[str, Any]) -> xr.Dataset:
        values = {lv.py_name: settings[lv.py_name] for lv in levers}
        return simulator(values, knockout=_links_of(switches, settings.get(OFF_KEY, ())))

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
        on, messages = _check_off(switches, switched_on, "loop switches")
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
        pins, messages = _validate_pins(levers, stored_pins, switches)
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
            """function (figure) {
                return new Promise(function (resolve) {
                    window.requestAnimationFrame(function () { setTimeout(function () { resolve(figure); }, 0); });
                });
            }""",
            Output("phase", "figure"),
            Input("phase-next", "data"),
            prevent_initial_call=True,
        )

    # One run's new y values into the trajectories shown (one run's figure, built from the
    # same skeleton, so only the y values differ): Plotly redraws it directly, without the
    # work of Dash's graph component on each move. While the graph is still being drawn for
    # the first time (the page has just opened), the newest values wait for it.
    app.clientside_callback(
        """function (next) {
            window.__crisisNext = next;
            if (!window.__crisisWaiting) {
                window.__crisisWaiting = true;
                var frames = 0;
                var apply = function () {
                    var gd = document.querySelector("#trajectories .js-plotly-plot");
                    if (!(gd && gd.data && gd._fullLayout) && frames++ < 1200) {
                        window.requestAnimationFrame(apply);
                        return;
                    }
                    window.__crisisWaiting = false;
                    var latest = window.__crisisNext;
                    if (gd && latest && latest.y && gd.data.length === latest.y.length) {
                        var data = gd.data.map(function (trace, i) {
                            return Object.assign({}, trace, {y: latest.y[i]});
                        });
                        window.Plotly.react(gd, data, gd.layout);
                    }
                };
                apply();
            }
            return window.dash_clientside.no_update;
        }""",
        Output("trajectories-next", "modified_timestamp"),
        Input("trajectories-next", "data"),
        prevent_initial_call=True,
    )

    # The address into the page's history (no request: this runs in the browser).
    app.clientside_callback(
        """function (search) {
            if (!window.__crisisHistory) {
                window.__crisisHistory = true;
                window.addEventListener("popstate", function () { window.location.reload(); });
            }
            if (typeof search === "string" && search !== window.location.search) {
                window.history.pushState(null, "", window.location.pathname + search);
            }
            return window.dash_clientside.no_update;
        }""",
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
