"""The error split: closed forms on Gaussians, and the mixture estimates against them."""

import numpy as np
import pytest

from difflab.decomposition import error_terms
from difflab.samplers import SAMPLERS
from difflab.targets import GaussianMixture

M, V = 1.5, 0.49  # a 1-D Gaussian target N(M, V)
G1 = GaussianMixture([1.0], [[M]], [[[V]]], kind="gaussian")
# A far-off Gaussian (alpha_1 M = 0.2: a prior mismatch the estimate can resolve), and the same
# law written as a two-component mixture, which takes the Monte Carlo path
FAR = GaussianMixture([1.0], [[30.0]], [[[V]]], kind="gaussian")
FAR_AS_MIXTURE = GaussianMixture([0.3, 0.7], [[30.0], [30.0]], [[[V]], [[V]]])


def _kl_1d(m1, v1, m2, v2):
    return 0.5 * (v1 / v2 + (m1 - m2) ** 2 / v2 - 1 + np.log(v2 / v1))


def _pflow(target, early_stop=0.1, steps=50, solver="heun"):
    spec = SAMPLERS["pflow"]
    params = {"steps": steps, "init": "prior", **spec.resolve_params({"early_stop": early_stop, "solver": solver}, steps)}
    return spec.build(target, params)


def test_early_stop_and_prior_terms_match_their_closed_forms():
    s = _pflow(G1)
    a1, s1 = s.start
    ad, sd = s.end
    prior = (np.zeros(1), np.eye(1))  # the standard prior N(0, 1)
    terms = error_terms(s, G1, prior, np.random.default_rng(0))
    assert terms["kl_prior"] == pytest.approx(_kl_1d(a1 * M, a1**2 * V + s1**2, 0.0, 1.0), rel=1e-10)
    assert terms["kl_early_stop"] == pytest.approx(_kl_1d(M, V, ad * M, ad**2 * V + sd**2), rel=1e-10)
    assert terms["kl_early_stop"] > 1e-3  # delta = 0.1 is a visible early stop


def test_mixture_estimates_agree_with_the_exact_gaussian_values():
    """The same law as a mixture: the Monte Carlo estimates (20,000 draws) sit within 4 standard
    errors of the exact values of the Gaussian path."""
    prior = (np.zeros(1), np.eye(1))
    exact_terms = error_terms(_pflow(FAR), FAR, prior, np.random.default_rng(1))
    mc = error_terms(_pflow(FAR_AS_MIXTURE), FAR_AS_MIXTURE, prior, np.random.default_rng(2))
    for key in ("kl_prior", "kl_early_stop"):
        assert abs(mc[key] - exact_terms[key]) < 4 * mc[f"{key}_se"], (key, mc, exact_terms)
        assert mc[f"{key}_se"] < exact_terms[key]  # the estimate resolves the term: not vacuous


def test_discretisation_term_falls_with_steps_and_vanishes_for_the_matched_prior_kl():
    matched = None
    kls = []
    for steps in (10, 20, 40):
        s = _pflow(G1, steps=steps, solver="euler")
        a1, s1 = s.start
        matched = (a1 * G1.mean, a1**2 * G1.cov + s1**2 * np.eye(1))
        t = error_terms(s, G1, matched, np.random.default_rng(0))
        kls.append(t["kl_discretisation"])
        assert t["kl_prior"] == pytest.approx(0.0, abs=1e-12)
    assert kls[0] > kls[1] > kls[2] > 0


# ---------------------------------------------------------------- score error
def _perturbed(target, kind, eps, seed=0):
    from difflab.targets.perturbed import PerturbedScore

    return PerturbedScore(target, kind, eps, np.random.default_rng(seed))


def test_score_error_term_matches_its_closed_form_for_a_scale_error():
    """scale error: s~ - s = eps s, and E_{p_t}|s_t|^2 = tr(C_t^-1), C_t = a^2 S + s^2 I, so the
    term is sum_k g^2(t_k) / 2 eps^2 tr(C_{t_k}^-1) (t_k - t_{k+1}) on the sampler's grid."""
    from difflab.decomposition import score_error_term
    from difflab.schedules import alpha_sigma

    eps = 0.1
    target = GaussianMixture([1.0], [[0.5, -1.0]], [[[1.0, 0.6], [0.6, 2.0]]], kind="gaussian")
    s = _pflow(_perturbed(target, "scale", eps), early_stop=1e-3, steps=40)
    closed = 0.0
    for t, u in zip(s.times[:-1], s.times[1:]):
        a, sig = (float(v) for v in alpha_sigma(s.schedule, t))
        c = a * a * target.cov + sig * sig * np.eye(2)
        closed += 0.5 * float(s.schedule.g2(t)) * (t - u) * eps**2 * np.trace(np.linalg.inv(c))
    est = score_error_term(s, np.random.default_rng(3))
    assert abs(est["score_error_term"] - closed) < 4 * est["score_error_term_se"], (est, closed)
    assert est["score_error_term_se"] < 0.1 * closed


def test_exact_kl_grows_with_the_score_error():
    """scale and variance errors keep the score affine: the exact law still applies and its KL to
    the target grows with eps (from the exact-score value at eps = 0)."""
    from difflab import exact

    target = GaussianMixture([1.0], [[0.5, -1.0]], [[[1.0, 0.6], [0.6, 2.0]]], kind="gaussian")
    for kind in ("scale", "variance"):
        kls = []
        for eps in (0.0, 0.05, 0.1, 0.2):
            s = _pflow(_perturbed(target, kind, eps) if eps else target, early_stop=1e-3, steps=100)
            a1, s1 = s.start
            m, c, _ = exact.propagate(s, a1 * target.mean, a1**2 * target.cov + s1**2 * np.eye(2), s.n_steps)
            kls.append(exact.gaussian_kl(m, c, target.mean, target.cov))
        assert all(b > a for a, b in zip(kls, kls[1:])), (kind, kls)


def test_variance_error_is_the_score_of_the_inflated_target():
    target = GaussianMixture([0.4, 0.6], [[-1.0], [2.0]], [[[0.5]], [[1.0]]])
    wrong = GaussianMixture([0.4, 0.6], [[-1.0], [2.0]], [[[0.55]], [[1.1]]])
    x = np.linspace(-3, 4, 9)[None, :]
    np.testing.assert_allclose(_perturbed(target, "variance", 0.1).score_t(x, 0.7, 0.5),
                               wrong.score_t(x, 0.7, 0.5), rtol=1e-12)


def test_bias_field_has_the_documented_size_and_is_seeded():
    """E|b|^2 = d averaged over the random features: over 200 seeds the mean of |b(x)|^2 at a
    fixed point is within 4 standard errors of d."""
    target = GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [np.eye(3)], kind="gaussian")
    x = np.array([[0.3], [-0.2], [1.0]])
    vals = np.array([(_perturbed(target, "bias", 1.0, seed).bias_field_t(x) ** 2).sum() for seed in range(200)])
    assert abs(vals.mean() - 3) < 4 * vals.std(ddof=1) / np.sqrt(len(vals))
    b1 = _perturbed(target, "bias", 1.0, 5).bias_field_t(x)
    np.testing.assert_array_equal(b1, _perturbed(target, "bias", 1.0, 5).bias_field_t(x))
