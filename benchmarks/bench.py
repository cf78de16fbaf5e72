"""Throughput of difflab's samplers (not a test).

Runs the same sampler classes and driver the CLI runs, with metrics and trajectory off, and prints
particle-steps per second (particles x steps / wall time; median of --repeat runs after a warm-up
run). Langevin chains start from exact target draws; diffusion samplers from N(0, I).

    python benchmarks/bench.py [--repeat 3] [--only ula,mala] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from difflab import driver
from difflab.config import load_target
from difflab.samplers import SAMPLERS

CASES = [  # (sampler, target, particles, steps, sampler options): sizes from the issues and WORKLOADS.md
    ("ula", "gmm", 10_000, 1_000, {"step_size": 0.1}),
    ("mala", "gmm", 10_000, 1_000, {"step_size": 0.1}),
    ("ula", "gmm50", 4_096, 500, {"step_size": 0.1}),
    ("mala", "gmm50", 4_096, 500, {"step_size": 0.1}),
    ("ddpm", "gmm", 10_000, 1_000, {}),
    ("pflow", "gmm50", 4_096, 100, {"solver": "heun"}),
    ("localization", "gmm50", 4_096, 500, {}),
]


def time_case(sampler: str, target_name: str, n: int, steps: int, options: dict, seed: int = 0) -> float:
    target = load_target(target_name)[1]
    spec = SAMPLERS[sampler]
    params = {"steps": steps, **spec.resolve(options, steps)}
    s = spec.build(target, params)
    init_rng = np.random.Generator(np.random.SFC64(seed))
    x0 = target.sample(init_rng, n) if spec.mcmc else init_rng.standard_normal((n, target.dim))
    if spec.inits[0] == "zero":
        x0 = np.zeros((n, target.dim))
    rng = np.random.Generator(np.random.SFC64(seed + 1))
    t0 = time.perf_counter()
    res = driver.run(s, x0, rng, steps=getattr(s, "n_steps", steps), save_every=steps, trajectory_particles=0)
    dt = time.perf_counter() - t0
    assert res.status == "complete"
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the table as JSON to this file")
    ap.add_argument("--only", default=None, help="comma-separated sampler names to run")
    args = ap.parse_args()
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    print(f"{'sampler':8s} {'target':6s} {'particles':>9s} {'steps':>6s} {'median s':>9s} {'particle-steps/s':>17s}")
    only = set(args.only.split(",")) if args.only else None
    for sampler, tname, n, steps, options in CASES:
        if only and sampler not in only:
            continue
        time_case(sampler, tname, n, max(steps // 10, 1), options)  # warm-up
        times = [time_case(sampler, tname, n, steps, options, seed=r) for r in range(args.repeat)]
        med = float(np.median(times))
        rate = n * steps / med
        rows.append({"sampler": sampler, "target": tname, "particles": n, "steps": steps, "options": options,
                     "median_s": med, "particle_steps_per_s": rate})
        print(f"{sampler:8s} {tname:6s} {n:9d} {steps:6d} {med:9.3f} {rate:17.3e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
