"""A banana-shaped (curved) 2-D target as a plug-in target family: ``kind: banana``.

    X1 ~ N(0, sigma^2),    X2 = b (X1^2 - sigma^2) + Z,    Z ~ N(0, 1) independent,

so X2 is Gaussian given X1 (its mean curves with X1). Closed forms:

1. log p(x) = log N(x1; 0, sigma^2) + log N(r; 0, 1),  r = x2 - b (x1^2 - sigma^2)
2. grad log p(x) = (-x1 / sigma^2 + 2 b x1 r,  -r)
3. exact draws from the definition; mean (0, 0); covariance diag(sigma^2, 1 + 2 b^2 sigma^4)
   (E[X1^3] = 0, Var(X1^2) = 2 sigma^4).

It declares what it can do through difflab's target contract (``difflab.contracts.Target``): a
normalised log density (MALA runs on it), no noised law (the diffusion samplers are refused), no
mixture components and no closed-form marginal of x2 (the plots show the samples without contours).
The family is registered through the entry-point group ``difflab.targets`` (see pyproject.toml), or
with ``--plugin difflab_extras.banana``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difflab.contracts import TargetKind
from difflab.targets.fields import Where, number, require

_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


class Banana:
    discrete = False
    is_gaussian = affine_score = False
    has_log_prob, has_noised_law, has_marginals = True, False, False
    exact = exact_score = True
    components = None
    reward, untilted, tilt_log_z = (), None, None
    dim = 2

    def __init__(self, b: float, sigma: float, *, name: str = "banana", spec=None):
        self.b, self.sigma = float(b), float(sigma)
        self.name, self.kind, self.spec, self.classes = name, "banana", spec, {}

    @property
    def mean(self) -> np.ndarray:
        return np.zeros(2)

    @property
    def cov(self) -> np.ndarray:
        return np.diag([self.sigma**2, 1.0 + 2.0 * self.b**2 * self.sigma**4])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x1 = self.sigma * rng.standard_normal(n)
        return np.column_stack([x1, self.b * (x1 * x1 - self.sigma**2) + rng.standard_normal(n)])

    def log_prob_and_score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0):
        """(log p (n,), grad log p (2, n)) at xt (2, n); the target itself only."""
        x1, x2 = xt
        r = x2 - self.b * (x1 * x1 - self.sigma**2)
        log_p = -0.5 * (x1 / self.sigma) ** 2 - np.log(self.sigma) - 0.5 * r * r - 2 * _HALF_LOG_2PI
        return log_p, np.stack([-x1 / self.sigma**2 + 2.0 * self.b * x1 * r, -r])

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        return self.log_prob_and_score_t(xt)[1]

    def log_prob(self, x) -> np.ndarray:
        return self.log_prob_and_score_t(np.atleast_2d(x).T)[0]

    def score(self, x) -> np.ndarray:
        return self.log_prob_and_score_t(np.atleast_2d(x).T)[1].T


@dataclass(frozen=True)
class BananaSpec:
    name: str
    kind: str
    b: float
    sigma: float
    source: str
    text: str

    discrete = False

    def key(self) -> list:
        return [self.name, self.kind, self.b, self.sigma]


def parse(where: Where, doc: dict, name: str, source: str, text: str) -> BananaSpec:
    b = number(where, "b", require(where, doc, "b", ""))
    sigma = number(where, "sigma", doc.get("sigma", 1.0))
    if sigma <= 0:
        raise where.fail("sigma", "must be > 0", sigma)
    return BananaSpec(name=name, kind="banana", b=b, sigma=sigma, source=source, text=text)


BANANA_KIND = TargetKind("banana", "A curved 2-D target: x2 = b (x1^2 - sigma^2) + N(0, 1).",
                         frozenset({"b", "sigma"}), parse,
                         lambda spec: Banana(spec.b, spec.sigma, name=spec.name, spec=spec))
