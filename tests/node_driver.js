// Runs generated engines under Node for the tests: node node_driver.js cases.json
// Each case: {engine: path of a generated .js, options: crisisEngine.run options, want: [python names]}.
// Prints one JSON list: per case {time, values: {name: [...]}, redo, bad}; non-finite values as strings.
"use strict";
const fs = require("fs");
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const results = [];
for (const c of cases) {
  const engine = require(c.engine);
  const options = Object.assign({}, c.options);
  if (options.held) options.held = options.held.map((v) => (v === null ? NaN : v));
  if (options.constants) options.constants = Float64Array.from(options.constants);
  const r = engine.run(options);
  const values = {};
  for (const name of c.want || engine.recordable) {
    const j = engine.recordable.indexOf(name);
    if (j < 0) throw new Error(`${c.engine}: '${name}' is not recordable`);
    const column = new Array(r.time.length);
    for (let s = 0; s < r.time.length; s++) {
      const v = r.values[s * r.width + j];
      column[s] = Number.isFinite(v) ? v : String(v);
    }
    values[name] = column;
  }
  results.push({ time: Array.from(r.time), values, redo: r.redo, bad: r.bad });
}
process.stdout.write(JSON.stringify(results));
