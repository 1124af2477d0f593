"""The run behind link scores: stocks and stateful elements recorded at every Euler step (by the
compiled kernel, or PySD), every other variable recomputed from them as arrays over time."""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...compiler import CompiledModel, pysd_module
from ...errors import CrisisError, ParameterError
from ...inputs import check_seed, merged_params, provenance, time_settings
from ...knockouts import Knockouts, normalise_knockouts
from ...runner import configure_pysd, simulate_compiled
from ...structure import Structure, element_inputs, objects_of
from .common import NEGATIVE, POSITIVE, nx_module


class _ArrayTime:
    """A stand-in for PySD's Time object whose current time is an array (or one step)."""

    def __init__(self, settings: Mapping[str, float]):
        self.settings = dict(settings)
        self.value: Any = settings["initial_time"]
        self.stage = "Run"

    def __call__(self):
        return self.value

    def round(self):
        return self.value

    def time_step(self):
        return self.settings["time_step"]

    def initial_time(self):
        return self.settings["initial_time"]

    def final_time(self):
        return self.settings["final_time"]

    def saveper(self):
        return self.settings["saveper"]


def _integrate(model: CompiledModel, params, recorded: list[str], *, scenario, final_time, time_step, seed,
               knocked: Knockouts | None):
    """Euler-integrate the model as :func:`pysd_runner.run` does, keeping ``recorded`` at every step.

    A lean copy of the runner's loop: stocks are read from their INTEG objects' states
    straight into arrays (recording every variable through its getter at every step costs
    as much as the integration itself), and finiteness is checked once at the end.
    Returns (times, values, provenance attrs, resolved params).
    """
    from ...errors import SimulationError
    from ...scenarios import load_scenario

    scen = load_scenario(scenario, model) if scenario is not None else None
    merged = merged_params(model, scen, params, True)
    settings = time_settings(model, scen, merged, final_time=final_time, time_step=time_step, saveper=None)
    saveper = settings["saveper"]
    settings["saveper"] = settings["time_step"]
    seed = check_seed(seed)
    if model.uses_random and seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    attrs = provenance(model, merged, scen, seed, settings)
    attrs["saveper"] = saveper
    # The compiled kernel takes the same Euler steps as PySD in a fraction of the time (a
    # 100-year run at dt = 1/1024 takes PySD about 40 s); PySD runs whatever it cannot take.
    compiled = simulate_compiled(model, merged, settings, [model.elements[name] for name in recorded], knocked,
                                  required=False)
    if compiled is not None:
        times, columns = compiled
        attrs["engine"] = "compiled"
        if knocked is not None:
            attrs["knockout"] = json.dumps(knocked.describe())
        return np.asarray(times, float), {name: np.asarray(columns[name], float).copy() for name in recorded}, \
            attrs, json.loads(attrs["params"])
    attrs["engine"] = "pysd"
    pysd_model = model.load() if knocked is None else knocked.load()
    configure_pysd(pysd_model, merged, recorded, {**settings, "dynamic": ()}, knocked=knocked)
    components = pysd_model.components
    readers = []
    for name in recorded:
        objects = objects_of(model, name)
        obj = getattr(components, objects[0]) if len(objects) == 1 else None
        if model.elements[name].kind == "stock" and type(obj).__name__ in ("Integ", "NonNegativeInteg"):
            readers.append(lambda o=obj: o.state)
        else:
            readers.append(getattr(components, name))
    n_steps = int(round((settings["final_time"] - settings["initial_time"]) / settings["time_step"]))
    out = np.full((n_steps + 2, len(recorded)), np.nan)
    times = np.full(n_steps + 2, np.nan)
    clock = pysd_model.time
    k = 0
    rng_state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed)
        with np.errstate(all="ignore"):
            while clock.in_bounds():
                times[k] = clock.round()
                out[k] = [read() for read in readers]
                k += 1
                pysd_model._integrate_step()
            if clock.in_return():
                times[k] = clock.round()
                out[k] = [read() for read in readers]
                k += 1
    except (ZeroDivisionError, OverflowError, FloatingPointError) as exc:
        raise SimulationError(
            f"model '{model.source.name}': {type(exc).__name__} at time {float(clock()):g}; check the parameter "
            "values (or the time step) that drive it", time=float(clock()), variable="an equation",
        ) from None
    finally:
        np.random.set_state(rng_state)
    times, out = times[:k], out[:k]
    bad = ~np.isfinite(out)
    if bad.any():
        step, column = np.argwhere(bad)[0]
        name = model.elements[recorded[column]].name
        raise SimulationError(
            f"model '{model.source.name}': '{name}' became non-finite at time {times[step]:g}; loop scores need a "
            "finite run: check the parameter values (or the time step) that drive it",
            time=float(times[step]), variable=name,
        )
    if knocked is not None:
        attrs["knockout"] = json.dumps(knocked.describe())
    params_json = json.loads(attrs["params"])
    return times, {name: out[:, j].copy() for j, name in enumerate(recorded)}, attrs, params_json


class Trajectories:
    """A run at every time step, and the model's equations evaluated over it as arrays.

    The run records only stocks and other stateful elements (and elements drawing random
    numbers); every other variable is recomputed from them with the array-aware module in
    one call per variable. ``values[name]`` is an array over the ``dt`` grid.
    """

    def __init__(self, model: CompiledModel, params, *, scenario, final_time=None, time_step=None,
                 seed=None, knockout=None):
        self.model = model
        self.structure = Structure(model)
        subscripted = sorted(e.name for e in model.elements.values() if e.subscripts and e.kind != "lookup")
        if subscripted:
            raise ParameterError(
                f"loop scores of model '{model.source.name}' cannot be computed: subscripted variables are not "
                f"supported yet ({', '.join(subscripted[:5])}{', ...' if len(subscripted) > 5 else ''})"
            )
        data = sorted(e.name for e in model.elements.values() if e.kind == "data")
        if data:
            raise ParameterError(
                f"loop scores of model '{model.source.name}' cannot be computed: data variables are not "
                f"supported ({', '.join(data)})"
            )
        recorded = [
            e.py_name for e in model.elements.values()
            if e.kind in ("stock", "stateful")
            or (e.kind in ("auxiliary", "flow") and (objects_of(model, e.py_name)
                                                     or e.py_name in self.structure.uses_random))
        ]
        self.recorded = set(recorded)
        knocked = normalise_knockouts(model, knockout)
        self.knockout = knocked
        self.times, self.values, self.run_attrs, merged = _integrate(
            model, params, recorded, scenario=scenario, final_time=final_time, time_step=time_step, seed=seed,
            knocked=knocked)
        self.settings = {k: float(self.run_attrs[k]) for k in ("initial_time", "final_time", "time_step", "saveper")}
        self.n = self.times.size
        if self.n < 3:
            raise ParameterError(
                f"loop scores need at least three time steps; the run of '{model.source.name}' has {self.n}"
            )
        self._net: dict[str, np.ndarray] = {}
        self._partials: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.evaluated_per_step: set[str] = set()
        self._load(knocked)
        self._reconstruct(merged)

    # ----------------------------------------------------------------- the array-aware module
    def _load(self, knocked) -> None:
        from ...vectorise import vector_module

        pysd = pysd_module()
        path = knocked.module(vector=True) if knocked is not None else vector_module(self.model)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Replacing")
            self.pysd_model = pysd.load(str(path), initialize=False)
        module = self.pysd_model.components._components
        self.namespace = vars(module)
        if knocked is not None:
            self.namespace["_KNOCKOUT_VALUES"].update(knocked.fixed_values(self.run_attrs))
        # Functions as written, without PySD's cache wrappers: each call recomputes.
        self.raw = {
            name: inspect.unwrap(self.namespace[name])
            for name in self.model.elements if callable(self.namespace.get(name))
        }
        self.clock = _ArrayTime({**self.settings})
        module._init_outer_references({"scope": self.pysd_model, "time": self.clock})
        for lookup in self.pysd_model._lookup_elements:
            lookup.initialize()

    def _evaluate(self, func, inputs: Mapping[str, np.ndarray], time: np.ndarray, what: str) -> np.ndarray:
        """``func()`` with each input replaced by its array: once over all steps, else step by step."""
        n = time.size
        for name, values in inputs.items():
            self.namespace[name] = (lambda v=values: v)
        self.clock.value = time
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out = np.asarray(func(), dtype=float)
            if out.shape == ():
                return np.full(n, float(out))
            if out.shape == (n,):
                return out
            raise ValueError(f"shape {out.shape}")
        except Exception:  # a function that branches on a scalar: same equation, one step at a time
            self.evaluated_per_step.add(what)
        index = [0]
        for name, values in inputs.items():
            self.namespace[name] = (lambda v=values: v[index[0]])
        out = np.empty(n)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for k in range(n):
                index[0] = k
                self.clock.value = time[k]
                try:
                    out[k] = float(func())
                except Exception as exc:
                    raise CrisisError(
                        f"model '{self.model.source.name}': the equation of '{what}' cannot be evaluated "
                        f"over the run for loop scores ({type(exc).__name__}: {exc})"
                    ) from None
        return out

    def _element_inputs(self, name: str) -> list[str]:
        deps = self.model.dependencies.get(name) or {}
        return [d for d in deps if d in self.model.elements and self.model.elements[d].kind != "lookup"]

    def _reconstruct(self, params: Mapping[str, Any]) -> None:
        nx = nx_module()
        todo = [e.py_name for e in self.model.elements.values()
                if e.kind in ("auxiliary", "flow", "constant") and e.py_name not in self.values]
        order = nx.DiGraph()
        order.add_nodes_from(todo)
        for name in todo:
            for dep in self._element_inputs(name):
                if dep in order:
                    order.add_edge(dep, name)
        for name in nx.lexicographical_topological_sort(order):
            element = self.model.elements[name]
            if element.kind == "constant" and name in params:
                value = params[name]
                if isinstance(value, Mapping):
                    self.values[name] = np.interp(self.times, value["time"], value["value"])
                else:
                    self.values[name] = np.full(self.n, float(value))
                continue
            inputs = {d: self.values[d] for d in self._element_inputs(name)}
            self.values[name] = self._evaluate(self.raw[name], inputs, self.times, element.name)

    # ----------------------------------------------------------------- link scores
    def scoring(self, target: str) -> str:
        """How links into ``target`` are scored: 'auxiliary', 'stock', 'smooth' or 'approximate'."""
        element = self.model.elements[target]
        objects = objects_of(self.model, target)
        if element.kind in ("auxiliary", "flow") and not objects and target not in self.structure.uses_random:
            return "auxiliary"
        if len(objects) == 1:
            cls = self.structure.objects.get(objects[0], ("",))[0]
            if element.kind == "stock" and cls in ("Integ", "NonNegativeInteg"):
                return "stock"
            if element.kind == "stateful" and cls == "Smooth" and self._smooth_order(objects[0]) == 1:
                return "smooth"
        return "approximate"

    def _smooth_order(self, obj: str) -> float | None:
        try:
            order = self.namespace[obj].order_func()
            return float(order)
        except Exception:
            return None

    def _rate(self, target: str):
        """The function giving the target's rate of change (stocks, first-order smooths)."""
        obj = objects_of(self.model, target)[0]
        stateful = self.namespace[obj]
        if self.scoring(target) == "stock":
            return stateful.ddt, [d for d in element_inputs(self.model, target)]
        state_key = "__crisis_state__"
        namespace = self.namespace

        def smooth_rate():
            return (stateful.input_func() - namespace[state_key]()) / stateful.smooth_time_func()

        return smooth_rate, [*element_inputs(self.model, target), state_key]

    def _input_values(self, name: str, target: str) -> np.ndarray:
        if name == "__crisis_state__":
            return self.values[target]
        return self.values[name]

    def net_rate(self, target: str) -> np.ndarray:
        if target not in self._net:
            func, deps = self._rate(target)
            inputs = {d: self._input_values(d, target) for d in deps}
            self._net[target] = self._evaluate(func, inputs, self.times, self.model.elements[target].name)
        return self._net[target]

    def partial(self, source: str, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Δsource(z), Δz, Δsource) for k = 1..n-1, where z is the target or its rate."""
        key = (source, target)
        if key in self._partials:
            return self._partials[key]
        how = self.scoring(target)
        if how == "auxiliary":
            func, deps, z = self.raw[target], self._element_inputs(target), self.values[target]
        else:
            func, deps = self._rate(target)
            z = self.net_rate(target)
        lagged = {d: self._input_values(d, target)[:-1] for d in deps}
        lagged[source] = self.values[source][1:]
        moved = self._evaluate(func, lagged, self.times[:-1], self.model.elements[target].name)
        result = (moved - z[:-1], np.diff(z), np.diff(self.values[source]))
        self._partials[key] = result
        return result

    def partial_sign(self, source: str, target: str) -> int | None:
        """The sign of the partial effect of source on target over the run, if it never changes."""
        effect, _, change = self.partial(source, target)
        finite = np.isfinite(effect)
        # Effects below a billionth of the largest are rounding noise, not a change of sign.
        tolerance = 1e-9 * (np.abs(effect[finite]).max() if finite.any() else 0.0)
        ratio = np.sign(effect) * np.sign(change)
        seen = set(ratio[(np.abs(effect) > tolerance) & (change != 0) & finite].astype(int).tolist())
        seen.discard(0)
        return seen.pop() if len(seen) == 1 else None

    def link_score(self, source: str, target: str, polarity: str) -> tuple[np.ndarray, bool]:
        """Link score over the dt grid (NaN where undefined) and whether it is exact."""
        score = np.full(self.n, np.nan)
        how = self.scoring(target)
        if how == "approximate":
            # LTM's black-box treatment: the whole change of the target is put down to the
            # link, with the link's sign (or the sign of the co-movement when ambiguous).
            dz, dx = np.diff(self.values[target]), np.diff(self.values[source])
            sign = {POSITIVE: 1.0, NEGATIVE: -1.0}.get(polarity)
            value = np.sign(dz) * np.sign(dx) if sign is None else np.full(dz.size, sign)
            score[1:] = np.where((dz == 0) | (dx == 0), 0.0, value)
            return score, False
        effect, dz, dx = self.partial(source, target)
        with np.errstate(all="ignore"):
            value = np.abs(effect / dz) * np.sign(effect) * np.sign(dx)
        # Schoenberg et al.: a link whose source or target does not change scores zero.
        value = np.where((dz == 0) | (dx == 0) | (effect == 0), 0.0, value)
        if how == "auxiliary":
            score[1:] = value
        else:
            score[2:] = value[:-1]  # the rate at t - dt moved the stock to t
        return score, True
