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
    params = {"steps": steps, "init": "prior", **spec.resolve({"early_stop": early_stop, "solver": solver}, steps)}
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
