"""Careful numpy implementations of the workloads W1-W5, the yardstick of ``../shared/perf/WORKLOADS.md`` ("careful numpy, best variant"): what a competent
numpy programmer writes for this one target and workload, with no framework around it (not a test).

* the shared-variance form of the isotropic mixture: with every component N(m_k, s^2 I), the
  component logits are x.m_k / s^2 - |m_k|^2 / (2 s^2) + log w_k (one small (n, 2) x (2, K) GEMM
  for all of them), log p(x) = logsumexp_k(logits) - |x|^2 / (2 s^2) - log(2 pi s^2), and
  grad log p(x) = (sum_k p(k | x) m_k - x) / s^2;
* every buffer preallocated per chunk, every elementwise operation written with ``out=`` (no
  temporaries in the step);
* chains in chunks of 5,000, each chunk with its own SFC64 stream, all steps of a chunk on one
  thread of a two-thread pool (numpy releases the GIL in its loops), BLAS left as it is.

``w1(x0, steps, h, seed)`` and ``w4(x0, seed)`` return the final states (n, 2). The 50-D workloads
(W2 MALA, W3 ULA, W5 probability-flow Heun on rand50) are GEMM-bound: ``FullMixture`` does a
mixture evaluation as two GEMMs against the stacked inverse Cholesky factors, on one block of
chains (BLAS's own threads).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK, THREADS = 5_000, 2


class Ring:
    """ring8 at noise level (a, s2): the law of a X + N(0, s2 I), X ~ ring8 (a = 1, s2 = 0: the target)."""

    def __init__(self, k: int = 8, radius: float = 4.0, std: float = 0.5, a: float = 1.0, s2: float = 0.0):
        ang = 2 * np.pi * np.arange(k) / k
        self.means = a * radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)  # (K, 2)
        self.var = a * a * std * std + s2
        self.proj = self.means.T / self.var  # (2, K)
        self.bias = -0.5 * (self.means**2).sum(axis=1) / self.var - np.log(k)  # (K,)
        self.const = -np.log(2 * np.pi * self.var)


class Buffers:
    def __init__(self, n: int, k: int):
        self.logits = np.empty((n, k))
        self.mx = np.empty((n, 1))
        self.norm = np.empty((n, 1))
        self.mean = np.empty((n, 2))
        self.sq = np.empty((n, 2))
        self.r = np.empty(n)


def _log_prob_and_score(ring: Ring, x: np.ndarray, logp: np.ndarray | None, grad: np.ndarray, b: Buffers) -> None:
    np.matmul(x, ring.proj, out=b.logits)
    b.logits += ring.bias
    np.max(b.logits, axis=1, keepdims=True, out=b.mx)
    b.logits -= b.mx
    np.exp(b.logits, out=b.logits)
    np.sum(b.logits, axis=1, keepdims=True, out=b.norm)
    np.matmul(b.logits, ring.means, out=b.mean)
    b.mean /= b.norm
    np.subtract(b.mean, x, out=grad)
    grad /= ring.var
    if logp is not None:
        np.log(b.norm[:, 0], out=logp)
        logp += b.mx[:, 0]
        np.multiply(x, x, out=b.sq)
        np.sum(b.sq, axis=1, out=b.r)
        b.r *= -0.5 / ring.var
        logp += b.r
        logp += ring.const


def _mala_chunk(x0: np.ndarray, steps: int, h: float, seed) -> np.ndarray:
    ring, n = Ring(), len(x0)
    rng = np.random.Generator(np.random.SFC64(seed))
    b = Buffers(n, len(ring.bias))
    x, prop = x0.copy(), np.empty_like(x0)
    grad, gprop, xi, back = np.empty_like(x0), np.empty_like(x0), np.empty_like(x0), np.empty_like(x0)
    logp, lprop, log_a, u, tmp = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    accept = np.empty(n, dtype=bool)
    _log_prob_and_score(ring, x, logp, grad, b)
    c = np.sqrt(2 * h)
    for _ in range(steps):
        rng.standard_normal(out=xi)
        np.multiply(xi, xi, out=back)
        np.sum(back, axis=1, out=log_a)
        log_a *= 0.5  # |xi|^2 / 2
        np.multiply(grad, h, out=prop)
        prop += x
        xi *= c
        prop += xi
        _log_prob_and_score(ring, prop, lprop, gprop, b)
        np.multiply(gprop, h, out=back)
        back += prop
        back -= x  # x' + h grad(x') - x
        back *= back
        np.sum(back, axis=1, out=tmp)
        tmp *= 1 / (4 * h)
        log_a -= tmp
        log_a += lprop
        log_a -= logp
        rng.random(out=u)
        np.log(u, out=u)
        np.less(u, log_a, out=accept)
        np.copyto(x, prop, where=accept[:, None])
        np.copyto(grad, gprop, where=accept[:, None])
        np.copyto(logp, lprop, where=accept)
    return x


def _ddpm_chunk(x0: np.ndarray, seed) -> np.ndarray:
    betas = np.linspace(1e-4, 0.02, 1000)
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    rng = np.random.Generator(np.random.SFC64(seed))
    n = len(x0)
    b = Buffers(n, 8)
    x, score, z = x0.copy(), np.empty_like(x0), np.empty_like(x0)
    for t in range(999, -1, -1):
        ring = Ring(a=np.sqrt(abar[t]), s2=1 - abar[t])
        _log_prob_and_score(ring, x, None, score, b)
        # mean = (x + beta_t * score) / sqrt(alpha_t)  (eps = -sqrt(1 - abar) score)
        score *= betas[t]
        x += score
        x *= 1 / np.sqrt(alphas[t])
        if t > 0:
            var = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])  # beta-tilde
            rng.standard_normal(out=z)
            z *= np.sqrt(var)
            x += z
    return x


def _chunked(fn, x0: np.ndarray, seed: int, *args) -> np.ndarray:
    bounds = [(i, min(i + CHUNK, len(x0))) for i in range(0, len(x0), CHUNK)]
    seeds = np.random.SeedSequence(seed).spawn(len(bounds))
    with ThreadPoolExecutor(THREADS) as pool:
        parts = list(pool.map(lambda j: fn(np.ascontiguousarray(x0[bounds[j][0]:bounds[j][1]]), *args, seeds[j]),
                              range(len(bounds))))
    return np.concatenate(parts)


def w1(x0: np.ndarray, steps: int = 1_000, h: float = 0.1, seed: int = 1) -> np.ndarray:
    return _chunked(_mala_chunk, x0, seed, steps, h)


def w4(x0: np.ndarray, seed: int = 1) -> np.ndarray:
    return _chunked(_ddpm_chunk, x0, seed)


# ------------------------------------------------------------------ the 50-D workloads (rand50)
class FullMixture:
    """A Gaussian mixture with full covariances at noise level (a, s2): the law of a X + N(0, s2 I).

    Stacked inverse Cholesky factors W = [L_1^-1; ...; L_K^-1] (K d, d): one GEMM x W^T gives
    every whitened residual z_k = L_k^-1 (x - a m_k) at once, and a second, (resp_k z_k) W, the
    score -sum_k p(k | x) C_k^-1 (x - a m_k)."""

    def __init__(self, weights, means, covs, a: float = 1.0, s2: float = 0.0):
        k, d = means.shape
        cov = a * a * covs + s2 * np.eye(d)
        chol = np.linalg.cholesky(cov)
        inv = np.linalg.inv(chol)  # L_k^-1, (K, d, d): triangular, K small: once per level
        self.w_stack = inv.reshape(k * d, d)
        self.shift = np.einsum("kij,kj->ki", inv, a * means).reshape(k * d)  # L_k^-1 a m_k
        self.const = (np.log(weights) - np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
                      - 0.5 * d * np.log(2 * np.pi))
        self.k, self.d = k, d

    def log_prob_and_score(self, x: np.ndarray, want_logp: bool = True):
        n = len(x)
        z = x @ self.w_stack.T  # (n, K d)
        z -= self.shift
        z3 = z.reshape(n, self.k, self.d)
        logits = -0.5 * np.einsum("nkd,nkd->nk", z3, z3) + self.const
        mx = logits.max(axis=1, keepdims=True)
        logits -= mx
        np.exp(logits, out=logits)
        norm = logits.sum(axis=1, keepdims=True)
        logits /= norm  # responsibilities
        z3 *= logits[:, :, None]
        score = -(z @ self.w_stack)
        logp = (np.log(norm[:, 0]) + mx[:, 0]) if want_logp else None
        return logp, score


def w2(target, x0: np.ndarray, steps: int = 500, h: float = 0.1, seed: int = 1) -> np.ndarray:
    """MALA on rand50, one block of chains (the GEMMs use BLAS's threads)."""
    c = target.components
    mix, rng = FullMixture(c.weights, c.means, c.covs), np.random.Generator(np.random.SFC64(seed))
    x = x0.copy()
    logp, grad = mix.log_prob_and_score(x)
    for _ in range(steps):
        xi = rng.standard_normal(x.shape)
        prop = x + h * grad + np.sqrt(2 * h) * xi
        lp, gp = mix.log_prob_and_score(prop)
        back = x - prop - h * gp
        log_a = lp - logp + 0.5 * np.einsum("nd,nd->n", xi, xi) - np.einsum("nd,nd->n", back, back) / (4 * h)
        accept = np.log(rng.random(len(x))) < log_a
        x[accept], logp[accept], grad[accept] = prop[accept], lp[accept], gp[accept]
    return x


def w3(target, x0: np.ndarray, steps: int = 500, h: float = 0.1, seed: int = 1) -> np.ndarray:
    """ULA on rand50."""
    c = target.components
    mix, rng = FullMixture(c.weights, c.means, c.covs), np.random.Generator(np.random.SFC64(seed))
    x = x0.copy()
    noise = np.empty_like(x)
    for _ in range(steps):
        _, grad = mix.log_prob_and_score(x, want_logp=False)
        rng.standard_normal(out=noise)
        noise *= np.sqrt(2 * h)
        grad *= h
        x += grad
        x += noise
    return x


def w5(target, x0: np.ndarray, steps: int = 100, delta: float = 1e-3) -> np.ndarray:
    """Probability-flow ODE, Heun, VP beta(t) = 0.1 + 19.9 t, on a uniform grid from 1 to delta:
    dx/dt = -beta(t) (x + score_t(x)) / 2, score_t the noised mixture's (a factorisation per time)."""
    c = target.components

    def drift(x, t):
        a = np.exp(-0.5 * (0.1 * t + 19.9 * t * t / 2))
        _, score = FullMixture(c.weights, c.means, c.covs, a, 1 - a * a).log_prob_and_score(x, want_logp=False)
        return -0.5 * (0.1 + 19.9 * t) * (x + score)

    times = np.linspace(1.0, delta, steps + 1)
    x = x0.copy()
    for t, s in itertools.pairwise(times):
        dt = s - t
        d1 = drift(x, t)
        pred = x + dt * d1
        x = x + 0.5 * dt * (d1 + drift(pred, s))
    return x
