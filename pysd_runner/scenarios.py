"""Scenario files: a readable TOML description of one experiment on a model.

Format (``models/<name>/scenarios/<scenario>.toml``)::

    description = "What is assumed and what to look for."

    [params]                  # constants, by Vensim or Python name
    "phillips slope" = 0.6

    [policies]                # optional: time-varying values, interpolated linearly
    "tax rate on profits" = { time = [0, 40, 41], value = [0.2, 0.2, 0.35] }

    [time]                    # optional: overrides the model's time settings
    final_time = 100
    time_step = 0.01
    saveper = 0.1
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ScenarioError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import CompiledModel

__all__ = ["Scenario", "Event", "load_scenario", "list_scenarios", "chosen_scenarios", "events_json"]

TOP_LEVEL_KEYS = ("description", "params", "policies", "time", "events")
EVENT_KEYS = ("at", "from", "to", "label")
TIME_KEYS = ("final_time", "time_step", "saveper")


@dataclass(frozen=True)
class Event:
    """A moment (``start == end``) or a window the scenario declares: a reform, a shock, a crisis
    window. Figures mark them, and analyses (stylized facts, summaries) can read them by name."""

    name: str
    start: float
    end: float
    label: str = ""

    @property
    def is_window(self) -> bool:
        return self.end > self.start

    def as_dict(self) -> dict:
        return {"name": self.name, "start": self.start, "end": self.end, "label": self.label}


def events_json(events) -> str:
    """Events as the JSON text results carry (a list of {name, start, end, label})."""
    import json

    return json.dumps([e.as_dict() for e in events])


@dataclass(frozen=True)
class Scenario:
    """A named set of parameter values, time-varying policies and time settings."""

    name: str
    description: str = ""
    params: dict[str, float] = field(default_factory=dict)
    policies: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    time: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    events: tuple[Event, ...] = ()

    def event(self, name: str) -> Event | None:
        """The declared event of that name, or None."""
        return next((e for e in self.events if e.name == name), None)


def list_scenarios(model: "CompiledModel") -> list[str]:
    """Names of the scenario files in the model's ``scenarios/`` folder."""
    folder = model.scenario_dir
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def chosen_scenarios(model: "CompiledModel", names, all_scenarios: bool) -> list[str]:
    """The scenarios a command was given, or every one in the model's folder with ``all_scenarios``."""
    if not all_scenarios:
        return list(names)
    found = list_scenarios(model)
    if not found:
        raise ScenarioError(f"model '{model.source.name}' has no scenarios in {model.scenario_dir}")
    return found


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ScenarioError(f"{where} must be finite; got {value!r}")
    return value


def load_scenario(ref: "str | os.PathLike | Scenario", model: "CompiledModel | None" = None) -> Scenario:
    """Read a scenario by name (under the model's ``scenarios/`` folder) or by path.

    Parameters
    ----------
    ref : str, path-like or Scenario
        A scenario name such as ``"baseline"`` (needs ``model``) or a path to a TOML file.
    model : CompiledModel, optional
        The model whose ``scenarios/`` folder holds named scenarios.

    Raises
    ------
    ScenarioError
        Unknown name (with close matches), unreadable TOML (with the line), unknown keys
        or values of the wrong type. Parameter names are checked against the model by
        :func:`pysd_runner.run`.
    """
    if isinstance(ref, Scenario):
        return ref
    text_ref = str(ref)
    candidate = Path(text_ref).expanduser()
    looks_like_path = candidate.suffix == ".toml" or os.sep in text_ref or candidate.is_file()
    if looks_like_path:
        path = candidate
        if not path.is_file():
            raise ScenarioError(f"scenario file '{path}' does not exist")
    else:
        if model is None:
            raise ScenarioError(
                f"scenario '{text_ref}' is a name, which needs a model to look it up; give a path to a .toml file"
            )
        path = model.scenario_dir / f"{text_ref}.toml"
        if not path.is_file():
            known = list_scenarios(model)
            listed = ", ".join(known) if known else "none"
            raise ScenarioError(
                f"unknown scenario '{text_ref}' for model '{model.source.name}'."
                f"{did_you_mean(text_ref, known)} Available scenarios: {listed} "
                f"(files in {model.scenario_dir})"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario file '{path}' is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"scenario file '{path}' is not UTF-8 text: {exc}") from None
    return _parse(data, path)


def _parse(data: dict, path: Path) -> Scenario:
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ScenarioError(
            f"scenario file '{path}': unknown key '{unknown[0]}'.{did_you_mean(unknown[0], TOP_LEVEL_KEYS)} "
            f"Allowed keys: {', '.join(TOP_LEVEL_KEYS)}"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"scenario file '{path}': 'description' must be a string; got {description!r}")
    params_table = data.get("params", {})
    if not isinstance(params_table, dict):
        raise ScenarioError(f"scenario file '{path}': 'params' must be a table of name = number")
    params = {str(k): _number(v, f"scenario file '{path}': params.'{k}'") for k, v in params_table.items()}
    policies_table = data.get("policies", {})
    if not isinstance(policies_table, dict):
        raise ScenarioError(f"scenario file '{path}': 'policies' must be a table of name = {{time, value}}")
    policies = {}
    for name, spec in policies_table.items():
        where = f"scenario file '{path}': policies.'{name}'"
        if not isinstance(spec, dict) or set(spec) != {"time", "value"}:
            raise ScenarioError(f"{where} must be a table with exactly the keys 'time' and 'value'; got {spec!r}")
        times, values = spec["time"], spec["value"]
        if not isinstance(times, list) or not isinstance(values, list) or len(times) != len(values) or not times:
            raise ScenarioError(f"{where}: 'time' and 'value' must be non-empty lists of equal length")
        times = tuple(_number(t, f"{where}.time") for t in times)
        values = tuple(_number(v, f"{where}.value") for v in values)
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ScenarioError(f"{where}: 'time' must be strictly increasing; got {list(times)}")
        if name in params:
            raise ScenarioError(f"{where} is also given in [params]; give it in one table only")
        policies[str(name)] = (times, values)
    time_table = data.get("time", {})
    if not isinstance(time_table, dict):
        raise ScenarioError(f"scenario file '{path}': 'time' must be a table")
    time_settings = {}
    for key, value in time_table.items():
        if key not in TIME_KEYS:
            raise ScenarioError(
                f"scenario file '{path}': unknown time setting '{key}'.{did_you_mean(key, TIME_KEYS)} "
                f"Allowed: {', '.join(TIME_KEYS)}"
            )
        number = _number(value, f"scenario file '{path}': time.{key}")
        if number <= 0:
            raise ScenarioError(f"scenario file '{path}': time.{key} must be positive; got {number:g}")
        time_settings[key] = number
    return Scenario(
        name=path.stem,
        description=description.strip(),
        params=params,
        policies=policies,
        time=time_settings,
        path=path.resolve(),
        events=_events(data.get("events", {}), path),
    )


def _events(table, path: Path) -> tuple[Event, ...]:
    """``[events]``: name = time, name = [start, end], or name = { at | from, to, label }."""
    if not isinstance(table, dict):
        raise ScenarioError(f"scenario file '{path}': 'events' must be a table of name = time, [start, end] or "
                            "{ at = time, label = \"...\" } / { from = start, to = end, label = \"...\" }")
    out = []
    for name, spec in table.items():
        where = f"scenario file '{path}': events.'{name}'"
        label = ""
        if isinstance(spec, dict):
            unknown = [k for k in spec if k not in EVENT_KEYS]
            if unknown:
                raise ScenarioError(f"{where}: unknown key '{unknown[0]}'.{did_you_mean(unknown[0], EVENT_KEYS)} "
                                    f"Allowed: {', '.join(EVENT_KEYS)}")
            label = spec.get("label", "")
            if not isinstance(label, str):
                raise ScenarioError(f"{where}.label must be a string; got {label!r}")
            if "at" in spec and ("from" in spec or "to" in spec):
                raise ScenarioError(f"{where}: give either 'at' (a moment) or 'from' and 'to' (a window)")
            if "at" in spec:
                start = end = _number(spec["at"], f"{where}.at")
            elif "from" in spec and "to" in spec:
                start, end = _number(spec["from"], f"{where}.from"), _number(spec["to"], f"{where}.to")
            else:
                raise ScenarioError(f"{where} needs 'at' (a moment) or 'from' and 'to' (a window)")
        elif isinstance(spec, list):
            if len(spec) != 2:
                raise ScenarioError(f"{where} must be a time or a pair [start, end]; got {spec!r}")
            start, end = _number(spec[0], f"{where}[0]"), _number(spec[1], f"{where}[1]")
        else:
            start = end = _number(spec, where)
        if end < start:
            raise ScenarioError(f"{where}: the window ends ({end:g}) before it starts ({start:g})")
        out.append(Event(str(name), start, end, label.strip()))
    return tuple(sorted(out, key=lambda e: (e.start, e.end)))


def _toml_string(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(text), ensure_ascii=False)


def _comment(text: str) -> str:
    """Text safe on one TOML comment line (no line breaks or other control characters)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(text))


def scenario_toml(description: str, params: Mapping[str, float], policies: Mapping[str, tuple] | None = None,
                  time: Mapping[str, float] | None = None, comments: Sequence[str] = ()) -> str:
    """A scenario file's text, in the format :func:`load_scenario` reads.

    ``params`` maps names to numbers, ``policies`` names to ``(times, values)``, ``time``
    the keys of :data:`TIME_KEYS` to numbers; ``comments`` become ``#`` lines at the top
    (control characters are replaced, so each stays one line).

    >>> print(scenario_toml("Higher slope", {"phillips slope": 1.5}, time={"final_time": 50}), end="")
    description = "Higher slope"
    <BLANKLINE>
    [params]
    "phillips slope" = 1.5
    <BLANKLINE>
    [time]
    final_time = 50
    """
    lines = [_comment(f"# {c}") for c in comments]
    lines += [f"description = {_toml_string(description)}", "", "[params]"]
    lines += [f"{_toml_string(name)} = {float(value)!r}" for name, value in params.items()]
    if policies:
        lines += ["", "[policies]"]
        for name, (times, values) in policies.items():
            lines.append(f"{_toml_string(name)} = {{ time = {[float(t) for t in times]!r}, "
                         f"value = {[float(v) for v in values]!r} }}")
    if time:
        unknown = set(time) - set(TIME_KEYS)
        if unknown:
            raise ScenarioError(f"unknown time setting '{sorted(unknown)[0]}'; allowed: {', '.join(TIME_KEYS)}")
        lines += ["", "[time]"]
        lines += [f"{key} = {value!r}" for key, value in time.items()]
    return "\n".join(lines) + "\n"
