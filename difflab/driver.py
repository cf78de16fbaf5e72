"""The one run loop shared by every sampler.

A sampler provides ``init(x0) -> state`` and ``step(rng, state) -> (state, info)`` (a pure step:
its only randomness is the generator it is handed) and exposes ``state.x``. The driver owns the
rest: the optional warm-up, the non-finite guard, trajectory thinning, metrics every
``metrics_every`` steps, per-step info series, progress, and turning Ctrl-C into a result whose
status says ``interrupted``. It never writes files: the caller hands the result to ``io``.

Random streams: the caller passes one generator for the steps; the initial state and the metric
reference come from independent streams (``numpy.random.SeedSequence.spawn``), so changing the
metric settings never changes the samples.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

COMPLETE, DIVERGED, INTERRUPTED = "complete", "diverged", "interrupted"


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
) -> RunResult:
    """Run ``steps`` steps of ``sampler`` from ``x0``; see the module docstring.

    ``warmup`` steps come first when an ``adapter`` is given: after each, the sampler's
    ``step_size`` becomes ``adapter.update(info)``; at the end ``adapter.final()``. Warm-up draws
    are not kept and not counted in ``steps``.
    """
    t0 = time.perf_counter()
    m = min(trajectory_particles, x0.shape[0])
    traj, traj_step = [x0[:m].copy()], [0]
    metrics_step, metric_rows = [], []
    per_step: dict[str, list] = {}
    status, done, diverged_at = COMPLETE, 0, -1
    final_params: dict = {}

    # A sampler whose state is not itself a sample of the target (localization's y_t) offers
    # ``estimate(state)``, the sample it would output if stopped now; metrics are taken on that.
    estimate = getattr(sampler, "estimate", None)

    def record_metrics(k: int, st) -> None:
        if metric_fn is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # metrics of a huge state may be inf
                row = metric_fn(estimate(st) if estimate is not None and k < steps else st.x)
            metrics_step.append(k)
            metric_rows.append(row)

    state = sampler.init(x0)
    # Overflow on the way to a divergence is expected: the non-finite guard below reports it.
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            if adapter is not None and warmup > 0:
                for _ in range(warmup):
                    state, info = sampler.step(rng, state)
                    sampler = dataclasses.replace(sampler, step_size=adapter.update(info))
                sampler = dataclasses.replace(sampler, step_size=adapter.final())
                # A fresh cache at the adapted step size; positions carry over.
                state = sampler.init(state.x)
                final_params["step_size_adapted"] = sampler.step_size
            if metrics_every:
                record_metrics(0, state)
            for k in range(1, steps + 1):
                new_state, info = sampler.step(rng, state)
                if not np.isfinite(new_state.x).all():
                    status, diverged_at = DIVERGED, k
                    break
                state = new_state
                done = k
                for name, value in info.items():
                    per_step.setdefault(name, []).append(value)
                if k % save_every == 0:
                    traj.append(state.x[:m].copy())
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
