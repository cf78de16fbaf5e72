"""Randomized-midpoint Langevin (He, Balasubramanian and Erdogdu 2020; after Shen and Lee 2019).

For dX = grad log p(X) dt + sqrt(2) dW, one step of size h draws a midpoint time alpha ~ U(0, 1)
per particle and the Brownian path at alpha h and h:

    y  = x + alpha h s(x) + sqrt(2) W(alpha h)
    x' = x + h s(y) + sqrt(2) W(h),   W(h) = W(alpha h) + sqrt((1 - alpha) h) xi_2

with s = grad log p and W(alpha h) = sqrt(alpha h) xi_1. Two score evaluations per step. The
random alpha makes the step a mixture of affine maps, so it declares no affine step (no exact law);
each particle uses only its own alpha and noise, so it is per particle (difflab may chunk it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difflab.contracts import STEPS, Capabilities, Option, SamplerEntry, init_option, positive


@dataclass(frozen=True)
class State:
    xt: np.ndarray  # (d, n): particles on the last axis, difflab's layout

    @property
    def x(self) -> np.ndarray:
        return self.xt.T


@dataclass(frozen=True)
class RandomizedMidpoint:
    target: object
    step_size: float
    capabilities = Capabilities(per_particle=True)
    n_steps = None  # a Markov kernel: as many steps as asked

    def __post_init__(self):
        if not (np.isfinite(self.step_size) and self.step_size > 0):
            from difflab.errors import ConfigError

            raise ConfigError(f"step_size: must be positive and finite, got {self.step_size}")

    def init(self, x0: np.ndarray) -> State:
        return State(np.ascontiguousarray(np.asarray(x0, dtype=np.float64).T))

    def step(self, rng: np.random.Generator, state: State):
        h, xt = self.step_size, state.xt
        alpha = rng.random(xt.shape[1])  # one midpoint time per particle
        w_mid = np.sqrt(alpha * h) * rng.standard_normal(xt.shape)
        w_end = w_mid + np.sqrt((1.0 - alpha) * h) * rng.standard_normal(xt.shape)
        y = xt + (alpha * h) * self.target.score_t(xt) + np.sqrt(2.0) * w_mid
        out = xt + h * self.target.score_t(y) + np.sqrt(2.0) * w_end
        return State(out), {"nfe": 2.0}


RMLA_ENTRY = SamplerEntry(
    "rmla", "Randomized-midpoint Langevin (He, Balasubramanian and Erdogdu 2020): two scores per step.",
    options=(Option("step_size", 0.1, float, "Step size h.", check=positive),),
    build=lambda target, p: RandomizedMidpoint(target, p["step_size"]),
    steps=STEPS, init=init_option("normal", "target", help="Initial state: normal or target draws."), mcmc=True,
)
