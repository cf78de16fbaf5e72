"""The target contract: what a target provides and declares, and what a target family registers.

Everything outside a target family's own module reads targets through this contract: the
declarations below, never a concrete class (``isinstance(t, GaussianMixture)``) or a family's
internals. The module imports no numpy.

A target *family* (``kind:`` in a target file) is one module holding a :class:`TargetKind` record
(its YAML keys, ``parse``, ``build``) and its target class, and one line in the kind registry
(``difflab.targets``); plug-ins register kinds the same way (entry-point group ``difflab.targets``,
``--plugin``). See the README's "Adding a target family".

Arrays: points are (n, d) rows for the public methods (a single point (d,) is accepted where the
family says so); the ``*_t`` methods take the samplers' fast layout ``xt`` (d, n).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from difflab.contracts.sampler import SamplerEntry
from difflab.errors import ConfigError, suggest


@runtime_checkable
class Components(Protocol):
    """A target that is a mixture of Gaussians, seen component by component (``target.components``
    returns it; None for any other target). The mixture-specific mathematics reads it: the mode
    occupancy metric ``mode_tv``, localization's exact posterior, the exact reverse kernels of the
    error decomposition, guidance's classes and the plots' closed-form marginals.

    ``n_components`` K; ``weights`` (K,); ``means`` (K, d); ``covs`` (K, d, d) with their
    eigendecompositions ``eigvals`` (K, d) and ``eigvecs`` (K, d, d);
    ``posterior_weights(y (n, d), alpha, sigma) -> (n, K)``: p(k | alpha X + sigma Z = y);
    ``posterior_t(yt (d, n), alpha, sigma) -> (resp (K, n), means (K, d, n), variances (K, d))``."""

    n_components: int
    weights: Any
    means: Any
    covs: Any
    eigvals: Any
    eigvecs: Any

    def posterior_weights(self, y, alpha: float = 1.0, sigma: float = 0.0): ...

    def posterior_t(self, yt, alpha: float, sigma: float): ...


@runtime_checkable
class Target(Protocol):
    """What every continuous target provides, and what it declares.

    Provided by every target: ``name``, ``kind`` (its family), ``dim``; ``mean`` (d,) and ``cov``
    (d, d), exact; ``sample(rng, n) -> (n, d)``: exact i.i.d. draws (the metrics' reference and
    floors, ``--init target``); ``log_prob(x)``, ``score(x)``, ``log_prob_and_score(x)`` on (n, d);
    ``log_prob_and_score_t(xt) -> ((n,), (d, n))`` and ``score_t(xt) -> (d, n)`` on the samplers'
    layout (the Langevin kernels' hot path).

    Declared (plain attributes; the core reads them, the compatibility check and samplers' ``needs``
    among them):

    * ``discrete`` False (see :class:`DiscreteTarget`);
    * ``is_gaussian``: one Gaussian (exact output laws apply); ``affine_score``: the score is affine;
    * ``has_log_prob``: ``log_prob`` is the log density up to a constant (MALA's accept/reject);
    * ``has_noised_law``: ``score_t(xt, alpha, sigma)``, ``log_prob_and_score_t(xt, alpha, sigma)``,
      ``noised_log_prob(y, alpha, sigma)``, ``noised_score``, ``denoiser(y, alpha, sigma)`` (E[X | y])
      and ``divergence_score_t`` for y = alpha X + sigma Z at any noise level: diffusion samplers
      need it;
    * ``exact``: the densities above are the target's own (False for a user's score, ``kind:
      score``); ``exact_score``: the score is exact (False for a deliberately wrong one, which then
      offers ``base``, the exact target, and ``score_error_sq(xt, alpha, sigma)``);
    * ``components``: a :class:`Components` view of a Gaussian mixture, or None;
    * ``has_marginals``: ``marginal(coords) -> Target`` gives the exact law of those coordinates
      (the plots' contours and density curves);
    * ``reward``: the reward tilt ``(lambda, b, A)`` or ``()``; with one, ``untilted`` (the target
      before the tilt) and ``tilt_log_z`` (log E exp(lambda r(X)), the exact normaliser), else
      None; ``classes``: {name: component indices} (guidance), ``{}`` without;
    * ``spec``: the validated target file it was built from (a :class:`TargetFile`), or None for
      a target built in Python.
    """

    name: str
    kind: str
    dim: int
    discrete: bool
    is_gaussian: bool
    affine_score: bool
    has_log_prob: bool
    has_noised_law: bool
    has_marginals: bool
    exact: bool
    exact_score: bool
    reward: tuple
    classes: dict
    spec: Any

    @property
    def components(self) -> Components | None: ...

    @property
    def mean(self): ...

    @property
    def cov(self): ...

    def sample(self, rng, n: int): ...

    def log_prob(self, x): ...

    def score(self, x): ...

    def log_prob_and_score_t(self, xt, alpha: float = 1.0, sigma: float = 0.0): ...

    def score_t(self, xt, alpha: float = 1.0, sigma: float = 0.0): ...


@runtime_checkable
class DiscreteTarget(Protocol):
    """A law on {0..K-1}^d small enough to enumerate: ``discrete`` True, ``name``, ``kind``,
    ``K``, ``dim``, ``n_states`` (K^d), ``probs`` (n_states,), row-major with coordinate 0 most
    significant; ``sample(rng, n) -> (n, d)`` integer codes; ``index(codes) -> (n,)``;
    ``to_labels(codes)``: the values written to run files (Ising spins -1/+1); ``noised_table``;
    ``spec`` as for :class:`Target`."""

    discrete: bool
    name: str
    kind: str
    K: int
    dim: int
    n_states: int
    probs: Any
    spec: Any

    def sample(self, rng, n: int): ...

    def index(self, codes): ...

    def to_labels(self, codes): ...


@runtime_checkable
class TargetFile(Protocol):
    """A validated target file (what a kind's ``parse`` returns): everything needed to rebuild the
    target exactly. ``name``, ``kind``, ``source`` (the path or shipped name, for messages),
    ``text`` (the effective YAML, stored in run files), ``discrete``; ``key()``: what identifies the
    target in a run's hash (a JSON-able list)."""

    name: str
    kind: str
    source: str
    text: str
    discrete: bool

    def key(self) -> list: ...


@dataclass(frozen=True)
class TargetKind:
    """A target family as the kind registry knows it (``kind: NAME`` in a target file).

    ``keys``: the family's own top-level keys (``kind``, ``name`` and ``description`` are common to
    all; any other key is refused with a did-you-mean before ``parse`` runs).
    ``parse(where, doc, name, source, text) -> TargetFile``: validate the mapping ``doc``, raising
    ``where.fail(key, rule, value)`` (a ConfigError naming the file and the dotted key; see
    ``difflab.targets.fields``); ``name``, ``source`` and ``text`` belong in the result.
    ``build(spec) -> Target``: the target object of a validated file.
    ``discrete``: a law on a finite state space (:class:`DiscreteTarget`).
    ``judged_by(spec) -> TargetFile``: the file of the exact law runs on this kind are judged
    against, when building the kind itself would run user code (``kind: score``: its reference);
    None: the file itself."""

    name: str
    help: str
    keys: frozenset
    parse: Callable[..., Any]
    build: Callable[[Any], Any]
    discrete: bool = False
    judged_by: Callable[[Any], Any] | None = None


# ---------------------------------------------------------------- which sampler runs on which target
@dataclass(frozen=True)
class TargetFeatures:
    """What a target offers, for the compatibility check (``of(target, source)``)."""

    source: str
    kind: str
    discrete: bool
    noised_law: bool
    reward: bool
    classes: tuple = field(default=())
    log_prob: bool = True  # a log density (MALA's accept/reject)
    exact: bool = True  # exact posterior and noised densities: not a user's score
    components: bool = True  # a Gaussian mixture's components (localization's exact posterior)

    @classmethod
    def of(cls, target, source: str) -> TargetFeatures:
        """The features a built target declares."""
        if target.discrete:
            return cls(source=source, kind=target.kind, discrete=True, noised_law=False, reward=False,
                       log_prob=False, exact=False, components=False)
        return cls(source=source, kind=target.kind, discrete=False, noised_law=target.has_noised_law,
                   reward=bool(target.reward), classes=tuple(target.classes.items()),
                   log_prob=target.has_log_prob, exact=target.exact, components=target.components is not None)


# An entry's needs, in the order they are checked: (need, the feature, the refusal).
_ENTRY_NEEDS = (
    ("noised_law", "noised_law", "--target: {name} needs a target with a closed-form noised law; {source} has none"),
    ("log_prob", "log_prob", "--target: {name} needs a log density; {source} gives a score alone"),
    ("components", "components", ("--target: {name} needs a Gaussian mixture's exact posterior; {source} (kind: "
                                  "{kind}) is not a mixture")),
    ("exact", "exact", ("--target: {name} needs the exact posterior of a closed-form target; {source} is a score of "
                        "your own")),
)


def check_compatible(entry: SamplerEntry, params: dict, t: TargetFeatures) -> None:
    """Refuse, with one line naming the target, a sampler that may not run on it. The one place
    this is decided: the entry's target kind and needs, and what its options' values need
    (``entry.option_needs(params)``: naive reward guidance needs a reward, guidance a class)."""
    wants_discrete = entry.target_kind == "discrete"
    if wants_discrete != t.discrete:
        kind = "discrete" if t.discrete else "continuous"
        wanted = "discrete targets" if wants_discrete else "continuous targets"
        raise ConfigError(f"--target: {t.source} is a {kind} target (kind: {t.kind}); {entry.name} runs on "
                          f"{wanted}, not on it")
    for need, feature, refusal in _ENTRY_NEEDS:
        if need in entry.needs and not vars(t)[feature]:
            raise ConfigError(refusal.format(name=entry.name, source=t.source, kind=t.kind))
    option_needs = entry.option_needs(params) if entry.option_needs is not None else ()
    _refuse(option_needs, "exact", t.exact, t)
    if "reward" in entry.needs and not t.reward:
        raise ConfigError(f"--target: {entry.name} samples a reward-tilted target; {t.source} has no tilt: block")
    _refuse(option_needs, "reward", t.reward, t)
    names = [name for name, _ in t.classes]
    _refuse(option_needs, "classes", bool(names), t)
    for need in option_needs:
        if need.need == "classes" and need.value not in names:
            raise ConfigError(f"--class: {t.source} has no class '{need.value}'"
                              f"{suggest(need.value, names)}; expected one of {', '.join(names)}")


def _refuse(option_needs, need: str, offered: bool, t: TargetFeatures) -> None:
    """The first option need of this kind the target does not offer, as its one-line refusal."""
    for n in option_needs:
        if n.need == need and not offered:
            raise ConfigError(n.message.format(source=t.source))
