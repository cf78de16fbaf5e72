"""The optimised samplers against plain reference implementations, to round-off.

The references are written the textbook way, in the usual (n, d) layout, with nothing shared with
difflab but the target's parameters and the random streams: the mixture's log density by
scipy.stats.multivariate_normal and logsumexp, its score as sum_k r_k S_k^-1 (mu_k - x) by
numpy.linalg.solve, MALA with the Metropolis-Hastings rule log u < log a (difflab accepts on
u < min(1, a), the same event), and DDPM by Ho et al.'s posterior mean and variance in alpha-bar
form (difflab's step is an affine map with combined coefficients). Each run goes through the driver
on 2 threads with particle chunks (the optimised path: one BLAS thread, diagonal or stacked-GEMM
evaluation), the reference steps each chunk on the chunk's documented stream. Targets: the ring
(the diagonal hot path) and the 50-D mixture (the general stacked-GEMM path).
"""

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from difflab.run import driver
from difflab.samplers import SAMPLERS
from difflab.targets.files import load_target

RING = load_target("gmm")[1]
RAND50 = load_target("gmm50")[1]
N = 2 * driver.MIN_CHUNK  # the smallest chunked run: two chunks


def _build(name, target, steps, **opts):
    spec = SAMPLERS[name]
    return spec.build(target, {"steps": steps, **spec.resolve_params(opts, steps)})


def _chunk_streams(seed, n):
    ss = np.random.SeedSequence(seed)
    return [(a, b, np.random.Generator(np.random.SFC64(np.random.SeedSequence(ss.entropy, spawn_key=(c,)))))
            for c, (a, b) in enumerate(driver.chunk_bounds(n))]


def _noised(target, alpha=1.0, sigma=0.0):
    covs = alpha**2 * target.covs + sigma**2 * np.eye(target.dim)
    return target.weights, alpha * target.means, covs


def ref_log_prob(target, x, alpha=1.0, sigma=0.0):
    w, means, covs = _noised(target, alpha, sigma)
    comp = np.stack([stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs)], axis=1)
    return logsumexp(comp + np.log(w), axis=1)


def ref_score(target, x, alpha=1.0, sigma=0.0):
    w, means, covs = _noised(target, alpha, sigma)
    comp = np.stack([stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs)], axis=1)
    logr = comp + np.log(w)
    r = np.exp(logr - logsumexp(logr, axis=1, keepdims=True))
    return sum(r[:, [k]] * np.linalg.solve(c, (m - x).T).T for k, (m, c) in enumerate(zip(means, covs)))


def ref_mala(target, x, h, rng, steps):
    for _ in range(steps):
        xi = rng.standard_normal((x.shape[1], x.shape[0])).T  # difflab draws (d, n)
        u = rng.random(x.shape[0])
        prop = x + h * ref_score(target, x) + np.sqrt(2 * h) * xi

        def log_q(to, frm):
            return -np.sum((to - frm - h * ref_score(target, frm)) ** 2, axis=1) / (4 * h)

        log_a = ref_log_prob(target, prop) + log_q(x, prop) - ref_log_prob(target, x) - log_q(prop, x)
        x = np.where((np.log(u) < log_a)[:, None], prop, x)
    return x


def ref_ula(target, x, h, rng, steps):
    for _ in range(steps):
        xi = rng.standard_normal((x.shape[1], x.shape[0])).T
        x = x + h * ref_score(target, x) + np.sqrt(2 * h) * xi
    return x


def ref_ddpm(target, x, alphas, sigmas, rng, final_denoise):
    """Ho et al. (2020) eqs. 6-7 with alpha-bar = alpha^2 (a VP grid): x0 by Tweedie, then the
    posterior q(x_s | x_t, x0) mean and variance beta-tilde; the last step (to sigma = 0, or the
    early-stop denoising) returns x0."""
    for k in range(len(alphas) - 1 + int(final_denoise)):
        a_t, s_t = alphas[k], sigmas[k]
        x0 = (x + s_t**2 * ref_score(target, x, a_t, s_t)) / a_t
        if k == len(alphas) - 1 or sigmas[k + 1] == 0.0:
            x = x0
            continue
        ab_t, ab_s = a_t**2, alphas[k + 1] ** 2
        beta = 1 - ab_t / ab_s  # the forward step's beta from s to t
        mean = (np.sqrt(ab_s) * beta / (1 - ab_t)) * x0 + (np.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)) * x
        var = (1 - ab_s) / (1 - ab_t) * beta
        x = mean + np.sqrt(var) * rng.standard_normal((x.shape[1], x.shape[0])).T
    return x


def _reference(name, target, s, x0, steps, seed):
    outs = []
    for a, b, rng in _chunk_streams(seed, len(x0)):
        if name == "mala":
            outs.append(ref_mala(target, x0[a:b], s.step_size, rng, steps))
        elif name == "ula":
            outs.append(ref_ula(target, x0[a:b], s.step_size, rng, steps))
        else:
            outs.append(ref_ddpm(target, x0[a:b], s.alphas, s.sigmas, rng, s.final_denoise))
    return np.concatenate(outs)


@pytest.mark.parametrize("target", [RING, RAND50], ids=["ring", "rand50"])
@pytest.mark.parametrize("name", ["ula", "mala"])
def test_langevin_equals_the_reference(name, target):
    steps = 5
    s = _build(name, target, steps, step_size=0.1)
    x0 = target.sample(np.random.default_rng(0), N)
    got = driver.run(s, x0, np.random.Generator(np.random.SFC64(7)), steps=steps, save_every=steps,
                     trajectory_particles=0, threads=2)
    want = _reference(name, target, s, x0, steps, 7)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got.samples, want, rtol=0, atol=1e-11 * scale)
    if name == "mala":  # both branches were taken, so the comparison is not vacuous
        assert 0.05 < got.per_step["accepted_fraction"].mean() < 0.95
        assert not np.array_equal(got.samples, x0)


@pytest.mark.parametrize("target", [RING, RAND50], ids=["ring", "rand50"])
def test_ddpm_equals_the_reference(target):
    s = _build("ddpm", target, 40, prior="standard")
    x0 = np.random.default_rng(0).standard_normal((N, target.dim))
    got = driver.run(s, x0, np.random.Generator(np.random.SFC64(7)), steps=s.n_steps, save_every=s.n_steps,
                     trajectory_particles=0, threads=2)
    want = _reference("ddpm", target, s, x0, s.n_steps, 7)
    np.testing.assert_allclose(got.samples, want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_the_reference_comparison_can_fail():
    """Negative control: a different seed, or a step size off by 1e-6, is caught at this tolerance."""
    s = _build("ula", RING, 3, step_size=0.1)
    x0 = RING.sample(np.random.default_rng(0), N)
    want = _reference("ula", RING, s, x0, 3, 7)
    other = driver.run(s, x0, np.random.Generator(np.random.SFC64(8)), steps=3, save_every=3, trajectory_particles=0)
    assert not np.allclose(other.samples, want, rtol=0, atol=1e-11 * np.abs(want).max())
    s2 = _build("ula", RING, 3, step_size=0.1 + 1e-6)
    near = driver.run(s2, x0, np.random.Generator(np.random.SFC64(7)), steps=3, save_every=3, trajectory_particles=0)
    assert not np.allclose(near.samples, want, rtol=0, atol=1e-11 * np.abs(want).max())


@pytest.mark.parametrize("name, opts", [("mala", {"step_size": 0.1}), ("ula", {"step_size": 0.1}),
                                        ("pflow", {"solver": "heun"}), ("ddpm", {"prior": "standard"})])
def test_high_dimension_same_samples_whatever_the_thread_count(name, opts):
    """In 50-D the chunks' GEMMs run on one BLAS thread whatever DIFFLAB_THREADS is: OpenBLAS's
    results depend on its own thread count in the last bit, so this is what keeps samples equal."""
    s = _build(name, RAND50, 4, **opts)
    x0 = RAND50.sample(np.random.default_rng(0), N)
    runs = [driver.run(s, x0, np.random.Generator(np.random.SFC64(3)), steps=s.n_steps or 4,
                       save_every=2, trajectory_particles=5, threads=th) for th in (1, 2, 3)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.samples, runs[0].samples)
        np.testing.assert_array_equal(r.trajectory, runs[0].trajectory)


def test_a_diverging_chunked_run_stops_with_its_last_finite_state():
    """Each chunk checks its own new state on its thread; one non-finite chunk stops the run. The
    overflow on the way is silenced in the chunk threads too (numpy's error state is per thread)."""
    import warnings

    s = _build("ula", RING, 200, step_size=50.0)
    x0 = RING.sample(np.random.default_rng(0), N)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = driver.run(s, x0, np.random.Generator(np.random.SFC64(3)), steps=200, save_every=1,
                         trajectory_particles=4, threads=2)
    assert res.status == driver.DIVERGED and 1 <= res.diverged_step <= 200
    assert res.steps_done == res.diverged_step - 1 and np.isfinite(res.samples).all()


@pytest.mark.parametrize("n", [500, N], ids=["one chunk", "chunked"])
@pytest.mark.parametrize("target", [RING, RAND50], ids=["ring", "rand50"])
def test_mala_rejects_overflowing_proposals_so_skipping_the_guard_is_safe(target, n):
    """MALA declares that a finite state stays finite, and the driver skips its non-finite guard for
    it. At h = 1e200 every proposal overflows (inf or nan coordinates, or |x|^2 = inf): each is
    rejected, the state stays the exact start and finite, the run completes. Control: ULA at the same
    step, which has no such property, is stopped by the guard within the three steps."""
    import warnings

    x0 = target.sample(np.random.default_rng(0), n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the overflow is the point; single-chunk runs warn outside the driver too
        res = driver.run(_build("mala", target, 3, step_size=1e200), x0, np.random.Generator(np.random.SFC64(1)),
                         steps=3, save_every=1, trajectory_particles=3, threads=2)
        ula = driver.run(_build("ula", target, 3, step_size=1e200), x0, np.random.Generator(np.random.SFC64(1)),
                         steps=3, save_every=1, trajectory_particles=3, threads=2)
    assert res.status == driver.COMPLETE and np.isfinite(res.samples).all()
    np.testing.assert_array_equal(res.samples, x0)
    assert np.all(res.per_step["accepted_fraction"] == 0.0)
    assert ula.status == driver.DIVERGED and ula.diverged_step <= 3
