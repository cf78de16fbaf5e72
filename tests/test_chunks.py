"""Particle chunks on a thread pool: the same samples whatever the thread count, equal to a plain
sequential reference, independent streams per chunk, the target still sampled, memory O(state)."""

import numpy as np
import pytest

from difflab.contracts import Capabilities
from difflab.run import driver
from difflab.samplers import SAMPLERS
from difflab.targets.files import load_target

RING = load_target("gmm")[1]
GAUSS = load_target("gaussian")[1]


def _build(name, target, steps, **opts):
    spec = SAMPLERS[name]
    params = {"steps": steps, **spec.resolve_params(opts, steps)}
    return spec.build(target, params)


def _rng(seed=3):
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed)))


@pytest.mark.parametrize("n", [1, 2047, 2048, 4096, 10_000, 1_000_001])
def test_chunks_depend_on_n_only_and_tile_the_particles(n):
    b = driver.chunk_bounds(n)
    assert b[0][0] == 0 and b[-1][1] == n and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
    if n < 2 * driver.MIN_CHUNK:
        assert len(b) == 1
    else:
        sizes = [y - x for x, y in b]
        assert len(b) % 2 == 0 and max(sizes) <= driver.CHUNK and max(sizes) - min(sizes) <= 1


CASES = [("ula", RING, {"step_size": 0.1}), ("mala", RING, {"step_size": 0.1}), ("ddpm", RING, {}),
         ("pflow", RING, {"solver": "heun"}), ("sde", RING, {}), ("localization", GAUSS, {})]


@pytest.mark.parametrize("name, target, opts", CASES)
def test_same_samples_whatever_the_thread_count(name, target, opts):
    s = _build(name, target, 30, **opts)
    x0 = target.sample(np.random.default_rng(0), 5000)
    runs = [driver.run(s, x0, _rng(), steps=s.n_steps or 30, save_every=10, trajectory_particles=20,
                       threads=th) for th in (1, 2, 3)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.samples, runs[0].samples)
        np.testing.assert_array_equal(r.trajectory, runs[0].trajectory)
        for k, v in runs[0].per_step.items():
            np.testing.assert_array_equal(r.per_step[k], v)


def test_chunked_run_equals_a_plain_sequential_reference():
    """The driver's chunked MALA equals stepping each chunk by hand with its documented stream
    (SeedSequence(entropy, spawn_key + (c,))), and its acceptance rate is the particle-weighted mean."""
    s = _build("mala", RING, 20, step_size=0.3)
    n = 5000
    x0 = RING.sample(np.random.default_rng(0), n)
    got = driver.run(s, x0, _rng(), steps=20, save_every=20, trajectory_particles=0, threads=2)
    ss = np.random.SeedSequence(3)
    bounds = driver.chunk_bounds(n)
    outs, acc = [], np.zeros(20)
    for c, (a, b) in enumerate(bounds):
        rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, c))))
        st = s.init(x0[a:b])
        for k in range(20):
            st, info = s.step(rng, st)
            acc[k] += info["acceptance_rate"] * (b - a) / n
        outs.append(st.x)
    np.testing.assert_array_equal(got.samples, np.concatenate(outs))
    np.testing.assert_allclose(got.per_step["acceptance_rate"], acc, rtol=1e-14)


def test_small_runs_are_not_chunked():
    """Below 2 * MIN_CHUNK particles the driver uses the caller's generator as before."""
    s = _build("ula", RING, 10, step_size=0.1)
    x0 = RING.sample(np.random.default_rng(0), 2047)
    got = driver.run(s, x0, _rng(), steps=10, save_every=10, trajectory_particles=0)
    rng, st = _rng(), s.init(x0)
    for _ in range(10):
        st, _ = s.step(rng, st)
    np.testing.assert_array_equal(got.samples, st.x)


@pytest.mark.slow
def test_chunked_mala_keeps_the_target_and_chunks_are_independent():
    """MALA from exact draws of a correlated Gaussian, 20,000 particles in 6 chunks, 100 steps: the
    mean is within 5 standard errors (SE = sqrt(S_ii / n)) and each covariance entry within 5 SE
    (SE of a sample covariance sqrt((S_ii S_jj + S_ij^2) / n)); negative control for the streams:
    the first two chunks' samples are uncorrelated (|corr| < 5 / sqrt(chunk size)), where a shared
    stream from a shared start would make them identical."""
    n = 20_000
    s = _build("mala", GAUSS, 100, step_size=0.3)
    x0 = GAUSS.sample(np.random.default_rng(1), n)
    x = driver.run(s, x0, _rng(), steps=100, save_every=100, trajectory_particles=0, threads=2).samples
    m, S = GAUSS.mean, GAUSS.cov
    assert np.all(np.abs(x.mean(0) - m) < 5 * np.sqrt(np.diag(S) / n))
    se = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    assert np.all(np.abs(np.cov(x.T) - S) < 5 * se)
    (a0, b0), (a1, b1) = driver.chunk_bounds(n)[:2]
    k = min(b0 - a0, b1 - a1)
    corr = np.corrcoef(x[a0:a0 + k, 0], x[a1:a1 + k, 0])[0, 1]
    assert abs(corr) < 5 / np.sqrt(k)


@pytest.mark.slow
@pytest.mark.parametrize("name, limit", [("ula", 3.0), ("mala", 6.0), ("ddpm", 3.0)])
def test_memory_of_a_million_particles_is_a_small_multiple_of_the_state(name, limit):
    """Peak memory traced by tracemalloc (numpy reports its buffers to it) during a 1,000,000-particle
    2-D run, beyond the initial state: old and new states (MALA's include log p and the gradient)
    and the returned samples; per-step temporaries are per chunk."""
    import tracemalloc

    s = _build(name, RING, 3, **({"step_size": 0.1} if name != "ddpm" else {}))
    x0 = RING.sample(np.random.default_rng(0), 1_000_000)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        driver.run(s, x0, _rng(), steps=s.n_steps or 3, save_every=1, trajectory_particles=100, threads=2)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < limit * x0.nbytes, peak / x0.nbytes


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_bad_threads_variable_is_one_line_exit_2(tmp_path, monkeypatch, value):
    from typer.testing import CliRunner

    from difflab.cli.app import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFLAB_THREADS", value)
    r = CliRunner().invoke(app, ["sample", "ula", "-n", "10", "--steps", "2", "-q"])
    assert r.exit_code == 2 and "DIFFLAB_THREADS: expected a positive integer" in r.output, r.output
    assert not (tmp_path / "runs").exists()


def test_chunk_steps_hold_blas_to_one_thread_and_metrics_get_it_back():
    """During a chunked run's steps BLAS has one thread (the chunk threads use the cores); the
    metrics, computed by the calling thread alone, run with BLAS's own count; after the run the
    count is what it was."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    seen_in_steps, seen_in_metrics = [], []

    class Spy:
        capabilities = Capabilities(per_particle=True)
        n_steps = None

        def __init__(self, inner):
            self.inner = inner

        def init(self, x):
            return self.inner.init(x)

        def step(self, rng, st):
            seen_in_steps.append(blas_threads())
            return self.inner.step(rng, st)

    def metric(x):
        seen_in_metrics.append(blas_threads())
        return {"m": float(x.mean())}

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        s = Spy(_build("ula", RING, 4, step_size=0.1))
        driver.run(s, RING.sample(np.random.default_rng(0), 4096), _rng(), steps=4, save_every=2,
                   trajectory_particles=0, metrics_every=2, metric_fn=metric, threads=2)
        assert blas_threads() == before == 2
    assert seen_in_steps and set(seen_in_steps) == {1}
    assert seen_in_metrics and set(seen_in_metrics) == {2}
