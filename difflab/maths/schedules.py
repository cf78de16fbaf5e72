"""Noise schedules: the forward process x_t = alpha_t x_0 + sigma_t Z on t in [0, 1].

Notation (Song et al. 2021, "Score-based generative modeling through SDEs"; Kingma et al. 2021):

==============  =================================================================================
``alpha_t``     signal scale; ``sigma_t`` noise scale; alpha_0 = 1
``lambda_t``    half log-SNR, log(alpha_t / sigma_t); decreasing in t
``f(t)``        drift coefficient of the forward SDE dx = f(t) x dt + g(t) dW: d log alpha_t / dt
``g(t)^2``      d sigma_t^2 / dt - 2 f(t) sigma_t^2
==============  =================================================================================

Schedules (pure functions of t, vectorised over arrays of t):

* ``vp-linear``: beta(t) = beta_min + t (beta_max - beta_min) (defaults 0.1, 20),
  alpha_t = exp(-int_0^t beta / 2), sigma_t^2 = 1 - alpha_t^2, f = -beta / 2, g^2 = beta.
  DDPM's discrete chain (Ho et al. 2020) is its discretisation: N = 1000 betas linear from
  beta_min / N = 1e-4 to beta_max / N = 0.02, alpha_bar_i = prod_{j <= i} (1 - beta_j), step i at
  t = i / N. ``discrete(N)`` returns that chain's (alpha_i, sigma_i) for i = 0..N.
* ``vp-cosine`` (Nichol and Dhariwal 2021): alpha_t^2 = cos^2((t + s) / (1 + s) pi / 2) /
  cos^2(s / (1 + s) pi / 2), s = 0.008, with t capped at ``t_max`` = 0.9946 so that alpha_1^2 stays
  about 1e-5 away from 0 (their beta clipping at 0.999 plays that role in discrete time).
  ``discrete(N)`` samples it at t = i / N (their definition of alpha_bar).
* ``ve`` (Song and Ermon 2019): alpha_t = 1, sigma_t = sigma_min (sigma_max / sigma_min)^t for
  t > 0 (defaults 0.01, 50), f = 0, g^2 = d sigma^2 / dt = 2 sigma_t^2 log(sigma_max / sigma_min).
  The process starts at x_0 exactly; its prior is N(0, sigma_max^2 I).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from difflab.contracts import Option, positive
from difflab.errors import ConfigError
from difflab.lazy import lazy

np = lazy("numpy", globals(), "np")


@dataclass(frozen=True)
class VPLinear:
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_start = 1.0  # where the reverse processes start (see time_grid)

    def log_alpha(self, t):
        t = np.asarray(t, dtype=np.float64)
        return -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def beta(self, t):
        return self.beta_min + np.asarray(t, dtype=np.float64) * (self.beta_max - self.beta_min)

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def t_of_log_alpha(self, la):
        """Inverse of log_alpha on [0, 1]: the positive root of the quadratic."""
        db = self.beta_max - self.beta_min
        la = np.asarray(la, dtype=np.float64)
        if db == 0:
            return -2.0 * la / self.beta_min
        return (-0.5 * self.beta_min + np.sqrt(0.25 * self.beta_min**2 - db * la)) / (0.5 * db)

    def discrete(self, n: int):
        """DDPM's chain: betas linear from beta_min / n to beta_max / n, (alpha_i, sigma_i), i = 0..n."""
        betas = np.linspace(self.beta_min / n, self.beta_max / n, n)
        alpha_bar = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
        return np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)


@dataclass(frozen=True)
class VPCosine:
    s: float = 0.008
    t_max: float = 0.9946

    @property
    def t_start(self) -> float:
        return self.t_max

    def _c(self, t):
        return np.cos((t + self.s) / (1.0 + self.s) * math.pi / 2)

    def log_alpha(self, t):
        t = np.minimum(np.asarray(t, dtype=np.float64), self.t_max)
        return np.log(self._c(t) / self._c(0.0))

    def f(self, t):
        """d log alpha / dt = -(pi / 2) tan(...) / (1 + s) (zero beyond t_max, where alpha is frozen)."""
        t = np.asarray(t, dtype=np.float64)
        inner = (np.minimum(t, self.t_max) + self.s) / (1.0 + self.s) * math.pi / 2
        return np.where(t <= self.t_max, -math.pi / 2 / (1.0 + self.s) * np.tan(inner), 0.0)

    def g2(self, t):
        return -2.0 * self.f(t)  # VP: g^2 = -2 f, since d sigma^2 / dt = -d alpha^2 / dt

    def t_of_log_alpha(self, la):
        c = np.exp(np.asarray(la, dtype=np.float64)) * self._c(0.0)
        return np.arccos(np.clip(c, -1.0, 1.0)) * 2 / math.pi * (1.0 + self.s) - self.s

    def discrete(self, n: int):
        t = np.arange(n + 1) / n
        la = self.log_alpha(t)
        return np.exp(la), np.sqrt(-np.expm1(2 * la))


@dataclass(frozen=True)
class VE:
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_start = 1.0

    def log_alpha(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def sigma(self, t):
        t = np.asarray(t, dtype=np.float64)
        return np.where(t > 0, self.sigma_min * (self.sigma_max / self.sigma_min) ** t, 0.0)

    def f(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def g2(self, t):
        return 2.0 * self.sigma(t) ** 2 * math.log(self.sigma_max / self.sigma_min)

    def t_of_sigma(self, s):
        return np.log(np.asarray(s) / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    def discrete(self, n: int):
        t = np.arange(n + 1) / n
        return np.ones(n + 1), self.sigma(t)


@dataclass(frozen=True)
class EDM(VE):
    """Karras et al.'s (2022) VE form: alpha = 1, sigma in [0.002, 80] (the grid is what matters:
    ``ksampler``'s karras grid spaces sigma itself)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0


@dataclass(frozen=True)
class Flow:
    """Rectified flow / flow matching: alpha_t = 1 - t, sigma_t = t (Liu et al. 2023; Lipman et
    al. 2023; Stable Diffusion 3). f = -1 / (1 - t), g^2 = 2 t / (1 - t). The start t = 1 is pure
    noise (alpha = 0), where the VE form sigma / alpha is infinite."""

    t_start = 1.0

    def log_alpha(self, t):
        return np.log1p(-np.asarray(t, dtype=np.float64))

    def f(self, t):
        return -1.0 / (1.0 - np.asarray(t, dtype=np.float64))

    def g2(self, t):
        t = np.asarray(t, dtype=np.float64)
        return 2.0 * t / (1.0 - t)


def alpha_sigma(schedule, t):
    """(alpha_t, sigma_t) of any schedule; sigma from alpha for VP (stable near t = 0)."""
    if isinstance(schedule, Flow):
        t = np.asarray(t, dtype=np.float64)
        return 1.0 - t, t.copy()
    if isinstance(schedule, VE):
        return np.ones_like(np.asarray(t, dtype=np.float64)), schedule.sigma(t)
    la = schedule.log_alpha(t)
    return np.exp(la), np.sqrt(-np.expm1(2.0 * la))


def half_log_snr(schedule, t):
    """lambda_t = log(alpha_t / sigma_t)."""
    a, s = alpha_sigma(schedule, t)
    return np.log(a) - np.log(s)


def t_of_half_log_snr(schedule, lam):
    """Inverse of lambda_t (closed form for every schedule here)."""
    lam = np.asarray(lam, dtype=np.float64)
    if isinstance(schedule, Flow):  # log((1 - t) / t) = lambda
        return 0.5 - 0.5 * np.tanh(0.5 * lam)
    if isinstance(schedule, VE):
        return schedule.t_of_sigma(np.exp(-lam))
    # VP: alpha^2 = 1 / (1 + exp(-2 lambda))  ->  log alpha = -log1p(exp(-2 lambda)) / 2
    return schedule.t_of_log_alpha(-0.5 * np.logaddexp(0.0, -2.0 * lam))


SCHEDULES = {"vp-linear": VPLinear, "vp-cosine": VPCosine, "ve": VE}
KSCHEDULES = {**SCHEDULES, "edm": EDM, "flow": Flow}  # ksampler's: the VE form and flow matching too
# diffusers' names for the same schedules (its beta_schedule values, its flow-matching scheduler)
SCHEDULE_ALIASES = {"linear": "vp-linear", "squaredcos_cap_v2": "vp-cosine", "flow_match": "flow",
                    "rectified-flow": "flow"}


def level_of_ratio(schedule, r: float) -> tuple[float, float]:
    """(alpha, sigma) of the schedule's level whose VE form sigma / alpha is r."""
    if isinstance(schedule, VE):
        return 1.0, float(r)
    if isinstance(schedule, Flow):  # sigma / (1 - sigma) = r
        return 1.0 / (1.0 + r), r / (1.0 + r)
    a = 1.0 / math.sqrt(1.0 + r * r)  # VP: alpha^2 + sigma^2 = 1
    return a, r * a


# ---------------------------------------------------------------- options and construction
SCHEDULE_OPTIONS = (
    Option("schedule", "vp-linear", str, "Noise schedule: vp-linear, vp-cosine or ve (diffusers' names linear, "
           "squaredcos_cap_v2 accepted).", choices=tuple(SCHEDULES),
           aliases={"linear": "vp-linear", "squaredcos_cap_v2": "vp-cosine"}),
    Option("beta_min", VPLinear.beta_min, float, "vp-linear: beta(0) (DDPM's first beta times 1000).", check=positive),
    Option("beta_max", VPLinear.beta_max, float, "vp-linear: beta(1) (DDPM's last beta times 1000).", check=positive),
    Option("sigma_min", VE.sigma_min, float, "ve: smallest noise level.", check=positive),
    Option("sigma_max", VE.sigma_max, float, "ve: largest noise level (the prior's std).", check=positive),
)
_SCHEDULE_DEFAULTS = {"ve": {"sigma_min": VE.sigma_min, "sigma_max": VE.sigma_max},
                      "edm": {"sigma_min": EDM.sigma_min, "sigma_max": EDM.sigma_max}}
_SCHEDULE_FIELDS = {"vp-linear": ("beta_min", "beta_max"), "ve": ("sigma_min", "sigma_max"), "vp-cosine": (),
                    "edm": ("sigma_min", "sigma_max"), "flow": ()}


def resolve_schedule(params: dict) -> dict:
    """Keep the chosen schedule's own parameters (the others are dropped from the record)."""
    name = params["schedule"]
    for key in ("beta_min", "beta_max", "sigma_min", "sigma_max"):
        if key not in _SCHEDULE_FIELDS[name]:
            params.pop(key, None)
        elif params.get(key) is None:  # an option whose default depends on the schedule (ksampler's ve / edm)
            params[key] = _SCHEDULE_DEFAULTS[name][key]
    if name == "vp-linear" and params["beta_max"] < params["beta_min"]:
        raise ConfigError(f"--beta-max: must be >= --beta-min ({params['beta_min']}), got {params['beta_max']}")
    if name in ("ve", "edm") and params["sigma_max"] <= params["sigma_min"]:
        raise ConfigError(f"--sigma-max: must be > --sigma-min ({params['sigma_min']}), got {params['sigma_max']}")
    return params


def make_schedule(params: dict, table: dict = SCHEDULES):
    cls = table[params["schedule"]]
    return cls(**{k: params[k] for k in _SCHEDULE_FIELDS[params["schedule"]]})


# ---------------------------------------------------------------- time grids
N_TRAIN = 1000  # DDPM's number of discrete steps: ddpm and smc run on K <= N_TRAIN of them
SPACINGS = ("trailing", "leading", "linspace")


def time_grid(schedule, steps: int, t_end: float, spacing: str = "logsnr"):
    """(steps + 1,) decreasing times from the start to t_end, uniform in t or in log-SNR.

    The start is t = 1, or vp-cosine's ``t_max``: beyond it that schedule is frozen (f = g = 0), so
    a first solver step evaluated at t = 1 would not move at all over the part of its interval
    below t_max (the same level, so the same prior)."""
    start = schedule.t_start
    if spacing == "uniform":
        return np.linspace(start, t_end, steps + 1)
    lam = np.linspace(half_log_snr(schedule, start), half_log_snr(schedule, t_end), steps + 1)
    t = t_of_half_log_snr(schedule, lam)
    t[0], t[-1] = start, t_end
    return t


def ddpm_indices(spacing: str, steps: int, end: int):
    """Discrete indices (1 = DDPM's first noisy step, N = the last) of the K + 1 grid points,
    named as diffusers' ``timestep_spacing`` (its 0-based timestep + 1), then the end index."""
    k = np.arange(steps)
    if spacing == "trailing":  # N - k N / K: starts at t = 1
        return np.round(np.linspace(N_TRAIN, end, steps + 1)).astype(int)
    if spacing == "leading":  # 1 + k (N // K), highest first: starts below t = 1
        idx = 1 + k[::-1] * (N_TRAIN // steps)
    else:  # linspace(1, N, K) rounded, highest first
        idx = np.round(np.linspace(1, N_TRAIN, steps))[::-1].astype(int)
    return np.concatenate([idx, [end]])


def shift_time(t, shift: float):
    """Stable Diffusion 3's time shift t -> shift t / (1 + (shift - 1) t) (identity for shift 1)."""
    t = np.asarray(t, dtype=np.float64)
    return t if shift == 1.0 else shift * t / (1.0 + (shift - 1.0) * t)


def k_grid(schedule, steps: int, t_end: float, grid: str, rho: float = 7.0, shift: float = 1.0):
    """ksampler's K + 1 levels (alphas, sigmas, times): K noisy levels from the start to t_end,
    then sigma = 0 (alpha = 1, t = 0), the read-out level.

    karras: r = (r_max^(1/rho) + u (r_min^(1/rho) - r_max^(1/rho)))^rho, u uniform on [0, 1], in the
    VE form r = sigma / alpha (Karras et al. 2022, eq. 5); exponential: r geometric (uniform in
    log-SNR); uniform: uniform in t, then ``shift``; trailing / leading / linspace: the DDPM chain's
    levels ``ddpm_indices`` picks (the chain's first level, t = 1 / N, is followed by sigma = 0)."""
    if grid in SPACINGS:
        a_chain, s_chain = schedule.discrete(N_TRAIN)
        idx = ddpm_indices(grid, steps, 0)
        return a_chain[idx].copy(), s_chain[idx].copy(), idx / N_TRAIN
    start = schedule.t_start
    if grid == "uniform":
        t = shift_time(np.linspace(start, t_end, steps), shift)
        a, s = alpha_sigma(schedule, t)
    else:
        a_ends, s_ends = alpha_sigma(schedule, np.array([start, t_end]))
        r_max, r_min = (float(v) for v in s_ends / a_ends)
        if grid == "karras":
            u = np.linspace(0.0, 1.0, steps)
            r = (r_max ** (1 / rho) + u * (r_min ** (1 / rho) - r_max ** (1 / rho))) ** rho
        else:
            r = np.exp(np.linspace(math.log(r_max), math.log(r_min), steps))
        r[0], r[-1] = r_max, r_min
        a, s = np.array([level_of_ratio(schedule, float(v)) for v in r]).T
        t = t_of_half_log_snr(schedule, -np.log(r))
        t[0], t[-1] = start, t_end
    return (np.concatenate([a, [1.0]]), np.concatenate([s, [0.0]]), np.concatenate([t, [0.0]]))


def ddpm_grid(schedule, steps: int, early_stop: float = 0.0, spacing: str = "trailing"):
    """(alphas, sigmas, times) of the K + 1 points of DDPM's discrete chain; index i is at time i / N."""
    alphas, sigmas = schedule.discrete(N_TRAIN)
    idx = ddpm_indices(spacing, steps, round(early_stop * N_TRAIN))
    return alphas[idx], sigmas[idx], idx / N_TRAIN


def localization_grid(t_min: float, t_max: float, steps: int, spacing: str = "log"):
    """(steps + 1,) localization times from 0 to t_max: uniform, or 0 then ``steps`` geometric times
    from t_min to t_max (uniform in log-SNR; a single step goes straight to t_max)."""
    if spacing == "uniform" or steps == 1:
        return np.linspace(0.0, t_max, steps + 1)
    return np.concatenate([[0.0], np.geomspace(t_min, t_max, steps)])


# ---------------------------------------------------------------- the reverse process
def reverse_drift(schedule, t: float, xt, score, c: float):
    """f(t) x - c g(t)^2 score: the probability-flow ODE's velocity for c = 1/2, the reverse SDE's
    drift for c = 1 (Song et al. 2021, eqs. 6 and 13). Overwrites ``score``."""
    score *= -c * float(schedule.g2(t))
    score += float(schedule.f(t)) * xt
    return score


def denoiser_from_score(xt, score, alpha: float, sigma: float):
    """Tweedie: E[X | x_t] = (x_t + sigma^2 score) / alpha."""
    return (xt + sigma * sigma * score) / alpha


def eps_from_score(score, sigma: float):
    """The noise prediction: eps = -sigma score."""
    return -sigma * score


def ddpm_posterior(a_t: float, s_t: float, a_s: float, s_s: float):
    """q(x_s | x_t, x_0) = N(coef_x x_t + coef_0 x_0, beta_tilde I) for s < t (Ho et al. 2020,
    eqs. 6-7, in (alpha, sigma) form): (coef_x, coef_0, beta_tilde, a_ts, s2_ts), with
    a_ts = a_t / a_s and s2_ts = s_t^2 - a_ts^2 s_s^2 the forward step from s to t."""
    a_ts = a_t / a_s
    s2_ts = s_t * s_t - a_ts * a_ts * s_s * s_s
    coef_x = a_ts * s_s * s_s / (s_t * s_t)
    coef_0 = a_s * s2_ts / (s_t * s_t)
    beta_tilde = s_s**2 * max(1.0 - (a_t * s_s / (a_s * s_t)) ** 2, 0.0)
    return coef_x, coef_0, beta_tilde, a_ts, s2_ts


PRIOR_OPTION = Option("prior", "matched", str, "Start law: matched (the Gaussian with the noised target's moments at the "
                      "start time) or standard (N(0, I); ve: N(0, sigma_max^2 I)).", choices=("matched", "standard"))


def start_law(mean, cov, alpha: float, sigma: float, prior: str):
    """The Gaussian a reverse process starts from at (alpha, sigma): ``standard`` N(0, I) (VP) or
    N(0, sigma^2 I) (VE, alpha = 1); ``matched`` the noised target's moments, N(a m, a^2 S + s^2 I)
    (exact for a Gaussian target, so the prior-mismatch error vanishes; nearly so for mixtures)."""
    d = len(mean)
    if prior == "standard":
        std = sigma if alpha == 1.0 else 1.0
        return np.zeros(d), std * std * np.eye(d)
    return alpha * mean, alpha * alpha * cov + sigma * sigma * np.eye(d)
