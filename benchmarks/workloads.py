"""The benchmark contract W1-W5 (../shared/perf/WORKLOADS.md): difflab against this machine's limits
and, where installed, its peers, in one run (not a test).

    python benchmarks/workloads.py [--repeat 3] [--only W1,W4] [--json out.json] [--no-peers]

For each workload: wall time (median of --repeat runs after a warm-up), chain-steps per second,
the share of this machine's measured limits, and a correctness column (error of the final mean and
second moment against the target's exact moments, next to the same errors of exact draws of the
same size: a fast wrong answer shows). difflab runs through its own sampler classes and driver,
the code ``difflab sample`` runs (metrics and trajectory off). Peers, each on the same target,
schedule, step size and initial states (optional extra ``difflab[bench]``):

* BlackJAX (jax.jit + jax.vmap over chains, the step scanned with lax.scan; compile time
  reported separately): MALA for W1, W2; ULA (its Langevin proposal, no correction) for W3;
* the diffusers DDPMScheduler loop (W4) if diffusers and torch are installed.

Each peer row runs in a child process of its own right after difflab's row for the same workload,
so the peers' runtimes (XLA's and torch's thread pools) never share a process with difflab's timings.

Limits, measured here at start: dgemm GFLOP/s (2048^3), copy bandwidth (GB/s, read + write of
200 MB), numpy exp and standard-normal rates (SFC64 and PCG64). A 50-D workload's share is its
effective GFLOP/s (the contract's flops per chain-step times chain-steps/s) over dgemm's; a 2-D
workload's floor is the time the contract's exp/log and normal draws per chain-step take at the
measured rates, and its share is floor / actual time per chain-step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import careful
from difflab.run import driver
from difflab.targets.files import load_target
from difflab.samplers import SAMPLERS

# The careful numpy implementations (benchmarks/careful.py) of the workloads, on difflab's start.
CAREFUL = {"W1": lambda x0, t: careful.w1(x0, 1_000, 0.1), "W2": lambda x0, t: careful.w2(t, x0, 500, 0.1),
           "W3": lambda x0, t: careful.w3(t, x0, 500, 0.1), "W4": lambda x0, t: careful.w4(x0),
           "W5": lambda x0, t: careful.w5(t, x0, 100, 1e-3)}

# id: (sampler, target, chains, steps, options, start, cost model (flops, gemm flops, exp/log, normals))
WORKLOADS = {
    "W1": ("mala", "gmm", 10_000, 1_000, {"step_size": 0.1}, "target", (145, 64, 10, 3)),
    "W2": ("mala", "gmm50", 4_096, 500, {"step_size": 0.1}, "target", (41_300, 40_000, 10, 51)),
    "W3": ("ula", "gmm50", 4_096, 500, {"step_size": 0.1}, "target", (40_800, 40_000, 9, 50)),
    "W4": ("ddpm", "gmm", 10_000, 1_000, {"prior": "standard"}, "normal", (115, 64, 9, 2)),
    "W5": ("pflow", "gmm50", 4_096, 100, {"solver": "heun", "grid": "uniform", "prior": "standard",
                                         "early_stop": 1e-3}, "normal", (82_600, 80_000, 18, 0)),
}


def _median_time(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def machine_limits(repeat: int = 3) -> dict:
    """This machine's ceilings, measured the way the workloads use them."""
    n = 2048
    a, b = np.random.default_rng(0).standard_normal((2, n, n))
    t_gemm, _ = _median_time(lambda: a @ b, repeat)
    big = np.random.default_rng(1).standard_normal(25_000_000)  # 200 MB
    dst = np.empty_like(big)
    t_copy, _ = _median_time(lambda: np.copyto(dst, big), repeat)
    x = np.random.default_rng(2).standard_normal(10_000_000)
    t_exp, _ = _median_time(lambda: np.exp(x, out=dst[: x.size]), repeat)
    out = np.empty(10_000_000)
    sfc, pcg = np.random.Generator(np.random.SFC64(3)), np.random.Generator(np.random.PCG64(3))
    t_sfc, _ = _median_time(lambda: sfc.standard_normal(out=out), repeat)
    t_pcg, _ = _median_time(lambda: pcg.standard_normal(out=out), repeat)
    return {"gemm_gflops": 2 * n**3 / t_gemm / 1e9, "copy_gbs": 2 * big.nbytes / t_copy / 1e9,
            "exp_per_s": x.size / t_exp, "normal_sfc64_per_s": out.size / t_sfc, "normal_pcg64_per_s": out.size / t_pcg}


def exact_moments(target):
    """(mean (d,), second moment E[X X^T] (d, d)) of a mixture, exactly."""
    mean = target.weights @ target.means
    second = np.einsum("k,kij->ij", target.weights, target.covs) + np.einsum(
        "k,ki,kj->ij", target.weights, target.means, target.means)
    return mean, second


def correctness(x: np.ndarray, target) -> dict:
    """Errors of the final samples' mean and second moment against the exact ones."""
    mean, second = exact_moments(target)
    x = x[np.isfinite(x).all(axis=1)]
    return {"mean_err": float(np.linalg.norm(x.mean(axis=0) - mean)),
            "m2_rel_err": float(np.linalg.norm(x.T @ x / len(x) - second) / np.linalg.norm(second))}


def _difflab_runner(wid: str):
    sampler, target_name, n, steps, options, start, _ = WORKLOADS[wid]
    target = load_target(target_name)[1]
    spec = SAMPLERS[sampler]
    params = {"steps": steps, **spec.resolve_params(options, steps)}
    s = spec.build(target, params)
    init_rng = np.random.Generator(np.random.SFC64(0))
    x0 = target.sample(init_rng, n) if start == "target" else init_rng.standard_normal((n, target.dim))
    run_steps = s.n_steps or steps

    def run():
        rng = np.random.Generator(np.random.SFC64(1))
        res = driver.run(s, x0, rng, steps=run_steps, save_every=run_steps, trajectory_particles=0)
        assert res.status == "complete"
        return res.samples

    return run, target, x0, s


# ---------------------------------------------------------------- peers (optional)
def _jax_logdensity(target):
    """log p of a Gaussian mixture in JAX: stacked inverse Cholesky factors, one einsum, logsumexp."""
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    chol = np.linalg.cholesky(target.covs)
    inv_l = np.linalg.inv(chol)  # peers' setup, once: L_k^-1 (d, d) per component
    log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    consts = jnp.asarray(np.log(target.weights) - 0.5 * log_det - 0.5 * target.dim * np.log(2 * np.pi))
    means, inv_l = jnp.asarray(target.means), jnp.asarray(inv_l)

    def logdensity(x):
        z = jnp.einsum("kij,kj->ki", inv_l, x[None, :] - means)
        return logsumexp(consts - 0.5 * jnp.sum(z * z, axis=1))

    return logdensity


def _blackjax_runner(wid: str, x0: np.ndarray, target):
    """BlackJAX MALA (W1, W2) or its Langevin proposal alone (ULA, W3): jit(vmap) over chains,
    lax.scan over steps. Returns (run, compile seconds) or None when the workload has no peer."""
    sampler, _, n, steps, options, _, _ = WORKLOADS[wid]
    if sampler not in ("mala", "ula"):
        return None
    import blackjax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    h = options["step_size"]
    logdensity = _jax_logdensity(target)
    if sampler == "mala":
        kernel = blackjax.mala(logdensity, h)
        init, step = kernel.init, kernel.step
    else:
        grad = jax.grad(logdensity)

        def init(x):
            return x

        def step(key, x):  # ULA: x + h grad log p(x) + sqrt(2h) xi, as blackjax.mala proposes
            return x + h * grad(x) + jnp.sqrt(2 * h) * jax.random.normal(key, x.shape), None

    def run_chains(keys, x):
        states = jax.vmap(init)(x)

        def body(states, key):
            ks = jax.random.split(key, n)
            states, _ = jax.vmap(step)(ks, states)
            return states, None

        states, _ = jax.lax.scan(body, states, keys)
        return states.position if hasattr(states, "position") else states

    fn = jax.jit(run_chains)
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    xs = jnp.asarray(x0)
    t0 = time.perf_counter()
    fn(keys, xs).block_until_ready()
    compile_s = time.perf_counter() - t0
    return (lambda: np.asarray(fn(keys, xs).block_until_ready())), compile_s


def _diffusers_runner(wid: str, x0: np.ndarray, target):
    """The diffusers DDPMScheduler loop on W4 with difflab's exact noise prediction (float64 torch)."""
    if WORKLOADS[wid][0] != "ddpm":
        return None
    import torch
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          variance_type="fixed_small", clip_sample=False)
    sched.set_timesteps(1000)
    # float64 as the contract says (the scheduler builds its tables in float32)
    sched.betas = sched.betas.double()
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)
    abar = sched.alphas_cumprod.numpy()

    def run():
        gen = torch.Generator().manual_seed(1)
        x = torch.from_numpy(x0.copy())
        for t in sched.timesteps:
            a = float(np.sqrt(abar[int(t)]))
            s = float(np.sqrt(1 - abar[int(t)]))
            eps = -s * target.noised_score(x.numpy(), a, s)  # the exact noise prediction
            x = sched.step(torch.from_numpy(eps), t, x, generator=gen).prev_sample
        return x.numpy()

    return run, 0.0


PEERS = {"blackjax": _blackjax_runner, "diffusers": _diffusers_runner}


def _peer_in_child(peer: str, wid: str, repeat: int) -> dict | None:
    """Time one peer on one workload in a child process of its own, right after difflab's row: the
    peers' runtimes (XLA's and torch's thread pools) then neither share a process with difflab's
    timings nor outlive their own row."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peer", peer, "--only", wid,
                          "--repeat", str(repeat)], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{peer} on {wid} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peer_row(peer: str, wid: str, repeat: int) -> dict | None:
    """The child's side: the same target and initial states as difflab's row (fixed seeds)."""
    _, _, n, steps, _, _, _ = WORKLOADS[wid]
    _, target, x0, _ = _difflab_runner(wid)
    try:
        built = PEERS[peer](wid, x0, target)
    except ImportError as exc:
        return {"missing": exc.name}
    if built is None:
        return None
    prun, compile_s = built
    pt, px = _median_time(prun, repeat)
    return {"id": wid, "impl": peer, "seconds": pt, "compile_s": compile_s,
            "chain_steps_per_s": n * steps / pt, **correctness(px, target)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default=None, help="comma-separated workload ids, e.g. W1,W4")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this file")
    ap.add_argument("--no-peers", action="store_true", help="time difflab only")
    ap.add_argument("--peer", default=None, help=argparse.SUPPRESS)  # internal: one peer row, as JSON
    args = ap.parse_args()
    wids = args.only.split(",") if args.only else list(WORKLOADS)
    if args.peer:
        print(json.dumps(_peer_row(args.peer, wids[0], args.repeat)))
        return
    limits = machine_limits(args.repeat)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"OMP/BLAS threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print("limits: " + ", ".join(f"{k} {v:.3g}" for k, v in limits.items()))
    rows = []
    for wid in wids:
        sampler, target_name, n, steps, _, _, (flops, _gemm, exps, normals) = WORKLOADS[wid]
        run, target, _, _ = _difflab_runner(wid)
        t, x = _median_time(run, args.repeat)
        row = {"id": wid, "impl": "difflab", "sampler": sampler, "target": target_name, "chains": n, "steps": steps,
               "seconds": t, "chain_steps_per_s": n * steps / t, **correctness(x, target)}
        exact = target.sample(np.random.Generator(np.random.SFC64(99)), n)
        row.update({f"exact_draws_{k}": v for k, v in correctness(exact, target).items()})
        if target.dim > 2:
            row["gflops"] = flops * row["chain_steps_per_s"] / 1e9
            row["share_of_gemm_peak"] = row["gflops"] / limits["gemm_gflops"]
        else:
            floor = exps / limits["exp_per_s"] + normals / limits["normal_sfc64_per_s"]  # s per chain-step
            row["floor_chain_steps_per_s"] = 1 / floor
            row["times_the_floor"] = (t / (n * steps)) / floor
        rows.append(row)
        _print(row)
        if wid in CAREFUL:  # the careful numpy yardstick, in this process, on the same start
            _, _, x0, _ = _difflab_runner(wid)
            tn, xn = _median_time(lambda: CAREFUL[wid](x0, target), args.repeat)
            nrow = {"id": wid, "impl": "numpy", "seconds": tn, "chain_steps_per_s": n * steps / tn,
                    **correctness(xn, target)}
            row["difflab_over_numpy"] = nrow["chain_steps_per_s"] and row["chain_steps_per_s"] / nrow["chain_steps_per_s"]
            if "floor_chain_steps_per_s" in row:
                nrow["times_the_floor"] = (tn / (n * steps)) * row["floor_chain_steps_per_s"]
            rows.append(nrow)
            _print(nrow)
            print(f"  difflab / careful numpy: {row['difflab_over_numpy']:.2f}")
        if args.no_peers:
            continue
        for peer in PEERS:
            prow = _peer_in_child(peer, wid, args.repeat)
            if prow is None:
                continue
            if "missing" in prow:
                print(f"  {peer}: not installed ({prow['missing']}); pip install 'difflab[bench]'")
                continue
            prow["difflab_over_peer"] = row["chain_steps_per_s"] / prow["chain_steps_per_s"]
            rows.append(prow)
            _print(prow)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"limits": limits, "rows": rows, "numpy": np.__version__, "cores": os.cpu_count()}, fh, indent=2)


def _print(r: dict) -> None:
    extra = ", ".join(f"{k} {r[k]:.3g}" for k in ("gflops", "share_of_gemm_peak", "times_the_floor", "compile_s",
                                                  "difflab_over_peer") if k in r)
    exact = f" (exact draws {r['exact_draws_mean_err']:.2g} / {r['exact_draws_m2_rel_err']:.2g})" \
        if "exact_draws_mean_err" in r else ""
    print(f"{r['id']} {r['impl']:9s} {r['seconds']:8.3f} s  {r['chain_steps_per_s']:9.3g} chain-steps/s  "
          f"mean err {r['mean_err']:.2g}, m2 rel err {r['m2_rel_err']:.2g}{exact}  {extra}", flush=True)


if __name__ == "__main__":
    main()
