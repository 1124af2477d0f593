"""The HTML report without a browser: panels, escaping, embedded data, the command line."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from dashboards.errors import DashboardInputError
from dashboards.report import BASIC_VERSION, PANELS, BundleWarning, build_report, plotly_bundle, write_report
from pysd_runner import compile_model, run, save
from pysd_runner.cli import main

from ..conftest import FIXTURES
from .conftest import GOODWIN

JSON_BLOCK = re.compile(r'<script type="application/json" id="([^"]+)">(.*?)</script>', re.S)


def _without_plotly_js(text: str) -> str:
    """The page minus the inlined libraries, plotly.js and (with the live levers) uPlot, which
    have URLs and markup of their own."""
    out, start = [], 0
    while True:
        begin = text.find("<script>", start)
        if begin < 0:
            return "".join(out) + text[start:]
        end = text.index("</script>", begin)
        head = text[begin:begin + 400]
        library = "plotly.js" in head or "leeoniya/uPlot" in head
        out.append(text[start:begin] if library else text[start:end])
        start = end


def _blocks(text: str) -> dict[str, object]:
    return {key: json.loads(body) for key, body in JSON_BLOCK.findall(text)}


def _panels(text: str) -> list[str]:
    return re.findall(r'<section class="panel" id="panel-([a-z]+)"', text)


def test_every_panel_present_when_every_input_is_given(full_report):
    text = full_report.read_text()
    # "states" needs a state-space fit (tests/calibration/test_state_space.py builds that report).
    expected = [k for k in PANELS if k != "states"]
    assert _panels(text) == expected
    blocks = _blocks(text)
    for key in expected:
        if key == "live":  # the model itself, run in the page
            assert json.loads(_model_block(text))["panels"] and 'id="crisis-engine"' in text
        elif key != "variables":  # a plain HTML table
            assert blocks[f"fig-{key}"]["data"], key
    assert text.count("<tr data-search=") == 16


def _model_block(text):
    return text.split('<script type="application/json" id="crisis-model">', 1)[1].split("</script>", 1)[0]


def _legend_entries(figure: dict) -> int:
    """Legend entries a figure shows: visible-in-legend traces, one per legend group."""
    layout = figure.get("layout", {})
    if layout.get("showlegend") is False:
        return 0
    groups, count = set(), 0
    traces = [t for t in figure.get("data", []) if t.get("showlegend", True) is not False]
    if len(figure.get("data", [])) == 1 and "showlegend" not in layout:
        return 0  # plotly shows no legend for a single trace
    for trace in traces:
        group = trace.get("legendgroup")
        if group is None or group not in groups:
            count += 1
        if group is not None:
            groups.add(group)
    return count


def test_no_legend_above_eight_entries_and_no_placeholder_text(full_report):
    text = full_report.read_text()
    figures_found = 0
    for key, block in _blocks(text).items():
        if not isinstance(block, dict) or not isinstance(block.get("data"), list):
            continue
        figures_found += 1
        assert _legend_entries(block) <= 8, (key, _legend_entries(block))
        for annotation in block.get("layout", {}).get("annotations", []):
            assert annotation.get("text") not in ("new text", None, ""), (key, annotation)
    assert figures_found >= 4
    ours = _without_plotly_js(text)
    assert "new text" not in ours and "lower 95% band" not in ours


def test_the_report_opens_with_the_story_before_the_scenarios(tmp_path, runs):
    import json

    from dashboards.report import build_report

    events = json.dumps([{"name": "crisis", "start": 10.0, "end": 15.0, "label": "crisis window"}])
    ds = runs.copy()
    ds.coords["scenario_events"] = ("scenario", [events] * ds.sizes["scenario"])
    story = tmp_path / "story.toml"
    story.write_text('headline = "wage share"\nagainst = "baseline"\n[choices]\nsmall_orbit = "a small orbit"\n')
    text = build_report(ds, story=story)
    assert _panels(text)[0] == "crossroads"
    assert text.index('id="panel-crossroads"') < text.index('id="scenario-selector"')
    # Without a story file beside the model (goodwin has none) there is no story panel.
    assert "crossroads" not in _panels(build_report(ds))
    story.write_text('headline = "wage share"\ncolour = "red"\n[choices]\nsmall_orbit = "x"\n')
    with pytest.raises(DashboardInputError, match=r"unknown key\(s\) \['colour'\]"):
        build_report(ds, story=story)


def _array(value) -> np.ndarray:
    """A trace's x or y from figure JSON: a list, or plotly's base64 typed array."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


def test_a_story_with_an_origin_puts_every_figure_on_calendar_years(runs):
    import json

    events = json.dumps([{"name": "crisis", "start": 10.0, "end": 15.0, "label": "crisis window"}])
    ds = runs.copy()
    ds.coords["scenario_events"] = ("scenario", [events] * ds.sizes["scenario"])
    story = {"headline": "wage share", "against": "baseline", "choices": {"small_orbit": "a small orbit"},
             "origin": 1950}
    blocks = _blocks(build_report(ds, story=story))
    for key in ("fig-crossroads", "fig-trajectories", "fig-comparison"):
        x = _array(blocks[key]["data"][0]["x"])
        np.testing.assert_allclose(x, ds["time"].values + 1950, err_msg=key)
    crossroads = blocks["fig-crossroads"]["layout"]
    assert any("over years 1960-1965" in a.get("text", "") for a in crossroads["annotations"])
    assert any(shape.get("x0") == 1960 and shape.get("x1") == 1965 for shape in crossroads["shapes"])
    assert crossroads["xaxis"]["title"]["text"] == "Time (calendar year)"
    with pytest.raises(DashboardInputError, match="origin 'x'; it must be the calendar year"):
        build_report(ds, story={**story, "origin": "x"})


def test_a_panel_appears_only_when_its_input_is_given(single_run):
    text = build_report(single_run)
    assert _panels(text) == ["trajectories", "phase", "variables"]
    assert 'class="scenario-toggle"' not in text  # one run: nothing to select


def test_report_is_self_contained(full_report):
    text = full_report.read_text()
    assert f"plotly.js (basic - minified) v{BASIC_VERSION}" in text  # the bundle is inline
    assert "leeoniya/uPlot (v" in text  # and uPlot, for the live levers
    rest = _without_plotly_js(text)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", rest)
    assert "http://" not in rest and "https://" not in rest
    assert "Content-Security-Policy" in rest and "default-src 'none'" in rest


def test_model_strings_never_reach_the_page_as_markup(tmp_path):
    model = compile_model(FIXTURES / "html_docs.mdl")
    scenario = tmp_path / "hostile.toml"
    scenario.write_text('description = "</dd><script>window.__xss = 5</script> & more"\n[params]\n"growth rate" = 0.3\n')
    runs = run(model, scenario=scenario)
    text = build_report(runs, title="<i>title</i>")
    rest = _without_plotly_js(text)
    assert "window.__xss" in rest  # the text is there ...
    assert "<script>window.__xss" not in rest and "<b>bold?</b>" not in rest  # ... never as markup
    assert "<i>title</i>" not in rest and "&lt;i&gt;title&lt;/i&gt;" in rest
    assert "&lt;/dd&gt;&lt;script&gt;window.__xss = 5&lt;/script&gt; &amp; more" in rest
    assert "<td>&lt;script&gt;window.__xss = 1&lt;/script&gt;&lt;b&gt;bold?&lt;/b&gt; &amp; &lt;img" in rest


def test_grid_data_embedded_as_float32(full_report, grid):
    payload = _blocks(full_report.read_text())["grid-data"]
    assert payload["shape"] == [2, 5, 5, grid.sizes["time"]]
    assert [lever["name"] for lever in payload["levers"]] == ["phillips_slope", "phillips_intercept"]
    values = np.frombuffer(base64.b64decode(payload["data"]["wage_share"]), dtype="<f4").reshape(payload["shape"])
    expected = grid["wage_share"].sel(scenario="small_orbit").isel(phillips_slope=4, phillips_intercept=1)
    np.testing.assert_allclose(values[1, 4, 1], expected.values, rtol=1e-6)
    assert payload["ok"] == [True] * 50


def test_inputs_are_read_from_files(tmp_path, runs, loops):
    save(runs, tmp_path / "runs.nc")
    save(loops, tmp_path / "loops.nc")
    out = write_report(tmp_path / "r.html", tmp_path / "runs.nc", loops=tmp_path / "loops.nc")
    assert _panels(out.read_text()) == ["trajectories", "comparison", "phase", "loops", "variables"]


def test_report_errors_name_the_input(tmp_path, runs):
    with pytest.raises(DashboardInputError, match="fit: result file .* does not exist"):
        build_report(runs, fit=tmp_path / "nofit.nc")
    with pytest.raises(DashboardInputError, match="must end in .html"):
        write_report(tmp_path / "r.pdf", runs)
    with pytest.raises(DashboardInputError, match="no 'time' dim"):
        build_report(xr.Dataset({"x": ("a", [1.0])}))


def test_report_command(tmp_path, runs, grid):
    save(runs, tmp_path / "runs.nc")
    save(grid, tmp_path / "grid.nc")
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(main, ["report", "--runs", str(tmp_path / "runs.nc"), "--grid", str(tmp_path / "grid.nc"),
                                       "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.output
    assert "panel-grid" in out.read_text()


def test_grid_command(tmp_path):
    out = tmp_path / "grid.nc"
    result = CliRunner().invoke(main, [
        "grid", str(GOODWIN), "--lever", "phillips slope=1:1.5", "--lever", "phillips intercept=1,1.13",
        "--steps", "3", "-s", "baseline", "-s", "strong_unions", "--vars", "wage_share", "--final-time", "5",
        "--time-step", "0.05", "--output", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "Ran 12 runs (0 did not stay finite)" in result.output
    grid = xr.load_dataset(out)
    assert dict(grid.sizes) == {"scenario": 2, "phillips_slope": 3, "phillips_intercept": 2, "time": 51}
    np.testing.assert_allclose(grid["phillips_slope"].values, [1, 1.25, 1.5])


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "--runs", "missing.nc", "--output", "r.html"], "runs: result file 'missing.nc' does not exist"),
        (["report", "--runs", "runs.nc", "--output", "r.txt"], "allowed: .html"),
        (["grid", str(GOODWIN), "--lever", "phillips slop", "-o", "g.nc"], "Did you mean 'phillips slope'"),
        (["grid", str(GOODWIN), "--lever", "a", "--lever", "b", "--lever", "c", "-o", "g.nc"], "one or two --lever"),
        (["grid", str(GOODWIN), "--lever", "phillips slope=2:1", "-o", "g.nc"], "lo < hi"),
        (["grid", str(GOODWIN), "--lever", "phillips slope=1:9", "--steps", "2", "-o", "g.nc"], "outside its Vensim range"),
        (["grid", str(GOODWIN), "--lever", "phillips slope", "-o", "g.csv"], "allowed: .nc"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(tmp_path, monkeypatch, runs, args, message):
    monkeypatch.chdir(tmp_path)
    save(runs, tmp_path / "runs.nc")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "g.nc").exists()


def test_every_dashboard_command_has_an_example_in_its_help():
    for name in ("report", "grid", "app"):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output and f"crisis {name} " in result.output


def test_the_smaller_bundle_is_used_when_it_draws_every_figure():
    name, javascript = plotly_bundle({"scatter", "bar"})
    assert name == f"plotly.js basic {BASIC_VERSION}" and len(javascript) < 2_000_000
    with pytest.warns(BundleWarning, match=r"trace types \['heatmap'\], which the basic bundle lacks"):
        name, javascript = plotly_bundle({"scatter", "heatmap"})
    assert name.startswith("plotly.js ") and len(javascript) > 4_000_000
