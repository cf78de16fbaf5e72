"""A deliberately wrong score, to study how score error propagates (``--score-error``).

``PerturbedScore`` wraps a target: ``score_t`` (what the samplers call) returns the perturbed
score s~, every other attribute is the exact target's. Kinds, each with size ``eps``:

* ``bias``: s~(x, t) = s(x, t) + eps b(x) / sigma_t, with b a fixed smooth random field
  b(x) = sqrt(2 / F) sum_f a_f cos(w_f . x / l + phi_f) (F = 16 random Fourier features,
  a_f ~ N(0, I_d), w_f ~ N(0, I_d), phi_f ~ U(0, 2 pi), l the target's scale (tr Sigma / d)^1/2),
  drawn from the run's own seeded stream. E|b|^2 = d on average over the features: an error of
  relative size eps in the noise prediction eps_hat = -sigma_t s, the quantity networks learn.
* ``scale``: s~ = (1 + eps) s.
* ``variance``: s~ is the exact score of the target with every covariance times (1 + eps): the
  denoiser of a model that has the component variances wrong.

``scale`` and ``variance`` keep the score affine on a Gaussian target, so the exact law of the
output (``exact_kl``) still applies and includes the score error; ``bias`` does not.
"""

from __future__ import annotations

import numpy as np

N_FEATURES = 16


class ScoreWrapper:
    """A score that is deliberately not the target's (the contract's ``exact_score = False``):
    ``score_t`` is the subclass's, every other attribute is ``base``'s, the exact target it is
    measured against. The one forwarding base of the score error, naive reward guidance and
    guidance."""

    exact_score = False

    def __init__(self, base, affine_score: bool):
        self.base = base
        self.affine_score = affine_score  # the wrong score is still affine on a Gaussian target

    def __getattr__(self, name):
        if name == "base":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def score_error_sq(self, xt: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
        """|s~ - s|^2 per particle against the exact score of ``base``, (n,)."""
        diff = self.score_t(xt, alpha, sigma) - self.base.score_t(xt, alpha, sigma)
        return np.einsum("dn,dn->n", diff, diff)


class UserScore(ScoreWrapper):
    """The user's score function (a ``kind: score`` target), measured against ``base``, the exact
    reference target: ``score_mse`` and the error decomposition use the reference's exact score,
    and every metric its exact law. The function takes x as (n, d) (with ``noised``, also alpha and
    sigma: the score of alpha X + sigma Z) and returns (n, d): one call per step, all particles."""

    kind = "score"
    has_log_prob = False  # MALA needs a log density
    exact = False  # no exact posterior or noised density (localization, smc, --likelihood)

    def __init__(self, reference, fn, noised: bool, ref: str, spec=None):
        super().__init__(reference, affine_score=False)
        self.fn, self.has_noised_law, self.ref, self.spec = fn, noised, ref, spec

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        from difflab.errors import PluginError

        x = xt.T.view()
        x.flags.writeable = False  # the particles, read-only: a score that writes into them fails in one line
        try:
            out = self.fn(x, alpha, sigma) if self.has_noised_law else self.fn(x)
            out = np.array(out, dtype=np.float64)  # a copy: nothing of the user's is kept or aliased
        except Exception as exc:  # noqa: BLE001 -- the user's code: one line
            raise PluginError(f"score {self.ref}: raised {type(exc).__name__}: {exc}") from None
        if out.shape != x.shape:
            raise PluginError(f"score {self.ref}: returned shape {out.shape}; expected {x.shape} (particles, dimension)")
        return np.ascontiguousarray(out.T)

    def log_prob_and_score_t(self, xt, alpha: float = 1.0, sigma: float = 0.0):
        from difflab.errors import PluginError

        raise PluginError(f"score {self.ref}: a score alone has no log density")


class PerturbedScore(ScoreWrapper):
    def __init__(self, target, kind: str, eps: float, rng: np.random.Generator):
        super().__init__(target, affine_score=kind != "bias" and target.affine_score)
        self.kind = kind
        self.eps = float(eps)
        d = target.dim
        if kind == "bias":
            scale = float(np.sqrt(np.trace(target.cov) / d))
            self._w = rng.standard_normal((N_FEATURES, d)) / scale  # (F, d)
            self._phi = rng.uniform(0.0, 2.0 * np.pi, N_FEATURES)  # (F,)
            self._amp = rng.standard_normal((d, N_FEATURES)) * np.sqrt(2.0 / N_FEATURES)  # (d, F)
        elif kind == "variance":
            from difflab.targets.mixture import GaussianMixture

            self._wrong = GaussianMixture(target.weights, target.means, target.covs * (1.0 + self.eps),
                                          name=target.name, kind=target.kind)

    def bias_field_t(self, xt: np.ndarray) -> np.ndarray:
        """b(x) for xt (d, n), as (d, n)."""
        return self._amp @ np.cos(self._w @ xt + self._phi[:, None])

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        if self.kind == "variance":
            return self._wrong.score_t(xt, alpha, sigma)
        s = self.base.score_t(xt, alpha, sigma)
        if self.kind == "scale":
            s *= 1.0 + self.eps
            return s
        s += (self.eps / sigma) * self.bias_field_t(xt)
        return s


class RewardGuided(ScoreWrapper):
    """Naive reward guidance, seen as a score error against the tilted target.

    The reference law is p_lambda ∝ p exp(lambda r), r(x) = b^T x - x^T A x / 2 (``tilted``, in
    closed form). Naive guidance adds lambda grad r(x) to the untilted noised score at every time:
    s~(x, t) = grad log p_t(x) + lambda (b - A x). The exact steering term is instead the
    h-transform control grad log h_t(x), h_t(x) = E[exp(lambda r(X_0)) | X_t = x], and
    grad log p_t + grad log h_t = grad log p_lambda,t: the two agree at t = 0 only. So naive
    guidance is the tilted target with a wrong score, and everything built for ``--score-error``
    (score_mse per step, score_error_term, the exact law on a Gaussian: the step stays affine)
    measures it.
    """

    def __init__(self, tilted, untilted, lam: float, b, a):
        super().__init__(tilted, affine_score=untilted.affine_score)
        self.untilted = untilted
        d = tilted.dim
        self.lam = float(lam)
        self.b = np.zeros(d) if b is None else np.asarray(b, dtype=np.float64)
        self.a = np.zeros((d, d)) if a is None else np.asarray(a, dtype=np.float64)

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        s = self.untilted.score_t(xt, alpha, sigma)
        s += self.lam * (self.b[:, None] - self.a @ xt)
        return s
