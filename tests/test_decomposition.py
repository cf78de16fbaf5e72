"""The error split: closed forms on Gaussians, and the mixture estimates against them."""

import itertools

import numpy as np
import pytest

from difflab.maths.decomposition import error_terms
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
    terms, _ = error_terms(s, G1, prior, np.random.default_rng(0))
    assert terms["kl_prior"] == pytest.approx(_kl_1d(a1 * M, a1**2 * V + s1**2, 0.0, 1.0), rel=1e-10)
    assert terms["kl_early_stop"] == pytest.approx(_kl_1d(M, V, ad * M, ad**2 * V + sd**2), rel=1e-10)
    assert terms["kl_early_stop"] > 1e-3  # delta = 0.1 is a visible early stop


def test_mixture_estimates_agree_with_the_exact_gaussian_values():
    """The same law as a mixture: the Monte Carlo estimates (20,000 draws) sit within 4 standard
    errors of the exact values of the Gaussian path."""
    prior = (np.zeros(1), np.eye(1))
    exact_terms, _ = error_terms(_pflow(FAR), FAR, prior, np.random.default_rng(1))
    mc, _ = error_terms(_pflow(FAR_AS_MIXTURE), FAR_AS_MIXTURE, prior, np.random.default_rng(2))
    for key in ("kl_prior", "kl_early_stop"):
        assert abs(mc[key] - exact_terms[key]) < 4 * mc[f"{key}_se"], (key, mc, exact_terms)
        assert mc[f"{key}_se"] < exact_terms[key]  # the estimate resolves the term: not vacuous


def _sde(target, steps, **given):
    spec = SAMPLERS["sde"]
    params = {"steps": steps, "init": "prior", **spec.resolve_params(given, steps)}
    return spec.build(target, params)


def test_discretisation_terms_fall_with_steps_and_the_matched_prior_has_no_prior_term():
    """sde: kl_discretisation (the path KL's steps with the exact score) falls like 1 / steps (the
    Euler-Maruyama path KL is first order: slope of the log-log fit in [-1.2, -0.8]); pflow (no path
    KL): w2_discretisation falls with steps; the matched prior's kl_prior is 0."""
    kls, w2s = [], []
    counts = (20, 40, 80, 160)
    for steps in counts:
        s = _sde(G1, steps)
        t, _ = error_terms(s, G1, s.start_law("matched"), np.random.default_rng(0))
        assert t["kl_prior"] == pytest.approx(0.0, abs=1e-12)
        kls.append(t["kl_discretisation"])
        p = _pflow(G1, steps=steps, solver="euler")
        w2s.append(error_terms(p, G1, p.start_law("matched"), None)[0]["w2_discretisation"])
    slope = np.polyfit(np.log(counts), np.log(kls), 1)[0]
    assert -1.2 < slope < -0.8, (slope, kls)
    assert w2s[0] > w2s[1] > w2s[2] > w2s[3] > 0


def test_ddpm_early_stop_term_is_that_of_the_denoised_output():
    """ddpm returns E[X | x_delta], whose law (exact score) is N(M, a^2 V^2 / C), C = a^2 V + s^2:
    kl_early_stop = KL(p_0 || that law), both with --early-stop and when it runs to t = 0 (the last
    step reads out x0_hat at the last positive grid time, an early stop of its own)."""
    for early_stop, steps in ((0.1, 50), (0.0, 20)):
        spec = SAMPLERS["ddpm"]
        params = {"steps": steps, "init": "prior", **spec.resolve_params({"early_stop": early_stop}, steps)}
        s = spec.build(G1, params)
        terms, _ = error_terms(s, G1, s.start_law("matched"), None)
        k = -1 if early_stop else -2  # the level the read-out denoises
        a, sig = s.alphas[k], s.sigmas[k]
        var = a * a * V * V / (a * a * V + sig * sig)
        assert terms["kl_early_stop"] == pytest.approx(_kl_1d(M, V, M, var), rel=1e-10)
        assert terms["kl_early_stop"] > 1e-4
        # not the gap of p_delta itself (the old, wrong reading)
        assert abs(terms["kl_early_stop"] - _kl_1d(M, V, a * M, a * a * V + sig * sig)) > 1e-4


# ---------------------------------------------------------------- score error
def _perturbed(target, kind, eps, seed=0):
    from difflab.targets.perturbed import PerturbedScore

    return PerturbedScore(target, kind, eps, np.random.default_rng(seed))


def test_score_error_term_matches_its_closed_form_for_a_scale_error():
    """scale error: s~ - s = eps s, and E_{p_t}|s_t|^2 = tr(C_t^-1), C_t = a^2 S + s^2 I, so the
    term is sum_k g^2(t_k) / 2 eps^2 tr(C_{t_k}^-1) (t_k - t_{k+1}) on the sampler's grid."""
    from difflab.maths.decomposition import score_error_term
    from difflab.maths.schedules import alpha_sigma

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


def _reuse_blind_se(s, seed, n_mc):
    """Negative control: the standard error that sums the per-time variances as if the times had
    independent draws, although the same clean points serve every time."""
    from difflab.maths.schedules import alpha_sigma

    rng = np.random.default_rng(seed)
    pert = s.target
    x, var = pert.base.sample(rng, n_mc), 0.0
    for t, u in itertools.pairwise(s.times):
        a, sig = (float(v) for v in alpha_sigma(s.schedule, t))
        err = pert.score_error_sq(np.ascontiguousarray((a * x + sig * rng.standard_normal(x.shape)).T), a, sig)
        var += (0.5 * float(s.schedule.g2(t)) * (t - u)) ** 2 * err.var(ddof=1) / n_mc
    return np.sqrt(var)


def test_score_error_term_se_matches_the_spread_over_seeds():
    """200 seeds of 100 draws each (bias error, 40 steps): the sd of the estimates over seeds and
    the mean reported standard error agree within 18 % (the sample sd of 200 values has a relative
    sd of 5 %: 3.5 of them); the reuse-blind formula understates it by more than 2x."""
    from difflab.maths.decomposition import score_error_term

    target = GaussianMixture([1.0], [[0.5, -1.0]], [[[1.0, 0.6], [0.6, 2.0]]], kind="gaussian")
    s = _pflow(_perturbed(target, "bias", 0.3), early_stop=1e-3, steps=40)
    runs = [score_error_term(s, np.random.default_rng(seed), n_mc=100) for seed in range(200)]
    est = np.array([r["score_error_term"] for r in runs])
    se = np.mean([r["score_error_term_se"] for r in runs])
    assert 0.85 < est.std(ddof=1) / se < 1.18, (est.std(ddof=1), se)
    blind = np.mean([_reuse_blind_se(s, seed, 100) for seed in range(20)])
    assert est.std(ddof=1) / blind > 2.0


def test_score_error_term_intervals_cover_the_closed_form():
    """scale error (closed form known): the 95 % intervals est +- 1.96 SE of 200 seeds cover it in
    90-99 % of seeds (binomial sd 1.5 %)."""
    from difflab.maths.decomposition import score_error_term
    from difflab.maths.schedules import alpha_sigma

    eps = 0.3
    target = GaussianMixture([1.0], [[0.5, -1.0]], [[[1.0, 0.6], [0.6, 2.0]]], kind="gaussian")
    s = _pflow(_perturbed(target, "scale", eps), early_stop=1e-3, steps=40)
    closed = 0.0
    for t, u in itertools.pairwise(s.times):
        a, sig = (float(v) for v in alpha_sigma(s.schedule, t))
        c = a * a * target.cov + sig * sig * np.eye(2)
        closed += 0.5 * float(s.schedule.g2(t)) * (t - u) * eps**2 * np.trace(np.linalg.inv(c))
    runs = [score_error_term(s, np.random.default_rng(seed), n_mc=100) for seed in range(200)]
    cover = np.mean([abs(r["score_error_term"] - closed) < 1.96 * r["score_error_term_se"] for r in runs])
    assert 0.90 <= cover <= 0.99, cover


def test_exact_kl_grows_with_the_score_error():
    """scale and variance errors keep the score affine: the exact law still applies and its KL to
    the target grows with eps (from the exact-score value at eps = 0)."""
    from difflab.maths import exact

    target = GaussianMixture([1.0], [[0.5, -1.0]], [[[1.0, 0.6], [0.6, 2.0]]], kind="gaussian")
    for kind in ("scale", "variance"):
        kls = []
        for eps in (0.0, 0.05, 0.1, 0.2):
            s = _pflow(_perturbed(target, kind, eps) if eps else target, early_stop=1e-3, steps=100)
            a1, s1 = s.start
            m, c, _ = exact.propagate(s, a1 * target.mean, a1**2 * target.cov + s1**2 * np.eye(2), s.n_steps)
            kls.append(exact.gaussian_kl(m, c, target.mean, target.cov))
        assert all(b > a for a, b in itertools.pairwise(kls)), (kind, kls)


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


def test_sized_monte_carlo_draws_what_the_standard_error_needs():
    """_sized_mc on draws of N(3, 2^2): asked SE 0.02 it draws about (2 / 0.02)^2 = 10,000 and
    reports SE <= 0.024 and a mean within 4 SE of 3; asked a loose SE it draws the pilot alone;
    without one, exactly the fixed budget (the default path, unchanged)."""
    from difflab.maths.decomposition import PILOT, _sized_mc

    drawn = []

    def draw(n, rng=np.random.default_rng(0)):
        drawn.append(n)
        return rng.normal(3.0, 2.0, n)

    mean, se = _sized_mc(draw, 20_000, 0.02)
    assert se <= 0.024 and abs(mean - 3.0) < 4 * se and 8_000 <= sum(drawn) <= 15_000, (se, drawn)
    drawn.clear()
    _, se = _sized_mc(draw, 20_000, 1.0)
    assert drawn == [PILOT] and se < 1.0
    drawn.clear()
    _sized_mc(draw, 20_000, None)
    assert drawn == [20_000]


@pytest.mark.slow
def test_decomposition_se_sizes_the_path_terms_of_a_run():
    """ddpm on the ring (a mixture: kl_path is Monte Carlo), 500 particles, 100 steps: asked
    --decomposition-se 0.002, kl_path_se <= 0.0024; asked 0.05 (looser than the fixed budgets'
    ~0.006), kl_path_se lies between the two; every estimate agrees with the fixed-budget one within
    4 combined standard errors; the samples are the same run's (the option measures, it does not
    sample)."""
    import difflab

    base = difflab.sample("ddpm", target="gmm", particles=500, steps=100)
    tight = difflab.sample("ddpm", target="gmm", particles=500, steps=100, decomposition_se=0.002)
    loose = difflab.sample("ddpm", target="gmm", particles=500, steps=100, decomposition_se=0.05)
    b, t, lo = base.summary, tight.summary, loose.summary
    assert t["kl_path_se"] <= 0.0024 and b["kl_path_se"] < lo["kl_path_se"] <= 0.06, (t, b, lo)
    for run in (t, lo):
        assert abs(run["kl_path"] - b["kl_path"]) < 4 * np.hypot(run["kl_path_se"], b["kl_path_se"])
    np.testing.assert_array_equal(tight.samples, base.samples)
    assert "decomposition_se" not in base.params and tight.params["decomposition_se"] == 0.002
