"""Finite-state diffusion and Gibbs sampling on enumerated discrete targets.

Forward process. Each coordinate runs, independently, a continuous-time Markov chain with rate
matrix beta(t) Q on t in [0, 1]:

* ``uniform``: Q = (1/K) 1 1^T - I (jump to a uniformly drawn value);
* ``absorbing`` (masking): an extra mask state m = K; Q sends every value to m at rate 1 and m is
  absorbing.

Both have the closed form P_t = exp(tau(t) Q), tau(t) = int_0^t beta, through the keep
probability kappa(t) = exp(-tau(t)): uniform P_t = kappa I + (1 - kappa) (1/K) 1 1^T; absorbing
P_t(a -> a) = kappa, P_t(a -> m) = 1 - kappa. Between times s < t the same forms hold with
kappa(t) / kappa(s). Schedules: ``linear`` kappa(t) = 1 - (1 - kappa_min) t and ``geometric``
kappa(t) = kappa_min^t (constant rate beta = -log kappa_min); kappa_min = kappa(1).

Posterior engine (:class:`Posterior`). Given a noisy state y at time t, the posterior over clean
states is w(x) ∝ p_0(x) prod_i P_t(y_i | x_i); the likelihood factorises over coordinates, so the
posterior marginals pi_i(b | y) = P(x_i = b | y_t = y) take two GEMMs of size sqrt(S) per row.

Reverse rates. R^_t(y -> y^{i<-a}) = beta(t) Q(a, y_i) p_t(y^{i<-a}) / p_t(y) and
p_t(y^{i<-a}) / p_t(y) = sum_b pi_i(b | y) P_t(a | b) / P_t(y_i | b), so

* uniform: rate to a != y_i is (beta / K) sum_b pi_i(b | y) P_t(a | b) / P_t(y_i | b);
* absorbing: a masked coordinate unmasks to a at rate beta kappa / (1 - kappa) pi_i(a | y);
  unmasked coordinates never change.

Reverse samplers, from t_k to t_{k+1} < t_k on a uniform grid, Delta = t_k - t_{k+1}:

* ``euler``: P(y_i -> a) = Delta r_a (rates at t_k), renormalised if they sum past 1;
* ``tau-leaping``: the rates frozen at t_k, each coordinate's competing exponential clocks, at
  most one jump per coordinate: P(y_i -> a) = (r_a / r) (1 - exp(-Delta r)), r = sum_a r_a
  (for binary spins: flip with probability 1 - exp(-Delta r));
* ``exact``: no time-discretisation error. Uniform noise: the exact reverse kernel
  p(x_s | x_t) ∝ p_s(x_s) prod_i P_{s->t}(x_t,i | x_s,i), drawn from its enumerated posterior.
  Absorbing noise: the any-order unmasking sampler, the jump chain of the reverse process: at
  each of d steps one uniformly chosen masked coordinate takes a value drawn from
  p_0(x_i | unmasked coordinates). Masking is independent of the state, so the all-masked start
  is exact for any kappa_min.

At t = 0 the reverse rate of a masked coordinate integrates to infinity: a coordinate still
masked at the last step is drawn from pi_i (for euler on the linear schedule this is already
what its last step does).

The run's time step count is ``steps``; the any-order sampler makes exactly d steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from difflab.contracts import (
    DISCRETE_TARGET,
    STEPS,
    Capabilities,
    Option,
    SamplerEntry,
    check_argument,
    init_option,
    with_default,
)
from difflab.errors import ConfigError
from difflab.lazy import lazy

np = lazy("numpy", globals(), "np")

NOISES = ("uniform", "absorbing")
METHODS = ("exact", "tau-leaping", "euler")
SCHEDULES = ("linear", "geometric")
MAX_EXACT_LAW = 4096  # noisy state spaces up to this size get their exact law propagated
_CHUNK = 1 << 17  # rows x states per posterior chunk (32 MiB of float64)


# ------------------------------------------------------------------ forward process
@dataclass(frozen=True)
class Noise:
    kind: str  # 'uniform' | 'absorbing'
    K: int  # alphabet of the clean states
    schedule: str  # 'linear' | 'geometric'
    kappa_min: float  # kappa(1)

    @property
    def n_noisy(self) -> int:
        """K' = the alphabet of noisy states (K, or K + 1 with the mask)."""
        return self.K + (self.kind == "absorbing")

    def kappa(self, t: float) -> float:
        if self.schedule == "linear":
            return 1.0 - (1.0 - self.kappa_min) * t
        return self.kappa_min**t

    def beta(self, t: float) -> float:
        """beta(t) = -kappa'(t) / kappa(t)."""
        if self.schedule == "linear":
            return (1.0 - self.kappa_min) / self.kappa(t)
        return -math.log(self.kappa_min)

    def unmask_rate(self, t: float) -> float:
        """Absorbing noise: beta kappa / (1 - kappa) = -kappa'(t) / (1 - kappa(t)), finite at t = 1
        even when kappa(1) = 0."""
        if self.schedule == "linear":
            return (1.0 - self.kappa_min) / (1.0 - self.kappa(t))
        kappa = self.kappa(t)
        return -math.log(self.kappa_min) * kappa / (1.0 - kappa)

    def generator(self) -> np.ndarray:
        """Q (K', K'), rows sum to 0."""
        k = self.K
        if self.kind == "uniform":
            return np.full((k, k), 1.0 / k) - np.eye(k)
        q = np.zeros((k + 1, k + 1))
        q[:k, k] = 1.0
        q[np.arange(k), np.arange(k)] = -1.0
        return q

    def kernel(self, r: float) -> np.ndarray:
        """Transition matrix (K', K') over a stretch whose keep probability is r: from time s to
        t it is kernel(kappa(t) / kappa(s)); from 0 to t, kernel(kappa(t)) (its first K rows)."""
        k = self.K
        if self.kind == "uniform":
            return r * np.eye(k) + (1.0 - r) / k
        p = np.zeros((k + 1, k + 1))
        p[np.arange(k), np.arange(k)] = r
        p[:k, k] = 1.0 - r
        p[k, k] = 1.0
        return p

    def prior_law(self, dim: int) -> np.ndarray:
        """The start law on the noisy space (K'^d,): uniform, or all mass on the all-masked state."""
        if self.kind == "uniform":
            return np.full(self.K**dim, 1.0 / self.K**dim)
        q = np.zeros(self.n_noisy**dim)
        q[-1] = 1.0
        return q

    def prior_sample(self, rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
        if self.kind == "uniform":
            return rng.integers(0, self.K, size=(n, dim), dtype=np.int64)
        return np.full((n, dim), self.K, dtype=np.int64)


# ------------------------------------------------------------------ posterior engine
class Posterior:
    """Posterior over the clean states of ``target`` given noisy states y, when each coordinate
    was noised independently by the uniform or absorbing kernel with keep probability r, and the
    clean state has prior ``prior`` (S,) (default: the target).

    The likelihood factorises over coordinates, so with the coordinates split into a first half A
    and a second half B (x = (a, b)) and the prior as a matrix T[a, b] (K^|A| x K^|B|),
    w(a, b) ∝ c_A(a) T[a, b] c_B(b) with c_A, c_B the likelihoods of each half. Marginals then
    need only (rows x sqrt S) work: pi over A from c_A ⊙ (c_B T^T), over B from c_B ⊙ (c_A T).
    Each half's likelihood depends on the number m of its unmasked coordinates where the state
    agrees with y: absorbing, [m = number unmasked]; uniform, proportional to rho^m,
    rho = (r + (1 - r) / K) / ((1 - r) / K), taken relative to the row's largest m (a lookup, no
    exp). Rows are deduplicated first: the posterior depends only on the noisy state.
    A row whose consistent states all have prior probability 0 (reachable only by euler or
    tau-leaping unmasking several coordinates at once) gets the posterior under a uniform prior,
    i.e. its masked coordinates are filled uniformly.
    """

    def __init__(self, target, kind: str, r: float, prior: np.ndarray | None = None):
        from difflab.targets.discrete import enumerate_states

        self.target, self.kind = target, kind
        k, d = target.K, target.dim
        self.da = d // 2
        self.n_noisy = k + (kind == "absorbing")
        self.noisy_strides = self.n_noisy ** np.arange(d - 1, -1, -1, dtype=np.int64)
        self.table = (target.probs if prior is None else prior).reshape(k**self.da, k ** (d - self.da))
        self.halves = []
        for lo, hi in ((0, self.da), (self.da, d)):
            states = enumerate_states(k, hi - lo)
            oh = (states[:, :, None] == np.arange(k)).reshape(len(states), -1).astype(np.float64)
            self.halves.append((lo, hi, oh))  # one-hot of the half's states (K^h, h K)
        if kind == "uniform":
            lo_p = (1.0 - r) / k
            self.decay = (lo_p / (r + lo_p)) ** np.arange(d + 1)  # rho^-(m_max - m)

    def _unique(self, y: np.ndarray):
        _, first, inv = np.unique(y @ self.noisy_strides, return_index=True, return_inverse=True)
        return y[first], inv.reshape(-1)

    def _likelihoods(self, y: np.ndarray) -> list[np.ndarray]:
        """[c_A (U, K^|A|), c_B (U, K^|B|)] for distinct noisy rows y (U, d)."""
        k = self.target.K
        out = []
        for lo, hi, oh_states in self.halves:
            yh = y[:, lo:hi]
            known = yh < k
            oh = np.zeros((len(y), (hi - lo) * k))
            rows, cols = np.nonzero(known)
            oh[rows, cols * k + yh[rows, cols]] = 1.0
            m = oh @ oh_states.T  # agreements, exact small integers
            if self.kind == "absorbing":
                out.append((m == known.sum(axis=1)[:, None]).astype(np.float64))
            else:
                out.append(self.decay[np.rint(m.max(axis=1, keepdims=True) - m).astype(np.intp)])
        return out

    def _prepared(self, y: np.ndarray):
        """(c_A, c_B, g = c_B T^T, h = c_A T, Z, fallback rows) with the uniform-prior fallback
        applied to rows of zero posterior mass."""
        ca, cb = self._likelihoods(y)
        g, h = cb @ self.table.T, ca @ self.table
        z = np.einsum("ua,ua->u", ca, g)
        bad = z <= 0
        if bad.any():
            ones = np.ones_like(self.table)
            g[bad], h[bad] = cb[bad] @ ones.T, ca[bad] @ ones
            z[bad] = np.einsum("ua,ua->u", ca[bad], g[bad])
        return ca, cb, g, h, z, bad

    def weights(self, y: np.ndarray) -> np.ndarray:
        """Normalised posterior weights (n, S) over the clean states, one row per noisy row."""
        yu, inv = self._unique(y)
        ca, cb, _, _, z, bad = self._prepared(yu)
        w = ca[:, :, None] * self.table
        w *= (cb / z[:, None])[:, None, :]
        if bad.any():
            w[bad] = ca[bad, :, None] * (cb[bad] / z[bad, None])[:, None, :]
        return w.reshape(len(yu), -1)[inv]

    def marginals(self, y: np.ndarray) -> np.ndarray:
        """Posterior single-site marginals pi (n, d, K): pi[n, i, b] = P(x_i = b | y_n)."""
        yu, inv = self._unique(y)
        ca, cb, g, h, z, _ = self._prepared(yu)
        (_, _, oh_a), (_, _, oh_b) = self.halves
        pi = np.concatenate([(ca * g) @ oh_a, (cb * h) @ oh_b], axis=1) / z[:, None]
        return pi[inv].reshape(len(y), y.shape[1], self.target.K)

    def sample(self, rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
        """One draw of the clean state per row of y (n, d), as flat indices: the second half from
        its marginal, then the first half given it, each by inverse CDF."""
        u = rng.random((len(y), 2))
        yu, inv = self._unique(y)
        ca, cb, _, h, _, _ = self._prepared(yu)
        cdf_b = np.cumsum(cb * h, axis=1)[inv]
        b = np.minimum((u[:, :1] * cdf_b[:, -1:] >= cdf_b).sum(axis=1), cdf_b.shape[1] - 1)
        cols = self.table.T[b]  # T[:, b] per particle
        bad = (cols * ca[inv]).sum(axis=1) <= 0
        cols[bad] = 1.0
        cdf_a = np.cumsum(ca[inv] * cols, axis=1)
        a = np.minimum((u[:, 1:] * cdf_a[:, -1:] >= cdf_a).sum(axis=1), cdf_a.shape[1] - 1)
        return a * self.table.shape[1] + b


def categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of probs (..., K') by inverse CDF; never a zero-probability entry."""
    c = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1])
    return (u[..., None] * c[..., -1:] >= c).sum(axis=-1)


# ------------------------------------------------------------------ reverse diffusion
@dataclass(frozen=True)
class DiscreteState:
    x: np.ndarray  # (n, d) int64 codes; K = masked
    k: int  # steps taken


class DiscreteDiffusion:
    """Reverse-time sampler of the finite-state diffusion; a pure ``step(rng, state)``."""

    capabilities = Capabilities()

    def __init__(self, target, noise: Noise, method: str, steps: int):
        check_argument("method", method, METHODS)
        self.target, self.noise, self.method = target, noise, method
        self.times = np.linspace(1.0, 0.0, steps + 1)
        self.n_steps = target.dim if (method == "exact" and noise.kind == "absorbing") else steps
        self.clean = Posterior(target, "absorbing", 0.5)  # r cancels: masked coordinates carry no information
        self.timed = self.n_steps == steps and not (method == "exact" and noise.kind == "absorbing")

    @property
    def n_noisy(self) -> int:
        return self.noise.n_noisy

    def start_law(self) -> np.ndarray:
        """The law (K'^d,) the reverse process starts from."""
        return self.noise.prior_law(self.target.dim)

    def start_sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.noise.prior_sample(rng, n, self.target.dim)

    def init(self, x0: np.ndarray) -> DiscreteState:
        return DiscreteState(np.asarray(x0, dtype=np.int64), 0)

    # -- transition probabilities of each coordinate, for the approximate methods and the exact law
    def rates(self, y: np.ndarray, t: float) -> np.ndarray:
        """Reverse rates (n, d, K') out of each y_i at time t (0 at the current value)."""
        nz, kappa = self.noise, self.noise.kappa(t)
        lik = nz.kernel(kappa)[: nz.K]
        pi = Posterior(self.target, nz.kind, kappa).marginals(y)
        if nz.kind == "absorbing":
            r = np.zeros(y.shape + (nz.K + 1,))
            masked = y == nz.K
            r[masked, : nz.K] = nz.unmask_rate(t) * pi[masked]
            return r
        # uniform: (beta / K) sum_b pi_b P(a | b) / P(y_i | b), P = kappa I + (1 - kappa) / K
        pt = pi / lik[:, y].transpose(1, 2, 0)
        r = (nz.beta(t) / nz.K) * (kappa * pt + (1.0 - kappa) / nz.K * pt.sum(axis=-1, keepdims=True))
        np.put_along_axis(r, y[..., None], 0.0, axis=-1)
        return r

    def step_probs(self, y: np.ndarray, k: int) -> np.ndarray:
        """P(next y_i = c | y) (n, d, K') of step k -> k + 1 for euler and tau-leaping."""
        t, s = self.times[k], self.times[k + 1]
        dt = t - s
        r = self.rates(y, t)
        total = r.sum(axis=-1, keepdims=True)
        if self.method == "euler":
            p = dt * r
            p /= np.maximum(1.0, dt * total)
        else:
            jump = -np.expm1(-dt * total)
            p = np.divide(r, total, out=np.zeros_like(r), where=total > 0) * jump
        np.put_along_axis(p, y[..., None], 1.0 - p.sum(axis=-1, keepdims=True), axis=-1)
        if s == 0.0 and self.noise.kind == "absorbing":
            self._fill_masked(y, p)
        return np.clip(p, 0.0, None)

    def _fill_masked(self, y: np.ndarray, p: np.ndarray) -> None:
        masked = y == self.noise.K
        if masked.any():
            rows = masked.any(axis=1)
            pi = self.clean.marginals(y[rows])
            p[rows] = np.where(masked[rows, :, None], np.concatenate([pi, np.zeros(pi.shape[:2] + (1,))], -1), p[rows])

    def exact_kernel(self, k: int) -> Posterior:
        """Uniform noise: the posterior of x_{t_{k+1}} given x_{t_k}."""
        nz, t, s = self.noise, self.times[k], self.times[k + 1]
        prior = self.target.probs if s == 0.0 else self.target.noised_table(nz.kernel(nz.kappa(s)))
        return Posterior(self.target, "uniform", nz.kappa(t) / nz.kappa(s), prior)

    def step(self, rng: np.random.Generator, state: DiscreteState):
        y, k = state.x, state.k
        if self.method != "exact":
            new = categorical(rng, self.step_probs(y, k))
        elif self.noise.kind == "uniform":
            new = self.target.states[self.exact_kernel(k).sample(rng, y)]
        else:  # any-order unmasking: one uniformly chosen masked coordinate per particle
            masked = y == self.noise.K
            pick = np.argmax(np.where(masked, rng.random(y.shape), -1.0), axis=1)
            pi = self.clean.marginals(y)[np.arange(len(y)), pick]
            new = y.copy()
            live = masked.any(axis=1)
            new[live, pick[live]] = categorical(rng, pi[live])
        info = {"nfe": 1.0, "jumps": float((new != y).sum(axis=1).mean())}
        return DiscreteState(new, k + 1), info

    # -- exact law on the noisy space (no Monte Carlo)
    def law_step(self, q: np.ndarray, k: int) -> np.ndarray:
        """The law (K'^d,) after step k, from the law q before it."""
        nz, d = self.noise, self.target.dim
        ys = noisy_states(nz, d)
        if self.method != "exact" or nz.kind == "uniform":
            # q @ T, T built only for rows of positive mass, in blocks that stay in cache
            kernel = self.exact_kernel(k).weights if self.method == "exact" else \
                (lambda y: product_kernel(self.step_probs(y, k)))
            live = np.nonzero(q > 0)[0]
            out = np.zeros(nz.n_noisy**d)
            for a in range(0, len(live), 256):
                rows = live[a : a + 256]
                out += q[rows] @ kernel(ys[rows])
            return out
        kn = nz.n_noisy
        strides = kn ** np.arange(d - 1, -1, -1)
        masked = ys == nz.K
        m = masked.sum(axis=1)
        pi = self.clean.marginals(ys)  # (S', d, K)
        src = np.repeat(np.arange(len(ys)), d * nz.K).reshape(len(ys), d, nz.K)
        dst = (ys @ strides)[:, None, None] + (np.arange(nz.K)[None, None, :] - ys[:, :, None]) * strides[None, :, None]
        val = np.where(masked[:, :, None], pi / np.maximum(m, 1)[:, None, None], 0.0)
        out = np.zeros_like(q)
        np.add.at(out, dst[masked], (q[src] * val)[masked])
        return out + np.where(m == 0, q, 0.0)

    def noised_law(self, k: int) -> np.ndarray:
        """The exact marginal p_{t_k} on the noisy space."""
        return self.target.noised_table(self.noise.kernel(self.noise.kappa(self.times[k]))[: self.noise.K])


def noisy_states(noise: Noise, dim: int) -> np.ndarray:
    from difflab.targets.discrete import enumerate_states

    return enumerate_states(noise.n_noisy, dim)


def product_kernel(p: np.ndarray) -> np.ndarray:
    """Dense transition matrix (S', S') of a step that moves each coordinate independently:
    T[y, x] = prod_i p[y, i, x_i] for p (S', d, K'), by successive outer products."""
    t = np.ascontiguousarray(p[:, -1, :])
    for i in range(p.shape[1] - 2, -1, -1):  # prepend coordinate i: the long axis stays innermost
        t = (p[:, i, :, None] * t[:, None, :]).reshape(p.shape[0], -1)
    return t


# ------------------------------------------------------------------ Gibbs (Glauber) baseline
class Gibbs:
    """Systematic-scan Gibbs sampler: one step is a sweep over the d sites in order, each drawn
    from its exact conditional p(x_i | x_-i) (heat bath)."""

    capabilities = Capabilities()
    n_steps = None  # a Markov kernel: runs as many sweeps as asked

    def __init__(self, target):
        self.target = target
        self.timed = True
        self.n_noisy = target.K
        t = target.table
        with np.errstate(invalid="ignore"):
            # conditional tables p(x_i | x_-i) per site; a slice of zero mass gets 1/K
            self.cond = []
            for i in range(target.dim):
                c = t / t.sum(axis=i, keepdims=True)
                self.cond.append(np.where(np.isfinite(c), c, 1.0 / target.K))

    def init(self, x0: np.ndarray) -> DiscreteState:
        return DiscreteState(np.asarray(x0, dtype=np.int64), 0)

    def step(self, rng: np.random.Generator, state: DiscreteState):
        tg = self.target
        x = state.x.copy()
        u = rng.random(x.shape)
        changed = np.zeros(len(x))
        for i in range(tg.dim):
            base = tg.index(x) - x[:, i] * tg.strides[i]
            p = self.cond[i].reshape(-1)[base[:, None] + np.arange(tg.K) * tg.strides[i]]  # (n, K)
            c = np.cumsum(p, axis=1)
            new = (u[:, i, None] * c[:, -1:] >= c).sum(axis=1)
            changed += new != x[:, i]
            x[:, i] = new
        return DiscreteState(x, state.k + 1), {"jumps": float(changed.mean())}

    def law_step(self, q: np.ndarray, k: int) -> np.ndarray:
        t = q.reshape((self.target.K,) * self.target.dim)
        for i in range(self.target.dim):
            t = t.sum(axis=i, keepdims=True) * self.cond[i]
        return t.reshape(-1)

    def noised_law(self, k: int) -> np.ndarray:
        return self.target.probs


# ------------------------------------------------------------------ exact-law summaries
def clean_part(law: np.ndarray, target, n_noisy: int) -> tuple[np.ndarray, float]:
    """The law restricted to unmasked states, in the target's indexing, and the mass left masked."""
    if n_noisy == target.K:
        return law, 0.0
    idx = target.states @ (n_noisy ** np.arange(target.dim - 1, -1, -1))
    clean = law[idx]
    return clean, float(max(0.0, 1.0 - clean.sum()))


# ---------------------------------------------------------------- registry entries
# Default steps per noise, by one rule: on every shipped discrete target the default run's exact_tv
# (tau-leaping) is at most half the smallest Monte Carlo floor it reports at the default 1,000
# particles (floor_marginal_tv, mean of 16 exact-draw sets: 0.017 on xor3 to 0.027 on potts), so its discretisation error
# cannot show. Tau-leaping's TV is about C / steps with C up to 0.39 (absorbing) and 8.4 (uniform).
# (method exact has no discretisation error: the steps option's default.)
DEFAULT_STEPS = {"absorbing": 100, "uniform": 800}


def _resolve(p: dict) -> dict:
    noise = p["noise"]
    p["schedule"] = p["schedule"] or ("linear" if noise == "absorbing" else "geometric")
    kmin = p["kappa_min"]
    kmin = p["kappa_min"] = float(kmin if kmin is not None else 0.0 if p["schedule"] == "linear" else 1e-3)
    if not (math.isfinite(kmin) and 0.0 <= kmin < 1.0):
        raise ConfigError(f"--kappa-min: must be in [0, 1), got {kmin}")
    if kmin == 0.0 and p["schedule"] == "geometric":
        raise ConfigError("--kappa-min: the geometric schedule kappa_min^t needs kappa_min > 0, got 0.0")
    if kmin == 0.0 and noise == "uniform":
        raise ConfigError("--kappa-min: uniform noise with kappa(1) = 0 has infinite reverse rates at t = 1; "
                          "give kappa-min > 0, got 0.0")
    return p


DISCRETE_ENTRY = SamplerEntry(
    "discrete", "Finite-state diffusion: reverse CTMC with the exact reverse rates of a discrete target.",
    options=(Option("noise", "absorbing", str, "Forward noise: absorbing (masking) or uniform.", choices=NOISES),
             Option("method", "tau-leaping", str, "exact (no discretisation error), tau-leaping or euler.",
                    choices=METHODS),
             Option("schedule", None, str, "Keep probability kappa(t): linear (1 - (1 - kappa_min) t) or geometric "
                    "(kappa_min^t). Default: linear for absorbing, geometric for uniform.", choices=SCHEDULES),
             Option("kappa_min", None, float, "kappa(1). Default: 0 (linear), 1e-3 (geometric).")),
    build=lambda target, p: DiscreteDiffusion(target, Noise(p["noise"], target.K, p["schedule"], p["kappa_min"]),
                                              p["method"], p["steps"]),
    resolve=_resolve, target_kind="discrete", target=DISCRETE_TARGET, init=init_option("prior", help="The noise's prior."),
    steps=with_default(STEPS, DEFAULT_STEPS["absorbing"], "Reverse time steps (exact with absorbing noise: d unmasking "
                       f"steps). Default {DEFAULT_STEPS['absorbing']} (absorbing), {DEFAULT_STEPS['uniform']} (uniform)."),
    steps_for=lambda given: (None if given.get("method") == "exact"
                             else DEFAULT_STEPS.get(given.get("noise") or "absorbing")),
)
GIBBS_ENTRY = SamplerEntry(
    "gibbs", "Gibbs (Glauber heat-bath) MCMC baseline for discrete targets: systematic-scan sweeps.",
    options=(), build=lambda target, p: Gibbs(target), target_kind="discrete", target=DISCRETE_TARGET, mcmc=True,
    init=init_option("uniform", "target", help="Initial state: 'uniform' (independent uniform values) or 'target' "
                     "(exact draws)."),
    steps=with_default(STEPS, 100, "Sweeps (each updates every site once, in order)."),
)
