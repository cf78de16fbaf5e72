"""Stochastic Heun for overdamped Langevin (the additive-noise Runge-Kutta 2 step).

    x~ = x + h s(x) + sqrt(2 h) xi,    x' = x + (h / 2) (s(x) + s(x~)) + sqrt(2 h) xi

with one xi for both stages. On a Gaussian N(m, P^-1) (s(x) = -P (x - m)) the step is affine:
x' - m = (I - h P + h^2 P^2 / 2)(x - m) + sqrt(2 h) (I - h P / 2) xi, so it declares an affine
step and difflab reports its exact law (``exact_kl``, ``exact_w2``). Its stationary covariance is
P^-1 (1 - (hP)^2 / 4 + O(h^3)): second order in h, where ULA's is first order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difflab.contracts import STEPS, AffineStep, Capabilities, Option, SamplerEntry, init_option, positive


@dataclass(frozen=True)
class State:
    xt: np.ndarray  # (d, n)

    @property
    def x(self) -> np.ndarray:
        return self.xt.T


@dataclass(frozen=True)
class StochasticHeun(AffineStep):
    target: object
    step_size: float
    capabilities = Capabilities(per_particle=True, affine=True)
    n_steps = None

    def init(self, x0: np.ndarray) -> State:
        return State(np.ascontiguousarray(np.asarray(x0, dtype=np.float64).T))

    def _move(self, xt: np.ndarray, noise: np.ndarray) -> np.ndarray:
        h = self.step_size
        s = self.target.score_t(xt)
        trial = xt + h * s + noise
        return xt + (0.5 * h) * (s + self.target.score_t(trial)) + noise

    def step(self, rng: np.random.Generator, state: State):
        noise = np.sqrt(2.0 * self.step_size) * rng.standard_normal(state.xt.shape)
        return State(self._move(state.xt, noise)), {"nfe": 2.0}

    # -- the affine contract
    def deterministic(self, xt: np.ndarray, k: int = 0) -> np.ndarray:
        return self._move(xt, np.zeros_like(xt))

    def noise_cov(self, k: int = 0) -> np.ndarray:
        """N N^T, N the step's response to its unit noise (pushed through the step itself)."""
        d = self.target.dim
        n = self._move(np.zeros((d, d)), np.sqrt(2.0 * self.step_size) * np.eye(d)) - self.deterministic(np.zeros((d, d)))
        return n @ n.T


HEUN_ENTRY = SamplerEntry(
    "langevin-heun", "Stochastic Heun for overdamped Langevin: second-order bias, two scores per step.",
    options=(Option("step_size", 0.1, float, "Step size h.", check=positive),),
    build=lambda target, p: StochasticHeun(target, p["step_size"]),
    steps=STEPS, init=init_option("normal", "target", help="Initial state: normal or target draws."), mcmc=True,
)
