"""Every number in the Verification list of models/reformism/README.md, measured again.

    python -m tests.models.reformism_numbers

The members are those of the claim tests (tests/models/test_reformism_claims.py), with the
same windows and measures, plus a few graded variants (government resolve, organising rate,
official leadership damping) that the README quotes. One vectorised ensemble, a few seconds.
Run it after any change to the model and copy what it prints into the README.
"""

from __future__ import annotations

import sys

from pysd_runner import compile_model, load_scenario

from .test_reformism_claims import (BEFORE, CROSSROADS, END, MEMBERS, MODEL, SHOCK, highest, lasting_loss, lowest,
                                    mean, members_ensemble, recurring_downturns)

EXTRA = [
    *[(f"austerity_resolve_{r}", "recession_austerity", {"government resolve": r}) for r in (0.3, 0.5, 0.7, 0.9)],
    *[(f"militant_organising_{r}", "militant_minority", {"organising rate": r}) for r in (0.5, 1.5)],
    *[(f"militant_damping_{d}", "militant_minority", {"official leadership damping": d}) for d in (0.2, 0.5, 0.8)],
]
SCENARIOS = ["baseline", "reform_victory", "austerity", "hold", "militant", "gradualist"]


def ensemble():
    model = compile_model(MODEL)
    return members_ensemble(model, MEMBERS + EXTRA), load_scenario("baseline", model).time


def main() -> int:
    runs, settings = ensemble()
    if not bool(runs["ok"].all()):
        print("some members are not finite:", [str(r) for r in runs["run"].values[~runs["ok"].values]])
        return 1
    m = lambda label: runs.sel(run=label)  # noqa: E731
    print(f"time settings: {settings}; windows before {BEFORE}, crossroads {CROSSROADS}, end {END}")
    print("\nC2 profit-rate downturns of 5% or more in years 50-100 (test threshold: 3):")
    for label in ("baseline", "baseline_no_animal_spirits"):
        print(f"  {label}: {recurring_downturns(m(label))}")
    base = m("baseline")
    print(f"  baseline years 20-100: profit rate {lowest(base, 'profit_rate', (20, 100)):.3f}-"
          f"{highest(base, 'profit_rate', (20, 100)):.3f}, employment rate "
          f"{lowest(base, 'employment_rate', (20, 100)):.3f}-{highest(base, 'employment_rate', (20, 100)):.3f}")
    print("\nC1 lowest tax revenue within 5 years of the shock, against the same run without it:")
    for label in ("austerity", "hold", "militant", "gradualist"):
        window = (SHOCK, SHOCK + 5)
        ratio = m(label)["tax_revenue"].sel(time=slice(*window)) / m(f"{label}_no_shock")["tax_revenue"].sel(time=slice(*window))
        print(f"  {label}: {float(ratio.min()) - 1:+.1%}")
    print("\nC3 welfare per head, means over before / crossroads / end:")
    for label in SCENARIOS:
        ds = m(label)
        print(f"  {label}: " + " / ".join(f"{mean(ds, 'welfare_spending_per_head', w):.3f}" for w in (BEFORE, CROSSROADS, END)))
    print("\nC3, C11 lasting loss: shortfall of welfare per head over the end window against the same scenario "
          "without the shock (positive: lower; the claim tests' threshold is 4%):")
    for label in ("austerity", "hold", "gradualist", "militant"):
        print(f"  {label}: {lasting_loss(m(label), m(f'{label}_no_shock')):+.1%}")
    for label, control in (("austerity_short_shock", "austerity_no_shock"),
                           ("austerity_no_ratchet", "austerity_no_ratchet_no_shock")):
        print(f"  control {label}: {lasting_loss(m(label), m(control)):+.1%}")
    for label, name in (("austerity", "reform_commitment"), ("hold", "reform_commitment"),
                        ("hold", "public_debt_ratio"), ("hold", "fiscal_capacity")):
        print(f"  {label} {name} over the end window: {mean(m(label), name, END):.3f} against "
              f"{mean(m(f'{label}_no_shock'), name, END):.3f} without the shock")
    hold = m("hold")
    print("\nC4, C11 hold the line:")
    print(f"  public debt ratio: mean before {mean(hold, 'public_debt_ratio', BEFORE):.2f}, "
          f"maximum at the crossroads {highest(hold, 'public_debt_ratio', CROSSROADS):.2f}")
    print(f"  business confidence: mean before {mean(hold, 'business_confidence', BEFORE):.3f}, "
          f"minimum at the crossroads {lowest(hold, 'business_confidence', CROSSROADS):.3f}")
    print("\nC6 years 45-60: peak strikes, legitimacy minimum and mean, peak austerity:")
    window = (SHOCK, SHOCK + 15)
    for label in ("austerity", "hold") + tuple(label for label, _, _ in EXTRA if "resolve" in label):
        ds = m(label)
        print(f"  {label}: strikes {highest(ds, 'strike_activity', window):.3f}, legitimacy "
              f"{lowest(ds, 'legitimacy', window):.3f} / {mean(ds, 'legitimacy', window):.3f}, austerity "
              f"{highest(ds, 'austerity_intensity', window):.2f}")
    print("\nC8 legitimacy over years 45-70, mean and minimum:")
    for label in ("austerity", "austerity_repression_none", "austerity_repression_max"):
        ds = m(label)
        print(f"  {label}: {mean(ds, 'legitimacy', (45, 70)):.3f} / {lowest(ds, 'legitimacy', (45, 70)):.3f}")
    print("\nC9, C10 organisation: militant minority at the shock, peak austerity and mean welfare per head "
          "at the crossroads, welfare over years 45-100, highest break pressure:")
    for label in ("austerity", "austerity_organised", "militant", "very_organised", "militant_unorganised") + tuple(
            label for label, _, _ in EXTRA if label.startswith("militant_")):
        ds = m(label)
        print(f"  {label}: {float(ds['militant_minority'].sel(time=SHOCK, method='nearest')):.3f}, "
              f"{highest(ds, 'austerity_intensity', CROSSROADS):.2f}, {mean(ds, 'welfare_spending_per_head', CROSSROADS):.3f}, "
              f"{mean(ds, 'welfare_spending_per_head', (45, 100)):.3f}, {highest(ds, 'break_pressure', (0, 100)):.3f}")
    print("\nBreak indicator, maximum over the run:")
    for label in SCENARIOS:
        print(f"  {label}: {highest(m(label), 'break_pressure', (0, 100)):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
