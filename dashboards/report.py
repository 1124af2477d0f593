"""A self-contained interactive HTML report: one file, plotly.js inline, no server, no network.

The report is written for readers: open it in a browser, offline, and explore. It holds

- crisis trajectories in sector panels, with a scenario selector (show or hide scenarios);
- a scenario comparison (differences from the first scenario) when there are several;
- a phase portrait (employment rate against wage share) when both variables exist;
- sliders over a precomputed lever grid (:func:`dashboards.grid.build_lever_grid`): the
  grid's runs are embedded as base64 float32 arrays and plain JavaScript swaps the plotted
  values when a slider moves;
- fit against data, ensemble fan charts, sensitivity indices and loop dominance, each
  only when its input is given;
- a searchable table of variables with units and documentation (plain HTML).

plotly.js is inlined: the vendored basic bundle when it can draw every figure, which
opens several times faster than plotly.py's full bundle (see :func:`plotly_bundle`).

Every model-provided string is escaped: text in HTML with :func:`html.escape`, data in
``<script type="application/json">`` blocks as JSON in which ``<``, ``>`` and ``&`` are
written as ``\\u003c``, ``\\u003e`` and ``\\u0026`` (so ``</script>`` can never close the
block), and labels inside figures escaped for Plotly's HTML-like text. A Content Security
Policy forbids the page any network request.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import xarray as xr

from pysd_runner import CrisisWarning

from . import figures
from .errors import DashboardInputError
from .escape import script_json

__all__ = ["build_report", "write_report", "load_dataset", "plotly_bundle", "BundleWarning", "PANELS"]

#: The vendored plotly.js basic bundle (see dashboards/vendor/README.md): its trace types,
#: version and sha256.
BASIC_BUNDLE = Path(__file__).parent / "vendor" / "plotly-basic.min.js"
BASIC_TRACE_TYPES = frozenset({"scatter", "bar", "pie"})
BASIC_VERSION = "4.1.1"
BASIC_SHA256 = "99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"


class BundleWarning(CrisisWarning):
    """The report inlines plotly.py's full plotly.js bundle instead of the smaller basic one."""

#: Panel ids in page order, with their headings. A panel appears only when its input exists.
PANELS = {
    "crossroads": "The story at a glance",
    "trajectories": "Crisis trajectories",
    "comparison": "Scenario comparison",
    "phase": "Phase portrait",
    "live": "Levers: the model in your browser",
    "grid": "Levers over a precomputed grid",
    "fit": "Fit against data",
    "states": "Filtered states",
    "ensemble": "Uncertainty: ensemble fan charts",
    "sensitivity": "Sensitivity",
    "loops": "Loop dominance",
    "variables": "Variables",
}

_INTRO = {
    "crossroads": ("The crossroads the model is about: the reform, the shock, what each government (or movement) "
                   "does, and what it comes to. A dashed line, when the runs include it, is the same economy spared "
                   "the shock. The sectors follow below."),
    "trajectories": "Each panel is a sector of the model; each colour a scenario. Tick scenarios above to show or hide them.",
    "comparison": "Each scenario's trajectory (left) and its difference from the first scenario (right).",
    "phase": "The orbit of the economy in the plane of two variables; the dot marks where each run starts.",
    "live": ("Move any lever, in any combination: the model itself runs in this page (its equations as "
             "JavaScript, equal to the toolkit's engine), with no server. Pin a run to compare it; untick a "
             "loop to cut it; export the settings as a scenario file."),
    "grid": "Move the sliders to see the runs of a precomputed grid of lever values.",
    "fit": ("Model against observed data, with the uncertainty band; the shaded window was held out of the fit. For "
            "a state-space fit: the filter's one-step-ahead prediction (each year from the data up to the year "
            "before) and its band, beside the open-loop run (dotted)."),
    "states": ("A state-space fit's estimate of the model's stocks from the data: smoothed (every observation "
               "used) with its band, and filtered (the observations up to each year)."),
    "ensemble": "Percentile bands over the members of an ensemble run.",
    "sensitivity": "How much of each output's variance (Sobol) or change (Morris) each parameter accounts for.",
    "loops": "Relative loop scores (Loops That Matter): which feedback loop dominates the behaviour when.",
    "variables": "Every variable of the runs with its units and documentation. Type to filter.",
}

_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'")

#: The CSP when the report holds the live levers panel: its engine runs in a Worker made from a blob: URL.
LIVE_CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; worker-src blob:; style-src 'unsafe-inline'; "
            "img-src data: blob:; font-src data:; connect-src 'none'")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2430;background:#f6f7fb}
header{background:#1f2a44;color:#fff;padding:1.2rem 2rem}
header h1{margin:0 0 .3rem;font-size:1.6rem}
header p{margin:.2rem 0;font-size:.85rem;opacity:.85;word-break:break-all}
main{max-width:1200px;margin:0 auto;padding:1rem 2rem 3rem}
section.panel{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin:1.2rem 0;padding:1rem 1.2rem}
section.panel h2{margin:.2rem 0 .4rem;font-size:1.25rem}
.intro{color:#4a5060;margin:.2rem 0 .8rem}
#scenario-selector label{margin-right:1.2rem;white-space:nowrap}
#scenario-selector dl{margin:.6rem 0 0}
#scenario-selector dt{font-weight:600}
#scenario-selector dd{margin:0 0 .5rem 1rem;color:#4a5060}
.controls{display:flex;flex-wrap:wrap;gap:1rem 2rem;align-items:center;margin-bottom:.6rem}
.controls label{display:flex;gap:.5rem;align-items:center}
.controls input[type=range]{width:220px}
#grid-status{color:#b00020;min-height:1.2em}
.downloads{font-size:.8rem;color:#4a5060;margin:.2rem 0 .4rem;text-align:right}
.downloads button{font-size:.8rem;margin-left:.4rem;padding:.1rem .5rem;border:1px solid #c5c9d6;border-radius:4px;background:#fff;cursor:pointer}
#table-search{width:100%;max-width:420px;padding:.4rem;font-size:1rem}
#variables-table{border-collapse:collapse;width:100%;font-size:.9rem;margin-top:.6rem}
#variables-table th,#variables-table td{text-align:left;vertical-align:top;padding:.35rem .5rem;border-bottom:1px solid #e3e5ee}
#variables-table th{background:#e8eaf6}
#variables-table td:nth-child(2){font-family:ui-monospace,monospace;font-size:.85rem}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var config = {responsive: true, displaylogo: false};
  function readJSON(id) { return JSON.parse(document.getElementById(id).textContent); }
  var plotDivs = Array.prototype.slice.call(document.querySelectorAll("[data-figure]"));
  var afterDraw = {};  // div id -> function run once the div is drawn (restores control state)

  // Figures are drawn one per task, in page order, so the first view appears without
  // waiting for the rest: body[data-ready] once every figure in the first view is drawn,
  // body[data-complete] once all are.
  function inView(div) {
    var box = div.getBoundingClientRect();
    return box.top < window.innerHeight && box.bottom > 0;
  }
  var firstView = plotDivs.filter(inView);
  var queue = plotDivs.slice();
  function drawNext() {
    var div = queue.shift();
    if (!div) { document.body.setAttribute("data-complete", "true"); return; }
    var spec = readJSON(div.getAttribute("data-figure"));
    Plotly.newPlot(div, spec.data, spec.layout, config).then(function () {
      div.setAttribute("data-drawn", "true");
      addDownloads(div);
      if (afterDraw[div.id]) { afterDraw[div.id](); }
      if (!document.body.hasAttribute("data-ready") &&
          firstView.every(function (d) { return d.hasAttribute("data-drawn"); })) {
        document.body.setAttribute("data-ready", "true");
      }
      setTimeout(drawNext, 0);
    });
  }

  // Downloads under every figure: the picture as PNG or SVG, and its data as CSV (one row
  // per point of every trace: scenario, variable, trace name, x, y), as shown.
  function csvCell(value) {
    var text = value === undefined || value === null ? "" : String(value);
    return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  function values(array) {
    // Typed arrays travel base64-encoded ({dtype, bdata}); plotly keeps the decoded array.
    return array && array._inputArray ? array._inputArray : (array || []);
  }
  function figureCSV(div) {
    var lines = ["scenario,variable,trace,x,y"];
    div.data.forEach(function (trace) {
      var y = values(trace.y);
      if (trace.visible === false || !y.length) { return; }
      var meta = trace.meta || {};
      var x = values(trace.x);
      for (var i = 0; i < y.length; i++) {
        lines.push([meta.scenario, meta.variable, trace.name, x[i], y[i]].map(csvCell).join(","));
      }
    });
    return lines.join("\n") + "\n";
  }
  function save(blob, name) {
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 0);
  }
  function addDownloads(div) {
    if (div.nextElementSibling && div.nextElementSibling.classList.contains("downloads")) { return; }
    var name = div.id.replace(/^plot-/, "");
    var bar = document.createElement("div");
    bar.className = "downloads";
    bar.appendChild(document.createTextNode("Download: "));
    [["png", "PNG"], ["svg", "SVG"], ["csv", "data (CSV)"]].forEach(function (kind) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = kind[1];
      button.setAttribute("data-download", kind[0]);
      button.addEventListener("click", function () {
        if (kind[0] === "csv") {
          save(new Blob([figureCSV(div)], {type: "text/csv"}), name + ".csv");
        } else {
          Plotly.downloadImage(div, {format: kind[0], filename: name,
                                     width: div.clientWidth, height: div.clientHeight});
        }
      });
      bar.appendChild(button);
    });
    div.parentNode.insertBefore(bar, div.nextSibling);
  }

  // Scenario selector: show or hide the traces whose meta.scenario is (un)ticked.
  var toggles = Array.prototype.slice.call(document.querySelectorAll("input.scenario-toggle"));
  function applyScenarios() {
    var shown = {};
    toggles.forEach(function (t) { shown[t.value] = t.checked; });
    plotDivs.forEach(function (div) {
      if (div.getAttribute("data-scenario-aware") !== "true" || !div.hasAttribute("data-drawn")) { return; }
      var visible = div.data.map(function (trace) {
        var s = trace.meta && trace.meta.scenario;
        return (s === undefined || shown[s] !== false) ? true : false;
      });
      Plotly.restyle(div, {visible: visible});
    });
  }
  toggles.forEach(function (t) { t.addEventListener("change", applyScenarios); });
  plotDivs.forEach(function (div) {
    if (div.getAttribute("data-scenario-aware") === "true" && toggles.length) { afterDraw[div.id] = applyScenarios; }
  });

  // Lever grid: swap the plotted runs when a slider or the grid's scenario changes.
  var gridElement = document.getElementById("grid-data");
  if (gridElement) {
    var grid = JSON.parse(gridElement.textContent);
    var arrays = {};
    grid.variables.forEach(function (name) {
      var binary = atob(grid.data[name]);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
      arrays[name] = new Float32Array(bytes.buffer);
    });
    var gridDiv = document.getElementById("plot-grid");
    var sliders = grid.levers.map(function (lever, k) { return document.getElementById("lever-" + k); });
    var scenarioSelect = document.getElementById("grid-scenario");
    var status = document.getElementById("grid-status");
    var nTime = grid.shape[grid.shape.length - 1];
    window.updateGrid = function () {
      if (!gridDiv.hasAttribute("data-drawn")) { return; }  // drawn later, from the sliders' state
      var flat = scenarioSelect ? scenarioSelect.selectedIndex : 0;
      var title = [];
      grid.levers.forEach(function (lever, k) {
        var index = parseInt(sliders[k].value, 10);
        flat = flat * lever.values.length + index;
        document.getElementById("lever-" + k + "-value").textContent = String(lever.values[index]);
        title.push(lever.plotly_label + " = " + String(lever.values[index]));
      });
      var ys = grid.variables.map(function (name) {
        return Array.prototype.slice.call(arrays[name].subarray(flat * nTime, (flat + 1) * nTime));
      });
      status.textContent = grid.ok[flat] ? "" : "This run did not stay finite: no values to show.";
      Plotly.update(gridDiv, {y: ys}, {"title.text": title.join(", ")},
                    grid.variables.map(function (_, i) { return i; }));
    };
    sliders.forEach(function (s) { s.addEventListener("input", window.updateGrid); });
    afterDraw[gridDiv.id] = window.updateGrid;
    if (scenarioSelect) { scenarioSelect.addEventListener("change", window.updateGrid); }
  }

  // Variable table: show the rows that contain every word typed.
  var search = document.getElementById("table-search");
  if (search) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("#variables-table tbody tr"));
    var count = document.getElementById("table-count");
    search.addEventListener("input", function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.getAttribute("data-search");
        var match = words.every(function (w) { return text.indexOf(w) >= 0; });
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      count.textContent = shown + " of " + rows.length + " variables";
    });
  }

  drawNext();
})();
"""


# --------------------------------------------------------------------------- inputs

def load_dataset(source: xr.Dataset | str | os.PathLike, what: str) -> xr.Dataset:
    """A Dataset as given, or read from a netCDF file (with a message naming ``what``)."""
    if isinstance(source, xr.Dataset):
        return source
    from pysd_runner import load_result

    try:
        return load_result(source)
    except Exception as exc:  # OutputError from pysd_runner: name which input it was
        raise DashboardInputError(f"{what}: {exc}") from None


# --------------------------------------------------------------------------- escaping

def _text(value: Any) -> str:
    """Escape a string for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _json_block(element_id: str, payload: Any) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, allow_nan=False, separators=(",", ":"))
    return f'<script type="application/json" id="{_text(element_id)}">{script_json(text)}</script>'


# --------------------------------------------------------------------------- panels

class _Panel:
    def __init__(self, key: str, body: str, blocks: Sequence[str] = (), trace_types: Sequence[str] = ()):
        self.key, self.body, self.blocks = key, body, list(blocks)
        self.trace_types = set(trace_types)

    def html(self) -> str:
        return (f'<section class="panel" id="panel-{self.key}" data-panel="{self.key}">'
                f'<h2>{_text(PANELS[self.key])}</h2><p class="intro">{_text(_INTRO[self.key])}</p>'
                f"{self.body}</section>")


def _figure_panel(key: str, fig: go.Figure, *, scenario_aware: bool = False, before: str = "") -> _Panel:
    block_id = f"fig-{key}"
    aware = ' data-scenario-aware="true"' if scenario_aware else ""
    height = fig.layout.height or 450
    body = (f'{before}<div class="plot" id="plot-{key}" data-figure="{block_id}"{aware} '
            f'style="height:{int(height)}px"></div>')
    return _Panel(key, body, [_json_block(block_id, fig.to_json())], {trace.type for trace in fig.data})


def _grid_panel(grid: xr.Dataset) -> _Panel:
    levers = figures.grid_levers(grid)
    variables = figures.grid_variables(grid)
    if not variables:
        raise DashboardInputError("the lever grid has no variable along its levers and time")
    order = (["scenario"] if "scenario" in grid.dims else []) + levers + ["time"]
    shape = [grid.sizes[d] for d in order]
    data = {}
    for name in variables:
        # float32: display precision for the browser, half the size of float64.
        values = np.asarray(grid[name].transpose(*order).values, dtype="<f4")
        data[name] = base64.b64encode(values.tobytes()).decode("ascii")
    if "ok" in grid:
        ok = np.asarray(grid["ok"].transpose(*order[:-1]).values, dtype=bool).ravel().tolist()
    else:
        ok = [True] * int(np.prod(shape[:-1]))
    lever_specs = []
    controls = []
    for k, lever in enumerate(levers):
        values = [float(v) for v in grid[lever].values]
        label = figures.long_name(grid[lever], lever)
        unit = figures.units(grid[lever])
        mid = len(values) // 2
        lever_specs.append({"name": lever, "values": values, "plotly_label": html.escape(label, quote=False)})
        title = _text(grid[lever].attrs.get("comment", ""))
        controls.append(
            f'<label title="{title}">{_text(label)}{f" ({_text(unit)})" if unit else ""}'
            f'<input type="range" id="lever-{k}" min="0" max="{len(values) - 1}" step="1" value="{mid}" '
            f'aria-label="{_text(label)}"><output id="lever-{k}-value">{values[mid]:g}</output></label>'
        )
    scenarios = [str(s) for s in grid["scenario"].values] if "scenario" in grid.dims else []
    select = ""
    if scenarios:
        options = "".join(f'<option value="{_text(s)}">{_text(s)}</option>' for s in scenarios)
        select = f'<label>Scenario <select id="grid-scenario">{options}</select></label>'
    payload = {"levers": lever_specs, "variables": variables, "shape": shape, "data": data, "ok": ok,
               "scenarios": scenarios}
    fig = figures.lever_grid_figure(grid, scenario=scenarios[0] if scenarios else None)
    before = f'<div class="controls">{select}{"".join(controls)}</div><p id="grid-status" role="status"></p>'
    panel = _figure_panel("grid", fig, before=before)
    panel.blocks.append(_json_block("grid-data", payload))
    return panel


def _table_panel(runs: xr.Dataset) -> _Panel:
    """The variables as an HTML table (text, so it is searchable, selectable and accessible)."""
    records = figures.variable_records(runs)
    head = "".join(f"<th scope=\"col\">{_text(title)}</th>" for _, title in figures.TABLE_COLUMNS)
    rows = []
    for record in records:
        haystack = " ".join(record.values()).lower()
        cells = "".join(f"<td>{_text(record[key])}</td>" for key, _ in figures.TABLE_COLUMNS)
        rows.append(f'<tr data-search="{_text(haystack)}">{cells}</tr>')
    body = (
        '<input type="search" id="table-search" placeholder="Search variables, units, documentation" '
        'aria-label="Search variables">'
        f'<p id="table-count" role="status">{len(records)} variables</p>'
        f'<table id="variables-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
    return _Panel("variables", body)


def _scenario_selector(runs: xr.Dataset) -> str:
    names = figures.scenario_names(runs)
    if "scenario_description" in runs.coords:
        descriptions = [str(d) for d in runs["scenario_description"].values]
    else:
        descriptions = [str(runs.attrs.get("scenario_description", ""))] * len(names)
    toggles = ""
    if len(names) > 1:
        toggles = "".join(
            f'<label><input type="checkbox" class="scenario-toggle" value="{_text(n)}" checked> {_text(n)}</label>'
            for n in names
        )
        toggles = f'<div class="controls" role="group" aria-label="Scenarios">{toggles}</div>'
    described = "".join(f"<dt>{_text(n)}</dt><dd>{_text(d)}</dd>" for n, d in zip(names, descriptions) if d)
    listing = (f"<details><summary>What each scenario assumes</summary><dl>{described}</dl></details>"
               if described else "")
    return f'<section class="panel" id="scenario-selector"><h2>Scenarios</h2>{toggles}{listing}</section>'


def _header(runs: xr.Dataset, title: str) -> str:
    attrs = runs.attrs
    facts = []
    for key, label in (("model_file", "Model file"), ("model_sha256", "sha256"), ("pysd_version", "PySD"),
                       ("toolkit_version", "crisis-dynamics"), ("created_utc", "Runs created")):
        if attrs.get(key) not in (None, ""):
            facts.append(f"{_text(label)}: {_text(attrs[key])}")
    settings = [f"{k.replace('_', ' ')} {attrs[k]:g}" for k in ("initial_time", "final_time", "time_step", "saveper")
                if isinstance(attrs.get(k), (int, float, np.number))]
    line = f"<p>{' · '.join(facts)}</p>" if facts else ""
    timing = f"<p>{_text(', '.join(settings))}</p>" if settings else ""
    return f"<header><h1>{_text(title)}</h1>{line}{timing}</header>"


# --------------------------------------------------------------------------- plotly.js

def _version_of(javascript: str) -> str | None:
    found = re.search(r"plotly\.js[^\n]*? v(\d+\.\d+\.\d+)", javascript[:400])
    return found.group(1) if found else None


def plotly_bundle(trace_types: set[str] | frozenset[str]) -> tuple[str, str]:
    """The plotly.js to inline: ``(description, javascript)``.

    The vendored basic bundle (1.2 MB) when it holds every trace type used and matches
    the plotly.js version of the installed plotly.py (whose figure JSON it must read);
    otherwise plotly.py's full bundle (4.8 MB, several times slower to open), with a
    :class:`BundleWarning` saying why.
    """
    import plotly.offline

    wanted = plotly.offline.get_plotlyjs_version()
    reason = None
    extra = set(trace_types) - BASIC_TRACE_TYPES
    if extra:
        reason = f"the report uses trace types {sorted(extra)}, which the basic bundle lacks"
    elif wanted != BASIC_VERSION:
        reason = f"the installed plotly.py is built for plotly.js {wanted}, the vendored basic bundle is {BASIC_VERSION}"
    elif not BASIC_BUNDLE.is_file():
        reason = f"the vendored basic bundle {BASIC_BUNDLE} is missing"
    if reason is None:
        javascript = BASIC_BUNDLE.read_text(encoding="utf-8")
        if hashlib.sha256(javascript.encode("utf-8")).hexdigest() != BASIC_SHA256 or _version_of(javascript) != wanted:
            reason = f"the vendored basic bundle {BASIC_BUNDLE} is not the file recorded in dashboards/vendor/README.md"
        else:
            return f"plotly.js basic {BASIC_VERSION}", javascript
    warnings.warn(f"inlining the full plotly.js bundle: {reason}", BundleWarning, stacklevel=3)
    return f"plotly.js {wanted}", plotly.offline.get_plotlyjs()


# --------------------------------------------------------------------------- the report

def _same_model(runs: xr.Dataset, fit: xr.Dataset) -> None:
    """A fit shown beside runs must be of the same model file (both record its sha256)."""
    ours, theirs = runs.attrs.get("model_sha256"), fit.attrs.get("model_sha256")
    if ours and theirs and ours != theirs:
        raise DashboardInputError(
            f"fit: the fit is of model '{fit.attrs.get('model_file') or fit.attrs.get('model_name', '?')}' "
            f"(sha256 {str(theirs)[:12]}), the runs of '{runs.attrs.get('model_file') or runs.attrs.get('model_name', '?')}' "
            f"(sha256 {str(ours)[:12]}); give a fit of the runs' model")


STORY_FILE = "story.toml"


def _story(runs: xr.Dataset, story) -> tuple[Mapping | None, float | None]:
    """The story to open the report with (None: no story file, or none of its scenarios run),
    and the calendar year of the model's time 0 if the story declares it (``origin``)."""
    import tomllib

    if story is False:
        return None, None
    if isinstance(story, Mapping):
        return story, _origin(story, "the story")
    if story is None or story is True:
        source = runs.attrs.get("model_file")
        path = Path(str(source)).parent / STORY_FILE if source else None
        if path is None or not path.is_file():
            if story is True:
                raise DashboardInputError(f"story: no {STORY_FILE} beside the runs' model ({source or 'unknown'})")
            return None, None
        explicit = False
    else:
        path, explicit = Path(story).expanduser(), True
        if not path.is_file():
            raise DashboardInputError(f"story: file '{path}' does not exist")
    try:
        told = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DashboardInputError(f"story: '{path}' cannot be read as TOML: {exc}") from None
    unknown = sorted(set(told) - {"title", "headline", "against", "window", "choices", "origin"})
    if unknown:
        raise DashboardInputError(f"story: '{path}' has unknown key(s) {unknown}; allowed: title, headline, against, "
                                  "window, choices, origin")
    origin = _origin(told, f"'{path}'")
    if not told.get("headline") or not isinstance(told.get("choices"), Mapping) or not told["choices"]:
        if set(told) == {"origin"}:
            return None, origin  # a story file that only dates the model's time
        raise DashboardInputError(f"story: '{path}' needs a 'headline' variable and a [choices] table (scenario = "
                                  "the choice it stands for)")
    names = set(figures.scenario_names(runs)) if "scenario" in runs.dims else set()
    if not explicit and not (names & set(told["choices"])):
        return None, origin  # runs of other scenarios: the story does not apply
    return told, origin


def _origin(story: Mapping, where: str) -> float | None:
    """The calendar year a story gives to the model's time 0 (``origin``), checked."""
    value = story.get("origin")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -10_000 < value < 10_000:
        raise DashboardInputError(f"story: {where} has origin {value!r}; it must be the calendar year of the model's "
                                  "time 0, e.g. 1950")
    return float(value)


def build_report(
    runs: xr.Dataset | str | os.PathLike,
    *,
    fit: xr.Dataset | str | os.PathLike | None = None,
    ensemble: xr.Dataset | str | os.PathLike | None = None,
    loops: xr.Dataset | str | os.PathLike | None = None,
    grid: xr.Dataset | str | os.PathLike | None = None,
    sensitivity: xr.Dataset | str | os.PathLike | None = None,
    panels: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
    model: str | os.PathLike | None = None,
    story: Mapping | str | os.PathLike | bool | None = None,
) -> str:
    """Build the self-contained HTML report as a string.

    Parameters
    ----------
    runs : Dataset or path to netCDF
        Run results (``crisis run``), one run or several scenarios along ``scenario``.
    fit, ensemble, loops, grid, sensitivity : Dataset or path, optional
        Each adds its panel: a fit result (see :func:`dashboards.figures.fit_figure`), an
        ensemble (dim ``run``), loop dominance (dims ``time``, ``loop``), a lever grid
        (:func:`dashboards.grid.build_lever_grid`), sensitivity indices (dim ``param``).
    panels : mapping, optional
        Panel title -> variables for the trajectory figure (default
        :func:`dashboards.figures.sector_panels`).
    title : str, optional
        Page title (default from the model name).
    model : path, optional
        The model file of the runs: adds the live levers panel, in which the model runs in
        the page (:func:`dashboards.web.simulator`, the engine of ``crisis web``) under the
        runs' scenarios. Refused when the file is not the one the runs were made from.
    story : mapping, path or bool, optional
        The story the report opens with (:func:`dashboards.figures.crossroads`): a mapping, a
        story.toml, or by default the ``story.toml`` beside the runs' model file when the runs
        hold a scenario it names; False for none.

    Returns
    -------
    str
        The HTML page, with plotly.js inline; it makes no network request when opened.

    Examples
    --------
    >>> html_text = build_report("out/goodwin.nc")  # doctest: +SKIP
    """
    runs = load_dataset(runs, "runs")
    if "time" not in runs.dims:
        raise DashboardInputError(f"runs: the Dataset has no 'time' dim; dims are {list(runs.dims)}")
    model_name = str(runs.attrs.get("model_name") or "model")
    title = title if title is not None else f"Crisis dynamics: {model_name}"
    sections: list[_Panel] = []
    told, origin = _story(runs, story)
    live_runs = runs
    if origin is not None:
        # The model declares its calendar: every figure reads calendar years (the live
        # levers keep the model's own clock, on which it runs).
        runs = figures.with_origin(runs, origin)
    if told is not None:
        sections.append(_figure_panel("crossroads", figures.crossroads(runs, told), scenario_aware=True))
    layout = figures.sector_panels(runs, panels)
    sections.append(_figure_panel("trajectories", figures.trajectories(runs, layout, title=""), scenario_aware=True))
    if len(figures.scenario_names(runs)) > 1 and "scenario" in runs.dims:
        sections.append(_figure_panel("comparison", figures.scenario_comparison(runs, [v[0] for v in layout.values()]),
                                      scenario_aware=True))
    if "employment_rate" in runs and "wage_share" in runs:
        sections.append(_figure_panel("phase", figures.phase_portrait(runs), scenario_aware=True))
    sim = None
    if model is not None:
        sim = _live_simulator(live_runs, model)
        sections.append(_Panel("live", sim.markup(), blocks=[sim.scripts()]))
    if grid is not None:
        sections.append(_grid_panel(load_dataset(grid, "grid")))
    if fit is not None:
        fitted = load_dataset(fit, "fit")
        _same_model(runs, fitted)
        sections.append(_figure_panel("fit", figures.fit_figure(fitted)))
        if "state_smoothed" in fitted:
            sections.append(_figure_panel("states", figures.filtered_states_figure(fitted)))
    if ensemble is not None:
        sections.append(_figure_panel("ensemble", figures.fan_chart(load_dataset(ensemble, "ensemble"))))
    if sensitivity is not None:
        sections.append(_figure_panel("sensitivity", figures.sensitivity_bars(load_dataset(sensitivity, "sensitivity"))))
    if loops is not None:
        sections.append(_figure_panel("loops", figures.loop_dominance(load_dataset(loops, "loops"))))
    sections.append(_table_panel(runs))

    # The story comes first, above the scenario selector: the first screen holds a figure.
    story_html = "".join(s.html() for s in sections if s.key == "crossroads")
    body = "".join(s.html() for s in sections if s.key != "crossroads")
    blocks = "".join(b for s in sections for b in s.blocks)
    _, javascript = plotly_bundle(set().union(*(s.trace_types for s in sections)))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP if sim is None else LIVE_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_CSS}{'' if sim is None else sim.css()}</style></head>"
        f"<body>{_header(runs, title)}<main>"
        "<noscript><p>This report needs JavaScript to draw its figures.</p></noscript>"
        f"{story_html}{_scenario_selector(runs)}{body}</main>{blocks}"
        # plotly.js last: the text of the page shows while the browser parses it.
        f"<script>{javascript}</script><script>{_SCRIPT}</script></body></html>\n"
    )


def _live_simulator(runs: xr.Dataset, model: str | os.PathLike):
    from pysd_runner import compile_model, list_scenarios, load_scenario

    from .web import simulator

    compiled = compile_model(model)
    made_from = runs.attrs.get("model_sha256")
    if made_from and made_from != compiled.sha256:
        raise DashboardInputError(
            f"--model '{model}' is not the model file the runs were made from (its content differs; the runs "
            f"name '{runs.attrs.get('model_file', '?')}')")
    known = set(list_scenarios(compiled))
    names = [n for n in figures.scenario_names(runs) if n in known] if "scenario" in runs.dims else []
    if not names and runs.attrs.get("scenario") in known:
        names = [runs.attrs["scenario"]]
    # Story first: open on the scenario that sets the most levers (a crisis scenario, not the baseline).
    names.sort(key=lambda n: -len(load_scenario(n, compiled).params))
    return simulator(compiled, names or None, title=str(runs.attrs.get("model_name") or compiled.name))


def write_report(path: str | os.PathLike, runs: xr.Dataset | str | os.PathLike, **options: Any) -> Path:
    """Build the report (see :func:`build_report`) and write it atomically to ``path``."""
    target = Path(path).expanduser()
    if target.suffix.lower() not in (".html", ".htm"):
        raise DashboardInputError(f"report file '{target}' must end in .html; got '{target.suffix}'")
    if target.is_dir():
        raise DashboardInputError(f"report output '{target}' is a folder; give a file name ending in .html")
    text = build_report(runs, **options)
    from pysd_runner import atomic_output

    with atomic_output(target, "report output") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
