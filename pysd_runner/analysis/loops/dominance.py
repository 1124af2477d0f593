"""Link scores, loop scores and loop dominance (Loops That Matter), and the periods a loop dominates."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...compiler import CompiledModel, compile_model
from ...errors import LoopScoreWarning, ParameterError
from ...inputs import as_number
from ...knockouts import no_link_message
from .common import AMBIGUOUS, DEFAULT_MAX_LOOPS, DOMINANCE_SHARE, Loop
from .trajectories import Trajectories
from .graph import settle_from_run, structural_graph
from .named import exclusion_report, excluded_entries, match_report, named_entries
from .cycles import analyse


def _save_indices(times: np.ndarray, settings: Mapping[str, float]) -> np.ndarray:
    t0, tf, dt, saveper = (settings[k] for k in ("initial_time", "final_time", "time_step", "saveper"))
    n_save = int(math.floor((tf - t0) / saveper + 1e-9)) + 1
    wanted = t0 + saveper * np.arange(n_save)
    index = np.rint((wanted - t0) / dt).astype(int)
    return index[index < times.size]


def _relative(scores: np.ndarray) -> np.ndarray:
    """Scores over (time, loop) of one partition -> relative scores in [-1, 1]."""
    out = np.full(scores.shape, np.nan)
    with np.errstate(all="ignore"):
        magnitude = np.abs(scores)
        infinite = np.isinf(magnitude)
        any_inf = infinite.any(axis=1)
        scale = np.nanmax(np.where(np.isnan(magnitude), -np.inf, magnitude), axis=1)
        finite_scores = scores / np.where((scale > 0) & np.isfinite(scale), scale, 1.0)[:, None]
        total = np.nansum(np.abs(finite_scores), axis=1)
        rel = finite_scores / np.where(total > 0, total, 1.0)[:, None]
        inf_rel = np.sign(scores) * infinite / np.maximum(infinite.sum(axis=1), 1)[:, None]
        rel = np.where(any_inf[:, None], inf_rel, rel)
    defined = ~np.isnan(scores).any(axis=1)
    out[defined] = rel[defined]
    return out


def _dominant(relative: np.ndarray) -> np.ndarray:
    """The smallest set of loops per time, by decreasing |relative score|, explaining half the change."""
    magnitude = np.abs(relative)
    valid = ~np.isnan(magnitude).any(axis=1) & (np.nan_to_num(magnitude) > 0).any(axis=1)
    magnitude = np.where(np.isnan(magnitude), 0.0, magnitude)
    order = np.argsort(-magnitude, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(magnitude, order, axis=1), axis=1)
    needed = np.argmax(cumulative >= DOMINANCE_SHARE - 1e-12, axis=1) + 1
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :].repeat(order.shape[0], axis=0), axis=1)
    return (rank < needed[:, None]) & valid[:, None]


def link_scores(
    model: CompiledModel | str | os.PathLike,
    links: Sequence[tuple[str, str]] | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    seed: int | None = None,
    knockout: Any = None,
):
    """Link scores over a run (Loops That Matter, with the 2023 flow-to-stock correction).

    Parameters
    ----------
    model : CompiledModel or path
    links : list of (source, target), optional
        Links by Vensim or Python names; default every link of the causal graph.
    params, scenario, final_time, time_step, saveper, seed, knockout
        As in :func:`pysd_runner.run`.

    Returns
    -------
    xarray.Dataset
        ``link_score(time, link)`` at every save time (NaN where a score needs earlier time
        steps than the run has), with coordinates ``source``, ``target`` (Python names) and
        ``polarity`` per link.
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    graph, _ = structural_graph(model, include_constants=True)
    if links is None:
        chosen = [(u, v) for u, v in graph.edges if graph.nodes[u]["kind"] != "constant"]
    else:
        chosen = []
        for pair in links:
            if not (isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2):
                raise ParameterError(f"each link must be a (source, target) pair; got {pair!r}")
            source, target = (model.resolve(p).py_name for p in pair)
            if not graph.has_edge(source, target):
                raise ParameterError(no_link_message(model, source, target))
            chosen.append((source, target))
    trajectories = Trajectories(model, params, scenario=scenario, final_time=final_time, time_step=time_step,
                                 seed=seed, knockout=knockout)
    if saveper is not None:
        trajectories.settings["saveper"] = float(saveper)
    ambiguous = [e for e in chosen if graph.edges[e]["polarity"] == AMBIGUOUS]
    settle_from_run(graph, trajectories, ambiguous)
    index = _save_indices(trajectories.times, trajectories.settings)
    columns, approximated = [], []
    for source, target in chosen:
        score, exact = trajectories.link_score(source, target, graph.edges[source, target]["polarity"])
        columns.append(score[index])
        if not exact:
            approximated.append(f"{source} -> {target}")
    data = np.stack(columns, axis=1) if columns else np.empty((index.size, 0))
    return _dataset_links(model, trajectories, graph, chosen, data, index, approximated)


def _dataset_links(model, trajectories, graph, chosen, data, index, approximated):
    import xarray as xr

    times = trajectories.times[index]
    ids = [f"{u} -> {v}" for u, v in chosen]
    ds = xr.Dataset(
        {"link_score": (("time", "link"), data, {
            "long_name": "Link score", "units": "1",
            "comment": "Loops That Matter link score (Schoenberg et al. 2020; flow-to-stock correction 2023)",
        })},
        coords={
            "time": ("time", times, {"units": model.time_units, "long_name": "Time"}),
            "link": ("link", np.asarray(ids, dtype=str)),
            "source": ("link", np.asarray([u for u, _ in chosen], dtype=str)),
            "target": ("link", np.asarray([v for _, v in chosen], dtype=str)),
            "link_polarity": ("link", np.asarray([graph.edges[e]["polarity"] for e in chosen], dtype=str)),
        },
    )
    ds.attrs.update(_attrs(trajectories, approximated))
    return ds


def _attrs(trajectories: Trajectories, approximated: list[str]) -> dict:
    attrs = {k: v for k, v in trajectories.run_attrs.items() if k != "knockout"}
    attrs["saveper"] = trajectories.settings["saveper"]
    attrs["knockout"] = json.dumps(trajectories.knockout.describe(trajectories.run_attrs)
                                   if trajectories.knockout is not None else [])
    attrs["approximated_links"] = json.dumps(approximated)
    attrs["evaluated_step_by_step"] = json.dumps(sorted(trajectories.evaluated_per_step))
    attrs["method"] = (
        "Loops That Matter (Schoenberg, Davidsen & Eberlein 2020) with the flow-to-stock correction of "
        "Schoenberg, Hayward & Eberlein (2023); scores at each save time from the Euler steps before it"
    )
    if approximated:
        warnings.warn(
            f"model '{trajectories.model.source.name}': {len(approximated)} link score(s) approximated "
            f"(stateful functions scored as a unit transfer): {', '.join(approximated[:6])}",
            LoopScoreWarning, stacklevel=3,
        )
    return attrs


def _saved_every(trajectories, saveper):
    """The trajectories with the scores' save period set (at least the time step)."""
    if saveper is not None:
        value = as_number(saveper, "saveper")
        if value < trajectories.settings["time_step"] * (1 - 1e-9):
            raise ParameterError(
                f"saveper ({value:g}) must be at least the time step ({trajectories.settings['time_step']:g})"
            )
        trajectories.settings["saveper"] = value
    return trajectories


def loop_dominance(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    seed: int | None = None,
    max_length: int | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
    names: str | os.PathLike | bool | None = None,
    knockout: Any = None,
):
    """Loop dominance over a run: loop scores, relative loop scores and dominant loops.

    Follows "Loops That Matter" (Schoenberg, Davidsen & Eberlein 2020) with the corrected
    flow-to-stock link score (Schoenberg, Hayward & Eberlein 2023); see the module docs.

    Parameters
    ----------
    model : CompiledModel or path
    params, scenario, final_time, time_step, saveper, seed
        The run to analyse, as in :func:`pysd_runner.run`.
    max_length, max_loops, names
        Which loops to score, as in :func:`find_loops`.
    knockout : list, optional
        Links held fixed (see :func:`pysd_runner.run`); their loops are cut and not scored.

    Returns
    -------
    xarray.Dataset
        Dims ``time`` (the save times) and ``loop`` (loop ids ``L1``, ...) with coordinates
        ``name`` (e.g. "B1 Profit squeeze", the loop id when unnamed), ``named``,
        ``polarity`` (R, B or ?), ``variables`` (Vensim names joined by
        `` -> ``), ``length`` and ``partition``; variables ``loop_score``, ``relative_score``
        (in [-1, 1]; NaN at times before the scores are defined) and ``dominant`` (bool); also
        ``link_score(time, link)`` for the links on the loops. Provenance attrs of the run, the
        knock-outs and any approximated links.

    Examples
    --------
    >>> ds = loop_dominance("models/goodwin/goodwin.mdl", final_time=30)
    >>> dict(ds["relative_score"].sizes)
    {'time': 301, 'loop': 3}
    """
    import xarray as xr

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    trajectories = _saved_every(Trajectories(model, params, scenario=scenario, final_time=final_time,
                                             time_step=time_step, seed=seed, knockout=knockout), saveper)
    loops, graph, _ = analyse(model, params, scenario=scenario, max_length=max_length, max_loops=max_loops,
                               names=names, numeric=True, knockout=knockout, final_time=final_time,
                               time_step=time_step, seed=seed, trajectories=trajectories)
    # Loops the model leaves out (exogenous growth, say) are not scored: relative scores
    # share the change among the remaining loops only.
    left_out = [loop for loop in loops if loop.excluded]
    loops = [loop for loop in loops if not loop.excluded]
    index = _save_indices(trajectories.times, trajectories.settings)
    scored = _score_loops(loops, graph, trajectories, index)
    edges, scores, approximated = scored.edges, scored.scores, scored.approximated
    n_loop = len(loops)
    loop_score, relative, dominant, strongest = scored.loop_score, scored.relative, scored.dominant, scored.strongest
    main = scored.main
    links_ds = _dataset_links(model, trajectories, graph, edges,
                              np.stack([scores[e] for e in edges], axis=1) if edges else np.empty((index.size, 0)),
                              index, approximated)
    ids = [loop.id for loop in loops]
    ds = xr.Dataset(
        {
            "loop_score": (("time", "loop"), loop_score, {
                "long_name": "Loop score", "units": "1",
                "comment": "Product of the link scores around the loop (Loops That Matter)",
            }),
            "relative_score": (("time", "loop"), relative, {
                "long_name": "Relative loop score", "units": "1",
                "comment": "Loop score over the sum of absolute loop scores in its partition, in [-1, 1]; "
                           "NaN before the scores are defined (the first two time steps)",
            }),
            "dominant": (("time", "loop"), dominant, {
                "long_name": "Dominant loop",
                "comment": "In the smallest set of loops of its partition, by decreasing |relative score|, "
                           f"that together explain at least {DOMINANCE_SHARE:.0%} of the change",
            }),
            "link_score": links_ds["link_score"],
            "strongest": ("time", strongest.astype(str), {
                "long_name": "Strongest loop",
                "comment": "Id of the loop with the largest |relative score| in the main partition (the one "
                           "with the most loops) at each time; '' before the scores are defined. One loop per "
                           "time, so shares of time add up to 100%",
            }),
        },
        coords={
            "time": links_ds["time"],
            "loop": ("loop", np.asarray(ids, dtype=str)),
            "name": ("loop", np.asarray([loop.label for loop in loops], dtype=str),
                     {"long_name": "Loop name (from loops.toml, e.g. 'B1 Profit squeeze'; the loop id if unnamed)"}),
            "named": ("loop", np.asarray([bool(loop.name) for loop in loops], dtype=bool)),
            "polarity": ("loop", np.asarray([loop.polarity for loop in loops], dtype=str),
                         {"long_name": "Loop polarity (R reinforcing, B balancing, ? depends on the state)"}),
            # Variable-length strings: a model with thousands of long loops stays small on disk.
            "variables": ("loop", np.asarray([loop.describe() for loop in loops], dtype=object)),
            "length": ("loop", np.asarray([loop.length for loop in loops], dtype=np.int64)),
            "partition": ("loop", np.asarray([loop.partition for loop in loops], dtype=np.int64)),
            "link": links_ds["link"],
            "source": links_ds["source"],
            "target": links_ds["target"],
            "link_polarity": links_ds["link_polarity"],
        },
        attrs=links_ds.attrs,
    )
    for name in ("loop_score", "relative_score", "dominant", "link_score"):
        # Mostly zeros and repeated values in large models: compressed in netCDF.
        ds[name].encoding.update({"zlib": True, "complevel": 1})
    ds.attrs["max_length"] = max_length if max_length is not None else "none"
    ds.attrs["n_loops"] = n_loop
    ds.attrs["named_loops"] = json.dumps(match_report(named_entries(model, names), loops))
    ds.attrs["excluded_loops"] = json.dumps(exclusion_report(excluded_entries(model, names), left_out))
    ds.attrs["main_partition"] = int(main) if main is not None else -1
    return ds


@dataclass
class _Scored:
    edges: list
    scores: dict
    approximated: list
    loop_score: np.ndarray
    relative: np.ndarray
    dominant: np.ndarray
    strongest: np.ndarray
    main: int | None


def _score_loops(loops: Sequence[Loop], graph, trajectories, index: np.ndarray) -> _Scored:
    """Link, loop and relative scores, dominant sets and the strongest loop over one run."""
    edges = sorted({e for loop in loops for e in loop.edges})
    scores, approximated = {}, []
    for source, target in edges:
        score, exact = trajectories.link_score(source, target, graph.edges[source, target]["polarity"])
        scores[(source, target)] = score[index]
        if not exact:
            approximated.append(f"{source} -> {target}")
    n_time, n_loop = index.size, len(loops)
    loop_score = _loop_products(loops, edges, scores, n_time)
    relative = np.full((n_time, n_loop), np.nan)
    dominant = np.zeros((n_time, n_loop), bool)
    for part in sorted({loop.partition for loop in loops}):
        members = [j for j, loop in enumerate(loops) if loop.partition == part]
        rel = _relative(loop_score[:, members])
        relative[:, members] = rel
        dominant[:, members] = _dominant(rel)
    main = _main_partition(loops)
    in_main = np.asarray([loop.partition == main for loop in loops], dtype=bool)
    strongest = np.full(n_time, "", dtype=object)
    if in_main.any():
        magnitude = np.abs(np.where(in_main[None, :], relative, np.nan))
        defined = ~np.isnan(magnitude).all(axis=1) & (np.nan_to_num(magnitude) > 0).any(axis=1)
        best = np.argmax(np.nan_to_num(magnitude, nan=-1.0), axis=1)
        ids_array = np.asarray([loop.id for loop in loops], dtype=object)
        strongest[defined] = ids_array[best[defined]]
    return _Scored(edges, scores, approximated, loop_score, relative, dominant, strongest, main)


def _main_partition(loops: Sequence[Loop]) -> int | None:
    """The partition with the most loops (ties: the one holding more named loops, then the lowest)."""
    if not loops:
        return None
    counts: dict[int, list[int]] = {}
    for loop in loops:
        count = counts.setdefault(loop.partition, [0, 0])
        count[0] += 1
        count[1] += bool(loop.name)
    return min(counts, key=lambda p: (-counts[p][0], -counts[p][1], p))


def strongest_shares(dataset) -> list[tuple[str, str, float]]:
    """Share of the time each loop is the strongest: ``(id, label, share)``, adding up to 1.

    Named loops are listed one by one; unnamed loops together as ``("other", "other loops
    (N distinct)", share)``; times before the scores are defined are left out of the total.
    Ordered by share, largest first.
    """
    ids = [str(v) for v in dataset["strongest"].values]
    defined = [i for i in ids if i]
    if not defined:
        return []
    named = {str(i): str(n) for i, n, f in zip(dataset["loop"].values, dataset["name"].values,
                                                  dataset["named"].values) if f}
    counts: dict[str, int] = {}
    others: set[str] = set()
    for ident in defined:
        key = ident if ident in named else "other"
        if key == "other":
            others.add(ident)
        counts[key] = counts.get(key, 0) + 1
    rows = [(key, named.get(key, f"other loops ({len(others)} distinct)"), count / len(defined))
            for key, count in counts.items()]
    return sorted(rows, key=lambda row: (-row[2], row[0] == "other", row[0]))


def loop_dominance_ensemble(
    model: CompiledModel | str | os.PathLike,
    members: Any,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    final_time: float | None = None,
    time_step: float | None = None,
    saveper: float | None = None,
    seed: int | None = None,
    max_length: int | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
    names: str | os.PathLike | bool | None = None,
    progress: bool = False,
):
    """Loop dominance under uncertainty: over an ensemble, how likely each named loop dominates when.

    The loops are found once (from the first member's run, as :func:`loop_dominance` does);
    each member is then run and scored. What comes back is per named loop and time: the
    share of members in which it is the strongest loop (``p_strongest``, together with
    ``other`` adding up to 1), the share in which it is in the dominant set
    (``p_dominant``), and the members' relative scores, for bands.

    Parameters
    ----------
    members : DataFrame, mapping of arrays or list of mappings
        One row (or dict) of constants per member, by Vensim or Python name, e.g. the
        output of :func:`pysd_runner.sample` or draws from a calibration's posterior.
    params : mapping, optional
        Constants shared by every member.
    progress : bool
        A progress bar on stderr (on a terminal only).

    Returns
    -------
    xarray.Dataset
        Dims ``member``, ``time``, ``loop`` (the named loops) and ``category`` (the named
        loops and ``other``): ``p_strongest(time, category)``, ``p_dominant(time, loop)``,
        ``relative_score(member, time, loop)``, ``strongest(member, time)`` and one
        coordinate per varied constant along ``member``.
    """
    import pandas as pd
    import xarray as xr
    from tqdm.auto import tqdm

    from ...errors import stderr_is_terminal

    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    if isinstance(members, pd.DataFrame):
        rows = members.to_dict("records")
    elif isinstance(members, Mapping):
        rows = pd.DataFrame({k: np.asarray(v) for k, v in members.items()}).to_dict("records")
    else:
        rows = [dict(m) for m in members]
    if not rows:
        raise ParameterError("loop dominance under uncertainty needs at least one member")
    rows = [{model.resolve(k, kinds=("constant",)).py_name: float(v) for k, v in row.items()} for row in rows]
    varied = sorted({k for row in rows for k in row})
    shared = dict(params or {})

    def trajectories_of(row):
        return _saved_every(Trajectories(model, {**shared, **row}, scenario=scenario, final_time=final_time,
                                         time_step=time_step, seed=seed), saveper)

    first = trajectories_of(rows[0])
    loops, graph, _ = analyse(model, {**shared, **rows[0]}, scenario=scenario, max_length=max_length,
                               max_loops=max_loops, names=names, numeric=True, knockout=None,
                               final_time=final_time, time_step=time_step, seed=seed, trajectories=first)
    left_out = [loop for loop in loops if loop.excluded]
    loops = [loop for loop in loops if not loop.excluded]
    named = [j for j, loop in enumerate(loops) if loop.name]
    named_ids = [loops[j].id for j in named]
    categories = named_ids + ["other"]
    index = _save_indices(first.times, first.settings)
    n_member, n_time = len(rows), index.size
    relative = np.full((n_member, n_time, len(named)), np.nan)
    dominant = np.zeros((n_member, n_time, len(named)), bool)
    strongest = np.full((n_member, n_time), "", dtype=object)
    approximated: set[str] = set()
    bar = tqdm(total=n_member, disable=not (progress and stderr_is_terminal()), unit="member",
               desc=f"{model.name} loop dominance", file=sys.stderr)
    with bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", LoopScoreWarning)
        for m, row in enumerate(rows):
            trajectories = first if m == 0 else trajectories_of(row)
            scored = _score_loops(loops, graph, trajectories, _save_indices(trajectories.times, trajectories.settings))
            relative[m] = scored.relative[:, named]
            dominant[m] = scored.dominant[:, named]
            strongest[m] = [v if v in named_ids or not v else "other" for v in scored.strongest]
            approximated.update(scored.approximated)
            bar.update(1)
    defined = strongest != ""
    counts = np.maximum(defined.sum(axis=0), 1)
    p_strongest = np.stack([(strongest == c).sum(axis=0) / counts for c in categories], axis=1)
    p_strongest[~defined.any(axis=0)] = np.nan
    p_dominant = np.where(defined.any(axis=0)[:, None], (dominant & defined[:, :, None]).sum(axis=0) / counts[:, None],
                          np.nan)
    times = first.times[index]
    attrs = {k: v for k, v in first.run_attrs.items() if k not in ("knockout", "params")}
    attrs.update({
        "params": json.dumps({k: v for k, v in shared.items()}, default=float),
        "members": n_member,
        "varied": json.dumps(varied),
        "saveper": first.settings["saveper"],
        "n_loops": len(loops),
        "named_loops": json.dumps(match_report(named_entries(model, names), loops)),
        "excluded_loops": json.dumps(exclusion_report(excluded_entries(model, names), left_out)),
        "approximated_links": json.dumps(sorted(approximated)),
        "method": "Loops That Matter over each member's run; p_strongest and p_dominant are shares of members",
    })
    labels = [loops[j].label for j in named]
    return xr.Dataset(
        {
            "p_strongest": (("time", "category"), p_strongest, {
                "long_name": "Probability of being the strongest loop",
                "comment": "Share of members in which the loop has the largest |relative score| in the main "
                           "partition; 'other' is any unnamed loop; adds up to 1 over the categories",
            }),
            "p_dominant": (("time", "loop"), p_dominant, {
                "long_name": "Probability of being in the dominant set",
                "comment": f"Share of members in which the loop is among the fewest that explain {DOMINANCE_SHARE:.0%} "
                           "of the change; several loops at once, so these do not add up to 1",
            }),
            "relative_score": (("member", "time", "loop"), relative, {
                "long_name": "Relative loop score", "units": "1"}),
            "strongest": (("member", "time"), strongest.astype(str), {
                "long_name": "Strongest loop", "comment": "A named loop's id, 'other', or '' before scores are defined"}),
        },
        coords={
            "member": np.arange(n_member),
            "time": ("time", times, {"units": model.time_units}),
            "loop": ("loop", np.asarray(named_ids, dtype=str)),
            "name": ("loop", np.asarray(labels, dtype=str)),
            "polarity": ("loop", np.asarray([loops[j].polarity for j in named], dtype=str)),
            "category": ("category", np.asarray(categories, dtype=str)),
            "category_name": ("category", np.asarray(labels + ["other loops"], dtype=str)),
            **{name: ("member", np.asarray([row.get(name, np.nan) for row in rows], dtype=float),
                      {"long_name": model.elements[name].name}) for name in varied},
        },
        attrs=attrs,
    )


def _loop_products(loops: Sequence[Loop], edges: list[tuple[str, str]], scores: Mapping, n_time: int) -> np.ndarray:
    """Products of link scores around every loop at once: sums of logs through an incidence matrix."""
    from scipy import sparse

    if not loops:
        return np.ones((n_time, 0))
    column = {edge: i for i, edge in enumerate(edges)}
    rows = [column[edge] for loop in loops for edge in loop.edges]
    cols = [j for j, loop in enumerate(loops) for _ in range(loop.length)]
    # (link, loop) counts; an elementary loop passes each link at most once.
    incidence = sparse.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(edges), len(loops)))
    links = np.stack([scores[e] for e in edges], axis=1)  # (time, link)
    with np.errstate(all="ignore"):
        magnitude = np.abs(links)
        logs = np.where(magnitude > 0, np.log(np.where(magnitude > 0, magnitude, 1.0)), 0.0)
        logs = np.where(np.isnan(links), 0.0, logs)
        stacked = np.concatenate([logs, (magnitude == 0), (links < 0), np.isnan(links)], axis=0).astype(float)
        sums = np.asarray((sparse.csr_matrix(stacked) @ incidence).todense())
        log_sum, zeros, negatives, missing = np.split(sums, 4, axis=0)
        product = np.where(np.rint(negatives) % 2 == 1, -1.0, 1.0) * np.exp(log_sum)
    product = np.where(zeros > 0, 0.0, product)
    return np.where(missing > 0, np.nan, product)


def dominance_periods(dataset, loop: str) -> list[tuple[float, float]]:
    """The (start, end) save times of the periods in which a loop is dominant."""
    return flag_periods(dataset["dominant"].sel(loop=loop).values, dataset["time"].values)


def flag_periods(flags, times) -> list[tuple[float, float]]:
    flags = np.asarray(flags, dtype=bool)
    times = np.asarray(times, dtype=float)
    periods, start = [], None
    for k, flag in enumerate(flags):
        if flag and start is None:
            start = k
        if not flag and start is not None:
            periods.append((float(times[start]), float(times[k - 1])))
            start = None
    if start is not None:
        periods.append((float(times[start]), float(times[-1])))
    return periods
