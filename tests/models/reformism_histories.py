"""The claim tests of reformism over many histories of its demand impulses.

    python -m tests.models.reformism_histories [COUNT]

Every claim in tests/models/test_reformism_claims.py is checked on one history of the
yearly demand noise (``demand noise realisation`` 0), the one the scenarios, dashboards
and README use. This runs the same members over COUNT histories, the ones
``crisis facts --histories`` uses (the facts file's [histories] table: history i sets the
realisation to 11 i), applies every claim test that judges the runs alone, and prints
the share of histories in which each one holds, as the Markdown table in the model README
("How far the claims depend on one history"). A claim that holds in one history but not
in most is a property of that draw, not of the model.

Histories 11 years apart in one noise table overlap over a 100-year run: they are distinct
draws, not independent ones. Each history is one vectorised ensemble of the claim tests'
members, a second or two.
"""

from __future__ import annotations

import inspect
import sys

from calibration.facts import history_values, load_facts_spec
from pysd_runner import compile_model

from . import test_reformism_claims as claims

#: Histories in the README's table.
README_COUNT = 20


def claim_tests() -> dict[str, callable]:
    """Every test of the claims file that takes the runs alone (descriptions and structure
    tests take the model or a scenario, and are left out)."""
    return {name: fn for name, fn in vars(claims).items()
            if name.startswith("test_") and callable(fn) and list(inspect.signature(fn).parameters) == ["runs"]}


def history_members(parameter: str, value: float):
    """The claim tests' members, each with the noise history ``parameter`` = ``value``."""
    return [(label, scenario, {**overrides, parameter: value}) for label, scenario, overrides in claims.MEMBERS]


def outcomes(count: int, progress=None) -> dict[str, list[bool]]:
    """Claim test name -> whether it held in each of ``count`` histories."""
    model = compile_model(claims.MODEL)
    # The histories of `crisis facts --histories`: the facts file's [histories] table.
    parameter, values = history_values(model, load_facts_spec(claims.MODEL.with_name("facts.toml")), count)
    tests = claim_tests()
    held = {name: [] for name in tests}
    for i, value in enumerate(values):
        runs = claims.members_ensemble(model, history_members(parameter, float(value)))
        for name, fn in tests.items():
            try:
                fn(runs)
            except AssertionError:
                held[name].append(False)
            else:
                held[name].append(True)
        if progress:
            progress(i)
    return held


def table(held: dict[str, list[bool]]) -> list[str]:
    """The README's Markdown table: each claim test, whether it holds in the shipped
    history, and the share of histories in which it holds."""
    count = len(next(iter(held.values())))
    lines = [f"| claim test | shipped history | share of {count} histories |", "|---|---|---|"]
    for name, results in held.items():
        lines.append(f"| `{name.removeprefix('test_')}` | {'holds' if results[0] else 'fails'} "
                     f"| {sum(results) / count:.0%} |")
    return lines


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else README_COUNT
    report = (lambda i: print(f"history {i + 1}/{count}", file=sys.stderr)) if sys.stderr.isatty() else None
    held = outcomes(count, progress=report)
    print("\n".join(table(held)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
