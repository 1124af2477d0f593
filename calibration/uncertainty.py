"""Parameter uncertainty: profile likelihood (payoff drop), residual bootstrap, posterior.

Profile likelihood is Vensim's payoff-drop convention made exact: the interval holds the
values of one parameter at which the negative log-likelihood, minimised over the other
parameters, rises by less than chi2(1, level)/2 (1.92 for 95%) above the optimum. The
re-optimisations of every grid point of every parameter run together: a batched
Levenberg-Marquardt whose every iteration is one ensemble run of all grid points and
their finite-difference neighbours. A profile that never rises that far within the
bounds means the data do not identify the parameter: a :class:`CalibrationWarning` says
so and the interval is reported open at the bound.

The residual bootstrap refits B synthetic data sets (fitted values plus resampled
residuals, in blocks to keep autocorrelation) with the same batched solver.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import CalibrationWarning
from .methods import Fit, Objective


@dataclass
class Intervals:
    lower: np.ndarray
    upper: np.ndarray
    method: str
    level: float
    identified: np.ndarray
    draws: np.ndarray | None = None                # model units (draws, params)
    correlation: np.ndarray | None = None
    profile_values: np.ndarray | None = None       # (params, points) model units
    profile_nll: np.ndarray | None = None
    notes: list = field(default_factory=list)
    better: tuple | None = None                    # (z, nll) when a profile beat the optimum


def batched_lm(obj: Objective, z0: np.ndarray, free: np.ndarray, sigmas: np.ndarray, residual_fn=None,
               max_iter: int = 20, tol: float = 1e-7):
    """Minimise sum of squared scaled residuals for many rows at once.

    ``free`` (rows, params) marks the coordinates each row may move; the others stay at
    their value in ``z0``. ``residual_fn(residuals, row_indices)`` may shift residuals per
    row (the bootstrap's synthetic data). Returns the final rows and costs.
    """
    z = obj.clip(np.array(z0, dtype=float))
    b, p = z.shape

    def evaluate(zz, rows):
        r, j = obj.residual_and_jacobian(zz, sigmas)
        if residual_fn is not None:
            r = residual_fn(r, rows)
        return r, j * free[rows][:, None, :]

    r, jac = evaluate(z, np.arange(b))
    cost = np.sum(r * r, axis=1)
    damping = np.full(b, 1e-3)
    rejected = np.zeros(b, int)
    active = np.ones(b, bool)
    for _ in range(max_iter):
        step = np.zeros_like(z)
        for i in np.flatnonzero(active):
            jj = jac[i]
            a = jj.T @ jj
            g = jj.T @ r[i]
            diag = np.diag(a).copy()
            diag[diag <= 0] = 1.0
            fixed = ~free[i]
            damped = a + damping[i] * np.diag(diag)
            damped[fixed, :] = 0
            damped[:, fixed] = 0
            damped[fixed, fixed] = 1.0
            try:
                step[i] = -np.linalg.solve(damped, g)
            except np.linalg.LinAlgError:
                step[i] = -np.linalg.lstsq(damped, g, rcond=None)[0]
            step[i][fixed] = 0
            # Gauss-Newton's predicted reduction of the cost: tiny means converged.
            predicted = -2 * g @ step[i] - step[i] @ a @ step[i]
            if predicted <= tol * max(cost[i], 1e-300):
                active[i] = False
        if not active.any():
            break
        trial = obj.clip(z + step)
        rows = np.flatnonzero(active)
        r_try, j_try = evaluate(trial[rows], rows)
        cost_try = np.sum(r_try * r_try, axis=1)
        for k, i in enumerate(rows):
            if cost_try[k] < cost[i]:
                improvement = (cost[i] - cost_try[k]) / max(cost[i], 1e-300)
                z[i], r[i], jac[i], cost[i] = trial[i], r_try[k], j_try[k], cost_try[k]
                damping[i] = max(damping[i] / 3, 1e-9)
                rejected[i] = 0
                if improvement < tol:
                    active[i] = False
            else:
                damping[i] *= 10
                rejected[i] += 1
                if rejected[i] >= 4:
                    active[i] = False
    return z, cost


def _covariance(obj: Objective, fit: Fit) -> np.ndarray:
    """Gauss-Newton covariance (J'J)^-1 of the optimiser coordinates at the optimum."""
    _, jac = obj.residual_and_jacobian(fit.z[None, :], fit.sigmas)
    a = jac[0].T @ jac[0]
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a)


def correlation_from_covariance(cov: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(all="ignore"):
        corr = cov / np.outer(sd, sd)
    corr[~np.isfinite(corr)] = np.nan
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1, 1)


def profile(obj: Objective, fit: Fit, level: float, n_points: int = 13, span: float = 4.0) -> Intervals:
    """Profile-likelihood intervals for every parameter (see the module docstring)."""
    from scipy.stats import chi2

    threshold = chi2.ppf(level, 1) / 2
    p = obj.dim
    cov = _covariance(obj, fit)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    grids = []
    for j in range(p):
        lo, hi = obj.lower[j], obj.upper[j]
        width = hi - lo
        s = se[j] if np.isfinite(se[j]) and se[j] > 0 else width
        s = min(s, width)
        inner = fit.z[j] + s * np.linspace(-span, span, n_points)
        # A few points out to each bound catch profiles flatter than the quadratic guess.
        outer = np.concatenate([lo + (fit.z[j] - lo) * np.array([0.0, 0.25, 0.5]),
                                hi - (hi - fit.z[j]) * np.array([0.0, 0.25, 0.5])])
        grid = np.unique(np.clip(np.concatenate([inner, outer, [fit.z[j]]]), lo, hi))
        grids.append(grid)
    rows, free, owner = [], [], []
    for j, grid in enumerate(grids):
        for z in profile_starts(obj, fit.z, cov, j, grid):
            rows.append(z)
            mask = np.ones(p, bool)
            mask[j] = False
            free.append(mask)
            owner.append(j)
    rows, free, owner = np.array(rows), np.array(free), np.array(owner)
    if p > 1:
        solved, _ = batched_lm(obj, rows, free, fit.sigmas)
    else:
        solved = rows
    nll = obj.nll(solved)
    lower = np.empty(p)
    upper = np.empty(p)
    identified = np.ones(p, bool)
    notes = []
    size = max(len(g) for g in grids)
    prof_values = np.full((p, size), np.nan)
    prof_nll = np.full((p, size), np.nan)
    best_found = None
    for j in range(p):
        grid = grids[j]
        values = nll[owner == j]
        prof_values[j, : grid.size] = obj.parameters[j].to_model(grid)
        prof_nll[j, : grid.size] = values
        # Differences far below the 1.92 threshold are rounding in the local solver.
        if values.min() < fit.nll - 1e-3:
            k = int(np.argmin(values))
            if best_found is None or values[k] < best_found[1]:
                best_found = (solved[owner == j][k], float(values[k]))
        drop = values - min(fit.nll, values.min())
        centre = fit.z[j]
        lo_z, lo_open = crossing(grid, drop, centre, threshold, side=-1)
        hi_z, hi_open = crossing(grid, drop, centre, threshold, side=+1)
        name = obj.parameters[j].name
        if lo_open or hi_open:
            identified[j] = False
            width = obj.upper[j] - obj.lower[j]
            at_bound = [side for side, bound in (("lower", obj.lower[j]), ("upper", obj.upper[j]))
                        if abs(centre - bound) <= 1e-6 * width]
            sides = " and ".join(s for s, o in (("below", lo_open), ("above", hi_open)) if o)
            where = f" (the estimate sits at its {at_bound[0]} bound)" if at_bound else ""
            note = (f"parameter '{name}': the profile likelihood stays within {threshold:.2f} of its optimum "
                    f"{sides} the estimate up to the bound{where}, so the data do not pin it down there "
                    "(interval open at the bound)")
            notes.append(note)
            warnings.warn(note, CalibrationWarning, stacklevel=3)
        lower[j], upper[j] = obj.parameters[j].to_model(lo_z), obj.parameters[j].to_model(hi_z)
    return Intervals(lower, upper, "profile", level, identified, correlation=correlation_from_covariance(cov),
                     profile_values=prof_values, profile_nll=prof_nll, notes=notes, better=best_found)


def profile_starts(obj, z0: np.ndarray, cov: np.ndarray, j: int, grid: np.ndarray) -> list[np.ndarray]:
    """Starting points along parameter j's profile grid: the others where the quadratic
    approximation puts the profile path, their conditional mean z_k + cov_kj / cov_jj (value - z_j)."""
    slope = cov[:, j] / cov[j, j] if np.isfinite(cov[j, j]) and cov[j, j] > 0 else np.zeros(z0.size)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    out = []
    for value in grid:
        z = obj.clip(z0 + slope * (value - z0[j]))
        z[j] = value
        out.append(z)
    return out


def crossing(grid, drop, centre, threshold, side):
    """Where the profile's drop reaches the threshold on one side of the optimum (signed-root interpolation)."""
    mask = grid <= centre if side < 0 else grid >= centre
    xs, ds = grid[mask], drop[mask]
    order = np.argsort(xs)[::-1] if side < 0 else np.argsort(xs)
    xs, ds = xs[order], ds[order]
    root = np.sqrt(np.clip(2 * ds, 0, None))
    target = math.sqrt(2 * threshold)
    for k in range(1, xs.size):
        if root[k] >= target:
            # Signed roots are nearly linear in the parameter for a near-quadratic profile.
            a, b = root[k - 1], root[k]
            t = (target - a) / (b - a) if b > a else 1.0
            return xs[k - 1] + t * (xs[k] - xs[k - 1]), False
    return xs[-1] if xs.size else centre, True


def bootstrap(obj: Objective, fit: Fit, level: float, rng: np.random.Generator, n_bootstrap: int = 100,
              block_length: int = 1) -> Intervals:
    """Residual bootstrap: refit B synthetic data sets (fitted + resampled residuals)."""
    problem = obj.problem
    simulated = obj.simulate(fit.z[None, :])
    scaled_best = obj.scaled(fit.z[None, :], fit.sigmas)[0]
    # Resample residuals per series (in blocks), then express each replicate as an offset of
    # the scaled residual vector: a replicate's residual = model - (fitted + e*) = r(z) - (r_best - e*_scaled).
    offsets = np.zeros((n_bootstrap, scaled_best.size))  # the last column, the plausibility penalty, stays
    start = 0
    for target, sim, sigma in zip(problem.targets, simulated, fit.sigmas):
        n = target.fit_times.size
        piece = scaled_best[start:start + n]
        centred = piece - piece.mean()
        for b in range(n_bootstrap):
            offsets[b, start:start + n] = _resample(centred, rng, block_length) - piece
        start += n
    z0 = np.repeat(fit.z[None, :], n_bootstrap, axis=0)
    free = np.ones_like(z0, dtype=bool)
    residual_fn = _OffsetResiduals(offsets)
    solved, _ = batched_lm(obj, z0, free, fit.sigmas, residual_fn=residual_fn)
    draws = obj.to_model(solved)
    alpha = (1 - level) / 2
    lower = np.quantile(draws, alpha, axis=0)
    upper = np.quantile(draws, 1 - alpha, axis=0)
    corr = np.corrcoef(solved.T) if obj.dim > 1 else np.ones((1, 1))
    return Intervals(lower, upper, "bootstrap", level, np.ones(obj.dim, bool), draws=draws,
                     correlation=np.atleast_2d(corr))


class _OffsetResiduals:
    """Residuals against each bootstrap replicate's synthetic data (a fixed offset per row)."""

    def __init__(self, offsets):
        self.offsets = offsets

    def __call__(self, residuals, rows):
        return residuals + self.offsets[rows]


def _resample(values: np.ndarray, rng: np.random.Generator, block: int) -> np.ndarray:
    n = values.size
    if block <= 1:
        return values[rng.integers(0, n, n)]
    starts = rng.integers(0, max(1, n - block + 1), math.ceil(n / block))
    out = np.concatenate([values[s:s + block] for s in starts])
    return out[:n]


def posterior(fit: Fit, level: float, obj: Objective) -> Intervals:
    """Equal-tailed posterior intervals and correlations from MCMC draws."""
    draws = fit.draws
    alpha = (1 - level) / 2
    lower = np.quantile(draws, alpha, axis=0)
    upper = np.quantile(draws, 1 - alpha, axis=0)
    internal = obj.to_internal(draws)
    corr = np.corrcoef(internal.T) if obj.dim > 1 else np.ones((1, 1))
    return Intervals(lower, upper, "posterior", level, np.ones(obj.dim, bool), draws=draws,
                     correlation=np.atleast_2d(corr))


def laplace_draws(obj: Objective, fit: Fit, rng: np.random.Generator, n: int = 200) -> np.ndarray:
    """Draws from the Gauss-Newton normal approximation (for bands when no draws exist)."""
    cov = _covariance(obj, fit)
    if not np.all(np.isfinite(cov)):
        return obj.to_model(np.repeat(fit.z[None, :], n, axis=0))
    try:
        chol = np.linalg.cholesky(cov + 1e-15 * np.eye(obj.dim))
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(cov)
        chol = vecs @ np.diag(np.sqrt(np.clip(vals, 0, None)))
    z = fit.z + rng.standard_normal((n, obj.dim)) @ chol.T
    return obj.to_model(obj.clip(z))
