"""Target files: YAML -> validated frozen specs -> target objects.

Every problem becomes one :class:`~difflab.errors.ConfigError` whose message names the file, the
dotted key, the rule and the value, e.g.
``targets/bad.yaml: components[1].cov: must be positive definite, got smallest eigenvalue -0.5``.

Accepted kinds (see the README's "Target YAML reference"):

* ``kind: gaussian`` with ``mean`` and ``cov`` (matrix, list = diagonal, scalar = isotropic);
* ``kind: gmm`` with exactly one of ``components`` (a list of ``{weight, mean, cov}``),
  ``ring: {k, radius, std}`` or ``random: {k, dim, seed}``; optionally ``tilt: {lambda, b, A}``
  (a reward tilt, closed form) and ``classes: {name: [component indices]}`` (for guidance);
* discrete: ``kind: ising`` (n, graph, rows, cols, coupling, field, beta), ``kind: potts``
  (q, n, graph, rows, cols, coupling, beta) and ``kind: pmf`` (alphabet, dim, probs or log_weights).
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from difflab import yamlio
from difflab.errors import ConfigError
from difflab.errors import suggest as _suggest

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_COMMON_KEYS = {"kind", "name", "description"}
_KIND_KEYS = {
    "gaussian": {"mean", "cov", "tilt"},
    "gmm": {"components", "ring", "random", "tilt", "classes"},
    "ising": {"n", "graph", "rows", "cols", "coupling", "field", "beta"},
    "potts": {"q", "n", "graph", "rows", "cols", "coupling", "beta"},
    "pmf": {"alphabet", "dim", "probs", "log_weights"},
    "score": {"score", "noised", "reference"},
}
DISCRETE_KINDS = ("ising", "potts", "pmf")
GRAPHS = ("chain", "ring", "grid", "complete")
_BLOCK_KEYS = {
    "components[]": {"weight", "mean", "cov"},
    "ring": {"k", "radius", "std"},
    "random": {"k", "dim", "seed"},
    "tilt": {"lambda", "b", "A"},
}


@dataclass(frozen=True)
class TargetSpec:
    """A validated target file: everything needed to rebuild the target exactly."""

    name: str
    kind: str  # 'gaussian' | 'gmm'
    weights: tuple  # (K,) normalised
    means: tuple  # (K, d)
    covs: tuple  # (K, d, d)
    source: str  # the path or shipped name it was read from
    text: str  # the file's YAML text, stored in run files
    # With a tilt: block the fields above are the tilted target; these keep the untilted one and
    # the reward (lambda, b, A), for samplers that steer the untilted process (reward guidance).
    untilted: tuple = ()  # (weights, means, covs) or ()
    reward: tuple = ()  # (lambda, b or None, A or None) or ()
    log_z: float = 0.0  # with a tilt: log E_p[exp(lambda r(X))], the exact normaliser
    classes: tuple = ()  # ((name, (component indices...)), ...): labelled groups of components

    discrete = False

    def key(self) -> list:
        """What identifies the target in a run's hash."""
        key = [self.name, self.weights, self.means, self.covs]
        return key + [self.classes] if self.classes else key


@dataclass(frozen=True)
class DiscreteSpec:
    """A validated discrete target file: the log weights of every state of {0..K-1}^d."""

    name: str
    kind: str  # 'ising' | 'potts' | 'pmf'
    alphabet: int
    dim: int
    log_weights: tuple  # (K^d,) row-major, coordinate 0 most significant; -inf = probability 0
    labels: tuple  # (K,) the value written for each code (Ising: -1, +1)
    source: str
    text: str

    discrete = True

    def key(self) -> list:
        import hashlib

        import numpy as np

        digest = hashlib.sha256(np.asarray(self.log_weights, dtype=np.float64).tobytes()).hexdigest()
        return [self.name, self.kind, self.alphabet, self.dim, digest]


@dataclass(frozen=True)
class ScoreSpec:
    """A ``kind: score`` file: the user's score function (by reference, resolved only among the
    plug-ins the user loaded), measured against the exact ``reference`` target."""

    name: str
    kind: str  # 'score'
    score: str  # FILE.py:FUNCTION or MODULE:FUNCTION
    noised: bool  # score(x, alpha, sigma) at every noise level, or score(x) alone
    reference: TargetSpec
    source: str
    text: str

    discrete = False
    reward = ()
    classes = ()

    def key(self) -> list:
        return [self.name, self.kind, self.score, self.noised, self.reference.key()]


class _Ctx:
    """Where we are in the file, for error messages."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, rule: str, got: Any = None, *, show_got: bool = True) -> ConfigError:
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        tail = f", got {_show(got)}" if show_got else ""
        return ConfigError(f"{where}{rule}{tail}")


def _show(v: Any) -> str:
    """A short, bounded rendering of a value for a message: a few items of a few levels, never the
    whole of a huge value (nor the decimal digits of a huge integer)."""
    s = _SHORT.repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x, level):
        if x.bit_length() > 128:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return repr(x)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 6, 6, 60, 60
MAX_MAGNITUDE = 1e100  # target numbers beyond it overflow float64 once squared or multiplied




def _check_keys(ctx: _Ctx, mapping: dict, allowed: set, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ctx.fail(
                where,
                f"unknown key{_suggest(key, allowed)}; expected one of {', '.join(sorted(allowed))}",
                show_got=False,
            )


def _number(ctx: _Ctx, key: str, v: Any) -> float:
    """A finite float. Accepts YAML numbers and numeric strings ('1e-3'); rejects booleans."""
    if isinstance(v, bool):
        raise ctx.fail(key, "expected a number", v)
    if isinstance(v, str) and _FLOAT_RE.match(v.strip()):
        v = float(v)
    if not isinstance(v, (int, float)):
        raise ctx.fail(key, "expected a number", v)
    try:
        v = float(v)
    except OverflowError:
        raise ctx.fail(key, f"must be at most {MAX_MAGNITUDE:g} in size", v) from None
    if not math.isfinite(v):
        raise ctx.fail(key, "must be finite", v)
    if abs(v) > MAX_MAGNITUDE:
        raise ctx.fail(key, f"must be at most {MAX_MAGNITUDE:g} in size (float64 overflows once such values "
                       "are squared or multiplied)", v)
    return v


def _integer(ctx: _Ctx, key: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.fail(key, "expected an integer", v)
    if v < minimum:
        raise ctx.fail(key, f"must be >= {minimum}", v)
    return v


def _vector(ctx: _Ctx, key: str, v: Any) -> list[float]:
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return [_number(ctx, key, v)]
    if not isinstance(v, list) or not v:
        raise ctx.fail(key, "expected a non-empty list of numbers", v)
    return [_number(ctx, f"{key}[{i}]", x) for i, x in enumerate(v)]


def _covariance(ctx: _Ctx, key: str, v: Any, d: int, positive: bool = True):
    """A scalar (isotropic), a list of d numbers (diagonal) or a d x d symmetric PD matrix
    (with ``positive=False``: any symmetric matrix)."""
    import numpy as np

    if isinstance(v, list) and v and all(isinstance(r, list) for r in v):
        if len(v) != d or any(len(r) != d for r in v):
            shape = f"{len(v)}x{'/'.join(str(len(r)) for r in v)}"
            raise ctx.fail(key, f"expected a {d}x{d} matrix to match the mean's dimension {d}", shape)
        m = np.array([[_number(ctx, f"{key}[{i}][{j}]", x) for j, x in enumerate(r)] for i, r in enumerate(v)])
    elif isinstance(v, list):
        diag = _vector(ctx, key, v)
        if len(diag) != d:
            raise ctx.fail(key, f"expected {d} diagonal entries to match the mean's dimension {d}", len(diag))
        m = np.diag(diag)
    else:
        if v is None:
            raise ctx.fail(key, "expected a scalar, a list (diagonal) or a matrix", v)
        m = _number(ctx, key, v) * np.eye(d)
    scale = float(np.max(np.abs(m)))
    if not np.allclose(m, m.T, rtol=0.0, atol=1e-10 * max(scale, 1e-300)):
        raise ctx.fail(key, "must be symmetric", m.tolist())
    lam = np.linalg.eigvalsh(m)
    if positive and lam[0] <= 1e-12 * max(scale, 1e-300):
        raise ctx.fail(key, f"must be positive definite, got smallest eigenvalue {lam[0]:.3g}", show_got=False)
    return m


def _weights(ctx: _Ctx, raw: list[tuple[str, Any]]):
    ws = []
    for key, v in raw:
        w = _number(ctx, key, v)
        if w < 0:
            raise ctx.fail(key, "must be >= 0", w)
        ws.append(w)
    total = sum(ws)
    if total <= 0:
        raise ctx.fail(raw[0][0].split("[")[0] if raw else "components", "weights must have a positive sum", total)
    return [w / total for w in ws]


def _require(ctx: _Ctx, mapping: dict, key: str, prefix: str) -> Any:
    if key not in mapping:
        where = f"{prefix}.{key}" if prefix else key
        raise ctx.fail(where, "missing required key", show_got=False)
    return mapping[key]


def _mapping(ctx: _Ctx, key: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise ctx.fail(key, "expected a mapping", v)
    return v


MAX_COV_NUMBERS = 10_000_000  # components x dim^2: the covariances, about 80 MB (and their eigenbases)


def _size(ctx: _Ctx, key: str, k: int, d: int) -> None:
    """Refuse a target whose covariances (k of d x d) would be too large, before building any."""
    if k * d * d > MAX_COV_NUMBERS:
        raise ctx.fail(key, f"{k} component(s) in {d} dimensions need {k * d * d:,} covariance entries; difflab "
                       f"holds at most {MAX_COV_NUMBERS:,}", show_got=False)


def _gaussian(ctx: _Ctx, doc: dict):
    mean = _vector(ctx, "mean", _require(ctx, doc, "mean", ""))
    _size(ctx, "mean", 1, len(mean))
    cov = _covariance(ctx, "cov", _require(ctx, doc, "cov", ""), len(mean))
    return [1.0], [mean], [cov.tolist()]


def _components(ctx: _Ctx, comps: Any):
    if not isinstance(comps, list) or not comps:
        raise ctx.fail("components", "expected a non-empty list of {weight, mean, cov}", comps)
    means, covs, raw_w = [], [], []
    dim = None
    for i, comp in enumerate(comps):
        p = f"components[{i}]"
        comp = _mapping(ctx, p, comp)
        _check_keys(ctx, comp, _BLOCK_KEYS["components[]"], p)
        raw_w.append((f"{p}.weight", _require(ctx, comp, "weight", p)))
        mean = _vector(ctx, f"{p}.mean", _require(ctx, comp, "mean", p))
        if dim is None:
            dim = len(mean)
            _size(ctx, "components", len(comps), dim)
        elif len(mean) != dim:
            raise ctx.fail(f"{p}.mean", f"expected dimension {dim} like components[0].mean", len(mean))
        covs.append(_covariance(ctx, f"{p}.cov", _require(ctx, comp, "cov", p), dim).tolist())
        means.append(mean)
    return _weights(ctx, raw_w), means, covs


def _ring(ctx: _Ctx, block: Any):
    block = _mapping(ctx, "ring", block)
    _check_keys(ctx, block, _BLOCK_KEYS["ring"], "ring")
    k = _integer(ctx, "ring.k", _require(ctx, block, "k", "ring"), 1)
    _size(ctx, "ring.k", k, 2)
    radius = _number(ctx, "ring.radius", _require(ctx, block, "radius", "ring"))
    std = _number(ctx, "ring.std", _require(ctx, block, "std", "ring"))
    if radius < 0:
        raise ctx.fail("ring.radius", "must be >= 0", radius)
    if std <= 0:
        raise ctx.fail("ring.std", "must be > 0", std)
    angles = [2.0 * math.pi * j / k for j in range(k)]
    means = [[radius * math.cos(a), radius * math.sin(a)] for a in angles]
    covs = [[[std * std, 0.0], [0.0, std * std]] for _ in range(k)]
    return [1.0 / k] * k, means, covs


def _random(ctx: _Ctx, block: Any):
    """The benchmark recipe: default_rng(seed); per component mu = N(0, I),
    A = N(0, 1)^(d x d), Sigma = 0.5 (I + A A^T / d); weights proportional to 1, 2, ..., k."""
    import numpy as np

    block = _mapping(ctx, "random", block)
    _check_keys(ctx, block, _BLOCK_KEYS["random"], "random")
    k = _integer(ctx, "random.k", _require(ctx, block, "k", "random"), 1)
    d = _integer(ctx, "random.dim", _require(ctx, block, "dim", "random"), 1)
    seed = _integer(ctx, "random.seed", _require(ctx, block, "seed", "random"), 0)
    _size(ctx, "random", k, d)
    rng = np.random.default_rng(seed)
    means, covs = [], []
    for _ in range(k):
        means.append(rng.standard_normal(d).tolist())
        a = rng.standard_normal((d, d))
        covs.append((0.5 * (np.eye(d) + a @ a.T / d)).tolist())
    total = k * (k + 1) / 2
    return [(j + 1) / total for j in range(k)], means, covs


def _tilt(ctx: _Ctx, block: Any, weights, means, covs):
    """The target times exp(lambda r(x)), r(x) = b^T x - x^T A x / 2: again a mixture (closed form)."""
    import numpy as np

    from difflab.targets.mixture import NotPositiveDefinite, tilt_mixture

    block = _mapping(ctx, "tilt", block)
    _check_keys(ctx, block, _BLOCK_KEYS["tilt"], "tilt")
    lam = _number(ctx, "tilt.lambda", _require(ctx, block, "lambda", "tilt"))
    d = len(means[0])
    if "b" not in block and "A" not in block:
        raise ctx.fail("tilt", "needs a reward: b (linear part) and/or A (quadratic part)", show_got=False)
    b = None
    if "b" in block:
        b = _vector(ctx, "tilt.b", block["b"])
        if len(b) != d:
            raise ctx.fail("tilt.b", f"expected {d} entries to match the target's dimension", len(b))
    a = _covariance(ctx, "tilt.A", block["A"], d, positive=False) if "A" in block else None
    try:
        tilted = tilt_mixture(weights, means, covs, lam, b, a)
    except NotPositiveDefinite as exc:
        k, lowest = exc.args
        raise ctx.fail("tilt.A", f"the tilted precision Sigma^-1 + lambda A of component {k} is not positive "
                       f"definite (smallest eigenvalue {lowest:.3g}); lower lambda or A", show_got=False) from None
    weights, means, covs, log_z = tilted
    reward = (lam, b, None if a is None else a.tolist())
    return ([float(w) for w in weights], [np.asarray(m).tolist() for m in means],
            [np.asarray(c).tolist() for c in covs], reward, log_z)


def _classes(ctx: _Ctx, block: Any, n_components: int) -> tuple:
    """``classes: {name: [component indices]}``: non-empty, disjoint groups of components (they
    need not cover every component)."""
    block = _mapping(ctx, "classes", block)
    if not block:
        raise ctx.fail("classes", "expected at least one class, e.g. {left: [0, 1], right: [2]}", block)
    seen: dict[int, str] = {}
    out = []
    for name, members in block.items():
        key = f"classes.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise ctx.fail("classes", "class names must be words of letters, digits, '_', '.', '+' or '-'", name)
        if isinstance(members, int) and not isinstance(members, bool):
            members = [members]
        if not isinstance(members, list) or not members:
            raise ctx.fail(key, "expected a non-empty list of component indices", members)
        for i, m in enumerate(members):
            if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < n_components:
                raise ctx.fail(f"{key}[{i}]", f"expected a component index in 0..{n_components - 1}", m)
            if m in seen:
                raise ctx.fail(f"{key}[{i}]", f"component {m} is already in class '{seen[m]}'; classes must be "
                               "disjoint", show_got=False)
            seen[m] = name
        out.append((name, tuple(members)))
    return tuple(out)


def _graph(ctx: _Ctx, doc: dict) -> tuple[int, list]:
    """(n, edges) of an ising or potts file: n sites on a chain, ring, grid (rows x cols) or
    complete graph; for a grid n may be omitted (= rows x cols)."""
    from difflab.targets.discrete import graph_edges

    graph = doc.get("graph", "chain")
    if graph not in GRAPHS:
        raise ctx.fail("graph", f"unknown graph{_suggest(graph, GRAPHS)}; expected one of {', '.join(GRAPHS)}", graph)
    rows = cols = 0
    if graph == "grid":
        rows = _integer(ctx, "rows", _require(ctx, doc, "rows", ""), 1)
        cols = _integer(ctx, "cols", _require(ctx, doc, "cols", ""), 1)
        n = _integer(ctx, "n", doc.get("n", rows * cols), 1)
        if n != rows * cols:
            raise ctx.fail("n", f"must equal rows x cols = {rows * cols} for a grid", n)
    else:
        for key in ("rows", "cols"):
            if key in doc:
                raise ctx.fail(key, "only for graph: grid", doc[key])
        n = _integer(ctx, "n", _require(ctx, doc, "n", ""), 1)
    _state_space(ctx, "n", 2, n)  # at least two values a site: checked before the edges are built
    return n, graph_edges(graph, n, rows, cols)


def _state_space(ctx: _Ctx, key: str, alphabet: int, dim: int) -> None:
    from difflab.targets.discrete import MAX_STATES

    if dim * math.log2(max(alphabet, 1)) > math.log2(MAX_STATES):  # without forming a huge integer
        count = f" = {alphabet**dim}" if dim * math.log2(max(alphabet, 1)) < 64 else ""
        raise ctx.fail(key, f"the state space has {alphabet}^{dim}{count} states; difflab enumerates "
                       f"at most {MAX_STATES}", show_got=False)


def _discrete(ctx: _Ctx, kind: str, doc: dict):
    """(alphabet, dim, log_weights, labels) of an ising, potts or pmf file."""
    import numpy as np

    from difflab.targets.discrete import ising_log_weights, potts_log_weights

    if kind == "pmf":
        k = _integer(ctx, "alphabet", _require(ctx, doc, "alphabet", ""), 2)
        d = _integer(ctx, "dim", _require(ctx, doc, "dim", ""), 1)
        _state_space(ctx, "dim", k, d)
        present = [key for key in ("probs", "log_weights") if key in doc]
        if len(present) != 1:
            raise ctx.fail("", "a pmf needs exactly one of 'probs' or 'log_weights'", present or None)
        key = present[0]
        values = doc[key]
        if not isinstance(values, list) or len(values) != k**d:
            got = len(values) if isinstance(values, list) else values
            raise ctx.fail(key, f"expected a list of alphabet^dim = {k}^{d} = {k**d} numbers (row-major)", got)
        if key == "probs":
            p = np.array([_number(ctx, f"probs[{i}]", v) for i, v in enumerate(values)])
            if (p < 0).any():
                i = int(np.argmax(p < 0))
                raise ctx.fail(f"probs[{i}]", "must be >= 0", float(p[i]))
            if abs(p.sum() - 1.0) > 1e-6:
                raise ctx.fail("probs", "must sum to 1 (use log_weights for unnormalised weights)", float(p.sum()))
            with np.errstate(divide="ignore"):
                logw = np.log(p)
        else:
            logw = np.array([_number(ctx, f"log_weights[{i}]", v) for i, v in enumerate(values)])
        return k, d, logw, tuple(float(a) for a in range(k))
    n, edges = _graph(ctx, doc)
    beta = _number(ctx, "beta", doc.get("beta", 1.0))
    coupling = _number(ctx, "coupling", _require(ctx, doc, "coupling", ""))
    if kind == "ising":
        _state_space(ctx, "n", 2, n)
        field = _number(ctx, "field", doc.get("field", 0.0))
        return 2, n, ising_log_weights(n, edges, coupling, field, beta), (-1.0, 1.0)
    q = _integer(ctx, "q", _require(ctx, doc, "q", ""), 2)
    _state_space(ctx, "n", q, n)
    return q, n, potts_log_weights(q, n, edges, coupling, beta), tuple(float(a) for a in range(q))


def _score(ctx: _Ctx, doc: dict, name: str, source: str, text: str) -> ScoreSpec:
    ref = _require(ctx, doc, "score", "")
    if not isinstance(ref, str) or not re.fullmatch(r"[^:\s]+:[A-Za-z_][A-Za-z0-9_]*", ref):
        raise ctx.fail("score", "expected FILE.py:FUNCTION or MODULE:FUNCTION (a function of a plug-in you load "
                       "with --plugin)", ref)
    noised = doc.get("noised", True)
    if not isinstance(noised, bool):
        raise ctx.fail("noised", "expected true (score(x, alpha, sigma)) or false (score(x))", noised)
    raw = _require(ctx, doc, "reference", "")
    if isinstance(raw, dict):
        import yaml

        reference = parse_target(yaml.safe_dump(raw, sort_keys=False), f"{source}: reference", f"{name}-reference")
    elif isinstance(raw, str):
        reference = read_target_spec(raw)
    else:
        raise ctx.fail("reference", "expected a target: a shipped name, a path or a mapping", raw)
    if not isinstance(reference, TargetSpec):
        raise ctx.fail("reference", "expected a continuous target with an exact law (gaussian or gmm)", raw)
    return ScoreSpec(name=name, kind="score", score=ref, noised=noised, reference=reference, source=source,
                     text=text)


def parse_target(text: str, source: str, default_name: str) -> TargetSpec | DiscreteSpec:
    """Validate a target file's text. ``source`` names it in error messages."""
    import yaml

    ctx = _Ctx(source)
    try:
        doc = yamlio.load(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: YAML syntax error at {where}: {problem}") from None
    if doc is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping with a 'kind' key")
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'kind' key, got a {type(doc).__name__}")
    kind = _require(ctx, doc, "kind", "")
    if not isinstance(kind, str):
        raise ctx.fail("kind", f"expected one of {', '.join(_KIND_KEYS)}", kind)
    if kind not in _KIND_KEYS:
        raise ctx.fail("kind", f"unknown kind{_suggest(kind, _KIND_KEYS)}; expected one of {', '.join(_KIND_KEYS)}", kind)
    _check_keys(ctx, doc, _COMMON_KEYS | _KIND_KEYS[kind], "")
    # the file's stem names it unless it says otherwise ('my target.yaml' -> my_target)
    name = doc["name"] if "name" in doc else re.sub(r"[^A-Za-z0-9_.+-]", "_", default_name) or "target"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ctx.fail("name", "expected a word of letters, digits, '_', '.', '+' or '-'", name)
    if kind == "score":
        return _score(ctx, doc, name, source, text)
    if kind in DISCRETE_KINDS:
        k, d, logw, labels = _discrete(ctx, kind, doc)
        return DiscreteSpec(name=name, kind=kind, alphabet=k, dim=d, log_weights=tuple(logw.tolist()),
                            labels=labels, source=source, text=text)
    if kind == "gaussian":
        weights, means, covs = _gaussian(ctx, doc)
    else:
        present = [k for k in ("components", "ring", "random") if k in doc]
        if len(present) != 1:
            raise ctx.fail("", "a gmm needs exactly one of 'components', 'ring' or 'random'", present or None)
        builder = {"components": _components, "ring": _ring, "random": _random}[present[0]]
        weights, means, covs = builder(ctx, doc[present[0]])
    untilted, reward, log_z = (), (), 0.0
    if "tilt" in doc:
        untilted = (tuple(weights), tuple(map(tuple, means)), tuple(tuple(map(tuple, c)) for c in covs))
        weights, means, covs, reward, log_z = _tilt(ctx, doc["tilt"], weights, means, covs)
    classes = _classes(ctx, doc["classes"], len(weights)) if "classes" in doc else ()
    return TargetSpec(
        name=name, kind=kind, weights=tuple(weights), means=tuple(map(tuple, means)),
        covs=tuple(tuple(map(tuple, c)) for c in covs), source=source, text=text,
        untilted=untilted, reward=reward, log_z=log_z, classes=classes,
    )


def shipped_targets() -> dict[str, str]:
    """Names of the shipped targets -> their YAML text."""
    files = resources.files("difflab.shipped")
    return {
        p.name[: -len(".yaml")]: p.read_text(encoding="utf-8")
        for p in sorted(files.iterdir(), key=lambda p: p.name.removesuffix(".yaml"))
        if p.name.endswith(".yaml")
    }


def read_target_spec(ref: str, overrides: tuple = ()) -> TargetSpec | DiscreteSpec | ScoreSpec:
    """Resolve ``--target``: first as a path, then as a shipped name with or without '.yaml'.

    ``overrides``: ((dotted path, value), ...) from ``--target-set``, applied to the file's mapping
    before validation; the spec's ``text`` is then the effective YAML (what the run used)."""
    if isinstance(ref, (TargetSpec, DiscreteSpec, ScoreSpec)):  # already validated (a target object's file)
        if not overrides:
            return ref
        return parse_target(*_overridden(ref.text, ref.source, ref.name, overrides), ref.name)
    if isinstance(ref, dict) or (isinstance(ref, str) and "\n" in ref.strip()):  # the YAML itself (Python API)
        import yaml

        text = ref if isinstance(ref, str) else yaml.safe_dump(ref, sort_keys=False, default_flow_style=None)
        source = "<mapping>" if isinstance(ref, dict) else "<string>"
        if overrides:
            text, source = _overridden(text, source, "target", overrides)
        return parse_target(text, source, "target")
    path = Path(ref)
    if path.is_file():
        text = yamlio.read(path, "the target file")
        source, name = str(ref), path.stem
    elif path.is_dir():
        raise ConfigError(f"--target: '{ref}' is a folder; expected a target YAML file or a shipped name")
    else:
        shipped = shipped_targets()
        name = ref.removesuffix(".yaml")
        if name not in shipped:
            raise ConfigError(
                f"--target: no file '{ref}' and no shipped target '{name}'{_suggest(name, shipped)}; "
                f"shipped: {', '.join(shipped)}"
            )
        text, source = shipped[name], f"{name}.yaml (shipped)"
    if overrides:
        text, source = _overridden(text, source, name, overrides)
    return parse_target(text, source, name)


def _overridden(text: str, source: str, name: str, overrides: tuple) -> tuple[str, str]:
    """(effective YAML text, source naming the overrides) of a target file with --target-set."""
    import yaml

    from difflab.settings import apply_target_sets

    parse_target(text, source, name)  # the file itself must be valid: its errors name the file
    doc = apply_target_sets(yamlio.load(text, source), overrides, source)
    shown = " ".join(f"{k}={json.dumps(v)}" for k, v in overrides)
    source = f"{source} with --target-set {shown}"
    return f"# {source}\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None), source


def build_target(spec: TargetSpec):
    """The target object of a validated spec."""
    if isinstance(spec, ScoreSpec):  # the user's score, measured against its reference
        from difflab.plugins import score_function
        from difflab.targets.perturbed import UserScore

        target = UserScore(build_target(spec.reference), score_function(spec.score, spec.source), spec.noised,
                           spec.score)
        target.spec = spec
        return target
    if spec.discrete:
        from difflab.targets.discrete import DiscreteTarget

        target = DiscreteTarget(spec.log_weights, spec.alphabet, spec.dim, name=spec.name, kind=spec.kind,
                                labels=spec.labels)
        target.spec = spec
        return target
    from difflab.targets.mixture import GaussianMixture

    target = GaussianMixture(spec.weights, spec.means, spec.covs, name=spec.name, kind=spec.kind)
    target.spec = spec
    if spec.reward:  # a tilted target knows its untilted law, the reward and the normaliser
        target.untilted = GaussianMixture(*spec.untilted, name=spec.name, kind=spec.kind)
        target.reward, target.tilt_log_z = spec.reward, spec.log_z
    target.classes = {name: list(members) for name, members in spec.classes}
    return target


def load_target(ref: str, overrides: tuple = ()):
    """``(spec, target)`` for a ``--target`` value (and ``--target-set`` overrides)."""
    spec = read_target_spec(ref, overrides)
    return spec, build_target(spec)
