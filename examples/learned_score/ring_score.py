"""A learned score for the ring (the shipped ``gmm``), fitted by denoising score matching with no
deep-learning dependency: random Fourier features and one closed-form ridge regression.

Training data: N exact draws x of the ring, each noised R times at times t ~ U(0, 1) of the
vp-linear schedule, y = alpha_t x + sigma_t eps. The model predicts the noise from (y, log sigma),

    eps_hat = sigma (y - alpha m) / s(sigma)^2 + B^T phi(y / s(sigma), log sigma),

the first term the exact noise prediction of the Gaussian with the data's mean m and variance v
(a skip connection: it keeps particles far from the data pulled back), the second F random Fourier
features phi(u) = sqrt(2 / F) cos(W u + c), W ~ N(0, I / l^2), c ~ U(0, 2 pi), with
s(sigma)^2 = alpha^2 v + sigma^2 the noised data's scale. B minimises sum |eps_hat - eps|^2 +
lam |B|^2 (denoising score matching in noise-prediction form: its minimiser is E[eps | y], i.e.
-sigma times the score of the noised law), solved in closed form. The score is -eps_hat / sigma.

Use it as a difflab plug-in: ``difflab --plugin examples/learned_score/ring_score.py sample ddpm
-t examples/learned_score/ring-learned.yaml``. The fit runs once at import, seeded (about a second).
"""

from __future__ import annotations

import numpy as np

N_DRAWS, REPEATS, FEATURES, LENGTH, RIDGE, SEED = 4000, 8, 600, 0.7, 1e-3, 0


def _features(y: np.ndarray, alpha, sigma) -> np.ndarray:
    """phi (n, F) of points y (n, d) at noise levels (alpha, sigma), scalars or (n,) arrays."""
    alpha, sigma = np.broadcast_to(alpha, len(y)), np.broadcast_to(sigma, len(y))
    scale = np.sqrt(alpha**2 * _VAR + sigma**2)
    u = np.column_stack([y / scale[:, None], np.log(sigma)])
    return np.sqrt(2.0 / FEATURES) * np.cos(u @ _W.T + _C)


def _skip(y: np.ndarray, alpha, sigma) -> np.ndarray:
    """The Gaussian approximation's noise prediction sigma (y - alpha m) / (alpha^2 v + sigma^2), (n, d)."""
    alpha, sigma = np.broadcast_to(alpha, len(y))[:, None], np.broadcast_to(sigma, len(y))[:, None]
    return sigma * (y - alpha * _MEAN) / (alpha**2 * _VAR + sigma**2)


def _fit():
    import difflab
    from difflab.maths.schedules import VPLinear, alpha_sigma

    rng = np.random.Generator(np.random.SFC64(SEED))
    target = difflab.load_target("gmm")
    x = np.repeat(target.sample(rng, N_DRAWS), REPEATS, axis=0)
    t = rng.uniform(1e-3, 1.0, len(x))
    alpha, sigma = alpha_sigma(VPLinear(), t)
    eps = rng.standard_normal(x.shape)
    y = alpha[:, None] * x + sigma[:, None] * eps
    d = x.shape[1]
    w = rng.standard_normal((FEATURES, d + 1)) / LENGTH
    c = rng.uniform(0.0, 2.0 * np.pi, FEATURES)
    return target.mean, float(np.diag(target.cov).mean()), w, c, (y, alpha, sigma, eps)


_MEAN, _VAR, _W, _C, _DATA = _fit()
_y, _alpha, _sigma, _eps = _DATA
_PHI = _features(_y, _alpha, _sigma)
_RESIDUAL = _eps - _skip(_y, _alpha, _sigma)
_B = np.linalg.solve(_PHI.T @ _PHI + RIDGE * len(_y) * np.eye(FEATURES), _PHI.T @ _RESIDUAL)  # (F, d)
del _DATA, _PHI, _RESIDUAL, _y, _alpha, _sigma, _eps


def score(x: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """The learned score of alpha X + sigma Z at x (n, d), as (n, d): one call for every particle."""
    return -(_skip(x, alpha, sigma) + _features(x, alpha, sigma) @ _B) / sigma
