"""The app's state: levers, loop switches, the simulator, settings in the address and pins,
and the export of the settings as a scenario file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import xarray as xr

from ..errors import DashboardInputError, did_you_mean

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


def links_of(switches: Sequence[LoopSwitch], off: Sequence[str]) -> tuple[tuple[str, str], ...]:
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


def check_off(switches: Sequence[LoopSwitch], raw: Any, where: str) -> tuple[tuple[str, ...], list[str]]:
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
        # The run without knock-outs (run picks the compiled kernel when the model allows it).
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

def format_value(value: float) -> str:
    return f"{value:.10g}"


def encode_settings(levers: Sequence[Lever], values: Mapping[str, Any], pins: Sequence[Mapping[str, Any]]) -> str:
    """The page address query for lever values, switched-off loops and pinned runs (only
    what differs from the base): ``?phillips_slope=1.4&off=R1,B2&pin=phillips_slope:1.6,off:R1``."""
    pairs = [(lv.py_name, format_value(values[lv.py_name])) for lv in levers if values[lv.py_name] != lv.base]
    if values.get(OFF_KEY):
        pairs.append(("off", ",".join(values[OFF_KEY])))
    for pin in pins:
        changed = [f"{lv.py_name}:{format_value(pin[lv.py_name])}" for lv in levers if pin[lv.py_name] != lv.base]
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


def validate_pins(levers: Sequence[Lever], stored: Any, switches: Sequence[LoopSwitch] = ()
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
        off, problems = check_off(switches, item.get(OFF_KEY), "pinned run")
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
