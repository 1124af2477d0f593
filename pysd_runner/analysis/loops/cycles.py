"""Feedback loops: elementary cycles of the causal graph (Johnson's algorithm, up to a length
bound and a cap), with their polarity, and the link that cuts a loop."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any


from ...compiler import CompiledModel, compile_model
from ...errors import ParameterError, TooManyLoopsError
from ...knockouts import normalise_knockouts
from .common import AMBIGUOUS, BALANCING, DEFAULT_MAX_LOOPS, Loop, NEGATIVE, REINFORCING, nx_module
from .trajectories import Trajectories
from .graph import settle_from_run, structural_graph
from .named import assign_names, excluded_entries, match_report, named_entries


def cutting_link(loop: Loop, loops: Sequence[Loop]) -> tuple[str, str]:
    """A link whose knock-out cuts ``loop`` and as few other loops as possible.

    Prefers links between auxiliaries (not into a stock), then the first such link in cycle
    order. Pass it to ``run(..., knockout=[link])`` to show behaviour without the loop.
    """
    def others(edge):
        return sum(1 for other in loops if other is not loop and edge in other.edges)

    ranked = sorted(enumerate(loop.edges), key=lambda item: (others(item[1]), item[0]))
    return ranked[0][1]


def _loop_polarity(links: Sequence[str]) -> str:
    if AMBIGUOUS in links:
        return AMBIGUOUS
    return REINFORCING if sum(1 for s in links if s == NEGATIVE) % 2 == 0 else BALANCING


def _rotate(cycle: list[str], keys: Mapping[str, tuple]) -> list[str]:
    """Start a cycle at its first stock by Vensim name (else its first variable by name)."""
    first = min(cycle, key=keys.__getitem__)
    i = cycle.index(first)
    return cycle[i:] + cycle[:i]


def _enumerate(graph, max_length: int | None, max_loops: int, model_name: str) -> list[list[str]]:
    nx = nx_module()
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ParameterError(f"max_length must be a positive integer or None; got {max_length!r}")
    if isinstance(max_loops, bool) or not isinstance(max_loops, int) or max_loops < 1:
        raise ParameterError(f"max_loops must be a positive integer; got {max_loops!r}")
    # Stocks first, then by Vensim name: where each loop's listing starts.
    keys = {v: (not data.get("stock"), data["name"].lower(), v) for v, data in graph.nodes(data=True)}
    cycles = []
    for cycle in nx.simple_cycles(graph, length_bound=max_length):
        if len(cycles) >= max_loops:
            bound = f"of length up to {max_length} " if max_length else ""
            raise TooManyLoopsError(
                f"model '{model_name}' has more than {max_loops} feedback loops {bound}(the cap); "
                "give a smaller max_length (--max-length N) to list the shorter loops, or a larger "
                "max_loops (--max-loops N)"
            )
        cycles.append(_rotate(list(cycle), keys))
    return cycles


def find_loops(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    max_length: int | None = None,
    max_loops: int = DEFAULT_MAX_LOOPS,
    names: str | os.PathLike | bool | None = None,
    numeric: bool = True,
    knockout: Any = None,
    final_time: float | None = None,
    time_step: float | None = None,
    seed: int | None = None,
) -> list[Loop]:
    """Every elementary feedback loop of a model, with its polarity and (where named) name.

    Loops are found with Johnson's algorithm (``networkx.simple_cycles``). Named loops (from
    the model's ``loops.toml``) come first in the order of the file, then the others by
    length and variable names; a named loop's id is its loops.toml key (``B1``), any other
    loop's is derived from its path (:func:`~pysd_runner.analysis.loops.named.path_id`), so
    it is the same under knock-outs and in every run.

    Parameters
    ----------
    model : CompiledModel or path
    params, scenario, final_time, time_step, seed
        The run that settles link polarities the equations leave open (see
        :func:`causal_graph`).
    max_length : int, optional
        Longest loop (in variables) to list.
    max_loops : int
        Cap on the number of loops; more raise :class:`TooManyLoopsError`.
    names : path or bool, optional
        A loops.toml naming loops; default the model's own ``loops.toml`` if there is one;
        False for none.
    numeric : bool
        Settle ambiguous link polarities from a run (default True).
    knockout : list, optional
        Links to cut before looking for loops (see :func:`pysd_runner.run`).

    Returns
    -------
    list of Loop

    Examples
    --------
    >>> loops = find_loops("models/goodwin/goodwin.mdl")
    >>> [(loop.id, loop.polarity, loop.length) for loop in loops]
    [('B1', 'B', 11), ('S1', '?', 2), ('S2', '?', 2)]
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    loops, _, _ = analyse(model, params, scenario=scenario, max_length=max_length, max_loops=max_loops,
                           names=names, numeric=numeric, knockout=knockout, final_time=final_time,
                           time_step=time_step, seed=seed)
    return loops


def analyse(model, params, *, scenario, max_length, max_loops, names, numeric, knockout,
             final_time, time_step, seed, trajectories=None):
    """Graph, loops and (when a run was needed) the trajectories behind them."""
    nx = nx_module()
    graph, _ = structural_graph(model, include_constants=False)
    knocked = normalise_knockouts(model, knockout)
    if knocked is not None:
        graph.remove_edges_from([(k.source, k.target) for k in knocked.links])
    cycles = _enumerate(graph, max_length, max_loops, model.source.name)
    on_loops = {(c[i], c[(i + 1) % len(c)]) for c in cycles for i in range(len(c))}
    ambiguous = [e for e in on_loops if graph.edges[e]["polarity"] == AMBIGUOUS]
    if numeric and ambiguous:
        if trajectories is None:
            trajectories = Trajectories(model, params, scenario=scenario, final_time=final_time,
                                         time_step=time_step, seed=seed, knockout=knockout)
        settle_from_run(graph, trajectories, sorted(ambiguous))
    components = list(nx.strongly_connected_components(graph))
    component_of = {}
    order = sorted(components, key=lambda c: min(graph.nodes[v]["name"].lower() for v in c))
    for index, nodes in enumerate(order):
        for v in nodes:
            component_of[v] = index
    polarity = {(u, v): p for u, v, p in graph.edges(data="polarity")}
    names_of = dict(graph.nodes(data="name"))
    loops = []
    for cycle in cycles:
        links = tuple(polarity[cycle[i], cycle[(i + 1) % len(cycle)]] for i in range(len(cycle)))
        loops.append(Loop(
            id="", variables=tuple(cycle), names=tuple(names_of[v] for v in cycle), links=links,
            polarity=_loop_polarity(links), partition=component_of[cycle[0]],
        ))
    named = named_entries(model, names)
    loops = assign_names(loops, named, excluded_entries(model, names))
    return loops, graph, trajectories


def match_named_loops(
    model: CompiledModel | str | os.PathLike,
    loops: Sequence[Loop] | None = None,
    *,
    names: str | os.PathLike | None = None,
    **options: Any,
) -> list[dict]:
    """Check every loop named in a loops.toml against the loops found in the model.

    Returns one dict per named loop: ``id``, ``title``, ``stated`` polarity, ``found``
    (bool), ``loop`` (the id of the matching loop or ``""``), ``polarity`` (found polarity)
    and ``agrees`` (stated polarity equals found polarity).
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    entries = named_entries(model, True if names is None else names)
    if loops is None:
        loops = find_loops(model, names=True if names is None else names, **options)
    return match_report(entries, loops)
