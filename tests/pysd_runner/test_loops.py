"""Feedback-loop analysis: graph polarity, loop listing, Loops That Matter dominance, knock-outs."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from pysd_runner import compile_model, load_result, run, save
from pysd_runner.cli import main
from pysd_runner.errors import ParameterError
from pysd_runner.analysis.loops import (
    LoopScoreWarning,
    LoopsFileError,
    TooManyLoopsError,
    causal_graph,
    cutting_link,
    dominance_periods,
    find_loops,
    link_scores,
    loop_dominance,
    match_named_loops,
)
from pysd_runner.analysis.loops.trajectories import Trajectories

from ..conftest import FIXTURES, MODELS
from ..tolerance import assert_close_to_scale

GOODWIN = MODELS / "goodwin" / "goodwin.mdl"
REFORMISM = MODELS / "reformism" / "reformism.mdl"
PROFIT_SQUEEZE = [
    "employment_rate", "wage_growth_rate", "wage_share_growth_rate", "change_in_wage_share", "wage_share",
    "profit_share", "profit_rate", "accumulation_rate", "growth_rate_of_output", "employment_growth_rate",
    "change_in_employment_rate",
]


@pytest.fixture(scope="module")
def goodwin():
    return compile_model(GOODWIN)


def _peaks(values: np.ndarray) -> int:
    return int(((values[1:-1] > values[:-2]) & (values[1:-1] > values[2:])).sum())


# --------------------------------------------------------------------------- hand-checkable cases

def test_first_order_decay_has_one_balancing_loop_with_relative_score_minus_one():
    model = compile_model(FIXTURES / "loops_decay.mdl")
    loops = find_loops(model)
    assert [(lp.polarity, lp.variables) for lp in loops] == [("B", ("stock", "outflow"))]
    assert loops[0].links == ("+", "-")
    ds = loop_dominance(model)
    assert ds.sizes == {"time": 21, "loop": 1, "link": 2}
    # Scores need two earlier Euler steps: undefined at the initial time only (saveper 1, dt 1/16).
    assert np.isnan(ds["relative_score"].isel(time=0)).all()
    np.testing.assert_allclose(ds["relative_score"].isel(time=slice(1, None)), -1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds["loop_score"].isel(time=slice(1, None)), -1.0, rtol=0, atol=1e-9)
    assert ds["dominant"].isel(time=slice(1, None)).all()
    assert str(ds["polarity"].item()) == "B"


def test_logistic_growth_switches_dominance_at_half_capacity():
    model = compile_model(FIXTURES / "loops_logistic.mdl")
    ds = loop_dominance(model)
    polarity = {str(loop): str(ds["polarity"].sel(loop=loop).item()) for loop in ds["loop"].values}
    assert sorted(polarity.values()) == ["B", "R"]
    reinforcing = next(k for k, v in polarity.items() if v == "R")
    balancing = next(k for k, v in polarity.items() if v == "B")
    saveper = ds.attrs["saveper"]
    # The inflection point (population = half the carrying capacity), at time-step resolution.
    fine = run(model, saveper=model.control["time_step"], variables=["population"])
    inflection = float(fine["time"][np.argmax(fine["population"].values >= 500)])
    (r_start, r_end), = dominance_periods(ds, reinforcing)
    (b_start, b_end), = dominance_periods(ds, balancing)
    assert r_start == saveper and b_end == ds["time"].values[-1]
    assert b_start == pytest.approx(r_end + saveper)
    assert abs(b_start - inflection) <= saveper
    assert r_end <= inflection <= b_start
    # Relative scores of the two loops always split the whole change between them.
    rel = ds["relative_score"].isel(time=slice(1, None))
    np.testing.assert_allclose(np.abs(rel).sum("loop"), 1.0, atol=1e-12)


@pytest.mark.parametrize("fixture, links", [
    ("loops_flows_separate.mdl", {("outflow", "s"): -0.25, ("inflow", "s"): 1.25}),
    ("loops_flows_netted.mdl", {("outflow", "net_flow"): -0.25, ("inflow", "net_flow"): 1.25, ("net_flow", "s"): 1.0}),
])
def test_flow_to_stock_score_matches_the_published_worked_example(fixture, links):
    # Schoenberg, Hayward & Eberlein (2023): inflow 5 -> 10, outflow 4 -> 5, stock 100 -> 101 -> 106.
    # The corrected flow-to-stock score of the outflow is -|1 / (5 - 1)| = -0.25, the same whether
    # the flows enter the stock separately or netted into one flow (whose link to the stock scores 1).
    ds = link_scores(FIXTURES / fixture, links=list(links))
    first = {("outflow", "s"): 2, ("inflow", "s"): 2, ("outflow", "net_flow"): 1, ("inflow", "net_flow"): 1,
             ("net_flow", "s"): 2}
    for (source, target), expected in links.items():
        score = ds["link_score"].sel(link=f"{source} -> {target}").values
        assert np.isnan(score[: first[(source, target)]]).all()
        np.testing.assert_allclose(score[first[(source, target)]:], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run(FIXTURES / fixture, variables=["S"])["s"].values[:3], [100, 101, 106])


# --------------------------------------------------------------------------- graph and polarity

def test_polarity_from_equation_structure_and_from_a_run():
    graph = causal_graph(FIXTURES / "loops_polarity.mdl", numeric=False)
    structural = {target: graph.edges["x", target]["polarity"] for _, target in graph.out_edges("x")}
    assert structural == {
        "doubled": "+", "negated": "-", "reciprocal": "-", "decay_factor": "-", "capped": "+",
        "falling_effect": "-", "rooted": "+", "squared": "+", "ratio": "-", "smoothed": "+",
        "either_sign": "?", "switched": "?", "waved": "?",
    }
    assert graph.nodes["x"]["stock"] and graph.nodes["x"]["name"] == "x"
    settled = causal_graph(FIXTURES / "loops_polarity.mdl")
    # wave = SIN(Time) + 2 stays positive, so the run shows waved = wave * x rising with x.
    assert settled.edges["x", "waved"]["polarity"] == "+"
    assert settled.edges["x", "waved"]["polarity_from"] == "run"
    assert settled.edges["x", "doubled"]["polarity_from"] == "equation"
    # signed factor is 0.5 in this run, so the run settles it too (a different value would not).
    assert settled.edges["x", "either_sign"]["polarity"] == "+"
    assert "signed_factor" not in settled
    assert "signed_factor" in causal_graph(FIXTURES / "loops_polarity.mdl", include_constants=True, numeric=False)


def test_goodwin_graph_marks_stocks_flows_and_inflow_polarity(goodwin):
    graph = causal_graph(goodwin, numeric=False)
    assert graph.nodes["wage_share"]["stock"] and graph.nodes["change_in_wage_share"]["flow"]
    assert graph.edges["change_in_wage_share", "wage_share"]["polarity"] == "+"
    assert graph.edges["wage_share", "profit_share"]["polarity"] == "-"
    # The self-link of each stock has the sign of its growth rate, which changes over a cycle.
    assert graph.edges["wage_share", "change_in_wage_share"]["polarity"] == "?"


def test_goodwin_profit_squeeze_is_found_and_balancing(goodwin):
    loops = find_loops(goodwin, final_time=30)
    assert len(loops) == 3
    squeeze = [lp for lp in loops if set(lp.variables) == set(PROFIT_SQUEEZE)]
    assert len(squeeze) == 1 and squeeze[0].polarity == "B" and squeeze[0].length == 11
    assert squeeze[0].variables == tuple(PROFIT_SQUEEZE)  # starts at its first stock by name, in cycle order
    assert squeeze[0].links.count("-") == 1
    self_loops = [lp for lp in loops if lp.length == 2]
    assert {lp.polarity for lp in self_loops} == {"?"}


def test_loop_cap_and_length_bound(goodwin):
    with pytest.raises(TooManyLoopsError, match=r"more than 2 feedback loops.*--max-length"):
        find_loops(goodwin, max_loops=2, numeric=False)
    short = find_loops(goodwin, max_length=2, numeric=False)
    assert [lp.length for lp in short] == [2, 2]
    with pytest.raises(ParameterError, match="max_length must be a positive integer"):
        find_loops(goodwin, max_length=0)


# --------------------------------------------------------------------------- named loops

def _goodwin_copy(tmp_path, toml: str):
    shutil.copyfile(GOODWIN, tmp_path / "goodwin.mdl")
    (tmp_path / "loops.toml").write_text(toml)
    return compile_model(tmp_path / "goodwin.mdl")


def test_named_loops_match_a_subset_path_in_cycle_order(tmp_path):
    model = _goodwin_copy(tmp_path, """
[B1]
name = "Profit squeeze"
polarity = "B"
variables = ["wage share", "profit share", "accumulation rate", "employment rate", "wage growth rate"]

[R9]
name = "Not in this model"
polarity = "R"
variables = ["employment rate", "wage share", "profit rate", "wage growth rate"]
""")
    loops = find_loops(model, final_time=30)
    assert loops[0].id == "B1" and loops[0].name == "B1" and loops[0].title == "Profit squeeze"
    assert loops[0].variables[0] == "wage_share"  # rotated to start where the named cycle starts
    assert [lp.name for lp in loops[1:]] == ["", ""]
    report = match_named_loops(model, loops)
    assert [(r["id"], r["found"], r["agrees"]) for r in report] == [("B1", True, True), ("R9", False, False)]
    ds = loop_dominance(model, final_time=12)
    unnamed = [lp.id for lp in loops[1:]]
    assert all(i.startswith("L") and len(i) == 9 for i in unnamed)
    assert list(ds["name"].values) == ["B1 Profit squeeze", *unnamed]
    assert list(ds["named"].values) == [True, False, False]
    named = json.loads(ds.attrs["named_loops"])
    assert [(r["id"], r["loop"], r["polarity"], r["agrees"]) for r in named] == [
        ("B1", "B1", "B", True), ("R9", "", "", False)]
    result = invoke("loops", model.source, "--max-length", "20")
    assert f"  B1{' ' * 8}B    11  Profit squeeze: wage share -> profit share" in result.output
    assert "named loop R9 not found: employment rate -> wage share -> profit rate -> wage growth rate" in result.output


def test_loop_ids_come_from_the_path_and_survive_knockouts_and_other_runs(tmp_path):
    from pysd_runner.analysis.loops.named import path_id

    model = _goodwin_copy(tmp_path, "")  # no names: every id comes from the loop's path
    loops = find_loops(model, numeric=False)
    ids = {lp.describe(): lp.id for lp in loops}
    assert len(set(ids.values())) == 3
    for lp in loops:
        # Rotating the cycle does not change the id.
        rotated = lp.variables[1:] + lp.variables[:1]
        assert path_id(rotated) == path_id(lp.variables) == lp.id
    # Cutting the profit squeeze leaves the other two loops with the ids they had.
    squeeze = next(lp for lp in loops if lp.length == 11)
    cut = find_loops(model, numeric=False, knockout=[("employment rate", "wage growth rate")])
    assert {lp.describe(): lp.id for lp in cut} == {k: v for k, v in ids.items() if v != squeeze.id}
    # Another run (other parameters, shorter) gives the same ids.
    again = find_loops(model, {"phillips slope": 1.4}, final_time=5)
    assert {lp.describe(): lp.id for lp in again} == ids


def test_a_loops_file_leaves_loops_out_of_dominance_with_a_reason(tmp_path):
    model = _goodwin_copy(tmp_path, """
[B1]
name = "Profit squeeze"
variables = ["wage share", "profit share", "accumulation rate", "employment rate", "wage growth rate"]

[exclude.employment_self_link]
variables = ["employment rate", "change in employment rate"]
reason = "the stock times its own growth rate, not a feedback of the argument"

[exclude.not_a_loop]
variables = ["employment rate", "wage share"]
reason = "no such loop"
""")
    listed = find_loops(model, numeric=False)
    assert [lp.excluded != "" for lp in listed].count(True) == 1
    ds = loop_dominance(model, final_time=12)
    assert ds.sizes["loop"] == 2 and "employment rate -> change in employment rate" not in list(ds["variables"].values)
    # The remaining loops share the whole change among themselves.
    np.testing.assert_allclose(np.abs(ds["relative_score"].isel(time=slice(2, None))).sum("loop"), 1.0, atol=1e-9)
    report = json.loads(ds.attrs["excluded_loops"])
    assert [(r["key"], bool(r["loop"])) for r in report] == [("employment_self_link", True), ("not_a_loop", False)]
    result = invoke("loops", model.source)
    assert "2 feedback loop(s) in goodwin; 1 more left out by loops.toml" in result.output
    assert "left out: L" in result.output and "not a feedback of the argument" in result.output
    assert "loops.toml leaves out not_a_loop (employment rate -> wage share), but no such loop was found" in result.output


@pytest.mark.parametrize("table, message", [
    ('[exclude.x]\nvariables = ["wage share", "change in wage share"]\n', "needs a 'reason'"),
    ('[exclude.x]\nreason = "why"\n', "needs 'variables'"),
    ('[exclude.x]\nvariables = ["wage share"]\nreason = "why"\nwhy = 1\n', r"unknown key\(s\) \['why'\]"),
    ('[exclude.x]\nvariables = ["wage shares"]\nreason = "why"\n', "excluded loop 'x'.*Did you mean 'wage share'"),
    ('exclude = 3\n', "'exclude' must be a table of tables"),
])
def test_loops_file_exclusion_errors_name_the_problem(tmp_path, table, message):
    model = _goodwin_copy(tmp_path, table)
    with pytest.raises(LoopsFileError, match=message):
        find_loops(model, numeric=False)


def test_strongest_loop_shares_add_up_to_one(goodwin):
    from pysd_runner.analysis.loops import strongest_shares

    ds = loop_dominance(goodwin, final_time=16, saveper=0.05)
    shares = strongest_shares(ds)
    assert abs(sum(part for _, _, part in shares) - 1) < 1e-12
    assert [ident for ident, _, _ in shares] == ["B1", "S2", "S1"]
    # The strongest loop is the one with the largest |relative score| at each defined time.
    rel = np.abs(ds["relative_score"].values)
    defined = ~np.isnan(rel).all(axis=1)
    expected = ds["loop"].values[np.nanargmax(rel[defined], axis=1)]
    assert list(ds["strongest"].values[defined]) == list(expected)
    assert set(ds["strongest"].values[~defined]) <= {""}


def test_cutting_link_prefers_a_link_on_no_other_loop(goodwin):
    loops = find_loops(goodwin, numeric=False)
    squeeze = next(lp for lp in loops if lp.length == 11)
    link = cutting_link(squeeze, loops)
    assert link == ("employment_rate", "wage_growth_rate")
    assert [lp.length for lp in find_loops(goodwin, numeric=False, knockout=[link])] == [2, 2]


def test_loops_file_errors_name_the_problem(tmp_path):
    model = _goodwin_copy(tmp_path, '[B1]\npolarity = "B"\nvariables = ["wage shares", "profit share"]\n')
    with pytest.raises(LoopsFileError, match=r"loop 'B1'.*unknown variable 'wage shares'.*Did you mean 'wage share'"):
        find_loops(model, numeric=False)
    (tmp_path / "loops.toml").write_text('[B1]\npolarity = "sideways"\nvariables = ["wage share"]\n')
    with pytest.raises(LoopsFileError, match="polarity 'sideways'; allowed: R, B"):
        find_loops(model, numeric=False)
    (tmp_path / "loops.toml").write_text("[B1\n")
    with pytest.raises(LoopsFileError, match="not valid TOML"):
        find_loops(model, numeric=False)
    assert [lp.name for lp in find_loops(model, names=False, numeric=False)] == ["", "", ""]


# --------------------------------------------------------------------------- dominance

def test_goodwin_dominance_dataset_round_trips_and_is_deterministic(goodwin, tmp_path):
    ds = loop_dominance(goodwin, final_time=25, saveper=0.5)
    assert set(ds.dims) == {"time", "loop", "link"} and ds.sizes["time"] == 51 and ds.sizes["loop"] == 3
    for coord in ("name", "named", "polarity", "variables", "length", "partition"):
        assert ds[coord].dims == ("loop",)
    # models/goodwin/loops.toml names the profit squeeze and the stocks' two self-links.
    assert list(ds["name"].values) == ["B1 Profit squeeze", "S1 Employment self-link", "S2 Wage-share self-link"]
    assert list(ds["named"].values) == [True, True, True]
    assert ds["dominant"].dtype == bool
    rel = ds["relative_score"].isel(time=slice(1, None))
    assert float(np.abs(rel).max()) <= 1 + 1e-12
    np.testing.assert_allclose(np.abs(rel).sum("loop"), 1.0, atol=1e-9)
    squeeze = next(str(lp) for lp in ds["loop"].values if int(ds["length"].sel(loop=lp)) == 11)
    for loop in find_loops(goodwin, final_time=25):  # loop score = product of its link scores
        direct = np.prod([ds["link_score"].sel(link=f"{u} -> {v}").values for u, v in loop.edges], axis=0)
        assert_close_to_scale(ds["loop_score"].sel(loop=loop.id).values, direct, 1e-12)
    # The profit squeeze explains most of the change most of the time.
    assert float(ds["dominant"].sel(loop=squeeze).isel(time=slice(1, None)).mean()) > 0.8
    assert (rel.sel(loop=squeeze) < 0).all()
    for key in ("model_sha256", "params", "pysd_version", "knockout", "method", "approximated_links"):
        assert key in ds.attrs
    assert ds.attrs["saveper"] == 0.5 and json.loads(ds.attrs["knockout"]) == []
    path = save(ds, tmp_path / "loops.nc")
    xr.testing.assert_identical(load_result(path), ds)
    again = loop_dominance(goodwin, final_time=25, saveper=0.5)
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())


@pytest.mark.filterwarnings("ignore:_hardcodedlookup_effect_table")  # lookup.mdl leaves its table on purpose
def test_reconstructed_variables_equal_the_scalar_run():
    # Everything but the stocks (and SMOOTH, DELAY, ... outputs) is recomputed from the
    # recorded stocks as arrays over time.
    per_step = {}
    for fixture in ("loops_smooth.mdl", "step_ramp.mdl", "lookup.mdl", "not_vectorisable.mdl"):
        model = compile_model(FIXTURES / fixture)
        trajectories = Trajectories(model, None, scenario=None)
        per_step[fixture] = trajectories.evaluated_per_step
        full = run(model, saveper=model.control["time_step"])
        for name in full.data_vars:
            assert_close_to_scale(trajectories.values[name], full[name].values, 1e-12, err_msg=f"{fixture}: {name}")
    # PySD's INTEGER branches on a scalar: it is evaluated step by step, with the same numbers.
    assert per_step == {"loops_smooth.mdl": set(), "step_ramp.mdl": set(), "lookup.mdl": set(),
                        "not_vectorisable.mdl": {"rounded"}}


def test_equations_that_branch_on_scalars_are_evaluated_step_by_step():
    trajectories = Trajectories(compile_model(FIXTURES / "loops_decay.mdl"), None, scenario=None)
    stock = trajectories.values["stock"]
    namespace = trajectories.namespace

    def branching():  # a Python `if` on the value, as some PySD runtime functions do
        return 1.0 if namespace["stock"]() > 50 else -1.0

    out = trajectories._evaluate(branching, {"stock": stock}, trajectories.times, "branching")
    np.testing.assert_array_equal(out, np.where(stock > 50, 1.0, -1.0))
    assert trajectories.evaluated_per_step == {"branching"}


def test_smooth_in_a_loop_is_scored_exactly():
    ds = loop_dominance(FIXTURES / "loops_smooth.mdl")
    assert [str(p) for p in ds["polarity"].values] == ["B"]
    assert ds["variables"].item() == "inventory -> perceived inventory -> production"
    assert json.loads(ds.attrs["approximated_links"]) == []
    np.testing.assert_allclose(ds["relative_score"].isel(time=slice(1, None)), -1.0)


def test_delay_links_are_approximated_with_a_warning():
    with pytest.warns(LoopScoreWarning, match="approximated.*inflow -> delayed_outflow"):
        ds = link_scores(FIXTURES / "delay1.mdl", links=[("inflow", "delayed outflow")])
    assert json.loads(ds.attrs["approximated_links"]) == ["inflow -> delayed_outflow"]


def test_link_scores_reject_links_that_do_not_exist(goodwin):
    with pytest.raises(ParameterError, match="'profit rate' does not read 'wage share'.*inputs are: capital"):
        link_scores(goodwin, links=[("wage share", "profit rate")])


# --------------------------------------------------------------------------- knock-outs

def test_knocking_out_the_profit_squeeze_removes_the_cycle(goodwin):
    baseline = run(goodwin, final_time=40, variables=["wage_share", "employment_rate"])
    cut = run(goodwin, final_time=40, variables=["wage_share", "employment_rate", "profit_share"],
              knockout=[("wage share", "profit share")])
    assert _peaks(baseline["wage_share"].values) >= 3 and _peaks(baseline["employment_rate"].values) >= 3
    assert _peaks(cut["wage_share"].values) == 0 and _peaks(cut["employment_rate"].values) == 0
    np.testing.assert_allclose(cut["profit_share"].values, 1 - 0.82)  # held at 1 - initial wage share
    (held,) = json.loads(cut.attrs["knockout"])
    assert (held["source"], held["target"], held["value"], held["held_at"]) == (
        "wage_share", "profit_share", 0.82, "initial value")
    remaining = find_loops(goodwin, final_time=40, knockout=["wage share -> profit share"])
    assert [lp.length for lp in remaining] == [2, 2]
    assert "knockout" not in run(goodwin, final_time=1).attrs


def test_knockouts_are_pure_and_take_values_and_bare_sources(goodwin):
    first = run(goodwin, final_time=20, knockout=[("employment rate", "wage growth rate", 0.95)])
    second = run(goodwin, final_time=20, knockout=[("employment rate", "wage growth rate", 0.95)])
    xr.testing.assert_identical(first.drop_attrs(), second.drop_attrs())
    np.testing.assert_allclose(first["wage_growth_rate"].values, 1.25 * 0.95 - 1.13)
    plain = run(goodwin, final_time=20)
    assert not np.allclose(plain["wage_growth_rate"].values, first["wage_growth_rate"].values)
    xr.testing.assert_identical(plain.drop_attrs(), run(goodwin, final_time=20).drop_attrs())
    everywhere = run(goodwin, final_time=5, knockout=["employment rate"])
    targets = {k["target"] for k in json.loads(everywhere.attrs["knockout"])}
    assert targets == {"change_in_employment_rate", "wage_growth_rate", "unemployment_rate", "conserved_quantity"}
    np.testing.assert_allclose(everywhere["unemployment_rate"].values, 1 - 0.9)
    stacked = __import__("pysd_runner").run_scenarios(goodwin, ["baseline", "strong_unions"], final_time=5,
                                                      knockout=[("wage share", "profit share")])
    assert "knockout" in stacked.attrs


@pytest.mark.parametrize("knockout, message", [
    ([("wage share", "profit rate")], "'profit rate' does not read 'wage share'"),
    ([("wage shar", "profit share")], "unknown variable 'wage shar'.*Did you mean 'wage share'"),
    ([("wage share", "profit share", "high")], "a knock-out value must be a finite number"),
    ([42], "each knock-out must be"),
    (3.5, "knockout must be a list of links"),
])
def test_knockout_errors(goodwin, knockout, message):
    with pytest.raises(ParameterError, match=message):
        run(goodwin, final_time=1, knockout=knockout)


def test_dominance_records_knockouts(goodwin):
    ds = loop_dominance(goodwin, final_time=10, knockout=[("wage share", "profit share")])
    assert ds.sizes["loop"] == 2
    assert json.loads(ds.attrs["knockout"])[0]["value"] == 0.82


def test_dominance_under_uncertainty_agrees_with_each_members_own_analysis(goodwin, tmp_path):
    from pysd_runner.analysis.loops import loop_dominance_ensemble

    slopes = [1.0, 1.2, 1.5]
    ds = loop_dominance_ensemble(goodwin, {"phillips slope": slopes}, final_time=12, saveper=0.1)
    assert list(ds["category"].values) == ["B1", "S1", "S2", "other"]
    assert list(ds["phillips_slope"].values) == slopes
    defined = ~np.isnan(ds["p_strongest"].values).all(axis=1)
    np.testing.assert_allclose(ds["p_strongest"].values[defined].sum(axis=1), 1.0, atol=1e-12)
    singles = [loop_dominance(goodwin, {"phillips slope": s}, final_time=12, saveper=0.1) for s in slopes]
    for m, single in enumerate(singles):
        assert list(ds["strongest"].values[m]) == [str(v) for v in single["strongest"].values]
        np.testing.assert_array_equal(ds["relative_score"].values[m], single["relative_score"].sel(loop=["B1", "S1", "S2"]).values)
    # Probabilities are shares of members.
    b1 = np.mean([single["strongest"].values == "B1" for single in singles], axis=0)
    np.testing.assert_allclose(ds["p_strongest"].sel(category="B1").values[defined], b1[defined])
    in_set = np.mean([single["dominant"].sel(loop="B1").values for single in singles], axis=0)
    np.testing.assert_allclose(ds["p_dominant"].sel(loop="B1").values[defined], in_set[defined])
    # The file keeps it all.
    out = tmp_path / "uncertain.nc"
    from pysd_runner.results import save

    save(ds, out)
    again = load_result(out)
    np.testing.assert_array_equal(again["p_strongest"].values, ds["p_strongest"].values)


# --------------------------------------------------------------------------- command line

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_lists_loops_and_dominance_periods(tmp_path):
    out = tmp_path / "loops.nc"
    result = invoke("loops", GOODWIN, "--dominance", "--final-time", "22", "--output", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "3 feedback loop(s) in goodwin" in text and "id" in text and "pol" in text
    assert "  B1 B    11  Profit squeeze: employment rate -> wage growth rate" in text
    assert "Strongest loop at each time" in text and "In the dominant set" in text and "% of the time:" in text
    assert f"Wrote {out}" in text
    assert load_result(out).sizes["loop"] == 3


def test_cli_output_fits_one_screen_unless_all_is_asked(tmp_path):
    # A model with many loops: the default listing is short, --all lists every loop.
    args = ["loops", GOODWIN, "--dominance", "--final-time", "60"]
    short, full = invoke(*args), invoke(*args, "--all")
    assert short.exit_code == 0 and full.exit_code == 0
    assert len(short.output.splitlines()) <= 40
    assert "--all lists them" in short.output and "--all lists them" not in full.output
    assert max(len(line) for line in short.output.splitlines()) <= 160


def test_cli_dominance_under_uncertainty(tmp_path):
    out = tmp_path / "keen-uncertain.nc"
    result = invoke("loops", MODELS / "keen" / "keen.mdl", "--ensemble", "4", "--params", "interest rate", "--seed", "1",
                    "--final-time", "30", "--output", out)
    assert result.exit_code == 0, result.output
    assert "4 members (Latin hypercube over interest rate)" in result.output
    assert "B2 Profit squeeze" in result.output and "other loops" in result.output
    ds = load_result(out)
    assert ds.sizes["member"] == 4 and len(set(np.round(ds["interest_rate"].values, 12))) == 4
    bad = CliRunner().invoke(main, ["loops", str(GOODWIN), "--ensemble", "3", "--params", "phillips slop"])
    assert bad.exit_code == 1 and "phillips slop" in bad.output and "Traceback" not in bad.output


def test_cli_errors_and_help():
    result = CliRunner().invoke(main, ["loops", str(GOODWIN), "--knockout", "wage share->profit rate"])
    assert result.exit_code == 1 and result.output.startswith("Error: 'profit rate' does not read")
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["loops", str(GOODWIN), "--output", "x.csv"])
    assert result.exit_code == 1 and "allowed: .nc" in result.output
    assert "Example:" in invoke("loops", "--help").output
    assert "loops" in invoke("--help").output


# --------------------------------------------------------------------------- the integrated model

reformism = pytest.mark.skipif(not REFORMISM.is_file(), reason="models/reformism is not there yet")


@pytest.fixture(scope="module")
def reformism_cli(tmp_path_factory):
    """One `crisis loops models/reformism/reformism.mdl --dominance --output ...` run, timed.

    The model is translated first: translation happens once per file content (cached by its
    sha256), and is not what the 30 s are for.
    """
    compile_model(REFORMISM)
    out = tmp_path_factory.mktemp("reformism") / "loops.nc"
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["loops", str(REFORMISM), "--dominance", "--output", str(out)])
    return result, time.perf_counter() - start, out


@reformism
def test_reformism_every_named_loop_is_found_with_its_stated_polarity(reformism_cli):
    import tomllib

    result, _, out = reformism_cli
    assert result.exit_code == 0, result.output
    named = {k: v for k, v in tomllib.loads((REFORMISM.parent / "loops.toml").read_text()).items() if k != "exclude"}
    assert named, "models/reformism/loops.toml names no loops"
    report = {r["id"]: r for r in json.loads(load_result(out).attrs["named_loops"])}
    assert set(report) == set(named)
    missing = [r for r in report.values() if not r["found"]]
    assert not missing, f"named loops not found: {missing}"
    wrong = [r for r in report.values() if not r["agrees"]]
    assert not wrong, f"named loops with another polarity than stated: {wrong}"
    # The command reports named loops it cannot find or whose polarity differs: none here.
    assert "named loop" not in result.output


@reformism
def test_reformism_named_loops_have_the_stated_negative_links(reformism_cli):
    import tomllib

    _, _, out = reformism_cli
    ds = load_result(out)
    model = compile_model(REFORMISM)
    polarity = dict(zip(ds["link"].values.tolist(), ds["link_polarity"].values.tolist()))
    named = {k: v for k, v in tomllib.loads((REFORMISM.parent / "loops.toml").read_text()).items() if k != "exclude"}
    by_name = {str(n).split(" ")[0]: str(v) for n, v, f in
               zip(ds["name"].values, ds["variables"].values, ds["named"].values) if f}
    for ident, entry in named.items():
        names = by_name[ident].split(" -> ")
        py = [model.resolve(n).py_name for n in names]
        edges = [(py[i], py[(i + 1) % len(py)]) for i in range(len(py))]
        negative = sorted((model.elements[u].name, model.elements[v].name)
                          for u, v in edges if polarity[f"{u} -> {v}"] == "-")
        assert "?" not in {polarity[f"{u} -> {v}"] for u, v in edges}, ident
        assert negative == sorted(tuple(link) for link in entry.get("negative_links", [])), ident


@reformism
def test_reformism_dominance_from_the_command_line(reformism_cli):
    # Its speed (< 30 s) is measured by `python -m tests.benchmarks.loops`.
    result, _, out = reformism_cli
    assert result.exit_code == 0, result.output
    assert "Strongest loop at each time" in result.output and "left out: " in result.output
    assert load_result(out).attrs["engine"] == "compiled"


def test_loop_scores_from_the_kernel_equal_those_from_pysd(monkeypatch):
    # The run behind the scores takes the kernel's Euler steps; PySD's give the same numbers.
    import pysd_runner.analysis.loops.trajectories as trajectories

    model = compile_model(MODELS / "keen" / "keen.mdl")
    compiled = loop_dominance(model, final_time=20)
    monkeypatch.setattr(trajectories, "simulate_compiled", lambda *args, **kwargs: None)
    plain = loop_dominance(model, final_time=20)
    assert (compiled.attrs["engine"], plain.attrs["engine"]) == ("compiled", "pysd")
    for name in ("loop_score", "relative_score", "link_score"):
        a, b = compiled[name].values, plain[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        finite = np.isfinite(b)
        assert_close_to_scale(a[finite], b[finite], 1e-9, err_msg=name)


@pytest.mark.parametrize("name", ["goodwin", "keen"])
def test_teaching_models_name_their_loops_with_the_stated_polarity(name):
    from pysd_runner.analysis.loops import find_loops, match_named_loops

    model = compile_model(MODELS / name / f"{name}.mdl")
    path = model.source.parent / "loops.toml"
    loops = find_loops(model, names=path)
    report = match_named_loops(model, loops, names=path)
    assert report, f"models/{name}/loops.toml names no loops"
    assert all(r["found"] for r in report), report
    assert all(r["agrees"] for r in report), report
