"""ULA and MALA: single steps by hand, stationary laws against closed forms, the driver's guards.

Statistical tests use n independent chains, so the final states are n i.i.d. draws of the
sampler's law at the last step: the tolerances are z standard errors of that law, with z = 4
(two-sided false-failure rate 6e-5 per check) unless stated.
"""

import numpy as np
import pytest
from scipy import stats

from difflab.run import driver
from difflab.samplers.langevin import MALA, ULA, StepSizeAdapter
from difflab.targets import GaussianMixture
from difflab.targets.files import load_target

Z = 4.0
M = np.array([0.0, 1.0])
S = np.array([[1.0, 0.5], [0.5, 2.0]])
GAUSS = GaussianMixture([1.0], [M], [S], kind="gaussian")


def _rng(seed):
    return np.random.Generator(np.random.SFC64(seed))


def ula_stationary_cov(S, h):
    """ULA on N(m, S): stationary covariance S (I - h S^-1 / 2)^-1 (needs h < 2 / lambda_max(S^-1))."""
    d = len(S)
    return S @ np.linalg.inv(np.eye(d) - 0.5 * h * np.linalg.inv(S))


def test_ula_stationary_cov_solves_the_lyapunov_equation():
    """C = (I - h P) C (I - h P) + 2 h I with P = S^-1: the fixed point of the ULA covariance recursion."""
    h = 0.3
    C = ula_stationary_cov(S, h)
    A = np.eye(2) - h * np.linalg.inv(S)
    np.testing.assert_allclose(A @ C @ A.T + 2 * h * np.eye(2), C, rtol=1e-12)


def test_ula_step_by_hand():
    x = _rng(1).standard_normal((5, 2))
    h = 0.07
    s = ULA(GAUSS, h)
    new, info = s.step(_rng(2), s.init(x))
    xi = _rng(2).standard_normal((2, 5)).T  # noise is drawn as (d, n)
    expect = x - h * np.linalg.solve(S, (x - M).T).T + np.sqrt(2 * h) * xi
    np.testing.assert_allclose(new.x, expect, rtol=1e-13, atol=1e-13)
    assert info == {"nfe": 1.0}


def test_mala_step_by_hand():
    """The acceptance rule against the Metropolis-Hastings ratio written with scipy densities."""
    t = load_target("bimodal1d")[1]
    x = _rng(3).standard_normal((400, 1)) * 2
    h = 0.8
    s = MALA(t, h)
    new, info = s.step(_rng(4), s.init(x))
    twin = _rng(4)
    xi = twin.standard_normal((1, 400)).T
    u = twin.random(400)
    prop = x + h * t.score(x) + np.sqrt(2 * h) * xi

    def log_pi(z):
        return np.log(0.2 * stats.norm(-3, 0.5).pdf(z[:, 0]) + 0.8 * stats.norm(2, 1).pdf(z[:, 0]))

    def log_q(to, frm):  # q(to | frm) = N(frm + h score(frm), 2h)
        return stats.norm(frm[:, 0] + h * t.score(frm)[:, 0], np.sqrt(2 * h)).logpdf(to[:, 0])

    log_a = log_pi(prop) + log_q(x, prop) - log_pi(x) - log_q(prop, x)
    accept = np.log(u) < log_a
    assert 0.2 < accept.mean() < 0.95  # both branches are exercised
    np.testing.assert_array_equal(new.x, np.where(accept[:, None], prop, x))
    assert info["acceptance_rate"] == pytest.approx(np.exp(np.minimum(log_a, 0)).mean(), rel=1e-10)
    np.testing.assert_allclose(new.log_prob, t.log_prob(new.x), rtol=1e-12)
    np.testing.assert_allclose(new.grad_t.T, t.score(new.x), rtol=1e-12)


def _final(sampler, n, steps, seed, init="target", target=GAUSS):
    rng = _rng(seed)
    x0 = target.sample(rng, n) if init == "target" else rng.standard_normal((n, target.dim))
    res = driver.run(sampler, x0, rng, steps=steps, save_every=steps, trajectory_particles=0)
    assert res.status == "complete"
    return res.samples


def _moments_agree(x, mean, cov, z=Z):
    """Mean and covariance entries within z standard errors (Gaussian law: Var(C_ij) = (C_ij^2 + C_ii C_jj)/n)."""
    n = len(x)
    var = np.diag(cov)
    ok_mean = np.abs(x.mean(0) - mean) < z * np.sqrt(var / n)
    ok_cov = np.abs(np.cov(x, rowvar=False) - cov) < z * np.sqrt((cov**2 + np.outer(var, var)) / n)
    return bool(ok_mean.all() and ok_cov.all())


H_BIAS = 0.5  # a step at which ULA's bias (about 25% on the variances) dwarfs the 4-sigma band (~4%)
N_CHAINS = 20_000


@pytest.mark.slow
def test_ula_converges_to_its_biased_closed_form_law():
    """ULA, n = 20,000 chains started at exact draws, 200 steps (the initial law's distance to
    stationarity contracts by (1 - h / lambda_max(S))^(2k) < 1e-40): moments match
    N(m, S (I - h S^-1 / 2)^-1) and, as the negative control, not N(m, S)."""
    x = _final(ULA(GAUSS, H_BIAS), N_CHAINS, 200, seed=10)
    assert _moments_agree(x, M, ula_stationary_cov(S, H_BIAS))
    assert not _moments_agree(x, M, S)


@pytest.mark.slow
def test_mala_has_no_such_bias():
    """MALA at the same step is exact: the target's moments, and not ULA's biased ones."""
    x = _final(MALA(GAUSS, H_BIAS), N_CHAINS, 200, seed=11)
    assert _moments_agree(x, M, S)
    assert not _moments_agree(x, M, ula_stationary_cov(S, H_BIAS))


@pytest.mark.slow
def test_mala_keeps_mixture_mode_weights():
    """On the asymmetric 1-D mixture from exact draws, MALA leaves the law invariant: the mean and
    the soft occupancy of each mode stay at their exact values (n = 20,000, 100 steps)."""
    t = load_target("bimodal1d")[1]
    x = _final(MALA(t, 0.3), N_CHAINS, 100, seed=12, target=t)
    assert abs(x.mean() - t.mean[0]) < Z * np.sqrt(t.cov[0, 0] / N_CHAINS)
    r = t.posterior_weights(x)
    assert np.all(np.abs(r.mean(0) - t.weights) < Z * r.std(0) / np.sqrt(N_CHAINS))


def test_step_size_adaptation_reaches_the_target_acceptance():
    """After a 300-step warm-up the measured acceptance over 200 steps is 0.574 within 0.03."""
    adapter = StepSizeAdapter(0.01, 300)
    x0 = GAUSS.sample(_rng(5), 4000)
    res = driver.run(MALA(GAUSS, 0.01), x0, _rng(6), steps=200, save_every=200, trajectory_particles=0,
                     warmup=300, adapter=adapter)
    h = res.final_params["step_size_adapted"]
    assert h > 0.1  # it moved far from the initial 0.01
    assert abs(res.per_step["acceptance_rate"].mean() - 0.574) < 0.03


def test_divergence_stops_the_run_with_the_last_finite_state():
    """ULA with h = 5 on N(m, S) is unstable (|1 - h / lambda_min(S)| > 1): it overflows."""
    x0 = GAUSS.sample(_rng(7), 50)
    with np.errstate(all="ignore"):
        res = driver.run(ULA(GAUSS, 5.0), x0, _rng(8), steps=5000, save_every=10, trajectory_particles=5)
    assert res.status == "diverged"
    assert 1 < res.diverged_step < 5000
    assert res.steps_done == res.diverged_step - 1
    assert np.isfinite(res.samples).all()


def test_interrupt_keeps_the_state_reached():
    class Interrupting(ULA):
        def step(self, rng, state):
            if getattr(self, "_calls", 0) >= 6:
                raise KeyboardInterrupt
            object.__setattr__(self, "_calls", getattr(self, "_calls", 0) + 1)
            return super().step(rng, state)

    x0 = GAUSS.sample(_rng(7), 10)
    res = driver.run(Interrupting(GAUSS, 0.1), x0, _rng(8), steps=100, save_every=2, trajectory_particles=10)
    assert res.status == "interrupted" and res.steps_done == 6
    assert res.trajectory_step.tolist() == [0, 2, 4, 6]
    ref = driver.run(ULA(GAUSS, 0.1), x0, _rng(8), steps=6, save_every=2, trajectory_particles=10)
    np.testing.assert_array_equal(res.samples, ref.samples)


@pytest.mark.parametrize("cls", [ULA, MALA])
def test_driver_is_bit_reproducible(cls):
    t = load_target("gmm")[1]

    def go(seed):
        x0 = _rng(seed).standard_normal((300, 2))
        return driver.run(cls(t, 0.05), x0, _rng(seed + 1), steps=40, save_every=5, trajectory_particles=7,
                          metrics_every=10, metric_fn=lambda x: {"m": float(x.mean())})

    a, b, c = go(1), go(1), go(2)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    assert a.metrics_step.tolist() == [0, 10, 20, 30, 40]
    assert not np.array_equal(a.samples, c.samples)
