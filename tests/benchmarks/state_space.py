"""State-space calibration speed (a benchmark, not a test).

    python -m tests.benchmarks.state_space [--spec models/reformism/calibration/us-filtered.toml]
                                           [--particles 2000] [--no-fit] [--output out/benchmarks/state_space.json]

Figures (issue "State-space calibration" targets in brackets), on the spec's model and data
(reformism, 1950-2019, TIME STEP 1/128):

- one extended-Kalman likelihood  [<= 0.3 s];
- one particle-filter likelihood with 2,000 particles  [<= 1 s];
- the whole filtered fit as shipped (differential evolution, polish, profile intervals, the
  outputs)  [< 5 minutes];
- the same two likelihoods with the members stepped one by one (``vector = False``: no SIMD
  block function), in the same run;
- the ratio of one likelihood against the same filter over plain PySD runs: each observation
  interval restarted from the filter's states with ``model.run(initial_condition=...)``, one run
  per Kalman difference member or per particle. The plain filter is timed over its first
  intervals, in the same process, and scaled to the whole likelihood by its number of intervals.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "models" / "reformism" / "calibration" / "us-filtered.toml"
TARGETS = {"kalman_seconds": 0.3, "particle_seconds": 1.0, "fit_seconds": 300.0}


def _filter(spec, method: str, particles: int):
    from calibration.problem import Problem
    from calibration.state_space import StateSpaceFilter

    spec = copy.copy(spec)
    spec.state_space = copy.copy(spec.state_space)
    spec.state_space.method = method
    spec.state_space.particles = particles
    return StateSpaceFilter(Problem(spec), spec.state_space, 1)


def _middle(spec) -> np.ndarray:
    """A parameter row in the middle of the search box (geometric middle for log-scale parameters)."""
    return np.array([[np.sqrt(p.lower * p.upper) if p.log else 0.5 * (p.lower + p.upper) for p in spec.parameters]])


def _timed(function, repeats: int = 3) -> float:
    function()  # warm: compilation, caches
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _plain_seconds(filt, values: np.ndarray, members: int, intervals: int = 2) -> float:
    """Seconds per likelihood of the same filter over plain PySD runs (``members`` runs per
    observation interval, each restarted from given stock values), from its first ``intervals``."""
    import pysd

    model = filt.spec.model
    plain = pysd.load(str(model.py_file))
    stocks = [st for st in filt.stepper.states if st.is_stock]
    params = {**{k: v for k, v in filt.fixed.items() if not isinstance(v, tuple)},
              **{name: float(values[0, j]) for j, name in filt.model_slots}}
    names = [model.elements[st.element].name for st in stocks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = plain.run(params=params, return_columns=names, final_time=filt.t0, time_step=filt.dt,
                          saveper=filt.dt, reload=True)
        state = frame.iloc[-1].to_numpy(float)
        start = time.perf_counter()
        t = filt.t0
        for _ in range(intervals):
            rows = []
            for m in range(members):
                begin = state * (1 + 1e-6 * (m % len(names) == 0))
                out = plain.run(params=params, initial_condition=(t, dict(zip(names, begin))), final_time=t + 1,
                                time_step=filt.dt, saveper=1, return_columns=names)
                rows.append(out.iloc[-1].to_numpy(float))
            state = rows[0]
            t += 1
        per_interval = (time.perf_counter() - start) / intervals
    return per_interval * filt.times[filt.in_fit].size


def measure(spec_path: Path, particles: int, fit: bool) -> dict:
    from calibration import calibrate, load_spec

    spec = load_spec(spec_path)
    values = _middle(spec)
    kalman = _filter(spec, "kalman", particles)
    particle = _filter(spec, "particle", particles)
    kalman_seconds = _timed(lambda: kalman.loglike(values))
    particle_seconds = _timed(lambda: particle.loglike(values), repeats=2)
    # The same filters with members stepped one by one (no SIMD block function).
    kalman.vector = particle.vector = False
    kalman_scalar = _timed(lambda: kalman.loglike(values))
    particle_scalar = _timed(lambda: particle.loglike(values), repeats=2)
    kalman.vector = particle.vector = True
    members_k = 1 + kalman.dynamic.size
    plain_k = _plain_seconds(kalman, values, members_k)
    # The plain particle filter: time the same runs per particle (a run per particle per interval).
    plain_per_run = plain_k / members_k
    plain_p = plain_per_run * particles
    row = {
        "spec": str(spec_path.relative_to(ROOT)),
        "model": spec.model.name,
        "time_step": kalman.dt,
        "observation_times": int(kalman.times[kalman.in_fit].size),
        "states": len(kalman.stepper.states),
        "kalman_seconds": kalman_seconds,
        "particle_seconds": particle_seconds,
        "kalman_member_by_member_seconds": kalman_scalar,
        "particle_member_by_member_seconds": particle_scalar,
        "particles": particles,
        "plain_pysd_kalman_seconds": plain_k,
        "plain_pysd_particle_seconds": plain_p,
        "kalman_speedup": plain_k / kalman_seconds,
        "particle_speedup": plain_p / particle_seconds,
    }
    if fit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            result = calibrate(spec)
            row["fit_seconds"] = time.perf_counter() - start
        row["fit_loglike"] = float(result.attrs["loglike"])
        row["fit_evaluations"] = int(result.attrs["n_evaluations"])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--no-fit", action="store_true", help="Skip the whole filtered fit (minutes).")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "benchmarks" / "state_space.json")
    args = parser.parse_args(argv)
    row = measure(args.spec.resolve(), args.particles, not args.no_fit)
    print(f"{row['spec']}: {row['model']}, {row['observation_times']} observation times, TIME STEP {row['time_step']:g}, "
          f"{row['states']} states")
    print(f"  one Kalman likelihood:          {row['kalman_seconds']:8.3f} s  (target <= {TARGETS['kalman_seconds']} s); "
          f"plain PySD {row['plain_pysd_kalman_seconds']:8.1f} s: {row['kalman_speedup']:,.0f}x")
    print(f"  one particle likelihood ({row['particles']}): {row['particle_seconds']:8.3f} s  (target <= "
          f"{TARGETS['particle_seconds']} s); plain PySD {row['plain_pysd_particle_seconds']:8.0f} s: "
          f"{row['particle_speedup']:,.0f}x")
    print(f"  the same, members stepped one by one (no SIMD blocks): Kalman {row['kalman_member_by_member_seconds']:.3f} s "
          f"({row['kalman_member_by_member_seconds'] / row['kalman_seconds']:.1f}x), particle "
          f"{row['particle_member_by_member_seconds']:.3f} s "
          f"({row['particle_member_by_member_seconds'] / row['particle_seconds']:.1f}x)")
    if "fit_seconds" in row:
        print(f"  whole filtered fit:             {row['fit_seconds']:8.1f} s  (target < {TARGETS['fit_seconds']:g} s), "
              f"log-likelihood {row['fit_loglike']:.2f}, {row['fit_evaluations']:,} evaluations")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"python": sys.version.split()[0], "machine": platform.machine(),
                                       "result": row, "targets": TARGETS}, indent=2))
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
