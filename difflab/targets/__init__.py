"""The target-kind registry: one line per built-in target family (``kind:`` in a target file),
naming the module that declares its :class:`~difflab.contracts.TargetKind` (its YAML keys, parse,
build), then the kinds of installed plug-ins (entry-point group ``difflab.targets``) and those
registered in this process (``--plugin`` files and modules, ``difflab.targets.register``).

``parse_target`` validates a file's text by its kind, ``build_target`` makes its target object;
``difflab.targets.files`` resolves ``--target`` (a path or a shipped name, ``--target-set``). A
family's module is imported when its kind is first asked for.
"""

from __future__ import annotations

import re

from difflab import yamlio
from difflab.contracts.target import TargetKind
from difflab.errors import ConfigError
from difflab.errors import suggest as _suggest
from difflab.registry import Registry
from difflab.targets.fields import Where, check_keys, require

_TABLE = {  # kind: (module in difflab.targets, its TargetKind)
    "gaussian": ("mixture", "GAUSSIAN_KIND"),
    "gmm": ("mixture", "GMM_KIND"),
    "ising": ("discrete", "ISING_KIND"),
    "potts": ("discrete", "POTTS_KIND"),
    "pmf": ("discrete", "PMF_KIND"),
    "score": ("score", "SCORE_KIND"),
    "student_t": ("student_t", "STUDENT_T_KIND"),
}
KINDS = Registry("target kind", "difflab.targets", _TABLE, "difflab.targets", TargetKind)
register = KINDS.register
COMMON_KEYS = frozenset({"kind", "name", "description"})


def parse_target(text: str, source: str, default_name: str):
    """Validate a target file's text by its kind (a :class:`~difflab.contracts.TargetFile`).
    ``source`` names it in error messages; ``default_name`` is its name unless it says otherwise."""
    import yaml

    ctx = Where(source)
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
    kind = require(ctx, doc, "kind", "")
    if not isinstance(kind, str):
        raise ctx.fail("kind", f"expected one of {', '.join(KINDS)}", kind)
    if kind not in KINDS:
        raise ctx.fail("kind", f"unknown kind{_suggest(kind, KINDS)}; expected one of {', '.join(KINDS)} (a plug-in's "
                       "kind needs its package installed, or --plugin)", kind)
    family = KINDS[kind]
    check_keys(ctx, doc, COMMON_KEYS | family.keys, "")
    # the file's stem names it unless it says otherwise ('my target.yaml' -> my_target)
    name = doc["name"] if "name" in doc else re.sub(r"[^A-Za-z0-9_.+-]", "_", default_name) or "target"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ctx.fail("name", "expected a word of letters, digits, '_', '.', '+' or '-'", name)
    return family.parse(ctx, doc, name, source, text)


def build_target(spec):
    """The target object of a validated file (its kind's ``build``)."""
    return KINDS[spec.kind].build(spec)


def build_exact_target(spec):
    """The exact target runs on ``spec`` are judged against, built without running user code (a
    ``kind: score`` file: its reference)."""
    judged_by = KINDS[spec.kind].judged_by
    return build_target(spec if judged_by is None else judged_by(spec))


def is_discrete(kind: str) -> bool:
    """Whether the kind is a law on a finite state space (False for a kind no one registered)."""
    return kind in KINDS and KINDS[kind].discrete


def __getattr__(name: str):  # the mixture class, without importing numpy with the registry
    if name == "GaussianMixture":
        from difflab.targets.mixture import GaussianMixture

        return GaussianMixture
    raise AttributeError(f"module 'difflab.targets' has no attribute {name!r}")


__all__ = ["KINDS", "GaussianMixture", "build_exact_target", "build_target", "is_discrete", "parse_target", "register"]
