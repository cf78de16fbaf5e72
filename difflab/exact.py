"""Exact laws of samplers whose steps are affine-plus-Gaussian on a Gaussian target.

ULA, DDPM/DDIM, the fixed-step probability-flow solvers, the reverse SDE and localization with the
exact score of a Gaussian target N(m, S) map x to A_k x + b_k + noise_k, with Gaussian noise of
covariance c_k^2 I (``noise_std``) or Q_k (``noise_cov``). A Gaussian initial law stays Gaussian:
mean' = A mean + b, cov' = A cov A^T + c^2 I (or + Q). Rather than re-deriving A_k and b_k for
each sampler (a second copy of its maths), the recursion pushes d + 1 points through the
sampler's own ``deterministic`` map: the mean, and the mean plus each column of a square root F
of the covariance. Because the map is affine, its outputs give A mean + b and A F exactly.

The law of the output is then compared with the target in closed form: KL(law || target) and the
Bures-Wasserstein W2.
"""

from __future__ import annotations

import numpy as np

from difflab.metrics import gaussian_w2


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    lam, u = np.linalg.eigh(0.5 * (cov + cov.T))
    return u * np.sqrt(np.clip(lam, 0.0, None))


def propagate(sampler, mean0: np.ndarray, cov0: np.ndarray, steps: int, every: int = 0):
    """Law after ``steps`` steps from N(mean0, cov0); also the laws every ``every`` steps.

    Returns (mean, cov, history) with history a list of (step, mean, cov) (step 0 included when
    every > 0, and the final step always).
    """
    d = len(mean0)
    mean, cov = np.asarray(mean0, dtype=np.float64), np.asarray(cov0, dtype=np.float64)
    history = [(0, mean, cov)] if every else []
    for k in range(steps):
        pts = np.concatenate([mean[:, None], mean[:, None] + _sqrt_psd(cov)], axis=1)  # (d, d + 1)
        out = sampler.deterministic(np.ascontiguousarray(pts), k)
        mean = out[:, 0].copy()
        af = out[:, 1:] - mean[:, None]
        if hasattr(sampler, "noise_cov"):
            cov = af @ af.T + sampler.noise_cov(k)
        else:
            c = sampler.noise_std(k)
            cov = af @ af.T + (c * c) * np.eye(d)
        if every and ((k + 1) % every == 0) and k + 1 != steps:
            history.append((k + 1, mean, cov))
    history.append((steps, mean, cov))
    return mean, cov, history


def gaussian_kl(m1, s1, m2, s2) -> float:
    """KL(N(m1, s1) || N(m2, s2)) with Cholesky solves."""
    d = len(m1)
    l2 = np.linalg.cholesky(s2)
    a = np.linalg.solve(l2, s1)
    trace = np.trace(np.linalg.solve(l2.T, a))  # tr(s2^-1 s1)
    diff = np.linalg.solve(l2, np.asarray(m2) - np.asarray(m1))
    logdet2 = 2.0 * np.log(np.diag(l2)).sum()
    sign, logdet1 = np.linalg.slogdet(s1)
    if sign <= 0:
        return float("inf")
    return max(float(0.5 * (trace + diff @ diff - d + logdet2 - logdet1)), 0.0)  # >= 0 but for round-off


def exact_metrics(target, mean: np.ndarray, cov: np.ndarray) -> dict:
    """exact_kl and exact_w2 of N(mean, cov) against a Gaussian target."""
    return {
        "exact_kl": gaussian_kl(mean, cov, target.mean, target.cov),
        "exact_w2": gaussian_w2(mean, cov, target.mean, target.cov),
    }


def has_exact_law(sampler, target) -> bool:
    """Affine steps (a ``deterministic`` map, not adaptive) on a one-component Gaussian target."""
    return (target.n_components == 1 and hasattr(sampler, "deterministic")
            and getattr(sampler, "solver", None) != "rk45"
            and getattr(sampler.target, "affine_score", True))
