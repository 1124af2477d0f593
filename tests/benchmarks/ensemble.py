"""Ensemble engine speed, as ratios measured in the same run (benchmarks, not tests).

    python -m tests.benchmarks.ensemble [--members 10000] [--loop-runs 50] [--dask-members 200000]
                                        [--skip-dask] [--output out/benchmarks/ensemble.json]

Figures (issue 4 targets in brackets):

- an ensemble of N members (5 varied constants, full default horizon) against a loop of
  plain ``pysd`` ``model.run(params=...)`` calls, on the compiled kernel (the default
  engine) and on the vectorised numpy pass; the loop is timed over ``--loop-runs`` runs
  and scaled to N  [>= 300x goodwin, >= 100x reformism];
- the same Goodwin ensemble against a hand-written numpy Euler implementation of the same
  equations (the practical floor of a numpy engine)  [within 2x];
- time against members, N = 1 ... 100k;
- a Dask local cluster with 1 and 2 workers on a large ensemble  [2 workers >= 1.6x].
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GOODWIN = ROOT / "models" / "goodwin" / "goodwin.mdl"
REFORMISM = ROOT / "models" / "reformism" / "reformism.mdl"
GOODWIN_PARAMS = ["phillips slope", "phillips intercept", "capital output ratio",
                  "productivity growth rate", "labour force growth rate"]
TARGETS = {"goodwin_vs_pysd": 300.0, "reformism_vs_pysd": 100.0, "goodwin_vs_numpy_max": 2.0, "dask_2_vs_1": 1.6}


def _narrow_samples(model, names, n, seed):
    """Latin hypercube within the middle fifth of each range around the default (members stay finite)."""
    from pysd_runner import sample

    bounds = {}
    for name in names:
        element = model.resolve(name, kinds=("constant",))
        lo, hi = element.limits
        width = 0.1 * (hi - lo)
        centre = element.default
        bounds[name] = (max(lo, centre - width), min(hi, centre + width))
    return sample(model, names, method="lhs", n=n, seed=seed, bounds=bounds)


def _pysd_loop(model, samples, runs: int, outputs) -> float:
    """Seconds per plain PySD run with ``model.run(params=...)``."""
    import pysd

    plain = pysd.load(str(model.py_file))
    vensim = [model.elements[o].name for o in outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        for i in range(runs):
            plain.run(params={k: float(samples[k].iloc[i]) for k in samples.columns}, return_columns=vensim,
                      reload=True)
        return (time.perf_counter() - start) / runs


def _ensemble(model, samples, outputs, engine="compiled", **kwargs) -> float:
    from pysd_runner import run_ensemble

    start = time.perf_counter()
    result = run_ensemble(model, samples, variables=outputs, engine=engine, **kwargs)
    elapsed = time.perf_counter() - start
    assert result.attrs["engine"] == engine, result.attrs["engine"]
    return elapsed


def goodwin_numpy(samples, model, outputs=("wage_share", "employment_rate")) -> float:
    """The Goodwin equations written by hand in numpy, Euler with the model's step and save period."""
    c = {e.py_name: e.default for e in model.constants}
    get = lambda name: samples[name].to_numpy() if name in samples else c[name]  # noqa: E731
    sigma, alpha, beta = get("capital_output_ratio"), get("productivity_growth_rate"), get("labour_force_growth_rate")
    delta, gamma, rho = get("depreciation_rate"), get("phillips_intercept"), get("phillips_slope")
    n = len(samples)
    dt, saveper = model.control["time_step"], model.control["saveper"]
    steps = int(round((model.control["final_time"] - model.control["initial_time"]) / dt))
    every = int(round(saveper / dt))
    start = time.perf_counter()
    u = np.full(n, c["initial_wage_share"])
    v = np.full(n, c["initial_employment_rate"])
    out = {name: np.empty((steps // every + 1, n)) for name in outputs}
    for k in range(steps + 1):
        if k % every == 0:
            out["wage_share"][k // every] = u
            out["employment_rate"][k // every] = v
        if k == steps:
            break
        du = u * (rho * v - gamma - alpha)
        dv = v * ((1 - u) / sigma - delta - alpha - beta)
        u = u + du * dt
        v = v + dv * dt
    return time.perf_counter() - start


def _dask(model, samples, outputs, workers: int) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        # Warm the workers (imports, translation) before timing.
        _ensemble(model, samples.iloc[: 2 * workers], outputs, executor=client, chunk_size=1)
        return _ensemble(model, samples, outputs, executor=client, chunk_size=max(1, len(samples) // (8 * workers)))


def main(argv: list[str] | None = None) -> int:
    from pysd_runner import compile_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--loop-runs", type=int, default=50)
    parser.add_argument("--scaling", default="1,10,100,1000,10000,100000")
    parser.add_argument("--dask-members", type=int, default=200_000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="Best of this many timings per figure.")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "benchmarks" / "ensemble.json")
    args = parser.parse_args(argv)
    rows, results = [], {}

    goodwin = compile_model(GOODWIN)
    outputs = ["wage_share", "employment_rate"]
    samples = _narrow_samples(goodwin, GOODWIN_PARAMS, args.members, seed=1)
    per_run = _pysd_loop(goodwin, samples, args.loop_runs, outputs)
    # Best of a few repeats, interleaved, so that both sides see the same machine load.
    _ensemble(goodwin, samples.iloc[:2], outputs)  # load the compiled kernel before timing
    compiled, vector, floor = float("inf"), float("inf"), float("inf")
    for _ in range(args.repeats):
        compiled = min(compiled, _ensemble(goodwin, samples, outputs))
        vector = min(vector, _ensemble(goodwin, samples, outputs, engine="vectorised"))
        floor = min(floor, goodwin_numpy(samples, goodwin))
    results["goodwin"] = {"members": args.members, "pysd_loop_s_per_run": per_run, "compiled_s": compiled,
                          "vectorised_s": vector, "numpy_floor_s": floor,
                          "vs_pysd": per_run * args.members / compiled,
                          "vectorised_vs_pysd": per_run * args.members / vector,
                          "vs_numpy": compiled / floor, "vectorised_vs_numpy": vector / floor}
    rows.append(("goodwin: compiled ensemble vs PySD loop (speed-up)", results["goodwin"]["vs_pysd"],
                 f">= {TARGETS['goodwin_vs_pysd']:g}x", results["goodwin"]["vs_pysd"] >= TARGETS["goodwin_vs_pysd"]))
    rows.append(("goodwin: vectorised ensemble vs PySD loop (speed-up)", results["goodwin"]["vectorised_vs_pysd"],
                 "", None))
    rows.append(("goodwin: compiled ensemble / numpy floor (time ratio)", results["goodwin"]["vs_numpy"],
                 f"<= {TARGETS['goodwin_vs_numpy_max']:g}x", results["goodwin"]["vs_numpy"] <= TARGETS["goodwin_vs_numpy_max"]))
    rows.append(("goodwin: vectorised ensemble / numpy floor (time ratio)", results["goodwin"]["vectorised_vs_numpy"],
                 f"<= {TARGETS['goodwin_vs_numpy_max']:g}x",
                 results["goodwin"]["vectorised_vs_numpy"] <= TARGETS["goodwin_vs_numpy_max"]))

    if REFORMISM.exists():
        reformism = compile_model(REFORMISM)
        names = [e.name for e in reformism.constants if e.limits[0] is not None and e.limits[1] is not None][:5]
        r_out = [e.py_name for e in reformism.stocks][:5]
        r_samples = _narrow_samples(reformism, names, args.members, seed=2)
        r_per_run = _pysd_loop(reformism, r_samples, max(5, args.loop_runs // 5), r_out)
        _ensemble(reformism, r_samples.iloc[:2], r_out)  # load the compiled kernel before timing
        r_compiled = _ensemble(reformism, r_samples, r_out)
        # The numpy pass is timed on (at most) 1,000 members: at 10,000 it takes minutes.
        r_small = r_samples.iloc[: min(1000, len(r_samples))]
        r_vector = _ensemble(reformism, r_small, r_out, engine="vectorised")
        results["reformism"] = {"members": args.members, "varied": names, "pysd_loop_s_per_run": r_per_run,
                                "compiled_s": r_compiled, "vectorised_members": len(r_small), "vectorised_s": r_vector,
                                "vs_pysd": r_per_run * args.members / r_compiled,
                                "vectorised_vs_pysd": r_per_run * len(r_small) / r_vector}
        rows.append(("reformism: compiled ensemble vs PySD loop (speed-up)", results["reformism"]["vs_pysd"],
                     f">= {TARGETS['reformism_vs_pysd']:g}x", results["reformism"]["vs_pysd"] >= TARGETS["reformism_vs_pysd"]))
        rows.append((f"reformism: vectorised ensemble of {len(r_small):,} vs PySD loop (speed-up)",
                     results["reformism"]["vectorised_vs_pysd"], "", None))

    scaling = {}
    for n in [int(x) for x in args.scaling.split(",") if x]:
        s = _narrow_samples(goodwin, GOODWIN_PARAMS, n, seed=3)
        scaling[n] = min(_ensemble(goodwin, s, ["wage_share"]) for _ in range(args.repeats if n <= 10_000 else 1))
    results["scaling_s"] = scaling
    for n, seconds in scaling.items():
        rows.append((f"goodwin: {n:,} members (s, per member {seconds / n * 1e3:.3g} ms)", seconds, "", None))

    if not args.skip_dask:
        big = _narrow_samples(goodwin, GOODWIN_PARAMS, args.dask_members, seed=4)
        one = _dask(goodwin, big, ["wage_share"], 1)
        two = _dask(goodwin, big, ["wage_share"], 2)
        results["dask"] = {"members": args.dask_members, "one_worker_s": one, "two_workers_s": two, "speed_up": one / two}
        rows.append((f"dask: 2 vs 1 workers on {args.dask_members:,} members (speed-up)", one / two,
                     f">= {TARGETS['dask_2_vs_1']:g}x", one / two >= TARGETS["dask_2_vs_1"]))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"targets": TARGETS, "results": results}, indent=2, default=str))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  {'target':>9}  met")
    for label, value, target, met in rows:
        flag = "" if met is None else ("yes" if met else "NO")
        print(f"{label:<{width}}  {value:>10.3g}  {target:>9}  {flag}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
