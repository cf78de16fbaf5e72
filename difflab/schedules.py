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

import numpy as np


@dataclass(frozen=True)
class VPLinear:
    beta_min: float = 0.1
    beta_max: float = 20.0
    name: str = "vp-linear"

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
    name: str = "vp-cosine"

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
    name: str = "ve"

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


def alpha_sigma(schedule, t):
    """(alpha_t, sigma_t) of any schedule; sigma from alpha for VP (stable near t = 0)."""
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
    if isinstance(schedule, VE):
        return schedule.t_of_sigma(np.exp(-lam))
    # VP: alpha^2 = 1 / (1 + exp(-2 lambda))  ->  log alpha = -log1p(exp(-2 lambda)) / 2
    return schedule.t_of_log_alpha(-0.5 * np.logaddexp(0.0, -2.0 * lam))


SCHEDULES = {"vp-linear": VPLinear, "vp-cosine": VPCosine, "ve": VE}
