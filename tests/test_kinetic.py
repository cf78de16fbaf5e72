"""Underdamped (kinetic) Langevin: the joint (x, v) law against a closed-form recursion written here
from the splitting's matrices, the stationary laws of BAOAB and OBABO on a Gaussian (Lyapunov
equations), the order of the bias in h by a log-log fit, and a Monte Carlo check of the exact law.

Monte Carlo tolerances are z = 4 standard errors of the law of the n i.i.d. final states.
"""

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.maths import exact
from difflab.maths.metrics import gaussian_w2
from difflab.run import driver
from difflab.samplers.kinetic import ULD
from difflab.targets import GaussianMixture

M = np.array([0.0, 1.0])
S = np.array([[1.0, 0.5], [0.5, 2.0]])
P = np.linalg.inv(S)
GAUSS = GaussianMixture([1.0], [M], [S], kind="gaussian")
I2, Z2 = np.eye(2), np.zeros((2, 2))


def step_matrices(h: float, gamma: float, splitting: str):
    """(T, N): z' - (m, 0) = T (z - (m, 0)) + N xi for z = (x, v), written from the splitting's
    pieces with the score -P (x - m): B(t) = [[I, 0], [-t P, I]], A(t) = [[I, t I], [0, I]],
    O(t) = [[I, 0], [0, c I]] plus noise [0; sqrt(1 - c^2) I], c = exp(-gamma t)."""
    def B(t):
        return np.block([[I2, Z2], [-t * P, I2]])

    def A(t):
        return np.block([[I2, t * I2], [Z2, I2]])

    def O(t):
        c = np.exp(-gamma * t)
        return np.block([[I2, Z2], [Z2, c * I2]]), np.vstack([Z2, np.sqrt(1 - c * c) * I2])

    if splitting == "baoab":
        o, no = O(h)
        pre = B(h / 2) @ A(h / 2)
        return pre @ o @ A(h / 2) @ B(h / 2), pre @ no
    o, no = O(h / 2)
    verlet = B(h / 2) @ A(h) @ B(h / 2)
    return o @ verlet @ o, np.hstack([o @ verlet @ no, no])


@pytest.mark.parametrize("splitting", ["baoab", "obabo"])
def test_exact_law_of_the_joint_state_matches_the_hand_recursion(splitting):
    """difflab.maths.exact pushes points through the sampler's own step; here the same law from the
    explicit matrices, after 25 steps from N(m0, C0) x N(0, I), to round-off."""
    h, gamma, steps = 0.3, 1.7, 25
    s = ULD(GAUSS, h, gamma, splitting)
    m0, c0 = np.array([2.0, -1.0]), np.array([[0.5, 0.1], [0.1, 0.3]])
    T, N = step_matrices(h, gamma, splitting)
    mean = np.concatenate([m0 - M, np.zeros(2)])
    cov = np.block([[c0, Z2], [Z2, I2]])
    for _ in range(steps):
        mean, cov = T @ mean, T @ cov @ T.T + N @ N.T
    got_m, got_c, _ = exact.propagate(s, m0, c0, steps)
    np.testing.assert_allclose(got_m, mean[:2] + M, atol=1e-12)
    np.testing.assert_allclose(got_c, cov[:2, :2], atol=1e-12)
    np.testing.assert_allclose(s.noise_cov(0), N @ N.T, atol=1e-13)


@pytest.mark.parametrize("h", [0.1, 0.4, 0.9])
def test_stationary_laws_of_the_two_splittings(h):
    """BAOAB's stationary position law is the target exactly (Leimkuhler and Matthews 2013), its
    velocity covariance I - h^2 P / 4; OBABO's position covariance is (P - h^2 P^2 / 4)^-1,
    its velocity law exact. ULA at the same h is the negative control: biased."""
    T, N = step_matrices(h, 1.0, "baoab")
    C = solve_discrete_lyapunov(T, N @ N.T)
    np.testing.assert_allclose(C[:2, :2], S, rtol=1e-10)
    np.testing.assert_allclose(C[2:, 2:], I2 - h * h * P / 4, rtol=1e-10)
    T, N = step_matrices(h, 1.0, "obabo")
    C = solve_discrete_lyapunov(T, N @ N.T)
    np.testing.assert_allclose(C[:2, :2], np.linalg.inv(P - h * h * P @ P / 4), rtol=1e-10)
    np.testing.assert_allclose(C[2:, 2:], I2, rtol=1e-10, atol=1e-12)
    ula = S @ np.linalg.inv(I2 - 0.5 * h * P)
    assert np.abs(ula - S).max() > 0.02


def _stationary_w2(splitting: str, h: float) -> float:
    """W2 of the position marginal after enough steps to forget the start, by difflab.maths.exact."""
    s = ULD(GAUSS, h, 1.0, splitting)
    m, c, _ = exact.propagate(s, M, S, int(60 / h))
    return gaussian_w2(m, c, M, S)


def test_bias_orders_in_h():
    """The position bias of OBABO is second order in h (log-log slope 2 to 0.05), BAOAB's is zero
    on a Gaussian (round-off); ULA's is first order (the README's sweep)."""
    hs = np.array([0.05, 0.1, 0.2, 0.4])
    w2 = np.array([_stationary_w2("obabo", h) for h in hs])
    slope = np.polyfit(np.log(hs), np.log(w2), 1)[0]
    assert abs(slope - 2.0) < 0.05, (slope, w2)
    assert max(_stationary_w2("baoab", h) for h in hs) < 1e-9


@pytest.mark.parametrize("splitting", ["baoab", "obabo"])
def test_monte_carlo_agrees_with_the_exact_law(splitting):
    """n = 20,000 chains for 40 steps from N(0, I): the sample mean within 4 standard errors of the
    exact law's mean, the sample variances within 4 standard errors (var of s^2 = 2 C_ii^2 / n)."""
    n, steps = 20_000, 40
    s = ULD(GAUSS, 0.3, 1.0, splitting)
    rng = np.random.Generator(np.random.SFC64(11))
    x0 = rng.standard_normal((n, 2))
    res = driver.run(s, x0, rng, steps=steps, save_every=steps, trajectory_particles=0)
    m, c, _ = exact.propagate(s, np.zeros(2), I2, steps)
    x = res.samples
    assert np.all(np.abs(x.mean(0) - m) < 4 * np.sqrt(np.diag(c) / n))
    assert np.all(np.abs(x.var(0, ddof=1) - np.diag(c)) < 4 * np.diag(c) * np.sqrt(2 / n))
    far = m + 10 * np.sqrt(np.diag(c) / n)  # negative control: a wrong mean is caught
    assert not np.all(np.abs(x.mean(0) - far) < 4 * np.sqrt(np.diag(c) / n))


@pytest.mark.parametrize("kwargs, message", [
    ({"step_size": -1.0}, "step_size: must be positive"),
    ({"step_size": 0.1, "friction": 0.0}, "friction: must be positive"),
    ({"step_size": 0.1, "splitting": "abo"}, "splitting: expected one of baoab, obabo"),
])
def test_the_object_validates_its_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ULD(GAUSS, **kwargs)


def test_cli_run_reports_the_exact_law(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["sample", "uld", "-t", "gaussian", "-n", "300", "--steps", "50", "--friction", "2",
                                 "--splitting", "obabo", "-q"])
    assert r.exit_code == 0, r.output
    from difflab.run.io import read_run

    rec = read_run(r.stdout.strip())
    assert rec.params["friction"] == 2.0 and rec.params["splitting"] == "obabo"
    assert rec.summary["exact_kl"] > 0 and "ess_min" in rec.summary
    s = ULD(GAUSS, 0.1, 2.0, "obabo")
    m, c, _ = exact.propagate(s, np.zeros(2), I2, 50)
    assert rec.summary["exact_kl"] == pytest.approx(exact.gaussian_kl(m, c, M, S), rel=1e-12)
    bad = CliRunner().invoke(app, ["sample", "uld", "--friction", "-1"])
    assert bad.exit_code == 2 and "--friction: must be positive" in bad.output
