"""Gaussian mixtures (a Gaussian is the one-component case) with exact noised laws.

Notation (used by every diffusion sampler):

=============  ==============================================================================
``X``          a draw from the target p = sum_k w_k N(mu_k, S_k), in R^d
``Y``          ``alpha * X + sigma * Z`` with Z ~ N(0, I) independent of X (alpha > 0, sigma >= 0)
``S_k``        ``U_k diag(lam_k) U_k^T``: eigendecomposition computed once at construction
``C_k``        covariance of Y given component k: ``alpha^2 S_k + sigma^2 I
               = U_k diag(c_k) U_k^T`` with ``c_k = alpha^2 lam_k + sigma^2``
``z_k``        ``U_k^T (y - alpha mu_k)``: coordinates of y in component k's eigenbasis
``r_k(y)``     posterior component probability p(k | Y = y)
=============  ==============================================================================

Because ``U_k`` does not depend on (alpha, sigma), one factorisation serves every noise level:
each evaluation is one stacked GEMM ``y @ [U_1 ... U_K]`` (n, d) x (d, K d), elementwise work on
(n, K, d), a log-sum-exp over components, and one GEMM back. There is no Python loop over
particles or components and no matrix inverse.

Identities implemented (p_{alpha,sigma} is the law of Y):

1. log p_{alpha,sigma}(y) = logsumexp_k [log w_k - (sum_j z_kj^2 / c_kj + sum_j log c_kj
   + d log 2 pi) / 2]
2. grad log p_{alpha,sigma}(y) = - sum_k r_k U_k (z_k / c_k)
3. E[X | Y = y] = sum_k r_k (mu_k + U_k (alpha lam_k / c_k) z_k)  (Gaussian conditioning), which
   equals (y + sigma^2 grad log p_{alpha,sigma}(y)) / alpha (Tweedie's formula; tested, not used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class _Evaluation:
    """Quantities shared by the log density, score and denoiser at one noise level."""

    log_prob: np.ndarray  # (n,)
    resp: np.ndarray  # (n, K) posterior component probabilities
    z_over_c: np.ndarray  # (n, K, d) C_k^{-1}(y - alpha mu_k) in eigen-coordinates
    z: np.ndarray  # (n, K, d)


class GaussianMixture:
    """A mixture of K Gaussians in d dimensions, with closed-form scores and noised laws.

    Parameters
    ----------
    weights : (K,) array, positive, normalised here.
    means : (K, d) array.
    covs : (K, d, d) array of symmetric positive definite matrices.
    name, kind : labels ('gaussian' for K = 1 built from a ``kind: gaussian`` file, else 'gmm').

    All methods take batches ``x`` of shape (n, d) (a single point (d,) is also accepted).
    """

    def __init__(self, weights, means, covs, *, name: str = "target", kind: str = "gmm"):
        w = np.asarray(weights, dtype=np.float64)
        self.weights = w / w.sum()
        self.means = np.atleast_2d(np.asarray(means, dtype=np.float64))
        self.covs = np.asarray(covs, dtype=np.float64).reshape(len(w), self.means.shape[1], -1)
        self.name = name
        self.kind = kind
        K, d = self.means.shape
        self.n_components, self.dim = K, d
        self.log_weights = np.log(self.weights)
        # One eigendecomposition per component, once: serves every (alpha, sigma).
        lam, U = np.linalg.eigh(self.covs)  # (K, d), (K, d, d)
        self.eigvals = lam
        self.eigvecs = U
        # Stacked eigenbases: column block k of _U_stack is U_k, so y @ _U_stack = [y U_1, ..., y U_K].
        self._U_stack = np.ascontiguousarray(U.transpose(1, 0, 2).reshape(d, K * d))
        self._U_stack_T = np.ascontiguousarray(self._U_stack.T)
        self._mu_rot = np.einsum("kd,kde->ke", self.means, U)  # U_k^T mu_k, (K, d)
        self._sqrt_factor = U * np.sqrt(lam)[:, None, :]  # S_k = F_k F_k^T, (K, d, d)
        # Identity eigenbases (diagonal covariances, e.g. the ring): skip the GEMMs.
        self._diagonal = bool(np.all(self.covs == np.eye(d) * np.diagonal(self.covs, axis1=1, axis2=2)[:, None, :]))
        if self._diagonal:
            self.eigvals = np.diagonal(self.covs, axis1=1, axis2=2).copy()
            self.eigvecs = np.broadcast_to(np.eye(d), (K, d, d)).copy()
            self._mu_rot = self.means.copy()
            self._sqrt_factor = self.eigvecs * np.sqrt(self.eigvals)[:, None, :]

    # ------------------------------------------------------------------ moments and sampling
    @property
    def mean(self) -> np.ndarray:
        """Mean of the mixture, (d,)."""
        return self.weights @ self.means

    @property
    def cov(self) -> np.ndarray:
        """Covariance of the mixture, (d, d): sum_k w_k (S_k + mu_k mu_k^T) - mu mu^T."""
        m = self.mean
        second = np.einsum("k,kij->ij", self.weights, self.covs) + np.einsum(
            "k,ki,kj->ij", self.weights, self.means, self.means
        )
        return second - np.outer(m, m)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Exact i.i.d. draws, (n, d): a component by its weight, then mu_k + F_k z."""
        comp = self.sample_components(rng, n)
        z = rng.standard_normal((n, self.dim))
        # All K candidates F_k z in one GEMM, then row i keeps block comp[i]: no loop over components.
        K, d = self.n_components, self.dim
        F_stack = self._sqrt_factor.transpose(2, 0, 1).reshape(d, K * d)  # block k is F_k^T
        cand = (z @ F_stack).reshape(n, K, d)
        return self.means[comp] + cand[np.arange(n), comp]

    def sample_components(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Component labels of n draws, (n,) int."""
        cdf = np.cumsum(self.weights)
        cdf[-1] = 1.0
        return np.searchsorted(cdf, rng.random(n), side="right")

    # ------------------------------------------------------------------ the shared evaluation
    def _evaluate(self, y: np.ndarray, alpha: float, sigma: float) -> _Evaluation:
        y = np.asarray(y, dtype=np.float64)
        n = y.shape[0]
        K, d = self.n_components, self.dim
        c = alpha * alpha * self.eigvals + sigma * sigma  # (K, d)
        if self._diagonal:
            z = y[:, None, :] - alpha * self.means  # (n, K, d)
        else:
            z = (y @ self._U_stack).reshape(n, K, d)
            z -= alpha * self._mu_rot
        z_over_c = z / c
        maha = np.einsum("nkd,nkd->nk", z, z_over_c)
        log_norm = self.log_weights - 0.5 * (np.log(c).sum(axis=1) + d * _LOG_2PI)
        logits = log_norm - 0.5 * maha  # (n, K)
        log_prob = logsumexp(logits, axis=1)
        resp = np.exp(logits - log_prob[:, None])
        return _Evaluation(log_prob=log_prob, resp=resp, z_over_c=z_over_c, z=z)

    def _back(self, coeffs: np.ndarray) -> np.ndarray:
        """sum_k U_k coeffs_k for coeffs of shape (n, K, d)."""
        if self._diagonal:
            return coeffs.sum(axis=1)
        n = coeffs.shape[0]
        return coeffs.reshape(n, -1) @ self._U_stack_T

    @staticmethod
    def _batch(x):
        x = np.asarray(x, dtype=np.float64)
        return (x[None, :], True) if x.ndim == 1 else (x, False)

    # ------------------------------------------------------------------ noised law of alpha X + sigma Z
    def noised_log_prob(self, y, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """log density of alpha X + sigma Z at y, (n,)."""
        y, single = self._batch(y)
        out = self._evaluate(y, alpha, sigma).log_prob
        return out[0] if single else out

    def noised_score(self, y, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """Gradient of the noised log density at y, (n, d)."""
        y, single = self._batch(y)
        ev = self._evaluate(y, alpha, sigma)
        out = -self._back(ev.resp[:, :, None] * ev.z_over_c)
        return out[0] if single else out

    def noised_log_prob_and_score(self, y, alpha: float = 1.0, sigma: float = 0.0):
        """Both at once, sharing the quadratic forms: ((n,), (n, d))."""
        y, single = self._batch(y)
        ev = self._evaluate(y, alpha, sigma)
        score = -self._back(ev.resp[:, :, None] * ev.z_over_c)
        return (ev.log_prob[0], score[0]) if single else (ev.log_prob, score)

    def denoiser(self, y, alpha: float, sigma: float) -> np.ndarray:
        """E[X | alpha X + sigma Z = y], (n, d), by Gaussian conditioning per component."""
        y, single = self._batch(y)
        ev = self._evaluate(y, alpha, sigma)
        gain = alpha * self.eigvals  # (K, d); times z_over_c gives alpha lam / c * z
        out = ev.resp @ self.means + self._back(ev.resp[:, :, None] * gain * ev.z_over_c)
        return out[0] if single else out

    def posterior_weights(self, y, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """p(component k | alpha X + sigma Z = y), (n, K); rows sum to one."""
        y, single = self._batch(y)
        out = self._evaluate(y, alpha, sigma).resp
        return out[0] if single else out

    def noised(self, alpha: float, sigma: float) -> "GaussianMixture":
        """The law of alpha X + sigma Z as a mixture of its own (for references and tests)."""
        covs = alpha**2 * self.covs + sigma**2 * np.eye(self.dim)
        return GaussianMixture(self.weights, alpha * self.means, covs, name=self.name, kind=self.kind)

    # ------------------------------------------------------------------ the target itself
    def log_prob(self, x) -> np.ndarray:
        """log p(x), (n,)."""
        return self.noised_log_prob(x)

    def score(self, x) -> np.ndarray:
        """grad log p(x), (n, d)."""
        return self.noised_score(x)

    def log_prob_and_score(self, x):
        """(log p(x), grad log p(x)) sharing one evaluation."""
        return self.noised_log_prob_and_score(x)

    def describe(self) -> str:
        if self.n_components == 1:
            return f"{self.kind}, dim {self.dim}"
        return f"{self.kind}, dim {self.dim}, {self.n_components} components"

