"""Sampler registry.

Each entry says how to validate a sampler's own options (``resolve``: user options -> the resolved
parameters recorded in the run file) and how to build it (``build``: target, parameters ->
an object with ``init(x0)`` and ``step(rng, state) -> (state, info)``). Options common to every
sampler (particles, steps, seed, output) are handled by ``difflab.sample``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from difflab.errors import ConfigError
from difflab.samplers.langevin import MALA, ULA


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    default_steps: int
    inits: tuple  # accepted --init values; the first is the default
    resolve: Callable[[dict, int], dict]  # (sampler options, steps) -> parameters
    build: Callable  # (target, parameters) -> sampler
    mcmc: bool = False  # chains of a stationary Markov kernel: ESS and R-hat apply
    discrete: bool = False  # runs on discrete targets (ising, potts, pmf) instead of continuous ones


def _get(opts: dict, key: str, default):
    v = opts.get(key)
    return default if v is None else v


def _positive_finite(name: str, v: float, allow_zero: bool = False) -> float:
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ConfigError(f"--{name}: must be {'>= 0' if allow_zero else 'positive'} and finite, got {v}")
    return float(v)


def _choice(name: str, v: str, choices) -> str:
    if v not in choices:
        raise ConfigError(f"--{name}: expected one of {', '.join(choices)}, got '{v}'")
    return v


# ---------------------------------------------------------------- Langevin
def _langevin(default_h: float):
    def resolve(opts: dict, steps: int) -> dict:
        h = _positive_finite("step-size", _get(opts, "step_size", default_h))
        adapt = bool(opts.get("adapt", False))
        warmup = int(_get(opts, "warmup", 500))
        if adapt and warmup < 1:
            raise ConfigError(f"--warmup: must be positive, got {warmup}")
        return {"step_size": h, "adapt": adapt, "warmup": warmup if adapt else 0}

    return resolve


# ---------------------------------------------------------------- diffusion
N_TRAIN = 1000  # DDPM's number of discrete steps: ddpm runs on K <= N_TRAIN of them


def _schedule_params(opts: dict) -> dict:
    from difflab.schedules import SCHEDULES

    name = _choice("schedule", _get(opts, "schedule", "vp-linear"), tuple(SCHEDULES))
    from difflab.targets.perturbed import KINDS

    out = {"schedule": name, "prior": _choice("prior", _get(opts, "prior", "matched"), ("matched", "standard"))}
    out["score_error"] = _positive_finite("score-error", _get(opts, "score_error", 0.0), allow_zero=True)
    out["score_error_kind"] = _choice("score-error-kind", _get(opts, "score_error_kind", "bias"), KINDS)
    out["reward_guidance"] = _choice("reward-guidance", _get(opts, "reward_guidance", "exact"), ("exact", "naive"))
    if out["reward_guidance"] == "naive" and out["score_error"] > 0:
        raise ConfigError("--reward-guidance: naive guidance is itself a score error; use it without --score-error")
    out.update(_guidance_params(opts, out))
    if name == "vp-linear":
        out["beta_min"] = _positive_finite("beta-min", _get(opts, "beta_min", 0.1))
        out["beta_max"] = _positive_finite("beta-max", _get(opts, "beta_max", 20.0))
        if out["beta_max"] < out["beta_min"]:
            raise ConfigError(f"--beta-max: must be >= --beta-min ({out['beta_min']}), got {out['beta_max']}")
    elif name == "ve":
        out["sigma_min"] = _positive_finite("sigma-min", _get(opts, "sigma_min", 0.01))
        out["sigma_max"] = _positive_finite("sigma-max", _get(opts, "sigma_max", 50.0))
        if out["sigma_max"] <= out["sigma_min"]:
            raise ConfigError(f"--sigma-max: must be > --sigma-min ({out['sigma_min']}), got {out['sigma_max']}")
    return out


def _guidance_params(opts: dict, out: dict) -> dict:
    """--guidance, --class, --scale (the class is checked against the target in ``prepare``)."""
    from difflab.targets.guidance import GUIDANCE

    kind = _choice("guidance", _get(opts, "guidance", "none"), GUIDANCE)
    if kind == "none":
        for key in ("class_", "scale"):
            if opts.get(key) is not None:
                raise ConfigError(f"--{key.rstrip('_')}: only with --guidance classifier or cfg")
        return {"guidance": "none"}
    if opts.get("class_") is None:
        raise ConfigError(f"--class: --guidance {kind} needs the class to steer toward, e.g. --class left")
    scale = _positive_finite("scale", float(_get(opts, "scale", 1.0)), allow_zero=True)
    if out["score_error"] > 0 or out["reward_guidance"] == "naive":
        clash = "--score-error" if out["score_error"] > 0 else "--reward-guidance naive"
        raise ConfigError(f"--guidance: use it without {clash} (guidance is measured as the score error)")
    if opts.get("likelihood"):
        raise ConfigError("--likelihood: not with --guidance (the ODE likelihood is the exact flow's)")
    return {"guidance": kind, "class": str(opts["class_"]), "scale": scale}


def make_schedule(params: dict):
    import dataclasses

    from difflab.schedules import SCHEDULES

    cls = SCHEDULES[params["schedule"]]
    names = {f.name for f in dataclasses.fields(cls)} - {"name"}
    return cls(**{k: params[k] for k in names if k in params})


def _early_stop(opts: dict, default: float, allow_zero: bool) -> float:
    v = float(_get(opts, "early_stop", default))
    if not (math.isfinite(v) and (0 <= v < 1) and (allow_zero or v > 0)):
        rule = "in [0, 1)" if allow_zero else "in (0, 1)"
        raise ConfigError(f"--early-stop: must be {rule}, got {v}")
    return v


def _ddpm_resolve(opts: dict, steps: int) -> dict:
    if steps > N_TRAIN:
        raise ConfigError(f"--steps: ddpm runs on at most the schedule's {N_TRAIN} steps, got {steps}")
    p = _schedule_params(opts)
    p["eta"] = _positive_finite("eta", _get(opts, "eta", 1.0), allow_zero=True)
    p["variance"] = _choice("variance", _get(opts, "variance", "beta-tilde"), ("beta-tilde", "beta"))
    p["early_stop"] = _early_stop(opts, 0.0, allow_zero=True)
    p["timestep_spacing"] = _choice("timestep-spacing", _get(opts, "timestep_spacing", "trailing"), SPACINGS)
    end = round(p["early_stop"] * N_TRAIN)
    if steps > N_TRAIN - end:
        raise ConfigError(f"--steps: with --early-stop {p['early_stop']} at most {N_TRAIN - end} steps fit, got {steps}")
    if p["timestep_spacing"] != "trailing" and min(_indices(p["timestep_spacing"], steps, end)[:-1]) <= end:
        raise ConfigError(f"--timestep-spacing: '{p['timestep_spacing']}' with {steps} steps reaches below "
                          f"--early-stop {p['early_stop']}; use trailing")
    return p


SPACINGS = ("trailing", "leading", "linspace")


def _indices(spacing: str, steps: int, end: int):
    """Discrete indices (1 = DDPM's first noisy step, N = the last) of the K + 1 grid points,
    named as diffusers' ``timestep_spacing`` (its 0-based timestep + 1), then the end index."""
    import numpy as np

    k = np.arange(steps)
    if spacing == "trailing":  # N - k N / K: starts at t = 1
        return np.round(np.linspace(N_TRAIN, end, steps + 1)).astype(int)
    if spacing == "leading":  # 1 + k (N // K), highest first: starts below t = 1
        idx = 1 + k[::-1] * (N_TRAIN // steps)
    else:  # linspace(1, N, K) rounded, highest first
        idx = np.round(np.linspace(1, N_TRAIN, steps))[::-1].astype(int)
    return np.concatenate([idx, [end]])


def ddpm_grid(params: dict, steps: int):
    """(alphas, sigmas, times) of the K + 1 grid points; index i is at time i / N."""
    alphas, sigmas = make_schedule(params).discrete(N_TRAIN)
    end = round(params["early_stop"] * N_TRAIN)
    idx = _indices(params.get("timestep_spacing", "trailing"), steps, end)
    return alphas[idx], sigmas[idx], idx / N_TRAIN


def _ddpm_build(target, params: dict):
    from difflab.samplers.diffusion import DDPM

    alphas, sigmas, times = ddpm_grid(params, params["steps"])
    return DDPM(target, alphas, sigmas, eta=params["eta"], variance=params["variance"],
                final_denoise=params["early_stop"] > 0, times=times, schedule=make_schedule(params))


def _pflow_resolve(opts: dict, steps: int) -> dict:
    from difflab.samplers.diffusion import SOLVERS

    p = _schedule_params(opts)
    p["solver"] = _choice("solver", _get(opts, "solver", "heun"), SOLVERS)
    p["grid"] = _choice("grid", _get(opts, "grid", "logsnr"), ("logsnr", "uniform"))
    p["early_stop"] = _early_stop(opts, 1e-3, allow_zero=False)
    p["rtol"] = _positive_finite("rtol", _get(opts, "rtol", 1e-6))
    p["atol"] = _positive_finite("atol", _get(opts, "atol", 1e-8))
    p["likelihood"] = bool(opts.get("likelihood", False))
    if p["likelihood"]:
        p["likelihood_points"] = int(_get(opts, "likelihood_points", 1000))
        if p["likelihood_points"] < 1:
            raise ConfigError(f"--likelihood-points: must be positive, got {p['likelihood_points']}")
        p["points"] = str(_get(opts, "points", ""))
    return p


def _pflow_build(target, params: dict):
    from difflab.samplers.diffusion import PFlow, time_grid

    schedule = make_schedule(params)
    times = time_grid(schedule, params["steps"], params["early_stop"], params["grid"])
    return PFlow(target, schedule, times, solver=params["solver"], rtol=params["rtol"], atol=params["atol"])


def _sde_resolve(opts: dict, steps: int) -> dict:
    p = _schedule_params(opts)
    p["grid"] = _choice("grid", _get(opts, "grid", "logsnr"), ("logsnr", "uniform"))
    p["early_stop"] = _early_stop(opts, 1e-3, allow_zero=False)
    p["corrector_steps"] = int(_get(opts, "corrector_steps", 0))
    if p["corrector_steps"] < 0:
        raise ConfigError(f"--corrector-steps: must be >= 0, got {p['corrector_steps']}")
    p["snr"] = _positive_finite("snr", _get(opts, "snr", 0.1))
    return p


def _sde_build(target, params: dict):
    from difflab.samplers.diffusion import ReverseSDE, time_grid

    schedule = make_schedule(params)
    times = time_grid(schedule, params["steps"], params["early_stop"], params["grid"])
    return ReverseSDE(target, schedule, times, corrector_steps=params["corrector_steps"], snr=params["snr"])


def _localization_resolve(opts: dict, steps: int) -> dict:
    p = {
        "t_min": _positive_finite("t-min", _get(opts, "t_min", 1e-4)),
        "t_max": _positive_finite("t-max", _get(opts, "t_max", 1e4)),
        "grid": _choice("grid", _get(opts, "grid", "log"), ("log", "uniform")),
        "transition": _choice("transition", _get(opts, "transition", "gaussian"), ("gaussian", "em")),
        "output": _choice("output", _get(opts, "output", "mean"), ("mean", "y")),
    }
    if p["t_max"] <= p["t_min"]:
        raise ConfigError(f"--t-max: must be > --t-min ({p['t_min']}), got {p['t_max']}")
    return p


def _localization_build(target, params: dict):
    from difflab.samplers.localization import Localization, localization_grid

    times = localization_grid(params["t_min"], params["t_max"], params["steps"], params["grid"])
    return Localization(target, times, transition=params["transition"], output=params["output"])


def _smc_resolve(opts: dict, steps: int) -> dict:
    if steps > N_TRAIN:
        raise ConfigError(f"--steps: smc runs on at most the schedule's {N_TRAIN} steps, got {steps}")
    p = _schedule_params(opts)
    if p["guidance"] != "none":
        raise ConfigError("--guidance: smc steers by a reward (tilt: block), not by a class")
    for key in ("score_error", "score_error_kind", "reward_guidance", "guidance"):
        p.pop(key)
    p["proposal"] = _choice("proposal", _get(opts, "proposal", "base"), ("base", "naive"))
    p["ess_threshold"] = float(_get(opts, "ess_threshold", 0.5))
    if not 0.0 <= p["ess_threshold"] <= 1.0:
        raise ConfigError(f"--ess-threshold: must be in [0, 1], got {p['ess_threshold']}")
    return p


def _smc_build(target, params: dict):
    import numpy as np

    from difflab.samplers.smc import TiltSMC

    alphas, sigmas, _ = ddpm_grid({**params, "early_stop": 0.0, "timestep_spacing": "trailing"}, params["steps"])
    base, (a, s) = target.untilted, (float(alphas[0]), float(sigmas[0]))
    if params["prior"] == "standard":
        prior = (np.zeros(base.dim), (s * s if a == 1.0 else 1.0) * np.eye(base.dim))
    else:  # the untilted p_1's moments: the process being steered is the untilted one
        prior = (a * base.mean, a * a * base.cov + s * s * np.eye(base.dim))
    return TiltSMC(base, *target.reward, alphas, sigmas, prior, proposal=params["proposal"],
                   ess_threshold=params["ess_threshold"])


def _discrete_resolve(opts: dict, steps: int) -> dict:
    from difflab.samplers.discrete import METHODS, NOISES, SCHEDULES

    noise = _choice("noise", _get(opts, "noise", "absorbing"), NOISES)
    p = {"noise": noise, "method": _choice("method", _get(opts, "method", "tau-leaping"), METHODS)}
    p["schedule"] = _choice("schedule", _get(opts, "schedule", "linear" if noise == "absorbing" else "geometric"),
                            SCHEDULES)
    kmin = float(_get(opts, "kappa_min", 0.0 if p["schedule"] == "linear" else 1e-3))
    if not (math.isfinite(kmin) and 0.0 <= kmin < 1.0):
        raise ConfigError(f"--kappa-min: must be in [0, 1), got {kmin}")
    if kmin == 0.0 and p["schedule"] == "geometric":
        raise ConfigError("--kappa-min: the geometric schedule kappa_min^t needs kappa_min > 0, got 0.0")
    if kmin == 0.0 and noise == "uniform":
        raise ConfigError("--kappa-min: uniform noise with kappa(1) = 0 has infinite reverse rates at t = 1; "
                          "give kappa-min > 0, got 0.0")
    p["kappa_min"] = kmin
    return p


def _discrete_build(target, params: dict):
    from difflab.samplers.discrete import DiscreteDiffusion, Noise

    noise = Noise(params["noise"], target.K, params["schedule"], params["kappa_min"])
    return DiscreteDiffusion(target, noise, params["method"], params["steps"])


def _gibbs_build(target, params: dict):
    from difflab.samplers.discrete import Gibbs

    return Gibbs(target)


SAMPLERS = {
    "ula": SamplerSpec("ula", 1000, ("normal", "target"), _langevin(0.01),
                       lambda t, p: ULA(t, p["step_size"]), mcmc=True),
    "mala": SamplerSpec("mala", 1000, ("normal", "target"), _langevin(0.1),
                        lambda t, p: MALA(t, p["step_size"]), mcmc=True),
    "ddpm": SamplerSpec("ddpm", 1000, ("prior",), _ddpm_resolve, _ddpm_build),
    "pflow": SamplerSpec("pflow", 100, ("prior",), _pflow_resolve, _pflow_build),
    "sde": SamplerSpec("sde", 1000, ("prior",), _sde_resolve, _sde_build),
    "localization": SamplerSpec("localization", 500, ("zero",), _localization_resolve, _localization_build),
    "smc": SamplerSpec("smc", 100, ("prior",), _smc_resolve, _smc_build),
    "discrete": SamplerSpec("discrete", 100, ("prior",), _discrete_resolve, _discrete_build, discrete=True),
    "gibbs": SamplerSpec("gibbs", 100, ("uniform", "target"), lambda o, s: {}, _gibbs_build, mcmc=True,
                         discrete=True),
}

__all__ = ["MALA", "SAMPLERS", "ULA", "SamplerSpec"]
