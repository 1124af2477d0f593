"""Ensembles: many members of one model in one vectorised pass, in chunks, locally or on Dask.

Each varied constant becomes a numpy array with one value per member, and the vectorised
copy of PySD's generated module (:mod:`pysd_runner.vectorise`) integrates all members at
once. Outputs are read only for the requested variables at the save period, straight into
arrays. Members that go non-finite are flagged in ``ok`` and never affect the others.
Models (or chunks) that cannot run as arrays fall back to member-by-member runs with a
:class:`VectorisationWarning` naming the element, so results are never wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .compiler import CompiledModel, compile_model, control_inputs
from .errors import (CrisisError, ExecutorError, ParameterError, SimulationError,
                     VectorisationWarning, stderr_is_terminal)
from .inputs import (check_memory, check_seed, element_in_traceback, merged_params, output_cells,
                     output_elements, provenance, time_settings)
from .plausible import load_plausible, member_exits
from .runner import configure_pysd, run
from .scenarios import load_scenario
from .vectorise import vector_module, vectorisation_blockers

__all__ = ["run_ensemble", "VectorisationWarning", "ExecutorError"]

#: The engines run_ensemble can use, fastest first.
ENGINES = ("auto", "compiled", "vectorised", "member-by-member")

#: Default bound on members x save times x variables x 8 bytes held at once.
DEFAULT_MAX_BYTES = 512 * 2**20


# --------------------------------------------------------------------------- samples

def normalise_samples(model: CompiledModel, samples: Any, check_ranges: bool) -> dict[str, np.ndarray]:
    """Samples as {python name: float array (n,)}, validated against the model."""
    if isinstance(samples, xr.Dataset):
        if len(samples.dims) != 1:
            raise ParameterError(
                f"a samples Dataset must have exactly one dim (the members); got dims {dict(samples.sizes)}"
            )
        columns = {name: samples[name].values for name in samples.data_vars}
    elif isinstance(samples, pd.DataFrame):
        columns = {str(name): samples[name].to_numpy() for name in samples.columns}
    elif isinstance(samples, Mapping):
        columns = dict(samples)
    else:
        raise ParameterError(
            "samples must be a pandas DataFrame, a mapping of parameter name to array, or an "
            f"xarray Dataset with one dim; got {type(samples).__name__}"
        )
    if not columns:
        raise ParameterError("samples are empty: give at least one parameter with at least one value")
    resolved: dict[str, np.ndarray] = {}
    size = None
    for name, values in columns.items():
        element = model.resolve(name, kinds=("constant",), role="parameter")
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise ParameterError(f"samples of '{element.name}' must be numbers; got {values!r:.80}") from None
        if array.ndim != 1:
            raise ParameterError(
                f"samples of '{element.name}' must be one value per member (1-D); got shape {array.shape}"
            )
        if size is None:
            size = array.size
        elif array.size != size:
            raise ParameterError(
                f"every parameter needs one value per member: '{element.name}' has {array.size} values, "
                f"the others {size}"
            )
        if array.size == 0:
            raise ParameterError(f"samples are empty: '{element.name}' has no values")
        bad = ~np.isfinite(array)
        if bad.any():
            first = int(np.argmax(bad))
            raise ParameterError(f"samples of '{element.name}' must be finite; member {first} is {array[first]}")
        if check_ranges:
            lo, hi = element.limits
            outside = np.zeros(array.size, bool)
            if lo is not None:
                outside |= array < lo
            if hi is not None:
                outside |= array > hi
            if outside.any():
                first = int(np.argmax(outside))
                raise ParameterError(
                    f"{int(outside.sum())} of {array.size} samples of '{element.name}' are outside its Vensim "
                    f"range {element.range_text} (member {first} is {array[first]:g}); sample within the "
                    "range or pass check_ranges=False"
                )
        if element.py_name in resolved:
            raise ParameterError(f"'{element.name}' is given twice in the samples")
        resolved[element.py_name] = array
    return resolved


# --------------------------------------------------------------------------- one chunk

@dataclass
class _ChunkResult:
    times: np.ndarray
    values: dict[str, np.ndarray]  # name -> (members, times)
    ok: np.ndarray
    notes: list[str]
    mode: str
    subscripts: dict[str, dict[str, np.ndarray]] | None = None  # name -> {dim: coords}


def _save_times(settings: dict[str, float]) -> int:
    span = settings["final_time"] - settings["initial_time"]
    return int(math.floor(span / settings["saveper"] + 1e-9)) + 1


def _run_vectorised(model: CompiledModel, members: dict[str, np.ndarray], fixed: dict[str, Any],
                    settings: dict[str, float], outputs: list[str], on_fraction=None) -> _ChunkResult:
    import pysd

    n = len(next(iter(members.values())))
    pysd_model = pysd.load(str(vector_module(model)), initialize=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Replacing a constant value with")
        # Member arrays enter as callables; PySD would then treat them as time-dependent,
        # so their dependencies are reset to none: they stay constants with a run cache.
        pysd_model.set_components({name: (lambda a=array: a) for name, array in members.items()})
    for name in members:
        pysd_model._dependencies[name] = {}
    configure_pysd(pysd_model, fixed, outputs, {**settings, "dynamic": ()})
    getters = [(name, getattr(pysd_model.components, name)) for name in outputs]
    capacity = _save_times(settings) + 1
    store = {name: np.empty((capacity, n)) for name in outputs}
    times = np.empty(capacity)
    clock = pysd_model.time
    k = 0

    def record():
        nonlocal k
        times[k] = clock.round()
        for name, getter in getters:
            store[name][k] = getter()
        k += 1

    statefuls = list(pysd_model._dynamicstateful_elements)

    def euler_step():
        # PySD's _euler_step packs states into one object array, which numpy turns into a
        # 2-D array when every state is a member array; step each stateful on its own.
        dt = clock.time_step()
        slopes = [stateful.ddt() for stateful in statefuls]
        for stateful, slope in zip(statefuls, slopes):
            stateful.update(stateful.state + slope * dt)
        clock.update(clock() + dt)
        pysd_model.clean_caches()

    n_steps = max(1, int(round((settings["final_time"] - settings["initial_time"]) / settings["time_step"])))
    report_every = max(1, n_steps // 100)
    step = 0
    with np.errstate(all="ignore"):
        while clock.in_bounds():
            if clock.in_return():
                record()
            euler_step()
            step += 1
            if on_fraction is not None and step % report_every == 0:
                on_fraction(step / n_steps)
        if clock.in_return():
            record()
        ok = np.ones(n, bool)
        for name in outputs:
            ok &= np.isfinite(store[name][:k]).all(axis=0)
        for stateful in statefuls:
            state = np.asarray(stateful.state, dtype=float)
            ok &= np.isfinite(np.broadcast_to(state, np.broadcast_shapes(state.shape, (n,)))).reshape(-1, n).all(axis=0)
    # A transposed view, not a copy: transposing members x times costs more than the run.
    values = {name: store[name][:k].T for name in outputs}
    return _ChunkResult(times[:k].copy(), values, ok, [], "vectorised")


def _run_one_by_one(model: CompiledModel, members: dict[str, np.ndarray], fixed: dict[str, Any],
                    settings: dict[str, float], outputs: list[str], seeds: np.ndarray | None) -> _ChunkResult:
    n = len(next(iter(members.values())))
    n_times = _save_times(settings)
    values: dict[str, np.ndarray] = {}
    subscripts: dict[str, dict[str, np.ndarray]] = {}
    ok = np.zeros(n, bool)
    times = None
    notes = []
    for i in range(n):
        params = {**fixed, **{name: float(array[i]) for name, array in members.items()}}
        params = {k: ({"time": v[0], "value": v[1]} if isinstance(v, tuple) else v) for k, v in params.items()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = run(model, params, final_time=settings["final_time"], time_step=settings["time_step"],
                         saveper=settings["saveper"], variables=outputs, errors="warn", check_ranges=False,
                         seed=None if seeds is None else int(seeds[i]))
        except SimulationError as exc:
            notes.append(f"member {i}: {exc}")
            continue
        times = ds["time"].values if times is None else times
        finite = True
        for name in outputs:
            da = ds[name]
            if name not in values:
                subscripts[name] = {d: da[d].values for d in da.dims[1:]}
                values[name] = np.full((n, n_times, *da.shape[1:]), np.nan)
            row = da.values[:n_times]
            values[name][i, : row.shape[0]] = row
            finite &= bool(np.isfinite(row).all())
        ok[i] = finite
    if times is None:
        times = settings["initial_time"] + settings["saveper"] * np.arange(n_times)
    for name in outputs:  # every member failed: no shapes known, keep time-only NaNs
        values.setdefault(name, np.full((n, n_times), np.nan))
    return _ChunkResult(np.asarray(times, float)[:n_times], values, ok, notes, "member-by-member", subscripts)


def _run_compiled(model: CompiledModel, members: dict[str, np.ndarray], fixed: dict[str, Any],
                  settings: dict[str, float], outputs: list[str], on_fraction=None,
                  threads: int | None = None) -> _ChunkResult:
    """All members on the model's compiled kernel (raises KernelUnsupported if it cannot)."""
    from .kernel import KernelUnsupported, kernel_for

    try:
        kernel = kernel_for(model, progress=on_fraction is not None)
    except ImportError:
        raise KernelUnsupported(model.name, "needs numba, which is not installed") from None
    reason = kernel.can_run(fixed, list(members), outputs)
    if reason is not None:
        raise KernelUnsupported(model.name, reason)
    n = len(next(iter(members.values())))
    with np.errstate(all="ignore"):
        times, values, ok, _ = kernel.run(members, n, fixed, settings, outputs, on_fraction, threads)
    return _ChunkResult(times, values, ok, [], "compiled")


def _run_chunk(model: CompiledModel, members, fixed, settings, outputs, blockers, seeds, on_fraction=None,
               engine: str = "auto", threads: int | None = None) -> _ChunkResult:
    if blockers and engine == "compiled":
        listed = "; ".join(f"'{k}' {v}" for k, v in sorted(blockers.items()))
        from .kernel import engine_error

        raise engine_error(model, listed)
    if blockers or engine == "member-by-member":
        return _run_one_by_one(model, members, fixed, settings, outputs, seeds)
    if engine in ("auto", "compiled"):
        from .kernel import KernelUnsupported, engine_error

        try:
            return _run_compiled(model, members, fixed, settings, outputs, on_fraction, threads)
        except KernelUnsupported as exc:
            if engine == "compiled":
                raise engine_error(model, exc) from None
    try:
        return _run_vectorised(model, members, fixed, settings, outputs, on_fraction)
    except (TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, OverflowError) as exc:
        element = element_in_traceback(model, exc) or "an element"
        result = _run_one_by_one(model, members, fixed, settings, outputs, seeds)
        result.notes.insert(0, f"'{element}' cannot run on member arrays ({type(exc).__name__}: {exc}); "
                               f"ran these {len(result.ok)} members one by one")
        return result


def _chunk_task(model_path: str, sha256: str, members, fixed, settings, outputs, blockers, seeds,
                engine: str = "auto") -> _ChunkResult:
    """What a Dask worker runs: compile the model from its file, then one chunk."""
    model = compile_model(model_path)
    if model.sha256 != sha256:
        raise ExecutorError(
            f"model file '{model_path}' changed while the ensemble ran (sha256 {model.sha256[:12]} on the "
            f"worker, {sha256[:12]} on the client)"
        )
    # One thread per chunk: Dask already runs one chunk per worker thread.
    return _run_chunk(model, members, fixed, settings, outputs, blockers, seeds, engine=engine, threads=1)


# --------------------------------------------------------------------------- executors

def _connect(executor: Any):
    """A dask.distributed Client for 'local:N', 'tcp://host:port' or a Client; and whether we own it."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ExecutorError(
            "the Dask executor needs the 'distributed' package, a dependency of crisis-dynamics that is "
            "missing here: reinstall it (pip install crisis-dynamics)"
        ) from None
    if isinstance(executor, Client):
        return executor, False
    if not isinstance(executor, str):
        raise ExecutorError(
            f"executor must be None, 'local:N', 'tcp://host:port' or a dask Client; got {executor!r}"
        )
    if executor.startswith("local:"):
        count = executor.partition(":")[2]
        if not count.isdigit() or int(count) < 1:
            raise ExecutorError(f"executor 'local:N' needs a positive number of workers; got {executor!r}")
        # A cluster of our own is an implementation detail: its workers' log lines (a
        # cancelled task on Ctrl-C, a nanny killing a busy worker on shutdown) are not
        # the user's concern. Errors still reach the user through the futures.
        with _deferred_interrupt() as interrupted:
            cluster = LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                   silence_logs=logging.CRITICAL)
            client = Client(cluster)
        if interrupted:
            # Ctrl-C while the workers started: shut them down cleanly, then stop.
            _close_quietly(client, cluster)
            raise KeyboardInterrupt
        return client, True
    if executor.startswith("tcp://"):
        try:
            return Client(executor, timeout=5), True
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {executor}: {exc}") from None
    raise ExecutorError(f"executor must be 'local:N' or 'tcp://host:port'; got {executor!r}")


def _execute(model, chunks, fixed, settings, outputs, blockers, seeds, executor, progress, engine="auto"):
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(len(c) for c in chunks), disable=not (progress and stderr_is_terminal()), file=sys.stderr, unit="member",
               desc=f"{model.name} ensemble", delay=1.0)

    def members_of(index):
        return {name: array[index] for name, array in chunks.arrays.items()}

    results: list[_ChunkResult | None] = [None] * len(chunks)
    with bar:
        if executor is None:
            done = 0
            for i, index in enumerate(chunks):
                seed_part = None if seeds is None else seeds[index]

                def advance(fraction, size=len(index)):
                    # Members advance together through time: show the chunk's progress in members.
                    bar.n = done + int(fraction * size)
                    bar.refresh()

                results[i] = _run_chunk(model, members_of(index), fixed, settings, outputs, blockers, seed_part,
                                        advance if progress else None, engine)
                done += len(index)
                bar.n = done
                bar.refresh()
            return results
        from distributed import as_completed

        client, owned = _connect(executor)
        try:
            futures = {}
            for i, index in enumerate(chunks):
                seed_part = None if seeds is None else seeds[index]
                future = client.submit(
                    _chunk_task, str(model.source), model.sha256, members_of(index), fixed, settings,
                    outputs, blockers, seed_part, engine, pure=False, retries=3,
                )
                futures[future] = i
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except CrisisError:
                    raise
                except Exception as exc:
                    raise ExecutorError(f"a chunk of the ensemble failed on the Dask cluster: {exc}") from exc
                bar.update(len(chunks[futures[future]]))
        finally:
            if owned:
                with _deferred_interrupt() as interrupted:
                    _close_quietly(client, getattr(client, "cluster", None))
                if interrupted:
                    raise KeyboardInterrupt
    return results


@contextlib.contextmanager
def _deferred_interrupt():
    """Hold Ctrl-C while a Dask cluster starts or stops, and report whether it came.

    A cluster interrupted half-way through starting cannot be closed: its workers are
    still initialising and distributed's exit hook fails with a traceback. Starting and
    stopping take a second or two, so the interrupt waits for them.
    """
    import signal
    import threading

    received: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(True))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def _close_quietly(client, cluster) -> None:
    """Close a client and the cluster we started for it; a failure to close is not the user's."""
    for part in (client, cluster):
        if part is None:
            continue
        try:
            part.close()
        except Exception:  # noqa: BLE001 - shutting down; the run's own outcome is what matters
            pass


class _Chunks(list):
    """Index arrays of member chunks, with the full member arrays attached."""

    def __init__(self, arrays: dict[str, np.ndarray], size: int):
        n = len(next(iter(arrays.values())))
        super().__init__(np.arange(start, min(start + size, n)) for start in range(0, n, size))
        self.arrays = arrays


# --------------------------------------------------------------------------- the API

def run_ensemble(
    model: CompiledModel | str | os.PathLike,
    samples: Any,
    *,
    params: Mapping[str, Any] | None = None,
    variables: Sequence[str] | str | None = None,
    scenario: Any = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    seed: int | None = None,
    executor: Any = None,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    check_ranges: bool = True,
    progress: bool = False,
    engine: str = "auto",
    max_memory: float | None = None,
) -> xr.Dataset:
    """Run many members of a model, one value of each varied constant per member.

    Parameters
    ----------
    model : CompiledModel or path
    samples : DataFrame, mapping of name -> array, or Dataset with one dim
        One column per varied constant (Vensim or Python name), one row per member.
    params : mapping, optional
        Values shared by every member (numbers or time series), as in :func:`run`.
    variables, scenario, final_time, time_step, saveper, check_ranges
        As in :func:`run`; the scenario's values apply to every member unless sampled.
    seed : int, optional
        For models with random functions: member ``i`` is seeded from child ``i`` of
        ``numpy.random.SeedSequence(seed)``, so a member equals ``run(..., seed=that)``.
    executor : None, "local:N", "tcp://host:port" or a dask.distributed Client
        ``None`` runs in this process. Otherwise chunks go to Dask workers, which compile
        the model from its file; a chunk whose worker dies is retried.
    chunk_size : int, optional
        Members per chunk. Default: all members in one chunk in process, bounded by
        ``max_bytes`` of output (members x save times x variables x 8 bytes); with Dask,
        at least one chunk per worker thread.
    progress : bool
        A progress bar over members on stderr.
    engine : "auto", "compiled", "vectorised" or "member-by-member"
        "auto" runs the model's compiled kernel (:mod:`pysd_runner.kernel`) when it can
        translate the model, else the vectorised numpy pass, else member by member.
        "compiled" fails with the reason when the kernel cannot run the model. The other
        two force the slower engines (for comparison and benchmarks).
    max_memory : float, optional
        Bytes the ensemble may use (default: half of the memory available); an ensemble
        estimated to need more is refused before it starts (:class:`ParameterError`).

    Returns
    -------
    xarray.Dataset
        Dims ``run`` and ``time``; each varied constant as a coordinate along ``run``
        (named by its Python name); ``ok(run)`` true for members that stayed finite;
        attrs as for :func:`run` plus ``engine`` ("compiled", "vectorised" or "member-by-member"),
        ``n_members`` and ``n_ok``.
    """
    if engine not in ENGINES:
        raise ParameterError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    scen = load_scenario(scenario, model) if scenario is not None else None
    members = normalise_samples(model, samples, check_ranges)
    n = len(next(iter(members.values())))
    fixed = merged_params(model, scen, params, check_ranges)
    for name in members:
        fixed.pop(name, None)
    settings = time_settings(model, scen, fixed, final_time=final_time, time_step=time_step, saveper=saveper)
    if settings["dynamic"]:
        raise ParameterError(
            f"the time settings {', '.join(settings['dynamic'])} of model '{model.source.name}' change during the run, "
            "so members would run on different clocks; fix them for the ensemble (final_time, time_step, saveper)"
        )
    timed = sorted(set(members) & control_inputs(model))
    if timed:
        raise ParameterError(
            f"the time settings of model '{model.source.name}' depend on {', '.join(repr(model.elements[k].name) for k in timed)}, "
            "so members varying it would run on different clocks; run them one by one, or fix the time "
            "settings (final_time, time_step, saveper)"
        )
    outputs = [e.py_name for e in output_elements(model, variables)]
    ranges = load_plausible(model)
    asked = set(outputs)
    outputs += [r.py_name for r in ranges if r.py_name not in asked]
    check_memory(settings, output_cells(model, outputs), n, max_memory, what=f"the ensemble of {n:,} members")
    seed = check_seed(seed)
    seeds = None
    if model.uses_random:
        root = np.random.SeedSequence(seed)
        seed = int(root.entropy) if seed is None else seed
        seeds = np.array([int(child.generate_state(1)[0]) for child in root.spawn(n)], dtype=np.int64)

    blockers = vectorisation_blockers(model)
    if blockers:
        listed = "; ".join(f"'{k}' {v}" for k, v in sorted(blockers.items()))
        warnings.warn(
            f"model '{model.source.name}' cannot run as member arrays ({listed}); running {n} members one by one",
            VectorisationWarning, stacklevel=2,
        )
    per_member = max(1, _save_times(settings) * len(outputs) * 8)
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ParameterError(f"chunk_size must be a positive integer; got {chunk_size!r}")
        size = int(chunk_size)
    else:
        size = max(1, int(max_bytes // per_member))
        if executor is not None:
            size = min(size, max(1, math.ceil(n / 16)))
    chunks = _Chunks(members, size)
    results = _execute(model, chunks, fixed, settings, outputs, blockers, seeds, executor, progress, engine)

    for result in results:
        for note in result.notes:
            if "cannot run on member arrays" in note:
                warnings.warn(f"model '{model.source.name}': {note}", VectorisationWarning, stacklevel=2)
    times = results[0].times
    dataset = _assemble(model, members, results, times, outputs)
    if ranges:
        dataset = _plausibility(dataset, ranges, asked)
    attrs = provenance(model, fixed, scen, seed, settings)
    modes = sorted({r.mode for r in results})
    attrs.update({
        "engine": ",".join(modes),
        "n_members": n,
        "n_ok": int(dataset["ok"].sum()),
        **({"n_plausible": int(dataset["plausible"].sum())} if ranges else {}),
        "varied": json.dumps(list(members)),
    })
    dataset.attrs = attrs
    return dataset


def _plausibility(dataset: xr.Dataset, ranges, asked) -> xr.Dataset:
    """``plausible(run)``: the member stayed within every range of the model's plausible.toml
    (non-finite members are reported by ``ok``, not here); ``implausible(run)``: the first
    exit, variable, time and value ("" for plausible members)."""
    exits = member_exits(dataset["time"].values, {r.py_name: dataset[r.py_name].values for r in ranges}, ranges)
    plausible = np.array([not e for e in exits], dtype=bool)
    text = np.array([e[0]["text"] if e else "" for e in exits], dtype=str)
    dataset["plausible"] = xr.Variable("run", plausible, {
        "long_name": "member stayed within the plausible ranges of plausible.toml", "units": "",
        "ranges": json.dumps({r.name: [r.low, r.high] for r in ranges})})
    dataset["implausible"] = xr.Variable("run", text, {"long_name": "first exit from a plausible range"})
    return dataset.drop_vars([r.py_name for r in ranges if r.py_name not in asked])


def _assemble(model: CompiledModel, members, results, times, outputs) -> xr.Dataset:
    n = len(next(iter(members.values())))
    time_coord = xr.Variable("time", np.asarray(times, float), {"units": model.time_units, "long_name": "Time"})
    data_vars = {}
    sub_coords: dict[str, np.ndarray] = {}
    for name in outputs:
        if name in members:
            continue  # a varied constant asked for as an output: it is the coordinate along run
        element = model.elements[name]
        parts = [r.values[name][:, : len(times)] for r in results]
        # Chunks are (members, times) views of time-major arrays: join them time-major too,
        # which copies contiguous rows instead of transposing.
        values = parts[0] if len(parts) == 1 else np.concatenate([np.swapaxes(p, 0, 1) for p in parts], axis=1).swapaxes(0, 1)
        dims = ("run", "time")
        for r in results:
            if r.subscripts and name in r.subscripts:
                dims += tuple(r.subscripts[name])
                sub_coords.update(r.subscripts[name])
                break
        data_vars[name] = xr.Variable(
            dims, values,
            {"units": element.units, "long_name": element.name, "comment": element.comment},
        )
    ok = np.concatenate([r.ok for r in results])
    data_vars["ok"] = xr.Variable("run", ok, {"long_name": "member stayed finite", "units": ""})
    coords = {"run": ("run", np.arange(n), {"long_name": "ensemble member"}), "time": time_coord}
    for dim, labels in sub_coords.items():
        coords[dim] = (dim, np.asarray(labels, dtype=str))
    for name, array in members.items():
        element = model.elements[name]
        coords[name] = ("run", array, {"units": element.units, "long_name": element.name})
    return xr.Dataset(data_vars, coords=coords)
