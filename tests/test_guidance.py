"""Classifier and classifier-free guidance on mixtures with classes, against exact answers.

Notation as in ``difflab.targets.guidance``: the guided score is s_t + gamma (s_t(. | c) - s_t)
(classifier: gamma = W, cfg: gamma = 1 + W) and the tilted law is q ∝ p(x | c)^gamma p(x)^(1 - gamma).
"""

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.maths.metrics import gaussian_w2
from difflab.run.io import read_run
from difflab.targets import build_target, parse_target
from difflab.targets.guidance import Guided, TiltedByClass, guidance_gamma
from difflab.targets.mixture import GaussianMixture

CLASSES = """kind: gmm
components:
  - {weight: 0.3, mean: [-3.0, 2.0], cov: [[1.0, 0.5], [0.5, 0.8]]}
  - {weight: 0.3, mean: [-3.0, -2.0], cov: [0.6, 1.2]}
  - {weight: 0.4, mean: [2.0, 0.0], cov: [[1.5, -0.6], [-0.6, 1.0]]}
classes: {left: [0, 1], right: [2]}
"""
# 1-D, overlapping classes: the tilted law differs visibly from p(x | c)
OVERLAP = """kind: gmm
components:
  - {weight: 0.5, mean: [-1.0], cov: 1.0}
  - {weight: 0.2, mean: [0.5], cov: 0.5}
  - {weight: 0.3, mean: [1.5], cov: 0.8}
classes: {a: [0], b: [1, 2]}
"""


def _target(text=CLASSES):
    return build_target(parse_target(text, "c.yaml", "c"))


def _mixture_cdf(mix, t):
    """CDF of a 1-D mixture at t."""
    sd = np.sqrt(mix.covs[:, 0, 0])
    return (mix.weights * stats.norm.cdf((np.asarray(t)[:, None] - mix.means[:, 0]) / sd)).sum(axis=1)


# ------------------------------------------------------------------ classes in the YAML
def test_classes_parse_and_give_the_exact_conditional():
    t = _target()
    assert t.classes == {"left": [0, 1], "right": [2]}
    left = t.conditional(t.classes["left"], "left")
    np.testing.assert_allclose(left.weights, [0.5, 0.5])
    np.testing.assert_array_equal(left.means, t.means[:2])
    # p(x | c) p(c) + p(x | not c) p(not c) = p(x), exactly
    x = np.random.default_rng(0).normal(size=(40, 2)) * 3
    right = t.conditional([2])
    np.testing.assert_allclose(0.6 * np.exp(left.log_prob(x)) + 0.4 * np.exp(right.log_prob(x)),
                               np.exp(t.log_prob(x)), rtol=1e-12)


@pytest.mark.parametrize("block, message", [
    ("{left: [0, 3]}", "classes.left[1]: expected a component index in 0..2, got 3"),
    ("{left: [0, 1], right: [1]}", "classes.right[0]: component 1 is already in class 'left'"),
    ("{left: []}", "classes.left: expected a non-empty list of component indices"),
    ("[0, 1]", "classes: expected a mapping"),
    ("{left: [0.5]}", "classes.left[0]: expected a component index"),
])
def test_class_errors_name_the_key(block, message):
    text = CLASSES.replace("classes: {left: [0, 1], right: [2]}", f"classes: {block}")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_target(text, "c.yaml", "c")


def test_classes_change_the_run_hash_only_when_present():
    plain = parse_target(CLASSES.split("classes:")[0], "c.yaml", "c")
    assert plain.key() == [plain.name, plain.weights, plain.means, plain.covs]
    assert parse_target(CLASSES, "c.yaml", "c").key() != plain.key()


# ------------------------------------------------------------------ the exact classifier
def test_classifier_is_bayes_at_every_noise_level():
    """p(c | x_t) p_t(x) = p(c) p_t(x | c) (Bayes) to round-off, at three noise levels."""
    t = _target()
    members = t.classes["left"]
    cond = t.conditional(members)
    x = np.random.default_rng(1).normal(size=(30, 2)) * 3
    for a, s in ((1.0, 0.0), (0.7, 0.7), (0.1, 0.99)):
        lhs = np.log(t.class_probability(x, members, a, s)) + t.noised_log_prob(x, a, s)
        rhs = np.log(0.6) + cond.noised_log_prob(x, a, s)
        np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_classifier_gradient_is_the_score_difference():
    """grad log p(c | x_t) by central differences (h = 1e-5) equals s_t(x | c) - s_t(x), which is
    what the guided score adds gamma times."""
    t = _target()
    members = t.classes["right"]
    cond = t.conditional(members)
    x = np.random.default_rng(2).normal(size=(10, 2)) * 2
    a, s, h = 0.8, 0.6, 1e-5
    fd = np.stack([(np.log(t.class_probability(x + h * e, members, a, s))
                    - np.log(t.class_probability(x - h * e, members, a, s))) / (2 * h) for e in np.eye(2)], axis=1)
    np.testing.assert_allclose(fd, cond.noised_score(x, a, s) - t.noised_score(x, a, s), atol=1e-7)
    # and the guided score is s + gamma (that difference)
    g = Guided(cond, t, 2.5)
    xt = np.ascontiguousarray(x.T)
    np.testing.assert_allclose(g.score_t(xt.copy(), a, s).T, t.noised_score(x, a, s) + 2.5 * fd, atol=1e-6)
    diff = cond.noised_score(x, a, s) - t.noised_score(x, a, s)
    np.testing.assert_allclose(g.score_error_sq(xt, a, s), 1.5**2 * (diff**2).sum(axis=1), rtol=1e-9)


def test_conditional_agrees_with_rejection_from_the_joint():
    """Draw (x, c') from the joint (x ~ p, then c' ~ p(c' | x)) and keep c' = c: these are draws
    of p(x | c). 40,000 of them, projected on a fixed direction, against the exact CDF of the
    projected conditional mixture: Kolmogorov-Smirnov p > 1e-3. Negative control: the same draws
    against the unconditional mixture are rejected (p < 1e-10)."""
    t = _target()
    rng = np.random.default_rng(3)
    members = t.classes["left"]
    x = t.sample(rng, 100_000)
    kept = x[rng.random(len(x)) < t.class_probability(x, members)][:40_000]
    assert len(kept) == 40_000
    theta = np.array([0.6, 0.8])

    def projected(mix):
        return GaussianMixture(mix.weights, (mix.means @ theta)[:, None],
                               np.einsum("i,kij,j->k", theta, mix.covs, theta)[:, None, None])

    cond = projected(t.conditional(members))
    assert stats.kstest(kept @ theta, lambda v: _mixture_cdf(cond, v)).pvalue > 1e-3
    assert stats.kstest(kept @ theta, lambda v: _mixture_cdf(projected(t), v)).pvalue < 1e-10


# ------------------------------------------------------------------ the tilted reference law
@pytest.mark.parametrize("gamma", [3.0, 0.5])
def test_tilted_reference_draws_follow_the_quadrature_law(gamma):
    """q ∝ p(x | c)^gamma p(x)^(1 - gamma) on a 1-D mixture, by quadrature (trapezoid on 20,001
    points over [-12, 12]) against 100,000 rejection draws: mean within 5 standard errors
    (sd / sqrt(n)), variance within 5 standard errors (sqrt((mu_4 - var^2) / n), mu_4 the fourth
    central moment by the same quadrature), and the KS test against the quadrature CDF p > 1e-3. Negative control: draws of
    p(x | c) are rejected by the same test (p < 1e-10)."""
    t = _target(OVERLAP)
    members = t.classes["b"]
    cond = t.conditional(members)
    grid = np.linspace(-12, 12, 20_001)
    log_q = gamma * cond.log_prob(grid[:, None]) + (1 - gamma) * t.log_prob(grid[:, None])
    q = np.exp(log_q - log_q.max())
    z = np.trapezoid(q, grid)
    q /= z
    mean = np.trapezoid(grid * q, grid)
    var = np.trapezoid((grid - mean) ** 2 * q, grid)
    mu4 = np.trapezoid((grid - mean) ** 4 * q, grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (q[1:] + q[:-1]) * np.diff(grid))])
    ref = TiltedByClass(t, members, gamma, np.random.default_rng(4), n_moments=100_000)
    n = 100_000
    assert abs(ref.mean[0] - mean) < 5 * np.sqrt(var / n)
    assert abs(ref.cov[0, 0] - var) < 5 * np.sqrt((mu4 - var**2) / n)
    x = ref.sample(np.random.default_rng(5), 50_000)[:, 0]
    assert stats.kstest(x, lambda v: np.interp(v, grid, cdf)).pvalue > 1e-3
    other = cond if gamma > 1 else t
    assert stats.kstest(other.sample(np.random.default_rng(6), 50_000)[:, 0],
                        lambda v: np.interp(v, grid, cdf)).pvalue < 1e-10
    # the acceptance rate estimates the normaliser E_proposal[p(c | X)^e]
    e, prop = (gamma - 1, cond) if gamma >= 1 else (gamma, t)
    z_exact = np.trapezoid(np.exp(prop.log_prob(grid[:, None])) * t.class_probability(grid[:, None], members) ** e,
                           grid)
    assert abs(ref.acceptance - z_exact) < 5 * np.sqrt(z_exact * (1 - z_exact) / ref._proposed)


# ------------------------------------------------------------------ when guidance samples q, exactly
_MU_C, _MU, _S = np.array([2.0, 0.5]), np.array([0.0, 0.0]), np.array([[1.0, 0.3], [0.3, 0.7]])


def _tilted_gaussian(mu_c, s_c, mu, s, gamma):
    """N(m, C) ∝ N(mu_c, s_c)^gamma N(mu, s)^(1 - gamma): precisions add."""
    prec = gamma * np.linalg.inv(s_c) + (1 - gamma) * np.linalg.inv(s)
    cov = np.linalg.inv(prec)
    return cov @ (gamma * np.linalg.solve(s_c, mu_c) + (1 - gamma) * np.linalg.solve(s, mu)), cov


def _guided_law(name, steps, s_c, gamma):
    """Exact law of the output of sampler ``name`` guided between N(mu_c, s_c) and N(mu, S),
    started from the noised tilted law at t = 1."""
    from difflab.maths import exact
    from difflab.samplers import SAMPLERS

    model = Guided(GaussianMixture([1.0], [_MU_C], [s_c]), GaussianMixture([1.0], [_MU], [_S]), gamma)
    sampler = SAMPLERS[name].build(model, {**SAMPLERS[name].resolve_params({}, steps), "steps": steps})
    assert exact.has_exact_law(sampler, model.base)
    qm, qc = _tilted_gaussian(_MU_C, s_c, _MU, _S, gamma)
    a, s = sampler.start
    m, c, _ = exact.propagate(sampler, a * qm, a * a * qc + s * s * np.eye(2), sampler.n_steps)
    return gaussian_w2(m, c, qm, qc), m, c


def test_guidance_with_a_shared_covariance_samples_the_tilted_law():
    """Gaussian location family p(. | c) = N(mu_c, S), p = N(mu, S): the guided score is the noised
    score of q = N(mu + gamma (mu_c - mu), S) at every t, so the exact law of every sampler's
    output converges to q as the step shrinks (exact W2, no Monte Carlo). gamma = 3."""
    w = {steps: _guided_law("pflow", steps, _S, 3.0)[0] for steps in (50, 200)}
    assert w[200] < 1e-3 and w[200] < w[50] / 4, w
    w = {steps: _guided_law("ddpm", steps, _S, 3.0)[0] for steps in (250, 1000)}
    assert w[1000] < 0.01 and w[1000] < w[250] / 3, w


def test_guidance_with_different_covariances_misses_the_tilted_law():
    """p(. | c) = N(mu_c, S / 2), p = N(mu, S), gamma = 3: q = N(3, 0.75; cov S / 4) in closed form,
    but the guided probability-flow ODE ends at exact W2 ~ 1.04 from it and DDPM / the reverse
    SDE at ~ 0.52 (and at different laws from each other), while doubling the steps moves each by
    < 0.01: the gap is guidance, not discretisation."""
    pf = {steps: _guided_law("pflow", steps, 0.5 * _S, 3.0) for steps in (100, 200)}
    dd = {steps: _guided_law("ddpm", steps, 0.5 * _S, 3.0) for steps in (500, 1000)}
    assert abs(pf[200][0] - pf[100][0]) < 0.01 and abs(dd[1000][0] - dd[500][0]) < 0.01
    assert pf[200][0] > 0.9 and dd[1000][0] > 0.4, (pf[200][0], dd[1000][0])
    assert gaussian_w2(pf[200][1], pf[200][2], dd[1000][1], dd[1000][2]) > 0.4
    # both over-shoot the tilted mean along mu_c - mu and under-shoot its spread
    qm, qc = _tilted_gaussian(_MU_C, 0.5 * _S, _MU, _S, 3.0)
    for _, m, c in (pf[200], dd[1000]):
        assert m[0] > qm[0] + 0.4 and np.trace(c) < np.trace(qc)


def test_guided_flow_law_against_an_independent_ode():
    """The guided flow is linear on Gaussians: mean and covariance solve
    dm/dt = f m - g^2/2 s(m), dC/dt = J C + C J^T with J = f I - g^2/2 (-gamma C_c^-1 - (1 - gamma) C^-1),
    integrated with solve_ivp (rtol 1e-10) independently of the sampler code; rk4 with 400 steps
    agrees to 1e-6."""
    from scipy.integrate import solve_ivp

    from difflab.maths import exact
    from difflab.maths.schedules import VPLinear, alpha_sigma, time_grid
    from difflab.samplers.diffusion import PFlow

    gamma, s_c, sch = 3.0, 0.5 * _S, VPLinear()
    model = Guided(GaussianMixture([1.0], [_MU_C], [s_c]), GaussianMixture([1.0], [_MU], [_S]), gamma)
    sampler = PFlow(model, sch, time_grid(sch, 400, 1e-3), solver="rk4")
    a1, s1 = sampler.start
    m0, c0 = a1 * _MU_C, a1 * a1 * _S + s1 * s1 * np.eye(2)
    mean, cov, _ = exact.propagate(sampler, m0, c0, 400)

    def rhs(t, y):
        a, s = (float(v) for v in alpha_sigma(sch, t))
        pc, pu = (np.linalg.inv(a * a * m + s * s * np.eye(2)) for m in (s_c, _S))
        jac = sch.f(t) * np.eye(2) + 0.5 * sch.g2(t) * (gamma * pc + (1 - gamma) * pu)
        m, c = y[:2], y[2:].reshape(2, 2)
        score = -gamma * pc @ (m - a * _MU_C) - (1 - gamma) * pu @ (m - a * _MU)
        return np.concatenate([sch.f(t) * m - 0.5 * sch.g2(t) * score, (jac @ c + c @ jac.T).ravel()])

    sol = solve_ivp(rhs, (1.0, 1e-3), np.concatenate([m0, c0.ravel()]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean, sol.y[:2, -1], atol=1e-6)
    np.testing.assert_allclose(cov, sol.y[2:, -1].reshape(2, 2), atol=1e-6)


def test_gamma_one_is_the_exact_conditional_score():
    t = _target()
    cond = t.conditional(t.classes["left"])
    x = np.ascontiguousarray(np.random.default_rng(7).normal(size=(2, 20)))
    assert guidance_gamma("classifier", 1.0) == guidance_gamma("cfg", 0.0) == 1.0
    np.testing.assert_array_equal(Guided(cond, t, 1.0).score_t(x.copy(), 0.6, 0.8), cond.score_t(x.copy(), 0.6, 0.8))
    assert not Guided(cond, t, 2.0).affine_score  # a mixture: no exact law claimed


# ------------------------------------------------------------------ the CLI
def _run(tmp_path, *args, name="run"):
    f = tmp_path / "c.yaml"
    f.write_text(CLASSES)
    out = tmp_path / f"{name}.h5"
    r = CliRunner().invoke(app, ["sample", *args, "-t", str(f), "-o", str(out), "-q"])
    return r, out


@pytest.mark.slow
def test_classifier_scale_w_is_cfg_scale_w_minus_one(tmp_path):
    """Same gamma, same seed: bit-identical samples."""
    r1, o1 = _run(tmp_path, "pflow", "--guidance", "classifier", "--class", "right", "--scale", "2.5",
                  "-n", "300", "--steps", "20", name="a")
    r2, o2 = _run(tmp_path, "pflow", "--guidance", "cfg", "--class", "right", "--scale", "1.5",
                  "-n", "300", "--steps", "20", name="b")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    np.testing.assert_array_equal(read_run(o1, samples=True).samples, read_run(o2, samples=True).samples)
    assert read_run(o1).summary["guidance_gamma"] == 2.5


@pytest.mark.slow
@pytest.mark.parametrize("sampler, steps", [("ddpm", 200), ("pflow", 50), ("sde", 500)])
def test_guided_runs_report_their_distance_to_both_reference_laws(tmp_path, sampler, steps):
    """n = 4,000 particles. cfg W = 0 samples p(x | right) (one Gaussian, trace 2.5): mean_error
    within 5 sqrt(tr S / n) = 0.125. cfg W = 2 (gamma = 3): the samples miss the tilted law q by
    tilted_mean_error > 0.3, above 5 times the Monte Carlo scale sqrt(tr Cov_q / n) (Cov_q from
    100,000 exact draws of q), which bounds the floor (the same metric on n exact draws of q);
    and the exact classifier is more confident on them than on exact conditional draws."""
    n, bound = 4000, 5 * np.sqrt(2.5 / 4000)
    r, out = _run(tmp_path, sampler, "--guidance", "cfg", "--class", "right", "--scale", "0", "-n", str(n),
                  "--steps", str(steps), name="w0")
    assert r.exit_code == 0, r.output
    s0 = read_run(out).summary
    assert s0["mean_error"] < bound and s0["tilted_mean_error"] < bound + 0.01, s0
    r, out = _run(tmp_path, sampler, "--guidance", "cfg", "--class", "right", "--scale", "2", "-n", str(n),
                  "--steps", str(steps), name="w2")
    s2 = read_run(out).summary
    assert s2["guidance_gamma"] == 3.0
    q = TiltedByClass(_target(), [2], 3.0, np.random.default_rng(8))
    mc_scale = np.sqrt(np.trace(q.cov) / n)  # rms of the mean error of n exact draws of q
    assert s2["tilted_floor_mean_error"] < 5 * mc_scale < 0.3 < s2["tilted_mean_error"], (s2, mc_scale)
    assert s2["class_confidence"] > s2["floor_class_confidence"]
    assert s2["score_error_term"] > 0 and s0.get("score_error_term", 0.0) == 0.0


@pytest.mark.parametrize("args, message", [
    (["--guidance", "cfg"], "--class: --guidance cfg needs the class"),
    (["--class", "left"], "--class: only with --guidance classifier or cfg"),
    (["--guidance", "cfg", "--class", "lfet"], "c.yaml has no class 'lfet' (did you mean 'left'?)"),
    (["--guidance", "cfg", "--class", "left", "--scale", "-1"], "--scale: must be >= 0"),
    (["--guidance", "cfg", "--class", "left", "--score-error", "0.1"], "--guidance: use it without --score-error"),
    (["--guidance", "bogus"], "--guidance: expected one of none, classifier, cfg"),
])
def test_guidance_option_errors(tmp_path, args, message):
    r, out = _run(tmp_path, "ddpm", *args, "-n", "10", "--steps", "5")
    assert r.exit_code == 2 and message in r.output, r.output
    assert not out.exists()


def test_guidance_needs_a_target_with_classes(tmp_path):
    r = CliRunner().invoke(app, ["sample", "ddpm", "-t", "gmm", "--guidance", "cfg", "--class", "a", "-n", "10",
                                 "--steps", "5", "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "needs a target with a classes: block" in r.output
    assert not (tmp_path / "x.h5").exists()


def test_printed_summary_shows_the_tilted_floor(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(CLASSES)
    r = CliRunner().invoke(app, ["sample", "ddpm", "-t", str(f), "--guidance", "cfg", "--class", "right", "-n", "100",
                                 "--steps", "10", "-o", str(tmp_path / "r.h5")], terminal_width=200)
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.output.splitlines() if "tilted_mean_error" in ln)
    summary = read_run(tmp_path / "r.h5").summary
    assert f"{summary['tilted_floor_mean_error']:.4g}" in row
