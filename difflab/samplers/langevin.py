"""Langevin samplers: ULA and MALA as pure steps.

The overdamped Langevin diffusion dX = grad log p(X) dt + sqrt(2) dW has p as its stationary law.
Its Euler-Maruyama step with step size h is the proposal shared by both samplers:

    x' = x + h grad log p(x) + sqrt(2 h) xi,    xi ~ N(0, I).              (1)

* ULA (Roberts and Tweedie 1996) takes (1) as it is. Its stationary law is biased: on a Gaussian
  N(m, S) it is N(m, S (I - h S^-1 / 2)^-1) for h < 2 / lambda_max(S^-1).
* MALA (Roberts and Tweedie 1996; Besag 1994) accepts (1) with probability min(1, a),

    log a = log p(x') - log p(x) + |xi|^2 / 2 - |x - x' - h grad log p(x')|^2 / (4 h),   (2)

  the Metropolis-Hastings ratio of the Gaussian proposal q(x' | x) = N(x + h grad, 2 h I), which
  makes p exactly invariant. The state caches log p and its gradient: one evaluation per step.

``step(rng, state) -> (state, info)`` is pure given the generator: the driver owns everything else.
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
    init_option,
    positive,
)
from difflab.errors import ConfigError
from difflab.lazy import lazy

np = lazy("numpy", globals(), "np")


def check_step_size(h: float) -> None:
    """The step size's rule (``--step-size``), for the objects themselves."""
    check_argument("step_size", h, positive)


@dataclass(frozen=True)
class LangevinState:
    """Positions and cached quantities, particles along the last axis (the targets' fast layout)."""

    xt: np.ndarray  # (d, n) positions
    log_prob: np.ndarray | None  # (n,) cached log p(x) (MALA only)
    grad_t: np.ndarray | None  # (d, n) cached grad log p(x) (MALA only)

    @property
    def x(self) -> np.ndarray:
        """Positions as (n, d) (a view)."""
        return self.xt.T


@dataclass(frozen=True)
class ULA(AffineStep):
    """Unadjusted Langevin algorithm: step (1). Noise is drawn as a (d, n) array."""

    target: object
    step_size: float
    capabilities = Capabilities(per_particle=True, affine=True, adapts_step_size=True)
    n_steps = None  # a Markov kernel: runs as many steps as asked

    def __post_init__(self):
        check_step_size(self.step_size)

    def with_step_size(self, h: float) -> ULA:
        return replace(self, step_size=h)

    def init(self, x: np.ndarray) -> LangevinState:
        xt = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
        return LangevinState(xt=xt, log_prob=None, grad_t=None)

    def deterministic(self, xt: np.ndarray, k: int = 0) -> np.ndarray:
        """x + h grad log p(x): the step without its noise (affine on a Gaussian target)."""
        out = self.target.score_t(xt)
        out *= self.step_size
        out += xt
        return out

    def noise_cov(self, k: int = 0) -> float:
        """2 h (times I)."""
        return 2.0 * self.step_size

    def step(self, rng: np.random.Generator, state: LangevinState):
        xt = self.deterministic(state.xt)
        noise = rng.standard_normal(xt.shape)
        noise *= np.sqrt(2.0 * self.step_size)
        xt += noise
        return LangevinState(xt=xt, log_prob=None, grad_t=None), {"nfe": 1.0}


@dataclass(frozen=True)
class MALA:
    """Metropolis-adjusted Langevin algorithm: proposal (1), acceptance (2).

    Per step it draws xi as a (d, n) array, then one uniform per chain."""

    target: object
    step_size: float
    n_steps = None
    # A finite state stays finite, whatever the target: a proposal x' with a non-finite coordinate
    # makes x - x' - h grad log p(x') non-finite, so the term -|.|^2 / (4h) of log a is -inf or nan,
    # and log a is -inf or nan (log p(x') < +inf): min(1, a) is 0 and x' is rejected. The driver
    # skips its non-finite guard (a pass over the state per step) for such samplers (tested with
    # proposals that overflow).
    capabilities = Capabilities(per_particle=True, keeps_finite=True, adapts_step_size=True)

    def __post_init__(self):
        check_step_size(self.step_size)

    def with_step_size(self, h: float) -> MALA:
        return replace(self, step_size=h)

    def init(self, x: np.ndarray) -> LangevinState:
        xt = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
        logp, grad_t = self.target.log_prob_and_score_t(xt)
        return LangevinState(xt=xt, log_prob=logp, grad_t=grad_t)

    def step(self, rng: np.random.Generator, state: LangevinState):
        h = self.step_size
        xi = rng.standard_normal(state.xt.shape)
        log_a = _half_sq_norm(xi)  # |xi|^2 / 2; from here on, arrays made in this step are updated in place
        prop = np.multiply(state.grad_t, h)
        prop += state.xt
        xi *= np.sqrt(2.0 * h)
        prop += xi
        logp_p, grad_p = self.target.log_prob_and_score_t(prop)
        back = np.multiply(grad_p, h, out=xi)  # x - x' - h grad log p(x'), in xi's memory
        back += prop
        back -= state.xt
        log_a -= _half_sq_norm(back) / (2.0 * h)
        log_a += logp_p
        log_a -= state.log_prob
        # min(1, a), and accept when u < min(1, a): the same event as log u < log a, without a log
        # per chain. A non-finite proposal has log_a = nan (fmax makes its min(1, a) 0) or -inf:
        # it is rejected. Overflow and invalid-value warnings on the way are the driver's to silence.
        acc_prob = np.minimum(log_a, 0.0, out=log_a)
        np.exp(acc_prob, out=acc_prob)
        np.fmax(acc_prob, 0.0, out=acc_prob)
        n = acc_prob.shape[0]
        accept = rng.random(n) < acc_prob
        xt = np.where(accept, prop, state.xt)
        logp = np.where(accept, logp_p, state.log_prob)
        grad_t = np.where(accept, grad_p, state.grad_t)
        info = {"acceptance_rate": float(np.add.reduce(acc_prob)) / n,
                "accepted_fraction": float(np.count_nonzero(accept)) / n,
                "nfe": 1.0}  # one log density and score at the proposal
        return LangevinState(xt=xt, log_prob=logp, grad_t=grad_t), info


def _half_sq_norm(vt: np.ndarray) -> np.ndarray:
    """|v|^2 / 2 per particle for v (d, n): rows summed in low dimension, einsum above (fewer calls)."""
    out = np.einsum("dn,dn->n", vt, vt) if vt.shape[0] > 8 else np.add.reduce(vt * vt, axis=0)
    out *= 0.5
    return out


TARGET_ACCEPTANCE = 0.574  # optimal MALA acceptance rate (Roberts and Rosenthal 1998)


class StepSizeAdapter:
    """Robbins-Monro warm-up of a shared step size toward a target acceptance rate.

    log h_{t+1} = log h_t + (t + 1)^(-0.6) (a_t - target), with a_t the mean acceptance
    probability over all chains at warm-up step t; the adapted h is the mean of log h over the
    second half of the warm-up (Polyak averaging), which removes the last iterates' noise.
    """

    def __init__(self, step_size: float, warmup: int, target: float = TARGET_ACCEPTANCE):
        self.log_h = float(np.log(step_size))
        self.warmup = warmup
        self.target = target
        self.t = 0
        self._tail: list[float] = []

    def update(self, info: dict) -> float:
        self.log_h += (self.t + 1) ** -0.6 * (info["acceptance_rate"] - self.target)
        self.t += 1
        if self.t > self.warmup // 2:
            self._tail.append(self.log_h)
        return float(np.exp(self.log_h))

    def final(self) -> float:
        return float(np.exp(np.mean(self._tail))) if self._tail else float(np.exp(self.log_h))


# ---------------------------------------------------------------- registry entries
def step_size_option(default: float):
    return Option("step_size", default, float, "Step size h.", check=positive)


INIT = init_option("normal", "target", help="Initial state: 'normal' (standard normal) or 'target' (exact target draws).")


def _no_adaptation(params: dict) -> dict:
    return {**params, "adapt": False, "warmup": 0}  # recorded for every Langevin run


def _adaptation(params: dict) -> dict:
    if params["adapt"] and params["warmup"] < 1:
        raise ConfigError(f"--warmup: must be positive, got {params['warmup']}")
    return {**params, "warmup": params["warmup"] if params["adapt"] else 0}


ULA_ENTRY = SamplerEntry(
    "ula", "Unadjusted Langevin: x' = x + h score(x) + sqrt(2h) xi (biased for h > 0).",
    options=(step_size_option(0.01),),
    build=lambda target, p: ULA(target, p["step_size"]), resolve=_no_adaptation,
    steps=STEPS, init=INIT, mcmc=True,
)
MALA_ENTRY = SamplerEntry(
    "mala", "Metropolis-adjusted Langevin: the ULA proposal plus a Metropolis-Hastings correction (exact).",
    options=(step_size_option(0.1),
             Option("adapt", False, bool, "Tune h during a warm-up toward acceptance 0.574."),
             Option("warmup", 500, int, "Warm-up steps with --adapt (not kept).")),
    build=lambda target, p: MALA(target, p["step_size"]), resolve=_adaptation, needs=("log_prob",),
    warmup=lambda p: (p["warmup"], StepSizeAdapter(p["step_size"], p["warmup"]) if p["adapt"] else None),
    steps=STEPS, init=INIT, mcmc=True,
)
