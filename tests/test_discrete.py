"""Discrete targets and samplers: enumeration, forward process, reverse rates, exact laws."""

import itertools

import numpy as np
import pytest
from scipy import linalg, stats
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.errors import ConfigError
from difflab.maths.metrics import tv
from difflab.run.io import read_run
from difflab.samplers.discrete import (
    DiscreteDiffusion,
    Gibbs,
    Noise,
    Posterior,
    clean_part,
    noisy_states,
)
from difflab.targets import parse_target
from difflab.targets.files import load_target

runner = CliRunner()
NOISES = [("uniform", "geometric", 1e-3), ("absorbing", "linear", 0.0), ("absorbing", "geometric", 1e-3)]


def _target(name):
    return load_target(name)[1]


# ------------------------------------------------------------------ targets
def test_ising_weights_match_the_energy_formula():
    t = _target("ising6")  # chain of 6, J = 0.5, h = 0.2
    for x in itertools.product([0, 1], repeat=6):
        s = 2 * np.array(x) - 1
        energy = 0.5 * np.sum(s[:-1] * s[1:]) + 0.2 * s.sum()
        i = t.index(np.array([x]))[0]
        assert t.log_probs[i] - t.log_probs[0] == pytest.approx(energy - (0.5 * 5 - 0.2 * 6), abs=1e-12)


def test_grid_and_potts_graphs():
    from difflab.targets.discrete import graph_edges

    assert graph_edges("grid", 6, 2, 3) == [(0, 1), (0, 3), (1, 2), (1, 4), (2, 5), (3, 4), (4, 5)]
    assert len(graph_edges("complete", 5)) == 10 and graph_edges("ring", 4)[-1] == (0, 3)
    p = _target("potts")  # q = 3 on a ring of 6: all-equal states are the most likely, 3 of them
    top = np.argsort(p.probs)[-3:]
    assert {tuple(set(p.states[i])) for i in top} == {(0,), (1,), (2,)}


def test_exact_sampling_matches_the_pmf():
    """Chi-square goodness of fit, 64 states, n = 200,000; negative control: a wrong pmf fails."""
    t = _target("ising6")
    n = 200_000
    counts = np.bincount(t.index(t.sample(np.random.default_rng(1), n)), minlength=t.n_states)
    assert stats.chisquare(counts, n * t.probs).pvalue > 1e-3
    wrong = np.roll(t.probs, 1)
    assert stats.chisquare(counts, n * wrong).pvalue < 1e-12


def test_zero_probability_states_are_never_drawn_and_marginals_are_exact():
    t = _target("xor3")
    x = t.sample(np.random.default_rng(0), 50_000)
    assert (t.probs[t.index(x)] > 0).all()
    brute = np.zeros((2, 3))
    for s, p in zip(t.states, t.probs):
        brute[0, s[0]] += p
        brute[1, s[1]] += p
    np.testing.assert_allclose(t.marginals(), brute, atol=1e-15)
    np.testing.assert_allclose(t.pair_marginals()[0, 1].reshape(-1), t.probs, atol=1e-15)


@pytest.mark.parametrize("text,message", [
    ("kind: pmf\nalphabet: 3\ndim: 2\nprobs: [0.5, 0.5]", "probs: expected a list of alphabet^dim = 3^2 = 9"),
    ("kind: pmf\nalphabet: 2\ndim: 1\nprobs: [0.5, 0.6]", "probs: must sum to 1"),
    ("kind: pmf\nalphabet: 2\ndim: 1\nprobs: [1.5, -0.5]", "probs[1]: must be >= 0"),
    ("kind: pmf\nalphabet: 2\ndim: 1\nprobs: [0.5, 0.5]\nlog_weights: [0, 0]", "exactly one of 'probs' or 'log_weights'"),
    ("kind: ising\nn: 20\ncoupling: 1", "n: the state space has 2^20 = 1048576 states"),
    ("kind: ising\ngraph: grid\nrows: 2\ncols: 3\nn: 5\ncoupling: 1", "n: must equal rows x cols = 6"),
    ("kind: ising\nn: 4\ngraph: chian\ncoupling: 1", "graph: unknown graph (did you mean 'chain'?)"),
    ("kind: ising\nn: 4\nrows: 2\ncoupling: 1", "rows: only for graph: grid"),
    ("kind: potts\nn: 4\ncoupling: 1", "q: missing required key"),
    ("kind: ising\nn: 4\ncoupling: 1\nfeild: 0.1", "unknown key (did you mean 'field'?)"),
])
def test_discrete_yaml_errors_name_file_key_and_rule(text, message):
    with pytest.raises(ConfigError) as err:
        parse_target(text, "bad.yaml", "bad")
    assert str(err.value).startswith("bad.yaml: ") and message in str(err.value)


# ------------------------------------------------------------------ forward process
@pytest.mark.parametrize("kind,schedule,kmin", NOISES)
def test_forward_kernel_is_the_matrix_exponential_of_the_generator(kind, schedule, kmin):
    nz = Noise(kind, 3, schedule, kmin)
    for t in (0.1, 0.5, 0.9):
        tau, _ = __import__("scipy.integrate", fromlist=["quad"]).quad(nz.beta, 0.0, t)
        np.testing.assert_allclose(nz.kernel(nz.kappa(t)), linalg.expm(tau * nz.generator()), atol=1e-12)
    # semigroup: kernel(0 -> s) kernel(s -> t) = kernel(0 -> t)
    s, t = 0.3, 0.8
    np.testing.assert_allclose(nz.kernel(nz.kappa(s)) @ nz.kernel(nz.kappa(t) / nz.kappa(s)),
                               nz.kernel(nz.kappa(t)), atol=1e-14)


@pytest.mark.parametrize("kind,schedule,kmin", NOISES)
def test_noised_marginals_by_brute_force_and_the_forward_equation(kind, schedule, kmin):
    """p_t(y) = sum_x p_0(x) prod_i P_t(y_i | x_i), and d p_t / dt = beta(t) p_t sum_i Q_i."""
    tg = _target("xor3")
    nz = Noise(kind, tg.K, schedule, kmin)
    ys = noisy_states(nz, tg.dim)

    def p_at(t):
        return tg.noised_table(nz.kernel(nz.kappa(t))[: tg.K])

    t = 0.4
    lik = nz.kernel(nz.kappa(t))[: tg.K]
    brute = np.array([sum(p * np.prod(lik[x, y]) for x, p in zip(tg.states, tg.probs)) for y in ys])
    np.testing.assert_allclose(p_at(t), brute, atol=1e-15)
    q = nz.generator()
    eye = np.eye(nz.n_noisy)
    gen = sum(np.kron(np.kron(np.eye(nz.n_noisy**i), q), np.eye(nz.n_noisy ** (tg.dim - 1 - i)))
              for i in range(tg.dim))
    assert gen.shape == (len(ys), len(ys)) and eye.shape[0] == nz.n_noisy
    h = 1e-5
    dp = (p_at(t + h) - p_at(t - h)) / (2 * h)
    np.testing.assert_allclose(dp, nz.beta(t) * p_at(t) @ gen, atol=1e-8)


# ------------------------------------------------------------------ reverse rates and kernels
@pytest.mark.parametrize("kind,schedule,kmin", NOISES)
@pytest.mark.parametrize("t", [0.05, 0.5, 0.95])
def test_reverse_rates_against_brute_force_on_three_states(kind, schedule, kmin, t):
    """R(y -> y') = beta Q(y'_i -> y_i) p_t(y') / p_t(y) from the enumerated noised law."""
    tg = _target("xor3")  # alphabet 3, two coordinates, three zero-probability states
    nz = Noise(kind, tg.K, schedule, kmin)
    s = DiscreteDiffusion(tg, nz, "euler", 10)
    ys = noisy_states(nz, tg.dim)
    pt = tg.noised_table(nz.kernel(nz.kappa(t))[: tg.K])
    rates = s.rates(ys, t)
    q, kn = nz.generator(), nz.n_noisy
    checked = 0
    for yi, y in enumerate(ys):
        if pt[yi] == 0:
            continue
        for i, a in itertools.product(range(tg.dim), range(kn)):
            if a != y[i]:
                y2 = y.copy()
                y2[i] = a
                j = int(y2 @ (kn ** np.arange(tg.dim - 1, -1, -1)))
                assert rates[yi, i, a] == pytest.approx(nz.beta(t) * q[a, y[i]] * pt[j] / pt[yi], rel=1e-10, abs=1e-12)
                checked += 1
    assert checked >= 18


def test_exact_uniform_kernel_maps_p_t_to_p_s():
    """Bayes: sum_y p_t(y) p(x_s = x | x_t = y) = p_s(x), for every grid step."""
    tg = _target("ising6")
    s = DiscreteDiffusion(tg, Noise("uniform", 2, "geometric", 1e-3), "exact", 5)
    for k in range(5):
        np.testing.assert_allclose(s.law_step(s.noised_law(k), k), s.noised_law(k + 1), atol=1e-14)


def test_posterior_weights_by_brute_force():
    tg = _target("xor3")
    for kind, r in (("uniform", 0.3), ("absorbing", 0.3)):
        post = Posterior(tg, kind, r)
        nz = Noise(kind, tg.K, "linear", 0.0)
        ys = noisy_states(nz, tg.dim)
        lik = nz.kernel(r)[: tg.K]
        w = tg.probs[None, :] * np.array([[np.prod(lik[x, y]) for x in tg.states] for y in ys])
        ok = w.sum(axis=1) > 0
        np.testing.assert_allclose(post.weights(ys)[ok], w[ok] / w[ok].sum(axis=1, keepdims=True), atol=1e-14)


def test_posterior_draws_follow_the_posterior_weights():
    """Chi-square of 100,000 draws per noisy row against the enumerated weights (ising12: the
    two-half factorisation is exercised on 64 x 64 blocks); negative control: the prior fails."""
    tg = _target("ising12")
    post = Posterior(tg, "uniform", 0.4, tg.noised_table(Noise("uniform", 2, "geometric", 1e-3).kernel(0.7)))
    rng = np.random.default_rng(3)
    for y in tg.states[[0, 1234, 4095]]:
        n = 100_000
        idx = post.sample(rng, np.repeat(y[None], n, axis=0))
        w = post.weights(y[None])[0]
        keep = w * n > 5
        counts = np.bincount(idx, minlength=tg.n_states)
        pooled = np.append(counts[keep], counts[~keep].sum())
        expect = np.append(n * w[keep], n * w[~keep].sum())
        assert stats.chisquare(pooled, expect).pvalue > 1e-3
        assert stats.chisquare(pooled, np.append(n * tg.probs[keep], n * tg.probs[~keep].sum())).pvalue < 1e-12


# ------------------------------------------------------------------ exact laws
def _final_tv(sampler, q0=None):
    q = sampler.noise.prior_law(sampler.target.dim) if q0 is None else q0
    for k in range(sampler.n_steps):
        q = sampler.law_step(q, k)
    clean, masked = clean_part(q, sampler.target, sampler.noise.n_noisy)
    return tv(clean, sampler.target.probs) + 0.5 * masked


@pytest.mark.parametrize("kind,schedule,kmin", NOISES)
def test_exact_method_has_no_discretisation_error(kind, schedule, kmin):
    tg = _target("ising6")
    nz = Noise(kind, tg.K, schedule, kmin)
    exact = DiscreteDiffusion(tg, nz, "exact", 3)
    start = None if kind == "absorbing" else exact.noised_law(0)  # exact p_1: no prior mismatch
    assert _final_tv(exact, start) < 1e-13


@pytest.mark.parametrize("method", ["euler", "tau-leaping"])
@pytest.mark.parametrize("kind,schedule,kmin", NOISES)
def test_discretisation_error_is_first_order(method, kind, schedule, kmin):
    """Exact TV (no Monte Carlo) at K = 16 ... 128 steps: log-log slope about -1."""
    tg = _target("ising6")
    nz = Noise(kind, tg.K, schedule, kmin)
    ks = np.array([16, 32, 64, 128])
    errs = []
    for k in ks:
        s = DiscreteDiffusion(tg, nz, method, int(k))
        errs.append(_final_tv(s, None if kind == "absorbing" else s.noised_law(0)))
    slope = np.polyfit(np.log(ks), np.log(errs), 1)[0]
    assert -1.15 < slope < -0.85, (errs, slope)


def test_exact_law_matches_monte_carlo():
    """tau-leaping with 4 steps is visibly wrong; its exact law still matches 100,000 particles
    (chi-square against the exact law, not the target; negative control: the target fails)."""
    from difflab.run import driver

    tg = _target("ising6")
    nz = Noise("absorbing", 2, "linear", 0.0)
    s = DiscreteDiffusion(tg, nz, "tau-leaping", 4)
    n = 100_000
    res = driver.run(s, nz.prior_sample(None, n, tg.dim), np.random.default_rng(5), steps=4, save_every=4,
                     trajectory_particles=0)
    q = nz.prior_law(tg.dim)
    for k in range(4):
        q = s.law_step(q, k)
    law, masked = clean_part(q, tg, 3)
    assert masked < 1e-12
    counts = np.bincount(tg.index(res.samples), minlength=tg.n_states)
    assert stats.chisquare(counts, n * law / law.sum()).pvalue > 1e-3
    assert tv(law, tg.probs) > 0.02 and stats.chisquare(counts, n * tg.probs).pvalue < 1e-12


def test_simultaneous_unmasking_reaches_impossible_states_and_exact_does_not():
    """xor3 forbids three pairs: euler with 2 steps unmasks both coordinates at once and lands on
    them (exact_kl infinite); any-order unmasking never does."""
    tg = _target("xor3")
    nz = Noise("absorbing", 3, "linear", 0.0)
    q = nz.prior_law(2)
    coarse = DiscreteDiffusion(tg, nz, "euler", 2)
    for k in range(2):
        q = coarse.law_step(q, k)
    law, _ = clean_part(q, tg, 4)
    assert law[tg.probs == 0].sum() > 0.01
    assert _final_tv(DiscreteDiffusion(tg, nz, "exact", 2)) < 1e-14


def test_gibbs_keeps_the_target_and_converges():
    tg = _target("ising12")
    g = Gibbs(tg)
    np.testing.assert_allclose(g.law_step(tg.probs, 0), tg.probs, atol=1e-15)
    q = np.full(tg.n_states, 1.0 / tg.n_states)
    errs = []
    for k in range(30):
        q = g.law_step(q, k)
        errs.append(tv(q, tg.probs))
    assert errs[-1] < 1e-4 and all(b < a for a, b in zip(errs, errs[1:]))
    rate = np.array(errs[-10:]) / np.array(errs[-11:-1])
    assert 0.5 < rate.min() <= rate.max() < 0.9  # geometric convergence (about 0.72 per sweep here)


# ------------------------------------------------------------------ the CLI, statistically
def _iid_tv_level(tg, n, rng, reps=300):
    """Mean and sd of the empirical TV of n exact i.i.d. draws."""
    counts = rng.multinomial(n, tg.probs, size=reps)
    t = 0.5 * np.abs(counts / n - tg.probs).sum(axis=1)
    return t.mean(), t.std()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--method", "exact"], ["--method", "exact", "--noise", "uniform", "--steps", "20"],
                                  ["--method", "tau-leaping", "--steps", "5"]])
def test_discrete_cli_tv_within_the_iid_level(tmp_path, args):
    """n = 20,000 on the 6-spin chain: the run's empirical TV must be below the mean + 4 sd of
    the TV of 20,000 exact i.i.d. draws (300 replicates). tau-leaping with 5 steps (exact TV
    0.1) is the negative control: it must fail the same check."""
    out = tmp_path / "d.h5"
    r = runner.invoke(app, ["sample", "discrete", "-t", "ising6", "-n", "20000", *args, "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(out, samples=True)
    tg = _target("ising6")
    mean, sd = _iid_tv_level(tg, 20_000, np.random.default_rng(7))
    assert set(np.unique(rec.samples)) == {-1.0, 1.0}  # Ising samples are spins
    bound = mean + 4 * sd
    if "tau-leaping" in args:
        assert rec.summary["exact_tv"] > 0.05 and rec.summary["tv"] > bound
    else:
        assert rec.summary["exact_tv"] < 1e-6 and rec.summary["tv"] < bound


@pytest.mark.slow
def test_gibbs_cli_reaches_the_target(tmp_path):
    out = tmp_path / "g.h5"
    r = runner.invoke(app, ["sample", "gibbs", "-t", "ising6", "-n", "20000", "--steps", "30", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(out, series=True)
    mean, sd = _iid_tv_level(_target("ising6"), 20_000, np.random.default_rng(8))
    assert rec.summary["tv"] < mean + 4 * sd and rec.summary["exact_tv"] < 1e-6
    assert rec.metrics["exact_tv"][0] > 0.3 and rec.metrics["tv"][0] > 0.3  # from uniform states
    assert rec.summary["ess_min"] > 100


def test_discrete_runs_are_reproducible_and_write_labels(tmp_path):
    outs = []
    for name in ("a.h5", "b.h5"):
        out = tmp_path / name
        r = runner.invoke(app, ["sample", "discrete", "-t", "xor3", "-n", "300", "--steps", "10", "-o", str(out), "-q"])
        assert r.exit_code == 0, r.output
        outs.append(read_run(out, samples=True))
    np.testing.assert_array_equal(outs[0].samples, outs[1].samples)
    assert set(np.unique(outs[0].samples)) <= {0.0, 1.0, 2.0}
    import h5py

    with h5py.File(tmp_path / "a.h5") as f:
        frames = f["trajectory/positions"][()]
    assert np.isnan(frames[0]).all() and not np.isnan(frames[-1]).any()  # all masked at the start


@pytest.mark.parametrize("args,message", [
    (["sample", "discrete", "-t", "gmm"], "gmm.yaml (shipped) is a continuous target (kind: gmm); discrete runs on discrete targets"),
    (["sample", "ula", "-t", "ising6"], "ising6.yaml (shipped) is a discrete target (kind: ising); ula runs on continuous targets"),
    (["sample", "discrete", "--noise", "uniform", "--schedule", "linear", "--kappa-min", "0"], "--kappa-min: uniform noise with kappa(1) = 0"),
    (["sample", "discrete", "--schedule", "geometric", "--kappa-min", "0"], "--kappa-min: the geometric schedule"),
    (["sample", "discrete", "--method", "leap"], "--method: expected one of exact, tau-leaping, euler"),
    (["sample", "gibbs", "--init", "prior"], "--init: expected one of uniform, target"),
])
def test_discrete_bad_input_is_one_line_exit_2(tmp_path, args, message):
    r = runner.invoke(app, [*args, "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and message in r.output and not (tmp_path / "x.h5").exists(), r.output


def test_interrupted_absorbing_run_leaves_a_valid_file(tmp_path, monkeypatch):
    """Stopped half-way, states are partly masked: the file says interrupted, masks are NaN, the
    exact law counts the masked mass in exact_tv, and no Monte Carlo metric is made up."""
    calls = {"n": 0}
    real = DiscreteDiffusion.step

    def step(self, rng, state):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(self, rng, state)

    monkeypatch.setattr(DiscreteDiffusion, "step", step)
    out = tmp_path / "i.h5"
    r = runner.invoke(app, ["sample", "discrete", "-t", "ising6", "-n", "200", "--steps", "10", "-o", str(out)])
    assert r.exit_code == 130, r.output
    rec = read_run(out, samples=True)
    assert rec.attrs["status"] == "interrupted" and rec.attrs["steps_done"] == 5
    assert np.isnan(rec.samples).any() and "tv" not in rec.summary
    assert 0.25 < rec.summary["exact_tv"] < 1.0 and rec.summary["exact_kl"] == float("inf")


@pytest.mark.parametrize("args", [["--method", "exact"], ["--noise", "uniform", "--method", "exact", "--steps", "5"],
                                  ["--method", "euler", "--steps", "50"]])
def test_one_dimensional_pmf(tmp_path, args):
    """d = 1 (one half of the posterior split is empty): the exact methods are exact."""
    f = tmp_path / "p.yaml"
    f.write_text("kind: pmf\nalphabet: 4\ndim: 1\nlog_weights: [0, 1, 2, 0.5]\n")
    r = runner.invoke(app, ["sample", "discrete", "-t", str(f), "-n", "500", *args, "-o", str(tmp_path / "o.h5"), "-q"])
    assert r.exit_code == 0, r.output
    rec = read_run(tmp_path / "o.h5", samples=True)
    assert rec.samples.shape == (500, 1) and set(np.unique(rec.samples)) <= {0.0, 1.0, 2.0, 3.0}
    assert rec.summary["exact_tv"] < (1e-6 if "exact" in args else 0.05)


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["absorbing", "uniform"])
@pytest.mark.parametrize("name", ["ising6", "potts", "xor3"])
def test_default_steps_keep_the_exact_error_under_half_the_monte_carlo_floor(name, noise):
    """The rule behind each noise's default steps: the default run's exact_tv is at most half its
    smallest Monte Carlo floor (floor_marginal_tv at the default 1,000 particles). Negative control:
    uniform noise at the old default of 100 steps breaks the rule."""
    import difflab
    from difflab.maths import metrics

    t = _target(name)
    floor = metrics.DiscreteMetricSuite(t).final(t.sample(np.random.default_rng(0), 1000))["marginal_tv"]
    run = difflab.sample("discrete", target=name, particles=10, noise=noise)
    assert run.params["steps"] == {"absorbing": 100, "uniform": 800}[noise]
    assert run.summary["exact_tv"] <= 0.5 * floor, (run.summary["exact_tv"], floor)
    if noise == "uniform":
        old = difflab.sample("discrete", target=name, particles=10, noise=noise, steps=100)
        assert old.summary["exact_tv"] > 0.5 * floor


@pytest.mark.parametrize("noise, method", [("absorbing", "tau-leaping"), ("uniform", "euler"), ("absorbing", "exact")])
def test_both_kl_directions_obey_pinsker(noise, method):
    """exact_kl = KL(out || p) and exact_kl_target_out = KL(p || out) are both >= 2 exact_tv^2
    (Pinsker), on xor3 where simultaneous unmasking makes KL(out || p) infinite but not the other."""
    import difflab

    s = difflab.sample("discrete", target="xor3", particles=10, steps=20, noise=noise, method=method).summary
    for key in ("exact_kl", "exact_kl_target_out"):
        assert s[key] >= 2 * s["exact_tv"] ** 2 * (1 - 1e-12), (key, s)
    assert np.isfinite(s["exact_kl_target_out"])
    if method == "tau-leaping":
        assert s["exact_kl"] == float("inf")
