"""The SDXorg/test-models peer suite: discovery, plain PySD runs and comparisons.

The suite (vendored under ``tests/peer/test-models``, MIT licence beside it) holds small
Vensim models, each with the canonical output Vensim wrote for it (``output.csv`` or
``output.tab``). A model passes when its output equals the canonical output to rtol 1e-3,
compared by PySD's own ``assert_frames_close``.

``python -m tests.peer.suite`` runs plain PySD over every model and rewrites
``pysd_failures.toml``: the models PySD itself cannot run to their canonical output, each
with PySD's reason. The test checks that list against a fresh plain-PySD run, so a model
that starts (or stops) passing under a new PySD is noticed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SUITE = HERE / "test-models"
FAILURES = HERE / "pysd_failures.toml"

#: PySD's own comparison tolerance for the suite's canonical outputs.
RTOL = 1e-3


@dataclass(frozen=True)
class Case:
    """One model of the suite: its id (folder/file stem) and where its files are."""

    id: str
    model: Path
    canonical: Path


def discover() -> list[Case]:
    """Every Vensim model in the suite with a canonical output in its folder."""
    cases = []
    for model in sorted(SUITE.glob("*/*/*")):
        if model.suffix.lower() != ".mdl":
            continue
        folder = model.parent
        canonical = next((folder / n for n in ("output.csv", "output.tab") if (folder / n).is_file()), None)
        if canonical is None:
            continue
        cases.append(Case(f"{folder.parent.name}/{folder.name}/{model.stem}", model, canonical))
    return cases


def load_failures() -> dict[str, str]:
    """The recorded plain-PySD failures: case id -> PySD's reason."""
    with FAILURES.open("rb") as handle:
        return dict(tomllib.load(handle).get("failures", {}))


def canonical_frame(case: Case) -> pd.DataFrame:
    from pysd.tools.benchmarking import load_outputs
    from pysd.py_backend.utils import detect_encoding

    return load_outputs(case.canonical, encoding=detect_encoding(case.canonical))


def private_copy(case: Case, into: Path) -> Path:
    """Copy the model's folder (PySD writes its translation beside the model file)."""
    target = into / case.model.parent.name
    shutil.copytree(case.model.parent, target)
    return target / case.model.name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
    for line in lines[1:4]:  # assert_frames_close names the columns on its next lines
        reason += " " + line
    reason = re.sub(r"0x[0-9a-f]+", "0x...", reason)
    return reason[:300]


def plain_pysd(case: Case) -> tuple[pd.DataFrame | None, str | None]:
    """Run the model with plain PySD as its own suite does: (output, None) or (None, reason)."""
    import pysd
    from pysd.tools.benchmarking import assert_frames_close

    canon = canonical_frame(case)
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = pysd.read_vensim(str(private_copy(case, Path(tmp))))
            output = model.run(return_columns=list(canon.columns))
            assert_frames_close(output, canon, rtol=RTOL)
        except Exception as exc:  # noqa: BLE001 - the reason is what is recorded
            return None, _first_line(exc)
    return output, None


def _split_column(column: str) -> tuple[str, tuple[str, ...]]:
    match = re.fullmatch(r"\s*(.*?)\s*\[(.*)\]\s*", column)
    if not match:
        return column.strip(), ()
    return match.group(1), tuple(s.strip() for s in match.group(2).split(","))


#: Vensim's time settings: canonical outputs list them, a run Dataset keeps them in attrs.
CONTROL = {"initial time": "initial_time", "final time": "final_time", "time step": "time_step",
           "saveper": "saveper"}


def requested_variables(columns) -> list[str]:
    """The model variables behind the canonical columns (for ``--vars``)."""
    names = []
    for column in columns:
        name, _ = _split_column(column)
        if re.sub(r"[\s_]+", " ", name.lower()) not in CONTROL and name.lower() != "time" and name not in names:
            names.append(name)
    return names


def dataset_frame(ds, columns, time_index) -> pd.DataFrame:
    """The canonical columns (Vensim names, ``name[a,b]`` for subscripts) from a run Dataset.

    Time settings come from the Dataset's attrs (constant over the run).
    """
    by_name = {}
    for key, var in list(ds.data_vars.items()) + [(k, v) for k, v in ds.coords.items() if k not in ds.dims]:
        by_name.setdefault(str(var.attrs.get("long_name", key)).lower(), key)
        by_name.setdefault(str(key).lower(), key)
    times = np.asarray(ds["time"].values, dtype=float)
    if len(times) != len(time_index) or not np.allclose(times, np.asarray(time_index, dtype=float), rtol=1e-9, atol=1e-9):
        raise AssertionError(
            f"the run's time axis ({len(times)} times, {times[0]:g} to {times[-1]:g}) differs from the canonical "
            f"output's ({len(time_index)} times, {time_index[0]:g} to {time_index[-1]:g})"
        )
    out = {}
    for column in columns:
        name, subs = _split_column(column)
        control = CONTROL.get(re.sub(r"[\s_]+", " ", name.lower()))
        if control in ds.attrs.get("dynamic_time_settings", "").split(","):
            continue  # changes during the run: the time axis itself shows it
        if control is not None and not subs:
            out[column] = np.full(len(time_index), float(ds.attrs[control]))
            continue
        key = by_name.get(name.lower()) or by_name.get(re.sub(r"[\s_]+", "_", name.lower()))
        if key is None:
            raise KeyError(f"column '{column}' of the canonical output is not in the run")
        var = ds[key]
        dims = [d for d in var.dims if d not in ("time", "run", "scenario")]
        if len(dims) != len(subs):
            raise KeyError(f"column '{column}': the run's '{key}' has dims {dims}")
        values = var.sel(dict(zip(dims, subs))) if dims else var
        if "time" in values.dims:
            out[column] = np.asarray(values.values, dtype=float)
        else:
            out[column] = np.full(len(time_index), float(values))
    return pd.DataFrame(out, index=time_index)


def uses_na(canon: pd.DataFrame) -> bool:
    """True when the canonical output has NaN (Vensim's :NA:) among a variable's values.

    Vensim writes a constant in the first row only; those blanks are not :NA:.
    """
    later = canon.iloc[1:]
    return bool(any(later[c].isna().any() and later[c].notna().any() for c in canon.columns))


def assert_matches_canonical(frame: pd.DataFrame, canon: pd.DataFrame) -> None:
    from pysd.tools.benchmarking import assert_frames_close

    assert_frames_close(frame, canon[list(frame.columns)], rtol=RTOL)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def refresh(stream=sys.stderr) -> dict[str, str]:
    """Run plain PySD over the suite and rewrite ``pysd_failures.toml``."""
    import pysd

    failures = {}
    cases = discover()
    for i, case in enumerate(cases, 1):
        _, reason = plain_pysd(case)
        if reason is not None:
            failures[case.id] = reason
        print(f"[{i}/{len(cases)}] {case.id}: {'ok' if reason is None else reason}", file=stream)
    lines = [
        "# Models of the vendored SDXorg/test-models suite that plain PySD does not run to their",
        "# canonical output (rtol 1e-3), each with PySD's reason. Written by",
        "# `python -m tests.peer.suite`; tests/peer/test_peer_suite.py checks it against a fresh run.",
        f'pysd_version = "{pysd.__version__}"',
        f"models = {len(cases)}",
        "",
        "[failures]",
    ]
    lines += [f"{_toml_string(k)} = {_toml_string(v)}" for k, v in sorted(failures.items())]
    tmp = FAILURES.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, FAILURES)
    return failures


if __name__ == "__main__":
    found = refresh()
    print(f"{len(discover()) - len(found)} of {len(discover())} models pass under plain PySD", file=sys.stderr)
