"""``kind: student_t``: the multivariate Student-t t_nu(loc, scale), a heavy-tailed target.

Notation: nu > 0 degrees of freedom, mu = ``loc`` (d,), S = ``scale`` (d, d) the scatter matrix
(scipy's ``shape``; the covariance is nu / (nu - 2) S for nu > 2), S = L L^T its Cholesky factor
(computed once), q(x) = (x - mu)^T S^-1 (x - mu) = |L^-1 (x - mu)|^2.

1. log p(x) = log G((nu + d) / 2) - log G(nu / 2) - (d / 2) log(nu pi) - log |L|
              - ((nu + d) / 2) log(1 + q(x) / nu)
2. grad log p(x) = -((nu + d) / (nu + q(x))) S^-1 (x - mu), with S^-1 (x - mu) = L^-T (L^-1 (x - mu))
   (two triangular solves, no inverse).
3. Exact draws: X = mu + L Z sqrt(nu / U), Z ~ N(0, I_d), U ~ chi^2_nu independent: X is Gaussian
   given the scalar U (the scale mixture the issue on hard targets builds on). Then q(X) / d follows
   the F(d, nu) law exactly (tested).
4. Marginals: the coordinates ``idx`` are t_nu(mu[idx], S[idx, idx]).

The moment metrics (mean_error, cov_rel_error, w2_gaussian) need a finite covariance, so files ask
for nu > 2; the noised law (every diffusion sampler) is not offered here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.special import gammaln

from difflab.contracts.target import TargetKind
from difflab.errors import DifflabError
from difflab.targets.fields import (
    Where,
    check_size,
    covariance,
    number,
    require,
    vector,
)


class StudentT:
    """The multivariate Student-t t_nu(loc, scale) in d dimensions (see the module docstring)."""

    discrete = False
    is_gaussian = affine_score = False
    has_log_prob = True  # normalised
    has_noised_law = False
    has_marginals = True
    exact = exact_score = True
    components = None
    reward, untilted, tilt_log_z = (), None, None

    def __init__(self, nu: float, loc, scale, *, name: str = "student_t", kind: str = "student_t", spec=None):
        self.nu = float(nu)
        self.loc = np.atleast_1d(np.asarray(loc, dtype=np.float64))
        self.dim = d = len(self.loc)
        self.scale = np.asarray(scale, dtype=np.float64).reshape(d, d)
        if not self.nu > 0:
            raise DifflabError(f"nu: must be > 0, got {nu}")
        self.chol = cholesky(self.scale, lower=True)
        self.name, self.kind, self.spec, self.classes = name, kind, spec, {}
        self._log_norm = float(gammaln((self.nu + d) / 2) - gammaln(self.nu / 2) - d / 2 * np.log(self.nu * np.pi)
                               - np.log(np.diag(self.chol)).sum())

    @property
    def mean(self) -> np.ndarray:
        """loc for nu > 1; undefined (NaN) otherwise."""
        return self.loc.copy() if self.nu > 1 else np.full(self.dim, np.nan)

    @property
    def cov(self) -> np.ndarray:
        """nu / (nu - 2) scale for nu > 2; infinite otherwise."""
        return self.nu / (self.nu - 2.0) * self.scale if self.nu > 2 else np.full((self.dim, self.dim), np.inf)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n exact i.i.d. draws (n, d): mu + L Z sqrt(nu / U), U ~ chi^2_nu."""
        z = rng.standard_normal((n, self.dim))
        u = rng.chisquare(self.nu, n)
        return self.loc + (z @ self.chol.T) * np.sqrt(self.nu / u)[:, None]

    def _terms_t(self, xt: np.ndarray, alpha: float, sigma: float):
        """(q (n,), S^-1 (x - mu) (d, n)) at xt (d, n); the target itself only (no noised law)."""
        if alpha != 1.0 or sigma != 0.0:
            raise DifflabError("student_t: no closed-form noised law (alpha, sigma) = "
                               f"({alpha:g}, {sigma:g}); only the target itself (1, 0)")
        w = solve_triangular(self.chol, xt - self.loc[:, None], lower=True, check_finite=False)
        return np.einsum("dn,dn->n", w, w), solve_triangular(self.chol, w, lower=True, trans="T", check_finite=False)

    def log_prob_and_score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0):
        """(log p (n,), grad log p (d, n)) at xt (d, n), sharing the two triangular solves."""
        q, prec_x = self._terms_t(xt, alpha, sigma)
        log_p = self._log_norm - 0.5 * (self.nu + self.dim) * np.log1p(q / self.nu)
        return log_p, -((self.nu + self.dim) / (self.nu + q)) * prec_x

    def score_t(self, xt: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        return self.log_prob_and_score_t(xt, alpha, sigma)[1]

    def _rows(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        return np.ascontiguousarray(np.atleast_2d(x).T), x.ndim == 1

    def log_prob_and_score(self, x):
        """(log p(x) (n,), grad log p(x) (n, d)) for x (n, d) (or one point (d,))."""
        xt, single = self._rows(x)
        lp, s = self.log_prob_and_score_t(xt)
        return (lp[0], s[:, 0]) if single else (lp, s.T)

    def log_prob(self, x) -> np.ndarray:
        return self.log_prob_and_score(x)[0]

    def score(self, x) -> np.ndarray:
        return self.log_prob_and_score(x)[1]

    def marginal(self, coords) -> StudentT:
        """The exact law of the coordinates ``coords``: t_nu(loc[coords], scale[coords, coords])."""
        idx = np.asarray(coords, dtype=np.int64)
        return StudentT(self.nu, self.loc[idx], self.scale[np.ix_(idx, idx)], name=self.name, kind=self.kind)


# ---------------------------------------------------------------- the family: kind: student_t
@dataclass(frozen=True)
class StudentTSpec:
    """A validated ``kind: student_t`` file."""

    name: str
    kind: str
    nu: float
    loc: tuple  # (d,)
    scale: tuple  # (d, d)
    source: str
    text: str

    discrete = False

    def key(self) -> list:
        return [self.name, self.kind, self.nu, self.loc, self.scale]


def parse(ctx: Where, doc: dict, name: str, source: str, text: str) -> StudentTSpec:
    """``nu`` (> 2: a finite covariance), ``loc`` (a list: the dimension), ``scale`` (a scalar, a
    diagonal list or a symmetric positive definite matrix)."""
    nu = number(ctx, "nu", require(ctx, doc, "nu", ""))
    if not nu > 2:
        raise ctx.fail("nu", "must be > 2 (difflab's moment metrics need a finite covariance)", nu)
    loc = vector(ctx, "loc", require(ctx, doc, "loc", ""))
    check_size(ctx, "loc", 1, len(loc))
    scale = covariance(ctx, "scale", require(ctx, doc, "scale", ""), len(loc))
    return StudentTSpec(name=name, kind="student_t", nu=nu, loc=tuple(loc), scale=tuple(map(tuple, scale.tolist())),
                        source=source, text=text)


def build(spec: StudentTSpec) -> StudentT:
    return StudentT(spec.nu, spec.loc, spec.scale, name=spec.name, kind=spec.kind, spec=spec)


STUDENT_T_KIND = TargetKind("student_t", "A multivariate Student-t t_nu(loc, scale): heavy tails.",
                            frozenset({"nu", "loc", "scale"}), parse, build)
