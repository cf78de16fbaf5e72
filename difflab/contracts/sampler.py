"""The sampler contract: what a sampler provides and declares, its options and registry entry.

Everything else reads these declarations; nothing probes objects with ``hasattr``. The module
imports no numpy, so declarations (and ``--help``) are read without loading the numerical stack.

Layout convention
-----------------
Particles of a continuous state live along the *last* axis, ``xt`` of shape (d, n) (the targets'
fast layout: one GEMM per evaluation); every state also exposes ``x``, the (n, d) view the driver,
metrics and run file use. Discrete states store integer codes as ``x`` (n, d). States are frozen
dataclasses: a step returns a new state.

Sampler
-------
``init(x0 (n, d)) -> state``; ``step(rng, state) -> (state, info)``, pure given the generator;
``n_steps`` (the steps of its own grid, or None for a Markov kernel that runs as long as asked);
``capabilities``, a :class:`Capabilities`. ``info`` is a flat mapping of per-step floats (a series
``/per_step/<name>`` each: ``nfe``, ``acceptance_rate``, ...). What a capability promises:

* ``per_particle``: each particle's step uses only that particle (and the generator), so the driver
  may run chunks of particles on threads, each with its own stream.
* ``keeps_finite``: a finite state stays finite, so the driver skips its non-finite guard.
* ``affine``: on a target with an affine score (a Gaussian), step k is
  ``deterministic(xt, k) + noise`` with ``deterministic`` affine in ``xt`` and the noise Gaussian,
  independent of the state, with covariance ``noise_cov(k)`` (a float v for v I, or a (d, d)
  array). ``difflab.maths.exact`` then propagates the exact law of the state.
* ``diffusion``: a reverse diffusion on a schedule, with ``schedule``, ``times``, ``start`` and
  ``end`` ((alpha, sigma) at the first and last grid time), ``output`` ('sample': x at the end;
  'denoised': E[X | x_end]) and ``start_law(prior)``, the Gaussian (mean, cov) it starts from.
  The error decomposition applies.
* ``estimate``: the state is not itself a sample of the target (localization's y_t);
  ``estimate(state) -> (n, d)`` is the sample it would output if stopped now.
* ``adapts_step_size``: a ``step_size`` field and ``with_step_size(h)`` (warm-up adaptation).
* discrete samplers: ``law_step(q, k)`` (the exact law, one step on), ``noised_law(k)``,
  ``timed``, ``n_noisy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from difflab.errors import ConfigError, suggest

Info = dict  # {series name: float}: what a step reports, recorded at every step


@dataclass(frozen=True)
class Capabilities:
    """What a sampler declares about itself; see the module docstring for each promise."""

    per_particle: bool = False
    keeps_finite: bool = False
    affine: bool = False
    diffusion: bool = False
    estimate: bool = False
    adapts_step_size: bool = False


class AffineStep:
    """Base of the samplers with ``capabilities.affine``: the exact-law code propagates the law of
    the whole state and reads the sample's law off it. Here the state is the sample; a sampler with
    auxiliary variables (the velocities of kinetic Langevin) overrides both maps."""

    def exact_law_start(self, mean, cov):
        """The state's law from the initial sample's law (mean, cov)."""
        return mean, cov

    def exact_law_output(self, mean, cov):
        """The sample's law from the state's law."""
        return mean, cov

    def path_step(self, k: int) -> PathStep | None:
        """What step k approximates (``PathStep``) for a reverse process; None: not a path step
        (the default: Langevin kernels, and any read-out)."""
        return None


@dataclass(frozen=True)
class PathStep:
    """What one step of a reverse sampler approximates: the optional ``path_step(k)`` of a sampler
    (``difflab.maths.decomposition``'s KL telescoping and flow split read it).

    ``frm`` and ``to`` are the (alpha, sigma) of the forward process x = alpha X + sigma Z at the
    step's start and end state (SNR(to) >= SNR(frm); (0, 0) is localization's y_0 = 0). With
    ``langevin = 0`` the step stands for the true reverse conditional p(x_to | x_frm) of the forward
    Markov process; with ``langevin = e > 0`` (a corrector, ``to == frm``) for the exact Langevin
    diffusion run for time e on p at that level, which leaves it invariant. A sampler's
    ``path_step(k)`` returns None for a read-out step that follows the last such step (a
    deterministic map, such as x0_hat at the end of DDPM).
    """

    frm: tuple[float, float]
    to: tuple[float, float]
    langevin: float = 0.0


class Sampler(Protocol):
    """What every sampler provides (the kernels in difflab.samplers, and a plug-in's)."""

    capabilities: Capabilities
    n_steps: int | None

    def init(self, x0): ...

    def step(self, rng, state) -> tuple[Any, Info]: ...


# ---------------------------------------------------------------- options
def positive(v) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be positive and finite"


def non_negative(v) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "must be >= 0 and finite"


def at_least_one(v) -> str | None:
    return None if v >= 1 else "must be positive"


def at_least_zero(v) -> str | None:
    return None if v >= 0 else "must be >= 0"


def seed_range(v) -> str | None:
    """A seed the run file can record (an unsigned 64-bit attribute) and SeedSequence accepts."""
    return None if 0 <= v < 2**64 else "must be in [0, 2^64)"


def unit_interval(v) -> str | None:
    return None if 0.0 <= v <= 1.0 else "must be in [0, 1]"


def check_argument(name: str, value, rule) -> None:
    """A library object's own argument against an option's rule (a check function, or the tuple of
    choices): library objects validate what they are given, by the rules the options state."""
    broken = rule(value) if callable(rule) else (None if value in rule else f"expected one of {', '.join(rule)}")
    if broken:
        raise ConfigError(f"{name}: {broken}, got {value!r}")


@dataclass(frozen=True)
class Option:
    """One option of a sampler, stated once: the ``difflab sample`` flag, ``--set``, run specs,
    and sweeps all read it. ``name`` is the parameter's key (``step_size``; the flag
    is ``--step-size``); ``default`` None with ``typ`` not bool means "worked out by the sampler"
    (then ``show_default`` is off). ``check(value)`` returns the broken rule, or None."""

    name: str
    default: Any
    typ: type
    help: str
    choices: tuple = ()
    check: Callable[[Any], str | None] | None = None
    short: str | None = None  # e.g. "-t"
    aliases: dict = field(default_factory=dict)  # other names users know for a choice: {alias: choice}

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value):
        """The value checked against ``choices`` and ``check`` (ConfigError naming the flag)."""
        if value is None:
            return None
        expected = _KINDS.get(self.typ)
        if expected is not None and not (isinstance(value, expected[0]) and (self.typ is bool
                                                                           or not isinstance(value, bool))):
            raise ConfigError(f"{self.flag}: expected {expected[1]}, got {value!r}")
        if isinstance(value, str):  # an alias is recorded as the choice it names
            value = self.aliases.get(value, value)
        if self.choices and value not in self.choices:
            names = (*self.choices, *self.aliases)
            raise ConfigError(f"{self.flag}: expected one of {', '.join(self.choices)}, got '{value}'"
                              f"{suggest(value, names) if isinstance(value, str) else ''}")
        if self.check is not None:
            rule = self.check(value)
            if rule:
                raise ConfigError(f"{self.flag}: {rule}, got {value}")
        return float(value) if self.typ is float else value


def _kinds() -> dict:
    import numbers

    return {int: (numbers.Integral, "an integer"), float: (numbers.Real, "a number"), str: (str, "text"),
            bool: (bool, "true or false")}


_KINDS = _kinds()  # an option's type -> (what its value must be an instance of, its name in messages)


# Options every ``difflab sample`` command has. A sampler's entry sets the defaults and help of
# ``target``, ``steps`` and ``init`` (``common_options``); the rest are the same for all.
OUTPUT_OPTIONS = ("out", "force", "quiet")  # belong to the call: not settable from a spec or --set


def common_options(*, target: Option, steps: Option, init: Option) -> tuple[Option, ...]:
    inits = (init,) if len(init.choices) > 1 else ()  # a single start law is no option
    return (
        target,
        Option("particles", 1000, int, "Number of particles (independent chains).", short="-n",
               check=lambda v: None if v >= 2 else "must be >= 2 (sample covariances need two)"),
        steps,
        Option("seed", 0, int, "Seed: the same command and seed give bit-identical samples.",
               check=seed_range),
        *inits,
        Option("out", None, Path, "Run file to write. Default: runs/<sampler>-<target>-<hash>.h5.", short="-o"),
        Option("save_every", None, int, "Save trajectory frames every this many steps. Default: steps // 100.",
               check=at_least_one),
        Option("metrics_every", None, int,
               "Evaluate metrics every this many steps; 0 = final only. Default: steps // 20.",
               check=at_least_zero),
        Option("trajectory_particles", 100, int, "How many particles the trajectory keeps (the first ones).",
               check=at_least_zero),
    )


CONTINUOUS_TARGET = Option("target", "gmm", str, "Target YAML path, or a shipped target name (see `difflab targets`).",
                           short="-t")
DISCRETE_TARGET = Option("target", "ising6", str, "Discrete target YAML path or shipped name (ising, potts, pmf).",
                         short="-t")


@dataclass(frozen=True)
class OptionNeed:
    """A target declaration an option's value relies on (a SamplerEntry's ``option_needs``):
    ``need`` is 'exact' (not a user's score), 'reward' (a tilt) or 'classes' (with ``value`` the
    class asked for); ``message`` is the refusal, with ``{source}`` for the target file."""

    need: str
    message: str
    value: Any = None


@dataclass(frozen=True)
class Steered:
    """What a SamplerEntry's ``steer`` hook returns: ``model``, the score the sampler sees;
    ``judged``, the target the run's metrics measure against; ``summary(samples, rng, rng_floor,
    n) -> dict``, extra summary keys computed after the run (or None)."""

    model: Any
    judged: Any
    summary: Callable | None = None


@dataclass(frozen=True)
class SamplerEntry:
    """A sampler as the registry knows it: its options, how to build it, what it runs on.

    ``resolve(params) -> params`` adds the checks that involve several options (one option's own
    rule is its ``Option.check``) and derived values; ``build(target, params) -> sampler``.
    ``target_kind``: 'continuous' or 'discrete'; ``needs``: the target declarations it relies on
    ('noised_law', 'log_prob', 'exact', 'reward', 'components'); ``mcmc``: chains of a stationary kernel (ESS and
    R-hat apply).

    Hooks by which a sampler's own options act on the run (the run code reads no option by name):
    ``option_needs(params) -> (OptionNeed, ...)``: what the options' values need of the target;
    ``steer(target, params, rng_metric, rng_score) -> Steered``: the score the sampler sees and the
    target it is judged against (default: the exact target, both); ``warmup(params) -> (steps,
    adapter or None)``: warm-up steps before the kept ones, and the step-size adapter the driver
    feeds during them (``adapter.update(info)``, ``adapter.final()``); ``preflight(target, params,
    load_points)``: checks of the options against the target before any work (``load_points(path,
    dim)`` reads a points file as the run would); ``after(sampler, target, law0, params, rng,
    summary, load_points) -> {group: {name: array}}``: extra results after the run (summary keys
    added to ``summary``, arrays as groups of the run file)."""

    name: str
    help: str
    options: tuple[Option, ...]  # the sampler's own options
    build: Callable
    steps: Option
    init: Option
    target: Option = CONTINUOUS_TARGET
    resolve: Callable[[dict], dict] | None = None
    target_kind: str = "continuous"
    needs: tuple[str, ...] = ()
    mcmc: bool = False
    steps_for: Callable[[dict], int | None] | None = None  # a default step count that depends on options
    option_needs: Callable[[dict], tuple] | None = None
    steer: Callable | None = None
    warmup: Callable[[dict], tuple] | None = None
    preflight: Callable | None = None
    after: Callable | None = None

    @property
    def all_options(self) -> tuple[Option, ...]:
        """Every option of ``difflab sample NAME``, common ones first."""
        return common_options(target=self.target, steps=self.steps, init=self.init) + self.options

    @property
    def inits(self) -> tuple:
        return self.init.choices

    @property
    def default_steps(self) -> int:
        return self.steps.default

    def steps_default(self, given: dict) -> int:
        """The step count when none is given: ``steps_for(given options)`` if the entry has one and
        it answers, else the steps option's default."""
        chosen = self.steps_for(given) if self.steps_for is not None else None
        return self.steps.default if chosen is None else chosen

    def resolve_params(self, given: dict, steps: int) -> dict:
        """The sampler's own parameters, as recorded in the run file: defaults filled in, every
        option validated, then the entry's cross-option rules."""
        own = {o.name: o for o in self.options}
        for key in given:
            if key not in own:
                raise ConfigError(f"{key}: not an option of difflab sample {self.name}{suggest(key, own)}")
        params = {name: o.validate(o.default if given.get(name) is None else given[name]) for name, o in own.items()}
        params["steps"] = steps
        if self.resolve is not None:
            params = self.resolve(params)
        params.pop("steps")
        return params


def with_default(opt: Option, default, help: str | None = None) -> Option:
    """The same option with another default (and help): e.g. each sampler's ``steps``."""
    return replace(opt, default=default, help=opt.help if help is None else help)


def step_count(v) -> str | None:
    """At least one step, and a count the run file can record (a signed 64-bit attribute)."""
    return None if 1 <= v < 2**63 else "must be in [1, 2^63)"


STEPS = Option("steps", 1000, int, "Number of sampler steps (after any warm-up).", check=step_count)


def init_option(*choices: str, help: str) -> Option:
    return Option("init", choices[0], str, help, choices=choices)
