"""The cost of judging a run (not a test): ``../shared/perf/WORKLOADS.md``, "The cost of judging a run".

* **fixed cost**: the README's quick-start run (MALA on ``gmm``, 1,000 particles, default metrics)
  at 50 and at 1,050 steps, from one process after one warm-up run; the difference is the cost of
  1,000 sampling steps, and what the 50-step run costs beyond 50 of those steps is the fixed cost
  (floors, final metrics, writing the file), reported as a multiple of the 1,000 steps;
* **W6**: 100 runs of 10 steps, 1,000 particles, MALA on ``gmm``, step size in {0.05, 0.1, 0.2,
  0.3, 0.4} x 20 seeds, from one process (the Python API): runs per second with evaluation (the
  default) and with it off (no metrics, no floors: ``--metrics-every 0`` and the driver alone).

Each figure is the median of ``--repeat`` measurements. Runs write to a temporary folder; the
floor cache (``DIFFLAB_CACHE_DIR``) is a fresh temporary folder too, warmed by the warm-up run
(``--cold`` leaves it empty for every run, and forgets the target's reference between runs: the
first run on a new target and size; W6 is then skipped).

    python benchmarks/overhead.py [--repeat 3] [--cold] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="an empty floor cache for every run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="difflab-overhead-"))
    os.environ["DIFFLAB_CACHE_DIR"] = str(work / "cache")

    import difflab
    from difflab.run import driver
    from difflab.samplers import SAMPLERS
    from difflab.targets.files import load_target

    counter = iter(range(10**9))

    from difflab.run import floors

    def run(steps: int, **kw):
        if args.cold:  # a new cache folder, and nothing of the target kept in the process
            os.environ["DIFFLAB_CACHE_DIR"] = str(work / f"cache{next(counter)}")
            floors._REFERENCES.clear()
        return difflab.sample("mala", target="gmm", particles=1000, steps=steps, out=work / f"r{next(counter)}.h5", **kw)

    run(50)  # warm-up: imports, and the floor cache entry of (gmm, 1,000 particles)
    short = statistics.median(_timed(lambda: run(50)) for _ in range(args.repeat))
    long = statistics.median(_timed(lambda: run(1050)) for _ in range(args.repeat))
    per_1000 = long - short
    fixed = short - 0.05 * per_1000

    grid = [(h, s) for s in range(20) for h in (0.05, 0.1, 0.2, 0.3, 0.4)]
    if args.cold:  # W6 on cold caches would time 100 first runs: W6 is a warm-cache workload
        out = {"fixed_cost_s": fixed, "steps_1000_s": per_1000, "fixed_over_1000_steps": fixed / per_1000,
               "cold_cache": True}
        for k, v in out.items():
            print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return 0
    with_eval = statistics.median(
        _timed(lambda: [run(10, step_size=h, seed=s) for h, s in grid]) for _ in range(args.repeat))
    _, target = load_target("gmm")
    entry = SAMPLERS["mala"]

    def bare(h, s):  # the sampler and the driver alone: no metrics, no floors, no file
        params = {"steps": 10, **entry.resolve_params({"step_size": h}, 10)}
        sampler = entry.build(target, params)
        rng = np.random.Generator(np.random.SFC64(s))
        driver.run(sampler, rng.standard_normal((1000, 2)), rng, steps=10, save_every=10, trajectory_particles=0)

    without = statistics.median(_timed(lambda: [bare(h, s) for h, s in grid]) for _ in range(args.repeat))
    out = {"fixed_cost_s": fixed, "steps_1000_s": per_1000, "fixed_over_1000_steps": fixed / per_1000,
           "w6_runs_per_s_with_evaluation": len(grid) / with_eval, "w6_runs_per_s_without": len(grid) / without,
           "cold_cache": args.cold}
    for k, v in out.items():
        print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
