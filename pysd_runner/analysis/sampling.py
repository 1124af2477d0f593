"""Samples of a model's constants for ensembles: grid, Latin hypercube, Sobol, random.

Bounds default to the constants' Vensim ranges. Points are drawn in the unit cube with
``scipy.stats.qmc`` and mapped to each parameter either uniformly between its bounds or
through the inverse CDF of a ``scipy.stats`` distribution, so Latin-hypercube and Sobol
designs keep their structure under any marginal distribution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..compiler import CompiledModel, Element
from ..errors import ParameterError
from ..inputs import check_seed

__all__ = ["sample", "parse_distribution", "METHODS", "default_parameters", "is_switch", "check_width", "marginals_json"]

METHODS = ("lhs", "sobol", "grid", "random")
#: Refuse grids bigger than this many members (n ** parameters grows fast).
MAX_GRID = 5_000_000


def is_switch(element: Element) -> bool:
    """A structural on/off switch: Vensim range [0, 1] with increment 1."""
    return element.limits == (0.0, 1.0) and element.step == 1.0


def default_parameters(model: CompiledModel) -> list[Element]:
    """The constants varied by default: every one with a finite Vensim range [min, max].

    Structural switches (range ``[0, 1, 1]``) are left out: turning a mechanism on or off
    is an experiment of its own, not parameter uncertainty, and values between 0 and 1
    mean nothing for them. Name a switch explicitly to vary it.
    """
    return [
        e for e in model.constants
        if e.limits[0] is not None and e.limits[1] is not None and e.limits[0] < e.limits[1] and not is_switch(e)
    ]


def parse_distribution(text: str):
    """``"norm(1.2, 0.1)"`` -> ``scipy.stats.norm(1.2, 0.1)``: a frozen distribution."""
    from scipy import stats

    match = re.fullmatch(r"\s*([a-z_][a-z0-9_]*)\s*\((.*)\)\s*", text)
    if not match:
        raise ParameterError(f"distribution must look like name(arg, ...), e.g. norm(1.2, 0.1); got {text!r}")
    name, raw = match.groups()
    family = getattr(stats, name, None)
    if not isinstance(family, (stats.rv_continuous, stats.rv_discrete)):
        raise ParameterError(f"'{name}' is not a scipy.stats distribution (e.g. uniform, norm, truncnorm, lognorm)")
    try:
        args = [float(a) for a in raw.split(",") if a.strip()]
    except ValueError:
        raise ParameterError(f"distribution {text!r}: arguments must be numbers") from None
    try:
        frozen = family(*args)
        frozen.ppf(0.5)
    except Exception as exc:
        raise ParameterError(f"distribution {text!r} is not valid: {exc}") from None
    return frozen


def check_width(width) -> float | None:
    """``None`` or a share in (0, 1]: how far towards each end of its Vensim range a
    constant may move from its value in the model file."""
    if width is None:
        return None
    if isinstance(width, bool) or not isinstance(width, (int, float, np.integer, np.floating)) \
            or not np.isfinite(width) or not 0 < width <= 1:
        raise ParameterError(
            f"width must be a number in (0, 1], the share of the way from each constant's value in the model "
            f"file to each end of its Vensim range (1 is the whole range); got {width!r}"
        )
    return float(width)


def around_default(element: Element, width: float, value: float | None = None) -> tuple[float, float]:
    """``[d - w (d - min), d + w (max - d)]`` for a constant with value d (its value in the
    model file, or ``value``: a scenario's or ``--set``'s) and range [min, max]: the
    neighbourhood of that value, a share w of the way to each end."""
    lo, hi = element.limits
    d = element.default if value is None else value
    if d is None:
        raise ParameterError(
            f"'{element.name}' has no single value in the model file (it is subscripted), so there is "
            "no neighbourhood of it to sample; leave it out of the varied parameters (--params) or give "
            "it a distribution (--dist)"
        )
    d = float(d)
    if not lo <= d <= hi:
        raise ParameterError(
            f"'{element.name}' is {d:g}, outside its Vensim range [{lo:g}, {hi:g}], so --width has no "
            "neighbourhood of it within the range; widen the range in the model or leave it out (--params)"
        )
    return d - width * (d - lo), d + width * (hi - d)


def resolve_centre(model: CompiledModel, centre: Mapping[str, Any] | None) -> dict[str, float]:
    """``{python name: value}`` for the scalar constants among ``centre`` (a scenario's or
    ``--set``'s values); time series and other variables are left out."""
    out = {}
    for key, value in (centre or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            continue
        try:
            element = model.resolve(key, kinds=("constant",), role="parameter")
        except ParameterError:
            continue
        out[element.py_name] = float(value)
    return out


def resolve_marginals(model: CompiledModel, params, bounds, distributions, width: float | None = None,
                      centre: Mapping[str, float] | None = None):
    centre = resolve_centre(model, centre)
    elements = (
        default_parameters(model) if params is None
        else [model.resolve(p, kinds=("constant",), role="parameter") for p in params]
    )
    if not elements:
        raise ParameterError(
            f"no parameters to vary in model '{model.source.name}': none of its constants has a Vensim "
            "range [min, max]; name them and give bounds"
        )
    names = [e.py_name for e in elements]
    if len(set(names)) != len(names):
        raise ParameterError(f"a parameter is named twice: {[e.name for e in elements]}")
    given_bounds = {model.resolve(k, kinds=("constant",), role="parameter").py_name: v for k, v in (bounds or {}).items()}
    given_dists = {
        model.resolve(k, kinds=("constant",), role="parameter").py_name: (parse_distribution(v) if isinstance(v, str) else v)
        for k, v in (distributions or {}).items()
    }
    for key in list(given_bounds) + list(given_dists):
        if key not in names:
            raise ParameterError(f"bounds or distribution given for '{key}', which is not among the varied parameters {names}")
    marginals = []
    for element in elements:
        if element.py_name in given_dists:
            marginals.append(("dist", given_dists[element.py_name]))
            continue
        lo, hi = given_bounds.get(element.py_name, element.limits)
        if width is not None and width < 1 and element.py_name not in given_bounds and lo is not None \
                and hi is not None and not is_switch(element):
            lo, hi = around_default(element, width, (centre or {}).get(element.py_name))
        if lo is None or hi is None:
            raise ParameterError(
                f"'{element.name}' has no finite Vensim range {element.range_text or '[?, ?]'}; give bounds for it"
            )
        lo, hi = float(lo), float(hi)
        if not (np.isfinite(lo) and np.isfinite(hi)) or not lo < hi:
            raise ParameterError(f"bounds of '{element.name}' must be finite with min < max; got [{lo:g}, {hi:g}]")
        marginals.append(("uniform", (lo, hi)))
    return elements, marginals


def sample(
    model: CompiledModel,
    params: Sequence[str] | None = None,
    *,
    method: str = "lhs",
    n: int = 100,
    seed: int | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    distributions: Mapping[str, Any] | None = None,
    width: float | None = None,
    centre: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Draw members for :func:`run_ensemble`: one column per parameter (Python names).

    Parameters
    ----------
    model : CompiledModel
    params : list of str, optional
        Constants to vary (Vensim or Python names); default every constant with a
        finite Vensim range.
    method : {"lhs", "sobol", "grid", "random"}
        Latin hypercube, scrambled Sobol (``n`` a power of two), a full grid with ``n``
        points per parameter (``n ** len(params)`` members, ends included), or
        independent uniform draws.
    n : int
        Members (grid: points per parameter).
    seed : int, optional
        Makes the design reproducible; ``seed=0`` is a seed like any other.
    bounds : mapping, optional
        ``{name: (min, max)}`` replacing the Vensim range.
    distributions : mapping, optional
        ``{name: scipy.stats frozen distribution or "norm(1.2, 0.1)"}``: the marginal
        is the distribution's inverse CDF instead of uniform between the bounds.
    width : float in (0, 1], optional
        Vary each constant without given bounds only this share of the way from its value
        in the model file to each end of its Vensim range: 1 is the whole range, 0.25 a
        neighbourhood of the shipped values (a local robustness check, where the whole
        ranges ask how the model behaves at every combination of extremes). Structural
        switches keep their whole range.
    centre : mapping, optional
        ``{name: value}``: the values the width is measured from instead of the model file's
        (a scenario's or ``--set``'s), so that the neighbourhood is the run's own.

    The frame's ``attrs["marginals"]`` records, as JSON, each parameter's bounds or
    distribution, for the provenance of the runs made from it.
    """
    from scipy.stats import qmc

    if method not in METHODS:
        raise ParameterError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(f"n must be a positive integer; got {n!r}")
    seed = check_seed(seed)
    elements, marginals = resolve_marginals(model, params, bounds, distributions, check_width(width), centre)
    d = len(elements)
    rng = np.random.default_rng(seed)
    if method == "lhs":
        unit = qmc.LatinHypercube(d, rng=rng).random(n)
    elif method == "sobol":
        if n & (n - 1):
            lower = 1 << (int(n).bit_length() - 1)
            raise ParameterError(
                f"n must be a power of two for Sobol sampling (its balance properties need it); got {n}, "
                f"use {lower} or {lower * 2}"
            )
        unit = qmc.Sobol(d, scramble=True, rng=rng).random(n)
    elif method == "grid":
        if n ** d > MAX_GRID:
            raise ParameterError(f"a grid of {n} points over {d} parameters has {n ** d:,} members, above {MAX_GRID:,}; "
                                 "use fewer points or parameters, or Latin-hypercube sampling")
        axes = [np.linspace(0, 1, n) if n > 1 else np.array([0.5])] * d
        unit = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    else:
        unit = rng.random((n, d))
    columns = {}
    for j, (element, (kind, spec)) in enumerate(zip(elements, marginals)):
        u = unit[:, j]
        if kind == "uniform":
            lo, hi = spec
            columns[element.py_name] = lo + u * (hi - lo)
        else:
            # Keep the open unit interval: ppf(0) and ppf(1) are infinite for unbounded laws.
            eps = np.finfo(float).eps
            columns[element.py_name] = spec.ppf(np.clip(u, eps, 1 - eps))
    frame = pd.DataFrame(columns)
    frame.attrs["marginals"] = marginals_json(elements, marginals)
    return frame


def marginals_json(elements, marginals) -> str:
    """``{"name": [min, max]}`` or ``{"name": "distribution"}`` as JSON: how each parameter was drawn."""
    import json

    out = {}
    for element, (kind, spec) in zip(elements, marginals):
        if kind == "uniform":
            out[element.py_name] = [float(spec[0]), float(spec[1])]
        else:
            dist = getattr(spec, "dist", None)
            args = ", ".join(f"{a:g}" for a in getattr(spec, "args", ()))
            out[element.py_name] = f"{getattr(dist, 'name', type(spec).__name__)}({args})"
    return json.dumps(out)
