/* crisis web: the page around the generated engine (written by dashboards/web.py).

   window.crisis, for embedding and tests:
     crisis.model                  name, time settings, constants (units, ranges, defaults,
                                   sector), variables (units), scenarios (values, policies,
                                   time, events), named loops, the figure's panels
     crisis.ready                  a Promise, resolved after the first run is drawn
     crisis.run(params, options)   a Promise of {time: number[], values: {python_name: number[]},
                                   bad: null | {time, name}}; params keyed by Vensim or Python
                                   name; options: scenario, knockouts (loop ids or
                                   [source, target] links), final_time. An unknown name or an
                                   out-of-range value rejects with a message naming it.
     crisis.state()                the page's settings {scenario, values, off}
     crisis.set(settings)          apply {scenario, values, off} as the address would, keeping the
                                   current scenario when none is given (returns the problems)
     crisis.lastDraw               {ms, simulation_ms, draw_ms, at, settings} of the last redrawn
                                   figure (ms: from the key press or click to the redrawn
                                   figure; settings: those of the run it shows)
     crisis.engine                 where the last run ran: "worker" or "page" (no Worker)
     crisis.ranges()               each panel's y range, [min, max]
     crisis.drawn()                what the figure shows: per panel, the y values of each run
                                   (pins first, the current run last)
*/
(function () {
  "use strict";
  const M = JSON.parse(document.getElementById("crisis-model").textContent);
  const ENGINE_TEXT = document.getElementById("crisis-engine").textContent;
  const PALETTE = ["#1f3b73", "#d1495b", "#00798c", "#edae49", "#66a182"];
  const MAX_PINS = 4;
  const byPy = {};
  const byKey = {};
  const key = (s) => String(s).trim().toLowerCase().replace(/[_\s]+/g, " ");
  for (const c of M.constants) { byPy[c.py_name] = c; byKey[key(c.name)] = c; byKey[key(c.py_name)] = c; }
  const variableOf = {};
  for (const v of M.variables) variableOf[v.py_name] = v;
  const scenarioOf = {};
  for (const s of M.scenarios) scenarioOf[s.name] = s;
  const loopOf = {};
  for (const l of M.loops) loopOf[l.id.toLowerCase()] = l;

  // ------------------------------------------------------------------ names and messages
  function distance(a, b) {
    const d = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = d[0]; d[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const tmp = d[j];
        d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = tmp;
      }
    }
    return d[b.length];
  }
  function didYouMean(raw, names) {
    const k = key(raw);
    const close = names.map((n) => [distance(k, key(n)), n]).filter(([d]) => d <= Math.max(2, k.length / 3))
      .sort((a, b) => a[0] - b[0]).slice(0, 3).map(([, n]) => `'${n}'`);
    return close.length ? ` Did you mean ${close.join(" or ")}?` : "";
  }
  function constantNamed(raw, where) {
    const c = byKey[key(raw)];
    if (!c) {
      throw new Error(`${where}: unknown constant '${raw}'.${didYouMean(raw, M.constants.map((x) => x.name))}`);
    }
    return c;
  }
  function checkValue(c, raw, where) {
    const v = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${where}: '${c.name}' must be a finite number; got ${JSON.stringify(raw)}`);
    if ((c.low !== null && v < c.low) || (c.high !== null && v > c.high)) {
      throw new Error(`${where}: ${v} for '${c.name}' is outside its range [${c.low ?? "?"}, ${c.high ?? "?"}]`);
    }
    return v;
  }
  function scenarioNamed(raw, where) {
    const s = scenarioOf[raw];
    if (!s) throw new Error(`${where}: unknown scenario '${raw}'.${didYouMean(raw, Object.keys(scenarioOf))} Scenarios: ${Object.keys(scenarioOf).join(", ")}`);
    return s;
  }
  function linkFlags(knockouts, where) {
    const cut = new Array(M.links.length).fill(0);
    for (const k of knockouts || []) {
      if (Array.isArray(k)) {
        const [s, t] = k.map((n) => { const v = M.variables.find((x) => key(x.name) === key(n) || key(x.py_name) === key(n)); return v ? v.py_name : (byKey[key(n)] || {}).py_name; });
        const j = M.links.findIndex(([a, b]) => a === s && b === t);
        if (j < 0) throw new Error(`${where}: the link ${JSON.stringify(k)} is not one the page can cut; it can cut: ${M.links.map((l) => l.join(" -> ")).join("; ") || "none"}`);
        cut[j] = 1;
      } else {
        const loop = loopOf[String(k).toLowerCase()];
        if (!loop) throw new Error(`${where}: unknown loop '${k}'.${didYouMean(String(k), M.loops.map((l) => l.id))} Loops: ${M.loops.map((l) => l.id).join(", ") || "none"}`);
        cut[loop.link] = 1;
      }
    }
    return cut;
  }

  // ------------------------------------------------------------------ the engine in a worker
  const WORKER_TAIL = `
self.onmessage = (e) => {
  const { id, options } = e.data;
  try {
    const t0 = performance.now();
    const r = crisisEngine.run(options);
    const ms = performance.now() - t0;
    self.postMessage({ id, time: r.time, values: r.values, width: r.width, bad: r.bad, redo: r.redo, ms },
                     [r.values.buffer, r.time.buffer]);
  } catch (err) {
    self.postMessage({ id, error: String(err && err.message || err) });
  }
};`;
  let worker = null;
  let where = null;  // where the last run ran: "worker" or "page"
  const waiting = new Map();
  let nextId = 1;
  function startWorker() {
    try {
      const url = URL.createObjectURL(new Blob([ENGINE_TEXT, WORKER_TAIL], { type: "text/javascript" }));
      worker = new Worker(url);
      worker.onmessage = (e) => {
        const job = waiting.get(e.data.id);
        waiting.delete(e.data.id);
        where = "worker";
        if (!job) return;
        if (e.data.error) job.reject(new Error(e.data.error)); else job.resolve(e.data);
      };
      worker.onerror = (e) => {
        // The worker could not start (a browser that refuses blob: workers): run in the page.
        worker = null;
        for (const [id, job] of waiting) { waiting.delete(id); runHere(job.options).then(job.resolve, job.reject); }
        e.preventDefault();
      };
    } catch (err) {
      worker = null;
    }
  }
  function runHere(options) {
    return new Promise((resolve, reject) => {
      try {
        where = "page";
        const t0 = performance.now();
        const r = window.crisisEngine.run(options);
        resolve({ time: r.time, values: r.values, width: r.width, bad: r.bad, redo: r.redo, ms: performance.now() - t0 });
      } catch (err) { reject(err); }
    });
  }
  function engineRun(options) {
    if (!worker) return runHere(options);
    return new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject, options });
      worker.postMessage({ id, options });
    });
  }

  function engineOptions(scenario, values, cut, finalTime) {
    const constants = Float64Array.from(window.crisisEngine.defaults);
    for (const [py, v] of Object.entries(scenario.constants)) constants[byPy[py].slot] = v;
    for (const [py, v] of Object.entries(values)) constants[byPy[py].slot] = v;
    const series = Object.entries(scenario.policies).filter(([py]) => !(py in values))
      .map(([py, [xs, ys]]) => [byPy[py].slot, xs, ys]);
    return Object.assign({}, scenario.time, { constants, series, cut, final_time: finalTime ?? scenario.time.final_time });
  }
  function column(result, py) {
    const j = window.crisisEngine.recordable.indexOf(py);
    const out = new Array(result.time.length);
    for (let s = 0; s < out.length; s++) { const v = result.values[s * result.width + j]; out[s] = Number.isFinite(v) ? v : null; }
    return out;
  }

  // ------------------------------------------------------------------ the public API
  function apiRun(params, options) {
    try {
      const o = options || {};
      const scenario = o.scenario === undefined ? scenarioOf[state.scenario] : scenarioNamed(o.scenario, "crisis.run: options.scenario");
      const values = {};
      for (const [raw, v] of Object.entries(params || {})) {
        const c = constantNamed(raw, "crisis.run");
        values[c.py_name] = checkValue(c, v, "crisis.run");
      }
      const cut = linkFlags(o.knockouts, "crisis.run: options.knockouts");
      let finalTime;
      if (o.final_time !== undefined) {
        finalTime = Number(o.final_time);
        if (!Number.isFinite(finalTime) || finalTime <= scenario.time.initial_time) {
          throw new Error(`crisis.run: options.final_time must be a number after the initial time ${scenario.time.initial_time}; got ${JSON.stringify(o.final_time)}`);
        }
      }
      const unknown = Object.keys(o).filter((k) => !["scenario", "knockouts", "final_time"].includes(k));
      if (unknown.length) throw new Error(`crisis.run: unknown option '${unknown[0]}'; options: scenario, knockouts, final_time`);
      return engineRun(engineOptions(scenario, values, cut, finalTime)).then((r) => {
        const out = {};
        for (const v of M.variables) out[v.py_name] = column(r, v.py_name);
        return { time: Array.from(r.time), values: out, bad: r.bad };
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // ------------------------------------------------------------------ page state
  const start = M.scenarios[0].name;
  const state = { scenario: start, values: {}, off: [] };
  const pins = [];
  let last = null;        // the last result drawn
  let fixedRanges = null; // y ranges kept by "Fix axes"

  function baseValue(py) {
    const s = scenarioOf[state.scenario];
    return py in s.constants ? s.constants[py] : byPy[py].default;
  }
  function currentValue(py) { return py in state.values ? state.values[py] : baseValue(py); }

  function fmt(v, step) {
    if (!Number.isFinite(v)) return String(v);
    const digits = step && step > 0 ? Math.min(6, Math.max(0, Math.ceil(-Math.log10(step) + 1e-9))) : 3;
    return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-4) ? v.toExponential(2) : v.toFixed(digits);
  }

  // ------------------------------------------------------------------ the address
  function encodeState() {
    const parts = [`scenario=${encodeURIComponent(state.scenario)}`];
    for (const [py, v] of Object.entries(state.values)) parts.push(`${encodeURIComponent(py)}=${encodeURIComponent(String(v))}`);
    if (state.off.length) parts.push(`off=${state.off.map(encodeURIComponent).join(",")}`);
    return "#" + parts.join("&");
  }
  function applySettings(settings, where, keepScenario) {
    // settings: {scenario, values: {name: value}, off: [ids]}; returns the problems (kept out).
    // Without a scenario: the first one (an address), or the current one (crisis.set).
    const problems = (settings.problems || []).slice();
    let scenario = keepScenario ? state.scenario : start;
    if (settings.scenario !== undefined) {
      try { scenario = scenarioNamed(settings.scenario, where).name; } catch (err) { problems.push(err.message); }
    }
    const values = {};
    for (const [raw, v] of Object.entries(settings.values || {})) {
      try {
        const c = constantNamed(raw, where);
        if (!c.lever) throw new Error(`${where}: '${c.name}' has no range and is not a lever`);
        values[c.py_name] = checkValue(c, v, where);
      } catch (err) { problems.push(err.message); }
    }
    const off = [];
    for (const id of settings.off || []) {
      const loop = loopOf[String(id).toLowerCase()];
      if (loop) off.push(loop.id); else problems.push(`${where}: unknown loop '${id}'.${didYouMean(String(id), M.loops.map((l) => l.id))}`);
    }
    state.scenario = scenario;
    state.values = values;
    state.off = off;
    return problems;
  }
  function decodeHash(hash) {
    const settings = { values: {}, off: [] };
    const text = hash.replace(/^#/, "");
    if (!text) return settings;
    for (const part of text.split("&")) {
      // A part without "=" is an anchor of the page around the simulator (the report's), not a setting.
      const i = part.indexOf("=");
      if (i < 0) continue;
      let k, v;
      try {
        k = decodeURIComponent(part.slice(0, i));
        v = decodeURIComponent(part.slice(i + 1));
      } catch (err) {
        (settings.problems = settings.problems || []).push(`address: '${part}' is not a valid setting (bad %-escape)`);
        continue;
      }
      if (k === "scenario") settings.scenario = v;
      else if (k === "off") settings.off = v.split(",").filter(Boolean);
      else settings.values[k] = v;
    }
    return settings;
  }
  let hashTimer = null;
  function writeHash() {
    clearTimeout(hashTimer);
    hashTimer = setTimeout(() => { try { history.replaceState(null, "", encodeState()); } catch (err) { /* file:// in some browsers */ } }, 150);
  }

  // ------------------------------------------------------------------ controls
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const sliders = {};
  function lever(c) {
    const row = el("div", { class: "lever", "data-name": key(c.name) + " " + key(c.py_name) });
    const id = "lever-" + c.py_name;
    const label = el("label", { for: id, title: c.comment || c.name }, c.name);
    const output = el("output", { for: id });
    const input = el("input", { type: "range", id, min: c.low, max: c.high, step: c.step, "data-py": c.py_name });
    input.addEventListener("input", () => {
      const v = Number(input.value);
      if (Math.abs(v - baseValue(c.py_name)) < 1e-12 * Math.max(1, Math.abs(v))) delete state.values[c.py_name];
      else state.values[c.py_name] = v;
      showValue(c);
      changed();
    });
    row.append(label, output, input);
    sliders[c.py_name] = { c, row, input, output, copies: [] };
    return row;
  }
  function showValue(c) {
    const s = sliders[c.py_name];
    const v = currentValue(c.py_name);
    const text = fmt(v, c.step) + (c.units ? " " + c.units : "");
    for (const target of [s, ...s.copies]) {
      target.output.textContent = text;
      if (Number(target.input.value) !== v) target.input.value = v;
      target.row.classList.toggle("moved", c.py_name in state.values);
    }
  }
  function buildControls() {
    const select = document.getElementById("scenario");
    for (const s of M.scenarios) select.append(el("option", { value: s.name }, s.name));
    select.addEventListener("change", () => { state.scenario = select.value; state.values = {}; refreshControls(); changed(); });
    const sectors = document.getElementById("sectors");
    for (const sector of M.sectors) {
      const group = el("details", { class: "sector" });
      const items = M.constants.filter((c) => c.lever && c.sector === sector);
      group.append(el("summary", {}, `${sector} (${items.length})`));
      for (const c of items) group.append(lever(c));
      sectors.append(group);
    }
    const switches = document.querySelector("#loops .switches");
    if (!M.loops.length) document.getElementById("loops").classList.add("hidden");
    for (const loop of M.loops) {
      const label = el("label", { class: "switch", title: loop.label });
      const box = el("input", { type: "checkbox", "data-loop": loop.id });
      box.checked = true;
      box.addEventListener("change", () => {
        state.off = M.loops.filter((l) => !document.querySelector(`input[data-loop="${l.id}"]`).checked).map((l) => l.id);
        changed();
      });
      label.append(box, document.createTextNode(` ${loop.id} ${loop.name} (${loop.polarity})`));
      switches.append(label);
    }
    document.getElementById("lever-search").addEventListener("input", (e) => {
      const q = key(e.target.value);
      for (const group of sectors.children) {
        let shown = 0;
        for (const row of group.querySelectorAll(".lever")) {
          const hit = !q || row.dataset.name.includes(q);
          row.classList.toggle("hidden", !hit);
          shown += hit;
        }
        group.classList.toggle("hidden", shown === 0);
        if (q) group.open = shown > 0;
      }
    });
    document.getElementById("reset").addEventListener("click", () => { state.values = {}; state.off = []; refreshControls(); changed(); });
    document.getElementById("pin").addEventListener("click", pin);
    document.getElementById("clear-pins").addEventListener("click", () => { pins.length = 0; redraw(); });
    document.getElementById("fix-axes").addEventListener("change", (e) => {
      fixedRanges = e.target.checked ? currentRanges() : null;
      chartKey = "";  // new charts: their y ranges come from fixedRanges, or from the data again
      redraw();
    });
    document.getElementById("export").addEventListener("click", exportScenario);
    const description = document.getElementById("description");
    description.addEventListener("click", () => description.classList.toggle("open"));
  }
  function refreshControls() {
    document.getElementById("scenario").value = state.scenario;
    const scenario = scenarioOf[state.scenario];
    document.getElementById("description").textContent = scenario.description;
    // The scenario's own levers first: copies of their sliders, linked to the originals.
    const box = document.querySelector("#scenario-levers .levers");
    box.replaceChildren();
    for (const s of Object.values(sliders)) s.copies = [];
    const own = Object.keys(scenario.constants).filter((py) => byPy[py] && byPy[py].lever);
    document.getElementById("scenario-levers").classList.toggle("hidden", own.length === 0);
    for (const py of own) {
      const original = sliders[py];
      const row = original.row.cloneNode(true);
      const input = row.querySelector("input");
      input.id = "own-" + py;
      row.querySelector("label").setAttribute("for", input.id);
      input.addEventListener("input", () => { original.input.value = input.value; original.input.dispatchEvent(new Event("input")); });
      original.copies.push({ row, input, output: row.querySelector("output") });
      box.append(row);
    }
    for (const s of Object.values(sliders)) showValue(s.c);
    for (const loop of M.loops) document.querySelector(`input[data-loop="${loop.id}"]`).checked = !state.off.includes(loop.id);
  }

  // ------------------------------------------------------------------ runs and drawing
  let busy = false;
  let queued = null;
  let pressedAt = null;
  function changed() {
    pressedAt = pressedAt ?? performance.now();
    writeHash();
    schedule();
  }
  function schedule() {
    // At most one run in flight and one queued: slider values passed over are dropped.
    queued = { scenario: state.scenario, values: Object.assign({}, state.values), off: state.off.slice(), since: pressedAt };
    pressedAt = null;
    if (!busy) pump();
  }
  async function pump() {
    busy = true;
    while (queued) {
      const job = queued;
      queued = null;
      const cut = linkFlags(job.off, "loop switches");
      try {
        const r = await engineRun(engineOptions(scenarioOf[job.scenario], job.values, cut));
        last = { job, result: r, label: runLabel(job) };
        redraw(job.since, r.ms);
      } catch (err) {
        status(`The run failed: ${err.message}`, true);
      }
    }
    busy = false;
  }
  function runLabel(job) {
    const moved = Object.keys(job.values).length;
    return `${job.scenario}` + (moved ? `, ${moved} lever${moved > 1 ? "s" : ""} moved` : "") +
      (job.off.length ? `, cut ${job.off.join(" ")}` : "");
  }
  function status(text, error) {
    const node = document.getElementById("status");
    node.textContent = text;
    node.classList.toggle("error", !!error);
  }
  function pin() {
    if (!last) return;
    if (pins.length >= MAX_PINS) pins.shift();
    pins.push({ label: last.label, time: Array.from(last.result.time), columns: M.panels.map((py) => column(last.result, py)) });
    redraw();
  }
  // The figure: one uPlot chart per panel (small multiples). uPlot draws on a canvas in a
  // few milliseconds; Plotly's SVG redraw of the same panels took 40-60 ms on the machine
  // the benchmarks run on, more than the whole budget of a slider move.
  let charts = [];
  let chartKey = "";
  function currentRanges() {
    return charts.map((u) => [u.scales.y.min, u.scales.y.max]);
  }
  function niceRange(min, max) {
    if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
    if (min === max) { const pad = Math.abs(min) * 0.05 || 0.5; return [min - pad, max + pad]; }
    const pad = (max - min) * 0.06;
    return [min - pad, max + pad];
  }
  function tick(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1e5 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
  }
  function buildCharts(runs) {
    const box = document.getElementById("figure");
    for (const u of charts) u.destroy();
    box.replaceChildren();
    const narrow = window.innerWidth < 900;
    const cols = narrow ? 1 : 2;
    const rows = Math.ceil(M.panels.length / cols);
    const width = Math.max(200, Math.floor((box.clientWidth - (cols - 1) * 10) / cols));
    const height = narrow ? 190 : Math.max(120, Math.floor((box.clientHeight - rows * 18) / rows) - 2);
    box.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    charts = M.panels.map((py, i) => {
      const v = variableOf[py];
      const cell = el("div", { class: "panel", "data-variable": py });
      cell.append(el("div", { class: "panel-title", title: v.py_name }, v.name + (v.units ? ` (${v.units})` : "")));
      box.append(cell);
      const opts = {
        width, height,
        legend: { show: false },
        cursor: { sync: { key: "crisis" }, drag: { x: false, y: false }, points: { size: 5 } },
        scales: { x: { time: false }, y: { range: (u, min, max) => (fixedRanges && fixedRanges[i]) ? fixedRanges[i] : niceRange(min, max) } },
        axes: [
          { size: 24, gap: 2, font: "11px system-ui, sans-serif", grid: { stroke: "#eef0f5" }, ticks: { show: false } },
          { size: 48, gap: 3, space: 22, font: "11px system-ui, sans-serif", grid: { stroke: "#eef0f5" }, ticks: { show: false },
            values: (u, splits) => splits.map(tick) },
        ],
        series: [{}, ...runs.map((r) => ({ label: r.label, stroke: r.colour, width: r.width, points: { show: false } }))],
        hooks: { setCursor: [(u) => readout(u, i)], draw: [(u) => drawEvents(u, i === 0)] },
      };
      return new uPlot(opts, [runs[0].time, ...runs.map((r) => r.columns[i])], cell);
    });
    chartKey = runs.map((r) => r.colour + r.time.length).join() + "|" + narrow + "|" + box.clientWidth;
  }
  // The current scenario's declared events ([events] in its TOML): a shaded window, or a
  // dotted line at a moment; their labels on the first panel only.
  function drawEvents(u, labelled) {
    const scenario = scenarioOf[state.scenario];
    const events = (scenario && scenario.events) || [];
    if (!events.length) return;
    const ctx = u.ctx;
    const top = u.bbox.top, height = u.bbox.height;
    ctx.save();
    for (const e of events) {
      const x0 = u.valToPos(e.start, "x", true), x1 = u.valToPos(e.end, "x", true);
      if (e.end > e.start) {
        ctx.fillStyle = e.name === "crisis" ? "rgba(128,128,128,0.10)" : "rgba(214,39,40,0.10)";
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      } else {
        ctx.strokeStyle = "#888";
        ctx.setLineDash([3, 3]);
        ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(x0, top); ctx.lineTo(x0, top + height); ctx.stroke();
        ctx.setLineDash([]);
      }
      if (labelled) {
        ctx.fillStyle = "#555";
        ctx.textAlign = "left";
        ctx.textBaseline = "alphabetic";
        ctx.font = `${Math.round(10 * devicePixelRatio)}px system-ui, sans-serif`;
        const y = e.name === "crisis" ? top + height - 4 * devicePixelRatio : top + 11 * devicePixelRatio;
        ctx.fillText(e.label || e.name, x0 + 3 * devicePixelRatio, y);
      }
    }
    ctx.restore();
  }
  function readout(u, i) {
    const node = document.getElementById("readout");
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined) { node.textContent = ""; return; }
    const v = variableOf[M.panels[i]];
    const parts = u.series.slice(1).map((s, k) => `${s.label.split(":")[0]} ${u.data[k + 1][idx] === null ? "n/a" : tick(u.data[k + 1][idx])}`);
    node.textContent = `${v.name} at ${tick(u.data[0][idx])}: ${parts.join(" \u00b7 ")}`;
  }
  function redraw(since, simulationMs) {
    if (!last) return;
    const t0 = performance.now();
    const runs = [...pins.map((p, k) => ({ label: "Pin " + (k + 1) + ": " + p.label, time: p.time, columns: p.columns, colour: PALETTE[k + 1], width: 1.5 })),
      { label: "Now: " + last.label, time: Array.from(last.result.time), columns: M.panels.map((py) => column(last.result, py)), colour: PALETTE[0], width: 2.2 }];
    const legend = document.getElementById("legend");
    legend.replaceChildren(...runs.map((r) => { const item = el("span", {}); const sw = el("span", { class: "swatch" }); sw.style.background = r.colour; item.append(sw, document.createTextNode(r.label)); return item; }));
    const t1 = performance.now();
    const box = document.getElementById("figure");
    const key = runs.map((r) => r.colour + r.time.length).join() + "|" + (window.innerWidth < 900) + "|" + box.clientWidth;
    if (key !== chartKey || charts.length !== M.panels.length) {
      buildCharts(runs);
    } else {
      charts.forEach((u, i) => {
        for (let k = 0; k < runs.length; k++) u.series[k + 1].label = runs[k].label;
        u.setData([runs[0].time, ...runs.map((r) => r.columns[i])]);
      });
    }
    const plotMs = performance.now() - t1;
    const bad = last.result.bad;
    if (bad) {
      const v = variableOf[bad.name];
      status(`This run went non-finite: '${v ? v.name : bad.name}' at time ${bad.time}. The figure shows it up to there; move a lever back to recover.`, true);
    } else if (last.result.redo) {
      status("A DELAY here is shorter than its order times the time step; PySD would lower its order, so these numbers differ from `crisis run`.", true);
    } else {
      const first = api.lastDraw === null ? " (the first run includes the browser compiling the model)" : "";
      status(`Simulated in ${Math.round(simulationMs ?? last.result.ms)} ms in your browser${first}.`);
    }
    const now = performance.now();
    const job = last.job;
    api.lastDraw = { ms: since != null ? now - since : null, simulation_ms: last.result.ms, draw_ms: now - t0, plot_ms: plotMs, at: now,
      settings: { scenario: job.scenario, values: Object.assign({}, job.values), off: job.off.slice() } };
    if (resolveReady) { resolveReady(); resolveReady = null; }
  }

  // ------------------------------------------------------------------ export
  function tomlString(s) { return JSON.stringify(String(s)); }
  function exportScenario() {
    const scenario = scenarioOf[state.scenario];
    const lines = [`# Exported from crisis web (${M.name}), from scenario '${scenario.name}'`,
      `description = ${tomlString(`Scenario '${scenario.name}' with ${Object.keys(state.values).length} lever(s) moved in crisis web` + (state.off.length ? `; loops cut in the page (${state.off.join(", ")}) are not part of a scenario` : ""))}`,
      "", "[params]"];
    const params = Object.assign({}, scenario.constants, state.values);
    for (const [py, v] of Object.entries(params)) lines.push(`${tomlString(byPy[py].name)} = ${Number(v)}`);
    const policies = Object.entries(scenario.policies).filter(([py]) => !(py in state.values));
    if (policies.length) {
      lines.push("", "[policies]");
      for (const [py, [xs, ys]] of policies) lines.push(`${tomlString(byPy[py].name)} = { time = [${xs.join(", ")}], value = [${ys.join(", ")}] }`);
    }
    lines.push("", "[time]");
    for (const k of ["final_time", "time_step", "saveper"]) lines.push(`${k} = ${scenario.time[k]}`);
    const blob = new Blob([lines.join("\n") + "\n"], { type: "application/toml" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${scenario.name}_web.toml` });
    document.body.append(a);
    a.click();
    a.remove();
    api.lastExport = lines.join("\n") + "\n";
  }

  // ------------------------------------------------------------------ start
  let resolveReady = null;
  const api = {
    model: M,
    run: apiRun,
    ready: new Promise((resolve) => { resolveReady = resolve; }),
    state: () => JSON.parse(JSON.stringify(state)),
    set: (settings) => { const problems = applySettings(settings, "crisis.set", true); refreshControls(); changed(); return problems; },
    lastDraw: null,
    lastExport: null,
    ranges: () => currentRanges(),
    drawn: () => charts.map((u) => u.data.slice(1).map((col) => Array.from(col, (v) => (v === null ? NaN : v)))),
  };
  Object.defineProperty(api, "engine", { get: () => where, enumerable: true });
  window.crisis = api;
  startWorker();
  buildControls();
  const problems = applySettings(decodeHash(location.hash), "address");
  refreshControls();
  schedule();
  if (problems.length) {
    api.ready.then(() => status("Ignored from the address: " + problems.join(" "), true));
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { chartKey = ""; redraw(); }, 150); });
  window.addEventListener("hashchange", () => {
    if (location.hash === encodeState()) return;
    const found = applySettings(decodeHash(location.hash), "address");
    refreshControls();
    changed();
    if (found.length) status("Ignored from the address: " + found.join(" "), true);
  });
})();
