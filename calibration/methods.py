"""Optimisers and samplers over the vectorised objective.

- ``least_squares``: :func:`scipy.optimize.least_squares` (trust-region reflective,
  bounds) from several starts of a Latin hypercube; each Jacobian is one ensemble run of
  the p + 1 forward-difference neighbours.
- ``differential_evolution``: :func:`scipy.optimize.differential_evolution` with
  ``vectorized=True``: the whole population of a generation is one ensemble run. The
  best member is then polished by ``least_squares``.
- ``mcmc``: :class:`emcee.EnsembleSampler` with ``vectorize=True``: the walkers moved
  at each half-step are one ensemble run. Priors come from the spec.

Maximum-likelihood methods ignore priors; the sampler uses them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import CalibrationWarning
from .problem import PENALTY, PLAUSIBILITY_WEIGHT, Problem
from .spec import LOG_ERRORS

TAG_SSR, TAG_SIM = 1, 2


class Objective:
    """The problem seen in optimiser coordinates (log for log-scale parameters), memoised."""

    def __init__(self, problem: Problem, store):
        self.problem = problem
        self.store = store
        self.parameters = problem.parameters
        self.lower = np.array([p.internal_bounds[0] for p in self.parameters])
        self.upper = np.array([p.internal_bounds[1] for p in self.parameters])
        self.widths = np.array([len(t.times) for t in problem.targets])
        self.penalty_weight = PLAUSIBILITY_WEIGHT if problem.spec.plausibility == "penalise" else 0.0
        self.first_batch = store.position  # this objective's batches start here (one store serves every country)

    @property
    def dim(self) -> int:
        return len(self.parameters)

    def to_model(self, z: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(z)
        return np.column_stack([p.to_model(z[:, j]) for j, p in enumerate(self.parameters)])

    def to_internal(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.column_stack([p.to_internal(x[:, j]) for j, p in enumerate(self.parameters)])

    def clip(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, self.lower, self.upper)

    # ------------------------------------------------------------------ evaluations
    # Each stored batch carries two last columns: every member's status and its exceedance of
    # the plausible ranges (Problem.simulate_with_status), so the likelihood's penalty and the
    # count of penalised candidates survive a resume from the checkpoint.
    def _ssr_and_status(self, zz: np.ndarray) -> np.ndarray:
        sims, status, exceedance = self.problem.simulate_with_status(self.to_model(zz))
        return np.column_stack([self.problem.ssr(sims), status, exceedance])

    def _sims_and_status(self, zz: np.ndarray) -> np.ndarray:
        sims, status, exceedance = self.problem.simulate_with_status(self.to_model(zz))
        return np.column_stack([np.concatenate(sims, axis=1), status, exceedance])

    def ssr(self, z: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(z)
        return self.store.call(TAG_SSR, z, self._ssr_and_status)[:, :-2]

    def exceedance(self, z: np.ndarray) -> np.ndarray:
        """How far each row's run leaves the model's plausible ranges (0: within them)."""
        z = np.atleast_2d(z)
        return self.store.call(TAG_SSR, z, self._ssr_and_status)[:, -1]

    def nll(self, z: np.ndarray) -> np.ndarray:
        """The negative log-likelihood, plus the plausibility penalty."""
        z = np.atleast_2d(z)
        y = self.store.call(TAG_SSR, z, self._ssr_and_status)
        return self.problem.nll_from_ssr(y[:, :-2]) + self.penalty_weight * y[:, -1] ** 2

    def _sims(self, z: np.ndarray) -> np.ndarray:
        return self.store.call(TAG_SIM, np.atleast_2d(z), self._sims_and_status)

    def simulate(self, z: np.ndarray, *, implausible: bool = False) -> list[np.ndarray]:
        """Each target's simulated values per row of z; rows that leave the plausible ranges
        are NaN unless ``implausible``."""
        y = self._sims(z)
        flat = y[:, :-2]
        if not implausible:
            flat = np.where(y[:, -1:] > 0, np.nan, flat)
        return np.split(flat, np.cumsum(self.widths)[:-1], axis=1)

    def scaled(self, z: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        """Scaled residuals (the Gauss-Newton form) with a last column for the plausibility
        penalty, sqrt(2 w) x exceedance, so that half their sum of squares is :meth:`nll`'s penalty."""
        y = self._sims(z)
        sims = np.split(y[:, :-2], np.cumsum(self.widths)[:-1], axis=1)
        penalty = math.sqrt(2 * self.penalty_weight) * y[:, -1:]
        return np.column_stack([self.problem.scaled_residuals(sims, sigmas), penalty])

    def rejections(self) -> tuple[int, int, dict[str, int]]:
        """Over every candidate this objective has evaluated (its own batches, replayed ones
        included): how many, how many went non-finite, and how many left each plausible range
        (by the range they left first)."""
        names = [r.name for r in self.problem.ranges]
        evaluated, nonfinite, by_range = 0, 0, {}
        for tag, _, y in self.store.records[self.first_batch:self.store.position]:
            if tag not in (TAG_SSR, TAG_SIM):
                continue
            status = y[:, -2]
            evaluated += status.size
            nonfinite += int(np.sum(status < 0))
            for code in np.unique(status[status > 0]).astype(int):
                name = names[code - 1] if code <= len(names) else "a plausible range"
                by_range[name] = by_range.get(name, 0) + int(np.sum(status == code))
        return evaluated, nonfinite, dict(sorted(by_range.items(), key=lambda kv: -kv[1]))

    def residual_and_jacobian(self, z: np.ndarray, sigmas: np.ndarray, rel_step: float = 1e-6):
        """Scaled residuals and forward-difference Jacobians at each row of z: one ensemble run."""
        z = np.atleast_2d(z)
        b, p = z.shape
        h = rel_step * np.maximum(1.0, np.abs(z))
        # Step inward at an upper bound so every neighbour stays within bounds.
        h = np.where(z + h > self.upper, -h, h)
        batch = [z]
        for j in range(p):
            shifted = z.copy()
            shifted[:, j] += h[:, j]
            batch.append(shifted)
        stacked = np.concatenate(batch, axis=0)
        res = self.scaled(stacked, sigmas)
        base = res[:b]
        jac = np.stack([(res[(j + 1) * b:(j + 2) * b] - base) / h[:, j:j + 1] for j in range(p)], axis=2)
        return base, jac


@dataclass
class Fit:
    """What an optimiser found, in optimiser coordinates."""

    z: np.ndarray
    nll: float
    sigmas: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    draws: np.ndarray | None = None          # model units, (draws, params)
    chain_nll: np.ndarray | None = None
    start_z: np.ndarray | None = None        # multi-start: starting points and where they ended
    start_end: np.ndarray | None = None
    start_nll: np.ndarray | None = None
    autocorr: np.ndarray | None = None


def initial_sigmas(problem: Problem) -> np.ndarray:
    """A scale per target before any fit: the given sigma, or the data's standard deviation."""
    out = []
    for t in problem.targets:
        if t.observation.sigma is not None:
            out.append(t.observation.sigma)
            continue
        values = np.log(t.fit_values) if t.observation.error in LOG_ERRORS else t.fit_values
        spread = float(np.std(values)) if values.size > 1 else 0.0
        out.append(spread if spread > 0 else max(abs(float(np.mean(values))), 1.0) * 0.1)
    return np.asarray(out)


def _needs_reweighting(problem: Problem) -> bool:
    estimated = [t for t in problem.targets if t.observation.sigma is None]
    return len(problem.targets) > 1 and bool(estimated)


def _local(obj: Objective, z0: np.ndarray, sigmas: np.ndarray, settings: dict):
    from scipy.optimize import least_squares

    step = float(settings.get("diff_step", 1e-6))
    cache: dict[bytes, np.ndarray] = {}

    # Every residual evaluation also runs the point's forward-difference neighbours in the
    # same ensemble pass (members cost little next to a pass), so the Jacobian least_squares
    # asks for next is already known.
    def fun(z):
        r, j = obj.residual_and_jacobian(z[None, :], sigmas, step)
        cache.clear()
        cache[z.tobytes()] = j[0]
        return r[0]

    def jac(z):
        found = cache.get(z.tobytes())
        if found is None:
            found = obj.residual_and_jacobian(z[None, :], sigmas, step)[1][0]
        return found

    z0 = np.clip(z0, obj.lower, obj.upper)
    # least_squares wants a strictly feasible start.
    span = obj.upper - obj.lower
    z0 = np.clip(z0, obj.lower + 1e-10 * span, obj.upper - 1e-10 * span)
    return least_squares(fun, z0, jac=jac, bounds=(obj.lower, obj.upper), method="trf", x_scale="jac",
                         max_nfev=int(settings.get("max_nfev", 100)), ftol=float(settings.get("ftol", 1e-8)),
                         xtol=float(settings.get("xtol", 1e-8)), gtol=float(settings.get("gtol", 1e-8)))


def refine(obj: Objective, z0: np.ndarray, settings: dict, sigmas: np.ndarray | None = None, passes: int | None = None):
    """least_squares from z0, re-estimating the error scales between passes (several series).

    With several series whose error scales are estimated, minimising the scaled squares
    with the scales re-estimated at each pass converges to the profile-likelihood optimum.
    """
    problem = obj.problem
    sigmas = initial_sigmas(problem) if sigmas is None else sigmas
    if passes is None:
        passes = 5 if _needs_reweighting(problem) else 1
    result = None
    z = np.asarray(z0, dtype=float)
    for _ in range(max(1, passes)):
        result = _local(obj, z, sigmas, settings)
        z = result.x
        new = problem.sigmas(obj.ssr(z[None, :])[0])
        converged = np.allclose(new, sigmas, rtol=1e-2)
        sigmas = new
        if converged:
            break
    return result, z, sigmas


def least_squares(obj: Objective, rng: np.random.Generator, settings: dict) -> Fit:
    """Multi-start least squares from a Latin hypercube over the bounds."""
    from scipy.stats import qmc

    n_starts = int(settings.get("n_starts", 4))
    unit = qmc.LatinHypercube(d=obj.dim, rng=rng).random(n_starts)
    starts = obj.lower + unit * (obj.upper - obj.lower)
    initial = [p.initial for p in obj.parameters]
    if any(v is not None for v in initial):
        given = np.array([p.to_internal(v) if v is not None else starts[0, j]
                          for j, (p, v) in enumerate(zip(obj.parameters, initial))], dtype=float)
        starts[0] = given
    ends, values, results, sigma_list = [], [], [], []
    first = initial_sigmas(obj.problem)
    for start in starts:
        # One pass per start with the data's own scales; the best start is then reweighted.
        result, z, sigmas = refine(obj, start, settings, first, passes=1)
        ends.append(z)
        values.append(float(obj.nll(z[None, :])[0]))
        results.append(result)
        sigma_list.append(sigmas)
    best = int(np.argmin(values))
    if _needs_reweighting(obj.problem):
        result, z, sigmas = refine(obj, ends[best], settings, sigma_list[best])
        value = float(obj.nll(z[None, :])[0])
        if value <= values[best]:
            ends[best], values[best], results[best], sigma_list[best] = z, value, result, sigmas
    best = int(np.argmin(values))
    result = results[best]
    converged = [r.status > 0 for r in results]
    diagnostics = {
        "optimizer": "scipy.optimize.least_squares (trf), multi-start",
        "n_starts": n_starts,
        "success": int(result.status > 0),
        "message": str(result.message),
        "nfev": int(sum(r.nfev for r in results)),
        "starts_converged": int(sum(converged)),
        "starts_at_best": int(np.sum(np.asarray(values) <= values[best] + 1e-6 * max(1.0, abs(values[best])))),
    }
    if not result.status > 0:
        warnings.warn(f"least_squares did not converge from its best start: {result.message}", CalibrationWarning,
                      stacklevel=3)
    return Fit(ends[best], values[best], sigma_list[best], diagnostics, start_z=starts, start_end=np.array(ends),
               start_nll=np.array(values))


def de_options(settings: dict, *, popsize: int = 15, maxiter: int = 100, tol: float = 0.01) -> dict:
    """scipy's differential_evolution options from a spec's [method] settings (defaults given)."""
    mutation = settings.get("mutation", (0.5, 1))
    return {
        "popsize": int(settings.get("popsize", popsize)),
        "maxiter": int(settings.get("maxiter", maxiter)),
        "tol": float(settings.get("tol", tol)),
        "atol": float(settings.get("atol", 0.0)),
        "mutation": tuple(mutation) if isinstance(mutation, list) else mutation,
        "recombination": float(settings.get("recombination", 0.7)),
        "strategy": settings.get("strategy", "best1bin"),
        "init": settings.get("init", "latinhypercube"),
    }


def initial_point(parameters) -> np.ndarray | None:
    """The spec's starting values in optimiser coordinates, when every parameter has one."""
    if parameters and all(p.initial is not None for p in parameters):
        return np.array([p.to_internal(p.initial) for p in parameters], dtype=float)
    return None


def differential_evolution(obj: Objective, rng: np.random.Generator, settings: dict) -> Fit:
    """scipy's differential evolution, each generation one vectorised ensemble run; then polish."""
    from scipy.optimize import differential_evolution as scipy_de

    def func(population):  # (params, members) -> (members,)
        return obj.nll(np.asarray(population).T)

    generations = []

    def callback(intermediate_result):
        generations.append(float(intermediate_result.fun))

    options = de_options(settings)
    x0 = initial_point(obj.parameters)
    result = scipy_de(func, list(zip(obj.lower, obj.upper)), vectorized=True, updating="deferred", polish=False,
                      rng=rng, callback=callback, x0=x0, **options)
    z = np.asarray(result.x, dtype=float)
    nll = float(result.fun)
    sigmas = obj.problem.sigmas(obj.ssr(z[None, :])[0])
    diagnostics = {
        "optimizer": "scipy.optimize.differential_evolution (vectorized)",
        "success": int(bool(result.success)),
        "message": str(result.message),
        "generations": int(result.nit),
        "nfev": int(result.nfev),
        "population_size": int(options["popsize"] * obj.dim),
        "de_nll": nll,
    }
    if not result.success:
        warnings.warn(f"differential_evolution did not converge: {result.message} (raise method.maxiter)",
                      CalibrationWarning, stacklevel=3)
    if settings.get("polish", True):
        polished, zp, sp = refine(obj, z, settings, sigmas)
        value = float(obj.nll(zp[None, :])[0])
        diagnostics["polish_nfev"] = int(polished.nfev)
        if value <= nll:
            z, nll, sigmas = zp, value, sp
    return Fit(z, nll, sigmas, diagnostics)


def log_prior(obj: Objective, z: np.ndarray) -> np.ndarray:
    """Log prior density in optimiser coordinates (log-scale parameters include the Jacobian)."""
    from scipy import stats

    z = np.atleast_2d(z)
    total = np.zeros(z.shape[0])
    inside = np.all((z >= obj.lower) & (z <= obj.upper), axis=1)
    for j, p in enumerate(obj.parameters):
        x = p.to_model(z[:, j])
        prior = dict(p.prior)
        dist = prior.pop("dist")
        if dist == "uniform":
            # Uniform in the parameter itself; a log-scale parameter keeps that prior.
            density = np.full(z.shape[0], -math.log(p.upper - p.lower))
        else:
            with np.errstate(all="ignore"):
                density = getattr(stats, dist)(**prior).logpdf(x)
        if p.log:
            density = density + z[:, j]  # dx/dz = x
        total += density
    return np.where(inside, total, -np.inf)


def mcmc(obj: Objective, rng: np.random.Generator, settings: dict, start: Fit | None) -> Fit:
    """emcee's affine-invariant ensemble sampler with vectorised walkers."""
    import emcee

    dim = obj.dim
    n_walkers = int(settings.get("n_walkers", max(16, 4 * dim)))
    n_walkers += n_walkers % 2
    n_steps = int(settings.get("n_steps", 1000))
    burn = int(settings.get("burn", n_steps // 4))
    thin = int(settings.get("thin", 1))
    if burn >= n_steps:
        from .errors import SpecError

        raise SpecError(f"method.burn ({burn}) must be less than method.n_steps ({n_steps})")

    def log_prob(z):
        z = np.atleast_2d(z)
        prior = log_prior(obj, z)
        out = np.full(z.shape[0], -np.inf)
        inside = np.isfinite(prior)
        if inside.any():
            nll = obj.nll(z[inside])
            out[inside] = np.where(nll >= PENALTY, -np.inf, prior[inside] - nll)
        return out

    width = obj.upper - obj.lower
    scale = float(settings.get("init_scale", 1e-3))
    if start is not None:
        centre = start.z
        spread = scale * width
        initial = centre + spread * rng.standard_normal((n_walkers, dim))
        initial = np.clip(initial, obj.lower + 1e-9 * width, obj.upper - 1e-9 * width)
    else:
        initial = obj.lower + width * rng.random((n_walkers, dim))
    sampler = emcee.EnsembleSampler(n_walkers, dim, log_prob, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
    sampler.run_mcmc(initial, n_steps, progress=False)
    chain = sampler.get_chain(discard=burn, thin=thin, flat=True)
    lp = sampler.get_log_prob(discard=burn, thin=thin, flat=True)
    tau = np.asarray(sampler.get_autocorr_time(discard=burn, tol=0), dtype=float)
    acceptance = float(np.mean(sampler.acceptance_fraction))
    kept = n_steps - burn
    diagnostics = {
        "optimizer": "emcee.EnsembleSampler (vectorize=True)",
        "n_walkers": n_walkers, "n_steps": n_steps, "burn": burn, "thin": thin,
        "acceptance_fraction": acceptance,
        "autocorr_time_max": float(np.nanmax(tau)),
        "chain_long_enough": int(bool(kept >= 50 * np.nanmax(tau))),
        "nfev": int(n_walkers * n_steps),
        "success": int(bool(kept >= 50 * np.nanmax(tau)) and 0.1 < acceptance < 0.9),
        "message": "",
    }
    if not kept >= 50 * np.nanmax(tau):
        diagnostics["message"] = (f"chain too short: {kept} steps after burn-in, fewer than 50 autocorrelation "
                                  f"times ({50 * np.nanmax(tau):.0f})")
        warnings.warn(f"mcmc {diagnostics['message']}; raise method.n_steps", CalibrationWarning, stacklevel=3)
    if not 0.1 < acceptance < 0.9:
        warnings.warn(f"mcmc acceptance fraction {acceptance:.2f} is outside 0.1-0.9; the walkers mix poorly",
                      CalibrationWarning, stacklevel=3)
    best = int(np.argmax(lp))
    z_best = chain[best]
    nll = float(obj.nll(z_best[None, :])[0])
    if start is not None and start.nll < nll:
        z_best, nll = start.z, start.nll
    sigmas = obj.problem.sigmas(obj.ssr(z_best[None, :])[0])
    draws = obj.to_model(chain)
    return Fit(z_best, nll, sigmas, diagnostics, draws=draws, chain_nll=-lp, autocorr=tau)
