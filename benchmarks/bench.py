"""Throughput of difflab's samplers (not a test).

Runs the same sampler classes and driver the CLI runs, with metrics and trajectory off, and prints
particle-steps per second (particles x steps / wall time; median of --repeat runs after a warm-up
run) and samples per second (particles / wall time). Langevin chains start from exact target
draws; diffusion samplers from N(0, I); discrete diffusion from its prior, gibbs from uniform states.

    python benchmarks/bench.py [--repeat 3] [--only ula,mala] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from difflab.run import driver
from difflab.targets.files import load_target
from difflab.samplers import SAMPLERS

CASES = [  # (sampler, target, particles, steps, sampler options): sizes from the issues and WORKLOADS.md
    ("ula", "gmm", 10_000, 1_000, {"step_size": 0.1}),
    ("mala", "gmm", 10_000, 1_000, {"step_size": 0.1}),
    ("uld", "gmm", 10_000, 1_000, {"step_size": 0.1}),
    ("ula", "gmm50", 4_096, 500, {"step_size": 0.1}),
    ("mala", "gmm50", 4_096, 500, {"step_size": 0.1}),
    ("ddpm", "gmm", 10_000, 1_000, {}),
    ("pflow", "gmm50", 4_096, 100, {"solver": "heun"}),
    ("ksampler", "gmm", 10_000, 1_000, {"solver": "euler-ancestral"}),  # DDPM's step in the VE form: W4's size
    ("ksampler", "gmm50", 4_096, 100, {"solver": "dpmpp-2m"}),  # multistep: one evaluation a step, W5's size
    ("ksampler", "gmm50", 4_096, 100, {"solver": "unipc"}),
    ("localization", "gmm50", 4_096, 500, {}),
    ("discrete", "ising12", 10_000, 100, {"method": "exact"}),  # absorbing: d = 12 unmasking steps
    ("discrete", "ising12", 10_000, 100, {"method": "tau-leaping"}),
    ("discrete", "ising12", 10_000, 100, {"method": "exact", "noise": "uniform"}),
    ("gibbs", "ising12", 10_000, 100, {}),
    ("ddpm", "gmm-classes", 10_000, 1_000, {"guidance": "cfg", "class": "right", "scale": 2.0}),
    ("smc", "gmm-tilted", 10_000, 100, {}),
]


def time_case(sampler: str, target_name: str, n: int, steps: int, options: dict, seed: int = 0):
    """(wall time in seconds, steps actually run)."""
    target = load_target(target_name)[1]
    spec = SAMPLERS[sampler]
    params = {"steps": steps, **spec.resolve_params(options, steps)}
    if params.get("guidance", "none") != "none":  # the model the CLI builds: two scores per evaluation
        from difflab.targets.guidance import guided_model

        target = guided_model(target, params)[0]
    s = spec.build(target, params)
    init_rng = np.random.Generator(np.random.SFC64(seed))
    if spec.target_kind == "discrete":
        x0 = s.start_sample(init_rng, n) if spec.init.default == "prior" else \
            init_rng.integers(0, target.K, size=(n, target.dim))
    elif spec.mcmc:
        x0 = target.sample(init_rng, n)
    elif spec.init.default == "zero":
        x0 = np.zeros((n, target.dim))
    else:
        x0 = init_rng.standard_normal((n, target.dim))
    rng = np.random.Generator(np.random.SFC64(seed + 1))
    run_steps = s.n_steps or steps
    t0 = time.perf_counter()
    res = driver.run(s, x0, rng, steps=run_steps, save_every=run_steps, trajectory_particles=0)
    dt = time.perf_counter() - t0
    assert res.status == "complete"
    return dt, run_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the table as JSON to this file")
    ap.add_argument("--only", default=None, help="comma-separated sampler names to run")
    args = ap.parse_args()
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    print(f"{'sampler':12s} {'options':36s} {'target':11s} {'particles':>9s} {'steps':>6s} {'median s':>9s} "
          f"{'particle-steps/s':>17s} {'samples/s':>10s}")
    only = set(args.only.split(",")) if args.only else None
    for sampler, tname, n, steps, options in CASES:
        if only and sampler not in only:
            continue
        time_case(sampler, tname, n, max(steps // 10, 1), options)  # warm-up
        runs = [time_case(sampler, tname, n, steps, options, seed=r) for r in range(args.repeat)]
        med = float(np.median([t for t, _ in runs]))
        run_steps = runs[0][1]
        rate = n * run_steps / med
        rows.append({"sampler": sampler, "target": tname, "particles": n, "steps": run_steps, "options": options,
                     "median_s": med, "particle_steps_per_s": rate, "samples_per_s": n / med})
        opts = ",".join(f"{k}={v}" for k, v in options.items())
        print(f"{sampler:12s} {opts:36s} {tname:11s} {n:9d} {run_steps:6d} {med:9.3f} {rate:17.3e} {n / med:10.3e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
