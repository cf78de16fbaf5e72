"""Discrete targets on {0, ..., K-1}^d, enumerated: the exact pmf is a table.

States are integer codes per coordinate; a state's flat index is numpy's row-major ravel,
coordinate 0 most significant: index(x) = sum_i x_i K^(d-1-i). Everything exact (pmf, single-site
and pair marginals, i.i.d. draws, noised marginals) comes from the table, so the state space is
limited to ``MAX_STATES`` = 2^16 states.

Ising spins: code 0 is spin -1 and code 1 is spin +1 (s = 2 x - 1); the run file writes the
spins. The mask state of absorbing noise is code K, written as NaN.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from difflab.contracts.target import TargetKind
from difflab.errors import ConfigError
from difflab.errors import suggest as _suggest
from difflab.targets.fields import Where, integer, number, require

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

    def __init__(self, log_weights, alphabet: int, dim: int, *, name: str, kind: str, labels=None, spec=None):
        logw = np.asarray(log_weights, dtype=np.float64)
        if logw.shape != (alphabet**dim,):
            raise ConfigError(f"log_weights: expected {alphabet**dim} values, got shape {logw.shape}")
        self.name, self.kind = name, kind
        self.spec = spec  # the validated target file it was built from (difflab.targets.build_target)
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


# ---------------------------------------------------------------- the families: kind: ising, potts and pmf
GRAPHS = ("chain", "ring", "grid", "complete")


@dataclass(frozen=True)
class DiscreteSpec:
    """A validated discrete target file: the log weights of every state of {0..K-1}^d."""

    name: str
    kind: str  # 'ising' | 'potts' | 'pmf'
    alphabet: int
    dim: int
    log_weights: tuple  # (K^d,) row-major, coordinate 0 most significant; -inf = probability 0
    labels: tuple  # (K,) the value written for each code (Ising: -1, +1)
    source: str
    text: str

    discrete = True

    def key(self) -> list:
        digest = hashlib.sha256(np.asarray(self.log_weights, dtype=np.float64).tobytes()).hexdigest()
        return [self.name, self.kind, self.alphabet, self.dim, digest]


def _graph(ctx: Where, doc: dict) -> tuple[int, list]:
    """(n, edges) of an ising or potts file: n sites on a chain, ring, grid (rows x cols) or
    complete graph; for a grid n may be omitted (= rows x cols)."""
    graph = doc.get("graph", "chain")
    if graph not in GRAPHS:
        raise ctx.fail("graph", f"unknown graph{_suggest(graph, GRAPHS)}; expected one of {', '.join(GRAPHS)}", graph)
    rows = cols = 0
    if graph == "grid":
        rows = integer(ctx, "rows", require(ctx, doc, "rows", ""), 1)
        cols = integer(ctx, "cols", require(ctx, doc, "cols", ""), 1)
        n = integer(ctx, "n", doc.get("n", rows * cols), 1)
        if n != rows * cols:
            raise ctx.fail("n", f"must equal rows x cols = {rows * cols} for a grid", n)
    else:
        for key in ("rows", "cols"):
            if key in doc:
                raise ctx.fail(key, "only for graph: grid", doc[key])
        n = integer(ctx, "n", require(ctx, doc, "n", ""), 1)
    _state_space(ctx, "n", 2, n)  # at least two values a site: checked before the edges are built
    return n, graph_edges(graph, n, rows, cols)


def _state_space(ctx: Where, key: str, alphabet: int, dim: int) -> None:
    if dim * math.log2(max(alphabet, 1)) > math.log2(MAX_STATES):  # without forming a huge integer
        count = f" = {alphabet**dim}" if dim * math.log2(max(alphabet, 1)) < 64 else ""
        raise ctx.fail(key, f"the state space has {alphabet}^{dim}{count} states; difflab enumerates "
                       f"at most {MAX_STATES}", show_got=False)


def _discrete(ctx: Where, kind: str, doc: dict):
    """(alphabet, dim, log_weights, labels) of an ising, potts or pmf file."""
    if kind == "pmf":
        k = integer(ctx, "alphabet", require(ctx, doc, "alphabet", ""), 2)
        d = integer(ctx, "dim", require(ctx, doc, "dim", ""), 1)
        _state_space(ctx, "dim", k, d)
        present = [key for key in ("probs", "log_weights") if key in doc]
        if len(present) != 1:
            raise ctx.fail("", "a pmf needs exactly one of 'probs' or 'log_weights'", present or None)
        key = present[0]
        values = doc[key]
        if not isinstance(values, list) or len(values) != k**d:
            got = len(values) if isinstance(values, list) else values
            raise ctx.fail(key, f"expected a list of alphabet^dim = {k}^{d} = {k**d} numbers (row-major)", got)
        if key == "probs":
            p = np.array([number(ctx, f"probs[{i}]", v) for i, v in enumerate(values)])
            if (p < 0).any():
                i = int(np.argmax(p < 0))
                raise ctx.fail(f"probs[{i}]", "must be >= 0", float(p[i]))
            if abs(p.sum() - 1.0) > 1e-6:
                raise ctx.fail("probs", "must sum to 1 (use log_weights for unnormalised weights)", float(p.sum()))
            with np.errstate(divide="ignore"):
                logw = np.log(p)
        else:
            logw = np.array([number(ctx, f"log_weights[{i}]", v) for i, v in enumerate(values)])
        return k, d, logw, tuple(float(a) for a in range(k))
    n, edges = _graph(ctx, doc)
    beta = number(ctx, "beta", doc.get("beta", 1.0))
    coupling = number(ctx, "coupling", require(ctx, doc, "coupling", ""))
    if kind == "ising":
        _state_space(ctx, "n", 2, n)
        field = number(ctx, "field", doc.get("field", 0.0))
        return 2, n, ising_log_weights(n, edges, coupling, field, beta), (-1.0, 1.0)
    q = integer(ctx, "q", require(ctx, doc, "q", ""), 2)
    _state_space(ctx, "n", q, n)
    return q, n, potts_log_weights(q, n, edges, coupling, beta), tuple(float(a) for a in range(q))


def parse(ctx: Where, doc: dict, name: str, source: str, text: str) -> DiscreteSpec:
    """A ``kind: ising``, ``potts`` or ``pmf`` file."""
    k, d, logw, labels = _discrete(ctx, doc["kind"], doc)
    return DiscreteSpec(name=name, kind=doc["kind"], alphabet=k, dim=d, log_weights=tuple(logw.tolist()),
                        labels=labels, source=source, text=text)


def build(spec: DiscreteSpec) -> DiscreteTarget:
    return DiscreteTarget(spec.log_weights, spec.alphabet, spec.dim, name=spec.name, kind=spec.kind,
                          labels=spec.labels, spec=spec)


ISING_KIND = TargetKind("ising", "An Ising model on a chain, ring, grid or complete graph (spins -1/+1).",
                        frozenset({"n", "graph", "rows", "cols", "coupling", "field", "beta"}), parse, build,
                        discrete=True)
POTTS_KIND = TargetKind("potts", "A q-state Potts model on a chain, ring, grid or complete graph.",
                        frozenset({"q", "n", "graph", "rows", "cols", "coupling", "beta"}), parse, build,
                        discrete=True)
PMF_KIND = TargetKind("pmf", "An explicit pmf on {0..K-1}^d: probs or log_weights, row-major.",
                      frozenset({"alphabet", "dim", "probs", "log_weights"}), parse, build, discrete=True)
