"""Stochastic localization: the time change, the drift, exactness of the Gaussian transition."""

import numpy as np
import pytest

from difflab.maths import exact
from difflab.run import driver
from difflab.samplers import SAMPLERS
from difflab.targets import GaussianMixture
from difflab.targets.files import load_target


def _rng(seed):
    return np.random.Generator(np.random.SFC64(seed))


def _g3():
    a = np.array([[1.0, 0.3, 0.0], [0.2, 0.7, 0.4], [0.1, 0.0, 1.2]])
    return GaussianMixture([1.0], [[1.0, -0.5, 2.0]], [a @ a.T], kind="gaussian")


G3 = _g3()
BIMODAL = load_target("bimodal1d")[1]


def _sampler(target, steps, **opts):
    spec = SAMPLERS["localization"]
    return spec.build(target, {"steps": steps, **spec.resolve_params(opts, steps)})


@pytest.mark.parametrize("t", [0.01, 1.0, 50.0])
@pytest.mark.parametrize("target", [G3, BIMODAL, load_target("gmm")[1]], ids=["g3", "bimodal", "ring"])
def test_time_change_to_vp(t, target):
    """x = y_t / sqrt(t (1 + t)) is alpha X + sigma Z with alpha^2 = t / (1 + t), sigma^2 = 1 / (1 + t):
    densities differ by the Jacobian, posterior means agree."""
    y = _rng(1).standard_normal((7, target.dim)) * (1 + t)
    c = np.sqrt(t * (1 + t))
    a, s = np.sqrt(t / (1 + t)), np.sqrt(1 / (1 + t))
    np.testing.assert_allclose(target.noised_log_prob(y, t, np.sqrt(t)),
                               target.noised_log_prob(y / c, a, s) - target.dim * np.log(c), rtol=1e-10)
    np.testing.assert_allclose(target.denoiser(y, t, np.sqrt(t)), target.denoiser(y / c, a, s), rtol=1e-9, atol=1e-12)


def test_drift_against_a_monte_carlo_posterior_mean():
    """m(y, t) = E[X | tX + W_t = y] by self-normalised importance sampling over 400,000 exact
    draws (weights N(y; tX, tI)); tolerance 4 delta-method standard errors."""
    t, n = 0.7, 400_000
    x = BIMODAL.sample(_rng(2), n)[:, 0]
    for y in (-2.0, 0.3, 1.5):
        w = np.exp(-0.5 * (y - t * x) ** 2 / t)
        est = (w * x).sum() / w.sum()
        se = np.sqrt((w**2 * (x - est) ** 2).sum()) / w.sum()
        exact_m = BIMODAL.denoiser(np.array([[y]]), t, np.sqrt(t))[0, 0]
        assert abs(est - exact_m) < 4 * se, (y, est, exact_m, se)


def _readout_law(T):
    """Law of m(y_T, T) for the Gaussian target: N(m, S - (S^-1 + T I)^-1)."""
    S = G3.cov
    post = np.linalg.inv(np.linalg.inv(S) + T * np.eye(3))
    return G3.mean, S - post


@pytest.mark.parametrize("steps", [1, 3, 50])
def test_gaussian_transition_is_exact_at_any_step_size(steps):
    s = _sampler(G3, steps, t_max=100.0)
    m, c, _ = exact.propagate(s, np.zeros(3), np.zeros((3, 3)), s.n_steps)
    em, ec = _readout_law(100.0)
    np.testing.assert_allclose(m, em, atol=1e-10)
    np.testing.assert_allclose(c, ec, atol=1e-10)


def test_euler_maruyama_on_a_uniform_grid_is_badly_biased():
    """The issue's warning, measured exactly: EM on a uniform grid is far off, EM on the log grid
    much less, the Gaussian transition exact up to the finite T."""
    w2 = {}
    for label, opts in {"em-uniform": {"transition": "em", "grid": "uniform"}, "em-log": {"transition": "em"},
                        "gaussian-log": {}}.items():
        s = _sampler(G3, 500, **opts)
        m, c, _ = exact.propagate(s, np.zeros(3), np.zeros((3, 3)), s.n_steps)
        w2[label] = exact.gaussian_w2(m, c, G3.mean, G3.cov)
    assert w2["em-uniform"] > 0.5 > 0.05 > w2["em-log"] > 0.005 > 1e-3 > w2["gaussian-log"], w2


def test_exact_law_matches_monte_carlo_with_few_steps():
    """EM with 4 log-grid steps is visibly wrong; its exact law still matches 40,000 particles."""
    s = _sampler(G3, 4, transition="em", t_max=10.0)
    n = 40_000
    res = driver.run(s, np.zeros((n, 3)), _rng(3), steps=s.n_steps, save_every=s.n_steps, trajectory_particles=0)
    m, c, _ = exact.propagate(s, np.zeros(3), np.zeros((3, 3)), s.n_steps)
    x = res.samples
    var = np.diag(c)
    assert np.all(np.abs(x.mean(0) - m) < 4 * np.sqrt(var / n))
    assert np.all(np.abs(np.cov(x, rowvar=False) - c) < 4 * np.sqrt((c**2 + np.outer(var, var)) / n))
    assert exact.gaussian_w2(m, c, G3.mean, G3.cov) > 0.05


def test_posterior_trace_falls_from_the_target_covariance():
    s = _sampler(G3, 50, t_max=100.0)
    res = driver.run(s, np.zeros((500, 3)), _rng(4), steps=s.n_steps, save_every=s.n_steps, trajectory_particles=0)
    tr = res.per_step["posterior_trace"]
    assert tr[0] == pytest.approx(np.trace(G3.cov), rel=1e-12)
    assert tr[-1] == pytest.approx(np.trace(np.linalg.inv(np.linalg.inv(G3.cov) + 100 * np.eye(3))), rel=1e-10)
    assert np.all(np.diff(tr) < 0)


@pytest.mark.slow
@pytest.mark.parametrize("target", [G3, BIMODAL], ids=["g3", "bimodal1d"])
def test_defaults_reproduce_moments_and_mode_weights(target):
    """Default run (gaussian transition, 500 log-grid steps, T = 1e4), 20,000 particles: mean,
    covariance and mode occupancies within 4 standard errors."""
    s = _sampler(target, 500)
    n = 20_000
    res = driver.run(s, np.zeros((n, target.dim)), _rng(5), steps=s.n_steps, save_every=s.n_steps,
                     trajectory_particles=0)
    x, cov = res.samples, target.cov
    var = np.diag(cov)
    assert np.all(np.abs(x.mean(0) - target.mean) < 4 * np.sqrt(var / n))
    assert np.all(np.abs(np.cov(x, rowvar=False) - cov) < 2 * 4 * np.sqrt((cov**2 + np.outer(var, var)) / n))
    if target.n_components > 1:
        r = target.posterior_weights(x)
        assert np.all(np.abs(r.mean(0) - target.weights) < 4 * r.std(0) / np.sqrt(n))


@pytest.mark.slow
def test_metric_series_follow_the_running_estimate(tmp_path):
    """Series are taken on E[X | y_t]: the mean error falls along the run instead of growing with t."""
    from typer.testing import CliRunner

    from difflab.cli.app import app
    from difflab.run.io import read_run

    out = tmp_path / "l.h5"
    r = CliRunner().invoke(app, ["sample", "localization", "-t", "gaussian", "-n", "2000", "--steps", "40",
                                 "--metrics-every", "10", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(out, series=True)
    err = rec.metrics["w2_gaussian"]
    assert rec.metrics["step"].tolist() == [0, 10, 20, 30, 40, 41]
    assert err[0] > 0.5 and err[-1] < 0.1 and "exact_w2" not in rec.metrics and rec.summary["exact_w2"] < 0.01
