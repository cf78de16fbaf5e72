"""Classifier and classifier-free guidance on a mixture with classes, and the laws to judge them by.

A ``classes:`` block names groups of components. For a class c (components K_c):

* the exact conditional is again a mixture, p(x | c) = sum_{k in K_c} w_k N_k(x) / p(c), and so
  is its noised law p_t(x | c) (noising acts component by component);
* the exact classifier is p(c | x_t) = sum_{k in K_c} p(k | x_t), and
  grad log p(c | x_t) = grad log p_t(x | c) - grad log p_t(x) (Bayes).

Guidance replaces the score by

    classifier, scale W:  s_t + W grad log p(c | x_t)            = s_t + gamma (s_t(.|c) - s_t),  gamma = W
    cfg, scale W:         (1 + W) s_t(. | c) - W s_t              = s_t + gamma (s_t(.|c) - s_t),  gamma = 1 + W

so both are the one family s_t + gamma (s_t(. | c) - s_t): classifier guidance at scale W is CFG at
scale W - 1. At every t this is the score of q_t ∝ p_t(x | c)^gamma p_t(x)^(1 - gamma), and at
t = 0 of the *tilted law* q ∝ p(x | c)^gamma p(x)^(1 - gamma) ∝ p(x) p(c | x)^gamma. But q_t is
not the noised law of q unless noising commutes with the tilt, so guidance does not sample q in
general. It does when gamma = 0 (p) or gamma = 1 (p(. | c), exact) and, for Gaussians
p(. | c) = N(mu_c, S), p = N(mu, S) with one shared covariance, for every gamma (q_t is then the
Gaussian N(alpha (mu + gamma (mu_c - mu)), alpha^2 S + sigma^2 I), which is the noised q). With
different covariances q_t is Gaussian with precision gamma C_c^-1 + (1 - gamma) C^-1, not the
noised q: the guided ODE and SDE end at Gaussians different from q and from each other (tested
exactly).

Draws of q, any dimension, by rejection (exact): for gamma >= 1 propose from p(x | c) and accept
with probability p(c | x)^(gamma - 1); for 0 <= gamma < 1 propose from p and accept with
probability p(c | x)^gamma. Both acceptance probabilities are at most 1 because
q ∝ p(x | c) (p(c | x) / p(c))^(gamma - 1) ∝ p(x) (p(c | x) / p(c))^gamma.
"""

from __future__ import annotations

import numpy as np

from difflab.errors import DifflabError
from difflab.targets.perturbed import ScoreWrapper


def guidance_gamma(kind: str, scale: float) -> float:
    """The exponent gamma of the tilted law p(x | c)^gamma p(x)^(1 - gamma) a guidance aims at."""
    return float(scale) if kind == "classifier" else 1.0 + float(scale)


def guided_model(target, params: dict):
    """(model the sampler sees, the conditional p(x | c), the class's components, gamma) of a run
    with ``params`` guidance, class and scale."""
    members = target.classes[params["class"]]
    gamma = guidance_gamma(params["guidance"], params["scale"])
    conditional = target.conditional(members, params["class"])
    return Guided(conditional, target, gamma), conditional, members, gamma


class Guided(ScoreWrapper):
    """The guided score s_t + gamma (s_t(. | c) - s_t), seen as a score error against the exact
    conditional (``base``), so ``score_mse`` (|guided - s_t(. | c)|^2 = (gamma - 1)^2
    |grad log p(c | x_t)|^2) and ``score_error_term`` measure it; two model evaluations per score
    (conditional and unconditional), as in practice."""

    def __init__(self, conditional, unconditional, gamma: float):
        # Both Gaussian: the guided score is affine, so the exact law of the output applies.
        super().__init__(conditional, affine_score=conditional.is_gaussian and unconditional.is_gaussian)
        self.unconditional = unconditional
        self.gamma = float(gamma)

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        s = self.base.score_t(xt, alpha, sigma)
        if self.gamma == 1.0:
            return s
        s *= self.gamma
        s += (1.0 - self.gamma) * self.unconditional.score_t(xt, alpha, sigma)
        return s


class TiltedByClass:
    """The law q ∝ p(x) p(c | x)^gamma, drawn exactly by rejection (see the module docstring).

    ``mean`` and ``cov`` are Monte Carlo estimates from ``n_moments`` draws made at construction
    (from the given stream); ``acceptance`` is the observed acceptance rate and ``log_z`` the
    estimate of log E_{proposal}[p(c | X)^e], e the exponent used.
    """

    components = None  # no component structure to report (mode_tv) against

    def __init__(self, target, members, gamma: float, rng: np.random.Generator, *, n_moments: int = 100_000,
                 min_acceptance: float = 1e-3):
        if gamma < 0:
            raise DifflabError(f"gamma: must be >= 0, got {gamma}")
        self.target, self.members, self.gamma = target, list(members), float(gamma)
        self.dim = target.dim
        self.conditional = target.conditional(self.members)
        self.proposal, self.exponent = ((self.conditional, self.gamma - 1.0) if self.gamma >= 1.0
                                        else (target, self.gamma))
        self.min_acceptance = min_acceptance
        self._proposed = self._accepted = 0
        ref = self.sample(rng, n_moments)
        self.mean = ref.mean(axis=0)
        self.cov = np.atleast_2d(np.cov(ref, rowvar=False))
        self.acceptance = self._accepted / self._proposed
        self.log_z = float(np.log(self.acceptance))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n exact draws (n, d), proposed in batches until n are accepted."""
        out, have = [], 0
        while have < n:
            batch = max(1024, int(1.2 * (n - have) / max(self._rate(), self.min_acceptance)))
            x = self.proposal.sample(rng, batch)
            p = self.target.class_probability(x, self.members)
            keep = x[rng.random(batch) < p**self.exponent]
            self._proposed += batch
            self._accepted += len(keep)
            if self._proposed > 10_000 and self._rate() < self.min_acceptance:
                raise DifflabError(f"the guidance reference q ∝ p(x) p(c | x)^{self.gamma:g} accepts only "
                                   f"{self._rate():.2g} of its proposals; lower --scale")
            out.append(keep[: n - have])
            have += len(out[-1])
        return np.concatenate(out)

    def _rate(self) -> float:
        return self._accepted / self._proposed if self._proposed else 1.0
