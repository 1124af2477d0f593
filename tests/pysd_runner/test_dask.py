"""Ensembles on a real Dask cluster on loopback: same result as in process, survives a dead worker."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import xarray as xr

from pysd_runner import ExecutorError, compile_model, run_ensemble, sample

from ..conftest import MODELS



@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local, Client(local) as client:
        yield local, client


@pytest.fixture(scope="module")
def goodwin():
    return compile_model(MODELS / "goodwin" / "goodwin.mdl")


def _strip(ds):
    return ds.drop_attrs()


def test_dask_result_is_identical_to_in_process(cluster, goodwin):
    _, client = cluster
    samples = sample(goodwin, ["phillips slope", "capital output ratio"], n=40, seed=5)
    local = run_ensemble(goodwin, samples, final_time=30, variables=["wage_share", "employment_rate"])
    remote = run_ensemble(goodwin, samples, final_time=30, variables=["wage_share", "employment_rate"],
                          executor=client, chunk_size=7)
    xr.testing.assert_identical(_strip(remote), _strip(local))


def test_a_killed_worker_loses_nothing(cluster, goodwin):
    local_cluster, client = cluster
    samples = sample(goodwin, ["phillips slope", "capital output ratio"], n=600, seed=6)
    kwargs = dict(final_time=100, variables=["wage_share"])
    # Warm both workers (imports, model translation) so that the kill lands mid-run.
    run_ensemble(goodwin, samples.iloc[:4], executor=client, chunk_size=2, **kwargs)
    killed = {}

    def kill_one_worker():
        time.sleep(1.0)
        nanny = next(iter(local_cluster.workers.values()))
        pid = nanny.process.process.pid
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    remote = run_ensemble(goodwin, samples, executor=client, chunk_size=20, **kwargs)
    killer.join()
    assert "pid" in killed
    local = run_ensemble(goodwin, samples, **kwargs)
    xr.testing.assert_identical(_strip(remote), _strip(local))


def test_local_cluster_from_a_string(goodwin):
    samples = sample(goodwin, ["phillips slope"], n=6, seed=1)
    remote = run_ensemble(goodwin, samples, final_time=10, variables=["wage_share"], executor="local:1")
    local = run_ensemble(goodwin, samples, final_time=10, variables=["wage_share"])
    np.testing.assert_array_equal(remote["wage_share"].values, local["wage_share"].values)


@pytest.mark.parametrize(
    "executor, pattern",
    [
        ("tcp://127.0.0.1:1", "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
        ("local:0", "positive number of workers"),
        ("ssh://x", "must be 'local:N' or 'tcp://host:port'"),
        (42, "executor must be None"),
    ],
)
def test_bad_executors_are_clear_errors(goodwin, executor, pattern):
    with pytest.raises(ExecutorError, match=pattern):
        run_ensemble(goodwin, {"phillips slope": [1.2]}, final_time=5, executor=executor)
