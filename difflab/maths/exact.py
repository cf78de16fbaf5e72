"""Exact laws of samplers whose steps are affine-plus-Gaussian on a Gaussian target.

Samplers that declare ``capabilities.affine`` (ULA, kinetic Langevin, DDPM/DDIM, the fixed-step
probability-flow solvers, the reverse SDE, localization) map their state z, on a target with an
affine score (a Gaussian N(m, S)), to A_k z + b_k + noise_k, with Gaussian noise of covariance
``noise_cov(k)`` (a float v for v I, or a matrix Q_k). A Gaussian law stays Gaussian:
mean' = A mean + b, cov' = A cov A^T + Q. Rather than re-deriving A_k and b_k for each sampler (a
second copy of its maths), the recursion pushes D + 1 points through the sampler's own
``deterministic`` map: the mean, and the mean plus each column of a square root F of the
covariance. Because the map is affine, its outputs give A mean + b and A F exactly. The state's
law starts from ``exact_law_start`` of the initial law and the sample's law is
``exact_law_output`` of the state's (the identity but for samplers with auxiliary variables).

The law of the output is then compared with the target in closed form: KL in both directions
(``exact_kl`` = KL(law || target), ``exact_kl_target_out`` = KL(target || law)) and the
Bures-Wasserstein W2.
"""

from __future__ import annotations

import numpy as np

from difflab.maths.metrics import gaussian_w2


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    lam, u = np.linalg.eigh(0.5 * (cov + cov.T))
    return u * np.sqrt(np.clip(lam, 0.0, None))


def propagate(sampler, mean0: np.ndarray, cov0: np.ndarray, steps: int, every: int = 0, first: int = 0):
    """The sample's law after steps ``first`` .. ``steps`` - 1 from N(mean0, cov0) (the law before
    step ``first``); also the laws every ``every`` steps.

    Returns (mean, cov, history) with history a list of (step, mean, cov) (step ``first`` included
    when every > 0, and the final step always).
    """
    mean, cov = sampler.exact_law_start(np.asarray(mean0, dtype=np.float64), np.asarray(cov0, dtype=np.float64))
    d = len(mean)
    history = [(first, *sampler.exact_law_output(mean, cov))] if every else []
    for k in range(first, steps):
        pts = np.concatenate([mean[:, None], mean[:, None] + _sqrt_psd(cov)], axis=1)  # (d, d + 1)
        out = sampler.deterministic(np.ascontiguousarray(pts), k)
        mean = out[:, 0].copy()
        af = out[:, 1:] - mean[:, None]
        q = sampler.noise_cov(k)
        cov = af @ af.T + (q * np.eye(d) if np.ndim(q) == 0 else q)
        if every and ((k + 1) % every == 0) and k + 1 != steps:
            history.append((k + 1, *sampler.exact_law_output(mean, cov)))
    history.append((steps, *sampler.exact_law_output(mean, cov)))
    return (*history[-1][1:], history)


def gaussian_kl(m1, s1, m2, s2) -> float:
    """KL(N(m1, s1) || N(m2, s2)) with Cholesky solves; inf if s2 is singular."""
    d = len(m1)
    try:
        l2 = np.linalg.cholesky(s2)
    except np.linalg.LinAlgError:
        return float("inf")
    a = np.linalg.solve(l2, s1)
    trace = np.trace(np.linalg.solve(l2.T, a))  # tr(s2^-1 s1)
    diff = np.linalg.solve(l2, np.asarray(m2) - np.asarray(m1))
    logdet2 = 2.0 * np.log(np.diag(l2)).sum()
    sign, logdet1 = np.linalg.slogdet(s1)
    if sign <= 0:
        return float("inf")
    return max(float(0.5 * (trace + diff @ diff - d + logdet2 - logdet1)), 0.0)  # >= 0 but for round-off


def gaussian_log_pdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) for x (n, d), by one Cholesky factorisation and a triangular solve."""
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * (z * z).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * len(mean) * np.log(2 * np.pi)


def exact_metrics(target, mean: np.ndarray, cov: np.ndarray) -> dict:
    """exact_kl = KL(law || target), exact_kl_target_out = KL(target || law) (the direction of the
    error decomposition's bounds) and exact_w2 of N(mean, cov) against a Gaussian target."""
    return {
        "exact_kl": gaussian_kl(mean, cov, target.mean, target.cov),
        "exact_kl_target_out": gaussian_kl(target.mean, target.cov, mean, cov),
        "exact_w2": gaussian_w2(mean, cov, target.mean, target.cov),
    }


def has_exact_law(sampler, target) -> bool:
    """An affine sampler, run on a score that is affine (the model it sees), judged against a
    Gaussian target."""
    return target.is_gaussian and sampler.capabilities.affine and sampler.target.affine_score
