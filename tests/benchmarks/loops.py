"""Loop-dominance speed (a benchmark, not a test).

    python -m tests.benchmarks.loops [--model models/reformism/reformism.mdl ...]
                                     [--output out/benchmarks/loops.json]

Figures per model (target in brackets):

- wall time of ``crisis loops MODEL --dominance --output ...`` as a user runs it, the model
  already translated  [reformism < 30 s];
- the run behind the link scores (every Euler step recorded) on the compiled kernel against
  the same run stepped through PySD, timed in the same process: the ratio is the speed-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = [ROOT / "models" / name / f"{name}.mdl" for name in ("goodwin", "keen", "reformism")]
TARGET_SECONDS = 30.0


def measure(path: Path) -> dict:
    from click.testing import CliRunner

    import pysd_runner.analysis.loops.trajectories as trajectories
    from pysd_runner import compile_model
    from pysd_runner.cli import main
    from pysd_runner.analysis.loops.trajectories import Trajectories

    model = compile_model(path)
    Trajectories(model, None, scenario=None)  # warm: kernel machine code, array-aware module
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = CliRunner().invoke(main, ["loops", str(path), "--dominance", "--output", str(Path(tmp) / "l.nc")])
        command = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"crisis loops {path} failed:\n{result.output}")
    first = result.output.split()
    loops = int(first[0]) if first and first[0].isdigit() else None  # "N feedback loop(s) in MODEL"
    start = time.perf_counter()
    compiled = Trajectories(model, None, scenario=None)
    compiled_seconds = time.perf_counter() - start
    original = trajectories.simulate_compiled
    trajectories.simulate_compiled = lambda *args, **kwargs: None  # the same run stepped through PySD
    try:
        start = time.perf_counter()
        plain = Trajectories(model, None, scenario=None)
        plain_seconds = time.perf_counter() - start
    finally:
        trajectories.simulate_compiled = original
    assert compiled.run_attrs["engine"] == "compiled" and plain.run_attrs["engine"] == "pysd"
    return {"model": str(path.relative_to(ROOT)), "loops": loops, "command_seconds": command,
            "steps": len(compiled.times), "compiled_run_seconds": compiled_seconds,
            "pysd_run_seconds": plain_seconds, "speedup": plain_seconds / compiled_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", type=Path, help="Model(s) to time (default: the shipped ones).")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "benchmarks" / "loops.json")
    args = parser.parse_args(argv)
    rows = [measure(path.resolve()) for path in (args.model or [m for m in MODELS if m.exists()])]
    print(f"{'model':<34} {'loops':>7} {'steps':>7} {'command s':>9} {'kernel run s':>12} {'PySD run s':>10} "
          f"{'speedup':>8}")
    for row in rows:
        print(f"{row['model']:<34} {row['loops'] or '?':>7} {row['steps']:>7} {row['command_seconds']:>9.1f} "
              f"{row['compiled_run_seconds']:>12.2f} {row['pysd_run_seconds']:>10.2f} {row['speedup']:>7.0f}x")
    print(f"target: crisis loops models/reformism/reformism.mdl --dominance < {TARGET_SECONDS:g} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"python": sys.version.split()[0], "machine": platform.machine(), "results": rows,
               "targets": {"reformism_command_seconds": TARGET_SECONDS}}
    args.output.write_text(json.dumps(payload, indent=2))
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
