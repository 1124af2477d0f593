"""Calibration speed (a benchmark, not a test).

    python -m tests.benchmarks.calibration [--spec models/keen/calibration/us.toml ...]
                                           [--plain-popsize 2] [--output out/benchmarks/calibration.json]

Figures (issue 5 targets in brackets):

- wall time of each spec's differential-evolution calibration as shipped (fit, polish,
  profile intervals, bands)  [reformism US < 60 s];
- seconds per objective evaluation: the vectorised objective (a whole DE population in one
  ``run_ensemble`` pass) against scipy's differential evolution over plain PySD runs (one
  ``model.run(params=...)`` per member, the classic notebook approach), timed over a few
  generations of the latter in the same process  [>= 50x].
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SPECS = [ROOT / "models" / "keen" / "calibration" / "us.toml", ROOT / "models" / "reformism" / "calibration" / "us.toml"]
TARGET_RATIO = 50.0
TARGET_SECONDS = 60.0


def _plain_objective(problem):
    """The same negative log-likelihood, one plain PySD run per evaluation."""
    import pysd
    from pysd_runner import load_scenario

    spec = problem.spec
    plain = pysd.load(str(spec.model.py_file))
    base = {}
    if spec.scenario:
        scenario = load_scenario(spec.scenario, spec.model)
        base.update(scenario.params)
    base.update(spec.fixed)
    columns = [spec.model.elements[v].name for v in problem.variables]

    def objective(z):
        values = np.column_stack([p.to_model(np.atleast_1d(z[j])) for j, p in enumerate(problem.parameters)])[0]
        # Model constants go to PySD; measurement terms (scale, offset) map its output to the data.
        params = {**base, **{p.name: v for p, v in zip(problem.parameters, values) if p.is_model}}
        terms = {(p.observation, p.kind): v for p, v in zip(problem.parameters, values) if not p.is_model}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = plain.run(params=params, return_columns=columns, reload=True, **problem.settings)
        calendar = spec.origin + (frame.index.to_numpy(float) - problem.t0)
        sims = []
        for target in problem.targets:
            obs = target.observation
            series = frame[spec.model.elements[obs.variable].name].to_numpy(float)
            series = terms.get((obs.name, "scale"), obs.scale) * series + terms.get((obs.name, "offset"), obs.offset)
            sims.append(np.interp(target.times, calendar, series)[None, :])
        # The plausibility penalty is left out: it costs a few array comparisons per run.
        return float(problem.nll_from_ssr(problem.ssr(sims))[0])

    return objective


def measure(spec_path: Path, plain_popsize: int) -> dict:
    from scipy.optimize import differential_evolution

    from calibration import calibrate, load_spec
    from calibration.checkpoint import Store
    from calibration.methods import Objective
    from calibration.problem import Problem

    spec = load_spec(spec_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = calibrate(spec)
        total = time.perf_counter() - start
    population = int(spec.settings.get("popsize", 15)) * len(spec.parameters)

    problem = Problem(spec, spec.countries[0] if spec.countries else None)
    objective = Objective(problem, Store())
    rng = np.random.default_rng(0)

    def per_evaluation(size: int, repeats: int = 2) -> float:
        members = objective.lower + rng.random((size, objective.dim)) * (objective.upper - objective.lower)
        objective.store = Store()
        objective.nll(members)  # warm: translation and the vectorised module are cached
        start = time.perf_counter()
        for _ in range(repeats):
            objective.store = Store()
            objective.nll(members)
        return (time.perf_counter() - start) / (repeats * size)

    # The spec's population, scipy's default (popsize 15), and a large population.
    sizes = sorted({population, 15 * len(spec.parameters), 500})
    scaling = {size: per_evaluation(size) for size in sizes}
    vectorised = scaling[population]

    plain = _plain_objective(problem)
    counter = {"n": 0}

    def counted(z):
        counter["n"] += 1
        return plain(z)

    start = time.perf_counter()
    differential_evolution(counted, list(zip(objective.lower, objective.upper)), popsize=plain_popsize, maxiter=1,
                           polish=False, rng=0, tol=0)
    plain_seconds = (time.perf_counter() - start) / counter["n"]
    return {
        "spec": str(spec_path.relative_to(ROOT)),
        "model": spec.model.name,
        "parameters": len(spec.parameters),
        "observations": len(spec.observations),
        "method": spec.method,
        "calibration_seconds": total,
        "evaluations": int(fit.attrs["n_evaluations"]),
        "ensemble_passes": int(fit.attrs["n_batches"]),
        "generations": int(fit["opt_generations"].max()) if "opt_generations" in fit else None,
        "population": population,
        "vectorised_seconds_per_evaluation": vectorised,
        "plain_pysd_seconds_per_evaluation": plain_seconds,
        "plain_evaluations_timed": counter["n"],
        "speedup": plain_seconds / vectorised,
        "speedup_by_population": {str(k): plain_seconds / v for k, v in scaling.items()},
        "nll": float(fit["nll"].max()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", action="append", type=Path, help="Spec(s) to time (default: shipped US specs).")
    parser.add_argument("--plain-popsize", type=int, default=2,
                        help="popsize of the plain-PySD DE (its initial population and one generation are timed).")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "benchmarks" / "calibration.json")
    args = parser.parse_args(argv)
    specs = args.spec or [s for s in SPECS if s.exists()]
    missing = [s for s in SPECS if not s.exists()] if not args.spec else []
    rows = [measure(path.resolve(), args.plain_popsize) for path in specs]
    print(f"{'spec':<42} {'params':>6} {'passes':>6} {'evals':>7} {'seconds':>8} {'vec s/eval':>11} "
          f"{'plain s/eval':>12} {'speedup':>8}")
    for row in rows:
        print(f"{row['spec']:<42} {row['parameters']:>6} {row['ensemble_passes']:>6} {row['evaluations']:>7} "
              f"{row['calibration_seconds']:>8.1f} {row['vectorised_seconds_per_evaluation']:>11.2e} "
              f"{row['plain_pysd_seconds_per_evaluation']:>12.2e} {row['speedup']:>7.0f}x")
    for row in rows:
        ratios = ", ".join(f"{k} members {v:.0f}x" for k, v in row["speedup_by_population"].items())
        print(f"  {row['spec']}: speedup per evaluation by DE population size: {ratios}")
    for path in missing:
        print(f"(skipped {path.relative_to(ROOT)}: not written yet)")
    print(f"targets: speedup >= {TARGET_RATIO:g}x; reformism US DE calibration < {TARGET_SECONDS:g} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"python": sys.version.split()[0], "machine": platform.machine(), "results": rows,
               "skipped": [str(p.relative_to(ROOT)) for p in missing],
               "targets": {"speedup": TARGET_RATIO, "reformism_seconds": TARGET_SECONDS}}
    args.output.write_text(json.dumps(payload, indent=2))
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
