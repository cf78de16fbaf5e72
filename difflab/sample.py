"""One ``difflab sample`` run: validate options, build target and sampler, drive, write.

Everything that can be wrong with the input is checked before any work starts, so bad input
writes nothing. Random streams come from ``SeedSequence(seed).spawn(3)``: (initial state,
sampler steps, metrics), each a ``Generator(SFC64)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from difflab.errors import ConfigError, RunExistsError

DEFAULT_STEP_SIZE = {"ula": 0.01, "mala": 0.1}
INITS = ("normal", "target")


@dataclass(frozen=True)
class SampleOptions:
    """The options of ``difflab sample <sampler>`` as the user gave them (None = default)."""

    sampler: str
    target: str = "gmm"
    particles: int = 1000
    steps: int = 1000
    step_size: float | None = None
    seed: int = 0
    init: str = "normal"
    out: Path | None = None
    save_every: int | None = None
    metrics_every: int | None = None
    trajectory_particles: int = 100
    adapt: bool = False
    warmup: int = 500
    force: bool = False


def _positive(name: str, value, minimum=1):
    if value < minimum:
        rule = "must be positive" if minimum == 1 else f"must be >= {minimum}"
        raise ConfigError(f"--{name}: {rule}, got {value}")


def resolve_params(opts: SampleOptions) -> dict:
    """Validate the options and fill in defaults; the result is what the run file records."""
    from difflab.samplers import SAMPLERS

    if opts.sampler not in SAMPLERS:
        raise ConfigError(f"sampler: unknown sampler '{opts.sampler}'; expected one of {', '.join(SAMPLERS)}")
    if opts.particles < 2:
        raise ConfigError(f"--particles: must be >= 2 (sample covariances need two), got {opts.particles}")
    _positive("steps", opts.steps)
    _positive("seed", opts.seed, 0)
    _positive("trajectory-particles", opts.trajectory_particles, 0)
    step_size = DEFAULT_STEP_SIZE[opts.sampler] if opts.step_size is None else opts.step_size
    if not (step_size > 0 and step_size < float("inf")):
        raise ConfigError(f"--step-size: must be positive and finite, got {step_size}")
    if opts.init not in INITS:
        raise ConfigError(f"--init: expected one of {', '.join(INITS)}, got '{opts.init}'")
    save_every = max(1, opts.steps // 100) if opts.save_every is None else opts.save_every
    _positive("save-every", save_every)
    metrics_every = max(1, opts.steps // 20) if opts.metrics_every is None else opts.metrics_every
    _positive("metrics-every", metrics_every, 0)
    if opts.adapt and opts.sampler != "mala":
        raise ConfigError(f"--adapt: only mala adapts its step size (got sampler '{opts.sampler}')")
    if opts.adapt:
        _positive("warmup", opts.warmup)
    return {
        "particles": opts.particles,
        "steps": opts.steps,
        "step_size": float(step_size),
        "init": opts.init,
        "save_every": save_every,
        "metrics_every": metrics_every,
        "trajectory_particles": opts.trajectory_particles,
        "adapt": opts.adapt,
        "warmup": opts.warmup if opts.adapt else 0,
    }


def run_hash(sampler: str, spec, params: dict, seed: int) -> str:
    """Short hash of everything that determines the samples (not the output options)."""
    key = {
        "sampler": sampler,
        "target": [spec.name, spec.weights, spec.means, spec.covs],
        "params": params,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def output_path(opts: SampleOptions, spec, params: dict) -> Path:
    path = opts.out or Path("runs") / f"{opts.sampler}-{spec.name}-{run_hash(opts.sampler, spec, params, opts.seed)}.h5"
    if path.is_file() and not opts.force:
        raise RunExistsError(f"{path}: the run file exists; pass --force to overwrite it or --out to write elsewhere")
    if path.is_dir():
        raise ConfigError(f"--out: '{path}' is a folder; expected a file name")
    # Fail now, not after the run: the nearest existing folder must be writable.
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"--out: cannot write '{path}': '{folder}' is not a writable folder")
    return path


def prepare(opts: SampleOptions):
    """Validate everything (target, options, output path) before any work: (spec, target, params, path)."""
    from difflab.config import load_target

    params = resolve_params(opts)
    spec, target = load_target(opts.target)
    path = output_path(opts, spec, params)
    return spec, target, params, path


def execute(opts: SampleOptions, *, spec, target, params: dict, path: Path, on_step=None):
    """Run and write; returns (path, RunResult, summary dict)."""
    import numpy as np

    from difflab import driver, metrics
    from difflab.io import write_run
    from difflab.samplers import SAMPLERS
    from difflab.samplers.langevin import StepSizeAdapter

    ss_init, ss_step, ss_metric = np.random.SeedSequence(opts.seed).spawn(3)
    rng_init = np.random.Generator(np.random.SFC64(ss_init))
    rng_step = np.random.Generator(np.random.SFC64(ss_step))
    rng_metric = np.random.Generator(np.random.SFC64(ss_metric))

    n, d = params["particles"], target.dim
    x0 = target.sample(rng_init, n) if params["init"] == "target" else rng_init.standard_normal((n, d))
    sampler = SAMPLERS[opts.sampler](target=target, step_size=params["step_size"])
    suite = metrics.MetricSuite(target, rng_metric)
    adapter = StepSizeAdapter(params["step_size"], params["warmup"]) if params["adapt"] else None

    result = driver.run(
        sampler, x0, rng_step,
        steps=params["steps"], save_every=params["save_every"],
        trajectory_particles=params["trajectory_particles"],
        metrics_every=params["metrics_every"], metric_fn=suite.series,
        warmup=params["warmup"], adapter=adapter, on_step=on_step,
    )
    with np.errstate(all="ignore"):  # metrics of a state about to diverge may be inf or nan
        summary, summary_arrays = _summarise(suite, result, target, rng_metric, params)

    write_run(
        path,
        attrs={
            "sampler": opts.sampler, "target": spec.name, "seed": opts.seed, "status": result.status,
            "steps_done": result.steps_done, "diverged_step": result.diverged_step,
            "wall_time_s": result.wall_time_s,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": json.dumps(sys.argv), "n_particles": n, "dim": d,
        },
        samples=result.samples, params=params, target_yaml=spec.text, target_source=spec.source,
        trajectory=result.trajectory, trajectory_step=result.trajectory_step,
        metrics_step=result.metrics_step, metrics=result.metrics, per_step=result.per_step,
        summary=summary, summary_arrays=summary_arrays,
    )
    return path, result, summary


def _summarise(suite, result, target, rng_metric, params: dict):
    """Final metrics, their exact-draw floors, per-step means and MCMC diagnostics."""
    from difflab import metrics

    summary = suite.final(result.samples)
    # The same metrics on exact i.i.d. draws of the same size: the Monte Carlo floor of each.
    floor = suite.final(target.sample(rng_metric, params["particles"]))
    summary.update({f"floor_{k}": v for k, v in floor.items()})
    summary["step_size"] = result.final_params.get("step_size_adapted", params["step_size"])
    for name, series in result.per_step.items():
        if len(series):
            summary[name] = float(series.mean())
    summary_arrays = {}
    kept = result.trajectory[len(result.trajectory) // 2 :]  # second half of the saved frames
    if kept.shape[0] >= 4 and kept.shape[1] >= 2:
        summary_arrays["ess"] = metrics.ess(kept)
        summary_arrays["split_rhat"] = metrics.split_rhat(kept)
        summary["ess_min"] = float(summary_arrays["ess"].min())
        summary["split_rhat_max"] = float(summary_arrays["split_rhat"].max())
    return summary, summary_arrays
