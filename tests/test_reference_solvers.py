"""ksampler against the reference implementations: diffusers' schedulers, run with difflab's exact
noise prediction as the model, in float64, from the same x_T and with the same injected noise, must
give difflab's output to round-off, solver by solver.

The tests feed difflab's ``KSampler`` the scheduler's own levels (its ``sigmas`` or
``alphas_cumprod``, cast to float64 after ``set_timesteps``), so they compare the steps, not the grid
constructions (the grids are tested against their formulas in test_ksampler.py). Marker
``reference``: outside the default test command (it needs torch and diffusers, the ``reference``
extra); run it with ``pytest -m reference``.
"""

from __future__ import annotations

import numpy as np
import pytest

from difflab.api import load_target
from difflab.samplers.ksampler import KSampler

pytestmark = pytest.mark.reference
torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

N, D = 64, 2  # particles, dimension (the shipped 2-D Gaussian)
RTOL = 1e-10  # float64 round-off through at most 25 steps, relative to the output's scale


@pytest.fixture(scope="module")
def target():
    return load_target("gaussian")


def _levels(ve_sigmas: np.ndarray):
    """(alphas, sigmas) of VP levels from diffusers' VE-form sigmas (its _sigma_to_alpha_sigma_t)."""
    a = 1.0 / np.sqrt(ve_sigmas**2 + 1.0)
    return a, ve_sigmas * a


def _model(ks: KSampler, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """The exact noise prediction eps = (x - alpha E[X | x]) / sigma at (alpha, sigma), x (n, d)."""
    xt = np.ascontiguousarray(x.numpy().T)
    den = ks.denoise(xt, alpha, sigma)
    return torch.from_numpy(np.ascontiguousarray(((xt - alpha * den) / sigma).T))


class _Float64Torch:
    """torch, but with float32 meaning float64: DPMSolverMultistep, Euler and Euler ancestral cast
    the sample to float32 inside ``step`` (to spare half-precision models); with this stand-in for
    their module's ``torch`` they compute in float64 like the rest."""

    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


class _Noise:
    """Pre-drawn standard normals handed out in order: to diffusers (patched randn_tensor) and to difflab."""

    def __init__(self, seed: int, steps: int):
        self.draws = np.random.default_rng(seed).standard_normal((steps + 1, N, D))
        self.i = 0

    def __call__(self, shape, *args, **kwargs):
        out = torch.from_numpy(self.draws[self.i].copy())
        self.i += 1
        return out


def _run_difflab(ks: KSampler, xT: np.ndarray, draws=None) -> np.ndarray:
    """KSampler's steps with the noise draws given (the same as diffusers used)."""
    z, used = ks.init(xT).xt, 0
    for k in range(ks.n_steps):
        pre, post = ks.noise_std(k)
        noise = None
        if pre or post:
            noise = draws[used].T * (pre or post)
            used += 1
        z = ks.advance(z, k, noise if pre else None, noise if post else None)
    return z[:D].T


def _discrete(name: str, cls_name: str, steps: int, noise_module: str | None = None, order: int = 0, **config):
    """A ``sigmas``-based scheduler (DPM-Solver++, UniPC, DEIS, Euler, Euler ancestral, LMS) against
    difflab's solver ``name`` on the scheduler's own levels; returns the largest relative difference."""
    cls = getattr(diffusers, cls_name)
    sched = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **config)
    sched.set_timesteps(steps)
    sched.sigmas = sched.sigmas.double()
    ve = sched.sigmas.numpy().astype(np.float64)
    alphas, sigmas = _levels(ve)
    target = load_target("gaussian")
    order = order or config.get("solver_order", 0)
    solver_kw = {"order": order} if name in ("unipc", "deis", "lms") else {}
    ks = KSampler(target, alphas, sigmas, solver=name, **solver_kw, **_extra(name))
    xT = np.random.default_rng(1).standard_normal((N, D))
    noise = _Noise(2, steps)
    mod = __import__(f"diffusers.schedulers.{noise_module}", fromlist=["randn_tensor"]) if noise_module else None
    saved = mod.randn_tensor if mod else None
    if mod:
        mod.randn_tensor = noise
    home = __import__(type(sched).__module__, fromlist=["torch"])
    home.torch = _Float64Torch()  # the step's `sample.to(torch.float32)` upcast becomes float64
    try:
        scaled = "init_noise_sigma" in dir(sched) and float(sched.init_noise_sigma) != 1.0
        x = torch.from_numpy(xT / alphas[0] if scaled else xT.copy())  # VE-form state for the Euler family
        for t in sched.timesteps:
            i = 0 if sched.step_index is None else sched.step_index
            xin = sched.scale_model_input(x, t) if scaled else x
            a_i, s_i = _levels(ve[i : i + 1])
            eps = _model(ks, xin, float(a_i[0]), float(s_i[0]))
            kwargs = {"order": order} if cls_name == "LMSDiscreteScheduler" else {}
            x = sched.step(eps, t, x, **kwargs).prev_sample
    finally:
        home.torch = torch
        if mod:
            mod.randn_tensor = saved
    ref = x.numpy() * (alphas[-1] if scaled else 1.0)
    mine = _run_difflab(ks, xT, noise.draws)
    return float(np.max(np.abs(mine - ref)) / np.max(np.abs(ref)))


def _extra(name):
    if name in ("euler-ancestral", "dpmpp-2m-sde"):
        return {"eta": 1.0}
    return {}


CASES = [  # (difflab solver, diffusers scheduler, module whose randn_tensor to feed, scheduler config, order)
    ("dpmpp-2m", "DPMSolverMultistepScheduler", None, dict(algorithm_type="dpmsolver++", solver_order=2), 0),
    ("dpmpp-2m", "DPMSolverMultistepScheduler", None, dict(algorithm_type="dpmsolver++", solver_order=2,
                                                            use_karras_sigmas=True), 0),
    ("dpmpp-3m", "DPMSolverMultistepScheduler", None, dict(algorithm_type="dpmsolver++", solver_order=3), 0),
    ("dpmpp-2m-sde", "DPMSolverMultistepScheduler", "scheduling_dpmsolver_multistep",
     dict(algorithm_type="sde-dpmsolver++", solver_order=2, use_karras_sigmas=True), 0),
    ("unipc", "UniPCMultistepScheduler", None, dict(solver_order=2), 0),
    ("unipc", "UniPCMultistepScheduler", None, dict(solver_order=3, use_karras_sigmas=True), 0),
    ("deis", "DEISMultistepScheduler", None, dict(solver_order=2, timestep_spacing="trailing"), 0),
    ("deis", "DEISMultistepScheduler", None, dict(solver_order=3, timestep_spacing="trailing"), 0),
    ("euler", "EulerDiscreteScheduler", None, dict(use_karras_sigmas=True), 0),
    ("euler-ancestral", "EulerAncestralDiscreteScheduler", "scheduling_euler_ancestral_discrete", {}, 0),
    ("lms", "LMSDiscreteScheduler", None, dict(use_karras_sigmas=True), 4),
]


@pytest.mark.parametrize("steps", [8, 20])
@pytest.mark.parametrize("name, cls_name, noise_module, config, order", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_matches_diffusers(name, cls_name, noise_module, config, order, steps):
    rel = _discrete(name, cls_name, steps, noise_module, order, **config)
    assert rel < RTOL, f"{name} vs diffusers' {cls_name} {config}: relative difference {rel:.2e}"


def _patched(sched):
    home = __import__(type(sched).__module__, fromlist=["torch"])
    home.torch = _Float64Torch()
    return home


@pytest.mark.parametrize("steps", [8, 20])
def test_heun_matches_diffusers(target, steps):
    """EDM's Heun (Euler on the last step) = diffusers' HeunDiscreteScheduler, whose sigmas repeat
    each inner level for its two stages."""
    sched = diffusers.HeunDiscreteScheduler(beta_schedule="linear", use_karras_sigmas=True)
    sched.set_timesteps(steps)
    sched.sigmas = sched.sigmas.double()
    inter = sched.sigmas.numpy()
    ve = np.concatenate([inter[:1], inter[1:-1:2], inter[-1:]])
    alphas, sigmas = _levels(ve)
    ks = KSampler(target, alphas, sigmas, solver="heun")
    xT = np.random.default_rng(1).standard_normal((N, D))
    home = _patched(sched)
    try:
        x = torch.from_numpy(xT / alphas[0])
        for t in sched.timesteps:
            s = float(inter[sched.step_index or 0])
            a_i, s_i = _levels(np.array([s]))
            eps = _model(ks, sched.scale_model_input(x, t), float(a_i[0]), float(s_i[0]))
            x = sched.step(eps, t, x).prev_sample
    finally:
        home.torch = torch
    ref, mine = x.numpy(), _run_difflab(ks, xT)
    assert np.max(np.abs(mine - ref)) / np.max(np.abs(ref)) < RTOL


@pytest.mark.parametrize("steps", [8, 20])
def test_ddim_matches_diffusers(target, steps):
    """ksampler's euler is DDIM (eta = 0): diffusers' DDIMScheduler on its own alphas_cumprod."""
    sched = diffusers.DDIMScheduler(beta_schedule="linear", set_alpha_to_one=True, clip_sample=False)
    sched.set_timesteps(steps)
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    abar = sched.alphas_cumprod.numpy()[sched.timesteps.numpy()]
    alphas, sigmas = np.append(np.sqrt(abar), 1.0), np.append(np.sqrt(1.0 - abar), 0.0)
    ks = KSampler(target, alphas, sigmas, solver="euler")
    xT = np.random.default_rng(1).standard_normal((N, D))
    x = torch.from_numpy(xT.copy())
    for i, t in enumerate(sched.timesteps):
        x = sched.step(_model(ks, x, alphas[i], sigmas[i]), t, x, eta=0.0).prev_sample
    ref, mine = x.numpy(), _run_difflab(ks, xT)
    assert np.max(np.abs(mine - ref)) / np.max(np.abs(ref)) < RTOL


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_matches_diffusers(target, shift):
    """Flow matching's Euler (Stable Diffusion 3: shift 3) = ksampler euler on the flow levels
    (alpha, sigma) = (1 - t, t); the model is the velocity eps - x0_hat, the start t = 1 pure noise."""
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(12)
    sched.sigmas = sched.sigmas.double()
    t_grid = sched.sigmas.numpy()
    ks = KSampler(target, 1.0 - t_grid, t_grid, solver="euler")
    xT = np.random.default_rng(1).standard_normal((N, D))
    home = _patched(sched)
    try:
        x = torch.from_numpy(xT.copy())
        for t in sched.timesteps:
            i = sched.step_index or 0
            a, s = 1.0 - t_grid[i], t_grid[i]
            xt = np.ascontiguousarray(x.numpy().T)
            den = ks.denoise(xt, a, s)
            v = (xt - a * den) / s - den  # eps - x0
            x = sched.step(torch.from_numpy(np.ascontiguousarray(v.T)), t, x).prev_sample
    finally:
        home.torch = torch
    ref, mine = x.numpy(), _run_difflab(ks, xT)
    assert np.max(np.abs(mine - ref)) / np.max(np.abs(ref)) < RTOL


def test_negative_control():
    """The comparison can fail: difflab's dpmpp-3m against diffusers' second-order scheduler, and
    unipc without its corrector's order (order 1) against order 2, differ far beyond RTOL."""
    assert _discrete("dpmpp-3m", "DPMSolverMultistepScheduler", 20, None,
                     algorithm_type="dpmsolver++", solver_order=2) > 1e-4
    assert _discrete("unipc", "UniPCMultistepScheduler", 20, None, 1, solver_order=2) > 1e-4
