"""Throughput of difflab's ULA and MALA (the foundation issue's benchmark; not a test).

Runs the same sampler classes and driver the CLI runs, with metrics and trajectory off, and prints
chain-steps per second (particles x steps / wall time; median of --repeat runs after a warm-up run).

    python benchmarks/bench_langevin.py [--repeat 3] [--json out.json]
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

CASES = [  # (sampler, target, particles, steps, step size): sizes from the issue and WORKLOADS.md
    ("ula", "gmm", 10_000, 1_000, 0.1),
    ("mala", "gmm", 10_000, 1_000, 0.1),
    ("ula", "gmm50", 4_096, 500, 0.1),
    ("mala", "gmm50", 4_096, 500, 0.1),
]


def time_case(sampler: str, target_name: str, n: int, steps: int, h: float, seed: int = 0) -> float:
    target = load_target(target_name)[1]
    x0 = target.sample(np.random.Generator(np.random.SFC64(seed)), n)  # start from exact draws
    rng = np.random.Generator(np.random.SFC64(seed + 1))
    s = SAMPLERS[sampler].build(target, {"step_size": h})
    t0 = time.perf_counter()
    res = driver.run(s, x0, rng, steps=steps, save_every=steps, trajectory_particles=0)
    dt = time.perf_counter() - t0
    assert res.status == "complete"
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the table as JSON to this file")
    args = ap.parse_args()
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    print(f"{'sampler':8s} {'target':6s} {'chains':>7s} {'steps':>6s} {'median s':>9s} {'chain-steps/s':>14s}")
    for sampler, tname, n, steps, h in CASES:
        time_case(sampler, tname, n, max(steps // 10, 1), h)  # warm-up
        times = [time_case(sampler, tname, n, steps, h, seed=r) for r in range(args.repeat)]
        med = float(np.median(times))
        rate = n * steps / med
        rows.append({"sampler": sampler, "target": tname, "chains": n, "steps": steps,
                     "median_s": med, "chain_steps_per_s": rate})
        print(f"{sampler:8s} {tname:6s} {n:7d} {steps:6d} {med:9.3f} {rate:14.3e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
