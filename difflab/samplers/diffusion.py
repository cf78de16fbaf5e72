"""Diffusion samplers driven by the target's exact denoiser: DDPM/DDIM, the probability-flow ODE and
the reverse SDE (with an optional Langevin corrector).

Notation: a reverse step goes from time t to an earlier time s on a fixed grid, with
(a_t, s_t) = (alpha_t, sigma_t) of the schedule (see ``difflab.maths.schedules``), x0_hat = E[X | x_t]
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
which is what ``difflab.maths.exact`` uses to compute the law of the output exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from difflab.contracts import (
    STEPS,
    AffineStep,
    Capabilities,
    Option,
    OptionNeed,
    PathStep,
    SamplerEntry,
    at_least_one,
    at_least_zero,
    check_argument,
    init_option,
    non_negative,
    positive,
    with_default,
)
from difflab.errors import ConfigError
from difflab.lazy import lazy
from difflab.maths import schedules
from difflab.maths.schedules import (
    alpha_sigma,
    half_log_snr,
    reverse_drift,
    t_of_half_log_snr,
)
from difflab.samplers import steering

np = lazy("numpy", globals(), "np")


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
    """Per-step info: one evaluation, and with a deliberately wrong score the realised mean |s~ - s|^2."""
    info = {"nfe": 1.0}
    if not target.exact_score:
        info["score_mse"] = float(target.score_error_sq(xt, float(a), float(s)).mean())
    return info


class _Reverse(AffineStep):
    """What the reverse diffusions share: the start law of the contract's ``diffusion`` capability."""

    def start_law(self, prior: str):
        """The Gaussian (mean, cov) the reverse process starts from (``schedules.start_law``)."""
        return schedules.start_law(self.target.mean, self.target.cov, *self.start, prior)


@dataclass(frozen=True)
class DDPM(_Reverse):
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
    capabilities = Capabilities(per_particle=True, affine=True, diffusion=True)

    def __post_init__(self):
        check_argument("eta", self.eta, non_negative)
        check_argument("variance", self.variance, VARIANCES)

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
        beta_tilde = schedules.ddpm_posterior(a_t, s_t, a_s, s_s)[2]
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

    def noise_cov(self, k: int) -> float:
        c = self.coefficients(k)[5]
        return c * c

    def path_step(self, k: int) -> PathStep | None:
        """Step k between two grid levels; the step to sigma = 0 and the early-stop denoising are
        read-outs (x0_hat, a deterministic map of the last noisy state)."""
        if k >= len(self.alphas) - 1 or self.sigmas[k + 1] == 0.0:
            return None
        return PathStep((float(self.alphas[k]), float(self.sigmas[k])),
                        (float(self.alphas[k + 1]), float(self.sigmas[k + 1])))

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


class _ContinuousTime(_Reverse):
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

    def _level(self, t: float) -> tuple[float, float]:
        a, s = alpha_sigma(self.schedule, t)
        return float(a), float(s)


SOLVERS = ("euler", "heun", "rk4", "dpm2", "rk45")
VARIANCES = ("beta-tilde", "beta")
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

    def __post_init__(self):
        check_argument("solver", self.solver, SOLVERS)
        check_argument("rtol", self.rtol, positive)
        check_argument("atol", self.atol, positive)

    @property
    def capabilities(self) -> Capabilities:
        # rk45's adaptive steps depend on every particle's error: neither per particle nor affine.
        fixed = self.solver != "rk45"
        return Capabilities(per_particle=fixed, affine=fixed, diffusion=True)

    @property
    def n_steps(self) -> int:
        return 1 if self.solver == "rk45" else len(self.times) - 1

    def velocity(self, xt: np.ndarray, t: float) -> np.ndarray:
        """f(t) x - g(t)^2 score_t(x) / 2, (d, n)."""
        return reverse_drift(self.schedule, t, xt, self._score(xt, t), 0.5)

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
        raise ConfigError(f"solver: {self.solver!r} has no fixed step")

    def _eps(self, xt, t):
        """Noise prediction eps = -sigma_t score_t(x)."""
        return schedules.eps_from_score(self._score(xt, t), float(alpha_sigma(self.schedule, t)[1]))

    def _dpm2(self, xt, t, s):
        lam_t, lam_s = float(half_log_snr(self.schedule, t)), float(half_log_snr(self.schedule, s))
        h = lam_s - lam_t
        u = float(t_of_half_log_snr(self.schedule, lam_t + 0.5 * h))
        a_t, _ = alpha_sigma(self.schedule, t)
        a_u, s_u = alpha_sigma(self.schedule, u)
        a_s, s_s = alpha_sigma(self.schedule, s)
        xu = (a_u / a_t) * xt - s_u * np.expm1(0.5 * h) * self._eps(xt, t)
        return (a_s / a_t) * xt - s_s * np.expm1(h) * self._eps(xu, u)

    def noise_cov(self, k: int) -> float:
        return 0.0

    def path_step(self, k: int) -> PathStep | None:
        if self.solver == "rk45":
            return None
        return PathStep(self._level(float(self.times[k])), self._level(float(self.times[k + 1])))

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
    capabilities = Capabilities(per_particle=True, affine=True, diffusion=True)

    def __post_init__(self):
        check_argument("corrector_steps", self.corrector_steps, at_least_zero)
        check_argument("snr", self.snr, positive)

    @property
    def n_steps(self) -> int:
        return (len(self.times) - 1) * (1 + self.corrector_steps)

    def _sub(self, k: int):
        i, j = divmod(k, 1 + self.corrector_steps)
        return float(self.times[i]), float(self.times[i + 1]), j

    def deterministic(self, xt: np.ndarray, k: int) -> np.ndarray:
        t, s, j = self._sub(k)
        if j == 0:
            return xt - (t - s) * reverse_drift(self.schedule, t, xt, self._score(xt, t), 1.0)
        return xt + self._corrector_step(s) * self._score(xt, s)

    def _corrector_step(self, s: float) -> float:
        _, sig = alpha_sigma(self.schedule, s)
        return 2.0 * (self.snr * float(sig)) ** 2

    def noise_std(self, k: int) -> float:
        t, s, j = self._sub(k)
        if j == 0:
            return float(np.sqrt(float(self.schedule.g2(t)) * (t - s)))
        return float(np.sqrt(2.0 * self._corrector_step(s)))

    def noise_cov(self, k: int) -> float:
        c = self.noise_std(k)
        return c * c

    def path_step(self, k: int) -> PathStep:
        """The predictor stands for p(x_s | x_t); a corrector at s for the exact Langevin diffusion
        on p_s run for its step e."""
        t, s, j = self._sub(k)
        if j == 0:
            return PathStep(self._level(t), self._level(s))
        return PathStep(self._level(s), self._level(s), langevin=self._corrector_step(s))

    def step(self, rng: np.random.Generator, state: DiffusionState):
        t, s, j = self._sub(state.k)
        info = _info(self.target, state.xt, *alpha_sigma(self.schedule, t if j == 0 else s))
        xt = self.deterministic(state.xt, state.k)
        noise = rng.standard_normal(xt.shape)
        noise *= self.noise_std(state.k)
        xt += noise
        return DiffusionState(xt=xt, k=state.k + 1), info


# ---------------------------------------------------------------- registry entries
SCORE_ERROR_KINDS = ("bias", "scale", "variance")
GUIDANCE = ("none", "classifier", "cfg")
# The score the sampler sees: exact, deliberately wrong, naively reward-guided, or class-guided.
# Shared with localization: how the error decomposition's Monte Carlo terms are sized.
DECOMPOSITION_SE = Option(
    "decomposition_se", None, float, "Size the error decomposition's Monte Carlo terms (on mixtures: kl_prior, "
    "kl_early_stop, kl_path, score_error_term) by this standard error, each drawing what it needs (a pilot of "
    "1,000 draws, at most 10^6); default: fixed budgets.", check=positive)
MODEL_OPTIONS = (
    schedules.PRIOR_OPTION,
    Option("score_error", 0.0, float, "Size eps of a deliberate, seeded score error (0: exact score).",
           check=non_negative),
    Option("score_error_kind", "bias", str, "bias (smooth field eps b(x) / sigma_t), scale ((1 + eps) score) or "
           "variance (covariances times 1 + eps).", choices=SCORE_ERROR_KINDS),
    Option("reward_guidance", "exact", str, "On a target with a tilt: block: exact (the untilted process steered by "
           "the exact h-transform control, i.e. the tilted target's score) or naive (untilted score + lambda grad r "
           "at every time).", choices=("exact", "naive")),
    Option("guidance", "none", str, "none, classifier (score + W grad log p(c | x_t)) or cfg ((1 + W) conditional "
           "score - W score); needs a target with classes.", choices=GUIDANCE),
    Option("class", None, str, "With --guidance: the class (a name from the target's classes: block)."),
    Option("scale", None, float, "With --guidance: the guidance scale W >= 0 (default 1).", check=non_negative),
    DECOMPOSITION_SE,
)
PRIOR_INIT = init_option("prior", help="The start law (see --prior).")


def _resolve_model(p: dict) -> dict:
    """Checks across the score options; guidance parameters recorded only with guidance."""
    schedules.resolve_schedule(p)
    if p["reward_guidance"] == "naive" and p["score_error"] > 0:
        raise ConfigError("--reward-guidance: naive guidance is itself a score error; use it without --score-error")
    if p["guidance"] == "none":
        for key in ("class", "scale"):
            if p.pop(key) is not None:
                raise ConfigError(f"--{key}: only with --guidance classifier or cfg")
        return p
    if p["class"] is None:
        raise ConfigError(f"--class: --guidance {p['guidance']} needs the class to steer toward, e.g. --class left")
    p["class"], p["scale"] = str(p["class"]), 1.0 if p["scale"] is None else p["scale"]
    if p["score_error"] > 0 or p["reward_guidance"] == "naive":
        clash = "--score-error" if p["score_error"] > 0 else "--reward-guidance naive"
        raise ConfigError(f"--guidance: use it without {clash} (guidance is measured as the score error)")
    if p.get("likelihood"):
        raise ConfigError("--likelihood: not with --guidance (the ODE likelihood is the exact flow's)")
    return p


def _early_stop(allow_zero: bool):
    def rule(v):
        ok = math.isfinite(v) and 0 <= v < 1 and (allow_zero or v > 0)
        return None if ok else f"must be {'in [0, 1)' if allow_zero else 'in (0, 1)'}"
    return rule


def _resolve_ddpm(p: dict) -> dict:
    steps, end = p["steps"], round(p["early_stop"] * schedules.N_TRAIN)
    if steps > schedules.N_TRAIN:
        raise ConfigError(f"--steps: ddpm runs on at most the schedule's {schedules.N_TRAIN} steps, got {steps}")
    if steps > schedules.N_TRAIN - end:
        raise ConfigError(f"--steps: with --early-stop {p['early_stop']} at most {schedules.N_TRAIN - end} steps "
                          f"fit, got {steps}")
    spacing = p["timestep_spacing"]
    if spacing != "trailing" and min(schedules.ddpm_indices(spacing, steps, end)[:-1]) <= end:
        raise ConfigError(f"--timestep-spacing: '{spacing}' with {steps} steps reaches below --early-stop "
                          f"{p['early_stop']}; use trailing")
    return _resolve_model(p)


def _build_ddpm(target, p: dict) -> DDPM:
    schedule = schedules.make_schedule(p)
    alphas, sigmas, times = schedules.ddpm_grid(schedule, p["steps"], p["early_stop"], p["timestep_spacing"])
    return DDPM(target, alphas, sigmas, eta=p["eta"], variance=p["variance"], final_denoise=p["early_stop"] > 0,
                times=times, schedule=schedule)


DDPM_ENTRY = SamplerEntry(
    "ddpm", "DDPM / DDIM ancestral sampling with the target's exact denoiser.",
    options=(*schedules.SCHEDULE_OPTIONS,
             Option("eta", DDPM.eta, float, "DDIM eta: 1 = DDPM ancestral sampling, 0 = deterministic DDIM.",
                    check=non_negative),
             Option("variance", DDPM.variance, str, "Reverse variance: beta-tilde (posterior) or beta (forward step); "
                    "diffusers' names fixed_small, fixed_large accepted.", choices=VARIANCES,
                    aliases={"fixed_small": "beta-tilde", "fixed_large": "beta"}),
             Option("early_stop", 0.0, float, "Stop at t = DELTA and return the denoised mean E[X | x_DELTA]; 0 runs "
                    "to t = 0.", check=_early_stop(True)),
             Option("timestep_spacing", "trailing", str, "Which K of the 1000 steps (diffusers' names): trailing, "
                    "leading or linspace.", choices=schedules.SPACINGS),
             *MODEL_OPTIONS),
    build=_build_ddpm, resolve=_resolve_ddpm, needs=("noised_law",), init=PRIOR_INIT,
    option_needs=steering.needs, steer=steering.steer,
    steps=with_default(STEPS, 1000, "K reverse steps on K of the schedule's 1000 (<= 1000)."),
)

GRID = Option("grid", "logsnr", str, "Time grid: logsnr (uniform in log-SNR) or uniform (in t).",
              choices=("logsnr", "uniform"))
EARLY_STOP = Option("early_stop", 1e-3, float, "End time DELTA > 0; the output is x_DELTA.", check=_early_stop(False))


def _resolve_pflow(p: dict) -> dict:
    if not p["likelihood"]:
        p.pop("likelihood_points"), p.pop("points")
    else:
        p["points"] = p["points"] or ""
    return _resolve_model(p)


def _pflow_needs(p: dict) -> tuple:
    """The score options' needs, and --likelihood's: the exact noised densities of a closed-form target."""
    likelihood = (OptionNeed("exact", "--likelihood: not with {source}, a score of your own (it is the score error "
                                      "measured)"),) if p.get("likelihood") else ()
    return steering.needs(p) + likelihood


def _points_readable(target, p: dict, load_points) -> None:
    """--points: the file is read (and its shape checked) before the run."""
    if p.get("points"):
        load_points(p["points"], target.dim)


def _likelihood(sampler, target, law0, p: dict, rng, summary: dict, load_points) -> dict:
    """pflow --likelihood: ODE log-likelihoods of the points next to the exact log densities (the
    run file's group ``likelihood``); the largest errors in the summary."""
    if not p["likelihood"]:
        return {}
    from difflab.maths.likelihood import ode_log_likelihood

    x = load_points(p["points"], target.dim) if p["points"] else target.sample(rng, p["likelihood_points"])
    out = ode_log_likelihood(target, sampler.schedule, x, p["early_stop"], law0)
    summary["likelihood_max_err"] = float(np.abs(out["loglik_ode"] - out["exact_log_p_delta"]).max())
    summary["likelihood_prior_max_err"] = float(np.abs(out["loglik_prior"] - out["exact_log_p_delta"]).max())
    summary["likelihood_nfe"] = float(out.pop("nfe"))
    return {"likelihood": {"points": x, **out}}


def _build_pflow(target, p: dict) -> PFlow:
    schedule = schedules.make_schedule(p)
    times = schedules.time_grid(schedule, p["steps"], p["early_stop"], p["grid"])
    return PFlow(target, schedule, times, solver=p["solver"], rtol=p["rtol"], atol=p["atol"])


PFLOW_ENTRY = SamplerEntry(
    "pflow", "Probability-flow ODE from the prior at t = 1 back to t = DELTA with the exact score.",
    options=(*schedules.SCHEDULE_OPTIONS,
             Option("solver", PFlow.solver, str, "euler, heun, rk4, dpm2 (DPM-Solver-2) or rk45 (adaptive, scipy).",
                    choices=SOLVERS),
             GRID, EARLY_STOP,
             Option("rtol", PFlow.rtol, float, "rk45 relative tolerance.", check=positive),
             Option("atol", PFlow.atol, float, "rk45 absolute tolerance.", check=positive),
             Option("likelihood", False, bool, "Also compute ODE log-likelihoods of points next to the exact log "
                    "densities."),
             Option("likelihood_points", 1000, int, "With --likelihood: how many exact target draws.",
                    check=at_least_one),
             Option("points", None, str, "With --likelihood: a .npy (n, d) array or a run file whose /samples to use "
                    "instead."),
             *MODEL_OPTIONS),
    build=_build_pflow, resolve=_resolve_pflow, needs=("noised_law",), init=PRIOR_INIT,
    option_needs=_pflow_needs, steer=steering.steer, preflight=_points_readable, after=_likelihood,
    steps=with_default(STEPS, 100, "Solver steps (ignored by rk45)."),
)


def _build_sde(target, p: dict) -> ReverseSDE:
    schedule = schedules.make_schedule(p)
    times = schedules.time_grid(schedule, p["steps"], p["early_stop"], p["grid"])
    return ReverseSDE(target, schedule, times, corrector_steps=p["corrector_steps"], snr=p["snr"])


SDE_ENTRY = SamplerEntry(
    "sde", "Reverse-time SDE by Euler-Maruyama, optionally with Langevin corrector steps (predictor-corrector).",
    options=(*schedules.SCHEDULE_OPTIONS, GRID, EARLY_STOP,
             Option("corrector_steps", ReverseSDE.corrector_steps, int,
                    "Langevin corrector steps after each predictor step.",
                    check=at_least_zero),
             Option("snr", ReverseSDE.snr, float, "Corrector signal-to-noise ratio r: step 2 (r sigma_t)^2.",
                    check=positive),
             *MODEL_OPTIONS),
    build=_build_sde, resolve=_resolve_model, needs=("noised_law",), init=PRIOR_INIT,
    option_needs=steering.needs, steer=steering.steer,
    steps=with_default(STEPS, 1000, "Predictor (Euler-Maruyama) steps."),
)
