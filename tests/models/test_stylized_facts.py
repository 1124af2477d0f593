"""Behaviour reproduction (Sterman, Business Dynamics ch. 21): every shipped model with a
``facts.toml`` is run in all its scenarios and judged against the stylized facts of the
postwar US economy (calibration/facts.py), with targets computed from the shipped data.

``[known_failures]`` in each facts file is a ratchet: an unlisted failure fails here, and
so does a listed one that has started to pass. The model README's table of facts is the
output of ``crisis facts MODEL --markdown`` and must match the model as shipped.
"""

from __future__ import annotations

import pytest

from calibration.facts import facts_table, histories_table, judge, judge_histories, load_facts_spec, unexpected
from pysd_runner import compile_model, list_scenarios, run_scenarios, scenarios_on_one_axis

from ..conftest import MODELS

FACT_MODELS = sorted(p.parent.name for p in MODELS.glob("*/facts.toml"))


@pytest.fixture(scope="module", params=FACT_MODELS)
def judged(request):
    folder = MODELS / request.param
    model = compile_model(next(folder.glob("*.mdl")))
    spec = load_facts_spec(folder / "facts.toml")
    names, _ = scenarios_on_one_axis(model, list_scenarios(model), {})
    variables = sorted({model.resolve(v).py_name for v in spec.variables.values()})
    return folder, spec, judge(run_scenarios(model, names, variables=variables), spec)


def test_a_model_with_a_cycle_has_a_facts_file():
    assert {"goodwin", "keen", "reformism"} <= set(FACT_MODELS)


def test_every_fact_holds_or_is_a_known_failure_with_its_evidence(judged):
    _, spec, results = judged
    assert unexpected(results, spec) == []
    for scenario, known in spec.known_failures.items():
        assert scenario in results, f"[known_failures.{scenario}] names a scenario the model does not run"


def test_every_scenario_is_judged_on_every_fact_the_model_has_a_variable_for(judged):
    _, spec, results = judged
    for scenario, rows in results.items():
        for r in rows:
            applicable = all(c in spec.variables for c in r.fact.concepts)
            assert (r.passed is not None) == applicable, (scenario, r.fact.name)


def test_model_readme_holds_the_current_table_of_facts(judged):
    folder, _, results = judged
    readme = (folder / "README.md").read_text()
    missing = [line for line in facts_table(results, markdown=True) if line not in readme]
    assert not missing, ("the README's table of facts is out of date; paste the output of "
                         f"`crisis facts {folder.relative_to(MODELS.parent)}/{folder.name}.mdl --markdown`:\n"
                         + "\n".join(missing))


#: Histories in the model README's second table (``crisis facts MODEL --histories 60``).
README_HISTORIES = 60
#: Models whose facts file says which constant picks a history of their random impulses.
HISTORY_MODELS = [name for name in FACT_MODELS
                  if load_facts_spec(MODELS / name / "facts.toml").history_parameter is not None]


def test_the_stochastic_model_has_a_histories_table():
    assert "reformism" in HISTORY_MODELS


@pytest.mark.parametrize("name", HISTORY_MODELS)
def test_model_readme_holds_the_current_table_of_histories(name):
    folder = MODELS / name
    model = compile_model(next(folder.glob("*.mdl")))
    spec = load_facts_spec(folder / "facts.toml")
    names, _ = scenarios_on_one_axis(model, list_scenarios(model), {})
    variables = sorted({model.resolve(v).py_name for v in spec.variables.values()})
    results = judge(run_scenarios(model, names, variables=variables), spec)
    many = judge_histories(model, list(results), spec, README_HISTORIES)
    readme = (folder / "README.md").read_text()
    missing = [line for line in histories_table(many, markdown=True) if line and line not in readme]
    assert not missing, ("the README's table of histories is out of date; paste the output of "
                         f"`crisis facts {folder.relative_to(MODELS.parent)}/{folder.name}.mdl --histories "
                         f"{README_HISTORIES} --markdown`:\n" + "\n".join(missing))
    # History 0 is the run the first table judges: a fact it fails cannot be met by every
    # history, and one it meets by none.
    for scenario, rows in results.items():
        for one, row in zip(rows, many[scenario]):
            if one.passed is False:
                assert row.share < 1, (scenario, one.fact.name)
            if one.passed is True:
                assert row.share > 0, (scenario, one.fact.name)


def test_model_readme_holds_the_current_table_of_claims_over_histories():
    # The claim tests over 20 histories of the demand noise (tests/models/reformism_histories.py):
    # how far each claim is a property of the model rather than of the one shipped history.
    from .reformism_histories import README_COUNT, claim_tests, outcomes, table

    held = outcomes(README_COUNT)
    assert set(held) == set(claim_tests()) and len(claim_tests()) >= 15
    # History 0 is the shipped one, in which every claim test passes (the claims file).
    assert all(results[0] for results in held.values()), [n for n, r in held.items() if not r[0]]
    readme = (MODELS / "reformism" / "README.md").read_text()
    missing = [line for line in table(held) if line not in readme]
    assert not missing, ("the reformism README's table of claims over histories is out of date; paste the "
                         "output of `python -m tests.models.reformism_histories 20`:\n" + "\n".join(missing))
