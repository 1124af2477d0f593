"""Feedback-loop analysis: causal graph, loop listing with polarity, loop dominance, knock-outs.

The causal graph comes from PySD's dependency map and the generated module: nodes are model
variables, edges carry a link polarity (``+``, ``-`` or ``?``). Polarity is read from the
structure of each equation (the sign of the partial derivative of the expression tree, using
the declared Vensim ranges of the variables it multiplies by), and where the structure does
not settle it, from the sign of the partial effect over a run. Stocks receive links from
every element of their INTEG rate: ``INTEG(inflow - outflow)`` gives ``inflow -> stock (+)``
and ``outflow -> stock (-)``.

Elementary loops are enumerated with Johnson's algorithm (``networkx.simple_cycles``) up to a
length bound and a cap. Loop dominance follows "Loops That Matter" (Schoenberg, Davidsen &
Eberlein 2020) with the flow-to-stock correction of Schoenberg, Hayward & Eberlein (2023):

- link score of ``x -> z`` for an auxiliary or flow ``z = f(x, y, ...)`` at time ``t``:
  ``|Δx(z) / Δz| * sign(Δx(z) / Δx)``, where ``Δx(z) = f(x_t, y_{t-dt}, ...) - z_{t-dt}`` is
  the change in ``z`` that ``x`` alone causes; zero when ``Δz`` or ``Δx`` is zero;
- link score of ``x -> S`` into a stock with net rate ``r = g(x, ...)`` (its INTEG argument):
  the same expression for ``x -> r`` taken one step earlier (the rate at ``t - dt`` moved the
  stock to ``t``). For separate flows this is the corrected ``|Δi / (ΔS_t - ΔS_{t-dt})|``
  (times ``dt``, so that it is dimensionless) with sign ``+`` for an inflow and ``-`` for an
  outflow, and it is the same number whether the flows are separate or netted;
- loop score: the product of the loop's link scores; relative loop score: the loop score
  divided by the sum of the absolute loop scores of the loops in the same partition (the
  strongly connected part of the graph the loop lies in), in [-1, 1];
- dominant loops at a time: the smallest set of loops of a partition, taken by decreasing
  absolute relative score, that together explain at least half of the change (sum of
  absolute relative scores >= 0.5). One loop with ``|relative score| >= 0.5`` dominates alone.

Each link score is one evaluation of the target's equation over all time steps at once, with
the array-aware copy of the generated module (:mod:`pysd_runner.vectorise`): the run records
only the stocks (and other stateful elements) at every time step, every other variable is
recomputed from them as arrays over time, and for each link the target's equation is called
once with the source's array at ``t`` and the other inputs' arrays at ``t - dt``. Equations
whose functions do not take arrays over time are evaluated step by step (the same numbers).
Scores are undefined (NaN) for the first two time steps, which have too little history.
A first-order SMOOTH is scored like a stock whose rate is ``(input - output) / time``. Links
into other stateful functions (DELAY, higher-order SMOOTH, TREND, ...), whose internal states
are not recorded, are scored as LTM's black box, a unit transfer with the link's sign; they
are named in a :class:`LoopScoreWarning` and in the ``approximated_links`` attr.

Knock-outs hold a link's source at a fixed value as seen by its target only (its value at
the initial time by default), so the loops through that link are cut. They are run from a
patched copy of the generated module, cached beside it.

Named loops: ``models/<name>/loops.toml`` names loops by their variables in cycle order,
for example::

    [R1]
    name = "Accumulation"
    polarity = "R"            # R, B, +, -, reinforcing, balancing, positive or negative
    variables = ["profit rate", "investment", "capital", "output", "profits"]

(an array of tables ``[[loop]]`` with an ``id`` key works too). A named cycle matches a found
loop when its variables all lie on the loop in the same cyclic order: the loop may pass
through further variables (auxiliary chains) between them. When several loops match, the name
goes to an exact match, else to the shortest matching loop (then to one of the stated
polarity); the others stay unnamed.
"""

from __future__ import annotations

from .common import DEFAULT_MAX_LOOPS, DOMINANCE_SHARE, LOOPS_FILE, Loop
from .graph import causal_graph
from .cycles import cutting_link, find_loops, match_named_loops
from .dominance import dominance_periods, link_scores, loop_dominance, loop_dominance_ensemble, strongest_shares
from ...errors import LoopScoreWarning, LoopsFileError, TooManyLoopsError

__all__ = [
    "causal_graph",
    "find_loops",
    "loop_dominance",
    "link_scores",
    "match_named_loops",
    "cutting_link",
    "Loop",
    "TooManyLoopsError",
    "LoopsFileError",
    "LoopScoreWarning",
    "LOOPS_FILE",
    "DEFAULT_MAX_LOOPS",
    "DOMINANCE_SHARE",
    "dominance_periods",
    "strongest_shares",
    "loop_dominance_ensemble",
]
