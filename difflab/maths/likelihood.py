"""Log-likelihoods by the probability-flow ODE and the instantaneous change of variables.

Along the flow dx/dt = v(x, t) = f(t) x - g(t)^2 s_t(x) / 2 the log density obeys
d log p_t(x_t) / dt = -div v(x_t, t) (Chen et al. 2018; Song et al. 2021, eq. 39), with
div v = d f(t) - g(t)^2 div s_t(x) / 2 and div s_t the analytic trace of the score's Jacobian
(``GaussianMixture.divergence_score_t``). Integrating x and l = int div v from t = delta up to 1
with scipy's RK45 (all points in one system) gives

    log p_delta(x) = log p_1(x_1) + l(1)          (``loglik_ode``: exact terminal density, so the
                                                   only error is the ODE solver's)
    log p_delta(x) ~ log prior(x_1) + l(1)        (``loglik_prior``: what a practitioner gets)

both reported next to the exact log p_delta(x) and log p_0(x).
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from difflab.errors import DifflabError
from difflab.maths.exact import gaussian_log_pdf
from difflab.maths.schedules import alpha_sigma, reverse_drift


def ode_log_likelihood(target, schedule, x: np.ndarray, t_end: float, prior_law, rtol=1e-8, atol=1e-10) -> dict:
    """Per-point log-likelihoods of x (n, d) at time t_end; see the module docstring."""
    n, d = x.shape

    def rhs(t, y):
        xt = y[: n * d].reshape(d, n)
        a, s = (float(v) for v in alpha_sigma(schedule, t))
        g2, f = float(schedule.g2(t)), float(schedule.f(t))
        div = target.divergence_score_t(xt, a, s)
        v = reverse_drift(schedule, t, xt, target.score_t(xt, a, s), 0.5)
        return np.concatenate([v.ravel(), d * f - 0.5 * g2 * div])

    y0 = np.concatenate([np.ascontiguousarray(x.T).ravel(), np.zeros(n)])
    sol = solve_ivp(rhs, (t_end, 1.0), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise DifflabError(f"--likelihood: the likelihood ODE failed: {sol.message}")
    x1 = sol.y[: n * d, -1].reshape(d, n).T
    integral = sol.y[n * d :, -1]
    a1, s1 = (float(v) for v in alpha_sigma(schedule, 1.0))
    ad, sd = (float(v) for v in alpha_sigma(schedule, t_end))
    log_prior = gaussian_log_pdf(x1, *prior_law)
    return {
        "loglik_ode": target.noised_log_prob(x1, a1, s1) + integral,
        "loglik_prior": log_prior + integral,
        "exact_log_p_delta": target.noised_log_prob(x, ad, sd),
        "exact_log_p0": target.log_prob(x),
        "nfe": int(sol.nfev),
    }
