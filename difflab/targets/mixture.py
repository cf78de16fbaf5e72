"""Gaussian mixtures (a Gaussian is the one-component case) with exact noised laws.

Notation (used by every diffusion sampler):

=============  ==============================================================================
``X``          a draw from the target p = sum_k w_k N(mu_k, S_k), in R^d
``Y``          ``alpha * X + sigma * Z`` with Z ~ N(0, I) independent of X (alpha > 0, sigma >= 0)
``S_k``        ``U_k diag(lam_k) U_k^T``: eigendecomposition computed once at construction
``C_k``        covariance of Y given component k: ``alpha^2 S_k + sigma^2 I
               = U_k diag(c_k) U_k^T`` with ``c_k = alpha^2 lam_k + sigma^2``
``z_k``        ``U_k^T (y - alpha mu_k)``: coordinates of y in component k's eigenbasis
``w_k``        ``z_k / sqrt(c_k)``: whitened residual, sum_j w_kj^2 the Mahalanobis distance
``r_k(y)``     posterior component probability p(k | Y = y)
=============  ==============================================================================

Because ``U_k`` does not depend on (alpha, sigma), one factorisation serves every noise level.
Two evaluations, equal to round-off (tested), neither with a Python loop over particles or
components nor a matrix inverse:

* the eigenbasis evaluation (``_evaluate``: denoiser, posterior, divergence): one stacked GEMM
  ``[U_1 ... U_K]^T y`` (K d, d) x (d, n) gives every whitened residual w_k, elementwise work on
  (K, d, n), a log-sum-exp over components, and one GEMM back;
* the hot path for the log density and score (``log_prob_and_score_t``, ``score_t``): one GEMM
  against the stacked precisions P_k = C_k^-1 = U_k diag(1 / c_k) U_k^T (built from the eigenbases
  once per (alpha, sigma)), the quadratic forms expanded on the state centred at the mixture's
  mean: half the GEMM flops and fewer passes over (K, d, n). Diagonal covariances (the ring) take
  a path of their own with no (K, d, n) array at all.

Identities implemented (p_{alpha,sigma} is the law of Y):

1. log p_{alpha,sigma}(y) = logsumexp_k [log w_k - (sum_j z_kj^2 / c_kj + sum_j log c_kj
   + d log 2 pi) / 2]
2. grad log p_{alpha,sigma}(y) = - sum_k r_k U_k (z_k / c_k)
3. E[X | Y = y] = sum_k r_k (mu_k + U_k (alpha lam_k / c_k) z_k)  (Gaussian conditioning), which
   equals (y + sigma^2 grad log p_{alpha,sigma}(y)) / alpha (Tweedie's formula, tested against
   ``schedules.denoiser_from_score``).
4. With u = y - alpha m0, nu_k = alpha (mu_k - m0), v_k = P_k u: the Mahalanobis distance
   sum_j z_kj^2 / c_kj = u . v_k - 2 (P_k nu_k) . u + nu_k . P_k nu_k, and
   grad log p_{alpha,sigma}(y) = -sum_k r_k (v_k - P_k nu_k).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from difflab.contracts.target import TargetKind
from difflab.errors import DifflabError
from difflab.targets.fields import (
    Where,
    check_keys,
    check_size,
    covariance,
    integer,
    mapping,
    normalised_weights,
    number,
    require,
    vector,
)

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class _Evaluation:
    """Quantities shared by the log density, score and denoiser at one noise level."""

    log_prob: np.ndarray  # (n,)
    resp: np.ndarray  # (K, n) posterior component probabilities
    w: np.ndarray  # (K, d, n) whitened residuals diag(c_k^-1/2) U_k^T (y - alpha mu_k)
    inv_sqrt_c: np.ndarray  # (K, d)


class GaussianMixture:
    """A mixture of K Gaussians in d dimensions, with closed-form scores and noised laws.

    Parameters
    ----------
    weights : (K,) array, positive, normalised here.
    means : (K, d) array.
    covs : (K, d, d) array of symmetric positive definite matrices.
    name, kind : labels ('gaussian' for K = 1 built from a ``kind: gaussian`` file, else 'gmm').
    untilted, reward, tilt_log_z : a reward-tilted target's untilted mixture, its reward
        (lambda, b, A) and log E exp(lambda r(X)) (the target contract's declarations).
    classes : {name: component indices} (guidance); spec : the target file it was built from.

    All methods take batches ``x`` of shape (n, d) (a single point (d,) is also accepted).
    """

    def __init__(self, weights, means, covs, *, name: str = "target", kind: str = "gmm", untilted=None,
                 reward: tuple = (), tilt_log_z: float | None = None, classes: dict | None = None, spec=None):
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
        # Stacked eigenbases: column block k of _U_stack is U_k; _U_stack_T @ y^T stacks U_k^T y.
        self._U_stack = np.ascontiguousarray(U.transpose(1, 0, 2).reshape(d, K * d))
        self._U_stack_T = np.ascontiguousarray(self._U_stack.T)
        self._mu_rot = np.einsum("kd,kde->ke", self.means, U)  # U_k^T mu_k, (K, d)
        self._sqrt_factor = U * np.sqrt(lam)[:, None, :]  # S_k = F_k F_k^T, (K, d, d)
        # Identity eigenbases (diagonal covariances, e.g. the ring): skip the GEMMs.
        self._diagonal = bool(np.all(self.covs == np.eye(d) * np.diagonal(self.covs, axis1=1, axis2=2)[:, None, :]))
        self._centre = self.weights @ self.means  # (d,): the diagonal hot path works relative to it
        self._off_centre = bool(np.any(self._centre != 0.0))
        self._diag_cache = self._prec_cache = None
        # Declarations of the target contract (difflab.contracts.target)
        self.untilted, self.reward, self.tilt_log_z = untilted, reward, tilt_log_z
        self.classes = dict(classes or {})
        self.spec = spec
        if self._diagonal:
            self.eigvals = np.diagonal(self.covs, axis1=1, axis2=2).copy()
            self.eigvecs = np.broadcast_to(np.eye(d), (K, d, d)).copy()
            self._mu_rot = self.means.copy()
            self._sqrt_factor = self.eigvecs * np.sqrt(self.eigvals)[:, None, :]

    discrete = False
    has_noised_law = True  # every noise level in closed form
    has_marginals = True  # a mixture's marginals are mixtures
    has_log_prob = True
    exact = True  # exact posterior and noised densities
    exact_score = True

    @property
    def components(self) -> GaussianMixture:
        """The component view of the target contract: a mixture is its own."""
        return self

    def marginal(self, coords) -> GaussianMixture:
        """The exact law of the coordinates ``coords`` (a mixture of the components' marginals)."""
        idx = np.asarray(coords, dtype=np.int64)
        return GaussianMixture(self.weights, self.means[:, idx], self.covs[:, idx][:, :, idx], name=self.name,
                               kind=self.kind)

    @property
    def is_gaussian(self) -> bool:
        return self.n_components == 1

    @property
    def affine_score(self) -> bool:
        return self.n_components == 1

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
    # Internally particles run along the last axis ("structure of arrays"): y is (d, n) and z is
    # (K, d, n), so every elementwise operation streams over long contiguous rows and every
    # reduction over components or coordinates adds rows, instead of reducing tiny inner axes of
    # length K or d, which numpy does slowly. Samplers call the ``*_t`` methods in this layout;
    # the public methods take and return the usual (n, d).
    def _evaluate(self, yt: np.ndarray, alpha: float, sigma: float) -> _Evaluation:
        n = yt.shape[1]
        K, d = self.n_components, self.dim
        inv_sqrt_c = 1.0 / np.sqrt(alpha * alpha * self.eigvals + sigma * sigma)  # (K, d)
        if self._diagonal:
            w = yt[None, :, :] - (alpha * self.means)[:, :, None]  # (K, d, n)
            w *= inv_sqrt_c[:, :, None]
        else:
            # The whitening diag(c_k^-1/2) U_k^T is folded into the stacked basis: one GEMM gives w.
            a = self._U_stack_T * inv_sqrt_c.reshape(K * d, 1)  # (K d, d), cheap: no particles
            w = (a @ yt).reshape(K, d, n)
            w -= (alpha * self._mu_rot * inv_sqrt_c)[:, :, None]
        maha = np.einsum("kdn,kdn->kn", w, w) if d > 8 else (w * w).sum(axis=1)
        log_norm = self.log_weights + np.log(inv_sqrt_c).sum(axis=1) - 0.5 * d * _LOG_2PI  # (K,)
        logits = log_norm[:, None] - 0.5 * maha  # (K, n)
        if K == 1:
            return _Evaluation(log_prob=logits[0], resp=np.ones_like(logits), w=w, inv_sqrt_c=inv_sqrt_c)
        top = logits.max(axis=0)  # log-sum-exp over components
        e = np.exp(logits - top)
        total = e.sum(axis=0)
        return _Evaluation(log_prob=top + np.log(total), resp=e / total, w=w, inv_sqrt_c=inv_sqrt_c)

    def _back(self, coeffs: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """sum_k U_k diag(scale_k) coeffs_k for coeffs (K, d, n) and scale (K, d), as (d, n)."""
        if self._diagonal:
            coeffs *= scale[:, :, None]
            return coeffs.sum(axis=0)
        K, d, n = coeffs.shape
        return (self._U_stack * scale.reshape(1, K * d)) @ coeffs.reshape(K * d, n)

    def _score_t(self, ev: _Evaluation) -> np.ndarray:
        """-sum_k r_k C_k^-1 (y - alpha mu_k) = -sum_k r_k U_k diag(c_k^-1/2) w_k. Consumes ev.w."""
        coeffs = ev.w
        if self.n_components > 1:
            coeffs *= ev.resp[:, None, :]
        return -self._back(coeffs, ev.inv_sqrt_c)

    def log_prob_and_score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0):
        """Particle-last layout: xt (d, n) contiguous -> (log density (n,), score (d, n))."""
        if self._diagonal:
            return self._diagonal_log_prob_and_score_t(xt, alpha, sigma)
        return self._precision_log_prob_and_score_t(xt, alpha, sigma)

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """Particle-last layout: xt (d, n) -> score (d, n)."""
        if self._diagonal:
            return self._diagonal_log_prob_and_score_t(xt, alpha, sigma, log_prob=False)[1]
        return self._precision_log_prob_and_score_t(xt, alpha, sigma, log_prob=False)[1]

    def _precision_terms(self, alpha: float, sigma: float):
        """(P_stack (K d, d), lin (K, d), lin_t (d, K), const (K,), centre (d, 1)) at (alpha, sigma).

        P_k = C_k^-1 = U_k diag(1 / c_k) U_k^T (one batched product of the eigenbases, no inverse),
        nu_k = alpha (mu_k - m0) with m0 the mixture's mean, lin_k = P_k nu_k and
        const_k = log w_k - (sum_j log c_kj + d log 2 pi + nu_k . lin_k) / 2. Kept for the last pair.
        """
        return self._at_noise("_prec_cache", alpha, sigma, self._build_precision_terms)

    def _at_noise(self, slot: str, alpha: float, sigma: float, build):
        """build(alpha, sigma), kept in ``slot`` for the last pair asked (a Langevin run asks for
        (1, 0) at every step). One tuple, replaced whole, so concurrent chunk threads read either the
        old or the new entry, both valid."""
        cached = getattr(self, slot)
        if cached is not None and cached[0] == alpha and cached[1] == sigma:
            return cached[2]
        out = build(alpha, sigma)
        setattr(self, slot, (alpha, sigma, out))
        return out

    def _build_precision_terms(self, alpha: float, sigma: float):
        K, d = self.n_components, self.dim
        c = alpha * alpha * self.eigvals + sigma * sigma  # (K, d)
        U = self.eigvecs
        prec = np.matmul(U / c[:, None, :], U.transpose(0, 2, 1))  # (K, d, d)
        nu = alpha * (self.means - self._centre)
        lin = np.einsum("kij,kj->ki", prec, nu)
        const = self.log_weights - 0.5 * (np.log(c).sum(axis=1) + d * _LOG_2PI + np.einsum("ki,ki->k", nu, lin))
        return (np.ascontiguousarray(prec.reshape(K * d, d)), lin, np.ascontiguousarray(lin.T), const,
                (alpha * self._centre)[:, None])

    def _precision_log_prob_and_score_t(self, xt: np.ndarray, alpha: float, sigma: float, log_prob: bool = True,
                                        score: bool = True):
        """The hot path for full covariances: one GEMM against the stacked precisions.

        With u = y - alpha m0 and v_k = P_k u (one (K d, d) x (d, n) GEMM):
        (y - alpha mu_k)^T P_k (y - alpha mu_k) = u . v_k - 2 lin_k . u + nu_k . lin_k, and
        score = -sum_k r_k P_k (u - nu_k) = -sum_k r_k v_k + sum_k r_k lin_k.
        Half the GEMM flops of whitening in each eigenbasis and back (``_evaluate``), and two read
        passes over the (K, d, n) products instead of five. Centring on the mixture's mean keeps the
        expanded square's cancellation to the spread between components; agrees with the eigenbasis
        path to round-off (tested, including an off-centre, small-variance mixture).
        """
        K, d = self.n_components, self.dim
        n = xt.shape[1]
        P_stack, lin, lin_t, const, centre = self._precision_terms(alpha, sigma)
        u = xt - centre
        v = (P_stack @ u).reshape(K, d, n)
        logits = lin @ u  # (K, n): lin_k . u
        logits -= 0.5 * np.einsum("dn,kdn->kn", u, v)
        logits += const[:, None]
        if K == 1:
            lp, r, total = logits[0], np.ones((1, n)), None
        else:
            top = logits.max(axis=0)
            logits -= top
            r = np.exp(logits, out=logits)
            total = r.sum(axis=0)
            lp = None
            if log_prob:
                lp = np.log(total)
                lp += top
        if not score:
            return lp, None
        if total is not None:
            r /= total
        out = lin_t @ r  # sum_k r_k lin_k, (d, n)
        out -= np.einsum("kn,kdn->dn", r, v)
        return lp, out

    def _diagonal_coefficients(self, alpha: float, sigma: float):
        """(coef (K, 2d + 1), gmat (2d, K), shift (d, 1)) of the diagonal path at (alpha, sigma),
        kept for the last pair."""
        return self._at_noise("_diag_cache", alpha, sigma, self._build_diagonal_coefficients)

    def _build_diagonal_coefficients(self, alpha: float, sigma: float):
        d = self.dim
        inv_c = 1.0 / (alpha * alpha * self.eigvals + sigma * sigma)  # (K, d)
        nu = alpha * (self.means - self._centre)  # (K, d)
        nu_c = nu * inv_c
        log_norm = self.log_weights + 0.5 * np.log(inv_c).sum(axis=1) - 0.5 * d * _LOG_2PI
        # logits_k = -maha_k / 2 + log_norm_k = [-(1/c_k) / 2, nu_k / c_k, const_k] . [v^2; v; 1]
        coef = np.concatenate([-0.5 * inv_c, nu_c, (log_norm - 0.5 * (nu * nu_c).sum(axis=1))[:, None]], axis=1)
        gmat = np.concatenate([inv_c.T, nu_c.T])  # (2d, K), each half C-contiguous
        return coef, gmat, (alpha * self._centre)[:, None] if self._off_centre else None

    def _diagonal_log_prob_and_score_t(self, xt: np.ndarray, alpha: float, sigma: float, score: bool = True,
                                       log_prob: bool = True):
        """The hot path for diagonal covariances (the ring, isotropic components): no (K, d, n) array.

        With v = y - alpha m0 (m0 the mixture's mean, so that the expanded square below does not
        lose digits on an off-centre target), nu_k = alpha (mu_k - m0) and 1/c_k elementwise:
        maha_k = (1/c_k) . v^2 - 2 (nu_k / c_k) . v + nu_k . (nu_k / c_k): one (K, 2d) x (2d, n) GEMM;
        score = -v * (sum_k r_k / c_k) + sum_k r_k nu_k / c_k: two (d, K) x (K, n) GEMMs.
        Agrees with the general path to round-off (tested).
        """
        K, d = self.n_components, self.dim
        coef, gmat, shift = self._diagonal_coefficients(alpha, sigma)
        stacked = np.empty((2 * d + 1, xt.shape[1]))
        v = stacked[d : 2 * d]
        if shift is not None:
            np.subtract(xt, shift, out=v)
        else:
            v[...] = xt
        np.multiply(v, v, out=stacked[:d])
        stacked[2 * d] = 1.0
        logits = coef @ stacked  # (K, n)
        lp = None
        if K == 1:
            lp, e, total = logits[0], np.ones_like(logits), None
        else:
            top = logits.max(axis=0)
            logits -= top
            e = np.exp(logits, out=logits)  # unnormalised responsibilities
            total = e.sum(axis=0)
            if log_prob:  # a score alone needs no log
                lp = np.log(total)
                lp += top
        if not score:
            return lp, None
        # sum_k e_k nu_k / c_k and sum_k e_k / c_k by two small GEMMs: the score owns its memory (a
        # view into one (2d, n) product would keep twice the state alive in the sampler's state)
        out = gmat[d:] @ e
        out -= v * (gmat[:d] @ e)
        if total is not None:
            out /= total  # normalising the (d, n) result, not the (K, n) responsibilities
        return lp, out

    def posterior_t(self, yt: np.ndarray, alpha: float, sigma: float):
        """The posterior of X given alpha X + sigma Z = y, per particle (particle-last layout).

        Returns (resp (K, n), comp_means (K, d, n), comp_var (K, d)): component k's posterior is
        N(comp_means_k, U_k diag(comp_var_k) U_k^T) with comp_var = lam sigma^2 / c (Gaussian
        conditioning: S - alpha^2 S C^-1 S in the eigenbasis), and the posterior is their mixture
        with weights resp.
        """
        ev = self._evaluate(yt, alpha, sigma)
        gain = alpha * self.eigvals * ev.inv_sqrt_c  # (K, d): alpha lam / sqrt(c)
        coeffs = ev.w * gain[:, :, None]  # (K, d, n) in each eigenbasis
        rotated = coeffs if self._diagonal else np.matmul(self.eigvecs, coeffs)  # batched GEMM: U_k coeffs_k
        comp_means = rotated
        comp_means += self.means[:, :, None]
        comp_var = self.eigvals * (sigma * sigma) * ev.inv_sqrt_c**2
        return ev.resp, comp_means, comp_var

    def divergence_score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """Trace of the Jacobian of the noised score at xt (d, n), (n,).

        With s_k = -C_k^-1 (y - alpha mu_k) and grad r_k = r_k (s_k - s):
        div s = sum_k r_k (|s_k|^2 - tr C_k^-1) - |s|^2, and in whitened coordinates
        |s_k|^2 - tr C_k^-1 = sum_j (w_kj^2 - 1) / c_kj.
        """
        ev = self._evaluate(xt, alpha, sigma)
        inv_c = ev.inv_sqrt_c**2  # (K, d)
        per_k = np.einsum("kdn,kd->kn", ev.w * ev.w, inv_c) - inv_c.sum(axis=1)[:, None]  # (K, n)
        score = self._score_t(ev)  # consumes ev.w
        return np.einsum("kn,kn->n", ev.resp, per_k) - np.einsum("dn,dn->n", score, score)

    @staticmethod
    def _batch(x):
        """(n, d) or (d,) -> (contiguous (d, n), whether a single point was given)."""
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        return np.ascontiguousarray((x[None, :] if single else x).T), single

    @staticmethod
    def _out(arr, single):
        """(..., n) internal result -> (n, ...) for the caller, or one row for a single point."""
        out = arr.T
        return out[0] if single else out

    # ------------------------------------------------------------------ noised law of alpha X + sigma Z
    def noised_log_prob(self, y, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """log density of alpha X + sigma Z at y, (n,)."""
        yt, single = self._batch(y)
        # the same arithmetic as log_prob_and_score_t: bit-identical values
        if self._diagonal:
            return self._out(self._diagonal_log_prob_and_score_t(yt, alpha, sigma, score=False)[0], single)
        return self._out(self._precision_log_prob_and_score_t(yt, alpha, sigma, score=False)[0], single)

    def noised_score(self, y, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """Gradient of the noised log density at y, (n, d)."""
        yt, single = self._batch(y)
        return self._out(self.score_t(yt, alpha, sigma), single)

    def noised_log_prob_and_score(self, y, alpha: float = 1.0, sigma: float = 0.0):
        """Both at once, sharing the quadratic forms: ((n,), (n, d))."""
        yt, single = self._batch(y)
        lp, st = self.log_prob_and_score_t(yt, alpha, sigma)
        return self._out(lp, single), self._out(st, single)

    def denoiser(self, y, alpha: float, sigma: float) -> np.ndarray:
        """E[X | alpha X + sigma Z = y], (n, d), by Gaussian conditioning per component."""
        yt, single = self._batch(y)
        ev = self._evaluate(yt, alpha, sigma)
        # U_k diag(alpha lam_k / c_k) z_k = U_k diag(alpha lam_k c_k^-1/2) w_k
        coeffs = ev.w * ev.resp[:, None, :]
        out = self.means.T @ ev.resp + self._back(coeffs, alpha * self.eigvals * ev.inv_sqrt_c)
        return self._out(out, single)

    def posterior_weights(self, y, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """p(component k | alpha X + sigma Z = y), (n, K); rows sum to one."""
        yt, single = self._batch(y)
        return self._out(self._evaluate(yt, alpha, sigma).resp, single)

    def noised(self, alpha: float, sigma: float) -> GaussianMixture:
        """The law of alpha X + sigma Z as a mixture of its own (for references and tests)."""
        covs = alpha**2 * self.covs + sigma**2 * np.eye(self.dim)
        return GaussianMixture(self.weights, alpha * self.means, covs, name=self.name, kind=self.kind)

    # ------------------------------------------------------------------ classes (groups of components)
    def conditional(self, members, label: str = "") -> GaussianMixture:
        """p(x | c) for the class c made of the components ``members``: the sub-mixture with its
        weights renormalised (p(x | c) = sum_{k in c} w_k N_k(x) / p(c), p(c) = sum_{k in c} w_k)."""
        idx = np.asarray(members, dtype=np.int64)
        name = f"{self.name}|{label}" if label else self.name
        return GaussianMixture(self.weights[idx], self.means[idx], self.covs[idx], name=name, kind=self.kind)

    def class_probability(self, y, members, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """The exact classifier p(c | alpha X + sigma Z = y) = sum_{k in c} p(k | y), (n,)."""
        return self.posterior_weights(y, alpha, sigma)[..., np.asarray(members, dtype=np.int64)].sum(axis=-1)

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


class NotPositiveDefinite(DifflabError):
    """A tilted component's precision is not positive definite: args (component, smallest eigenvalue)."""


def tilt_mixture(weights, means, covs, lam: float, b, a):
    """The mixture proportional to p(x) exp(lam r(x)), r(x) = b^T x - x^T A x / 2, in closed form.

    Component k, N(m, S) with weight w, becomes N(m', S') with S'^-1 = S^-1 + lam A,
    m' = S' (S^-1 m + lam b), and weight proportional to
    w exp(m'^T S'^-1 m' / 2 - m^T S^-1 m / 2) (|S'| / |S|)^1/2 (completing the square in
    int N(x; m, S) exp(lam r(x)) dx). Returns (weights, means, covs, log_z), log_z = log E_p[exp(lam r(X))].
    Raises NotPositiveDefinite(k, smallest eigenvalue) if a tilted precision is not positive definite.
    """
    from scipy.linalg import cho_factor, cho_solve
    from scipy.special import logsumexp

    d = len(means[0])
    b = np.zeros(d) if b is None else np.asarray(b, dtype=np.float64)
    a = np.zeros((d, d)) if a is None else np.asarray(a, dtype=np.float64)
    out_m, out_c, logw = [], [], []
    for k, (w, m, s) in enumerate(zip(weights, means, covs)):
        m, s = np.asarray(m, dtype=np.float64), np.asarray(s, dtype=np.float64)
        prec = cho_solve(cho_factor(s), np.eye(d))
        prec_t = 0.5 * ((prec + lam * a) + (prec + lam * a).T)
        lowest = np.linalg.eigvalsh(prec_t)[0]
        if lowest <= 0:
            raise NotPositiveDefinite(k, float(lowest))
        fac = cho_factor(prec_t)
        m_t = cho_solve(fac, prec @ m + lam * b)
        s_t = cho_solve(fac, np.eye(d))
        half_logdet = np.sum(np.log(np.diag(fac[0])))  # log |S'^-1|^1/2
        _, logdet_s = np.linalg.slogdet(s)
        logw.append(np.log(w) + 0.5 * m_t @ prec_t @ m_t - 0.5 * m @ prec @ m - half_logdet - 0.5 * logdet_s)
        out_m.append(m_t)
        out_c.append(0.5 * (s_t + s_t.T))
    logw = np.array(logw)
    log_z = float(logsumexp(logw))
    return np.exp(logw - log_z), out_m, out_c, log_z


# ---------------------------------------------------------------- the families: kind: gaussian and kind: gmm
@dataclass(frozen=True)
class MixtureSpec:
    """A validated ``kind: gaussian`` or ``kind: gmm`` file: everything needed to rebuild the target."""

    name: str
    kind: str  # 'gaussian' | 'gmm'
    weights: tuple  # (K,) normalised
    means: tuple  # (K, d)
    covs: tuple  # (K, d, d)
    source: str  # the path or shipped name it was read from
    text: str  # the file's YAML text, stored in run files
    # With a tilt: block the fields above are the tilted target; these keep the untilted one and
    # the reward (lambda, b, A), for samplers that steer the untilted process (reward guidance).
    untilted: tuple = ()  # (weights, means, covs) or ()
    reward: tuple = ()  # (lambda, b or None, A or None) or ()
    log_z: float = 0.0  # with a tilt: log E_p[exp(lambda r(X))], the exact normaliser
    classes: tuple = ()  # ((name, (component indices...)), ...): labelled groups of components

    discrete = False

    def key(self) -> list:
        """What identifies the target in a run's hash."""
        key = [self.name, self.weights, self.means, self.covs]
        return key + [self.classes] if self.classes else key


_BLOCK_KEYS = {
    "components[]": {"weight", "mean", "cov"},
    "ring": {"k", "radius", "std"},
    "random": {"k", "dim", "seed"},
    "tilt": {"lambda", "b", "A"},
}


def _gaussian(ctx: Where, doc: dict):
    mean = vector(ctx, "mean", require(ctx, doc, "mean", ""))
    check_size(ctx, "mean", 1, len(mean))
    cov = covariance(ctx, "cov", require(ctx, doc, "cov", ""), len(mean))
    return [1.0], [mean], [cov.tolist()]


def _components(ctx: Where, comps: Any):
    if not isinstance(comps, list) or not comps:
        raise ctx.fail("components", "expected a non-empty list of {weight, mean, cov}", comps)
    means, covs, raw_w = [], [], []
    dim = None
    for i, comp in enumerate(comps):
        p = f"components[{i}]"
        comp = mapping(ctx, p, comp)
        check_keys(ctx, comp, _BLOCK_KEYS["components[]"], p)
        raw_w.append((f"{p}.weight", require(ctx, comp, "weight", p)))
        mean = vector(ctx, f"{p}.mean", require(ctx, comp, "mean", p))
        if dim is None:
            dim = len(mean)
            check_size(ctx, "components", len(comps), dim)
        elif len(mean) != dim:
            raise ctx.fail(f"{p}.mean", f"expected dimension {dim} like components[0].mean", len(mean))
        covs.append(covariance(ctx, f"{p}.cov", require(ctx, comp, "cov", p), dim).tolist())
        means.append(mean)
    return normalised_weights(ctx, raw_w), means, covs


def _ring(ctx: Where, block: Any):
    block = mapping(ctx, "ring", block)
    check_keys(ctx, block, _BLOCK_KEYS["ring"], "ring")
    k = integer(ctx, "ring.k", require(ctx, block, "k", "ring"), 1)
    check_size(ctx, "ring.k", k, 2)
    radius = number(ctx, "ring.radius", require(ctx, block, "radius", "ring"))
    std = number(ctx, "ring.std", require(ctx, block, "std", "ring"))
    if radius < 0:
        raise ctx.fail("ring.radius", "must be >= 0", radius)
    if std <= 0:
        raise ctx.fail("ring.std", "must be > 0", std)
    angles = [2.0 * math.pi * j / k for j in range(k)]
    means = [[radius * math.cos(a), radius * math.sin(a)] for a in angles]
    covs = [[[std * std, 0.0], [0.0, std * std]] for _ in range(k)]
    return [1.0 / k] * k, means, covs


def _random(ctx: Where, block: Any):
    """The benchmark recipe: default_rng(seed); per component mu = N(0, I),
    A = N(0, 1)^(d x d), Sigma = 0.5 (I + A A^T / d); weights proportional to 1, 2, ..., k."""
    block = mapping(ctx, "random", block)
    check_keys(ctx, block, _BLOCK_KEYS["random"], "random")
    k = integer(ctx, "random.k", require(ctx, block, "k", "random"), 1)
    d = integer(ctx, "random.dim", require(ctx, block, "dim", "random"), 1)
    seed = integer(ctx, "random.seed", require(ctx, block, "seed", "random"), 0)
    check_size(ctx, "random", k, d)
    rng = np.random.default_rng(seed)
    means, covs = [], []
    for _ in range(k):
        means.append(rng.standard_normal(d).tolist())
        a = rng.standard_normal((d, d))
        covs.append((0.5 * (np.eye(d) + a @ a.T / d)).tolist())
    total = k * (k + 1) / 2
    return [(j + 1) / total for j in range(k)], means, covs


def _tilt(ctx: Where, block: Any, weights, means, covs):
    """The target times exp(lambda r(x)), r(x) = b^T x - x^T A x / 2: again a mixture (closed form)."""
    block = mapping(ctx, "tilt", block)
    check_keys(ctx, block, _BLOCK_KEYS["tilt"], "tilt")
    lam = number(ctx, "tilt.lambda", require(ctx, block, "lambda", "tilt"))
    d = len(means[0])
    if "b" not in block and "A" not in block:
        raise ctx.fail("tilt", "needs a reward: b (linear part) and/or A (quadratic part)", show_got=False)
    b = None
    if "b" in block:
        b = vector(ctx, "tilt.b", block["b"])
        if len(b) != d:
            raise ctx.fail("tilt.b", f"expected {d} entries to match the target's dimension", len(b))
    a = covariance(ctx, "tilt.A", block["A"], d, positive=False) if "A" in block else None
    try:
        tilted = tilt_mixture(weights, means, covs, lam, b, a)
    except NotPositiveDefinite as exc:
        k, lowest = exc.args
        raise ctx.fail("tilt.A", f"the tilted precision Sigma^-1 + lambda A of component {k} is not positive "
                       f"definite (smallest eigenvalue {lowest:.3g}); lower lambda or A", show_got=False) from None
    weights, means, covs, log_z = tilted
    reward = (lam, b, None if a is None else a.tolist())
    return ([float(w) for w in weights], [np.asarray(m).tolist() for m in means],
            [np.asarray(c).tolist() for c in covs], reward, log_z)


def _classes(ctx: Where, block: Any, n_components: int) -> tuple:
    """``classes: {name: [component indices]}``: non-empty, disjoint groups of components (they
    need not cover every component)."""
    block = mapping(ctx, "classes", block)
    if not block:
        raise ctx.fail("classes", "expected at least one class, e.g. {left: [0, 1], right: [2]}", block)
    seen: dict[int, str] = {}
    out = []
    for name, members in block.items():
        key = f"classes.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise ctx.fail("classes", "class names must be words of letters, digits, '_', '.', '+' or '-'", name)
        if isinstance(members, int) and not isinstance(members, bool):
            members = [members]
        if not isinstance(members, list) or not members:
            raise ctx.fail(key, "expected a non-empty list of component indices", members)
        for i, m in enumerate(members):
            if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < n_components:
                raise ctx.fail(f"{key}[{i}]", f"expected a component index in 0..{n_components - 1}", m)
            if m in seen:
                raise ctx.fail(f"{key}[{i}]", f"component {m} is already in class '{seen[m]}'; classes must be "
                               "disjoint", show_got=False)
            seen[m] = name
        out.append((name, tuple(members)))
    return tuple(out)


def parse(ctx: Where, doc: dict, name: str, source: str, text: str) -> MixtureSpec:
    """A ``kind: gaussian`` (``mean``, ``cov``) or ``kind: gmm`` file (exactly one of
    ``components``, ``ring``, ``random``; ``classes``), either with an optional ``tilt``."""
    kind = doc["kind"]
    if kind == "gaussian":
        weights, means, covs = _gaussian(ctx, doc)
    else:
        present = [k for k in ("components", "ring", "random") if k in doc]
        if len(present) != 1:
            raise ctx.fail("", "a gmm needs exactly one of 'components', 'ring' or 'random'", present or None)
        builder = {"components": _components, "ring": _ring, "random": _random}[present[0]]
        weights, means, covs = builder(ctx, doc[present[0]])
    untilted, reward, log_z = (), (), 0.0
    if "tilt" in doc:
        untilted = (tuple(weights), tuple(map(tuple, means)), tuple(tuple(map(tuple, c)) for c in covs))
        weights, means, covs, reward, log_z = _tilt(ctx, doc["tilt"], weights, means, covs)
    classes = _classes(ctx, doc["classes"], len(weights)) if "classes" in doc else ()
    return MixtureSpec(
        name=name, kind=kind, weights=tuple(weights), means=tuple(map(tuple, means)),
        covs=tuple(tuple(map(tuple, c)) for c in covs), source=source, text=text,
        untilted=untilted, reward=reward, log_z=log_z, classes=classes,
    )


def build(spec: MixtureSpec) -> GaussianMixture:
    """The target of a validated file; a tilted one knows its untilted law, reward and normaliser."""
    untilted = GaussianMixture(*spec.untilted, name=spec.name, kind=spec.kind) if spec.reward else None
    return GaussianMixture(spec.weights, spec.means, spec.covs, name=spec.name, kind=spec.kind, untilted=untilted,
                           reward=spec.reward, tilt_log_z=spec.log_z if spec.reward else None,
                           classes={name: list(members) for name, members in spec.classes}, spec=spec)


GAUSSIAN_KIND = TargetKind("gaussian", "One Gaussian N(mean, cov) (exact output laws apply).",
                           frozenset({"mean", "cov", "tilt"}), parse, build)
GMM_KIND = TargetKind("gmm", "A Gaussian mixture: components, a ring or a random recipe; tilt, classes.",
                      frozenset({"components", "ring", "random", "tilt", "classes"}), parse, build)
