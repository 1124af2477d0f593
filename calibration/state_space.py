"""State-space calibration: Kalman and particle filters over the compiled kernel.

A model with an endogenous cycle, run open loop from 1950, drifts out of phase with history:
a small error in timing becomes a large error in level, and least squares then fits the mean
and not the dynamics. A state-space fit lets the stocks receive process noise; each
observation corrects the model's prediction, and the likelihood is that of the one-step-ahead
prediction errors (Schweppe 1965; Peterson's full-information maximum likelihood through
optimal filtering, FIMLOF, as in Vensim DSS; pomp's particle filters in R).

The spec's ``[state_space]`` table::

    [state_space]
    method = "kalman"              # extended Kalman filter (exact on linear models) or "particle"
    particles = 2000               # particle only
    [state_space.process_noise]    # sd per square root of the model's time unit, added to named stocks
    "x" = 0.3                      # a number, { bounds = [0, 1] } to estimate it, and either with
                                   # scale = "log": relative noise on a positive stock
    [state_space.initial_sd]       # sd of the initial value of named stocks (default 0)
    "x" = 0.5

Observation noise is each observation's ``sigma``: a number, or ``{ bounds = [low, high] }``
(estimated with the other parameters).

Between observations the filter takes the model's own Euler steps on the compiled stepper
(:func:`pysd_runner.stepper_for`); process noise enters at every step, scaled by the square
root of the time step.

- **Kalman** (extended): the covariance is carried through the Jacobian of the states at
  the next observation with respect to the states at the last one, by forward differences
  over kernel members (one member per state, all in one pass). The process noise over an
  interval of length h adds dt Q_end for its last step, which no step carries on, and
  (h - dt) (Q_end + F Q_start F') / 2 for the others (the trapezoid rule); exact for one step
  per interval, as in a discrete-time model. The observation's Jacobian comes from the same differences at the
  observation time. Updates use Joseph's form.
- **Particle**: a bootstrap filter with systematic resampling at every observation. The
  noise is read from a table by a hash of (seed, particle slot, step, state) and the
  resampling uniforms come from the seed, so the same seed gives common random numbers at
  every parameter value, and the likelihood surface is smooth enough for an optimiser.

Bounds: a non-negative stock (Vensim's non-negative INTEG) is floored at 0 after the noise,
as after its own update, in both filters (and after a Kalman update); ``scale = "log"`` noise
keeps a positive stock positive. Other stocks get additive noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .errors import SpecError
from .spec import LOG_ERRORS, StateSpaceSettings

__all__ = ["StateSpaceFilter", "FilterRun", "describe"]

#: log(2 pi)
_LOG2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------- the filters

@dataclass
class FilterRun:
    """What one filter pass at one parameter set found (times: the observation schedule)."""

    loglike: float
    times: np.ndarray                   # calendar times of the schedule
    predicted: np.ndarray               # (series, times) one-step-ahead prediction of each series' data
    predicted_sd: np.ndarray            # its sd (model spread plus observation noise)
    filtered: np.ndarray                # (stocks, times) filtered mean
    filtered_sd: np.ndarray
    filtered_lower: np.ndarray
    filtered_upper: np.ndarray
    smoothed: np.ndarray
    smoothed_lower: np.ndarray
    smoothed_upper: np.ndarray
    in_fit: np.ndarray                  # (times,) true where the filter updated (fit window)


class StateSpaceFilter:
    """Kalman and particle filters of one spec's model against one problem's data."""

    def __init__(self, problem, settings: StateSpaceSettings, seed: int):
        from pysd_runner import normal_table, run_inputs, stepper_for

        self.problem = problem
        self.spec = problem.spec
        self.settings = settings
        self.seed = int(seed)
        #: Step members of one parameter set in SIMD lanes (the stepper's block function);
        #: False steps them one by one (the benchmark's baseline).
        self.vector = True
        model = self.spec.model
        try:
            self.stepper = stepper_for(model)
        except Exception as exc:  # KernelUnsupported, numba missing
            raise SpecError(f"{self.spec.where}: state_space: model '{model.source.name}' cannot run on the compiled "
                            f"stepper a filter needs: {exc}") from None
        fixed, time = run_inputs(model, scenario=self.spec.scenario, params=self.spec.fixed or None,
                                 time_step=problem.settings["time_step"])
        self.fixed = {k: v for k, v in fixed.items() if k in set(self.stepper.constants)}
        self.parameters = problem.parameters
        self.model_slots = [(j, p.py_name) for j, p in enumerate(self.parameters) if p.is_model]
        self.dt = float(problem.settings["time_step"])
        self.t0 = problem.t0
        last = max(float(t.times.max()) for t in problem.targets)
        final = self.t0 + (last - self.spec.origin) + self.dt
        self.clock, rounded = self.stepper.clock({"initial_time": self.t0, "final_time": final,
                                                  "time_step": self.dt, "saveper": self.dt})
        # The schedule: every time any series is observed (fit window, then hold-out).
        fit_times = np.unique(np.concatenate([t.fit_times for t in problem.targets]))
        hold_times = np.unique(np.concatenate([t.holdout_times for t in problem.targets]))
        hold_times = hold_times[hold_times > fit_times.max() + 1e-9]
        self.times = np.concatenate([fit_times, hold_times])
        self.in_fit = np.concatenate([np.ones(fit_times.size, bool), np.zeros(hold_times.size, bool)])
        model_times = self.t0 + (self.times - self.spec.origin)
        steps = np.searchsorted(rounded, model_times - 1e-9 * max(1.0, abs(self.t0)))
        steps = np.minimum(steps, rounded.size - 1)
        off = np.abs(rounded[steps] - model_times) > 1e-6 * max(1.0, self.dt)
        if off.any() or (model_times < self.t0 - 1e-9).any():
            bad = self.times[np.argmax(off)]
            raise SpecError(f"{self.spec.where}: time.time_step: the observation at {bad:g} does not fall on a step of "
                            f"{self.dt:g} from the model's start; give a time step that divides the spacing")
        self.steps = steps.astype(np.int64)
        # Data per schedule time: (series, times), NaN where a series has no point.
        n = len(problem.targets)
        self.data = np.full((n, self.times.size), np.nan)
        for i, target in enumerate(problem.targets):
            where = np.searchsorted(self.times, target.fit_times)
            self.data[i, where] = target.fit_values
            keep = target.holdout_times > fit_times.max() + 1e-9
            where = np.searchsorted(self.times, target.holdout_times[keep])
            self.data[i, where] = target.holdout_values[keep]
        self.log_obs = np.array([t.observation.error in LOG_ERRORS for t in problem.targets])
        with np.errstate(all="ignore"):
            self.obs_data = np.where(self.log_obs[:, None], np.log(self.data), self.data)
        self.outputs = np.array([self.stepper.recordable.index(t.observation.variable) for t in problem.targets],
                                dtype=np.int64)
        states = self.stepper.states
        self.dynamic = np.array([i for i, st in enumerate(states) if st.dynamic], dtype=np.int64)
        self.stocks = np.array([i for i, st in enumerate(states) if st.is_stock], dtype=np.int64)
        self.floor = np.array([st.kind == "nonneg" for st in states])
        index = {st.element: i for i, st in enumerate(states) if st.is_stock}
        self.noise_states = np.array([index[t.py_name] for t in settings.noise], dtype=np.int64)
        self.noise_log = np.array([t.log for t in settings.noise])
        self.noise_param = [None if t.parameter is None else [p.name for p in self.parameters].index(t.parameter)
                            for t in settings.noise]
        self.initial_states = np.array([index[k] for k in settings.initial_sd], dtype=np.int64)
        self.initial_values = np.array(list(settings.initial_sd.values()), dtype=float)
        self.sigma_param = [next((j for j, p in enumerate(self.parameters)
                                  if p.kind == "sigma" and p.observation == t.observation.name), None)
                            for t in problem.targets]
        self.table = normal_table(self.seed)
        self.key = int(np.random.SeedSequence(self.seed).generate_state(1, np.uint64)[0])

    # ------------------------------------------------------------------ parameter pieces
    @property
    def state_names(self) -> list[str]:
        return [self.stepper.states[i].vensim for i in self.stocks]

    def _inputs(self, values: np.ndarray, repeat: int):
        """Stepper inputs for each parameter row, each repeated ``repeat`` times (row-major)."""
        samples = {name: np.repeat(values[:, j], repeat) for j, name in self.model_slots}
        return self.stepper.inputs(samples, values.shape[0] * repeat, self.fixed)

    def _noise_sd(self, values: np.ndarray) -> np.ndarray:
        """(sets, noisy stocks) process-noise sd."""
        out = np.empty((values.shape[0], len(self.settings.noise)))
        for k, term in enumerate(self.settings.noise):
            out[:, k] = values[:, self.noise_param[k]] if term.parameter is not None else term.sd
        return out

    def _measure(self, values: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Model outputs (sets x ..., series) -> the observation's scale (measurement equation, logs)."""
        out = np.empty_like(raw)
        for i, target in enumerate(self.problem.targets):
            scale, offset = self.problem.measurement(values, target.observation)
            shape = (values.shape[0],) + (1,) * (raw.ndim - 2)
            y = raw[..., i] * scale.reshape(shape) + offset.reshape(shape)
            if self.log_obs[i]:
                with np.errstate(all="ignore"):
                    y = np.log(y)
            out[..., i] = y
        return out

    def _sigma(self, values: np.ndarray) -> np.ndarray:
        """(sets, series) observation noise sd (on the log scale for lognormal series)."""
        out = np.empty((values.shape[0], len(self.problem.targets)))
        for i, target in enumerate(self.problem.targets):
            j = self.sigma_param[i]
            out[:, i] = values[:, j] if j is not None else target.observation.sigma
        return out

    def _start(self, values: np.ndarray, repeat: int):
        inputs = self._inputs(values, repeat)
        S = np.zeros((values.shape[0] * repeat, len(self.stepper.states)))
        y, ok = self.stepper.advance(inputs, self.clock, self.dt, 0, 0, S, init=True, outputs=self.outputs)
        return inputs, S, y, ok

    # ------------------------------------------------------------------ likelihood
    def loglike(self, values: np.ndarray) -> np.ndarray:
        """The filter's log-likelihood of the fit-window data at each row of model values."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        # Members far from the data overflow; their likelihood is then -inf, without warnings.
        with np.errstate(all="ignore"):
            if self.settings.method == "kalman":
                return self._kalman(values, record=False)
            return self._particle(values, record=False)

    def run(self, values: np.ndarray, particles: int | None = None, level: float = 0.95) -> FilterRun:
        """One recorded pass at one parameter row: predictions, filtered and smoothed states, forecasts."""
        values = np.atleast_2d(np.asarray(values, dtype=float))[:1]
        with np.errstate(all="ignore"):
            if self.settings.method == "kalman":
                return self._kalman(values, record=True, level=level)
            return self._particle(values, record=True, particles=particles, level=level)

    # ------------------------------------------------------------------ Kalman
    def _kalman(self, values: np.ndarray, record: bool, level: float = 0.95):
        from scipy.stats import norm

        B = values.shape[0]
        dyn = self.dynamic
        nd = dyn.size
        m = 1 + nd
        inputs, S0, _, ok0 = self._start(values, 1)
        # Every set runs as 1 + nd members: the base and one forward difference per dynamic state.
        big = self._inputs(values, m)
        x = S0.copy()
        pos = {int(s): k for k, s in enumerate(dyn)}
        P = np.zeros((B, nd, nd))
        for s, sd in zip(self.initial_states, self.initial_values):
            P[:, pos[int(s)], pos[int(s)]] = sd**2
        noisy = np.array([pos[int(s)] for s in self.noise_states], dtype=np.int64)
        q_sd = self._noise_sd(values)
        sigma = self._sigma(values)
        loglike = np.where(ok0, 0.0, -np.inf)
        T = self.times.size
        nseries = len(self.problem.targets)
        if record:
            pred = np.full((nseries, T), np.nan)
            pred_sd = np.full((nseries, T), np.nan)
            xf = np.full((T, nd), np.nan)
            Pf = np.full((T, nd, nd), np.nan)
            xp = np.full((T, nd), np.nan)
            Pp = np.full((T, nd, nd), np.nan)
            Fs = np.full((T, nd, nd), np.nan)

        def q_matrix(states):
            q = np.zeros((B, nd, nd))
            level_ = states[:, self.noise_states]
            scale = np.where(self.noise_log[None, :], level_, 1.0)
            q[:, noisy, noisy] = (q_sd * scale) ** 2
            return q

        def perturbed(states):
            Sb = np.repeat(states, m, axis=0).reshape(B, m, -1)
            h = 1e-6 * np.maximum(np.abs(states[:, dyn]), 1.0)
            for k in range(nd):
                Sb[:, k + 1, dyn[k]] += h[:, k]
            return Sb.reshape(B * m, -1), h

        k_prev = 0
        eye = np.eye(nd)
        for j in range(T):
            kj = int(self.steps[j])
            if kj > k_prev:
                Sb, h = perturbed(x)
                Q0 = q_matrix(x)
                self.stepper.advance(big, self.clock, self.dt, k_prev, kj, Sb, outputs=np.empty(0, np.int64), vector=self.vector)
                Sb = Sb.reshape(B, m, -1)
                end = Sb[:, 0, :]
                F = (Sb[:, 1:, :][:, :, dyn] - end[:, None, dyn]).transpose(0, 2, 1) / h[:, None, :]
                span = float(self.clock[kj] - self.clock[k_prev])
                Q1 = q_matrix(end)
                # Noise of the last step is not carried through any step; that of the others through
                # between 0 and all of them (the trapezoid rule over the interval).
                P = (F @ P @ F.transpose(0, 2, 1) + self.dt * Q1
                     + 0.5 * (span - self.dt) * (F @ Q0 @ F.transpose(0, 2, 1) + Q1))
                x = end.copy()
                if record:
                    Fs[j] = F[0]
                k_prev = kj
            # Observation: the measured outputs and their Jacobian at the predicted state.
            Sb, h = perturbed(x)
            y, ok = self.stepper.advance(big, self.clock, self.dt, kj, kj, Sb, outputs=self.outputs, vector=self.vector)
            ymeas = self._measure(values, y.reshape(B, m, -1))
            base = ymeas[:, 0, :]
            H = (ymeas[:, 1:, :] - base[:, None, :]).transpose(0, 2, 1) / h[:, None, :]
            good = np.isfinite(base).all(axis=1) & np.isfinite(H).all(axis=(1, 2)) & np.isfinite(P).all(axis=(1, 2))
            loglike = np.where(good, loglike, -np.inf)
            data = self.obs_data[:, j]
            have = np.isfinite(data)
            if record:
                xp[j], Pp[j] = x[0, dyn], P[0]
                Hr = H[0]
                var = np.einsum("ik,kl,il->i", Hr, P[0], Hr) + sigma[0] ** 2
                pred[:, j], pred_sd[:, j] = base[0], np.sqrt(np.maximum(var, 0))
            if self.in_fit[j] and have.any():
                Ha = H[:, have, :]
                v = data[have][None, :] - base[:, have]
                R = np.zeros((B, have.sum(), have.sum()))
                R[:, np.arange(have.sum()), np.arange(have.sum())] = sigma[:, have] ** 2
                Sinn = Ha @ P @ Ha.transpose(0, 2, 1) + R
                with np.errstate(all="ignore"):
                    Sinn = np.where(good[:, None, None], Sinn, np.eye(have.sum()))
                    sign, logdet = np.linalg.slogdet(Sinn)
                    # A singular innovation covariance (no noise reaches the observed series) has no
                    # Gaussian density: that set's likelihood is -inf.
                    good &= (sign > 0) & np.isfinite(logdet)
                    Sinn = np.where(good[:, None, None], Sinn, np.eye(have.sum()))
                    Sinv = np.linalg.inv(Sinn)
                    quad = np.einsum("bi,bij,bj->b", np.where(good[:, None], v, 0.0), Sinv,
                                     np.where(good[:, None], v, 0.0))
                    loglike = loglike - 0.5 * (have.sum() * _LOG2PI + logdet + quad)
                    loglike = np.where(sign > 0, loglike, -np.inf)
                    K = P @ Ha.transpose(0, 2, 1) @ Sinv
                    x[:, dyn] = x[:, dyn] + np.einsum("bij,bj->bi", K, np.where(good[:, None], v, 0.0))
                    A = eye[None] - K @ Ha
                    P = A @ P @ A.transpose(0, 2, 1) + K @ R @ K.transpose(0, 2, 1)
                    P = 0.5 * (P + P.transpose(0, 2, 1))
                x = np.where(self.floor[None, :], np.maximum(x, 0.0), x)
            if record:
                xf[j], Pf[j] = x[0, dyn], P[0]
        if not record:
            return np.where(np.isfinite(loglike), loglike, -np.inf)
        # Rauch-Tung-Striebel smoother over the fit window; forecasts keep the filter's values.
        xs, Ps = xf.copy(), Pf.copy()
        last = int(np.flatnonzero(self.in_fit)[-1])
        for j in range(last - 1, -1, -1):
            F = Fs[j + 1]
            if not np.isfinite(F).all():
                F = eye
            with np.errstate(all="ignore"):
                C = Pf[j] @ F.T @ np.linalg.pinv(Pp[j + 1])
            xs[j] = xf[j] + C @ (xs[j + 1] - xp[j + 1])
            Ps[j] = Pf[j] + C @ (Ps[j + 1] - Pp[j + 1]) @ C.T
        z = norm.ppf(0.5 + level / 2)
        cols = [int(np.flatnonzero(dyn == s)[0]) for s in self.stocks]
        fm, fsd = xf[:, cols].T, np.sqrt(np.maximum(np.einsum("tii->ti", Pf)[:, cols].T, 0))
        sm, ssd = xs[:, cols].T, np.sqrt(np.maximum(np.einsum("tii->ti", Ps)[:, cols].T, 0))
        return FilterRun(float(loglike[0]) if np.isfinite(loglike[0]) else -math.inf, self.times, pred, pred_sd,
                         fm, fsd, fm - z * fsd, fm + z * fsd, sm, sm - z * ssd, sm + z * ssd, self.in_fit)

    # ------------------------------------------------------------------ particle
    def _particle(self, values: np.ndarray, record: bool, particles: int | None = None, level: float = 0.95,
                  perturb=None):
        from pysd_runner import Noise
        from scipy.special import logsumexp

        B = values.shape[0]
        N = int(particles or self.settings.particles)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7]))
        inputs, S, _, ok = self._start(values, N)
        # Initial spread: the same standard normals for every parameter set.
        if self.initial_states.size:
            z = rng.standard_normal((N, self.initial_states.size))
            z = np.tile(z, (B, 1))
            for k, s in enumerate(self.initial_states):
                sd = self.initial_values[k]
                S[:, s] = S[:, s] + sd * z[:, k]
            S = np.where(self.floor[None, :], np.maximum(S, 0.0), S)
        q_sd = np.repeat(self._noise_sd(values), N, axis=0)
        noise = Noise(self.noise_states, q_sd, self.noise_log, self.key, np.tile(np.arange(N), B))
        sigma = self._sigma(values)
        loglike = np.zeros(B)
        T = self.times.size
        nseries = len(self.problem.targets)
        ns = self.stocks.size
        alpha = (1 - level) / 2
        if record:
            pred = np.full((nseries, T), np.nan)
            pred_sd = np.full((nseries, T), np.nan)
            fm = np.full((ns, T), np.nan)
            fsd, flo, fhi = fm.copy(), fm.copy(), fm.copy()
            paths = np.full((T, N, ns), np.nan)
            ancestry = np.tile(np.arange(N), (T, 1))
        uniforms = rng.random(T)
        k_prev = 0
        alive = np.ones(B, bool)
        for j in range(T):
            kj = int(self.steps[j])
            y, ok = self.stepper.advance(inputs, self.clock, self.dt, k_prev, kj, S, noise=noise, table=self.table,
                                         outputs=self.outputs, vector=self.vector)
            k_prev = kj
            ymeas = self._measure(values, y.reshape(B, N, -1))          # (B, N, series)
            good = ok.reshape(B, N) & np.isfinite(ymeas).all(axis=2)
            if record:
                with np.errstate(all="ignore"):
                    g = good[0]
                    yy = ymeas[0][g]
                    pred[:, j] = yy.mean(axis=0) if yy.size else np.nan
                    pred_sd[:, j] = np.sqrt(yy.var(axis=0) + sigma[0] ** 2) if yy.size else np.nan
            data = self.obs_data[:, j]
            have = np.isfinite(data)
            if self.in_fit[j] and have.any():
                with np.errstate(all="ignore"):
                    r = (data[have][None, None, :] - ymeas[:, :, have]) / sigma[:, None, have]
                    logw = -0.5 * np.sum(r * r, axis=2) - np.sum(np.log(sigma[:, have]), axis=1)[:, None] \
                        - 0.5 * have.sum() * _LOG2PI
                logw = np.where(good & np.isfinite(logw), logw, -np.inf)
                total = logsumexp(logw, axis=1)
                alive &= np.isfinite(total)
                loglike = np.where(alive, loglike + total - math.log(N), -np.inf)
                w = np.where(alive[:, None], np.exp(logw - np.where(alive, total, 0.0)[:, None]), 1.0 / N)
                w = np.where(np.isfinite(w), w, 0.0)
                w = w / w.sum(axis=1, keepdims=True)
                # Systematic resampling with the same uniform for every set (common random numbers).
                cum = np.cumsum(w, axis=1)
                cum[:, -1] = 1.0
                points = (uniforms[j] + np.arange(N)) / N
                idx = np.array([np.searchsorted(cum[b], points, side="right") for b in range(B)])
                idx = np.minimum(idx, N - 1)
            else:
                w = np.where(good, 1.0, 0.0)
                w = np.where(w.sum(axis=1, keepdims=True) > 0, w / np.maximum(w.sum(axis=1, keepdims=True), 1), 1.0 / N)
                idx = None
            if record:
                st = S.reshape(B, N, -1)[0][:, self.stocks]
                ww = w[0]
                mean = ww @ np.where(np.isfinite(st), st, 0.0)
                fm[:, j] = mean
                fsd[:, j] = np.sqrt(np.maximum(ww @ (np.where(np.isfinite(st), st, 0.0) - mean) ** 2, 0))
                for c in range(ns):
                    flo[c, j], fhi[c, j] = _weighted_quantiles(st[:, c], ww, (alpha, 1 - alpha))
                paths[j] = st
            if idx is not None:
                rows = (idx + (np.arange(B) * N)[:, None]).ravel()
                S = S[rows]
                if record:
                    ancestry[j] = idx[0]
        if not record:
            return loglike
        # Smoothing by the particles' genealogy: trace each final particle back through its ancestors.
        lineage = np.arange(N)
        last = int(np.flatnonzero(self.in_fit)[-1])
        sm = np.full((ns, T), np.nan)
        slo, shi = sm.copy(), sm.copy()
        for j in range(T - 1, -1, -1):
            if j <= last:
                if j < last:
                    lineage = ancestry[j][lineage]
                st = paths[j][lineage]
                sm[:, j] = np.nanmean(st, axis=0)
                slo[:, j], shi[:, j] = np.nanquantile(st, alpha, axis=0), np.nanquantile(st, 1 - alpha, axis=0)
            else:
                sm[:, j], slo[:, j], shi[:, j] = fm[:, j], flo[:, j], fhi[:, j]
        return FilterRun(float(loglike[0]), self.times, pred, pred_sd, fm, fsd, flo, fhi, sm, slo, shi, self.in_fit)


    def open_loop(self, values: np.ndarray) -> list[np.ndarray]:
        """The run without noise or corrections at one parameter row: each target's model values
        at its times (fit, then hold-out), through the measurement equation, as (1, times) arrays."""
        values = np.atleast_2d(np.asarray(values, dtype=float))[:1]
        inputs, S, _, _ = self._start(values, 1)
        raw = np.full((self.times.size, len(self.problem.targets)), np.nan)
        k_prev = 0
        for j, kj in enumerate(self.steps):
            y, ok = self.stepper.advance(inputs, self.clock, self.dt, k_prev, int(kj), S, outputs=self.outputs,
                                         vector=self.vector)
            k_prev = int(kj)
            raw[j] = y[0] if ok[0] else np.nan
        out = []
        for i, target in enumerate(self.problem.targets):
            scale, offset = self.problem.measurement(values, target.observation)
            series = raw[:, i] * scale[0] + offset[0]
            where = np.clip(np.searchsorted(self.times, target.times - 1e-9), 0, self.times.size - 1)
            hit = np.isclose(self.times[where], target.times)
            out.append(np.where(hit, series[where], np.nan)[None, :])
        return out

    # ------------------------------------------------------------------ IF2
    def iterated_pass(self, to_model, to_internal, clip, start: np.ndarray, scale: np.ndarray, seed: int):
        """One IF2 pass: a particle filter over the fit window in which each particle carries its own
        parameters (rows of ``start``, optimiser coordinates), perturbed by a random walk of sd
        ``scale`` at the start and at every observation, and resampled with its states. Returns the
        swarm at the end and the pass's log-likelihood.

        Parameters that set initial values act through the first perturbation only: the states
        are initialised once, at the start of the pass.
        """
        from pysd_runner import Noise
        from scipy.special import logsumexp

        rng = np.random.default_rng(seed)
        J = start.shape[0]
        theta = clip(start + scale * rng.standard_normal(start.shape))
        values = to_model(theta)
        inputs, S, _, ok = self._start(values, 1)
        if self.initial_states.size:
            z = rng.standard_normal((J, self.initial_states.size))
            for k, st in enumerate(self.initial_states):
                S[:, st] = S[:, st] + self.initial_values[k] * z[:, k]
            S = np.where(self.floor[None, :], np.maximum(S, 0.0), S)
        key = int(rng.integers(2**62))
        loglike, k_prev = 0.0, 0
        for j in np.flatnonzero(self.in_fit):
            noise = Noise(self.noise_states, self._noise_sd(values), self.noise_log, key, np.arange(J))
            kj = int(self.steps[j])
            y, ok = self.stepper.advance(inputs, self.clock, self.dt, k_prev, kj, S, noise=noise, table=self.table,
                                         outputs=self.outputs, vector=self.vector)
            k_prev = kj
            data = self.obs_data[:, j]
            have = np.isfinite(data)
            if not have.any():
                continue
            ymeas = self._measure(values, y[:, None, :])[:, 0, :]
            sigma = self._sigma(values)
            with np.errstate(all="ignore"):
                r = (data[have][None, :] - ymeas[:, have]) / sigma[:, have]
                logw = -0.5 * np.sum(r * r, axis=1) - np.sum(np.log(sigma[:, have]), axis=1) \
                    - 0.5 * have.sum() * _LOG2PI
            logw = np.where(ok & np.isfinite(logw), logw, -np.inf)
            total = logsumexp(logw)
            if not np.isfinite(total):
                return theta, -math.inf
            loglike += total - math.log(J)
            w = np.exp(logw - total)
            cum = np.cumsum(w / w.sum())
            cum[-1] = 1.0
            idx = np.minimum(np.searchsorted(cum, (rng.random() + np.arange(J)) / J, side="right"), J - 1)
            S, theta = S[idx], clip(theta[idx] + scale * rng.standard_normal(theta.shape))
            values = to_model(theta)
            inputs = self._inputs(values, 1)
        return theta, loglike


def _weighted_quantiles(values, weights, qs):
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return (math.nan,) * len(qs)
    v, w = values[ok], weights[ok]
    order = np.argsort(v)
    v, w = v[order], w[order]
    cum = np.cumsum(w) / w.sum()
    return tuple(float(v[min(np.searchsorted(cum, q), v.size - 1)]) for q in qs)


def describe(settings: StateSpaceSettings) -> str:
    return json.dumps(settings.describe(), sort_keys=True)
