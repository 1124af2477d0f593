"""``crisis web``: the model in one self-contained HTML page that simulates in the browser.

The page holds the model as JavaScript written from the compiled kernel
(:func:`pysd_runner.web_engine`), so it needs no server and no network: it opens from
``file://`` and can be e-mailed. The engine runs in a Web Worker (the page never blocks);
a scheduler keeps at most one run queued and drops slider values passed over on the way.

On the page:

- the headline figure, one variable per panel (small multiples drawn by the vendored
  uPlot, a 50 kB canvas charting library: a slider move redraws in milliseconds, where
  Plotly's SVG took 40-60 ms; colour means the run: the current settings, then up to four
  pins; a shared cursor reads every panel's values at one time), beside the levers;
- the scenario's own levers first, then every lever with a Vensim range in collapsible
  sector groups (the model's sketch views) with a search box; each slider shows its
  value and unit;
- a scenario selector, reset, pin and compare, fixed axes, loop switches (the named loops
  of loops.toml, each cut by knocking out one link), export of the settings as a scenario
  TOML file, and the settings kept in the address (``#scenario=...&lever=value&off=R1``);
- ``window.crisis``, a documented JavaScript API for embedding and tests
  (see ``dashboards/static/web.js``).

A model the page cannot take (what the kernel does not translate) is refused with the
element named.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from pysd_runner import (
    CompiledModel,
    KernelUnsupported,
    atomic_write,
    compile_model,
    list_scenarios,
    load_scenario,
    run,
    scenario_inputs,
    sketch_views,
    toolkit_version,
    web_engine,
)

from .errors import DashboardInputError
from .figures import sector_panels
from .escape import script_json

__all__ = ["build_web", "write_web", "simulator", "PageModel", "MAX_PANELS", "CSP"]

STATIC = Path(__file__).parent / "static"
#: The vendored uPlot (see dashboards/vendor/README.md): version and sha256 of its files.
UPLOT_JS = Path(__file__).parent / "vendor" / "uPlot.iife.min.js"
UPLOT_CSS = Path(__file__).parent / "vendor" / "uPlot.min.css"
UPLOT_VERSION = "1.6.32"
UPLOT_SHA256 = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}
#: Panels of the headline figure (one variable each).
MAX_PANELS = 8
#: Characters of a lever's documentation kept for its tooltip.
COMMENT_CHARS = 400

#: No network request; the engine runs in a Worker made from a blob: URL.
CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; worker-src blob:; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'")


@functools.lru_cache(maxsize=1)
def uplot_bundle() -> tuple[str, str]:
    """uPlot's JavaScript and CSS, checked against the recorded sha256 (a changed file is an error);
    read once per process."""
    texts = []
    for path in (UPLOT_JS, UPLOT_CSS):
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != UPLOT_SHA256[path.name]:
            raise DashboardInputError(f"{path} is not the file recorded in dashboards/vendor/README.md")
        texts.append(data.decode("utf-8"))
    return texts[0], texts[1]


def _panels(model: CompiledModel, scenario: str | None, variables: Sequence[str] | None, recordable: set[str]) -> list[str]:
    if variables:
        names = []
        for raw in variables:
            element = model.resolve(raw)
            if element.py_name not in recordable:
                raise DashboardInputError(f"--vars: '{element.name}' cannot be shown in the page (not a variable "
                                          "the engine records)")
            names.append(element.py_name)
        return names[:MAX_PANELS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = run(model, scenario=scenario)
    panels = sector_panels(ds)
    chosen: list[str] = []
    per_panel = max(1, MAX_PANELS // max(1, len(panels)))
    for names in panels.values():
        chosen += [n for n in names[:per_panel] if n in recordable and n not in chosen]
    return chosen[:MAX_PANELS]


def _loops(model: CompiledModel) -> list[dict]:
    from .app.settings import loop_switches

    return [{"id": sw.id, "name": sw.name, "polarity": sw.polarity, "link": list(sw.link),
             "label": sw.label} for sw in loop_switches(model)]


@dataclass
class PageModel:
    """What a page needs to simulate a model: the model's description for the page
    (``meta``, read by ``static/web.js`` as ``window.crisis.model``) and the engine's source."""

    meta: dict
    engine: str

    def markup(self) -> str:
        """The simulator's HTML: controls, figure, levers (ids as ``static/web.js`` expects)."""
        return (
            '<div class="crisis-sim">'
            '<div class="sim-bar">'
            '<label>Scenario <select id="scenario"></select></label>'
            '<button id="reset" type="button" title="Back to the scenario\'s values">Reset</button>'
            '<button id="pin" type="button" title="Keep this run on the figure to compare">Pin</button>'
            '<button id="clear-pins" type="button">Clear pins</button>'
            '<label title="Keep the axes where they are, so moves compare"><input type="checkbox" id="fix-axes"> '
            "Fix axes</label>"
            '<button id="export" type="button" title="Download these settings as a scenario file">Export scenario</button>'
            "</div>"
            '<p id="description" class="description" title="Click to read it all"></p>'
            '<div class="layout">'
            '<section id="figure-area" aria-label="Trajectories">'
            '<div id="status" role="status" aria-live="polite"></div>'
            '<div id="legend" class="legend"></div><div id="figure"></div><div id="readout" aria-live="off"></div>'
            "</section>"
            '<aside id="controls" aria-label="Levers">'
            '<input type="search" id="lever-search" placeholder="Search levers" aria-label="Search levers">'
            '<section id="scenario-levers"><h2>This scenario\'s levers</h2><div class="levers"></div></section>'
            '<div id="sectors"></div>'
            '<section id="loops"><h2>Feedback loops</h2><p class="hint">Untick a loop to cut it: the link named is '
            'held at its value at the start.</p><div class="switches"></div></section>'
            "</aside></div></div>"
        )

    def css(self) -> str:
        return uplot_bundle()[1] + "\n" + (STATIC / "simulator.css").read_text(encoding="utf-8")

    def scripts(self) -> str:
        """The model's description, the engine, uPlot and the page script, in that order."""
        model_json = script_json(json.dumps(self.meta, allow_nan=False, separators=(",", ":")))
        return (f'<script type="application/json" id="crisis-model">{model_json}</script>'
                f'<script id="crisis-engine">{self.engine}</script>'
                f"<script>{uplot_bundle()[0]}</script>"
                f"<script>{(STATIC / 'web.js').read_text(encoding='utf-8')}</script>")

    @property
    def generator(self) -> str:
        digest = hashlib.sha256(self.engine.encode()).hexdigest()[:12]
        return f"crisis-dynamics {toolkit_version()}; engine {digest}; uPlot {UPLOT_VERSION}"


def simulator(model: CompiledModel | str | os.PathLike, scenarios: Sequence[str] | None = None, *,
              variables: Sequence[str] | None = None, title: str | None = None) -> PageModel:
    """The model as a :class:`PageModel` (see :func:`build_web` for the arguments)."""
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    loops = _loops(model)
    links: list[list[str]] = []
    for loop in loops:
        if loop["link"] not in links:
            links.append(loop["link"])
        loop["link"] = links.index(loop["link"])
    try:
        engine = web_engine(model, [tuple(link) for link in links])
    except KernelUnsupported as exc:
        raise DashboardInputError(
            f"model '{model.source.name}' cannot run in the page: {exc}. Use `crisis app`, which runs it on a server"
        ) from None
    if "</script" in engine.source.lower():
        raise DashboardInputError(f"model '{model.source.name}': the generated JavaScript cannot be inlined")
    names = list(scenarios) if scenarios else list_scenarios(model)
    if not scenarios and "baseline" in names:
        names.remove("baseline")
        names.insert(0, "baseline")
    chosen = []
    for ref in names:
        scen = load_scenario(ref, model)
        inputs = scenario_inputs(model, scen)
        unknown = [k for k in [*inputs["constants"], *inputs["policies"]] if k not in engine.constants]
        if unknown:
            raise DashboardInputError(f"scenario '{scen.name}' sets '{model.elements[unknown[0]].name}', which the "
                                      "page cannot change (not a plain constant)")
        chosen.append({"name": scen.name, "description": scen.description, **inputs,
                       "events": [e.as_dict() for e in scen.events]})
    defaults = scenario_inputs(model, None)
    chosen.append({"name": "defaults", "description": "The model's own values, with no scenario.", **defaults,
                   "events": []})
    if len({s["name"] for s in chosen}) != len(chosen):
        raise DashboardInputError(f"scenario names must be distinct; got {[s['name'] for s in chosen]}")
    views = sketch_views(model)
    constants = []
    for slot, py_name in enumerate(engine.constants):
        element = model.elements[py_name]
        low, high = element.limits
        lever = low is not None and high is not None and high > low
        step = element.step if element.step and element.step > 0 else ((high - low) / 100 if lever else None)
        constants.append({
            "slot": slot, "py_name": py_name, "name": element.name, "units": element.units,
            "comment": element.comment[:COMMENT_CHARS], "low": low, "high": high, "step": step,
            "default": float(engine.defaults[slot]), "lever": lever, "sector": views.get(py_name, "Other"),
        })
    recordable = set(engine.recordable)
    variables_meta = [{"py_name": n, "name": model.elements[n].name, "units": model.elements[n].units}
                      for n in engine.recordable]
    panels = _panels(model, chosen[0]["name"] if chosen[0]["name"] != "defaults" else None, variables, recordable)
    meta = {
        "name": model.source.name, "title": title or f"{model.name}: simulate in the page",
        "version": toolkit_version(), "model_sha256": model.sha256,
        "time": chosen[0]["time"], "constants": constants, "variables": variables_meta, "panels": panels,
        "scenarios": chosen, "loops": loops, "links": links,
        "sectors": sorted({c["sector"] for c in constants if c["lever"]}, key=lambda s: (s == "Other", s)),
    }
    return PageModel(meta, engine.source)


def build_web(model: CompiledModel | str | os.PathLike, scenarios: Sequence[str] | None = None, *,
              variables: Sequence[str] | None = None, title: str | None = None, server_link: str | None = None) -> str:
    """The page's HTML text (see the module docs).

    ``scenarios`` are names or TOML files (default: every scenario of the model, the
    baseline first when there is one); the model's own defaults are always offered too.
    ``variables`` chooses the figure's panels (default: the headline variables of each
    sector, or of each group of units). ``server_link`` adds a link to the server-run app
    (``crisis app`` serves the page with one).
    """
    sim = simulator(model, scenarios, variables=variables, title=title)
    text = lambda value: html.escape(str(value), quote=True)  # noqa: E731
    css = (STATIC / "web.css").read_text(encoding="utf-8")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{text(sim.generator)}">'
        f"<title>{text(sim.meta['title'])}</title><style>{css}\n{sim.css()}</style></head><body>"
        f"<header><h1>{text(sim.meta['title'])}</h1>"
        + (f'<a class="server-link" href="{text(server_link)}">The same model run on the server</a>' if server_link else "")
        + "</header>"
        f"<main>{sim.markup()}</main>"
        '<noscript><p>This page needs JavaScript: the model runs in the browser.</p></noscript>'
        f"{sim.scripts()}</body></html>\n"
    )


def write_web(path: str | os.PathLike, model: CompiledModel | str | os.PathLike, scenarios: Sequence[str] | None = None,
              **options: Any) -> Path:
    """Write :func:`build_web`'s page atomically; returns the path."""
    path = Path(path)
    atomic_write(path, build_web(model, scenarios, **options), what="page")
    return path
