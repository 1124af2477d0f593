"""Checkpoints: a fit killed with SIGKILL resumes without losing finished evaluations and ends
exactly where an uninterrupted fit with the same seed ends; outputs are never overwritten
without --force."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from calibration.checkpoint import Store
from pysd_runner import load_result

from ..conftest import MODELS
from .conftest import GOODWIN_TRUTH, synthetic

CLI = [sys.executable, "-c", "from pysd_runner.cli import main; main()"]
VOLATILE = ("created_utc", "elapsed_seconds", "resumed_batches")


def _spec(folder: Path, goodwin) -> Path:
    data = synthetic(goodwin, GOODWIN_TRUTH, ["wage_share", "employment_rate"], seed=7, noise=0.005, origin=1950,
                     final_time=30, time_step=0.1)
    frame = xr.Dataset(data).to_dataframe()
    frame.index.name = "year"
    frame.to_csv(folder / "data.csv")
    spec = folder / "spec.toml"
    spec.write_text(f"""
model = "{MODELS / 'goodwin' / 'goodwin.mdl'}"
seed = 99

[time]
origin = 1950
time_step = 0.1
fit = [1950, 1975]
holdout = [1976, 1980]

[parameters."phillips slope"]
bounds = [0.8, 2.0]

[parameters."phillips intercept"]
bounds = [0.6, 1.6]

[[observations]]
variable = "wage share"
series = "csv:data.csv#wage_share"

[[observations]]
variable = "employment rate"
series = "csv:data.csv#employment_rate"

[method]
name = "differential_evolution"
popsize = 10
maxiter = 60
tol = 0

[checkpoint]
interval = 0.3
""")
    return spec


def _stable(ds: xr.Dataset) -> dict:
    return {k: v for k, v in ds.attrs.items() if k not in VOLATILE}


def _records(folder: Path) -> int:
    fingerprint = json.loads((folder / "meta.json").read_text())["fingerprint"]
    store = Store(folder, fingerprint=fingerprint, resume=True)
    count = len(store.records)
    store.close()
    return count


def test_sigkill_then_resume_equals_uninterrupted(goodwin, tmp_path):
    spec = _spec(tmp_path, goodwin)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    reference = tmp_path / "reference.nc"
    done = subprocess.run([*CLI, "calibrate", str(spec), "--output", str(reference)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    output = tmp_path / "fit.nc"
    checkpoint = tmp_path / "fit.nc.checkpoint"
    process = subprocess.Popen([*CLI, "calibrate", str(spec), "--output", str(output)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = checkpoint / "journal.bin"
    snapshot = checkpoint / "snapshot.npz"
    deadline = time.monotonic() + 300
    # Kill once a snapshot exists and the journal has grown past it: mid-run, both in use.
    while time.monotonic() < deadline and process.poll() is None:
        if snapshot.exists() and journal.exists() and journal.stat().st_size > 2000:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the fit finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not output.exists()
    finished = _records(checkpoint)
    assert finished > 0

    # Without --resume an unfinished checkpoint is not silently discarded.
    refused = subprocess.run([*CLI, "calibrate", str(spec), "--output", str(output)], env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode == 1 and "pass --resume" in refused.stderr

    resumed = subprocess.run([*CLI, "calibrate", str(spec), "--output", str(output), "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "batches from the checkpoint" in resumed.stdout
    assert not checkpoint.exists()
    a, b = load_result(reference), load_result(output)
    assert b.attrs["resumed_batches"] == finished  # every finished batch was reused, none recomputed
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert _stable(a) == _stable(b)

    # A finished fit refuses to overwrite an existing output unless told to.
    again = subprocess.run([*CLI, "calibrate", str(spec), "--output", str(output)], env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr


def test_torn_journal_record_is_dropped(tmp_path):
    folder = tmp_path / "ck"
    store = Store(folder, fingerprint={"a": 1}, interval=1e9)
    for i in range(3):
        store.call(1, np.full((2, 2), float(i)), lambda x: x.sum(axis=1))
    store.close()
    journal = folder / "journal.bin"
    journal.write_bytes(journal.read_bytes()[:-5])  # the last record torn by a kill
    again = Store(folder, fingerprint={"a": 1}, resume=True)
    assert len(again.records) == 2
    np.testing.assert_array_equal(again.call(1, np.full((2, 2), 0.0), None), [[0.0], [0.0]])
    again.close()


def test_resume_rejects_a_different_fit(tmp_path):
    from calibration import CheckpointError

    Store(tmp_path / "ck", fingerprint={"seed": 1}).close()
    with pytest.raises(CheckpointError, match="belongs to a different fit \\(changed: seed\\)"):
        Store(tmp_path / "ck", fingerprint={"seed": 2}, resume=True)


def test_replay_detects_different_parameters(tmp_path):
    from calibration import CheckpointError

    store = Store(tmp_path / "ck", fingerprint={})
    store.call(1, np.zeros((1, 2)), lambda x: x[:, :1])
    store.close()
    again = Store(tmp_path / "ck", fingerprint={}, resume=True)
    with pytest.raises(CheckpointError, match="does not match this run at batch 0"):
        again.call(1, np.ones((1, 2)), lambda x: x[:, :1])
    again.close()
