"""Exact identities of the target engine: no Monte Carlo unless stated."""

import numpy as np
import pytest
from scipy import stats

from difflab.targets import GaussianMixture
from difflab.targets.files import load_target


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.3 * np.eye(d)


def _targets():
    rng = np.random.default_rng(7)
    d = 3
    full = GaussianMixture([0.2, 0.5, 0.3], rng.standard_normal((3, d)) * 2,
                           [_random_spd(rng, d) for _ in range(3)])
    return {
        "gaussian3d": GaussianMixture([1.0], [[0.5, -1.0, 2.0]], [_random_spd(rng, d)], kind="gaussian"),
        "full3d": full,
        "bimodal1d": load_target("bimodal1d")[1],
        "ring": load_target("gmm")[1],
        "gmm50": load_target("gmm50")[1],
    }


TARGETS = _targets()
NOISE = [(1.0, 0.0), (0.8, 0.6), (0.3, 0.95), (1.0, 2.5)]


def _explicit_log_prob(t: GaussianMixture, y, alpha, sigma):
    """Reference: sum over components with scipy's multivariate normal, in log space."""
    logs = [
        np.log(w) + stats.multivariate_normal(alpha * m, alpha**2 * c + sigma**2 * np.eye(t.dim)).logpdf(y)
        for w, m, c in zip(t.weights, t.means, t.covs)
    ]
    return np.logaddexp.reduce(np.atleast_2d(np.array(logs)).reshape(len(logs), -1), axis=0)


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("alpha,sigma", NOISE)
def test_noised_log_prob_matches_scipy(name, alpha, sigma):
    t = TARGETS[name]
    y = np.random.default_rng(1).standard_normal((20, t.dim)) * 2
    np.testing.assert_allclose(t.noised_log_prob(y, alpha, sigma), _explicit_log_prob(t, y, alpha, sigma),
                               rtol=1e-10, atol=1e-10)


def _fd_grad(f, y, eps=1e-5):
    g = np.empty_like(y)
    for j in range(y.shape[1]):
        e = np.zeros(y.shape[1])
        e[j] = eps
        g[:, j] = (f(y + e) - f(y - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("alpha,sigma", NOISE)
def test_score_is_gradient_of_log_prob(name, alpha, sigma):
    t = TARGETS[name]
    y = np.random.default_rng(2).standard_normal((15, t.dim)) * 1.5
    fd = _fd_grad(lambda z: t.noised_log_prob(z, alpha, sigma), y)
    s = t.noised_score(y, alpha, sigma)
    # central differences: error O(eps^2 * third derivative) plus round-off O(1e-16 |log p| / eps)
    np.testing.assert_allclose(s, fd, rtol=1e-5, atol=1e-5 * (1 + np.abs(s).max()))
    lp, s2 = t.noised_log_prob_and_score(y, alpha, sigma)
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(lp, t.noised_log_prob(y, alpha, sigma))


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("alpha,sigma", [(0.8, 0.6), (0.3, 0.95), (1.0, 2.5), (0.05, 0.9987)])
def test_tweedie(name, alpha, sigma):
    """E[X | alpha X + sigma Z = y] = (y + sigma^2 grad log p_{alpha,sigma}(y)) / alpha.

    The denoiser is computed by Gaussian conditioning, the right side from the noised score:
    two different formulae, so agreement is a real check."""
    t = TARGETS[name]
    y = alpha * t.sample(np.random.default_rng(3), 30) + sigma * np.random.default_rng(4).standard_normal((30, t.dim))
    lhs = t.denoiser(y, alpha, sigma)
    rhs = (y + sigma**2 * t.noised_score(y, alpha, sigma)) / alpha
    np.testing.assert_allclose(lhs, rhs, rtol=1e-8, atol=1e-8 * (1 + np.abs(rhs).max()))


def test_denoiser_on_gaussian_closed_form():
    """For N(m, S): E[X | y] = m + alpha S (alpha^2 S + sigma^2 I)^-1 (y - alpha m)."""
    t = TARGETS["gaussian3d"]
    m, S = t.means[0], t.covs[0]
    a, s = 0.6, 0.8
    y = np.random.default_rng(5).standard_normal((10, 3))
    expect = m + np.linalg.solve(a * a * S + s * s * np.eye(3), (y - a * m).T).T @ (a * S).T
    np.testing.assert_allclose(t.denoiser(y, a, s), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["full3d", "bimodal1d", "ring"])
def test_posterior_weights_are_bayes_rule(name):
    t = TARGETS[name]
    a, s = 0.7, 0.7
    y = np.random.default_rng(6).standard_normal((12, t.dim)) * 2
    joint = np.array([
        w * stats.multivariate_normal(a * m, a * a * c + s * s * np.eye(t.dim)).pdf(y)
        for w, m, c in zip(t.weights, t.means, t.covs)
    ]).reshape(t.n_components, -1).T
    np.testing.assert_allclose(t.posterior_weights(y, a, s), joint / joint.sum(1, keepdims=True), rtol=1e-9, atol=1e-12)


def test_far_points_are_finite():
    """Log-sum-exp keeps log p, score and responsibilities finite far in the tails."""
    t = TARGETS["ring"]
    y = np.array([[1e3, -1e3], [0.0, 5e3], [1e-300, 0.0]])
    lp, s = t.log_prob_and_score(y)
    assert np.isfinite(lp).all() and np.isfinite(s).all()
    r = t.posterior_weights(y)
    np.testing.assert_allclose(r.sum(1), 1.0)
    # far out at angle -pi/4 the nearest component (index 7) dominates; the score points back to it
    np.testing.assert_allclose(s[0], -(y[0] - t.means[7]) / 0.25, rtol=1e-9)


def test_mixture_moments_closed_form():
    t = TARGETS["bimodal1d"]
    mean = 0.2 * -3.0 + 0.8 * 2.0
    var = 0.2 * (0.25 + 9.0) + 0.8 * (1.0 + 4.0) - mean**2
    assert t.mean[0] == pytest.approx(mean, rel=1e-14)
    assert t.cov[0, 0] == pytest.approx(var, rel=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaussian3d", "full3d", "gmm50"])
def test_exact_draws_match_moments(name):
    """Mean of n = 40,000 exact draws within 4.5 standard errors per coordinate (Bonferroni over
    d coordinates keeps the false-failure rate below 1e-4); covariance within its Wishart error."""
    t = TARGETS[name]
    n = 40_000
    x = t.sample(np.random.Generator(np.random.SFC64(11)), n)
    se = np.sqrt(np.diag(t.cov) / n)
    assert np.all(np.abs(x.mean(0) - t.mean) < 4.5 * se)
    c = np.cov(x, rowvar=False)
    var = np.diag(t.cov)
    # Var(C_ij estimate) ~ (C_ij^2 + C_ii C_jj) / n for Gaussians; mixtures get a kurtosis margin of 2x.
    tol = 2 * 4.5 * np.sqrt((t.cov**2 + np.outer(var, var)) / n)
    assert np.all(np.abs(c - t.cov) < tol)


def test_component_sampling_frequencies():
    """Component labels of exact draws: chi-square goodness of fit at n = 100,000."""
    t = TARGETS["full3d"]
    n = 100_000
    comp = t.sample_components(np.random.Generator(np.random.SFC64(3)), n)
    counts = np.bincount(comp, minlength=3)
    p = stats.chisquare(counts, t.weights * n).pvalue
    assert p > 1e-4


def test_noised_mixture_is_the_law_of_alpha_x_plus_sigma_z():
    t = TARGETS["full3d"]
    a, s = 0.6, 0.8
    y = np.random.default_rng(9).standard_normal((8, 3))
    np.testing.assert_allclose(t.noised(a, s).log_prob(y), t.noised_log_prob(y, a, s), rtol=1e-12)


def test_ring_generator():
    t = TARGETS["ring"]
    assert t.n_components == 8 and t.dim == 2
    np.testing.assert_allclose(np.linalg.norm(t.means, axis=1), 4.0)
    np.testing.assert_allclose(t.means[2], [0.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(t.covs, np.broadcast_to(0.25 * np.eye(2), (8, 2, 2)))
    np.testing.assert_allclose(t.weights, 1 / 8)


def test_random_generator_follows_the_benchmark_recipe():
    t = TARGETS["gmm50"]
    rng = np.random.default_rng(20240917)
    for k in range(4):
        mu = rng.standard_normal(50)
        a = rng.standard_normal((50, 50))
        np.testing.assert_array_equal(t.means[k], mu)
        np.testing.assert_allclose(t.covs[k], 0.5 * (np.eye(50) + a @ a.T / 50), rtol=1e-15)
    np.testing.assert_allclose(t.weights, [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("alpha,sigma", [(1.0, 0.0), (0.6, 0.8)])
def test_divergence_of_the_score_by_finite_differences(name, alpha, sigma):
    t = TARGETS[name]
    y = np.random.default_rng(8).standard_normal((6, t.dim)) * 1.5
    eps = 1e-5
    fd = np.zeros(len(y))
    for j in range(t.dim):
        e = np.zeros(t.dim)
        e[j] = eps
        fd += (t.noised_score(y + e, alpha, sigma)[:, j] - t.noised_score(y - e, alpha, sigma)[:, j]) / (2 * eps)
    div = t.divergence_score_t(np.ascontiguousarray(y.T), alpha, sigma)
    np.testing.assert_allclose(div, fd, rtol=1e-5, atol=1e-5 * (1 + np.abs(fd).max()))


@pytest.mark.parametrize("name", ["gaussian3d", "full3d", "bimodal1d", "ring"])
def test_posterior_moments(name):
    """The posterior mixture's mean is the denoiser, and each component's posterior covariance is
    S_k - alpha^2 S_k C_k^-1 S_k."""
    t = TARGETS[name]
    a, s = 0.7, 0.6
    y = np.random.default_rng(10).standard_normal((5, t.dim))
    resp, means, var = t.posterior_t(np.ascontiguousarray(y.T), a, s)
    np.testing.assert_allclose(np.einsum("kn,kdn->nd", resp, means), t.denoiser(y, a, s), rtol=1e-10, atol=1e-12)
    for k in range(t.n_components):
        S = t.covs[k]
        C = a * a * S + s * s * np.eye(t.dim)
        expect = S - a * a * S @ np.linalg.solve(C, S)
        got = t.eigvecs[k] @ np.diag(var[k]) @ t.eigvecs[k].T
        np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("alpha,sigma", [(1.0, 0.0), (0.8, 0.6), (0.05, 0.9987), (1.0, 2.5)])
def test_diagonal_hot_path_equals_the_general_evaluation(alpha, sigma):
    """The GEMM form for diagonal covariances (expanded squares on the centred state) gives the log
    density and score of the general whitened-residual evaluation to round-off, also for an
    off-centre mixture with small variances (where an uncentred expansion would lose digits)."""
    from difflab.targets.mixture import GaussianMixture

    rng = np.random.default_rng(5)
    k, d = 6, 3
    t = GaussianMixture(rng.random(k) + 0.1, rng.standard_normal((k, d)) + 50.0,
                        [np.diag(0.01 + rng.random(d)) for _ in range(k)])
    assert t._diagonal and t._off_centre
    y = np.ascontiguousarray((alpha * t.sample(rng, 500) + sigma * rng.standard_normal((500, d))).T)
    lp, s = t.log_prob_and_score_t(y, alpha, sigma)
    ev = t._evaluate(y, alpha, sigma)
    np.testing.assert_allclose(lp, ev.log_prob, rtol=1e-12, atol=1e-12 * np.abs(ev.log_prob).max())
    ref = t._score_t(ev)
    np.testing.assert_allclose(s, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("alpha,sigma", [(1.0, 0.0), (0.8, 0.6), (0.05, 0.9987), (1.0, 2.5)])
@pytest.mark.parametrize("k", [1, 5])
def test_precision_hot_path_equals_the_eigenbasis_evaluation(alpha, sigma, k):
    """The full-covariance hot path (one GEMM against the stacked precisions, expanded squares on the
    centred state) gives the log density and score of the whitened-residual evaluation in each
    eigenbasis to round-off: on an off-centre mixture (means near 50) with small, correlated
    covariances (eigenvalues 0.01-0.5) in 7-D, where an uncentred expansion would lose 5 digits, and
    for a single Gaussian. The same values whichever public entry point asks."""
    from difflab.targets.mixture import GaussianMixture

    rng = np.random.default_rng(6)
    d = 7
    covs = []
    for _ in range(k):
        q = np.linalg.qr(rng.standard_normal((d, d)))[0]
        covs.append(q @ np.diag(0.01 + 0.5 * rng.random(d)) @ q.T)
    t = GaussianMixture(rng.random(k) + 0.1, rng.standard_normal((k, d)) + 50.0, covs)
    assert not t._diagonal and t._off_centre
    y = np.ascontiguousarray((alpha * t.sample(rng, 500) + sigma * rng.standard_normal((500, d))).T)
    lp, s = t.log_prob_and_score_t(y, alpha, sigma)
    ev = t._evaluate(y, alpha, sigma)
    lp_tol = 1e-12 * np.abs(ev.log_prob).max()
    np.testing.assert_allclose(lp, ev.log_prob, rtol=0, atol=lp_tol)
    ref = t._score_t(ev)
    np.testing.assert_allclose(s, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_array_equal(t.noised_log_prob(y.T, alpha, sigma), lp)
    np.testing.assert_array_equal(t.score_t(y, alpha, sigma), s)
    if (alpha, sigma, k) == (1.0, 0.0, 5):  # negative control: the same expansion uncentred loses digits
        t._centre, t._prec_cache = np.zeros(d), None
        assert np.abs(t.log_prob_and_score_t(y, alpha, sigma)[0] - ev.log_prob).max() > lp_tol
