"""Figures: labels from the Dataset, panels, escaping, and the numbers they plot."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import xarray as xr

from dashboards import figures
from dashboards.errors import DashboardInputError


def _reformism_like(n_time: int = 11) -> xr.Dataset:
    """Variables named as the four-sector model names them (THEORY.md sectors)."""
    time = np.arange(float(n_time))
    names = {
        "profit_rate": "1/Year", "business_confidence": "Dmnl", "tax_revenue": "$/Year",
        "welfare_programme_level": "$/Year", "public_debt": "$", "legitimacy": "Dmnl", "militancy": "Dmnl",
        "interest_rate": "1/Year",
    }
    return xr.Dataset(
        {n: ("time", np.linspace(0, 1, n_time) * (i + 1), {"long_name": n.replace("_", " "), "units": u})
         for i, (n, u) in enumerate(names.items())},
        coords={"time": ("time", time, {"units": "Year", "long_name": "Time"})},
        attrs={"model_name": "reformism"},
    )


def test_reformism_runs_get_the_four_sector_panels():
    panels = figures.sector_panels(_reformism_like())
    assert list(panels) == ["Profitability", "Tax revenue", "Welfare spending", "Legitimacy"]
    assert panels["Profitability"] == ["profit_rate"]  # business confidence has other units
    assert panels["Tax revenue"] == ["tax_revenue"]
    assert panels["Welfare spending"] == ["welfare_programme_level"]  # public debt: $, not $/Year
    assert panels["Legitimacy"] == ["legitimacy", "militancy"]


def test_sector_panels_of_the_reformism_model_lead_with_the_headline_variables():
    from pysd_runner import compile_model, run

    from ..conftest import MODELS

    ds = run(compile_model(MODELS / "reformism" / "reformism.mdl"), scenario="baseline", final_time=20)
    panels = figures.sector_panels(ds)
    assert [names[0] for names in panels.values()] == [
        "profit_rate", "tax_revenue_share", "welfare_spending_per_head", "legitimacy"]
    for names in panels.values():
        assert len({ds[n].attrs["units"] for n in names}) == 1, names  # one axis, one unit
        assert not any(n.startswith(figures.DERIVED_PREFIXES) for n in names), names
        sizes = [float(np.median(np.abs(ds[n].values))) for n in names]
        assert max(sizes) / min(sizes) <= figures.MAGNITUDE_GAP ** 2, names


def test_sector_panels_rank_exact_names_first_and_keep_one_scale():
    time = np.arange(5.0)
    ds = xr.Dataset({
        name: ("time", (1 + 0.1 * time) * size, {"units": unit})
        for name, unit, size in [
            ("change_in_legitimacy", "Dmnl", 0.5), ("indicated_legitimacy", "Dmnl", 0.5),
            ("strike_activity", "Dmnl", 0.005), ("militancy", "Dmnl", 0.1), ("legitimacy", "Dmnl", 0.6),
            ("repression_cost", "$", 0.3),
        ]
    }, coords={"time": time})
    chosen = figures._sector_variables(ds, list(ds.data_vars), figures.SECTOR_KEYWORDS["Legitimacy"])
    assert chosen == ["legitimacy", "militancy"]  # strikes: 120 times smaller; repression cost: $
    only_flows = ds[["change_in_legitimacy"]]
    assert figures._sector_variables(only_flows, ["change_in_legitimacy"], ("legitimacy",)) == ["change_in_legitimacy"]


def test_other_models_fall_back_to_panels_by_units(runs):
    panels = figures.sector_panels(runs)
    assert 1 <= len(panels) <= figures.MAX_PANELS
    placed = [v for names in panels.values() for v in names]
    assert all(runs[v].attrs["units"] == runs[names[0]].attrs["units"] for names in panels.values() for v in names)
    # Constant over time (equilibria, the linearised period) is not a trajectory.
    assert "equilibrium_wage_share" not in placed and "linearised_cycle_period" not in placed
    # The conserved quantity (about 1.5/Year) would flatten the growth rates (about 0.05/Year).
    together = [names for names in panels.values() if "profit_rate" in names][0]
    assert "conserved_quantity" not in together


def test_given_panels_are_checked():
    with pytest.raises(DashboardInputError, match="no variable 'legitimcy'.*Did you mean 'legitimacy'"):
        figures.sector_panels(_reformism_like(), {"Legitimacy": ["legitimcy"]})


def test_trajectories_one_trace_per_scenario_and_variable_with_labels_from_attrs(runs):
    panels = {"Shares": ["wage_share", "profit_share"], "Employment": ["employment_rate"]}
    fig = figures.trajectories(runs, panels)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 3 * 3
    metas = {(t.meta["scenario"], t.meta["variable"]) for t in fig.data}
    assert ("strong_unions", "employment_rate") in metas
    assert [a.text.split("<br>")[0] for a in fig.layout.annotations][:2] == ["Shares", "Employment"]
    assert fig.layout.yaxis.title.text == "Dmnl"
    assert fig.layout.title.text == "Crisis trajectories: goodwin"
    trace = next(t for t in fig.data if t.meta == {"scenario": "small_orbit", "variable": "wage_share", "panel": "Shares"})
    np.testing.assert_array_equal(trace.y, runs["wage_share"].sel(scenario="small_orbit").values)
    # The legend names the scenarios (one entry each); each variable is named on its line.
    assert trace.name == "small_orbit" and "small_orbit · wage share" in trace.hovertemplate
    shown = [t.name for t in fig.data if t.showlegend]
    assert sorted(shown) == sorted(set(runs["scenario"].values.tolist()))
    titles = [a.text for a in fig.layout.annotations]
    assert "━━ wage share" in titles[0] and "╍╍ profit share" in titles[0] and titles[1].endswith(">employment rate</span>")


def test_trajectories_mark_the_scenarios_events(runs):
    import json

    events = [json.dumps([{"name": "reform", "start": 10.0, "end": 10.0, "label": "reform"}]),
              json.dumps([{"name": "reform", "start": 10.0, "end": 10.0, "label": "reform"},
                          {"name": "shock", "start": 30.0, "end": 33.0, "label": "the shock"}])]
    marked = runs.isel(scenario=[0, 1]).assign_coords(scenario_events=("scenario", events))
    found = figures.scenario_events(marked)
    assert [(e["name"], e["scenarios"]) for e in found] == [
        ("reform", list(marked["scenario"].values)), ("shock", [str(marked["scenario"].values[1])])]
    fig = figures.trajectories(marked, {"Shares": ["wage_share"], "Employment": ["employment_rate"]})
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    windows = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(lines) == 2 and {s.x0 for s in lines} == {10.0}       # one per panel
    assert len(windows) == 2 and {(s.x0, s.x1) for s in windows} == {(30.0, 33.0)}
    labels = [a.text for a in fig.layout.annotations]
    assert labels.count("reform") == 1 and labels.count("the shock") == 1   # labelled once
    # Only the scenarios shown are marked.
    assert [e["name"] for e in figures.scenario_events(marked, [str(marked["scenario"].values[0])])] == ["reform"]


def test_one_run_colours_variables(single_run):
    fig = figures.trajectories(single_run, {"Shares": ["wage_share", "profit_share"]})
    assert [t.name for t in fig.data] == ["wage share", "profit share"]
    assert fig.data[0].line.color != fig.data[1].line.color


def test_model_strings_are_escaped_for_plotly():
    ds = _reformism_like()
    ds["legitimacy"].attrs["long_name"] = "<b>legit</b> & <script>x</script>"
    fig = figures.trajectories(ds)
    names = [t.name for t in fig.data]
    assert "&lt;b&gt;legit&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in names
    assert not any("<script>" in n for n in names)


def test_scenario_comparison_differences(runs):
    fig = figures.scenario_comparison(runs, ["wage_share"], reference="baseline")
    diffs = [t for t in fig.data if t.xaxis == "x2"]
    unions = next(t for t in diffs if t.meta["scenario"] == "strong_unions")
    expected = runs["wage_share"].sel(scenario="strong_unions") - runs["wage_share"].sel(scenario="baseline")
    np.testing.assert_allclose(unions.y, expected.values)
    with pytest.raises(DashboardInputError, match="at least two scenarios"):
        figures.scenario_comparison(runs.isel(scenario=[0]))


def test_phase_portrait_marks_the_start(runs):
    fig = figures.phase_portrait(runs, scenarios=["baseline"])
    line, start = fig.data
    assert start.x[0] == runs["employment_rate"].sel(scenario="baseline").values[0]
    assert fig.layout.xaxis.title.text == "employment rate (Dmnl)"
    with pytest.raises(DashboardInputError, match="no variable 'employment'"):
        figures.phase_portrait(runs, x="employment")


def test_fit_figure_band_observations_and_holdout(fit):
    fig = figures.fit_figure(fit)
    observed = [t for t in fig.data if t.mode == "markers"]
    assert len(observed) == 2
    assert fig.layout.shapes[0].x0 == fit.attrs["holdout_start"]
    assert fig.layout.shapes[0].x1 == float(fit["time"].values[-1])
    assert any(t.fill == "tonexty" and t.name == "90% band" for t in fig.data)
    assert [a.text for a in fig.layout.annotations][:2] == ["wage share (Dmnl)", "employment rate (Dmnl)"]
    # One hold-out label (never plotly's placeholder "new text" on the other panels).
    labels = [a.text for a in fig.layout.annotations]
    assert labels.count("hold-out") == 1 and "new text" not in labels
    # A calibration's fit says its R2 in each panel's title, and its band level in the legend.
    stats = fit.assign(r2=(("series", "period"), [[0.5, -1.0], [-0.25, 0.1]]),
                       ssr_ratio_to_trend=("series", [0.8, 1.5])).assign_coords(period=["fit", "holdout"])
    stats.attrs = {"holdout_start": 20.0, "level": 0.95}
    titled = figures.fit_figure(stats)
    texts = [a.text for a in titled.layout.annotations]
    assert texts[0] == "wage share (Dmnl): R² 0.50, 0.80 of a straight line's squared error"
    assert texts[1].startswith("employment rate (Dmnl): R² -0.25")
    assert any(t.name == "95% band" for t in titled.data)
    with pytest.raises(DashboardInputError, match="no variable 'fitted'"):
        figures.fit_figure(fit.drop_vars("fitted"))


def test_fan_chart_percentiles_leave_out_members_not_ok(ensemble):
    fig = figures.fan_chart(ensemble, ["wage_share"])
    median = next(t for t in fig.data if t.name == "median")
    kept = ensemble["wage_share"].isel(run=ensemble["ok"].values)
    np.testing.assert_allclose(median.y, np.percentile(kept.values, 50, axis=0))
    assert fig.layout.annotations[0].text == "wage share: 7 of 8 members"
    with pytest.raises(DashboardInputError, match="lacks the dims \\['run'\\]"):
        figures.fan_chart(ensemble.isel(run=0))


def test_sensitivity_bars_sobol_sorted_with_error_bars(sensitivity):
    fig = figures.sensitivity_bars(sensitivity)
    s1, st = fig.data
    assert list(st.x) == ["phillips_intercept", "phillips_slope", "capital_output_ratio"]
    np.testing.assert_allclose(st.y, [0.6, 0.3, 0.15])
    np.testing.assert_allclose(st.error_y.array, [0.04, 0.03, 0.02])
    assert fig.layout.title.text == "Sobol indices"


def test_sensitivity_bars_morris():
    ds = xr.Dataset({"mu_star": ("param", [0.1, 0.4]), "sigma": ("param", [0.05, 0.2])}, coords={"param": ["a", "b"]})
    fig = figures.sensitivity_bars(ds)
    assert list(fig.data[0].x) == ["b", "a"] and fig.layout.title.text == "Morris screening"
    with pytest.raises(DashboardInputError, match="Sobol indices .* or Morris measures"):
        figures.sensitivity_bars(ds.rename({"mu_star": "mu"}))


def test_loop_dominance_names_and_polarity(loops):
    fig = figures.loop_dominance(loops)
    lines = [t for t in fig.data if t.type == "scatter"]
    assert sorted((t.name, t.line.dash) for t in lines) == [("B1 Profit squeeze (B)", "dot"), ("R1 Accumulation (R)", "solid")]
    bars = [t for t in fig.data if t.type == "bar"]
    # One timeline row per named loop; the rows share out the time: one loop at a time.
    assert [t.meta["loop"] for t in bars] == ["B1", "R1"]
    step = float(np.diff(loops["time"].values)[0])
    total = sum(float(np.sum(t.x)) for t in bars)
    assert abs(total - step * loops.sizes["time"]) < 1e-9
    assert fig.layout.yaxis2.title.text == "relative loop score"


def test_loop_dominance_timeline_of_a_real_run_with_its_events(goodwin):
    from pysd_runner.analysis.loops import loop_dominance, strongest_shares

    ds = loop_dominance(goodwin, final_time=16, saveper=0.05)
    ds.attrs["scenario_events"] = '[{"name": "shock", "start": 5, "end": 7, "label": "shock"}]'
    fig = figures.loop_dominance(ds)
    bars = [t for t in fig.data if t.type == "bar"]
    shares = {ident: part for ident, _, part in strongest_shares(ds)}
    for bar in bars:  # each row's label carries its share of the time, and its bars add up to it
        ident = bar.meta["loop"]
        assert f"({shares[ident]:.0%})" in bar.y[0]
        assert abs(sum(bar.x) / (0.05 * int((ds["strongest"] != "").sum())) - shares[ident]) < 1e-9
    assert sum(1 for t in fig.data if t.showlegend is not False) <= 8
    assert any(shape.x0 == 5 and shape.x1 == 7 for shape in fig.layout.shapes)


def test_loop_dominance_under_uncertainty_draws_probability_bands(goodwin):
    from pysd_runner.analysis.loops import loop_dominance_ensemble

    ds = loop_dominance_ensemble(goodwin, {"phillips slope": [1.0, 1.2, 1.4, 1.5]}, final_time=12, saveper=0.1)
    fig = figures.loop_dominance(ds)  # dispatches on p_strongest
    stacked = [t for t in fig.data if t.stackgroup == "strongest"]
    assert [t.meta["loop"] for t in stacked][-1] == "other"
    total = np.nansum([np.asarray(t.y, dtype=float) for t in stacked], axis=0)
    defined = ~np.isnan(ds["p_strongest"].values).all(axis=1)
    np.testing.assert_allclose(total[defined], 1.0, atol=1e-12)
    assert sum(1 for t in fig.data if t.showlegend is not False) <= 8
    assert "4 members" in fig.layout.annotations[0].text


def _with_crisis(runs, start=10.0, end=15.0):
    import json

    events = json.dumps([{"name": "crisis", "start": start, "end": end, "label": "crisis window"}])
    ds = runs.copy()
    ds.coords["scenario_events"] = ("scenario", [events] * ds.sizes["scenario"])
    return ds


def test_crossroads_tells_each_choice_and_its_outcome(runs):
    ds = _with_crisis(runs)
    story = {"title": "At the crossroads", "headline": "wage share", "against": "baseline",
             "choices": {"small_orbit": "a small orbit", "strong_unions": "strong unions", "elsewhere": "not run"}}
    fig = figures.crossroads(ds, story)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.meta["scenario"] for t in lines] == ["baseline", "small_orbit", "strong_unions"]
    assert lines[0].line.dash == "dash"
    time = ds["time"].values
    for scenario, choice in (("small_orbit", "a small orbit"), ("strong_unions", "strong unions")):
        values = ds["wage_share"].sel(scenario=scenario).values
        inside, before = (time >= 10) & (time <= 15), (time >= 5) & (time < 10)
        change = values[inside].mean() / values[before].mean() - 1
        text = next(a.text for a in fig.layout.annotations if a.text.startswith(choice))
        assert f"{change:+.0%} against the 5 years before" in text
    assert fig.layout.title.text == "At the crossroads"
    assert sum(1 for t in fig.data if t.showlegend is not False) <= 8
    # Without the counterfactual in the runs, the choices are drawn alone.
    alone = figures.crossroads(ds.sel(scenario=["small_orbit", "strong_unions"]), story)
    assert [t.meta["scenario"] for t in alone.data if t.mode == "lines"] == ["small_orbit", "strong_unions"]
    with pytest.raises(DashboardInputError, match="none of the scenarios it names"):
        figures.crossroads(ds, {**story, "choices": {"nowhere": "x"}})
    with pytest.raises(DashboardInputError, match="headline variable 'wage shares' is not in the runs"):
        figures.crossroads(ds, {**story, "headline": "wage shares"})


def test_variable_table_filters_and_escapes():
    ds = _reformism_like()
    ds["legitimacy"].attrs["comment"] = "Trust in <i>the</i> state"
    fig = figures.variable_table(ds, "trust state")
    cells = fig.data[0].cells.values
    assert list(cells[1]) == ["legitimacy"]
    assert list(cells[3]) == ["Trust in &lt;i&gt;the&lt;/i&gt; state"]
    assert len(figures.variable_table(ds).data[0].cells.values[0]) == len(ds.data_vars)


def test_lever_grid_figure_shows_one_grid_point(grid):
    fig = figures.lever_grid_figure(grid, scenario="small_orbit", position={"phillips_slope": 0, "phillips_intercept": 4})
    expected = grid["wage_share"].sel(scenario="small_orbit").isel(phillips_slope=0, phillips_intercept=4)
    np.testing.assert_array_equal(fig.data[0].y, expected.values)
    assert fig.layout.title.text == "phillips slope = 1, phillips intercept = 1.3"
