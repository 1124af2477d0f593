"""Run every benchmark: ``python -m tests.benchmarks [ensemble|dashboards|calibration ...]``."""

from __future__ import annotations

import importlib
import sys

SUITES = ("ensemble", "dashboards", "web", "calibration", "state_space", "loops")


def main(argv: list[str]) -> int:
    chosen = argv or [s for s in SUITES if importlib.util.find_spec(f"tests.benchmarks.{s}")]
    status = 0
    for name in chosen:
        if name not in SUITES:
            print(f"unknown benchmark '{name}'; choose from {', '.join(SUITES)}", file=sys.stderr)
            return 2
        print(f"== {name} ==", flush=True)
        status |= importlib.import_module(f"tests.benchmarks.{name}").main([])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
