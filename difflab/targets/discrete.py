"""Discrete targets on {0, ..., K-1}^d, enumerated: the exact pmf is a table.

States are integer codes per coordinate; a state's flat index is numpy's row-major ravel,
coordinate 0 most significant: index(x) = sum_i x_i K^(d-1-i). Everything exact (pmf, single-site
and pair marginals, i.i.d. draws, noised marginals) comes from the table, so the state space is
limited to ``MAX_STATES`` = 2^16 states.

Ising spins: code 0 is spin -1 and code 1 is spin +1 (s = 2 x - 1); the run file writes the
spins. The mask state of absorbing noise is code K, written as NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from difflab.errors import ConfigError

MAX_STATES = 2**16


def enumerate_states(alphabet: int, dim: int) -> np.ndarray:
    """All alphabet^dim states (S, dim) int64 in flat-index order (dim 0: one empty state)."""
    if dim == 0:
        return np.zeros((1, 0), dtype=np.int64)
    return np.stack(np.unravel_index(np.arange(alphabet**dim), (alphabet,) * dim), axis=1).astype(np.int64)


def graph_edges(graph: str, n: int, rows: int = 0, cols: int = 0) -> list[tuple[int, int]]:
    """Edges (i, j), i < j, of chain | ring | grid (rows x cols, row-major) | complete on n sites."""
    if graph == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if graph == "ring":
        return [(i, i + 1) for i in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])
    if graph == "grid":
        right = [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]
        down = [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)]
        return sorted(right + down)
    if graph == "complete":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    raise ConfigError(f"graph: expected one of chain, ring, grid, complete, got {graph!r}")


def ising_log_weights(n: int, edges, coupling: float, field: float, beta: float) -> np.ndarray:
    """log w(s) = beta (J sum_{ij in E} s_i s_j + h sum_i s_i), s = 2 x - 1, for every state."""
    s = 2.0 * enumerate_states(2, n) - 1.0
    pair = sum((s[:, i] * s[:, j] for i, j in edges), np.zeros(len(s)))
    return beta * (coupling * pair + field * s.sum(axis=1))


def potts_log_weights(q: int, n: int, edges, coupling: float, beta: float) -> np.ndarray:
    """log w(x) = beta J sum_{ij in E} [x_i = x_j] for every state of {0..q-1}^n."""
    x = enumerate_states(q, n)
    agree = sum(((x[:, i] == x[:, j]).astype(float) for i, j in edges), np.zeros(len(x)))
    return beta * coupling * agree


class DiscreteTarget:
    """An enumerated pmf over {0..K-1}^d. ``labels[code]`` is the value written for a code."""

    discrete = True

    def __init__(self, log_weights, alphabet: int, dim: int, *, name: str, kind: str, labels=None):
        logw = np.asarray(log_weights, dtype=np.float64)
        if logw.shape != (alphabet**dim,):
            raise ConfigError(f"log_weights: expected {alphabet**dim} values, got shape {logw.shape}")
        self.name, self.kind = name, kind
        self.spec = None  # the validated target file it was built from (config.build_target)
        self.K, self.dim = alphabet, dim
        self.n_states = alphabet**dim
        self.log_probs = logw - logsumexp(logw)
        self.probs = np.exp(self.log_probs)
        self.table = self.probs.reshape((alphabet,) * dim)
        self.states = enumerate_states(alphabet, dim)
        self.strides = alphabet ** np.arange(dim - 1, -1, -1, dtype=np.int64)
        self._cdf = np.cumsum(self.probs)
        self.labels = np.arange(alphabet, dtype=np.float64) if labels is None else np.asarray(labels, float)
        self.onehot = (self.states[:, :, None] == np.arange(alphabet)).astype(np.float64)  # (S, d, K)

    # ------------------------------------------------------------ exact quantities
    def index(self, x: np.ndarray) -> np.ndarray:
        """Flat indices (n,) of states (n, d)."""
        return np.asarray(x, dtype=np.int64) @ self.strides

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n exact i.i.d. draws (n, d) int64 by inverse CDF (zero-probability states never drawn)."""
        idx = np.searchsorted(self._cdf, rng.random(n) * self._cdf[-1], side="right")
        return self.states[np.minimum(idx, self.n_states - 1)]

    def marginals(self) -> np.ndarray:
        """Single-site marginals (d, K)."""
        return np.einsum("s,sia->ia", self.probs, self.onehot)

    def pair_marginals(self) -> np.ndarray:
        """Pair marginals (d, d, K, K): P(x_i = a, x_j = b)."""
        return np.einsum("s,sia,sjb->ijab", self.probs, self.onehot, self.onehot, optimize=True)

    def noised_table(self, kernel: np.ndarray) -> np.ndarray:
        """The law of the state after each coordinate passes independently through ``kernel``
        (K, K'), as a flat table over K'^d: p'(y) = sum_x p(x) prod_i kernel[x_i, y_i].
        Axis by axis (d contractions of cost S K'), never the S x S' matrix."""
        t = self.table
        for axis in range(self.dim):
            t = np.moveaxis(np.tensordot(t, kernel, axes=([axis], [0])), -1, axis)
        return t.reshape(-1)

    def to_labels(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> written values (float64): the target's labels, NaN for the mask code K."""
        codes = np.asarray(codes)
        out = np.full(codes.shape, np.nan)
        ok = codes < self.K
        out[ok] = self.labels[codes[ok]]
        return out
