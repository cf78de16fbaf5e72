"""Diffusion samplers driven by the target's exact denoiser: DDPM/DDIM and the probability-flow ODE.

Notation: a reverse step goes from time t to an earlier time s on a fixed grid, with
(a_t, s_t) = (alpha_t, sigma_t) of the schedule (see ``difflab.schedules``), x0_hat = E[X | x_t]
the target's exact denoiser and eps_hat = (x_t - a_t x0_hat) / s_t the implied noise.

DDPM / DDIM (Ho et al. 2020, eqs. 6-7; Song et al. 2021 "DDIM", eq. 12), in (alpha, sigma) form:

1. beta_tilde = s_s^2 (1 - (a_t s_s / (a_s s_t))^2)   variance of q(x_s | x_t, x_0)
2. c^2 = eta^2 beta_tilde                 ("beta-tilde", the posterior variance; DDPM for eta = 1)
   c^2 = eta^2 (s_t^2 - (a_t / a_s)^2 s_s^2)   ("beta": the forward step's variance, DDPM's
                                              other choice sigma_t^2 = beta_t; eta scales it too)
3. x_s = a_s x0_hat + sqrt(s_s^2 - eta^2 beta_tilde) eps_hat + c xi
   eta = 0 is deterministic DDIM. The step to s = 0 returns x0_hat with no noise.

Probability-flow ODE (Song et al. 2021, eq. 13): dx/dt = f(t) x - g(t)^2 score_t(x) / 2,
integrated backward from t = 1 to the early-stop time by Euler, Heun, classical RK4, DPM-Solver-2
(Lu et al. 2022, Algorithm 1 with r = 1/2, noise-prediction form) or scipy's adaptive RK45.

Every step here except RK45's is affine in x when the target is Gaussian (its denoiser is affine),
which is what ``difflab.exact`` uses to compute the law of the output exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difflab.schedules import alpha_sigma, half_log_snr, t_of_half_log_snr


@dataclass(frozen=True)
class DiffusionState:
    xt: np.ndarray  # (d, n)
    k: int  # steps done

    @property
    def x(self) -> np.ndarray:
        return self.xt.T


def _as_state(x) -> DiffusionState:
    return DiffusionState(xt=np.ascontiguousarray(np.asarray(x, dtype=np.float64).T), k=0)


def _info(target, xt, a, s) -> dict:
    """Per-step info: one evaluation, and with a perturbed score the realised mean |s~ - s|^2."""
    info = {"nfe": 1.0}
    if hasattr(target, "score_error_sq"):
        info["score_mse"] = float(target.score_error_sq(xt, float(a), float(s)).mean())
    return info


@dataclass(frozen=True)
class DDPM:
    """Ancestral DDPM / DDIM on a grid of (alpha, sigma) values from the start time to the end.

    ``alphas``, ``sigmas``: (K + 1,) grid values, index 0 the start (t near 1), K the end.
    If ``sigmas[-1] == 0`` the last step returns x0_hat; otherwise (early stop) ``final_denoise``
    adds one denoiser evaluation that maps x_delta to E[X | x_delta].
    """

    target: object
    alphas: np.ndarray
    sigmas: np.ndarray
    eta: float = 1.0
    variance: str = "beta-tilde"
    final_denoise: bool = False
    times: np.ndarray | None = None  # the grid's times (for the score-error integral)
    schedule: object = None
    name: str = "ddpm"

    per_particle = True  # each particle's step uses only that particle: the driver may chunk

    @property
    def n_steps(self) -> int:
        return len(self.alphas) - 1 + int(self.final_denoise)

    def init(self, x) -> DiffusionState:
        return _as_state(x)

    @property
    def start(self) -> tuple[float, float]:
        """(alpha, sigma) at the start of the reverse process."""
        return float(self.alphas[0]), float(self.sigmas[0])

    @property
    def end(self) -> tuple[float, float]:
        """(alpha, sigma) at the last grid time; the output is E[X | x there] (x itself at t = 0)."""
        return float(self.alphas[-1]), float(self.sigmas[-1])

    output = "denoised"

    def coefficients(self, k: int):
        """(a_t, s_t, a_s, s_s, mean coefficient of eps_hat, noise std c) of step k."""
        K = len(self.alphas) - 1
        if k >= K:  # the early-stop denoising step
            a, s = self.alphas[K], self.sigmas[K]
            return a, s, 1.0, 0.0, 0.0, 0.0
        a_t, s_t, a_s, s_s = self.alphas[k], self.sigmas[k], self.alphas[k + 1], self.sigmas[k + 1]
        beta_tilde = s_s**2 * max(1.0 - (a_t * s_s / (a_s * s_t)) ** 2, 0.0)
        if s_s == 0.0:
            var = 0.0
        elif self.variance == "beta":
            var = self.eta**2 * max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
        else:
            var = self.eta**2 * beta_tilde
        eps_coef = np.sqrt(max(s_s**2 - self.eta**2 * beta_tilde, 0.0))
        return a_t, s_t, a_s, s_s, eps_coef, float(np.sqrt(var))

    def affine(self, k: int):
        """(a_t, s_t, A, B, c): step k is x_s = A x_t + B score_t(x_t) + c xi.

        With x0_hat = (x_t + s_t^2 score) / a_t (Tweedie) and eps_hat = -s_t score, step 3's mean
        a_s x0_hat + e eps_hat (e its eps coefficient) is A x_t + B score with A = a_s / a_t and
        B = a_s s_t^2 / a_t - e s_t: three passes over the particles instead of eight, and the
        cancellation between the two terms of B happens once, in scalars, not per coordinate.
        """
        a_t, s_t, a_s, _, eps_coef, c = self.coefficients(k)
        return a_t, s_t, a_s / a_t, a_s * s_t * s_t / a_t - eps_coef * s_t, c

    def deterministic(self, xt: np.ndarray, k: int) -> np.ndarray:
        """The mean of x_s given x_t (everything but the fresh noise)."""
        a_t, s_t, A, B, _ = self.affine(k)
        out = self.target.score_t(xt, a_t, s_t)
        out *= B
        out += A * xt
        return out

    def noise_std(self, k: int) -> float:
        return self.coefficients(k)[5]

    def step(self, rng: np.random.Generator, state: DiffusionState):
        a_t, s_t, A, B, c = self.affine(state.k)
        info = _info(self.target, state.xt, a_t, s_t)
        xt = self.target.score_t(state.xt, a_t, s_t)
        xt *= B
        if c > 0.0:
            noise = rng.standard_normal(xt.shape)
            noise *= c
            xt += noise
            xt += np.multiply(state.xt, A, out=noise)
        else:
            xt += A * state.xt
        return DiffusionState(xt=xt, k=state.k + 1), info


def time_grid(schedule, steps: int, t_end: float, spacing: str = "logsnr") -> np.ndarray:
    """(steps + 1,) decreasing times from 1 to t_end, uniform in t or in log-SNR."""
    if spacing == "uniform":
        return np.linspace(1.0, t_end, steps + 1)
    lam = np.linspace(half_log_snr(schedule, 1.0), half_log_snr(schedule, t_end), steps + 1)
    t = t_of_half_log_snr(schedule, lam)
    t[0], t[-1] = 1.0, t_end
    return t


class _ContinuousTime:
    """Shared by the samplers that integrate from times[0] = 1 to times[-1] on a schedule."""

    output = "sample"  # the output is x at the end time

    @property
    def start(self) -> tuple[float, float]:
        """(alpha, sigma) at the start of the reverse process."""
        a, s = alpha_sigma(self.schedule, float(self.times[0]))
        return float(a), float(s)

    @property
    def end(self) -> tuple[float, float]:
        """(alpha, sigma) at the end time."""
        a, s = alpha_sigma(self.schedule, float(self.times[-1]))
        return float(a), float(s)

    def init(self, x) -> DiffusionState:
        return _as_state(x)

    def _score(self, xt, t):
        a, s = alpha_sigma(self.schedule, t)
        return self.target.score_t(xt, float(a), float(s))


SOLVERS = ("euler", "heun", "rk4", "dpm2", "rk45")
NFE_PER_STEP = {"euler": 1, "heun": 2, "rk4": 4, "dpm2": 2}


@dataclass(frozen=True)
class PFlow(_ContinuousTime):
    """Probability-flow ODE from t = 1 to ``times[-1]`` with a fixed-step solver on ``times``.

    For ``solver = "rk45"`` the whole integration is one step of scipy's adaptive RK45 with
    ``rtol``/``atol`` (``times`` then only gives the end points); NFE is what scipy reports.
    """

    target: object
    schedule: object
    times: np.ndarray
    solver: str = "heun"
    rtol: float = 1e-6
    atol: float = 1e-8
    name: str = "pflow"

    @property
    def per_particle(self) -> bool:  # rk45's adaptive steps depend on every particle's error
        return self.solver != "rk45"

    @property
    def n_steps(self) -> int:
        return 1 if self.solver == "rk45" else len(self.times) - 1

    def velocity(self, xt: np.ndarray, t: float) -> np.ndarray:
        """f(t) x - g(t)^2 score_t(x) / 2, (d, n)."""
        v = self._score(xt, t)
        v *= -0.5 * float(self.schedule.g2(t))
        v += float(self.schedule.f(t)) * xt
        return v

    def deterministic(self, xt: np.ndarray, k: int) -> np.ndarray:
        t, s = float(self.times[k]), float(self.times[k + 1])
        dt = s - t
        v = self.velocity
        if self.solver == "euler":
            return xt + dt * v(xt, t)
        if self.solver == "heun":
            d1 = v(xt, t)
            d2 = v(xt + dt * d1, s)
            return xt + 0.5 * dt * (d1 + d2)
        if self.solver == "rk4":
            m = t + 0.5 * dt
            k1 = v(xt, t)
            k2 = v(xt + 0.5 * dt * k1, m)
            k3 = v(xt + 0.5 * dt * k2, m)
            k4 = v(xt + dt * k3, s)
            return xt + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        if self.solver == "dpm2":
            return self._dpm2(xt, t, s)
        raise ValueError(f"solver {self.solver!r} has no fixed step")

    def _eps(self, xt, t):
        """Noise prediction eps = -sigma_t score_t(x)."""
        return -float(alpha_sigma(self.schedule, t)[1]) * self._score(xt, t)

    def _dpm2(self, xt, t, s):
        lam_t, lam_s = float(half_log_snr(self.schedule, t)), float(half_log_snr(self.schedule, s))
        h = lam_s - lam_t
        u = float(t_of_half_log_snr(self.schedule, lam_t + 0.5 * h))
        a_t, _ = alpha_sigma(self.schedule, t)
        a_u, s_u = alpha_sigma(self.schedule, u)
        a_s, s_s = alpha_sigma(self.schedule, s)
        xu = (a_u / a_t) * xt - s_u * np.expm1(0.5 * h) * self._eps(xt, t)
        return (a_s / a_t) * xt - s_s * np.expm1(h) * self._eps(xu, u)

    def noise_std(self, k: int) -> float:
        return 0.0

    def step(self, rng: np.random.Generator, state: DiffusionState):
        if self.solver == "rk45":
            return self._rk45(state)
        info = _info(self.target, state.xt, *alpha_sigma(self.schedule, float(self.times[state.k])))
        info["nfe"] = float(NFE_PER_STEP[self.solver])
        xt = self.deterministic(state.xt, state.k)
        return DiffusionState(xt=xt, k=state.k + 1), info

    def _rk45(self, state: DiffusionState):
        from scipy.integrate import solve_ivp

        shape = state.xt.shape

        def rhs(t, y):
            return self.velocity(y.reshape(shape), t).ravel()

        sol = solve_ivp(rhs, (float(self.times[0]), float(self.times[-1])), state.xt.ravel(), method="RK45",
                        rtol=self.rtol, atol=self.atol)
        if not sol.success:
            xt = np.full(shape, np.nan)  # the driver's guard reports it as diverged
        else:
            xt = sol.y[:, -1].reshape(shape)
        return DiffusionState(xt=np.ascontiguousarray(xt), k=state.k + 1), {"nfe": float(sol.nfev)}


@dataclass(frozen=True)
class ReverseSDE(_ContinuousTime):
    """Euler-Maruyama on the reverse-time SDE, with optional Langevin corrector steps.

    Reverse SDE (Anderson 1982; Song et al. 2021, eq. 6): dx = [f(t) x - g(t)^2 score_t(x)] dt
    + g(t) dW, run from t = 1 down to ``times[-1]``. A predictor step from t to s < t is

        x_s = x_t - (t - s) [f(t) x_t - g(t)^2 score_t(x_t)] + g(t) sqrt(t - s) xi.

    With ``corrector_steps = M`` (Song et al. 2021, Algorithm 2: predictor-corrector), each
    predictor step is followed by M Langevin steps at the new time s,
    x <- x + e score_s(x) + sqrt(2 e) xi, with the step e = 2 (snr sigma_s)^2 (their rule
    e = 2 (snr |z| / |score|)^2 with |score| ~ |z| / sigma_s; fixed in advance, so every step stays
    affine on a Gaussian target and the output law stays exactly computable). Driver step k is
    sub-step k mod (M + 1) of predictor step k // (M + 1): 0 the predictor, the rest correctors.
    The output is x at ``times[-1]``.
    """

    target: object
    schedule: object
    times: np.ndarray
    corrector_steps: int = 0
    snr: float = 0.1
    name: str = "sde"

    per_particle = True

    @property
    def n_steps(self) -> int:
        return (len(self.times) - 1) * (1 + self.corrector_steps)

    def _sub(self, k: int):
        i, j = divmod(k, 1 + self.corrector_steps)
        return float(self.times[i]), float(self.times[i + 1]), j

    def deterministic(self, xt: np.ndarray, k: int) -> np.ndarray:
        t, s, j = self._sub(k)
        if j == 0:
            drift = self._score(xt, t)
            drift *= -float(self.schedule.g2(t))
            drift += float(self.schedule.f(t)) * xt
            return xt - (t - s) * drift
        return xt + self._corrector_step(s) * self._score(xt, s)

    def _corrector_step(self, s: float) -> float:
        _, sig = alpha_sigma(self.schedule, s)
        return 2.0 * (self.snr * float(sig)) ** 2

    def noise_std(self, k: int) -> float:
        t, s, j = self._sub(k)
        if j == 0:
            return float(np.sqrt(float(self.schedule.g2(t)) * (t - s)))
        return float(np.sqrt(2.0 * self._corrector_step(s)))

    def step(self, rng: np.random.Generator, state: DiffusionState):
        t, s, j = self._sub(state.k)
        info = _info(self.target, state.xt, *alpha_sigma(self.schedule, t if j == 0 else s))
        xt = self.deterministic(state.xt, state.k)
        noise = rng.standard_normal(xt.shape)
        noise *= self.noise_std(state.k)
        xt += noise
        return DiffusionState(xt=xt, k=state.k + 1), info
