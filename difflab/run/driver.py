"""The one run loop shared by every sampler.

A sampler provides ``init(x0) -> state`` and ``step(rng, state) -> (state, info)`` (a pure step:
its only randomness is the generator it is handed) and exposes ``state.x``. The driver owns the
rest: the optional warm-up, the non-finite guard, trajectory thinning, metrics every
``metrics_every`` steps, per-step info series, progress, and turning Ctrl-C into a result whose
status says ``interrupted``. It never writes files: the caller hands the result to ``io``.

Random streams: the caller passes one generator for the steps; the initial state and the metric
reference come from independent streams (``numpy.random.SeedSequence.spawn``), so changing the
metric settings never changes the samples.

Particle chunks: a sampler whose step treats particles independently (``capabilities.per_particle``) runs on
fixed chunks of particles, each with its own random stream, spread over a thread pool (numpy
releases the GIL in its loops, so both cores work on the elementwise part). The chunks and their
streams depend only on the number of particles (an even number of chunks of at most ``CHUNK``,
from ``2 * MIN_CHUNK`` particles up; fewer particles: one chunk, the caller's generator), never on
the thread count: the same seed gives the same samples with 1 thread or 16.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

COMPLETE, DIVERGED, INTERRUPTED = "complete", "diverged", "interrupted"
CHUNK, MIN_CHUNK = 8192, 1024


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """[(start, stop)] of the particle chunks: a function of n alone."""
    if n < 2 * MIN_CHUNK:
        return [(0, n)]
    k = 2 * -(-n // (2 * CHUNK))
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


def default_threads() -> int:
    """DIFFLAB_THREADS if set, else the number of cores this process may use."""
    env = os.environ.get("DIFFLAB_THREADS")
    if env:
        return int(env)  # validated before any run by sample.prepare (check_threads_env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads_env() -> None:
    """DIFFLAB_THREADS, if set, must be a positive integer (a ConfigError naming it otherwise)."""
    from difflab.errors import ConfigError

    env = os.environ.get("DIFFLAB_THREADS")
    if env and not (env.strip().isdigit() and int(env) >= 1):
        raise ConfigError(f"DIFFLAB_THREADS: expected a positive integer (threads for particle chunks), got {env!r}")


@dataclass(frozen=True)
class ChunkedState:
    parts: list
    all_finite: bool | None = None  # set by Chunked.step, each chunk checked on its own thread

    @property
    def x(self) -> np.ndarray:
        return np.concatenate([p.x for p in self.parts])

    def head(self, m: int) -> np.ndarray:
        """The first m particles' positions, (m, d) (a copy)."""
        out, left = [], m
        for p in self.parts:
            if left <= 0:
                break
            out.append(p.x[:left])
            left -= len(out[-1])
        return np.concatenate(out) if out else self.parts[0].x[:0].copy()

    @property
    def shape(self) -> tuple:
        """The shape of ``x`` without concatenating the chunks."""
        shapes = [np.shape(p.x) for p in self.parts]
        return (sum(sh[0] for sh in shapes), *shapes[0][1:])

    def finite(self) -> bool:
        if self.all_finite is not None:
            return self.all_finite
        return all(_all_finite(p.x) for p in self.parts)


def _all_finite(x: np.ndarray) -> bool:
    return bool(np.isfinite(x).all())


class Chunked:
    """A per-particle sampler run on fixed particle chunks, one random stream each, on a thread pool.

    Chunk c's generator is seeded by the caller's step stream's SeedSequence extended by (c,): it
    depends on the seed and c only. The calling thread takes chunks in turn with ``helpers`` pool
    threads (one thread fewer to wake and wait for at every step). Per-step info values (means over
    particles, or per-particle counts equal in every chunk) are combined as particle-weighted means.
    """

    def __init__(self, inner, bounds, rngs, pool, helpers: int = 0):
        self.inner, self.bounds, self.rngs, self.pool, self.helpers = inner, bounds, rngs, pool, helpers
        self._sizes = [float(b - a) for a, b in bounds]
        self._n = sum(self._sizes)
        self.capabilities, self.n_steps = inner.capabilities, inner.n_steps

    @property
    def step_size(self) -> float:
        return self.inner.step_size

    def estimate(self, state: ChunkedState) -> np.ndarray:
        return np.concatenate([self.inner.estimate(p) for p in state.parts])

    @classmethod
    def build(cls, inner, n: int, rng: np.random.Generator, pool, helpers: int = 0):
        bounds = chunk_bounds(n)
        ss = rng.bit_generator.seed_seq
        kind = type(rng.bit_generator)
        rngs = [np.random.Generator(kind(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, c))))
                for c in range(len(bounds))]
        return cls(inner, bounds, rngs, pool, helpers)

    def with_step_size(self, h: float) -> Chunked:
        return Chunked(self.inner.with_step_size(h), self.bounds, self.rngs, self.pool, self.helpers)

    def init(self, x0: np.ndarray) -> ChunkedState:
        return ChunkedState([self.inner.init(x0[a:b]) for a, b in self.bounds])

    def step(self, rng, state: ChunkedState):
        keeps_finite = self.capabilities.keeps_finite

        def one(c):
            # numpy's error state is per thread (a context variable): the driver's is restated here.
            with np.errstate(over="ignore", invalid="ignore"):
                new, info = self.inner.step(self.rngs[c], state.parts[c])
            return new, info, keeps_finite or _all_finite(new.x)

        k = len(self.bounds)
        if self.pool is None:
            out = [one(c) for c in range(k)]
        else:  # the calling thread works too: chunks are taken in turn by it and the pool's threads
            out = [None] * k
            todo = iter(range(k))  # next() on it is atomic under the GIL

            def work():
                for c in todo:
                    out[c] = one(c)

            helpers = [self.pool.submit(work) for _ in range(min(self.helpers, k - 1))]
            work()
            for h in helpers:
                h.result()
        parts = [o[0] for o in out]
        info = {k: sum(size * o[1][k] for size, o in zip(self._sizes, out)) / self._n for k in out[0][1]}
        return ChunkedState(parts, all(o[2] for o in out)), info


@dataclass
class RunResult:
    samples: np.ndarray  # (n, d): final state (the last finite one if the run diverged)
    status: str
    steps_done: int
    diverged_step: int  # -1 unless status == diverged: the step whose output was non-finite
    wall_time_s: float
    trajectory: np.ndarray  # (T, m, d) thinned positions of the first m particles
    trajectory_step: np.ndarray  # (T,) step index of each saved frame (0 = initial state)
    metrics_step: np.ndarray  # (S,)
    metrics: dict[str, np.ndarray]  # name -> (S,)
    per_step: dict[str, np.ndarray]  # name -> (steps_done,) info recorded at every step
    final_params: dict = field(default_factory=dict)  # e.g. the adapted step size


def run(
    sampler,
    x0: np.ndarray,
    rng: np.random.Generator,
    *,
    steps: int,
    save_every: int,
    trajectory_particles: int,
    metrics_every: int = 0,
    metric_fn: Callable[[np.ndarray], dict] | None = None,
    warmup: int = 0,
    adapter=None,
    on_step: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> RunResult:
    """Run ``steps`` steps of ``sampler`` from ``x0``; see the module docstring.

    ``warmup`` steps come first when an ``adapter`` is given: after each, the sampler's
    ``step_size`` becomes ``adapter.update(info)``; at the end ``adapter.final()``. Warm-up draws
    are not kept and not counted in ``steps``.
    """
    t0 = time.perf_counter()
    pool, blas = None, contextlib.nullcontext()
    if sampler.capabilities.per_particle and len(chunk_bounds(x0.shape[0])) > 1:
        threads = default_threads() if threads is None else threads
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="difflab-chunk")
        sampler = Chunked.build(sampler, x0.shape[0], rng, pool, threads - 1)
        blas = _one_blas_thread()  # applied now, restored when the `with` below ends
        if metric_fn is not None:
            metric_fn = _with_blas_threads(metric_fn, blas.get_original_num_threads())
    try:
        with blas:
            return _run(sampler, x0, rng, steps=steps, save_every=save_every, trajectory_particles=trajectory_particles,
                        metrics_every=metrics_every, metric_fn=metric_fn, warmup=warmup, adapter=adapter,
                        on_step=on_step, t0=t0)
    finally:
        if pool is not None:
            pool.shutdown()


def _one_blas_thread():
    """One BLAS thread for the whole of a chunked run (threadpoolctl; process-wide, restored after).

    The chunk threads use the cores: BLAS threads on top of them would oversubscribe (OpenBLAS's
    threads spin while they wait). With one BLAS thread a chunk's GEMMs run on its own thread, and
    its normal draws and elementwise work, which BLAS never parallelised, are split over the cores
    too. It holds with one chunk thread as well, because OpenBLAS's results depend on its thread
    count in the last bit: a fixed BLAS thread count is what keeps the samples the same whatever
    DIFFLAB_THREADS is (tested in 50-D, where the GEMMs are large).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _with_blas_threads(fn, original: dict):
    """fn run with BLAS's own thread count back (the metrics' GEMMs run in the calling thread alone).
    ``original``: threadpoolctl's {user_api: threads} from before the limit (None where no BLAS)."""
    from threadpoolctl import threadpool_limits

    limit = max((c for c in original.values() if c), default=None)

    def wrapped(x):
        with threadpool_limits(limits=limit, user_api="blas"):
            return fn(x)

    return wrapped


def _finite(state, sampler) -> bool:
    if sampler.capabilities.keeps_finite:  # MALA: see its docstring
        return True
    return state.finite() if isinstance(state, ChunkedState) else _all_finite(state.x)


def _check_state(state, shape: tuple, where: str, info=None) -> None:
    """The contract's shapes, checked at every step (a plug-in's mistake is one line, not a crash
    somewhere in the metrics or a run of 62 samples for 50 particles): state.x is (n, d) like the
    start; info (at the first step) a mapping of numbers."""
    from difflab.errors import PluginError

    got = state.shape if isinstance(state, ChunkedState) else np.shape(state.x)  # no copy of the particles
    if got != shape:
        raise PluginError(f"sampler: {where} returned a state whose x has shape {got}; expected {shape} "
                          f"(particles, dimension)")
    if info is not None and not (isinstance(info, dict) and all(isinstance(v, (int, float)) for v in info.values())):
        raise PluginError(f"sampler: step returned info {info!r:.80}; expected a mapping of names to numbers")


def _head(state, m: int) -> np.ndarray:
    return state.head(m) if isinstance(state, ChunkedState) else state.x[:m].copy()


def _run(sampler, x0, rng, *, steps, save_every, trajectory_particles, metrics_every, metric_fn, warmup, adapter,
         on_step, t0) -> RunResult:
    m = min(trajectory_particles, x0.shape[0])
    traj, traj_step = [x0[:m].copy()], [0]
    metrics_step, metric_rows = [], []
    per_step: dict[str, list] = {}
    status, done, diverged_at = COMPLETE, 0, -1
    final_params: dict = {}

    # A sampler whose state is not itself a sample of the target (localization's y_t) offers
    # ``estimate(state)``, the sample it would output if stopped now; metrics are taken on that.
    estimate = sampler.estimate if sampler.capabilities.estimate else None

    def record_metrics(k: int, st) -> None:
        if metric_fn is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # metrics of a huge state may be inf
                row = metric_fn(estimate(st) if estimate is not None and k < steps else st.x)
            metrics_step.append(k)
            metric_rows.append(row)

    state = sampler.init(x0)
    _check_state(state, x0.shape, "init")
    # Overflow on the way to a divergence is expected: the non-finite guard below reports it.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            if adapter is not None and warmup > 0:
                for _ in range(warmup):
                    state, info = sampler.step(rng, state)
                    sampler = sampler.with_step_size(adapter.update(info))
                sampler = sampler.with_step_size(adapter.final())
                # A fresh cache at the adapted step size; positions carry over.
                state = sampler.init(state.x)
                final_params["step_size_adapted"] = sampler.step_size
            if metrics_every:
                record_metrics(0, state)
            for k in range(1, steps + 1):
                new_state, info = sampler.step(rng, state)
                _check_state(new_state, x0.shape, f"step {k}", info if k == 1 else None)  # a shape: ~1 us
                if not _finite(new_state, sampler):
                    status, diverged_at = DIVERGED, k
                    break
                state = new_state
                done = k
                for name, value in info.items():
                    per_step.setdefault(name, []).append(value)
                if k % save_every == 0:
                    traj.append(_head(state, m))
                    traj_step.append(k)
                if metrics_every and (k % metrics_every == 0):
                    record_metrics(k, state)
                if on_step is not None:
                    on_step(k)
    except KeyboardInterrupt:
        status = INTERRUPTED
    if metrics_every and (not metrics_step or metrics_step[-1] != done):
        record_metrics(done, state)
    names = list(metric_rows[0]) if metric_rows else []
    return RunResult(
        samples=state.x,
        status=status,
        steps_done=done,
        diverged_step=diverged_at,
        wall_time_s=time.perf_counter() - t0,
        trajectory=np.stack(traj),
        trajectory_step=np.asarray(traj_step, dtype=np.int64),
        metrics_step=np.asarray(metrics_step, dtype=np.int64),
        metrics={n: np.array([row[n] for row in metric_rows]) for n in names},
        per_step={n: np.asarray(v, dtype=np.float64) for n, v in per_step.items()},
        final_params=final_params,
    )
