"""The split of a diffusion sampler's error into its sources (the README's "Error decomposition").

For the reverse SDE with score s~, the standard bound (Song et al. 2021, "Maximum likelihood
training of score-based diffusion models", Thm. 1; Chen et al. 2023, Thm. 2) reads

    KL(p_delta || law of the output) <= KL(p_1 || prior) + int_delta^1 g(t)^2 / 2 E_{p_t}|s~ - s|^2 dt
                                        + (discretisation error),

and the output is compared with p_0 rather than p_delta, which adds the early-stopping gap.
difflab reports each term it can compute:

* ``kl_prior`` = KL(p_1 || prior): exact (two Gaussians) for a Gaussian target; for a mixture a
  Monte Carlo estimate over exact draws of p_1, with its standard error ``kl_prior_se``.
* ``kl_early_stop`` = KL(p_0 || p_delta): exact for a Gaussian target; for a mixture a Monte Carlo
  estimate over exact target draws (``kl_early_stop_se``). Zero when the sampler runs to t = 0.
* ``kl_discretisation`` (Gaussian targets, samplers with an exact law): KL(law of the output when
  started at the exact p_1 || law of the ideal output), the ideal being p_delta for pflow and sde
  and, for ddpm, the target (run to t = 0) or the law of E[X | x_delta] (early stop). Exact.
* ``score_error_term`` (with ``--score-error``): int_delta^1 g(t)^2 / 2 E_{p_t}|s~ - s|^2 dt, a
  left-endpoint sum over the sampler's own time grid, each expectation a Monte Carlo average over
  1,000 exact draws of p_t (``score_error_term_se`` its standard error). The realised
  E|s~ - s|^2 over the sampler's own particles is the per-step series ``score_mse``.
"""

from __future__ import annotations

import itertools

import numpy as np

from difflab import exact
from difflab.schedules import alpha_sigma


def _mc(values: np.ndarray):
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def ideal_output_law(target, sampler):
    """The law the output would have with no discretisation (Gaussian target)."""
    m, S = target.mean, target.cov
    a, s = sampler.end
    if s == 0.0:
        return m, S
    C = a * a * S + s * s * np.eye(len(m))
    if sampler.output == "sample":
        return a * m, C
    return m, a * a * S @ np.linalg.solve(C, S)  # Cov(E[X | Y]) = a^2 S C^-1 S


def error_terms(sampler, target, law0, rng: np.random.Generator, n_mc: int = 20_000) -> dict:
    a1, s1 = sampler.start
    ad, sd = sampler.end
    d = target.dim
    out = {}
    if target.is_gaussian:
        m, S = target.mean, target.cov
        p1 = (a1 * m, a1 * a1 * S + s1 * s1 * np.eye(d))
        out["kl_prior"] = exact.gaussian_kl(*p1, *law0)
        out["kl_early_stop"] = 0.0 if sd == 0.0 else exact.gaussian_kl(m, S, ad * m, ad * ad * S + sd * sd * np.eye(d))
        if exact.has_exact_law(sampler, target) and sampler.target.exact_score:
            mean, cov, _ = exact.propagate(sampler, *p1, sampler.n_steps)
            out["kl_discretisation"] = exact.gaussian_kl(mean, cov, *ideal_output_law(target, sampler))
        return out
    x = target.sample(rng, n_mc)
    y = a1 * x + s1 * rng.standard_normal(x.shape)
    out["kl_prior"], out["kl_prior_se"] = _mc(target.noised_log_prob(y, a1, s1) - exact.gaussian_log_pdf(y, *law0))
    if sd == 0.0:
        out["kl_early_stop"], out["kl_early_stop_se"] = 0.0, 0.0
    else:
        out["kl_early_stop"], out["kl_early_stop_se"] = _mc(target.log_prob(x) - target.noised_log_prob(x, ad, sd))
    return out


def score_error_term(sampler, rng: np.random.Generator, n_mc: int = 1_000) -> dict:
    """int g^2 / 2 E_{p_t}|s~ - s|^2 dt on the sampler's grid, for a perturbed score (else {})."""
    pert = sampler.target
    if pert.exact_score:
        return {}
    times, schedule = np.asarray(sampler.times, dtype=np.float64), sampler.schedule
    x = pert.base.sample(rng, n_mc)
    total, var = 0.0, 0.0
    for t, s in itertools.pairwise(times):
        a, sig = (float(v) for v in alpha_sigma(schedule, t))
        y = a * x + sig * rng.standard_normal(x.shape)
        err = pert.score_error_sq(np.ascontiguousarray(y.T), a, sig)
        w = 0.5 * float(schedule.g2(t)) * (t - s)
        total += w * err.mean()
        var += w * w * err.var(ddof=1) / n_mc
    return {"score_error_term": float(total), "score_error_term_se": float(np.sqrt(var))}
