"""Schedules, DDPM/DDIM and the probability-flow ODE: identities, exact laws, orders, accuracy."""

import numpy as np
import pytest

from difflab.maths import exact
from difflab.maths.schedules import (
    VE,
    VPCosine,
    VPLinear,
    alpha_sigma,
    ddpm_grid,
    half_log_snr,
    make_schedule,
    t_of_half_log_snr,
    time_grid,
)
from difflab.run import driver
from difflab.run.sampling import _initial
from difflab.samplers import SAMPLERS
from difflab.samplers.diffusion import DDPM, PFlow, ReverseSDE
from difflab.targets import GaussianMixture
from difflab.targets.files import load_target

SCHEDS = [VPLinear(), VPCosine(), VE()]
T = np.linspace(0.01, 0.99, 25)


def _rng(seed):
    return np.random.Generator(np.random.SFC64(seed))


def _gauss3d():
    a = np.array([[1.0, 0.3, 0.0], [0.2, 0.7, 0.4], [0.1, 0.0, 1.2]])
    return GaussianMixture([1.0], [[1.0, -0.5, 2.0]], [a @ a.T], kind="gaussian")


G3 = _gauss3d()
BIMODAL = load_target("bimodal1d")[1]


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("sch", SCHEDS[:2], ids=lambda s: type(s).__name__)
def test_vp_alpha_sigma_on_the_unit_circle(sch):
    a, s = alpha_sigma(sch, T)
    np.testing.assert_allclose(a**2 + s**2, 1.0, rtol=1e-14)


@pytest.mark.parametrize("sch", SCHEDS, ids=lambda s: type(s).__name__)
def test_drift_and_diffusion_match_alpha_sigma(sch):
    """f = d log alpha / dt and g^2 = d sigma^2 / dt - 2 f sigma^2, by central differences."""
    eps = 1e-6
    a_p, s_p = alpha_sigma(sch, T + eps)
    a_m, s_m = alpha_sigma(sch, T - eps)
    _, s = alpha_sigma(sch, T)
    f_fd = (np.log(a_p) - np.log(a_m)) / (2 * eps)
    g2_fd = (s_p**2 - s_m**2) / (2 * eps) - 2 * sch.f(T) * s**2
    np.testing.assert_allclose(sch.f(T), f_fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sch.g2(T), g2_fd, rtol=1e-6)


@pytest.mark.parametrize("sch", SCHEDS, ids=lambda s: type(s).__name__)
def test_log_snr_inverse(sch):
    np.testing.assert_allclose(t_of_half_log_snr(sch, half_log_snr(sch, T)), T, rtol=1e-10)


def test_ddpm_discrete_chain_against_the_continuous_vp_linear():
    """alpha_bar_i = prod (1 - beta_j) vs exp(-int_0^{i/N} beta): log(1 - b) = -b - b^2/2 - ...
    so the gap is the midpoint-rule error of sum_j beta_j against the integral (the betas sit at
    t = j/N - ... the discrete grid starts at beta_1 = beta_min / N) plus sum_j b_j^2 / (2 (1 - b_j))."""
    sch = VPLinear()
    n = 1000
    alphas, _ = sch.discrete(n)
    betas = np.linspace(1e-4, 0.02, n)
    assert betas[0] == pytest.approx(sch.beta_min / n) and betas[-1] == pytest.approx(sch.beta_max / n)
    i = np.arange(n + 1)
    gap = np.abs(2 * np.log(alphas) - 2 * sch.log_alpha(i / n))
    quad = np.concatenate([[0], np.cumsum(betas**2 / (2 * (1 - betas)))])
    # sum_{j <= i} beta_j vs the integral over [0, i/N]: each beta_j = beta((j - 1) / (N - 1)) / N,
    # the grid is off by at most one step of beta: |difference| <= i * (beta_max - beta_min) / N^2 + beta_max / N
    riemann = i * (sch.beta_max - sch.beta_min) / n**2 + sch.beta_max / n
    assert np.all(gap <= quad + riemann)
    assert gap[-1] < 0.1  # and the two agree to a few percent of alpha_bar even at t = 1


# ---------------------------------------------------------------- DDPM / DDIM steps
def test_ddpm_step_is_ho_et_al_eq_11():
    """eta = 1, beta-tilde, on DDPM's own chain: x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(1 - beta_t)
    + sqrt(beta_tilde_t) z, with eps from the exact denoiser."""
    params = {"schedule": "vp-linear", "beta_min": 0.1, "beta_max": 20.0, "eta": 1.0, "variance": "beta-tilde",
              "early_stop": 0.0, "timestep_spacing": "trailing", "steps": 1000}
    s = SAMPLERS["ddpm"].build(G3, params)
    k = 400  # from discrete index 600 to 599
    a_t, s_t, a_s, s_s = s.alphas[k], s.sigmas[k], s.alphas[k + 1], s.sigmas[k + 1]
    beta = 1 - (a_t / a_s) ** 2
    x = _rng(1).standard_normal((3, 7))
    x0 = G3.denoiser(x.T, a_t, s_t).T
    eps = (x - a_t * x0) / s_t
    mean = (x - beta / s_t * eps) / np.sqrt(1 - beta)
    np.testing.assert_allclose(s.deterministic(x, k), mean, rtol=1e-10, atol=1e-12)
    assert s.noise_cov(k) == pytest.approx(beta * s_s**2 / s_t**2, rel=1e-10)
    # the other variance choice of Ho et al.: sigma_t^2 = beta_t
    sb = DDPM(G3, s.alphas, s.sigmas, eta=1.0, variance="beta")
    assert sb.noise_cov(k) == pytest.approx(beta, rel=1e-10)
    np.testing.assert_allclose(sb.deterministic(x, k), mean, rtol=1e-10, atol=1e-12)


def test_last_step_returns_the_denoiser():
    a, s, _ = ddpm_grid(make_schedule({"schedule": "vp-linear", "beta_min": 0.1, "beta_max": 20.0}), 10)
    sampler = DDPM(BIMODAL, a, s)
    assert s[-1] == 0 and sampler.noise_cov(9) == 0
    x = _rng(2).standard_normal((1, 50))
    np.testing.assert_allclose(sampler.deterministic(x, 9), BIMODAL.denoiser(x.T, a[9], s[9]).T, rtol=1e-12)


def test_ddim_eta0_is_deterministic():
    a, s, _ = ddpm_grid(make_schedule({"schedule": "vp-linear", "beta_min": 0.1, "beta_max": 20.0}), 20)
    sampler = DDPM(BIMODAL, a, s, eta=0.0)
    x0 = _rng(3).standard_normal((100, 1))
    r1 = driver.run(sampler, x0, _rng(4), steps=20, save_every=20, trajectory_particles=0)
    r2 = driver.run(sampler, x0, _rng(5), steps=20, save_every=20, trajectory_particles=0)
    np.testing.assert_array_equal(r1.samples, r2.samples)


# ---------------------------------------------------------------- exact laws
def _mc_agrees(x, mean, cov, z=4.0):
    n = len(x)
    var = np.diag(cov)
    ok_m = np.abs(x.mean(0) - mean) < z * np.sqrt(var / n)
    ok_c = np.abs(np.cov(x, rowvar=False) - cov) < z * np.sqrt((cov**2 + np.outer(var, var)) / n)
    return bool(ok_m.all() and ok_c.all())


def _ddpm(target, steps, eta=1.0, variance="beta-tilde", schedule="vp-linear"):
    params = {"schedule": schedule, "eta": eta, "variance": variance, "early_stop": 0.0, "steps": steps,
              "timestep_spacing": "trailing",
              "beta_min": 0.1, "beta_max": 20.0, "sigma_min": 0.01, "sigma_max": 50.0}
    return SAMPLERS["ddpm"].build(target, params)


VP = VPLinear()


def _pflow(target, steps, solver, early_stop=1e-3, schedule=VP):
    return PFlow(target, schedule, time_grid(schedule, steps, early_stop), solver=solver)


def _sde(target, steps, corrector_steps=0, snr=0.1, schedule=VP):
    return ReverseSDE(target, schedule, time_grid(schedule, steps, 1e-3), corrector_steps=corrector_steps, snr=snr)


@pytest.mark.parametrize("make", [
    lambda: _ddpm(G3, 20, eta=1.0),
    lambda: _ddpm(G3, 20, eta=0.5, variance="beta"),
    lambda: _pflow(G3, 8, "euler"),
    lambda: _sde(G3, 10, corrector_steps=2, snr=0.3),
], ids=["ddpm-eta1", "ddim-eta0.5-beta", "pflow-euler-8", "sde-pc"])
def test_exact_law_matches_monte_carlo(make):
    """Few steps, so the law is far from the target and the check is not vacuous; n = 40,000
    particles from N(0, I); 4 standard errors per moment."""
    sampler = make()
    n = 40_000
    steps = sampler.n_steps
    res = driver.run(sampler, _rng(6).standard_normal((n, 3)), _rng(7), steps=steps, save_every=steps,
                     trajectory_particles=0)
    mean, cov, _ = exact.propagate(sampler, np.zeros(3), np.eye(3), steps)
    assert _mc_agrees(res.samples, mean, cov)
    assert exact.gaussian_w2(mean, cov, G3.mean, G3.cov) > 0.01  # the law differs from the target
    assert not _mc_agrees(res.samples, mean * 1.05 + 0.05, cov)  # negative control


def test_ula_exact_law_reaches_the_closed_form_stationary_law():
    s = SAMPLERS["ula"].build(G3, {"step_size": 0.1})
    mean, cov, _ = exact.propagate(s, np.zeros(3), np.eye(3), 2000)
    expect = G3.cov @ np.linalg.inv(np.eye(3) - 0.05 * np.linalg.inv(G3.cov))
    np.testing.assert_allclose(cov, expect, rtol=1e-9)
    np.testing.assert_allclose(mean, G3.mean, rtol=1e-9)


def test_gaussian_kl_closed_form():
    assert exact.gaussian_kl(np.zeros(1), np.eye(1) * 4, np.ones(1), np.eye(1)) == pytest.approx(
        0.5 * (4 + 1 - 1 - np.log(4)), rel=1e-12)
    assert exact.gaussian_kl(G3.mean, G3.cov, G3.mean, G3.cov) == pytest.approx(0.0, abs=1e-12)


def _slope(x, y):
    return np.polyfit(np.log(x), np.log(y), 1)[0]


def _p(t):
    """The exact marginal p_t = N(a m, a^2 S + s^2 I) of the 3-D Gaussian target, vp-linear."""
    a, s = (float(v) for v in alpha_sigma(VPLinear(), t))
    return a * G3.mean, a * a * G3.cov + s * s * np.eye(3)


def _from_p1_to_delta_error(sampler, delta=1e-3):
    """W2 between the exact output law from the exact p_1 and the exact p_delta: the
    discretisation error alone (no prior mismatch, no early-stopping error)."""
    m1, c1 = _p(1.0)
    m, c, _ = exact.propagate(sampler, m1, c1, sampler.n_steps)
    return exact.gaussian_w2(m, c, *_p(delta))


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("dpm2", 2), ("rk4", 4)])
def test_solver_order_by_exact_w2(solver, order):
    """Started at the exact p_1, the exact flow ends at p_delta; W2 between the solver's exact
    output law and p_delta is pure discretisation error, whose log-log slope against K is -order."""
    ks = np.array([16, 32, 64, 128]) if order < 4 else np.array([8, 16, 32, 48])
    errs = np.array([_from_p1_to_delta_error(_pflow(G3, int(k), solver)) for k in ks])
    slope = _slope(ks, errs)
    assert abs(slope + order) < 0.3, (slope, errs)


def test_euler_maruyama_is_first_order_in_w2():
    """The same for the reverse SDE (its marginals are p_t too): W2 falls like 1 / K."""
    ks = np.array([50, 100, 200, 400])
    errs = np.array([_from_p1_to_delta_error(_sde(G3, int(k))) for k in ks])
    assert abs(_slope(ks, errs) + 1) < 0.2, errs


def test_ddpm_exact_kl_falls_with_steps():
    kls = []
    for k in (10, 20, 50, 100, 200, 1000):
        s = _ddpm(G3, k)
        m, c, _ = exact.propagate(s, np.zeros(3), np.eye(3), k)
        kls.append(exact.gaussian_kl(m, c, G3.mean, G3.cov))
    assert all(b < a for a, b in zip(kls, kls[1:])), kls
    assert kls[-1] < 1e-3


# ---------------------------------------------------------------- defaults are accurate
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm", "pflow", "sde"])
@pytest.mark.parametrize("target", ["g3", "bimodal1d"])
def test_defaults_reproduce_moments_and_mode_weights(name, target):
    """The CLI's defaults (ddpm: 1000 steps; pflow: heun, 100 steps, log-SNR grid, delta = 1e-3;
    sde: Euler-Maruyama, 1000 steps, log-SNR grid, delta = 1e-3),
    n = 20,000 particles from the prior: mean, covariance and mode occupancies within 4 standard
    errors of the exact values."""
    t = G3 if target == "g3" else BIMODAL
    sampler, params = _default(name, t)
    n = 20_000
    x0, _ = _initial(params, t, sampler, _rng(8), n)
    res = driver.run(sampler, x0, _rng(9), steps=sampler.n_steps, save_every=sampler.n_steps,
                     trajectory_particles=0)
    x = res.samples
    assert _mc_agrees(x, t.mean, t.cov)
    if t.n_components > 1:
        r = t.posterior_weights(x)
        assert np.all(np.abs(r.mean(0) - t.weights) < 4 * r.std(0) / np.sqrt(n))


def _default(name, target):
    spec = SAMPLERS[name]
    params = {"steps": spec.default_steps, "init": spec.inits[0], **spec.resolve_params({}, spec.default_steps)}
    return spec.build(target, params), params


@pytest.mark.parametrize("prior,bound", [("matched", {"ddpm": 0.01, "pflow": 0.002, "sde": 0.004}),
                                         ("standard", {"ddpm": 0.02, "pflow": 0.05, "sde": 0.02})])
def test_default_exact_error_is_below_monte_carlo_level(prior, bound):
    """The exact W2 of the defaults on the 3-D Gaussian against the Monte Carlo level of W2 at
    20,000 particles, sqrt(tr S / n) ~ 0.013. ddpm's remainder is its first-order discretisation
    error (the Gaussian kernel's beta-tilde misses the posterior variance of x_0). With the
    standard N(0, I) prior the prior mismatch (alpha_1 = e^-5.0) shows: the flow carries the
    offset -alpha_1 m back to t = 0, so pflow's error grows twentyfold."""
    errs = {}
    for name in ("ddpm", "pflow", "sde"):
        s, params = _default(name, G3)
        params["prior"] = prior
        _, (m0, c0) = _initial(params, G3, s, _rng(0), 2)
        m, c, _ = exact.propagate(s, m0, c0, s.n_steps)
        errs[name] = exact.gaussian_w2(m, c, G3.mean, G3.cov)
    assert all(errs[k] < bound[k] for k in errs), errs
    if prior == "standard":
        assert errs["pflow"] > 0.005, errs  # the mismatch is visible, not vacuous


def test_make_schedule_passes_parameters():
    s = make_schedule({"schedule": "vp-linear", "beta_min": 0.2, "beta_max": 10.0})
    assert s.beta_min == 0.2 and s.beta_max == 10.0
    s = make_schedule({"schedule": "ve", "sigma_min": 0.02, "sigma_max": 30.0})
    assert isinstance(s, VE) and s.sigma_max == 30.0


# ---------------------------------------------------------------- likelihood
@pytest.mark.parametrize("name", ["bimodal1d", "gmm", "gaussian"])
def test_ode_likelihood_equals_the_exact_log_density(name):
    """log p_1(x_1) + int div v = log p_delta(x) to the solver's tolerance (rtol 1e-8): the error
    is far below the gap to log p_0 (the early-stopping effect, which the check must resolve)."""
    from difflab.maths.likelihood import ode_log_likelihood

    t = load_target(name)[1]
    x = t.sample(_rng(20), 200)
    sch = VPLinear()
    a, s = (float(v) for v in alpha_sigma(sch, 1.0))
    out = ode_log_likelihood(t, sch, x, 1e-3, (a * t.mean, a * a * t.cov + s * s * np.eye(t.dim)))
    err = np.abs(out["loglik_ode"] - out["exact_log_p_delta"]).max()
    assert err < 1e-6
    assert np.abs(out["exact_log_p0"] - out["exact_log_p_delta"]).mean() > 100 * err


def test_likelihood_through_the_cli_with_points(tmp_path):
    from typer.testing import CliRunner

    from difflab.cli.app import app
    from difflab.run.io import read_run

    pts = tmp_path / "pts.npy"
    np.save(pts, np.array([[-3.0], [0.0], [2.5]]))
    out = tmp_path / "l.h5"
    r = CliRunner().invoke(app, ["sample", "pflow", "-t", "bimodal1d", "-n", "100", "--steps", "10", "--likelihood",
                                 "--points", str(pts), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(out)
    assert rec.summary["likelihood_max_err"] < 1e-5 and rec.summary["likelihood_nfe"] > 0
    import h5py

    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["likelihood/points"][()], np.load(pts))
        np.testing.assert_allclose(f["likelihood/exact_log_p0"][()], BIMODAL.log_prob(np.load(pts)), rtol=1e-12)


def test_timestep_spacings_follow_diffusers():
    """diffusers' DDIMScheduler(num_train_timesteps=1000).set_timesteps(10) gives
    trailing [999, 899, ..., 99], leading [900, 800, ..., 0], linspace [999, 888, ..., 0]
    (0-based); difflab's indices are those + 1, then the clean end 0."""
    from difflab.maths.schedules import ddpm_indices as _indices

    assert _indices("trailing", 10, 0).tolist() == [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert _indices("leading", 10, 0).tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1, 0]
    assert _indices("linspace", 10, 0).tolist() == [1000, 889, 778, 667, 556, 445, 334, 223, 112, 1, 0]


def test_leading_spacing_starts_below_t1_and_costs_accuracy():
    """leading starts at index 901 (t = 0.901): the prior there is off and the exact KL is worse."""
    kls = {}
    for spacing in ("trailing", "leading"):
        params = {"steps": 10, "init": "prior", **SAMPLERS["ddpm"].resolve_params({"timestep_spacing": spacing,
                                                                            "prior": "standard"}, 10)}
        s = SAMPLERS["ddpm"].build(G3, params)
        m, c, _ = exact.propagate(s, np.zeros(3), np.eye(3), s.n_steps)
        kls[spacing] = exact.gaussian_kl(m, c, G3.mean, G3.cov)
    assert kls["leading"] > kls["trailing"], kls
