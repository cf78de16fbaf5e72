"""Reward-tilted targets p_lambda ∝ p exp(lambda r), r(x) = b^T x - x^T A x / 2, in closed form."""

import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.run.io import read_run
from difflab.targets import build_target, parse_target
from difflab.targets.files import load_target
from difflab.targets.mixture import GaussianMixture, tilt_mixture

BIMODAL = """kind: gmm
components:
  - {weight: 0.3, mean: [-2.0, 0.5], cov: [[0.5, 0.2], [0.2, 0.4]]}
  - {weight: 0.7, mean: [1.5, -1.0], cov: [[1.0, -0.3], [-0.3, 0.8]]}
"""
REWARDS = {
    "linear": {"b": [1.0, -0.5], "A": None},
    "quadratic": {"b": [0.3, 0.2], "A": [[0.8, 0.1], [0.1, 0.5]]},
    "indefinite": {"b": None, "A": [[0.5, 0.0], [0.0, -0.3]]},  # allowed while Sigma^-1 + lambda A stays PD
}


def _reward(x, b, a):
    r = np.zeros(len(x))
    if b is not None:
        r += x @ np.asarray(b)
    if a is not None:
        r -= 0.5 * np.einsum("ni,ij,nj->n", x, np.asarray(a), x)
    return r


def _base():
    return build_target(parse_target(BIMODAL, "t.yaml", "t"))


@pytest.mark.parametrize("name", list(REWARDS))
def test_tilted_log_density_is_log_p_plus_lambda_r_minus_log_z(name):
    """Exact identity: log p_lambda(x) - log p(x) - lambda r(x) = -log Z at every x."""
    base, lam, rw = _base(), 0.7, REWARDS[name]
    w, m, c, log_z = tilt_mixture(base.weights, base.means, base.covs, lam, rw["b"], rw["A"])
    tilted = GaussianMixture(w, m, c)
    x = np.random.default_rng(0).normal(size=(50, 2)) * 3
    gap = tilted.log_prob(x) - base.log_prob(x) - lam * _reward(x, rw["b"], rw["A"])
    np.testing.assert_allclose(gap, -log_z, atol=1e-10)
    # scores: grad log p_lambda = grad log p + lambda grad r
    grad_r = (np.zeros(2) if rw["b"] is None else np.asarray(rw["b"])) - \
        (0 if rw["A"] is None else x @ np.asarray(rw["A"]))
    np.testing.assert_allclose(tilted.score(x), base.score(x) + lam * grad_r, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REWARDS))
def test_tilted_target_agrees_with_importance_reweighted_exact_draws(name):
    """200,000 exact draws of p weighted by exp(lambda r): weighted mean, second moments and
    component occupancies E[p(k | x)] against the closed form, within 5 standard errors
    (standard errors from the effective sample size of the weights). Negative control: the
    unweighted draws miss the tilted mean by far more."""
    base, lam, rw = _base(), 0.7, REWARDS[name]
    w, m, c, log_z = tilt_mixture(base.weights, base.means, base.covs, lam, rw["b"], rw["A"])
    tilted = GaussianMixture(w, m, c)
    n = 200_000
    x = base.sample(np.random.default_rng(1), n)
    lw = lam * _reward(x, rw["b"], rw["A"])
    iw = np.exp(lw - lw.max())
    ess = iw.sum() ** 2 / (iw**2).sum()
    iw /= iw.sum()
    assert ess > 5_000
    assert np.log(np.mean(np.exp(lw))) == pytest.approx(log_z, abs=5 / np.sqrt(ess))
    se_mean = np.sqrt(np.diag(tilted.cov) / ess)
    assert np.all(np.abs(iw @ x - tilted.mean) < 5 * se_mean)
    second = np.einsum("n,ni,nj->ij", iw, x, x)
    exact_second = tilted.cov + np.outer(tilted.mean, tilted.mean)
    se_second = np.sqrt(np.einsum("n,ni,nj->ij", iw, x**2, x**2) - second**2) / np.sqrt(ess)
    assert np.all(np.abs(second - exact_second) < 5 * se_second + 1e-12)
    occ = iw @ base.posterior_weights(x)  # tilting keeps p(k | x): occupancy -> the tilted weights
    assert np.all(np.abs(occ - tilted.weights) < 5 * np.sqrt(tilted.weights * (1 - tilted.weights) / ess))
    assert np.linalg.norm(x.mean(0) - tilted.mean) > 20 * se_mean.max()


def test_linear_tilt_of_one_gaussian_shifts_the_mean_by_lambda_sigma_b():
    _, m, c, log_z = tilt_mixture([1.0], [[0.0, 1.0]], [[[1.0, 0.5], [0.5, 2.0]]], 2.0, [1.0, 0.0], None)
    np.testing.assert_allclose(m[0], [0.0 + 2.0, 1.0 + 1.0])  # m + lambda S b
    np.testing.assert_allclose(c[0], [[1.0, 0.5], [0.5, 2.0]])
    assert log_z == pytest.approx(2.0 * 0.0 + 0.5 * 4.0 * 1.0)  # lambda b.m + lambda^2 b.S.b / 2


def test_shipped_tilted_ring():
    _, t = load_target("gmm-tilted")
    assert t.weights[0] / t.weights[4] == pytest.approx(np.exp(0.5 * 8.0))  # exp(lambda (4 - (-4)))
    assert t.mean[0] > 2.5 and abs(t.mean[1]) < 1e-12


@pytest.mark.parametrize("tilt,message", [
    ("{lambda: 1.0}", "tilt: needs a reward: b (linear part) and/or A (quadratic part)"),
    ("{lambda: 1.0, b: [1.0]}", "tilt.b: expected 2 entries"),
    ("{lambda: 2.0, A: -1.0}", "tilt.A: the tilted precision Sigma^-1 + lambda A of component 0 is not positive definite"),
    ("{lambda: 1.0, b: [1, 0], c: 2}", "tilt.c: unknown key"),
    ("{b: [1, 0]}", "tilt.lambda: missing required key"),
])
def test_tilt_errors_name_the_key(tilt, message):
    with pytest.raises(ConfigError) as err:
        parse_target(f"kind: gaussian\nmean: [0, 0]\ncov: 1.0\ntilt: {tilt}\n", "t.yaml", "t")
    assert message in str(err.value)


def test_samplers_run_on_a_tilted_gaussian_with_its_exact_law(tmp_path):
    """A tilted Gaussian is a Gaussian target: pflow's exact law is computed against it."""
    f = tmp_path / "tg.yaml"
    f.write_text("kind: gaussian\nmean: [0, 1]\ncov: [[1.0, 0.5], [0.5, 2.0]]\ntilt: {lambda: 1.0, b: [1, 0], A: 0.5}\n")
    r = CliRunner().invoke(app, ["sample", "pflow", "-t", str(f), "-n", "100", "--steps", "20", "-o", str(tmp_path / "o.h5"), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(tmp_path / "o.h5")
    assert rec.summary["exact_w2"] < 0.01


# ------------------------------------------------------------------ reward guidance
GAUSS = "kind: gaussian\nmean: [0.0, 1.0]\ncov: [[1.0, 0.5], [0.5, 2.0]]\ntilt: {lambda: LAM, b: [1.0, 0.0]}\n"


def _tilted_gaussian(lam):
    spec = parse_target(GAUSS.replace("LAM", str(lam)), "g.yaml", "g")
    return spec, build_target(spec), GaussianMixture(*spec.untilted)


def test_exact_h_transform_control_in_closed_form():
    """grad log h_t(x), h_t(x) = E[exp(lambda b.X_0) | alpha X_0 + sigma Z = x], is
    lambda alpha C^-1 S b (C = alpha^2 S + sigma^2 I) for a Gaussian: the tilted target's noised
    score minus the untilted one must equal it, at every t and x."""
    lam, b = 1.3, np.array([1.0, 0.0])
    _, tilted, base = _tilted_gaussian(lam)
    x = np.random.default_rng(0).normal(size=(2, 7))
    for a, s in ((1.0, 0.0), (0.8, 0.6), (0.1, 0.995)):
        c = a * a * base.cov + s * s * np.eye(2)
        control = tilted.score_t(x, a, s) - base.score_t(x, a, s)
        np.testing.assert_allclose(control, np.repeat((lam * a * np.linalg.solve(c, base.cov @ b))[:, None], 7, 1),
                                   atol=1e-12)


def test_naive_guided_pflow_law_against_an_independent_ode():
    """On a Gaussian the naive guided flow is linear, so its output mean solves
    dm/dt = f m - g^2/2 (-C_t^-1 (m - alpha_t mu) + lambda b), integrated here with solve_ivp
    (rtol 1e-10), independent of the sampler code; rk4 with 400 steps must agree to 1e-6, and
    both miss the tilted mean (the bias)."""
    from scipy.integrate import solve_ivp

    from difflab.maths import exact
    from difflab.maths.schedules import VPLinear, alpha_sigma, time_grid
    from difflab.samplers import SAMPLERS
    from difflab.samplers.diffusion import PFlow
    from difflab.targets.perturbed import RewardGuided

    lam, b = 0.5, np.array([1.0, 0.0])
    spec, tilted, base = _tilted_gaussian(lam)
    sch = VPLinear()
    model = RewardGuided(tilted, base, *spec.reward)
    sampler = PFlow(model, sch, time_grid(sch, 400, 1e-3), solver="rk4")
    a1, s1 = sampler.start
    m0 = a1 * tilted.mean
    mean, _, _ = exact.propagate(sampler, m0, a1 * a1 * tilted.cov + s1 * s1 * np.eye(2), 400)

    def rhs(t, m):
        a, s = (float(v) for v in alpha_sigma(sch, t))
        c = a * a * base.cov + s * s * np.eye(2)
        score = -np.linalg.solve(c, m - a * base.mean) + lam * b
        return sch.f(t) * m - 0.5 * sch.g2(t) * score

    sol = solve_ivp(rhs, (1.0, 1e-3), m0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean, sol.y[:, -1], atol=1e-6)
    assert np.linalg.norm(mean - tilted.mean) > 1.0
    assert SAMPLERS["pflow"].resolve_params({"reward_guidance": "naive"}, 10)["reward_guidance"] == "naive"


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddpm", "pflow", "sde"])
def test_naive_guidance_bias_is_reported_and_grows_like_lambda_squared(tmp_path, sampler):
    """exact_kl of naive guidance against the tilted law: far above the exact (h-transform)
    run's, which is discretisation only; KL ~ lambda^2 for small lambda (the mean error is linear
    in lambda): log-log slope 2 between lambda = 0.05 and 0.1."""
    kls = {}
    for lam in (0.05, 0.1):
        for mode in ("exact", "naive"):
            f = tmp_path / f"g{lam}.yaml"
            f.write_text(GAUSS.replace("LAM", str(lam)))
            out = tmp_path / f"{mode}{lam}.h5"
            r = CliRunner().invoke(app, ["sample", sampler, "-t", str(f), "-n", "200",
                                         "--steps", "200" if sampler == "pflow" else "1000",
                                         "--reward-guidance", mode, "-o", str(out), "-q"])
            assert r.exit_code == 0, r.output
            rec = read_run(out)
            kls[mode, lam] = rec.summary["exact_kl"]
            if mode == "naive":
                assert rec.summary["score_error_term"] > 0
    assert kls["naive", 0.1] > 100 * kls["exact", 0.1], kls
    slope = np.log(kls["naive", 0.1] / kls["naive", 0.05]) / np.log(2)
    assert 1.8 < slope < 2.2, (kls, slope)


def test_naive_guidance_needs_a_tilted_target(tmp_path):
    r = CliRunner().invoke(app, ["sample", "ddpm", "-t", "gaussian", "--reward-guidance", "naive",
                                 "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "--reward-guidance: naive needs a target with a tilt: block" in r.output
    assert not (tmp_path / "x.h5").exists()


# ------------------------------------------------------------------ SMC (twisted Feynman-Kac)
def _smc_runs(lam, n, seeds, steps=50, proposal="base"):
    """(final means (R, d), Z estimates (R,)) of smc runs on the tilted 2-D Gaussian."""
    from difflab.run import driver
    from difflab.run.sampling import _initial
    from difflab.samplers import SAMPLERS

    spec, tilted, _ = _tilted_gaussian(lam)
    params = {"steps": steps, "init": "prior", **SAMPLERS["smc"].resolve_params({"proposal": proposal}, steps)}
    means, zs = [], []
    for seed in seeds:
        s = SAMPLERS["smc"].build(tilted, params)
        x0, _ = _initial(params, tilted, s, np.random.default_rng(10_000 + seed), n)
        res = driver.run(s, x0, np.random.default_rng(seed), steps=steps, save_every=steps, trajectory_particles=0)
        means.append(res.samples.mean(0))
        zs.append(np.exp(res.per_step["log_z_estimate"][-1]))
    return np.array(means), np.array(zs), tilted, spec


def test_systematic_resampling_counts():
    from difflab.samplers.smc import systematic_resample

    w = np.random.default_rng(0).dirichlet(np.ones(50))
    for seed in range(20):
        counts = np.bincount(systematic_resample(np.random.default_rng(seed), np.log(w)), minlength=50)
        assert np.all(counts >= np.floor(50 * w) - 1e-9) and np.all(counts <= np.ceil(50 * w) + 1e-9)


@pytest.mark.slow
def test_smc_evidence_is_unbiased():
    """E[Z_hat] = Z = E_p[exp(lambda r)] exactly for SMC: 40 runs of 500 particles, within 4
    standard errors; the exact log Z is the closed form of the tilt."""
    _, zs, _, spec = _smc_runs(1.0, 500, range(40))
    assert abs(zs.mean() - np.exp(spec.log_z)) < 4 * zs.std(ddof=1) / np.sqrt(len(zs))


@pytest.mark.slow
def test_smc_error_shrinks_with_particles_while_naive_guidance_stays_biased():
    """Root-mean-square error of the output mean over 12 seeds at n = 250, 1000, 4000: smc falls
    like n^-1/2 (fitted slope -0.5 +- 0.2), within 3 x the RMSE of n exact draws; the naive-guidance ddpm run
    (same grid) is stuck at its bias (closed form from its exact law)."""
    ns = np.array([250, 1000, 4000])
    rmse = []
    for n in ns:
        means, _, tilted, _ = _smc_runs(1.0, int(n), range(12))
        rmse.append(np.sqrt(np.mean(np.sum((means - tilted.mean) ** 2, axis=1))))
    slope = np.polyfit(np.log(ns), np.log(rmse), 1)[0]
    assert -0.7 < slope < -0.3, (rmse, slope)
    iid = np.sqrt(np.trace(tilted.cov) / ns[-1])  # RMSE of the mean of n exact draws
    assert rmse[-1] < 3 * iid  # weights and resampling cost efficiency (measured: 1.6 x the i.i.d. RMSE)
    from difflab.maths import exact
    from difflab.samplers import SAMPLERS
    from difflab.targets.perturbed import RewardGuided

    spec, tilted, base = _tilted_gaussian(1.0)
    params = {"steps": 50, **SAMPLERS["ddpm"].resolve_params({}, 50)}
    naive = SAMPLERS["ddpm"].build(RewardGuided(tilted, base, *spec.reward), params)
    a, s = naive.start
    m, _, _ = exact.propagate(naive, a * tilted.mean, a * a * tilted.cov + s * s * np.eye(2), 50)
    assert np.linalg.norm(m - tilted.mean) > 10 * rmse[-1]


def test_smc_cli_needs_a_tilted_target(tmp_path):
    r = CliRunner().invoke(app, ["sample", "smc", "-t", "gaussian", "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "smc samples a reward-tilted target" in r.output
    r = CliRunner().invoke(app, ["sample", "smc", "-n", "300", "--steps", "20", "-o", str(tmp_path / "s.h5"), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(tmp_path / "s.h5", series=True)
    assert {"smc_ess", "resampled", "log_z_estimate", "nfe"} <= set(rec.per_step)
    assert rec.summary["log_z"] == pytest.approx(load_target("gmm-tilted")[0].log_z)
