"""The causal graph: variables and links with their polarity, from PySD's dependency map and the
generated module, settled from a run where the structure leaves a sign open."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


from ...compiler import CompiledModel, compile_model
from ...knockouts import normalise_knockouts
from ...structure import Structure, element_inputs
from .common import AMBIGUOUS, NEGATIVE, POSITIVE, nx_module
from .polarity import Polarity
from .trajectories import Trajectories


def _polarity_text(sign: int | None) -> str:
    if sign is None:
        return AMBIGUOUS
    return POSITIVE if sign >= 0 else NEGATIVE


def structural_graph(model: CompiledModel, include_constants: bool):
    """The causal graph with polarities read from the equations only."""
    nx = nx_module()
    structure = Structure(model)
    polarity = Polarity(model, structure)
    graph = nx.DiGraph(model=model.name, model_file=str(model.source))
    kinds = ("stock", "flow", "auxiliary", "stateful", "data") + (("constant",) if include_constants else ())
    for element in model.elements.values():
        if element.kind in kinds:
            graph.add_node(element.py_name, name=element.name, kind=element.kind,
                           stock=element.kind == "stock", flow=element.kind == "flow")
    for element in model.elements.values():
        if element.py_name not in graph:
            continue
        for source in element_inputs(model, element.py_name):
            if source not in graph:
                continue
            sign = polarity.link_sign(source, element.py_name)
            if sign == 0:
                # The structure says the input cannot move the target (e.g. both branches of an
                # IF THEN ELSE ignore it); the dependency stays, with the direction unknown.
                sign = None
            graph.add_edge(source, element.py_name, polarity=_polarity_text(sign),
                           polarity_from="equation" if sign is not None else "")
    return graph, structure


def causal_graph(
    model: CompiledModel | str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    *,
    scenario: str | os.PathLike | None = None,
    include_constants: bool = False,
    numeric: bool = True,
    knockout: Any = None,
    final_time: float | None = None,
    time_step: float | None = None,
    seed: int | None = None,
):
    """The causal graph of a model as a ``networkx.DiGraph``.

    Nodes are Python names of the model's variables with attrs ``name`` (Vensim name),
    ``kind``, ``stock`` and ``flow``. Edges ``source -> target`` carry ``polarity``
    (``"+"``, ``"-"`` or ``"?"``) and ``polarity_from`` (``"equation"`` when read from the
    structure of the target's equation, ``"run"`` when taken from the sign of the partial
    effect over a run because the structure did not settle it, ``""`` when ambiguous).

    Parameters
    ----------
    model : CompiledModel or path
    params, scenario, final_time, time_step, seed
        The run used for links whose polarity the structure does not settle (as in
        :func:`pysd_runner.run`).
    include_constants : bool
        Add constants as nodes (they are never on a loop).
    numeric : bool
        Settle ambiguous links from a run (default True). With False, no run is made.
    knockout : list, optional
        Links to cut (see :func:`pysd_runner.run`); they are left out of the graph.

    Examples
    --------
    >>> graph = causal_graph("models/goodwin/goodwin.mdl")
    >>> graph.edges["wage_share", "profit_share"]["polarity"]
    '-'
    """
    if not isinstance(model, CompiledModel):
        model = compile_model(model)
    graph, _ = structural_graph(model, include_constants)
    knocked = normalise_knockouts(model, knockout)
    if knocked is not None:
        graph.remove_edges_from([(k.source, k.target) for k in knocked.links])
        graph.graph["knockout"] = knocked.describe()
    ambiguous = [(u, v) for u, v, p in graph.edges(data="polarity") if p == AMBIGUOUS]
    if numeric and ambiguous:
        trajectories = Trajectories(model, params, scenario=scenario, final_time=final_time,
                                     time_step=time_step, seed=seed, knockout=knockout)
        settle_from_run(graph, trajectories, ambiguous)
    return graph


def settle_from_run(graph, trajectories: Trajectories, links) -> None:
    for source, target in links:
        if trajectories.scoring(target) == "approximate":
            continue
        sign = trajectories.partial_sign(source, target)
        if sign is not None:
            graph.edges[source, target]["polarity"] = _polarity_text(sign)
            graph.edges[source, target]["polarity_from"] = "run"
