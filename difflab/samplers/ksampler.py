"""The few-step diffusion solvers practitioners use (diffusers' schedulers, k-diffusion's samplers),
run with the target's exact denoiser: ``difflab sample ksampler --solver NAME``.

Notation. A grid of K + 1 noise levels (a_i, s_i) = (alpha, sigma) of the schedule, i = 0 (the
start, t near 1) .. K, whose last level is s_K = 0 (k-diffusion's appended zero, diffusers'
``final_sigmas_type="zero"``). Derived: the VE-form noise level r_i = s_i / a_i (Karras et al.'s
sigma; the state in that form is x / a_i), the half log-SNR l_i = log a_i - log s_i, and per step
h = l_{i+1} - l_i > 0. D_i = E[X | x_i] is the exact denoiser (Tweedie: (x + s^2 score) / a; the
mean of X where a = 0, the flow schedule's start), eps_i = (x_i - a_i D_i) / s_i the implied noise.

Every solver's step k goes from level k to k + 1. The step to s = 0 returns D (x0_hat) for every
solver but ``lms``, which integrates its polynomial to 0 (as k-diffusion and diffusers do).

=====================  ==========================================================  =======
solver (aliases)       step (diffusers' / k-diffusion's algebra, in x = a * VE form)  order
=====================  ==========================================================  =======
euler (ddim)           x' = a' D + s' eps: DDIM (Song et al. 2021, eq. 12), which is
                       Euler in the VE form and the flow-matching Euler step; with
                       ``s_churn`` > 0 EDM's churn (Karras et al. 2022, Alg. 2)         1
euler-ancestral        x' = a' (D + r_down eps) + a' r_up xi, r_up^2 = eta^2 r'^2
                       (1 - (r'/r)^2), r_down^2 = r'^2 - r_up^2; eta = 1 is DDPM
                       ancestral sampling with the posterior variance (beta-tilde)     1
heun                   EDM's Heun in the VE form (Karras et al. 2022, Alg. 1/2),
                       Euler on the last step; ``s_churn`` for Alg. 2's churn           2
dpmpp-2m, dpmpp-3m     DPM-Solver++(2M)/(3M) (Lu et al. 2022, data prediction,
                       multistep; diffusers' midpoint form). 3M as shipped weighs
                       D2 by half its Taylor weight: order 2 (``weight: taylor``: 3)   2, 2 (3)
dpmpp-2m-sde,          SDE-DPM-Solver++(2M), k-diffusion's 3M SDE (eta: the SDE's
dpmpp-3m-sde           share, 1 = the reverse SDE)                                     (1)
dpmpp-2s               DPM-Solver++(2S), single-step, r = 1/2 (eta > 0: k-diffusion's
                       ``dpmpp_2s_ancestral``)                                         2
unipc                  UniPC (Zhao et al. 2023): UniP-p predictor and UniC corrector,
                       B(h) = e^h - 1 (bh2), data prediction                           p + 1
deis                   DEIS (Zhang and Chen 2023), log-rho multistep on eps            p
lms                    linear multistep in the VE form (Adams-Bashforth on d = eps
                       with Lagrange weights in r; k-diffusion's ``sample_lms``)        p
=====================  ==========================================================  =======

The multistep solvers keep the history they need (earlier denoiser outputs, UniPC's last sample)
in the state, stacked under x: ``xt`` is (d * (1 + m), n), ``x`` reads the first block. Warm-up
and final orders follow diffusers: step i of K runs order min(p, i + 1), the last step (to s = 0)
first order, and for K < 15 the one before it at most second order (DPM-Solver++, DEIS); UniPC
runs order min(p, K - i, i + 1). dpmpp-3m-sde is k-diffusion's (diffusers has no third-order SDE
solver): no K < 15 rule, and its second-order warm-up step is phi_2(h) D1, not the midpoint form.

On a Gaussian target every step is affine in the stacked state plus Gaussian noise independent of
it (EDM's churn noise enters before the step's affine map, so its covariance is c^2 A A^T), which
is what ``difflab.maths.exact`` propagates: every fixed-grid solver here reports ``exact_kl`` and
``exact_w2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from difflab.contracts import (
    STEPS,
    Capabilities,
    Option,
    PathStep,
    SamplerEntry,
    at_least_one,
    check_argument,
    non_negative,
    positive,
    with_default,
)
from difflab.errors import ConfigError
from difflab.lazy import lazy
from difflab.maths import schedules
from difflab.samplers import steering
from difflab.samplers.diffusion import (
    MODEL_OPTIONS,
    PRIOR_INIT,
    _early_stop,
    _info,
    _resolve_model,
    _Reverse,
)

np = lazy("numpy", globals(), "np")

WEIGHTS = ("diffusers", "taylor")


def ancestral(r0: float, r1: float, eta: float) -> tuple[float, float]:
    """(r_down, r_up) of an ancestral step from VE level r0 to r1 (k-diffusion's
    ``get_ancestral_step``): r_up^2 = eta^2 r1^2 (r0^2 - r1^2) / r0^2, capped at r1."""
    if r1 == 0.0:
        return 0.0, 0.0
    q = 0.0 if math.isinf(r0) else r1 / r0
    up = min(r1, eta * r1 * math.sqrt(max(1.0 - q * q, 0.0)))
    return math.sqrt(max(r1 * r1 - up * up, 0.0)), up


def lms_coefficients(r: np.ndarray, i: int, order: int) -> np.ndarray:
    """Weights c_j, j = 0..order-1, of d_{i-j} in x_{i+1} / a_{i+1} = x_i / a_i + sum_j c_j d_{i-j}:
    the integral over [r_i, r_{i+1}] of the Lagrange basis polynomial of node r_{i-j} on the nodes
    r_i .. r_{i-order+1}. Gauss-Legendre with `order` points is exact for these degree order - 1
    polynomials (k-diffusion and diffusers integrate the same polynomials by scipy's quad)."""
    nodes = r[i - np.arange(order)]
    u, w = np.polynomial.legendre.leggauss(max(order, 1))
    lo, hi = r[i], r[i + 1]
    tau = 0.5 * (hi - lo) * u + 0.5 * (hi + lo)
    out = np.empty(order)
    for j in range(order):
        basis = np.ones_like(tau)
        for k in range(order):
            if k != j:
                basis *= (tau - nodes[k]) / (nodes[j] - nodes[k])
        out[j] = 0.5 * (hi - lo) * (w @ basis)
    return out


def _deis_ind2(t, b, c):
    """Antiderivative of (log t - log c) / (log b - log c) in t (diffusers' DEIS, order 2); 0 at t = 0."""
    if t == 0.0:
        return 0.0
    return t * (-math.log(c) + math.log(t) - 1) / (math.log(b) - math.log(c))


def _deis_ind3(t, b, c, d):
    """Antiderivative of the order-3 log-rho Lagrange basis (diffusers' DEIS); 0 at t = 0."""
    if t == 0.0:
        return 0.0
    lt, lc, ld = math.log(t), math.log(c), math.log(d)
    num = t * (lc * (ld - lt + 1) - ld * lt + ld + lt * lt - 2 * lt + 2)
    return num / ((math.log(b) - lc) * (math.log(b) - ld))


def _uni_weights(rks: list[float], hh: float, order: int, corrector: bool) -> np.ndarray:
    """UniPC's rho coefficients (B(h) = e^hh - 1, bh2; diffusers' R rho = b)."""
    if order == 1 and corrector:
        return np.array([0.5])
    if order == 2 and not corrector:
        return np.array([0.5])
    ks = np.array([*rks, 1.0])
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = math.expm1(hh)
    fact, R, b = 1, [], []
    for q in range(1, order + 1):
        R.append(ks ** (q - 1))
        b.append(h_phi_k * fact / b_h)
        fact *= q + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    R, b = np.array(R), np.array(b)
    return np.linalg.solve(R, b) if corrector else np.linalg.solve(R[:-1, :-1], b[:-1])


@dataclass(frozen=True)
class KState:
    xt: np.ndarray  # (d * (1 + m), n): x, then the solver's history blocks
    k: int
    d: int

    @property
    def x(self) -> np.ndarray:
        return self.xt[: self.d].T


@dataclass(frozen=True)
class KSampler(_Reverse):
    """A few-step diffusion solver on a grid of levels ``alphas``, ``sigmas`` ((K + 1,), the last
    sigma 0). ``schedule`` maps VE levels back to (alpha, sigma) for the levels between grid points
    (churn, DPM-Solver++(2S)'s midpoint); ``times`` are the grid's times (records and the score-error
    integral)."""

    target: object
    alphas: np.ndarray
    sigmas: np.ndarray
    solver: str = "dpmpp-2m"
    order: int = 0  # unipc, deis, lms (0: the solver's default)
    eta: float | None = None  # ancestral / SDE share (None: the solver's default)
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    weight: str = "diffusers"  # dpmpp-3m(-sde): the weight of the second divided difference
    times: np.ndarray | None = None
    schedule: object = None
    capabilities = Capabilities(per_particle=True, affine=True, diffusion=True)

    def __post_init__(self):
        check_argument("solver", self.solver, tuple(SOLVER_TABLE))
        rec = SOLVER_TABLE[self.solver]
        a, s = np.asarray(self.alphas, dtype=np.float64), np.asarray(self.sigmas, dtype=np.float64)
        if a.ndim != 1 or a.shape != s.shape or len(a) < 2:
            raise ConfigError("grid: alphas and sigmas must be (K + 1,) arrays with K >= 1")
        if np.any(a < 0) or np.any(s < 0) or np.any(np.diff(self._r(a, s)) >= 0):
            raise ConfigError("grid: levels must have alpha, sigma >= 0 and a strictly decreasing sigma / alpha")
        if s[-2] == 0:
            raise ConfigError("grid: only the last level may have sigma = 0")
        order = self.order or (rec.order_range[0] if rec.order_range else 0)
        if rec.order_range and not 1 <= order <= rec.order_range[1]:
            raise ConfigError(f"order: {self.solver} runs orders 1..{rec.order_range[1]}, got {order}")
        object.__setattr__(self, "order", order)
        if self.eta is None:
            object.__setattr__(self, "eta", 0.0 if rec.eta is None else rec.eta)
        check_argument("eta", self.eta, non_negative)
        if self.s_churn and rec.churn_step is None:
            raise ConfigError(f"s_churn: EDM's churn is for euler and heun, not {self.solver}")
        check_argument("s_churn", self.s_churn, non_negative)
        check_argument("s_noise", self.s_noise, non_negative)
        check_argument("weight", self.weight, WEIGHTS)
        if a[0] == 0 and (rec.ve_form or self.s_churn):
            raise ConfigError(f"solver: {self.solver}{' with churn' if self.s_churn else ''} works in the VE form "
                              "x / alpha, infinite at the flow schedule's start (alpha = 0); use "
                              f"{_names(r for r in SOLVER_RECORDS if not r.ve_form).replace(' and ', ' or ')} there")
        object.__setattr__(self, "alphas", a)
        object.__setattr__(self, "sigmas", s)

    # ------------------------------------------------------------ the grid
    @staticmethod
    def _r(a, s):
        with np.errstate(divide="ignore"):
            return np.where(a > 0, s / np.where(a > 0, a, 1.0), np.inf)

    @cached_property  # read at every step: computed once per sampler
    def r(self) -> np.ndarray:
        """VE-form levels s / a (inf where a = 0)."""
        return self._r(self.alphas, self.sigmas)

    @cached_property  # read at every step: computed once per sampler
    def lam(self) -> np.ndarray:
        """Half log-SNR log a - log s (-inf where a = 0, +inf where s = 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.alphas) - np.log(self.sigmas)

    @property
    def K(self) -> int:
        return len(self.alphas) - 1

    @property
    def n_steps(self) -> int:
        return self.K

    @property
    def start(self) -> tuple[float, float]:
        return float(self.alphas[0]), float(self.sigmas[0])

    @property
    def record(self) -> Solver:
        """The solver's record: everything difflab knows of it, stated once."""
        return SOLVER_TABLE[self.solver]

    @property
    def output(self) -> str:
        """'denoised': the last step returns D at the last noisy level; lms integrates to s = 0."""
        return "sample" if self.record.to_zero else "denoised"

    @property
    def end(self) -> tuple[float, float]:
        """(alpha, sigma) of the last noisy level (lms: the output's level, sigma = 0)."""
        i = self.K if self.record.to_zero else self.K - 1
        return float(self.alphas[i]), float(self.sigmas[i])

    @property
    def slots(self) -> int:
        """How many (d,)-blocks of history the solver keeps under x."""
        return self.record.history(self.record.order or self.order)

    @cached_property  # read at every step: computed once per sampler
    def orders(self) -> list[int]:
        """The order of each of the K steps (the record's warm-up and final-order rule)."""
        return self.record.orders(self.record.order or self.order, self.K, self.sigmas[-1] == 0)

    def gamma(self, i: int) -> float:
        """EDM's churn factor at level i."""
        if not self.s_churn or not (self.s_tmin <= self.r[i] <= self.s_tmax):
            return 0.0
        return min(self.s_churn / self.K, math.sqrt(2.0) - 1.0)

    def levels(self, k: int) -> tuple[float, float, float, float]:
        """(a_k, s_k, a_{k+1}, s_{k+1}) as floats: step k's two levels."""
        return tuple(float(v) for v in (self.alphas[k], self.sigmas[k], self.alphas[k + 1], self.sigmas[k + 1]))

    def level(self, r: float) -> tuple[float, float]:
        """(alpha, sigma) of the schedule at VE level r (between grid points)."""
        return schedules.level_of_ratio(self.schedule, r)

    # ------------------------------------------------------------ the denoiser
    def denoise(self, xt: np.ndarray, a: float, s: float) -> np.ndarray:
        """E[X | x] at level (a, s), (d, n): Tweedie from the score; the mean where a = 0."""
        if a == 0.0:
            return np.broadcast_to(np.asarray(self.target.mean, dtype=np.float64)[:, None], xt.shape).copy()
        score = self.target.score_t(xt, a, s)
        score *= s * s
        score += xt
        score /= a
        return score

    # ------------------------------------------------------------ one step
    def noise_std(self, k: int) -> tuple[float, float]:
        """(c_pre, c_post): std of the noise added to x before the step's map (EDM's churn) and
        after it (ancestral and SDE solvers), in x's units."""
        a, s, r = self.alphas, self.sigmas, self.r
        noise = self.record.noise
        if self.record.churn_step is not None:
            g = self.gamma(k)
            return (a[k] * self.s_noise * r[k] * math.sqrt((1 + g) ** 2 - 1), 0.0) if g > 0 else (0.0, 0.0)
        if s[k + 1] == 0.0 or self.eta == 0.0:
            return 0.0, 0.0
        if noise == "ancestral":
            return 0.0, float(a[k + 1] * ancestral(r[k], r[k + 1], self.eta)[1])
        if noise == "sde":
            h = self.lam[k + 1] - self.lam[k]
            return 0.0, float(s[k + 1] * math.sqrt(-math.expm1(-2.0 * self.eta * h)))
        return 0.0, 0.0

    def advance(self, z: np.ndarray, k: int, pre=None, post=None) -> np.ndarray:
        """Step k on the stacked state z (d (1 + m), n); ``pre`` / ``post`` the noise draws (d, n) scaled
        by ``noise_std`` (None: none). Returns the new stacked state. Affine in z on a Gaussian target."""
        d = self.target.dim
        x, hist = z[:d], [z[d * (j + 1): d * (j + 2)] for j in range(self.slots)]
        rec = self.record
        if pre is not None:
            x = x + pre
        if rec.churn_step is not None and self.gamma(k) > 0:
            x, hist = rec.churn_step(self, x, k), []
        elif self.sigmas[k + 1] == 0.0 and not rec.to_zero:  # the read-out: x0_hat (the history is not read again)
            x = self.denoise(x, float(self.alphas[k]), float(self.sigmas[k]))
        else:
            x, hist = rec.step(self, x, hist, k)
        if post is not None:
            x = x + post
        return np.ascontiguousarray(np.concatenate([x, *hist])) if hist else np.ascontiguousarray(x)

    def _edm(self, x, k, heun: bool):
        """EDM's Euler / Heun step in the VE form from level r_hat = r_k (1 + gamma) (the churn noise
        already added to x) to r_{k+1} (Karras et al. 2022, Algorithm 2)."""
        r, a = self.r, self.alphas
        r_hat = float(r[k]) * (1.0 + self.gamma(k))
        a_hat, s_hat = self.level(r_hat) if r_hat != r[k] else (float(a[k]), float(self.sigmas[k]))
        xv = x / a[k]  # the VE-form state at level r_hat
        D = self.denoise(a_hat * xv, a_hat, s_hat)
        dvec = (xv - D) / r_hat
        dt = float(r[k + 1]) - r_hat
        x2 = xv + dt * dvec
        if not heun or r[k + 1] == 0.0:
            return a[k + 1] * x2
        a1, s1 = float(a[k + 1]), float(self.sigmas[k + 1])
        D2 = self.denoise(a1 * x2, a1, s1)
        d2 = (x2 - D2) / r[k + 1]
        return a1 * (xv + 0.5 * dt * (dvec + d2))

    def _dpmpp_2s(self, x, k):
        """DPM-Solver++(2S) with r = 1/2, and with eta > 0 k-diffusion's ancestral variant (to the
        level r_down, the noise r_up added after)."""
        r, a = self.r, self.alphas
        a0, s0, a1 = float(a[k]), float(self.sigmas[k]), float(a[k + 1])
        D = self.denoise(x, a0, s0)
        down = ancestral(r[k], r[k + 1], self.eta)[0]
        xv = x / a0
        if down == 0.0:
            return a1 * D
        h = math.log(r[k]) - math.log(down)
        r_mid = math.exp(-(-math.log(r[k]) + 0.5 * h))
        am, sm = self.level(r_mid)
        x2 = (r_mid / r[k]) * xv - math.expm1(-0.5 * h) * D
        D2 = self.denoise(am * x2, am, sm)
        return a1 * ((down / r[k]) * xv - math.expm1(-h) * D2)

    def _dpmpp(self, x, hist, k, phi2_warmup: bool = False):
        """DPM-Solver++ multistep (orders 1-3) with the SDE share eta (diffusers' midpoint 2M, its
        3M; for eta > 0 k-diffusion's 2M/3M SDE; ``phi2_warmup``: k-diffusion's 3M SDE second-order
        warm-up step phi_2(h) D1). hist = [D_{k-1}, D_{k-2}]."""
        a0, s0, a1, s1 = (float(v) for v in (self.alphas[k], self.sigmas[k], self.alphas[k + 1], self.sigmas[k + 1]))
        lam = self.lam
        D = self.denoise(x, a0, s0)
        h = float(lam[k + 1] - lam[k])
        eta = self.eta
        he = h * (1.0 + eta)
        # first order: x' = (s1 / s0) e^{-eta h} x - a1 expm1(-h (1 + eta)) D
        decay = math.exp(-eta * h) if eta else 1.0  # (h = inf at the flow schedule's start)
        x_new = (s1 / s0 * decay) * x - (a1 * math.expm1(-he)) * D
        order = self.orders[k]
        if order >= 2:
            r0 = float(lam[k] - lam[k - 1]) / h
            D1_0 = (D - hist[0]) / r0
            if order == 2 and phi2_warmup:  # k-diffusion's warm-up: phi_2 D1
                x_new += (a1 * (math.expm1(-he) / he + 1.0)) * D1_0
            elif order == 2:
                x_new -= (0.5 * a1 * math.expm1(-he)) * D1_0
            else:
                r1 = float(lam[k - 1] - lam[k - 2]) / h
                D1_1 = (hist[0] - hist[1]) / r1
                D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
                D2 = (D1_0 - D1_1) / (r0 + r1)
                phi_2 = math.expm1(-he) / he + 1.0
                phi_3 = phi_2 / he - 0.5
                if self.weight == "taylor":  # the Taylor weight of D2 ~ h^2 x0''/2 is twice diffusers'
                    phi_3 *= 2.0
                x_new += (a1 * phi_2) * D1 - (a1 * phi_3) * D2
        return x_new, [D, *hist[:-1]]

    def _unipc(self, x, hist, k):
        """UniPC-p, bh2, data prediction (diffusers' UniPCMultistepScheduler): at level k the new
        denoiser output m_k corrects x_k (UniC, from the last sample and the earlier outputs), then
        UniP predicts x_{k+1}. hist = [last sample, m_{k-1}, .., m_{k-p}]."""
        a, s, lam = self.alphas, self.sigmas, self.lam
        last, ms = hist[0], hist[1:]
        m_k = self.denoise(x, float(a[k]), float(s[k]))
        if k > 0:  # UniC: correct x_k with the order of the last prediction
            oc = self.orders[k - 1]
            h = float(lam[k] - lam[k - 1])
            hh = -h
            rks = [float(lam[k - 1 - j] - lam[k - 1]) / h for j in range(1, oc)]
            rho = _uni_weights(rks, hh, oc, corrector=True)
            b_h = math.expm1(hh)
            corr = rho[-1] * (m_k - ms[0])
            for j, rk in enumerate(rks, start=1):
                corr = corr + rho[j - 1] * ((ms[j] - ms[0]) / rk)
            x = (s[k] / s[k - 1]) * last - (a[k] * math.expm1(hh)) * ms[0] - (a[k] * b_h) * corr
        new_hist = [x, m_k, *ms[:-1]]
        if s[k + 1] == 0.0:
            return m_k, new_hist
        op = self.orders[k]
        h = float(lam[k + 1] - lam[k])
        hh = -h
        x_new = (s[k + 1] / s[k]) * x - (a[k + 1] * math.expm1(hh)) * m_k
        if op > 1:
            olds = [m_k, *ms]
            rks = [float(lam[k - j] - lam[k]) / h for j in range(1, op)]
            rho = _uni_weights(rks, hh, op, corrector=False)
            pred = 0.0
            for j, rk in enumerate(rks, start=1):
                pred = pred + rho[j - 1] * ((olds[j] - m_k) / rk)
            x_new = x_new - (a[k + 1] * math.expm1(hh)) * pred
        return x_new, new_hist

    def _deis(self, x, hist, k):
        """DEIS, log-rho multistep on eps (diffusers' DEISMultistepScheduler). hist = [eps_{k-1}, ..]."""
        a, s = self.alphas, self.sigmas
        a0, s0, a1, s1 = (float(v) for v in (a[k], s[k], a[k + 1], s[k + 1]))
        D = self.denoise(x, a0, s0)
        eps = (x - a0 * D) / s0
        order = self.orders[k]
        rho = self.r
        if order == 1:
            h = float(self.lam[k + 1] - self.lam[k])
            x_new = (a1 / a0) * x - (s1 * math.expm1(h)) * eps
        elif order == 2:
            rt, r0, r1 = float(rho[k + 1]), float(rho[k]), float(rho[k - 1])
            c1 = _deis_ind2(rt, r0, r1) - _deis_ind2(r0, r0, r1)
            c2 = _deis_ind2(rt, r1, r0) - _deis_ind2(r0, r1, r0)
            x_new = a1 * (x / a0 + c1 * eps + c2 * hist[0])
        else:
            rt, r0, r1, r2 = (float(rho[j]) for j in (k + 1, k, k - 1, k - 2))
            c1 = _deis_ind3(rt, r0, r1, r2) - _deis_ind3(r0, r0, r1, r2)
            c2 = _deis_ind3(rt, r1, r2, r0) - _deis_ind3(r0, r1, r2, r0)
            c3 = _deis_ind3(rt, r2, r0, r1) - _deis_ind3(r0, r2, r0, r1)
            x_new = a1 * (x / a0 + c1 * eps + c2 * hist[0] + c3 * hist[1])
        return x_new, [eps, *hist[:-1]]

    def _lms(self, x, hist, k):
        """Linear multistep in the VE form: x_{k+1} / a_{k+1} = x_k / a_k + sum_j c_j d_{k-j},
        d = eps (k-diffusion's sample_lms; diffusers' LMSDiscreteScheduler). hist = [d_{k-1}, ..]."""
        a0, s0, a1 = float(self.alphas[k]), float(self.sigmas[k]), float(self.alphas[k + 1])
        D = self.denoise(x, a0, s0)
        dv = (x - a0 * D) / s0  # (x/a - D) / r = eps
        cur = min(k + 1, self.order)
        c = lms_coefficients(self.r, k, cur)
        ds = [dv, *hist]
        xv = x / a0 + sum(c[j] * ds[j] for j in range(cur))
        return a1 * xv, [dv, *hist[:-1]] if hist else []

    # ------------------------------------------------------------ the contract
    def init(self, x) -> KState:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
        d = x.shape[0]
        z = np.concatenate([x, np.zeros((d * self.slots, x.shape[1]))]) if self.slots else x
        return KState(xt=np.ascontiguousarray(z), k=0, d=d)

    def deterministic(self, xt: np.ndarray, k: int) -> np.ndarray:
        return self.advance(xt, k)

    def noise_cov(self, k: int):
        """The covariance of what the noise adds to the stacked state: post-noise on the x block;
        churn noise c xi enters before the affine step map, so it adds c^2 A_x A_x^T (A_x the map's
        linear part on x, read off the map itself)."""
        pre, post = self.noise_std(k)
        d, D = self.target.dim, self.target.dim * (1 + self.slots)
        if pre == 0.0 and post == 0.0:
            return 0.0
        if pre == 0.0 and self.slots == 0:
            return post * post
        q = np.zeros((D, D))
        q[:d, :d] += post * post * np.eye(d)
        if pre > 0.0:
            pts = np.zeros((D, d + 1))
            pts[np.arange(d), np.arange(1, d + 1)] = 1.0
            out = self.advance(pts, k)
            A = out[:, 1:] - out[:, :1]
            q += pre * pre * (A @ A.T)
        return q

    def exact_law_start(self, mean, cov):
        m = self.slots * len(mean)
        if not m:
            return mean, cov
        big = np.zeros((len(mean) + m, len(mean) + m))
        big[: len(mean), : len(mean)] = cov
        return np.concatenate([mean, np.zeros(m)]), big

    def exact_law_output(self, mean, cov):
        d = self.target.dim
        return mean[:d], cov[:d, :d]

    def path_step(self, k: int) -> PathStep | None:
        """Single-step solvers without churn are Markov in x: step k stands for p(x_{k+1} | x_k). The
        read-out to sigma = 0 and the multistep solvers (whose steps read the history) have none."""
        if self.slots or self.s_churn or self.record.to_zero or self.sigmas[k + 1] == 0.0:
            return None
        return PathStep((float(self.alphas[k]), float(self.sigmas[k])),
                        (float(self.alphas[k + 1]), float(self.sigmas[k + 1])))

    def nfe(self, k: int) -> float:
        """Denoiser evaluations of step k: one on the read-out to sigma = 0."""
        last = self.sigmas[k + 1] == 0.0 and not self.record.to_zero
        return 1.0 if last else float(self.record.nfe)

    def step(self, rng: np.random.Generator, state: KState):
        k = state.k
        info = _info(self.target, state.xt[: state.d], float(self.alphas[k]), float(self.sigmas[k]))
        info["nfe"] = self.nfe(k)
        c_pre, c_post = self.noise_std(k)
        shape = (state.d, state.xt.shape[1])
        pre = rng.standard_normal(shape) * c_pre if c_pre > 0 else None
        post = rng.standard_normal(shape) * c_post if c_post > 0 else None
        return KState(xt=self.advance(state.xt, k, pre, post), k=k + 1, d=state.d), info


# ---------------------------------------------------------------- the solvers: one record each
def _diffusers_orders(p: int, K: int, final_zero: bool, *, last_to_zero: bool = True) -> list[int]:
    """diffusers' warm-up and lower-order-final rules: step i runs min(p, i + 1); the last step
    first order (K < 15, or a step to sigma = 0 where ``last_to_zero``), the one before at most
    second order for K < 15."""
    out = []
    for i in range(K):
        o = min(p, i + 1)
        if i == K - 1 and (K < 15 or (final_zero and last_to_zero)):
            o = 1
        elif i == K - 2 and K < 15:
            o = min(o, 2)
        out.append(o)
    return out


def _kdiffusion_3m_sde_orders(p: int, K: int, final_zero: bool) -> list[int]:
    """k-diffusion's 3M SDE: warm-up, then the read-out to 0 (no K < 15 rule)."""
    return [min(p, i + 1) if i < K - 1 or not final_zero else 1 for i in range(K)]


def _unipc_orders(p: int, K: int, final_zero: bool) -> list[int]:
    return [min(p, K - i, i + 1) for i in range(K)]


def _euler(ks, x, hist, k):
    """DDIM: x' = a' D + (s' / s) (x - a D)."""
    a0, s0, a1, s1 = ks.levels(k)
    D = ks.denoise(x, a0, s0)
    return a1 * D + (s1 / s0) * (x - a0 * D), hist


def _euler_ancestral(ks, x, hist, k):
    """x' = a' (D + r_down eps), the noise a' r_up xi added after (``noise_std``)."""
    a0, s0, a1, _ = ks.levels(k)
    D = ks.denoise(x, a0, s0)
    down = ancestral(ks.r[k], ks.r[k + 1], ks.eta)[0]
    eps = (x - a0 * D) / s0
    return a1 * D + (a1 * down) * eps, hist


@dataclass(frozen=True)
class Solver:
    """One solver, stated once (k-diffusion's style: its step function and what it needs).

    ``step(ks, x, hist, k) -> (x, hist)``: step k between two noisy levels (x (d, n), hist its
    history blocks); ``aliases``: other names users know; ``order``: a fixed multistep order
    (DPM-Solver++ 2M/3M), or ``order_range`` (default, max) of a settable ``--order``;
    ``history(order)``: the history blocks kept; ``orders(order, K, final_zero)``: each step's
    order; ``eta``: the default ancestral/SDE share (None: no ``--eta``); ``noise``: what is added
    after the step ('none', 'ancestral', 'sde'); ``churn_step(ks, x, k)``: EDM's churned step
    (None: no churn); ``ve_form``: written on x / alpha (not at the flow schedule's start);
    ``nfe``: denoiser evaluations a step; ``weight``: has the D2 weight option; ``to_zero``:
    integrates to sigma = 0 itself (no read-out step)."""

    name: str
    step: Callable
    aliases: tuple = ()
    order: int = 0
    order_range: tuple | None = None
    history: Callable[[int], int] = lambda order: 0
    orders: Callable = _diffusers_orders
    eta: float | None = None
    noise: str = "none"
    churn_step: Callable | None = None
    ve_form: bool = False
    nfe: int = 1
    weight: bool = False
    to_zero: bool = False


def _multistep(order: int = 0):
    return {"order": order, "history": lambda p: p - 1}


SOLVER_RECORDS = (
    Solver("euler", _euler, aliases=("ddim",), churn_step=lambda ks, x, k: ks._edm(x, k, heun=False)),
    Solver("euler-ancestral", _euler_ancestral, aliases=("euler_ancestral", "euler_a"), eta=1.0, noise="ancestral"),
    Solver("heun", lambda ks, x, hist, k: (ks._edm(x, k, heun=True), hist), ve_form=True, nfe=2,
           churn_step=lambda ks, x, k: ks._edm(x, k, heun=True)),
    Solver("dpmpp-2m", KSampler._dpmpp, aliases=("dpmpp_2m",), **_multistep(2)),
    Solver("dpmpp-3m", KSampler._dpmpp, aliases=("dpmpp_3m",), ve_form=True, weight=True, **_multistep(3)),
    Solver("dpmpp-2m-sde", KSampler._dpmpp, aliases=("dpmpp_2m_sde",), eta=1.0, noise="sde", **_multistep(2)),
    Solver("dpmpp-3m-sde", lambda ks, x, hist, k: ks._dpmpp(x, hist, k, phi2_warmup=True), aliases=("dpmpp_3m_sde",),
           eta=1.0, noise="sde", ve_form=True, weight=True, orders=_kdiffusion_3m_sde_orders, **_multistep(3)),
    Solver("dpmpp-2s", lambda ks, x, hist, k: (ks._dpmpp_2s(x, k), hist), aliases=("dpmpp_2s", "dpmpp_2s_ancestral"),
           eta=0.0, noise="ancestral", ve_form=True, nfe=2),
    Solver("unipc", KSampler._unipc, aliases=("uni_pc", "uni_pc_bh2"), order_range=(2, 3),
           history=lambda p: p + 1, orders=_unipc_orders),
    Solver("deis", KSampler._deis, order_range=(2, 3), ve_form=True, history=lambda p: p - 1,
           orders=lambda p, K, final_zero: _diffusers_orders(p, K, final_zero, last_to_zero=False)),
    Solver("lms", KSampler._lms, aliases=("k_lms",), order_range=(4, 4), ve_form=True, history=lambda p: p - 1,
           to_zero=True),
)
SOLVER_TABLE = {rec.name: rec for rec in SOLVER_RECORDS}
SOLVERS = tuple(SOLVER_TABLE)
# Other names users know for the same solver (k-diffusion's function names, diffusers' and
# ComfyUI's sampler names); the run file records the canonical name.
SOLVER_ALIASES = {alias: rec.name for rec in SOLVER_RECORDS for alias in rec.aliases}


def _names(recs) -> str:
    """'a, b and c' of the records' names."""
    names = [rec.name for rec in recs]
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]


# ---------------------------------------------------------------- options and construction
KGRIDS = ("karras", "exponential", "uniform", "trailing", "leading", "linspace")
GRID_ALIASES = {"logsnr": "exponential"}


def _resolve_solver(p: dict) -> None:
    """The solver's own options: set only where the solver's record has them, defaults filled in."""
    rec = SOLVER_TABLE[p["solver"]]
    solver = rec.name
    if rec.order_range:
        p["order"] = p["order"] or rec.order_range[0]
        if p["order"] > rec.order_range[1]:
            raise ConfigError(f"--order: {solver} runs orders 1..{rec.order_range[1]}, got {p['order']}")
    elif p["order"] is not None:
        raise ConfigError(f"--order: only for {_names(r for r in SOLVER_RECORDS if r.order_range)} (the others have "
                          f"a fixed order), got {p['order']}")
    else:
        p.pop("order")
    if rec.eta is not None:
        p["eta"] = rec.eta if p["eta"] is None else p["eta"]
    elif p["eta"] is not None:
        raise ConfigError(f"--eta: only for {_names(r for r in SOLVER_RECORDS if r.eta is not None)}, not {solver}")
    else:
        p.pop("eta")
    if rec.churn_step is None or not p["s_churn"]:
        if p["s_churn"]:
            raise ConfigError(f"--s-churn: EDM's churn is for {_names(r for r in SOLVER_RECORDS if r.churn_step)}, "
                              f"not {solver}")
        for key in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
            p.pop(key)
    elif p["s_tmax"] is None:
        p.pop("s_tmax")
    if not rec.weight:
        if p["weight"] != "diffusers":
            raise ConfigError(f"--weight: only for {_names(r for r in SOLVER_RECORDS if r.weight)}, not {solver}")
        p.pop("weight")


def _resolve_grid(p: dict) -> None:
    """The grid against the schedule: chain spacings on a vp chain, the flow schedule's rules."""
    grid = p["grid"]
    if grid in schedules.SPACINGS:
        if p["schedule"] not in ("vp-linear", "vp-cosine"):
            raise ConfigError(f"--grid: {grid} picks levels of DDPM's 1000-step chain, a vp schedule's; "
                              f"not {p['schedule']}")
        if p["early_stop"] is not None:
            raise ConfigError(f"--early-stop: the {grid} grid ends at the chain's first level; leave it out")
        if p["steps"] > schedules.N_TRAIN - 1:
            raise ConfigError(f"--steps: the {grid} grid picks at most {schedules.N_TRAIN - 1} of the chain's levels, "
                              f"got {p['steps']}")
        p.pop("early_stop")
    else:
        p["early_stop"] = 1e-3 if p["early_stop"] is None else p["early_stop"]
    if p["shift"] != 1.0 and grid != "uniform":
        raise ConfigError(f"--shift: the time shift warps the uniform grid (Stable Diffusion 3); not --grid {grid}")
    if grid in ("karras", "exponential") and p["schedule"] == "flow":
        raise ConfigError(f"--grid: {grid} spaces sigma / alpha, infinite at the flow schedule's start; use uniform")
    if grid != "karras":
        p.pop("rho")


def _resolve(p: dict) -> dict:
    if p["grid"] is None:
        p["grid"] = "uniform" if p["schedule"] == "flow" else "karras"
    _resolve_solver(p)
    _resolve_grid(p)
    if p["steps"] < 2:
        raise ConfigError("--steps: at least 2 (the last step is the read-out to sigma = 0)")
    p = _resolve_model(p)
    solver = p["solver"]
    if p["schedule"] == "flow" and (SOLVER_TABLE[solver].ve_form or p.get("s_churn")):
        raise ConfigError(f"--solver: {solver}{' with --s-churn' if p.get('s_churn') else ''} works in the VE form "
                          "x / alpha, infinite at the flow schedule's start; use "
                          f"{_names(r for r in SOLVER_RECORDS if not r.ve_form).replace(' and ', ' or ')}")
    return p


def _build(target, p: dict) -> KSampler:
    schedule = schedules.make_schedule(p, schedules.KSCHEDULES)
    alphas, sigmas, times = schedules.k_grid(schedule, p["steps"], p.get("early_stop", 0.0), p["grid"],
                                             rho=p.get("rho", 7.0), shift=p["shift"])
    churn = {k: p[k] for k in ("s_churn", "s_tmin", "s_tmax", "s_noise") if k in p}
    return KSampler(target, alphas, sigmas, solver=p["solver"], order=p.get("order", 0), eta=p.get("eta"),
                    weight=p.get("weight", "diffusers"), times=times, schedule=schedule, **churn)


def _aliases(table: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in table.items())


KSAMPLER_ENTRY = SamplerEntry(
    "ksampler", "The few-step solvers of diffusers and k-diffusion (DDIM, Euler ancestral, Heun/EDM, DPM-Solver++ "
    "2M/3M/SDE/2S, UniPC, DEIS, LMS) on Karras, exponential, uniform (with shift) or DDPM-chain grids.",
    options=(Option("schedule", "vp-linear", str, "Noise schedule: vp-linear, vp-cosine, ve, edm (ve with sigma in "
                    "[0.002, 80]) or flow (rectified flow: alpha = 1 - t, sigma = t). Aliases: "
                    + _aliases(schedules.SCHEDULE_ALIASES) + ".", choices=tuple(schedules.KSCHEDULES),
                    aliases=schedules.SCHEDULE_ALIASES),
             *schedules.SCHEDULE_OPTIONS[1:3],
             Option("sigma_min", None, float, "ve / edm: smallest noise level (default 0.01 / 0.002).", check=positive),
             Option("sigma_max", None, float, "ve / edm: largest noise level (default 50 / 80).", check=positive),
             Option("solver", "dpmpp-2m", str, "euler, euler-ancestral, heun, dpmpp-2m, dpmpp-3m, dpmpp-2m-sde, "
                    "dpmpp-3m-sde, dpmpp-2s, unipc, deis or lms. Aliases: " + _aliases(SOLVER_ALIASES) + ".",
                    choices=SOLVERS, aliases=SOLVER_ALIASES),
             Option("grid", None, str, "Noise levels: karras (Karras et al.'s rho-spaced sigma / alpha), exponential "
                    "(uniform in log-SNR), uniform (in t), or DDPM-chain spacings trailing, leading, linspace. Default: "
                    "karras (flow: uniform).", choices=KGRIDS, aliases=GRID_ALIASES),
             Option("rho", 7.0, float, "karras grid: the exponent rho.", check=positive),
             Option("shift", 1.0, float, "uniform grid: Stable Diffusion 3's time shift t -> shift t / (1 + (shift - 1) "
                    "t) (1: none).", check=positive),
             Option("early_stop", None, float, "The last noisy level's time DELTA > 0 (then a read-out step to "
                    "sigma = 0). Default 1e-3; not with the chain spacings.", check=_early_stop(False)),
             Option("order", None, int, "unipc (1-3, default 2), deis (1-3, default 2), lms (1-4, default 4): the "
                    "multistep order.", check=at_least_one),
             Option("eta", None, float, "euler-ancestral, dpmpp-2s: the ancestral noise share (default 1 and 0); "
                    "dpmpp-*-sde: the SDE share (default 1).", check=non_negative),
             Option("weight", "diffusers", str, "dpmpp-3m, dpmpp-3m-sde: the weight of the second divided "
                    "difference D2: diffusers (as diffusers and k-diffusion ship it: second order, measured) or taylor "
                    "(twice that, the Taylor weight: third order).", choices=WEIGHTS),
             Option("s_churn", 0.0, float, "euler, heun: EDM's S_churn (0: no churn).", check=non_negative),
             Option("s_tmin", 0.0, float, "EDM's S_tmin: churn only where sigma / alpha >= it.", check=non_negative),
             Option("s_tmax", None, float, "EDM's S_tmax: churn only where sigma / alpha <= it (default: no bound).",
                    check=non_negative),
             Option("s_noise", 1.0, float, "EDM's S_noise: the churn noise's scale.", check=non_negative),
             *MODEL_OPTIONS),
    build=_build, resolve=_resolve, needs=("noised_law",), init=PRIOR_INIT,
    option_needs=steering.needs, steer=steering.steer,
    steps=with_default(STEPS, 20, "Grid steps K (K + 1 levels, the last sigma = 0); NFE = K for the first-order "
                       "and multistep solvers, 2K - 1 for heun and dpmpp-2s."),
)
