"""The contracts hold for every registered sampler: declared capabilities are true, options are
stated once, library objects refuse bad arguments, and which sampler runs on which target is
decided by the declarations.

Monte Carlo checks use n i.i.d. chains: tolerances are z = 4 standard errors of the exact law
(mean: sqrt(C_ii / n); variance: C_ii sqrt(2 / n)).
"""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.app import app
from difflab.contracts import Capabilities, TargetFeatures, check_compatible
from difflab.errors import ConfigError
from difflab.maths import exact
from difflab.run import driver
from difflab.samplers import SAMPLERS
from difflab.targets import GaussianMixture
from difflab.targets.files import load_target

ROOT = Path(__file__).resolve().parents[1]
Z = 4.0


def _target(entry):
    return load_target(entry.target.default if entry.name in ("smc", "discrete", "gibbs") else "gaussian")[1]


def _build(name, target, steps):
    entry = SAMPLERS[name]
    return entry.build(target, {"steps": steps, **entry.resolve_params({}, steps)})


def _x0(entry, sampler, target, rng, n):
    from difflab.run.sampling import _initial

    return _initial({"init": entry.init.default, "prior": "matched"}, target, sampler, rng, n)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_keeps_the_state_and_info_contract(name):
    entry = SAMPLERS[name]
    target = _target(entry)
    s = _build(name, target, 5)
    assert isinstance(s.capabilities, Capabilities)
    assert s.n_steps is None or isinstance(s.n_steps, int)
    rng = np.random.Generator(np.random.SFC64(1))
    x0, _ = _x0(entry, s, target, rng, 50)
    state = s.init(x0)
    assert state.x.shape == (50, target.dim)
    new, info = s.step(rng, state)
    assert dataclasses.is_dataclass(new) and type(new).__dataclass_params__.frozen
    assert new.x.shape == (50, target.dim) and new is not state
    assert info and all(type(v) is float for v in info.values()), info


PER_PARTICLE = [n for n in SAMPLERS if n not in ("smc", "discrete", "gibbs")]


@pytest.mark.parametrize("name", PER_PARTICLE)
def test_per_particle_samplers_give_the_same_samples_chunked_or_not(name):
    """Chunked (two chunks on two threads) equals each chunk run alone, unchunked, on its stream."""
    entry = SAMPLERS[name]
    target = _target(entry)
    s = _build(name, target, 6)
    assert s.capabilities.per_particle
    n, steps = 2 * driver.MIN_CHUNK, s.n_steps or 6
    x0, _ = _x0(entry, s, target, np.random.Generator(np.random.SFC64(2)), n)
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(9)))
    got = driver.run(s, x0, rng, steps=steps, save_every=steps, trajectory_particles=0, threads=2).samples
    parts = []
    for c, (a, b) in enumerate(driver.chunk_bounds(n)):
        r = np.random.Generator(np.random.SFC64(np.random.SeedSequence(9, spawn_key=(c,))))
        parts.append(driver.run(s, x0[a:b], r, steps=steps, save_every=steps, trajectory_particles=0).samples)
    np.testing.assert_array_equal(got, np.concatenate(parts))


AFFINE = [n for n in SAMPLERS if n not in ("mala", "smc", "discrete", "gibbs")]


class _Lying:
    """A broken affine declaration: the sampler's step with its noise covariance overstated by half
    (for a deterministic step, its map shifted by a constant): what a wrong ``noise_cov`` or
    ``deterministic`` would make difflab.maths.exact compute."""

    def __init__(self, sampler, shift: float):
        self.sampler, self.shift = sampler, shift

    def __getattr__(self, name):
        return getattr(self.sampler, name)

    def noise_cov(self, k):
        return None if (q := self.sampler.noise_cov(k)) is None else 1.5 * np.asarray(q)

    def deterministic(self, xt, k):
        return self.sampler.deterministic(xt, k) + self.shift


def _agrees(x, m, c) -> bool:
    """Sample mean and variances within Z standard errors of the law N(m, c) (n = len(x) chains)."""
    n = len(x)
    se = np.sqrt(np.diag(c) / n)
    return bool(np.all(np.abs(x.mean(0) - m) < Z * se)
                and np.all(np.abs(x.var(0, ddof=1) - np.diag(c)) < Z * np.diag(c) * np.sqrt(2 / n)))


@pytest.mark.slow
@pytest.mark.parametrize("name", AFFINE)
def test_affine_samplers_exact_law_agrees_with_monte_carlo(name):
    """20,000 chains on the 2-D Gaussian: sample mean and variances within 4 standard errors of the
    law difflab.maths.exact computes from the declared affine step. Negative control: the same
    criterion rejects the law of a broken declaration (noise overstated by half; for a
    deterministic step, its map shifted by 0.1, about 10 standard errors of the mean)."""
    entry = SAMPLERS[name]
    target = _target(entry)
    steps = 20
    s = _build(name, target, steps)
    assert s.capabilities.affine and exact.has_exact_law(s, target)
    n = 20_000
    rng = np.random.Generator(np.random.SFC64(5))
    x0, (m0, c0) = _x0(entry, s, target, rng, n)
    k = s.n_steps or steps
    x = driver.run(s, x0, rng, steps=k, save_every=k, trajectory_particles=0).samples
    m, c, _ = exact.propagate(s, m0, c0, k)
    assert _agrees(x, m, c), (x.mean(0), m, x.var(0, ddof=1), np.diag(c))
    noisy = any(np.any(np.asarray(q) != 0) for q in (s.noise_cov(j) for j in range(k)) if q is not None)
    broken = _Lying(s, 0.0 if noisy else 0.1)
    assert not _agrees(x, *exact.propagate(broken, m0, c0, k)[:2])


def test_non_affine_declarations_are_honoured():
    """rk45 declares neither per-particle nor affine steps; a one-component target that does not
    declare itself Gaussian gets no exact law (the Gaussian recursion would be wrong for it)."""
    gauss = load_target("gaussian")[1]
    rk45 = SAMPLERS["pflow"].build(gauss, {"steps": 5, **SAMPLERS["pflow"].resolve_params({"solver": "rk45"}, 5)})
    assert not rk45.capabilities.affine and not rk45.capabilities.per_particle
    assert not exact.has_exact_law(rk45, gauss)

    class OneComponentNotGaussian(GaussianMixture):
        is_gaussian = False

    t = OneComponentNotGaussian([1.0], [[0.0, 1.0]], [np.eye(2)])
    ula = _build("ula", t, 5)
    assert t.n_components == 1 and not exact.has_exact_law(ula, t) and exact.has_exact_law(ula, gauss)


def test_compatibility_is_decided_by_the_declarations():
    plain = TargetFeatures("t.yaml", "gmm", discrete=False, noised_law=True, reward=False)
    check_compatible(SAMPLERS["ddpm"], {}, plain)
    with pytest.raises(ConfigError, match="ddpm needs a target with a closed-form noised law; t.yaml has none"):
        check_compatible(SAMPLERS["ddpm"], {}, dataclasses.replace(plain, noised_law=False))
    check_compatible(SAMPLERS["mala"], {}, dataclasses.replace(plain, noised_law=False))  # needs only a score
    with pytest.raises(ConfigError, match="smc samples a reward-tilted target"):
        check_compatible(SAMPLERS["smc"], {}, plain)
    with pytest.raises(ConfigError, match="is a continuous target"):
        check_compatible(SAMPLERS["gibbs"], {}, plain)


def _click_params(name):
    import typer.main

    from difflab.cli.app import sample_app

    group = typer.main.get_command(sample_app)
    return {p.name: p for p in group.commands[name].params}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_cli_options_are_the_registry_options(name):
    """Every option of the entry is a flag of `difflab sample NAME` with the entry's default and
    help, and --set / sweeps see the same defaults (difflab.run.settings.options_of)."""
    from difflab.run.settings import options_of

    params = _click_params(name)
    settable = options_of(name)
    for o in SAMPLERS[name].all_options:
        p = params[o.name + "_" if o.name == "class" else o.name]
        assert o.flag in p.opts and p.help == o.help
        # steps whose default depends on other options (steps_for) stay None until resolved
        varies = o.name == "steps" and SAMPLERS[name].steps_for is not None
        assert p.default == (None if varies else o.default) or (p.default is None and o.default is None)
        if o.name not in ("out",):
            assert settable[o.name] == (o.default, o.typ)


def test_every_help_text_and_default_lives_in_one_place():
    """Each option's help text is written once in the package's source, and every sampler option
    with a library default takes it from the library object (no second copy of a number)."""
    source = "\n".join(p.read_text() for p in (ROOT / "difflab").rglob("*.py"))
    flat = re.sub(r'"\s*\n\s*"', "", source)  # join implicitly concatenated string literals
    seen = {}
    for entry in SAMPLERS.values():
        for o in entry.all_options:
            seen[o.help] = o
    for text in seen:
        head = text[:40]
        assert flat.count(head) == 1, (head, flat.count(head))
    from difflab.maths.schedules import VE, VPLinear
    from difflab.samplers.diffusion import DDPM, PFlow

    opt = {o.name: o.default for o in SAMPLERS["ddpm"].all_options}
    assert (opt["eta"], opt["beta_min"], opt["beta_max"]) == (DDPM.eta, VPLinear.beta_min, VPLinear.beta_max)
    assert opt["sigma_min"] == VE.sigma_min
    assert {o.name: o.default for o in SAMPLERS["pflow"].all_options}["solver"] == PFlow.solver


@pytest.mark.parametrize("make, message", [
    (lambda t: SAMPLERS["ula"].build(t, {"step_size": -1.0}), "step_size: must be positive"),
    (lambda t: SAMPLERS["mala"].build(t, {"step_size": float("nan")}), "step_size: must be positive"),
])
def test_library_objects_validate_their_arguments(make, message):
    with pytest.raises(ConfigError, match=message):
        make(load_target("gaussian")[1])


def test_library_objects_validate_their_arguments_directly():
    from difflab.maths.schedules import VPLinear
    from difflab.samplers.diffusion import DDPM, PFlow, ReverseSDE
    from difflab.samplers.langevin import MALA
    from difflab.samplers.localization import Localization

    g = load_target("gaussian")[1]
    cases = [
        (lambda: MALA(g, step_size=-1), "step_size: must be positive"),
        (lambda: DDPM(g, np.ones(3), np.ones(3), eta=-0.5), "eta: must be >= 0"),
        (lambda: DDPM(g, np.ones(3), np.ones(3), variance="sigma"), "variance: expected one of"),
        (lambda: PFlow(g, VPLinear(), np.ones(3), solver="rk2"), "solver: expected one of"),
        (lambda: ReverseSDE(g, VPLinear(), np.ones(3), snr=0.0), "snr: must be positive"),
        (lambda: Localization(g, np.ones(3), transition="exact"), "transition: expected one of"),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError, match=message):
            make()


ALLOWED_PROBES = {  # file: number of hasattr/getattr calls, each on something that is not a sampler or target
    "difflab/run/driver.py": 1,  # os.sched_getaffinity (not on every platform)
    "difflab/run/io.py": 4,
    "difflab/run/floors.py": 1,  # os.O_NOFOLLOW (not on Windows)  # numpy scalars and arrays among a run's attribute values; os.O_NOFOLLOW (not on Windows)
    "difflab/lazy.py": 1,  # the lazy module binding forwards to the module it loads
    "difflab/targets/mixture.py": 1,  # the mixture's own per-(alpha, sigma) cache slots
    "difflab/run/sampling.py": 1,  # SampleOptions' own fields, by name
    "difflab/plugins.py": 5,  # a plug-in's sampler checked against the contract before it runs: the one place
    "difflab/targets/perturbed.py": 1,  # ScoreWrapper: the one forwarding base of the wrong scores
}


def test_no_attribute_probes_on_samplers_or_targets():
    counts = {}
    for p in sorted((ROOT / "difflab").rglob("*.py")):
        rel = str(p.relative_to(ROOT))
        text = re.sub(r"getattr\(exc, ", "", p.read_text())  # exception details in error messages
        n = len(re.findall(r"(?<!def __)\b(?:hasattr|getattr)\(", text))
        if n:
            counts[rel] = n
    assert counts == ALLOWED_PROBES


def test_help_lists_every_registered_sampler():
    out = CliRunner().invoke(app, ["sample", "--help"], terminal_width=200).output
    for name, entry in SAMPLERS.items():
        assert re.search(rf"^\s+{name}\s", out, re.MULTILINE), name


def test_the_library_raises_only_its_own_errors():
    """No built-in exception is raised by difflab's code: every error is a DifflabError, which the
    CLI prints as one line (exit 2) and API users catch by one type."""
    found = [f"{p.relative_to(ROOT)}: {m}" for p in sorted((ROOT / "difflab").rglob("*.py"))
             for m in re.findall(r"raise (?:ValueError|RuntimeError|TypeError|KeyError|Exception)\b.*",
                                 p.read_text()) if "the Mapping protocol" not in m]
    assert found == []


def test_a_failed_likelihood_ode_is_a_difflab_error(monkeypatch):
    from difflab.errors import DifflabError
    from difflab.maths import likelihood
    from difflab.maths.schedules import VPLinear

    class Failed:
        success, message = False, "step size too small"

    monkeypatch.setattr(likelihood, "solve_ivp", lambda *a, **k: Failed())
    g = load_target("gaussian")[1]
    with pytest.raises(DifflabError, match="--likelihood: the likelihood ODE failed: step size too small"):
        likelihood.ode_log_likelihood(g, VPLinear(), np.zeros((3, 2)), 1e-3, (np.zeros(2), np.eye(2)))
