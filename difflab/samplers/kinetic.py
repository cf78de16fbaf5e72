"""Underdamped (kinetic) Langevin dynamics by the BAOAB and OBABO splittings.

The kinetic Langevin diffusion with unit mass and friction gamma,

    dX = V dt,    dV = grad log p(X) dt - gamma V dt + sqrt(2 gamma) dW,

has p(x) N(v; 0, I) as its stationary law. A step of size h composes three exactly solvable parts
(Leimkuhler and Matthews 2013, "Rational construction of stochastic numerical methods for
molecular sampling"):

    B(t): v <- v + t grad log p(x)          (kick)
    A(t): x <- x + t v                       (drift)
    O(t): v <- c v + sqrt(1 - c^2) xi,  c = exp(-gamma t),  xi ~ N(0, I)   (exact Ornstein-Uhlenbeck)

* ``baoab`` = B(h/2) A(h/2) O(h) A(h/2) B(h/2). On a Gaussian target its stationary *position* law
  is exactly the target for every stable h (Leimkuhler and Matthews 2013, harmonic case); the
  velocity law (after the last kick) is N(0, I - h^2 P / 4) for precision P: biased at second
  order in h.
* ``obabo`` = O(h/2) B(h/2) A(h) B(h/2) O(h/2): velocity Verlet between two half-step
  thermostats. On a Gaussian its stationary position covariance is (P - h^2 P^2 / 4)^-1: biased at
  second order in h (ULA's bias is first order); its velocity law is exact.

One score evaluation per step: the score at the new position is the next step's first kick, kept
in the state. The velocities start from N(0, I), drawn from the step stream at the first step.
With an affine score (a Gaussian target) the step is affine in (x, v) with Gaussian noise, so the
exact law of the joint state is propagated by ``difflab.maths.exact`` and its position marginal reported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from difflab.contracts import (
    STEPS,
    AffineStep,
    Capabilities,
    Option,
    SamplerEntry,
    check_argument,
    positive,
)
from difflab.lazy import lazy
from difflab.samplers.langevin import INIT, check_step_size, step_size_option

np = lazy("numpy", globals(), "np")
SPLITTINGS = ("baoab", "obabo")


@dataclass(frozen=True)
class KineticState:
    xt: np.ndarray  # (d, n) positions
    vt: np.ndarray | None  # (d, n) velocities; None before the first step draws them
    grad_t: np.ndarray  # (d, n) grad log p at the positions

    @property
    def x(self) -> np.ndarray:
        return self.xt.T


@dataclass(frozen=True)
class ULD(AffineStep):
    target: object
    step_size: float
    friction: float = 1.0
    splitting: str = "baoab"
    capabilities = Capabilities(per_particle=True, affine=True)
    n_steps = None

    def __post_init__(self):
        check_step_size(self.step_size)
        check_argument("friction", self.friction, positive)
        check_argument("splitting", self.splitting, SPLITTINGS)

    def with_step_size(self, h: float) -> ULD:
        return replace(self, step_size=h)

    def init(self, x0: np.ndarray) -> KineticState:
        xt = np.ascontiguousarray(np.asarray(x0, dtype=np.float64).T)
        return KineticState(xt, None, self.target.score_t(xt))

    def _move(self, xt, vt, gt, xi):
        """One step from (x, v) with score g at x, noise xi ((1 or 2, d, n)): (x', v', g')."""
        h = self.step_size
        if self.splitting == "baoab":
            c = np.exp(-self.friction * h)
            v = vt + (0.5 * h) * gt
            x = xt + (0.5 * h) * v
            v = c * v + np.sqrt(1.0 - c * c) * xi[0]
            x += (0.5 * h) * v
            g = self.target.score_t(x)
            v += (0.5 * h) * g
            return x, v, g
        c = np.exp(-0.5 * self.friction * h)
        s = np.sqrt(1.0 - c * c)
        v = c * vt + s * xi[0]
        v += (0.5 * h) * gt
        x = xt + h * v
        g = self.target.score_t(x)
        v += (0.5 * h) * g
        v *= c
        v += s * xi[1]
        return x, v, g

    def step(self, rng: np.random.Generator, state: KineticState):
        vt = rng.standard_normal(state.xt.shape) if state.vt is None else state.vt
        xi = rng.standard_normal((1 if self.splitting == "baoab" else 2, *state.xt.shape))
        x, v, g = self._move(state.xt, vt, state.grad_t, xi)
        return KineticState(x, v, g), {"nfe": 1.0}

    # -- the affine contract on the joint state z = (x, v), (2d, m)
    def _split(self, zt):
        d = self.target.dim
        return zt[:d], zt[d:], self.target.score_t(np.ascontiguousarray(zt[:d]))

    def deterministic(self, zt: np.ndarray, k: int = 0) -> np.ndarray:
        xt, vt, gt = self._split(zt)
        x, v, _ = self._move(xt, vt, gt, np.zeros((2, *xt.shape)))
        return np.concatenate([x, v])

    def noise_cov(self, k: int = 0) -> np.ndarray:
        """N N^T with N the step's (affine) response to its unit noises, pushed through the step itself."""
        d = self.target.dim
        zero = self.deterministic(np.zeros((2 * d, d)))
        cols = []
        for j in range(1 if self.splitting == "baoab" else 2):
            xi = np.zeros((2, d, d))
            xi[j] = np.eye(d)
            xt, vt, gt = self._split(np.zeros((2 * d, d)))
            x, v, _ = self._move(xt, vt, gt, xi)
            cols.append(np.concatenate([x, v]) - zero)
        n = np.concatenate(cols, axis=1)
        return n @ n.T

    def exact_law_start(self, mean, cov):
        """The state (x, v) starts with v ~ N(0, I) independent of x."""
        d = len(mean)
        joint = np.zeros((2 * d, 2 * d))
        joint[:d, :d], joint[d:, d:] = cov, np.eye(d)
        return np.concatenate([mean, np.zeros(d)]), joint

    def exact_law_output(self, mean, cov):
        d = len(mean) // 2
        return mean[:d], cov[:d, :d]


ULD_ENTRY = SamplerEntry(
    "uld", "Underdamped (kinetic) Langevin by the BAOAB or OBABO splitting (position and velocity).",
    options=(step_size_option(0.1),
             Option("friction", ULD.friction, float, "Friction gamma of the velocity's Ornstein-Uhlenbeck part.",
                    check=positive),
             Option("splitting", ULD.splitting, str, "baoab (exact position law on Gaussians) or obabo.",
                    choices=SPLITTINGS)),
    build=lambda target, p: ULD(target, p["step_size"], p["friction"], p["splitting"]),
    steps=STEPS, init=INIT, mcmc=True,
)
