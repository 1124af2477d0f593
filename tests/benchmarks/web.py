"""`crisis web` speed, measured in headless chromium (benchmarks, not tests).

    python -m tests.benchmarks.web [--models reformism,goodwin,keen,keen_boom_bust] [--moves 30] [--skip-app]
                                   [--output out/benchmarks/web.json]

For each case, the model's page (`crisis web`, opening on the case's scenario: the baseline,
or Keen's own settings, 100 years; and Keen's 300-year boom_bust for scale) is opened from file:// and:

- one in-page simulation: ``crisis.run({})`` from the page, through the Web Worker, at the
  model's own time step (reformism: 1/1024 over 100 years, 102,400 steps), median of 15
  after five warm-up runs; and the engine's own time inside the worker;
- key press on a slider to redrawn figure, p50 and p95: each press from a page at rest
  moves `SLIDER` one step; the time is taken in the page from the slider's input event to
  the end of ``Plotly.react`` for the run of that value (``crisis.lastDraw.ms``);
- page size and generated engine size.

Baselines measured in the same run: the numba kernel's single run of the same model and
settings (the JavaScript engine's speed as a ratio to it), and for reformism the live
Dash app's slider move (tests.benchmarks.dashboards.bench_app; ``--skip-app`` leaves it out).

Targets (issue 17): reformism p95 <= 100 ms (aiming at En-ROADS' 60 ms); Goodwin and Keen
p95 <= 30 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import print_and_save
from ..dashboards.browser import launch, missing_browser

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    "reformism": ("models/reformism/reformism.mdl", "baseline", "government_resolve", 100.0),
    "goodwin": ("models/goodwin/goodwin.mdl", "baseline", "phillips_slope", 30.0),
    "keen": ("models/keen/keen.mdl", "defaults", "phillips_curve_curvature", 30.0),
    "keen_boom_bust": ("models/keen/keen.mdl", "boom_bust", "phillips_curve_curvature", None),
}
SETTLE_MS = 300
SETTLED = """() => window.crisis && window.crisis.lastDraw !== null &&
    JSON.stringify(window.crisis.lastDraw.settings) === JSON.stringify(window.crisis.state())"""
RUN_TIMES = """async (n) => {
    const wall = [];
    for (let i = 0; i < n + 5; i++) {
        const t0 = performance.now();
        await window.crisis.run({});
        if (i >= 5) wall.push(performance.now() - t0);
    }
    return wall;
}"""


def _q(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q))


def bench_model(browser, name: str, moves: int, folder: Path) -> dict:
    from dashboards.web import write_web
    from pysd_runner import compile_model, scenario_inputs, web_engine
    from pysd_runner.kernel import kernel_for

    mdl, scenario, slider, target = MODELS[name]
    model = compile_model(ROOT / mdl)
    path = write_web(folder / f"{name}.html", model, None if scenario == "defaults" else [scenario])
    engine = web_engine(model)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    started = time.perf_counter()
    page.goto(path.as_uri() + f"#scenario={scenario}")
    page.wait_for_function(SETTLED, timeout=60_000)
    first_draw = time.perf_counter() - started
    wall = page.evaluate(RUN_TIMES, 15)
    page.evaluate(f"() => {{ const d = document.getElementById('lever-{slider}').closest('details'); if (d) d.open = true; }}")
    page.locator(f"#lever-{slider}").focus()
    redraw, simulate, draw = [], [], []
    for k in range(moves):
        page.wait_for_timeout(SETTLE_MS)
        page.keyboard.press("ArrowRight" if (k // 10) % 2 == 0 else "ArrowLeft")
        page.wait_for_function(SETTLED, timeout=60_000)
        last = page.evaluate("() => window.crisis.lastDraw")
        if last["ms"] is not None:
            redraw.append(last["ms"])
            simulate.append(last["simulation_ms"])
            draw.append(last["draw_ms"])
    page.close()
    # Baseline: the numba kernel's run of the same model and settings, in this process.
    kernel = kernel_for(model)
    inputs = scenario_inputs(model, None if scenario == "defaults" else scenario)
    settings, fixed = inputs["time"], inputs["constants"]
    kernel.run({}, 1, fixed, settings, kernel.recordable)
    numba = []
    for _ in range(15):
        t0 = time.perf_counter()
        kernel.run({}, 1, fixed, settings, kernel.recordable, threads=1)
        numba.append((time.perf_counter() - t0) * 1000)
    steps = int(round((settings["final_time"] - settings["initial_time"]) / settings["time_step"]))
    return {
        "model": mdl, "scenario": scenario, "steps": steps, "slider": slider, "moves": len(redraw),
        "page_mb": path.stat().st_size / 1e6, "engine_kb": len(engine.source.encode()) / 1e3,
        "open_to_first_draw_s": first_draw,
        "run_ms_median": statistics.median(wall), "run_ms_p95": _q(wall, 95),
        "engine_ms_median": statistics.median(simulate) if simulate else float("nan"),
        "draw_ms_median": statistics.median(draw) if draw else float("nan"),
        "redraw_ms_p50": _q(redraw, 50), "redraw_ms_p95": _q(redraw, 95), "redraw_ms_max": max(redraw),
        "numba_run_ms_median": statistics.median(numba),
        "target_p95_ms": target,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--skip-app", action="store_true", help="leave out the live app's baseline")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "benchmarks" / "web.json")
    args = parser.parse_args(argv)
    reason = missing_browser()
    if reason:
        print(f"cannot benchmark in a browser: {reason}", file=sys.stderr)
        return 1
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model '{unknown[0]}'; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    results: dict = {}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = launch(playwright)
        for name in names:
            results[name] = bench_model(browser, name, args.moves, Path(tmp))
        if "reformism" in names and not args.skip_app:
            from . import dashboards

            dashboards.CASE = dashboards.CASES["reformism"]
            results["app_baseline"] = dashboards.bench_app(browser, args.moves)
        browser.close()
    rows = []
    for name in names:
        r = results[name]
        target = r["target_p95_ms"]
        ok = "" if target is None else (f"<= {target:.0f} ms " + ("ok" if r["redraw_ms_p95"] <= target else "MISSED"))
        rows += [
            (f"{name} ({r['steps']:,} steps): one in-page run (worker), median", f"{r['run_ms_median']:.1f} ms",
             f"{r['run_ms_median'] / r['numba_run_ms_median']:.1f}x the numba kernel's {r['numba_run_ms_median']:.1f} ms"),
            (f"{name}: key press -> redrawn figure, p50", f"{r['redraw_ms_p50']:.0f} ms",
             f"engine {r['engine_ms_median']:.0f} ms + drawing {r['draw_ms_median']:.0f} ms (medians)"),
            (f"{name}: key press -> redrawn figure, p95", f"{r['redraw_ms_p95']:.0f} ms", ok or "(no target)"),
            (f"{name}: page size / generated engine", f"{r['page_mb']:.2f} MB", f"engine {r['engine_kb']:.0f} kB"),
            (f"{name}: open to first figure drawn", f"{r['open_to_first_draw_s']:.2f} s", ""),
        ]
    if "app_baseline" in results:
        a, r = results["app_baseline"], results["reformism"]
        rows += [
            ("reformism, live Dash app (baseline): slider -> redrawn figure, p50", f"{a['redraw_ms_p50']:.0f} ms",
             f"the page is {a['redraw_ms_p50'] / r['redraw_ms_p50']:.1f}x faster"),
            ("reformism, live Dash app (baseline): slider -> redrawn figure, p95", f"{a['redraw_ms_p95']:.0f} ms",
             f"the page is {a['redraw_ms_p95'] / r['redraw_ms_p95']:.1f}x faster"),
        ]
    print_and_save(rows, results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
