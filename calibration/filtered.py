"""Filtered (state-space) fits: estimation, intervals and outputs over :mod:`calibration.state_space`.

- **Evaluation.** A spec with no free parameters evaluates the filter's likelihood and
  statistics at the values it gives, to compare models and specs.
- **Differential evolution** over the filter's log-likelihood: each generation is one
  filter pass over the whole population (parameter sets x particles, or x the Kalman
  filter's difference members, in one kernel call per observation interval). The best
  member is then polished by L-BFGS-B with forward-difference gradients, each gradient one
  batched pass (Kalman filter only: a particle likelihood is not differentiable).
- **IF2** (iterated filtering, Ionides, Nguyen, Atchadé, Stoev and King 2015) for the particle
  filter: each particle carries its own parameters, which take a random walk whose size cools
  geometrically from iteration to iteration; the swarm's mean converges to the maximum
  likelihood estimate.
- **Profile intervals**: the likelihood's Hessian (finite differences, one batched pass) gives
  the grid and the starting points; along each model parameter's grid, walking outwards from the
  estimate, the other parameters are re-optimised by L-BFGS-B (Kalman filter), or by a batched
  compass search whose profile is then smoothed by a quadratic (particle filter: a Monte Carlo
  adjusted profile, Ionides et al. 2017). Observation and process noise sds, nuisance
  parameters, get Wald intervals from the Hessian (said in the result's notes).
- Every batch goes through the checkpoint store, so a killed fit resumes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .errors import CalibrationWarning
from .methods import Fit, de_options, initial_point
from .problem import PENALTY
from .state_space import StateSpaceFilter
from .uncertainty import Intervals, correlation_from_covariance, crossing, profile_starts

TAG_FILTER, TAG_IF2 = 11, 12
#: Parameters whose intervals are profiled; the others (noise sds) are nuisance parameters.
PROFILED = ("model", "scale", "offset")


class FilterObjective:
    """The filter's negative log-likelihood in optimiser coordinates, memoised in the store."""

    def __init__(self, problem, filt: StateSpaceFilter, store):
        self.problem = problem
        self.filter = filt
        self.store = store
        self.parameters = problem.parameters
        self.lower = np.array([p.internal_bounds[0] for p in self.parameters])
        self.upper = np.array([p.internal_bounds[1] for p in self.parameters])
        self.evaluated = 0
        self.nonfinite = 0

    @property
    def dim(self) -> int:
        return len(self.parameters)

    def to_model(self, z):
        z = np.atleast_2d(z)
        if not self.parameters:
            return np.zeros((z.shape[0], 0))
        return np.column_stack([p.to_model(z[:, j]) for j, p in enumerate(self.parameters)])

    def to_internal(self, x):
        x = np.atleast_2d(x)
        if not self.parameters:
            return np.zeros((x.shape[0], 0))
        return np.column_stack([p.to_internal(x[:, j]) for j, p in enumerate(self.parameters)])

    def clip(self, z):
        return np.clip(z, self.lower, self.upper)

    def _loglike(self, zz):
        ll = self.filter.loglike(self.to_model(zz))
        return np.where(np.isfinite(ll), ll, -np.inf)

    def loglike(self, z) -> np.ndarray:
        z = np.atleast_2d(np.asarray(z, dtype=float))
        ll = self.store.call(TAG_FILTER, z, self._loglike)[:, 0]
        self.evaluated += ll.size
        self.nonfinite += int(np.sum(~np.isfinite(ll)))
        return ll

    def nll(self, z) -> np.ndarray:
        ll = self.loglike(z)
        return np.where(np.isfinite(ll), -ll, PENALTY)

    def gradient(self, z, rel_step: float = 1e-5):
        """The nll and its forward-difference gradient at each row of z (one batched pass)."""
        z = np.atleast_2d(z)
        b, p = z.shape
        h = rel_step * np.maximum(1.0, np.abs(z))
        h = np.where(z + h > self.upper, -h, h)
        batch = [z] + [z + np.eye(p)[j] * h[:, j:j + 1] for j in range(p)]
        values = self.nll(np.concatenate(batch, axis=0)).reshape(p + 1, b)
        return values[0], ((values[1:] - values[0]) / h.T).T

    def hessian(self, z, rel_step: float | None = None) -> np.ndarray:
        """Finite-difference Hessian of the nll at one point (one batched pass). A particle
        likelihood is smooth only at scales above its Monte Carlo noise: its steps are 2% of each
        parameter's search width, the Kalman filter's 0.1% of its scale."""
        p = z.size
        width = np.maximum(self.upper - self.lower, 1e-12)
        if self.filter.settings.method == "particle":
            h = (rel_step or 0.02) * width
        else:
            h = (rel_step or 1e-3) * np.maximum(1.0, np.abs(z)) * width.clip(max=1.0)
        h = np.where(z + 2 * h > self.upper, -h, h)
        points = [z]
        for i in range(p):
            points.append(z + np.eye(p)[i] * h[i])
        pairs = [(i, j) for i in range(p) for j in range(i, p)]
        for i, j in pairs:
            points.append(z + np.eye(p)[i] * h[i] + np.eye(p)[j] * h[j])
        f = self.nll(np.array(points))
        f0, fi = f[0], f[1:p + 1]
        H = np.empty((p, p))
        for k, (i, j) in enumerate(pairs):
            H[i, j] = H[j, i] = (f[p + 1 + k] - fi[i] - fi[j] + f0) / (h[i] * h[j])
        return H


# --------------------------------------------------------------------------- estimation

def differential_evolution(obj: FilterObjective, rng: np.random.Generator, settings: dict, polish: bool) -> Fit:
    from scipy.optimize import differential_evolution as scipy_de

    options = de_options(settings, popsize=10, maxiter=50, tol=0.001)
    x0 = initial_point(obj.parameters)
    result = scipy_de(lambda pop: obj.nll(np.asarray(pop).T), list(zip(obj.lower, obj.upper)), vectorized=True,
                      updating="deferred", polish=False, rng=rng, x0=x0, **options)
    z, nll = np.asarray(result.x, dtype=float), float(result.fun)
    diagnostics = {"optimizer": "scipy.optimize.differential_evolution (vectorized) over the filter likelihood",
                   "success": int(bool(result.success)), "message": str(result.message),
                   "generations": int(result.nit), "nfev": int(result.nfev),
                   "population_size": int(options["popsize"] * obj.dim), "de_nll": nll}
    if not result.success:
        warnings.warn(f"differential_evolution did not converge: {result.message} (raise method.maxiter)",
                      CalibrationWarning, stacklevel=3)
    if polish and settings.get("polish", True):
        zp, value, iterations = lbfgs(obj, z, int(settings.get("polish_maxiter", 60)))
        diagnostics["polish_iterations"] = iterations
        if value < nll:
            z, nll = zp, value
    return Fit(z, nll, np.full(len(obj.problem.targets), np.nan), diagnostics)


def lbfgs(obj: FilterObjective, z0: np.ndarray, maxiter: int = 60) -> tuple[np.ndarray, float, int]:
    """L-BFGS-B from z0 with batched forward-difference gradients."""
    from scipy.optimize import minimize

    def fun(z):
        value, grad = obj.gradient(z[None, :])
        return float(value[0]), grad[0]

    result = minimize(fun, obj.clip(z0), jac=True, method="L-BFGS-B", bounds=list(zip(obj.lower, obj.upper)),
                      options={"maxiter": maxiter})
    return np.asarray(result.x, dtype=float), float(result.fun), int(result.nit)


def if2(obj: FilterObjective, rng: np.random.Generator, settings: dict, particles: int) -> Fit:
    """Iterated filtering (IF2) on the particle filter; see the module docstring."""
    filt = obj.filter
    iterations = int(settings.get("iterations", 50))
    cooling = float(settings.get("cooling", 0.5))        # the random walk's size after 50 iterations
    rw = float(settings.get("rw_sd", 0.02))               # as a fraction of each parameter's search width
    J = int(settings.get("particles", particles))
    width = obj.upper - obj.lower
    factor = cooling ** (1 / 50)
    swarm = obj.lower + width * rng.random((J, obj.dim))
    if all(p.initial is not None for p in obj.parameters):
        swarm[:] = np.array([p.to_internal(p.initial) for p in obj.parameters])
        swarm = obj.clip(swarm + 4 * rw * width * rng.standard_normal(swarm.shape))
    trace = []
    for m in range(iterations):
        scale = rw * width * factor**m
        seed = int(rng.integers(2**31))

        def one_pass(start, scale=scale, seed=seed):
            end, ll = filt.iterated_pass(obj.to_model, obj.to_internal, obj.clip, start, scale, seed)
            return np.column_stack([end, np.full(end.shape[0], ll)])

        out = obj.store.call(TAG_IF2, swarm, one_pass)
        swarm, ll = out[:, :-1], float(out[0, -1])
        trace.append(ll)
    z = obj.clip(swarm.mean(axis=0))
    nll = float(obj.nll(z[None, :])[0])
    diagnostics = {"optimizer": "IF2 (iterated filtering, Ionides et al. 2015)", "iterations": iterations,
                   "if2_particles": J, "cooling": cooling, "rw_sd": rw, "success": 1, "message": "",
                   "if2_last_loglike": trace[-1] if trace else math.nan,
                   "nfev": iterations * J}
    return Fit(z, nll, np.full(len(obj.problem.targets), np.nan), diagnostics)


# --------------------------------------------------------------------------- intervals

def profile(obj: FilterObjective, fit: Fit, level: float, n_points: int = 7, max_iter: int = 30,
            which: str = "all") -> Intervals:
    """Profile-likelihood intervals of every parameter, or (``which = "model"``) of the model's and
    measurement parameters only, with Wald intervals for the noise sds (cheaper: a profile costs
    one local optimisation per grid point)."""
    from scipy.stats import chi2, norm

    threshold = chi2.ppf(level, 1) / 2
    p = obj.dim
    H = obj.hessian(fit.z)
    H = 0.5 * (H + H.T)
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(H)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    width = obj.upper - obj.lower
    lower, upper = np.empty(p), np.empty(p)
    identified = np.ones(p, bool)
    notes = []
    profiled = [j for j, q in enumerate(obj.parameters) if which == "all" or q.kind in PROFILED]
    nuisance = [j for j in range(p) if j not in profiled]
    z95 = norm.ppf(0.5 + level / 2)
    for j in nuisance:
        s = se[j] if np.isfinite(se[j]) and se[j] > 0 and np.diag(cov)[j] > 0 else np.inf
        lo, hi = max(fit.z[j] - z95 * s, obj.lower[j]), min(fit.z[j] + z95 * s, obj.upper[j])
        lower[j], upper[j] = obj.parameters[j].to_model(lo), obj.parameters[j].to_model(hi)
        identified[j] = bool(np.isfinite(s)) and lo > obj.lower[j] and hi < obj.upper[j]
    if obj.filter.settings.method == "particle" and profiled:
        notes.append("particle filter: each profile is the quadratic fitted through its points (a Monte Carlo "
                     "adjusted profile, Ionides et al. 2017), since each point carries Monte Carlo noise")
    if nuisance:
        notes.append("noise sds (" + ", ".join(obj.parameters[j].name for j in nuisance) + ") have Wald intervals "
                     "from the likelihood's Hessian; the model parameters have profile intervals")
    grids, rows, owner = [], [], []
    for j in profiled:
        # The grid spans 3 standard errors either side, at most 3/8 of the search width (a flat or
        # noisy likelihood gives no usable curvature).
        s = se[j] if np.isfinite(se[j]) and se[j] > 0 else width[j]
        s = min(s, width[j] / 8)
        inner = fit.z[j] + s * np.linspace(-3, 3, n_points)
        outer = np.array([obj.lower[j], obj.upper[j], 0.5 * (obj.lower[j] + fit.z[j]), 0.5 * (obj.upper[j] + fit.z[j])])
        grid = np.unique(np.clip(np.concatenate([inner, outer, [fit.z[j]]]), obj.lower[j], obj.upper[j]))
        grids.append(grid)
        for z in profile_starts(obj, fit.z, cov, j, grid):
            rows.append(z)
            owner.append(j)
    prof_values = np.full((p, max((g.size for g in grids), default=1)), np.nan)
    prof_nll = prof_values.copy()
    better = None
    if rows:
        rows, owner = np.array(rows), np.array(owner)
        values = obj.nll(rows)
        if obj.filter.settings.method == "particle" and p > 1:
            rows, values = _compass(obj, rows, values, owner, np.array([min(v, w / 8) if np.isfinite(v) and v > 0
                                                                        else w / 8 for v, w in zip(se, width)]))
        if obj.filter.settings.method == "kalman" and p > 1:
            rows, values, stopped = _continuation(obj, rows, values, owner, fit.z, max_iter)
            if stopped:
                notes.append(f"{stopped} of {rows.shape[0]} profile points stopped at the re-optimisation's iteration "
                             f"limit (uncertainty.max_iter = {max_iter}): their likelihood may be a little low, so the "
                             "intervals may be a little narrow")
        for k, j in enumerate(profiled):
            grid = grids[k]
            vals = values[owner == j]
            prof_values[j, :grid.size] = obj.parameters[j].to_model(grid)
            prof_nll[j, :grid.size] = vals
            if vals.min() < fit.nll - 1e-3 and (better is None or vals.min() < better[1]):
                better = (rows[owner == j][int(np.argmin(vals))], float(vals.min()))
            centre = fit.z[j]
            if obj.filter.settings.method == "particle":
                vals, centre = _smoothed_profile(grid, vals, fit.z[j])
            drop = vals - min(fit.nll, vals.min())
            lo_z, lo_open = crossing(grid, drop, centre, threshold, side=-1)
            hi_z, hi_open = crossing(grid, drop, centre, threshold, side=+1)
            if lo_open or hi_open:
                identified[j] = False
                sides = " and ".join(s for s, o in (("below", lo_open), ("above", hi_open)) if o)
                note = (f"parameter '{obj.parameters[j].name}': the filter's profile likelihood stays within "
                        f"{threshold:.2f} of its optimum {sides} the estimate up to the bound (interval open)")
                notes.append(note)
                warnings.warn(note, CalibrationWarning, stacklevel=3)
            if not lo_z <= hi_z:
                lo_z, hi_z = obj.lower[j], obj.upper[j]
                identified[j] = False
            lower[j], upper[j] = obj.parameters[j].to_model(lo_z), obj.parameters[j].to_model(hi_z)
    return Intervals(lower, upper, "profile", level, identified, correlation=correlation_from_covariance(cov),
                     profile_values=prof_values, profile_nll=prof_nll, notes=notes, better=better)


class _Aborted(Exception):
    """A lockstep walk stopped because the batched evaluation failed."""


class _Lockstep:
    """Gathers the gradient requests of several optimisers, each running in its own thread, into
    one batched evaluation: a batch is run when every optimiser still running has asked, so its
    content (one row per running optimiser, in their order) does not depend on thread timing and
    the checkpoint replays it exactly."""

    def __init__(self, obj: FilterObjective, count: int):
        import threading

        self.obj = obj
        self.cond = threading.Condition()
        self.active = count
        self.pending: dict[int, np.ndarray] = {}
        self.results: dict[int, tuple] = {}
        self.error: BaseException | None = None

    def _run(self):
        keys = sorted(self.pending)
        try:
            values, grads = self.obj.gradient(np.stack([self.pending[k] for k in keys]))
            for k, v, g in zip(keys, values, grads):
                self.results[k] = (float(v), g)
        except BaseException as exc:  # handed to every waiting optimiser
            self.error = exc
        self.pending.clear()
        self.cond.notify_all()

    def gradient(self, who: int, z: np.ndarray):
        with self.cond:
            if self.error is None:
                self.pending[who] = np.asarray(z, dtype=float)
                if len(self.pending) == self.active:
                    self._run()
                while who not in self.results and self.error is None:
                    self.cond.wait()
            if self.error is not None:
                raise _Aborted  # the evaluation's own error is raised once, by _continuation
            return self.results.pop(who)

    def done(self):
        with self.cond:
            self.active -= 1
            if self.pending and len(self.pending) == self.active:
                self._run()


def _continuation(obj: FilterObjective, rows, values, owner, estimate, max_iter: int):
    """Re-optimise the free parameters of every profile point by L-BFGS-B (forward-difference
    gradients), walking outwards from the estimate along each grid so that each point starts from
    the better of its quadratic guess and its inner neighbour's solution. The walks (one per
    parameter and side) run together: each step's gradients of every walk are one batched pass."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy.optimize import minimize

    p = rows.shape[1]
    chains = []
    for j in np.unique(owner):
        mine = np.flatnonzero(owner == j)
        for side in (-1, 1):
            chain = [i for i in mine if side * (rows[i, j] - estimate[j]) > 0]
            chain.sort(key=lambda i: abs(rows[i, j] - estimate[j]))
            if chain:
                chains.append((int(j), chain))
    lockstep = _Lockstep(obj, len(chains))
    stopped = [0] * len(chains)

    def walk(who: int):
        j, chain = chains[who]
        try:
            previous = estimate
            free = np.arange(p) != j
            for i in chain:
                guess = previous.copy()
                guess[j] = rows[i, j]
                value, _ = lockstep.gradient(who, guess)
                if value < values[i]:
                    rows[i], values[i] = guess, value
                fixed = rows[i].copy()

                def fun(x, fixed=fixed):
                    z = fixed.copy()
                    z[free] = x
                    value, grad = lockstep.gradient(who, z)
                    return value, grad[free]

                result = minimize(fun, rows[i, free], jac=True, method="L-BFGS-B",
                                  bounds=list(zip(obj.lower[free], obj.upper[free])), options={"maxiter": max_iter})
                if result.fun < values[i]:
                    rows[i, free], values[i] = result.x, float(result.fun)
                stopped[who] += int(result.nit >= max_iter)
                previous = rows[i]
        finally:
            lockstep.done()

    with ThreadPoolExecutor(max(1, len(chains))) as pool:
        futures = [pool.submit(walk, who) for who in range(len(chains))]
        for future in futures:
            try:
                future.result()
            except _Aborted:
                pass
    if lockstep.error is not None:
        raise lockstep.error
    return rows, values, sum(stopped)


def _compass(obj: FilterObjective, rows, values, owner, step, rounds: int = 8):
    """Derivative-free re-optimisation of every profile point at once (a particle likelihood has
    no useful gradient): each round tries a step up and down along every free coordinate of every
    row in one batched pass, takes each row's best move if it improves, and halves the steps of
    rows that found none."""
    n, p = rows.shape
    steps = np.repeat(step[None, :].astype(float), n, axis=0)
    for _ in range(rounds):
        trials, who = [], []
        for k in range(p):
            for sign in (1.0, -1.0):
                moved = rows.copy()
                moved[:, k] += sign * steps[:, k]
                keep = owner != k
                trials.append(obj.clip(moved[keep]))
                who.append(np.flatnonzero(keep))
        trials, who = np.concatenate(trials), np.concatenate(who)
        tried = obj.nll(trials)
        improved = np.zeros(n, bool)
        for i in range(n):
            mine = who == i
            if not mine.any():
                continue
            best = int(np.argmin(np.where(mine, tried, np.inf)))
            if tried[best] < values[i]:
                rows[i], values[i] = trials[best], tried[best]
                improved[i] = True
        steps[~improved] *= 0.5
    return rows, values


def _smoothed_profile(grid: np.ndarray, values: np.ndarray, centre: float) -> tuple[np.ndarray, float]:
    """A particle filter's profile through a quadratic fitted by least squares to its points
    (finite ones, weighted towards the estimate), so Monte Carlo noise does not cut intervals;
    and the quadratic's minimum (within the grid), around which the interval lies."""
    ok = np.isfinite(values) & (values < PENALTY)
    # Only points near the optimum: far ones would bend a quadratic away from the interval's scale.
    ok &= values <= np.min(values[ok], initial=np.inf) + 10.0
    if ok.sum() < 3:
        return values, centre
    x, y = grid[ok], values[ok]
    spread = max(float(np.ptp(x)), 1e-12)
    weight = np.exp(-0.5 * ((x - centre) / (0.5 * spread)) ** 2)
    a, b, c = np.polyfit(x, y, 2, w=np.sqrt(weight))
    if a <= 0:
        return values, centre
    vertex = float(np.clip(-b / (2 * a), grid.min(), grid.max()))
    smooth = a * grid**2 + b * grid + c
    # The vertex is a point of the profile too, so the interval is measured from its minimum.
    return np.where(ok, smooth - min(0.0, float(a * vertex**2 + b * vertex + c) - smooth[ok].min()), values), vertex


def _contain(obj: FilterObjective, fit: Fit, intervals: Intervals) -> None:
    """An interval always holds its estimate: when the profile's own minimum lies away from the
    estimate (a second better point, or Monte Carlo noise), the interval is widened to it and the
    notes say so."""
    estimate = obj.to_model(fit.z[None, :])[0]
    for j, q in enumerate(obj.parameters):
        lo, hi = intervals.lower[j], intervals.upper[j]
        if np.isfinite(lo) and np.isfinite(hi) and not lo <= estimate[j] <= hi:
            intervals.lower[j], intervals.upper[j] = min(lo, estimate[j]), max(hi, estimate[j])
            intervals.notes.append(f"parameter '{q.name}': its profile's minimum lies beside the estimate; the "
                                   "interval is widened to hold the estimate")


def wald_only(obj: FilterObjective, fit: Fit, level: float) -> Intervals:
    nan = np.full(obj.dim, np.nan)
    if obj.dim == 0:
        return Intervals(nan, nan.copy(), "none", level, np.ones(0, bool), correlation=np.zeros((0, 0)))
    H = obj.hessian(fit.z)
    try:
        cov = np.linalg.inv(0.5 * (H + H.T))
    except np.linalg.LinAlgError:
        cov = np.full_like(H, np.nan)
    return Intervals(nan, nan.copy(), "none", level, np.ones(obj.dim, bool),
                     correlation=correlation_from_covariance(cov))


# --------------------------------------------------------------------------- the fit

def fit_filtered(spec, problem, store, seed_sequence):
    """A filtered fit of one problem: estimate, intervals and the Dataset (see :mod:`calibration.fit`)."""
    method_seed, filter_seed = seed_sequence.spawn(2)
    settings = spec.state_space
    filt = StateSpaceFilter(problem, settings, int(filter_seed.generate_state(1)[0]))
    obj = FilterObjective(problem, filt, store)
    rng = np.random.default_rng(method_seed)
    level = float(spec.uncertainty_settings["level"])
    if obj.dim == 0:
        z = np.zeros(0)
        fit = Fit(z, float(obj.nll(z[None, :])[0]), np.full(len(problem.targets), np.nan),
                  {"optimizer": "none: evaluation at the spec's values", "success": 1, "message": "", "nfev": 1})
    elif spec.method == "if2":
        fit = if2(obj, rng, spec.settings, settings.particles)
    else:
        fit = differential_evolution(obj, rng, spec.settings, polish=settings.method == "kalman")
    if obj.dim and spec.uncertainty == "profile":
        u = spec.uncertainty_settings

        def profiled():
            return profile(obj, fit, level, n_points=int(u.get("n_points", 7)), max_iter=int(u.get("max_iter", 30)),
                           which=str(u.get("parameters", "all")))

        intervals = profiled()
        for attempt in range(2):
            if intervals.better is None:
                break
            # The profile walked into a better optimum than the optimiser's: the estimate moves there.
            warnings.warn(f"the profile likelihood found a better fit (negative log-likelihood {intervals.better[1]:.6g} "
                          f"< {fit.nll:.6g}): the optimiser stopped short of the optimum; the estimate moves there "
                          "(use more generations)", CalibrationWarning, stacklevel=2)
            fit.z, fit.nll = np.asarray(intervals.better[0], dtype=float), float(intervals.better[1])
            fit.diagnostics["profile_restart"] = attempt + 1
            if attempt == 0:
                if settings.method == "kalman":
                    z, value, _ = lbfgs(obj, fit.z, int(spec.settings.get("polish_maxiter", 60)))
                    if value < fit.nll:
                        fit.z, fit.nll = z, value
                intervals = profiled()
        _contain(obj, fit, intervals)
    else:
        intervals = wald_only(obj, fit, level)
    values = obj.to_model(fit.z[None, :])
    if not np.isfinite(-fit.nll) or fit.nll >= PENALTY:
        warnings.warn("the filter's likelihood is not finite at the estimate: every particle (or the Kalman "
                      "prediction) went non-finite or missed the data entirely", CalibrationWarning, stacklevel=2)
    record = filt.run(values, level=level)
    open_loop = filt.open_loop(values)
    fit.sigmas = filt._sigma(values)[0]
    return _dataset(spec, problem, obj, fit, intervals, record, open_loop, level)


def _dataset(spec, problem, obj, fit, intervals, record, open_loop, level):
    import xarray as xr
    from statsmodels.stats.diagnostic import acorr_ljungbox
    from statsmodels.tsa.stattools import acf

    from .statistics import STATISTIC_NAMES, STATISTICS, fit_statistics, linear_trend_ssr, persistence_rmse

    series = [t.observation.name for t in problem.targets]
    times = np.unique(np.concatenate([t.times for t in problem.targets]))
    ns, nt = len(series), times.size
    shape = (ns, nt)
    observed, fitted = np.full(shape, np.nan), np.full(shape, np.nan)
    predicted, pred_lo, pred_hi = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    from scipy.stats import norm

    zq = norm.ppf(0.5 + level / 2)
    where = np.searchsorted(times, record.times)
    log_obs = obj.filter.log_obs
    mean = np.where(log_obs[:, None], np.exp(record.predicted), record.predicted)
    lo = record.predicted - zq * record.predicted_sd
    hi = record.predicted + zq * record.predicted_sd
    predicted[:, where] = mean
    pred_lo[:, where] = np.where(log_obs[:, None], np.exp(lo), lo)
    pred_hi[:, where] = np.where(log_obs[:, None], np.exp(hi), hi)
    standardised = np.full(shape, np.nan)
    with np.errstate(all="ignore"):
        standardised[:, where] = (obj.filter.obs_data - record.predicted) / record.predicted_sd
    stats = {name: np.full((ns, 2), np.nan) for name in STATISTICS}
    one = {name: np.full((ns, 2), np.nan) for name in STATISTICS}
    persistence, ratio = np.full(ns, np.nan), np.full(ns, np.nan)
    trend_ssr, trend_ratio = np.full(ns, np.nan), np.full(ns, np.nan)
    step_persistence, step_ratio = np.full(ns, np.nan), np.full(ns, np.nan)
    lags = np.arange(1, 5)
    acfs, lb_stat, lb_p = np.full((ns, 4), np.nan), np.full((ns, 4), np.nan), np.full((ns, 4), np.nan)
    for i, (target, best) in enumerate(zip(problem.targets, open_loop)):
        index = np.searchsorted(times, target.times)
        data = np.concatenate([target.fit_values, target.holdout_values])
        observed[i, index] = data
        fitted[i, index] = best[0]
        n = target.fit_times.size
        for k, (sim, act) in enumerate(((best[0, :n], target.fit_values), (best[0, n:], target.holdout_values))):
            for name, value in fit_statistics(sim, act).items():
                stats[name][i, k] = value
        pred = predicted[i, index]
        for k, (sim, act) in enumerate(((pred[:n], target.fit_values), (pred[n:], target.holdout_values))):
            for name, value in fit_statistics(sim, act).items():
                one[name][i, k] = value
        trend_ssr[i] = linear_trend_ssr(target.fit_times, target.fit_values)
        if trend_ssr[i] > 0 and np.isfinite(best[0, :n]).all():
            trend_ratio[i] = float(np.sum((best[0, :n] - target.fit_values) ** 2)) / trend_ssr[i]
        if target.holdout_times.size:
            persistence[i] = persistence_rmse(target.before_holdout, target.holdout_values)
            if persistence[i] > 0:
                ratio[i] = stats["rmse"][i, 1] / persistence[i]
        if n >= 3:
            # The naive one-step forecast: last year's value.
            step_persistence[i] = math.sqrt(float(np.mean(np.diff(target.fit_values) ** 2)))
            if step_persistence[i] > 0:
                errors = (pred[1:n] - target.fit_values[1:])
                step_ratio[i] = math.sqrt(float(np.nanmean(errors**2))) / step_persistence[i]
        e = standardised[i, index[:n]]
        e = e[np.isfinite(e)]
        if e.size > 6:
            acfs[i] = acf(e, nlags=4, fft=False)[1:]
            table = acorr_ljungbox(e, lags=4, return_df=True)
            lb_stat[i], lb_p[i] = table["lb_stat"].values, table["lb_pvalue"].values
    stocks = obj.filter.state_names
    state_vars = {}
    for key, array, text in (("state_filtered", record.filtered, "filtered mean"),
                             ("state_filtered_lower", record.filtered_lower, f"lower end of the {level:.0%} filtered band"),
                             ("state_filtered_upper", record.filtered_upper, f"upper end of the {level:.0%} filtered band"),
                             ("state_smoothed", record.smoothed, "smoothed mean"),
                             ("state_smoothed_lower", record.smoothed_lower, f"lower end of the {level:.0%} smoothed band"),
                             ("state_smoothed_upper", record.smoothed_upper, f"upper end of the {level:.0%} smoothed band")):
        full = np.full((len(stocks), nt), np.nan)
        full[:, where] = array
        state_vars[key] = (("stock", "time"), full, {"long_name": f"{text} of each stock (forecast after the fit "
                                                                   "window)"})
    p = obj.dim
    nll = float(fit.nll) if fit.nll < PENALTY else math.inf
    n_points = problem.n_points
    names = [q.name for q in obj.parameters]
    data_vars = {
        "estimate": ("param", obj.to_model(fit.z[None, :])[0] if p else np.zeros(0), {"long_name": "best estimate"}),
        "lower": ("param", intervals.lower, {"long_name": f"lower end of the {level:.0%} interval",
                                             "method": intervals.method}),
        "upper": ("param", intervals.upper, {"long_name": f"upper end of the {level:.0%} interval",
                                             "method": intervals.method}),
        "identified": ("param", np.asarray(intervals.identified, dtype=bool),
                       {"long_name": "interval closed on both sides within the bounds"}),
        "bound_lower": ("param", np.array([q.lower for q in obj.parameters]), {"long_name": "search bound"}),
        "bound_upper": ("param", np.array([q.upper for q in obj.parameters]), {"long_name": "search bound"}),
        "log_scale": ("param", np.array([q.log for q in obj.parameters], dtype=bool),
                      {"long_name": "searched on a log scale"}),
        "param_kind": ("param", np.asarray([q.kind for q in obj.parameters], dtype=str),
                       {"long_name": "model constant, measurement term, observation noise (sigma) or process noise"}),
        "correlation": (("param", "param_other"), np.asarray(intervals.correlation, dtype=float).reshape(p, p),
                        {"long_name": "parameter correlation (from the filter likelihood's Hessian)"}),
        "observed": (("series", "time"), observed, {"long_name": "observed (transformed) data"}),
        "fitted": (("series", "time"), fitted, {"long_name": "open-loop run at the best estimate"}),
        "residual": (("series", "time"), observed - fitted, {"long_name": "observed - open-loop run"}),
        "predicted": (("series", "time"), predicted, {
            "long_name": "one-step-ahead prediction (the filter's, from the data up to the year before); "
                         "after the fit window, the forecast from the last filtered state"}),
        "predicted_lower": (("series", "time"), pred_lo, {"long_name": f"lower end of the {level:.0%} one-step band"}),
        "predicted_upper": (("series", "time"), pred_hi, {"long_name": f"upper end of the {level:.0%} one-step band"}),
        "innovation": (("series", "time"), observed - predicted, {"long_name": "observed - one-step-ahead prediction"}),
        "standardised_innovation": (("series", "time"), standardised, {
            "long_name": "one-step-ahead error over its predicted sd (on the log scale for lognormal series)"}),
        "sigma": ("series", fit.sigmas, {"long_name": "observation noise sd (given or estimated)"}),
        "error_model": ("series", np.asarray([t.observation.error for t in problem.targets], dtype=str),
                        {"long_name": "error model of the likelihood (spec's observations.error)"}),
        "weight": ("series", np.array([t.observation.weight for t in problem.targets]),
                   {"long_name": "weight (not used by a filtered fit)"}),
        "persistence_rmse": ("series", persistence, {"long_name": "hold-out RMSE of the naive persistence forecast"}),
        "rmse_ratio_to_persistence": ("series", ratio, {
            "long_name": "hold-out RMSE of the open-loop run / of persistence (< 1 is better)"}),
        "trend_ssr": ("series", trend_ssr, {"long_name": "fit-window SSR of a straight line fitted to the series"}),
        "ssr_ratio_to_trend": ("series", trend_ratio, {"long_name": "fit-window SSR of the open-loop run / of a "
                                                                     "fitted straight line"}),
        "one_step_persistence_rmse": ("series", step_persistence, {
            "long_name": "fit-window RMSE of the naive one-step forecast (last year's value)"}),
        "one_step_ratio_to_persistence": ("series", step_ratio, {
            "long_name": "fit-window RMSE of the filter's one-step prediction / of the naive one (< 1 is better)"}),
        "acf": (("series", "lag"), acfs, {"long_name": "autocorrelation of the standardised one-step errors"}),
        "ljung_box_stat": (("series", "lag"), lb_stat, {"long_name": "Ljung-Box statistic up to the lag"}),
        "ljung_box_pvalue": (("series", "lag"), lb_p, {
            "long_name": "Ljung-Box p-value up to the lag (small: the one-step errors are not white)"}),
        "measurement_scale": ("series", [float(problem.measurement(obj.to_model(fit.z[None, :]), t.observation)[0][0])
                                         for t in problem.targets], {"long_name": "measurement scale"}),
        "measurement_offset": ("series", [float(problem.measurement(obj.to_model(fit.z[None, :]), t.observation)[1][0])
                                          for t in problem.targets], {"long_name": "measurement offset"}),
        "nll": ((), nll, {"long_name": "negative log-likelihood of the filter (one-step-ahead errors) at the best "
                                       "estimate"}),
        "aic": ((), 2 * p + 2 * nll, {"long_name": "Akaike information criterion (filter likelihood)"}),
        "bic": ((), p * math.log(max(n_points, 1)) + 2 * nll, {"long_name": "Bayesian information criterion"}),
        **state_vars,
    }
    for name in STATISTICS:
        key = "n_points" if name == "n" else name
        data_vars[key] = (("series", "period"), stats[name], {"long_name": f"{STATISTIC_NAMES[name]} (open-loop run)"})
        data_vars[f"one_step_{key}"] = (("series", "period"), one[name], {
            "long_name": f"{STATISTIC_NAMES[name]} of the one-step-ahead predictions (hold-out: the forecast)"})
    for key, value in fit.diagnostics.items():
        data_vars[f"opt_{key}"] = ((), np.array(value, dtype=object) if isinstance(value, str) else float(value), {})
    if intervals.notes:
        data_vars["opt_identifiability"] = ((), np.array(" | ".join(intervals.notes), dtype=object), {})
    data_vars["opt_n_candidates"] = ((), float(obj.evaluated), {"long_name": "parameter sets evaluated"})
    data_vars["opt_n_nonfinite"] = ((), float(obj.nonfinite), {"long_name": "candidates whose likelihood was not finite"})
    coords = {
        "param": ("param", np.asarray(names, dtype=str), {"long_name": "free parameter"}),
        "param_other": ("param_other", np.asarray(names, dtype=str)),
        "param_units": ("param", np.asarray([q.units for q in obj.parameters], dtype=str)),
        "series": ("series", np.asarray(series, dtype=str), {"long_name": "observed series"}),
        "model_variable": ("series", np.asarray([t.observation.variable_long_name for t in problem.targets], dtype=str)),
        "source": ("series", np.asarray([t.source_text() for t in problem.targets], dtype=str)),
        "measurement_reason": ("series", np.asarray(["; ".join(f"{k}: {v}" for k, v in problem.reasons(t.observation).items()
                                                               if k in ("scale", "offset"))
                                                     for t in problem.targets], dtype=str)),
        "series_units": ("series", np.asarray([str(t.data.attrs.get("units", "")) for t in problem.targets], dtype=str)),
        "time": ("time", times, {"units": "year", "long_name": "Time (calendar year)"}),
        "period": ("period", np.array(["fit", "holdout"]), {"long_name": "fit window or hold-out window"}),
        "lag": ("lag", lags, {"long_name": "lag (observations)"}),
        "stock": ("stock", np.asarray(stocks, dtype=str), {"long_name": "model stock"}),
        "process_noise": ("stock", np.asarray([s in {t.stock for t in spec.state_space.noise} for s in stocks]),
                          {"long_name": "the stock receives process noise"}),
    }
    if intervals.profile_values is not None:
        data_vars["profile_value"] = (("param", "profile_point"), intervals.profile_values,
                                      {"long_name": "parameter value along its profile (NaN: Wald interval)"})
        data_vars["profile_nll"] = (("param", "profile_point"), intervals.profile_nll,
                                    {"long_name": "filter negative log-likelihood maximised over the other parameters"})
    return xr.Dataset(data_vars, coords=coords)
