"""Each metric estimator against a case with a known answer.

Where an estimator is random, its tolerance comes from R independent replications:
|mean of R estimates - truth| < 4 sd / sqrt(R) (false-failure rate 6e-5 per check).
"""

import numpy as np
import pytest
from scipy import linalg, stats

from difflab.maths import metrics
from difflab.targets.files import load_target


def _rng(seed):
    return np.random.Generator(np.random.SFC64(seed))


def test_gaussian_w2_closed_forms():
    # 1-D: W2 = sqrt((m1 - m2)^2 + (s1 - s2)^2)
    assert metrics.gaussian_w2([1.0], [[4.0]], [-1.0], [[1.0]]) == pytest.approx(np.sqrt(4 + 1), rel=1e-12)
    # commuting (diagonal) covariances: sum of (sqrt a - sqrt b)^2
    a, b = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert metrics.gaussian_w2([0, 0], a, [0, 0], b) == pytest.approx(np.sqrt(1 + 4), rel=1e-12)
    # general: against the textbook formula with scipy's sqrtm
    rng = np.random.default_rng(0)
    A, B = (lambda q: q @ q.T + np.eye(3))(rng.standard_normal((3, 3))), (lambda q: q @ q.T)(rng.standard_normal((3, 3)))
    rb = linalg.sqrtm(B).real
    expect = np.sqrt(np.trace(A + B - 2 * linalg.sqrtm(rb @ A @ rb).real))
    assert metrics.gaussian_w2(np.zeros(3), A, np.zeros(3), B) == pytest.approx(expect, rel=1e-8)
    assert metrics.gaussian_w2(np.ones(3), A, np.ones(3), A) == pytest.approx(0.0, abs=1e-7)


def test_sliced_w2_of_a_shift_is_exact():
    """y = x + delta: every projected pair of sorted samples differs by theta . delta exactly,
    so SW2 = |delta| sqrt(mean theta_1^2) to round-off."""
    x = _rng(1).standard_normal((5000, 3))
    delta = np.array([0.7, 0.0, 0.0])
    th = metrics.random_directions(_rng(2), 200, 3)
    assert metrics.sliced_w2(x + delta, x, th) == pytest.approx(0.7 * np.sqrt(np.mean(th[0] ** 2)), rel=1e-12)
    # unequal sizes go through the quantile grid; for identical samples repeated the distance stays ~0
    assert metrics.sliced_w2(np.repeat(x, 2, axis=0), x, th) < 0.02


def test_sliced_w2_of_identical_laws_shrinks_like_one_over_sqrt_n():
    th = metrics.random_directions(_rng(3), 64, 2)
    vals = [metrics.sliced_w2(_rng(10 + k).standard_normal((n, 2)), _rng(20 + k).standard_normal((n, 2)), th)
            for k, n in enumerate((1000, 16000))]
    assert vals[1] < vals[0] / 2  # sqrt(16) = 4 in expectation; 2 leaves room for noise


def _gauss_kernel_mean(m1, s1, m2, s2, ell, d):
    """E exp(-|X - Y|^2 / (2 l^2)) for X ~ N(m1, s1^2 I), Y ~ N(m2, s2^2 I) independent."""
    v = ell**2 + s1**2 + s2**2
    return (ell**2 / v) ** (d / 2) * np.exp(-np.sum((np.asarray(m1) - m2) ** 2) / (2 * v))


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_mmd2_is_unbiased_for_its_closed_form(shift):
    d, ell, n, R = 2, 1.0, 400, 40
    mx, my = np.zeros(d), np.array([shift, 0.0])
    truth = (_gauss_kernel_mean(mx, 1, mx, 1, ell, d) + _gauss_kernel_mean(my, 1, my, 1, ell, d)
             - 2 * _gauss_kernel_mean(mx, 1, my, 1, ell, d))
    est = np.array([metrics.mmd2(_rng(100 + r).standard_normal((n, d)) + mx,
                                 _rng(200 + r).standard_normal((n, d)) + my, ell) for r in range(R)])
    assert abs(est.mean() - truth) < 4 * est.std(ddof=1) / np.sqrt(R)
    if shift:
        assert est.mean() > 8 * est.std(ddof=1) / np.sqrt(R)  # negative control: clearly non-zero


def test_energy_distance_closed_form_1d():
    """X ~ N(0, 1), Y ~ N(mu, 1): E|X - Y| is the folded-normal mean of N(-mu, 2); E|X - X'| = 2 / sqrt(pi)."""
    mu, n, R = 0.8, 500, 30
    s = np.sqrt(2.0)
    e_xy = s * np.sqrt(2 / np.pi) * np.exp(-mu**2 / (2 * s**2)) + mu * (1 - 2 * stats.norm.cdf(-mu / s))
    truth = 2 * e_xy - 2 * (2 / np.sqrt(np.pi))
    est = np.array([metrics.energy_distance(_rng(300 + r).standard_normal((n, 1)),
                                            _rng(400 + r).standard_normal((n, 1)) + mu) for r in range(R)])
    assert abs(est.mean() - truth) < 4 * est.std(ddof=1) / np.sqrt(R)


def test_mode_tv_exact_draws_and_single_mode():
    t = load_target("gmm")[1]
    n = 20_000
    x = t.sample(_rng(5), n)
    r = t.posterior_weights(x)
    tol = 0.5 * np.sum(4 * r.std(0) / np.sqrt(n))
    assert metrics.mode_tv(x, t) < tol
    # all mass in component 0: every other occupancy is below 1/8, so TV = occ_0 - 1/8 exactly,
    # and occ_0 is near 1 (neighbours are 6 std apart)
    one = t.means[0] + 0.5 * _rng(6).standard_normal((n, 2))
    occ0 = t.posterior_weights(one)[:, 0].mean()
    assert occ0 > 0.99
    assert metrics.mode_tv(one, t) == pytest.approx(occ0 - 1 / 8, rel=1e-12)


def test_rhat_and_ess_on_iid_chains():
    draws = _rng(7).standard_normal((400, 50, 3))
    rhat = metrics.split_rhat(draws)
    assert np.all(np.abs(rhat - 1) < 0.01)
    ess = metrics.ess(draws)
    assert np.all(np.abs(ess / (400 * 50) - 1) < 0.15)


def test_ess_of_an_ar1_process():
    """AR(1) with coefficient rho: ESS = N (1 - rho) / (1 + rho)."""
    rho, T, m = 0.8, 2000, 40
    rng = _rng(8)
    x = np.empty((T, m, 1))
    x[0] = rng.standard_normal((m, 1))
    eps = rng.standard_normal((T, m, 1)) * np.sqrt(1 - rho**2)
    for t in range(1, T):
        x[t] = rho * x[t - 1] + eps[t]
    expect = T * m * (1 - rho) / (1 + rho)
    assert abs(metrics.ess(x)[0] / expect - 1) < 0.15


def test_rhat_flags_chains_that_disagree():
    """Negative control: chains stuck at different means give R-hat far above 1."""
    draws = _rng(9).standard_normal((200, 8, 1)) + np.arange(8)[None, :, None]
    assert metrics.split_rhat(draws)[0] > 1.5


def test_metric_suite_on_exact_draws_sits_at_its_floor():
    """Exact draws: every metric is at Monte Carlo level, far below a clearly wrong sample's."""
    t = load_target("gmm")[1]
    suite = metrics.MetricSuite(t, _rng(11), n_reference=5000)
    good = suite.final(t.sample(_rng(12), 5000))
    bad = suite.final(_rng(13).standard_normal((5000, 2)) + [3.0, 0.0])
    names = {"mean_error", "cov_rel_error", "w2_gaussian", "sliced_w2", "mode_tv", "mmd2", "energy", "w2_empirical",
             "ksd2"}
    assert set(good) == names
    for k in names - {"w2_empirical"}:
        assert abs(good[k]) < bad[k] / 5, k
    assert good["w2_empirical"] < bad["w2_empirical"] / 2  # a biased estimator: its floor is not 0


@pytest.mark.parametrize("T, m, phi", [(100, 40, 0.9), (101, 8, 0.5), (400, 4, 0.3), (9, 5, 0.1), (5, 3, 0.0),
                                       (1000, 4, 0.99), (31, 10, -0.9)])
def test_ess_and_rhat_are_arvizs_to_round_off(T, m, phi):
    """An independent implementation: ArviZ's split R-hat and mean-ESS (Stan's estimator) on the same
    draws, over short and long, odd and even, positively and negatively correlated AR(1) chains."""
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(7)
    x = np.zeros((T, m, 2))
    for t in range(1, T):  # AR(1) recursion: sequential in t by definition
        x[t] = phi * x[t - 1] + rng.standard_normal((m, 2))
    for j in range(2):
        assert metrics.ess(x)[j] == pytest.approx(float(az.ess(x[:, :, j].T, method="mean")), rel=1e-12)
        assert metrics.split_rhat(x)[j] == pytest.approx(float(az.rhat(x[:, :, j].T, method="split")), rel=1e-12)


@pytest.mark.parametrize("T, m, phi", [(100, 40, 0.9), (101, 8, 0.5), (400, 4, 0.3), (9, 5, 0.1), (5, 3, 0.0),
                                       (1000, 4, 0.99), (31, 10, -0.9)])
def test_rank_normalised_diagnostics_are_arvizs_to_round_off(T, m, phi):
    """Rank-normalised R-hat, bulk-ESS, tail-ESS and the MCSE of the mean against ArviZ's defaults
    (``rhat``, ``ess(method="bulk" / "tail")``, ``mcse``) on the same draws; the second coordinate
    rounded to one decimal, so that ranks tie."""
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(7)
    x = np.zeros((T, m, 2))
    for t in range(1, T):  # AR(1) recursion: sequential in t by definition
        x[t] = phi * x[t - 1] + rng.standard_normal((m, 2))
    x[:, :, 1] = np.round(x[:, :, 1], 1)
    for j in range(2):
        chains = x[:, :, j].T
        assert metrics.r_hat(x)[j] == pytest.approx(float(az.rhat(chains)), rel=1e-12)
        assert metrics.ess_bulk(x)[j] == pytest.approx(float(az.ess(chains, method="bulk")), rel=1e-12)
        assert metrics.ess_tail(x)[j] == pytest.approx(float(az.ess(chains, method="tail")), rel=1e-12)
        assert metrics.mcse_mean(x)[j] == pytest.approx(float(az.mcse(chains, method="mean")), rel=1e-12)


def test_rank_normalised_rhat_flags_what_split_rhat_misses():
    """Chains with equal means but different scales: split R-hat stays near 1, the rank-normalised
    R-hat (its folded, tail part) flags them (Vehtari et al. 2021, their motivating case)."""
    rng = _rng(21)
    draws = rng.standard_normal((500, 4, 1)) * np.array([1.0, 1.0, 1.0, 4.0])[None, :, None]
    assert metrics.split_rhat(draws)[0] < 1.01
    assert metrics.r_hat(draws)[0] > 1.05


def test_pairwise_distances_match_scipy_cdist():
    """The GEMM form of squared distances equals scipy's cdist to round-off (relative to the squared
    norms), with an exact zero diagonal against itself; mmd2 and energy equal their cdist forms."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((300, 4)) * 2 + 3, rng.standard_normal((200, 4))
    scale = max((x**2).sum(1).max(), (y**2).sum(1).max())
    assert np.abs(metrics.sq_distances(x, y) - cdist(x, y, "sqeuclidean")).max() < 1e-13 * scale
    dxx = metrics.sq_distances(x)
    assert np.all(np.diag(dxx) == 0) and np.abs(dxx - cdist(x, x, "sqeuclidean")).max() < 1e-13 * scale
    g = -0.5 / 1.7**2
    kxx, kyy, kxy = (np.exp(g * cdist(a, b, "sqeuclidean")) for a, b in ((x, x), (y, y), (x, y)))
    ref = (kxx.sum() - 300) / (300 * 299) + (kyy.sum() - 200) / (200 * 199) - 2 * kxy.mean()
    assert metrics.mmd2(x, y, 1.7) == pytest.approx(ref, rel=1e-10)
    ref = 2 * cdist(x, y).mean() - cdist(x, x).sum() / (300 * 299) - cdist(y, y).sum() / (200 * 199)
    assert metrics.energy_distance(x, y) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("n", [50, 10_000, 12_000])
def test_suite_sliced_w2_reuses_the_reference_exactly(n):
    """The suite's cached reference projections give bit for bit the plain sliced_w2 (fewer, equal
    and more particles than reference draws; more are thinned to 10,000 first)."""
    from difflab.targets.files import load_target

    _, t = load_target("gmm")
    suite = metrics.MetricSuite(t, np.random.default_rng(0))
    x = t.sample(np.random.default_rng(1), n)
    for _ in range(2):  # the second call uses the cached quantiles
        got = suite.series(x)["sliced_w2"]
        assert got == metrics.sliced_w2(suite._thin(x, suite.max_points), suite.reference, suite.directions)


def test_suite_final_pair_metrics_equal_the_plain_functions():
    """The suite caches the reference's own pair terms; its mmd2 and energy equal the functions'."""
    from difflab.targets.files import load_target

    _, t = load_target("gmm")
    suite = metrics.MetricSuite(t, np.random.default_rng(0), max_pairwise=500)
    rs = suite._thin(suite.reference, 500)
    for seed in (1, 2):
        x = t.sample(np.random.default_rng(seed), 800)
        out, xs = suite.final(x), suite._thin(x, 500)
        assert out["mmd2"] == pytest.approx(metrics.mmd2(xs, rs, suite.bandwidth), rel=1e-12, abs=1e-15)
        assert out["energy"] == pytest.approx(metrics.energy_distance(xs, rs), rel=1e-12, abs=1e-15)


def test_convergence_warnings_follow_the_thresholds():
    """R-hat > 1.01 warns when bulk-ESS >= 400; with fewer effective draws only R-hat > 1.1 does,
    and the ESS warning says why; a run that passes both, or has no diagnostics, gets none."""
    from difflab.run.checks import convergence_warnings

    assert convergence_warnings({"r_hat_max": 1.005, "ess_bulk_min": 900.0}) == []
    assert convergence_warnings({"exact_w2": 0.1}) == []
    one = convergence_warnings({"r_hat_max": 1.03, "ess_bulk_min": 900.0}, {"init": "normal", "adapt": False})
    assert len(one) == 1 and "r_hat_max 1.03 > 1.01" in one[0] and "--steps" in one[0]
    assert "--init target" in one[0] and "--adapt" in one[0]
    done = convergence_warnings({"r_hat_max": 1.03, "ess_bulk_min": 900.0}, {"init": "target", "adapt": True})
    assert "--init target" not in done[0] and "--adapt" not in done[0]  # not what the run already did
    few = convergence_warnings({"r_hat_max": 1.03, "ess_bulk_min": 120.0})
    assert len(few) == 1 and "ess_bulk_min 120 < 400" in few[0]
    both = convergence_warnings({"r_hat_max": 2.5, "ess_bulk_min": 120.0})
    assert len(both) == 2 and "> 1.1" in both[0]


@pytest.mark.slow
def test_a_stuck_mala_run_warns_and_a_mixed_one_does_not(tmp_path):
    """MALA on the ring from the default start does not cross modes in 1,000 steps: warnings on
    stderr (the run still exits 0); the same sampler on the Gaussian started at the target with
    5,000 steps and 100 frames passes both checks (negative control). Only the convergence
    warnings are asserted: an exact sampler's metrics cross the 5-SE floor mark on a few percent
    of seeds ("Reading a metric against its floor"), and this check is not about them."""
    from typer.testing import CliRunner

    from difflab.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["sample", "mala", "-q", "-o", str(tmp_path / "a.h5")])
    assert res.exit_code == 0 and "warning: r_hat_max" in res.stderr and "warning: ess_bulk_min" in res.stderr
    res = runner.invoke(app, ["sample", "mala", "-t", "gaussian", "--init", "target", "--steps", "5000",
                              "--step-size", "0.5", "-q", "-o", str(tmp_path / "b.h5")])
    assert res.exit_code == 0 and "warning: r_hat_max" not in res.stderr and "warning: ess_bulk_min" not in res.stderr, \
        res.stderr


# ---------------------------------------------------------------- median bandwidth, exact empirical W2, KSD
def test_mmd_bandwidth_is_the_reference_median_distance():
    t = load_target("gmm")[1]
    suite = metrics.MetricSuite(t, _rng(31), n_reference=600, max_pairwise=300)
    r = suite._thin(suite.reference, 300)
    d = [np.linalg.norm(r[i] - r[j]) for i in range(len(r)) for j in range(i + 1, len(r))]
    assert suite.bandwidth == pytest.approx(float(np.median(d)), rel=1e-9)  # the Gram-matrix distances' round-off


def test_mmd_sees_a_wrong_law_in_50_dimensions():
    """Draws of gmm50 scaled by 1.2 (2,000 of each): with the median bandwidth mmd2 is far above
    its exact-draw value; with the old fixed bandwidth (tr S / d)^(1/2) it was blind (negative
    control: below 1e-6 there)."""
    t = load_target("gmm50")[1]
    ref, good, bad = t.sample(_rng(32), 2000), t.sample(_rng(33), 2000), 1.2 * t.sample(_rng(34), 2000)
    l_med = metrics.median_distance(ref)
    assert metrics.mmd2(bad, ref, l_med) > 20 * abs(metrics.mmd2(good, ref, l_med))
    l_old = float(np.sqrt(np.trace(t.cov) / t.dim))
    assert abs(metrics.mmd2(bad, ref, l_old)) < 1e-6


def test_w2_empirical_is_the_optimal_matching():
    """Against every permutation (n = 6) and, in 1-D, against the sorted matching (n = 300)."""
    import itertools

    x, y = _rng(35).standard_normal((6, 3)), _rng(36).standard_normal((6, 3))
    best = min(np.mean([np.sum((x[i] - y[p[i]]) ** 2) for i in range(6)]) for p in itertools.permutations(range(6)))
    assert metrics.w2_empirical(x, y) == pytest.approx(np.sqrt(best), rel=1e-12)
    a, b = _rng(37).standard_normal((300, 1)), 1.5 + _rng(38).standard_normal((300, 1))
    assert metrics.w2_empirical(a, b) == pytest.approx(np.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2)),
                                                       rel=1e-12)


def _stein_pair(x, y, sx, sy):
    """The IMQ Stein kernel of one pair by central differences of k (an independent computation)."""
    def k(a, b):
        return (1.0 + np.sum((a - b) ** 2)) ** -0.5

    d, h = len(x), 1e-4
    e = np.eye(d) * h
    gx = np.array([(k(x + e[i], y) - k(x - e[i], y)) / (2 * h) for i in range(d)])
    gy = np.array([(k(x, y + e[i]) - k(x, y - e[i])) / (2 * h) for i in range(d)])
    tr = sum((k(x + e[i], y + e[i]) - k(x + e[i], y - e[i]) - k(x - e[i], y + e[i]) + k(x - e[i], y - e[i]))
             / (4 * h * h) for i in range(d))
    return sx @ sy * k(x, y) + sx @ gy + sy @ gx + tr


def test_stein_kernel_against_finite_differences_and_a_double_loop():
    t = load_target("gaussian")[1]
    x = t.sample(_rng(39), 25) * 1.3
    s = t.score_t(np.ascontiguousarray(x.T), 1.0, 0.0).T
    kp = metrics.stein_kernel(x, np.ascontiguousarray(s))
    for i, j in ((0, 1), (3, 17), (24, 5)):
        assert kp[i, j] == pytest.approx(_stein_pair(x[i], x[j], s[i], s[j]), rel=1e-6)
    naive = np.mean([_stein_pair(x[i], x[j], s[i], s[j]) for i in range(25) for j in range(25) if i != j])
    assert metrics.ksd2(x, np.ascontiguousarray(s)) == pytest.approx(naive, rel=1e-6)


def test_stein_kernel_has_mean_zero_under_the_target():
    """E_{x ~ p} k_p(x, y) = 0 for a fixed y (Stein's identity): 100,000 exact draws of the 2-D
    Gaussian, within 4.5 standard errors; for draws of a shifted law it is far from 0 (negative control)."""
    t = load_target("gaussian")[1]
    y = np.array([[0.7, -0.4]])
    sy = t.score_t(np.ascontiguousarray(y.T), 1.0, 0.0).T
    for shift, expect_zero in ((0.0, True), (1.0, False)):
        x = t.sample(_rng(40), 100_000) + shift
        sx = t.score_t(np.ascontiguousarray(x.T), 1.0, 0.0).T
        r = x - y
        u = 1.0 + (r * r).sum(1)
        vals = ((sx @ sy.T)[:, 0] * u**-0.5 + (sy @ r.T)[0] * -u**-1.5 + (sx * r).sum(1) * u**-1.5
                + (2 * u**-1.5 - 3 * u**-2.5 * (r * r).sum(1)))  # the same kernel, row by row, with d = 2
        z = vals.mean() / (vals.std(ddof=1) / np.sqrt(len(vals)))
        assert (abs(z) < 4.5) == expect_zero, z


def test_ksd_and_empirical_w2_separate_a_wrong_sample_from_exact_draws():
    """On the ring (1,000 points): exact draws sit near ksd2 = 0 and at the empirical W2 floor
    (about 0.7 with 500 points of each); a sample with each mode's spread doubled is far above in
    ksd2, and one shifted by 1.5 far above in w2_empirical."""
    t = load_target("gmm")[1]
    suite = metrics.MetricSuite(t, _rng(41))
    good = suite.final(t.sample(_rng(42), 1000))
    wide = t.means[t.sample_components(_rng(43), 1000)] + _rng(44).standard_normal((1000, 2))
    assert suite.final(wide)["ksd2"] > 20 * abs(good["ksd2"])
    shifted = t.sample(_rng(45), 1000) + [1.5, 0.0]
    assert suite.final(shifted)["w2_empirical"] > 1.5 * good["w2_empirical"]


def test_w2_empirical_of_a_diverging_sample_is_inf_not_a_crash():
    """Finite coordinates whose squared distances overflow (a run that diverged): inf."""
    x = np.array([[1e200, 0.0], [0.0, 1.0]])
    assert metrics.w2_empirical(x, np.zeros((2, 2))) == np.inf



@pytest.mark.parametrize("n, m", [(1001, 37), (37, 3000), (1, 5), (257, 128)])
def test_blocked_pair_terms_equal_the_full_matrices(n, m):
    """The pair terms summed in cache-sized blocks (the upper half for a sample against itself)
    equal the means over scipy's full distance matrices to round-off, for sizes that do not fill
    the last block. Negative control: a wrong bandwidth is caught."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(n + m)
    x, y, bw = rng.normal(size=(n, 3)), rng.normal(1.0, 2.0, size=(m, 3)), 1.7
    dxy = cdist(x, y)
    k, d = metrics._cross_terms(x, y, bw)
    assert k == pytest.approx(np.exp(-0.5 * dxy**2 / bw**2).mean(), rel=1e-12)
    assert d == pytest.approx(dxy.mean(), rel=1e-12)
    assert k != pytest.approx(np.exp(-0.5 * dxy**2 / 1.6**2).mean(), rel=1e-6)
    if n > 1:
        dxx = cdist(x, x)
        pairs = n * (n - 1)
        k, d = metrics._self_terms(x, bw)
        assert k == pytest.approx((np.exp(-0.5 * dxx**2 / bw**2).sum() - n) / pairs, rel=1e-12)
        assert d == pytest.approx(dxx.sum() / pairs, rel=1e-12)


def test_floor_sets_on_threads_are_the_sets_of_a_loop():
    """floor_stats spreads its sets over threads, drawing each in turn: the values equal, bit for
    bit, those of a plain loop over the same stream (and a metric that is not thread-safe would
    show here)."""
    _, t = load_target("gmm")
    suite = metrics.MetricSuite(t, np.random.default_rng(0))
    threaded = metrics.floor_stats(suite.final, t.sample, np.random.default_rng(5), 150, draws=12)
    rng = np.random.default_rng(5)
    values = [suite.final(t.sample(rng, 150)) for _ in range(12)]
    for key in values[0]:
        v = np.array([d[key] for d in values])
        assert threaded[f"floor_{key}"] == float(v.mean()) and threaded[f"floor_se_{key}"] == float(v.std(ddof=1))
    other = metrics.floor_stats(suite.final, t.sample, np.random.default_rng(6), 150, draws=12)
    assert other != threaded  # negative control: another stream gives other floors


def test_a_suite_sharing_a_reference_measures_identically():
    """The reference kept in the process for the next run on a target gives the same metrics, bit
    for bit, as a suite that draws it afresh."""
    _, t = load_target("gmm")
    fresh = metrics.MetricSuite(t, np.random.default_rng(0))
    x = t.sample(np.random.default_rng(1), 300)
    want = fresh.final(x)
    again = metrics.MetricSuite(t, np.random.default_rng(0))
    shared = metrics.MetricSuite.from_reference(t, again.reference_parts())
    assert shared.final(x) == want and shared.series(x[:100]) == fresh.series(x[:100])
    with pytest.raises(ValueError):  # the shared arrays are read-only
        shared.reference[0, 0] = 1.0
