"""``kind: score``: the user's own score function, measured against an exact reference target.

A target file never imports code: ``score: my_scores.py:ring_score`` names a function of a plug-in
the user already loaded (``--plugin``, ``difflab.load_plugin``); ``difflab.plugins`` records each
loaded module here (``remember``) and ``score_function`` resolves the reference among them only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from difflab.contracts.target import TargetKind
from difflab.errors import ConfigError
from difflab.targets.fields import Where, require

_MODULES: dict = {}  # what the user named ("my_scores.py", "pkg.scores") and its module name: module


def remember(names, module) -> None:
    """Make a loaded plug-in module's functions available to ``kind: score`` files under ``names``."""
    for name in names:
        _MODULES[name] = module


def score_function(ref: str, source: str):
    """The function ``ref`` (``FILE.py:NAME``, ``STEM:NAME`` or ``MODULE:NAME``) of a loaded plug-in."""
    module_ref, _, name = str(ref).rpartition(":")
    if not module_ref or not name:
        raise ConfigError(f"{source}: score: expected FILE.py:FUNCTION or MODULE:FUNCTION, got {ref!r}")
    module = _MODULES.get(module_ref, _MODULES.get(Path(module_ref).stem if module_ref.endswith(".py") else ""))
    if module is None:
        raise ConfigError(f"{source}: score: '{ref}' is code, which difflab runs only when you name it: pass "
                          f"--plugin {module_ref} (Python: difflab.load_plugin('{module_ref}'))")
    fn = vars(module).get(name)
    if not callable(fn):
        raise ConfigError(f"{source}: score: plug-in {module_ref} has no function '{name}'")
    return fn


@dataclass(frozen=True)
class ScoreSpec:
    """A ``kind: score`` file: the user's score function (by reference, resolved only among the
    plug-ins the user loaded), measured against the exact ``reference`` target."""

    name: str
    kind: str  # 'score'
    score: str  # FILE.py:FUNCTION or MODULE:FUNCTION
    noised: bool  # score(x, alpha, sigma) at every noise level, or score(x) alone
    reference: object  # the reference's validated file (a gaussian or gmm)
    source: str
    text: str

    discrete = False
    reward = ()
    classes = ()

    def key(self) -> list:
        return [self.name, self.kind, self.score, self.noised, self.reference.key()]


def parse(ctx: Where, doc: dict, name: str, source: str, text: str) -> ScoreSpec:
    from difflab.targets.files import read_target_spec
    from difflab.targets.mixture import MixtureSpec

    ref = require(ctx, doc, "score", "")
    if not isinstance(ref, str) or not re.fullmatch(r"[^:\s]+:[A-Za-z_][A-Za-z0-9_]*", ref):
        raise ctx.fail("score", "expected FILE.py:FUNCTION or MODULE:FUNCTION (a function of a plug-in you load "
                       "with --plugin)", ref)
    noised = doc.get("noised", True)
    if not isinstance(noised, bool):
        raise ctx.fail("noised", "expected true (score(x, alpha, sigma)) or false (score(x))", noised)
    raw = require(ctx, doc, "reference", "")
    if isinstance(raw, dict):
        import yaml

        from difflab.targets import parse_target

        reference = parse_target(yaml.safe_dump(raw, sort_keys=False), f"{source}: reference", f"{name}-reference")
    elif isinstance(raw, str):
        reference = read_target_spec(_beside(raw, source))
        text = _inline_reference(text, source, reference)
    else:
        raise ctx.fail("reference", "expected a target: a shipped name, a path or a mapping", raw)
    if not isinstance(reference, MixtureSpec):  # the score error is measured against its exact noised law
        raise ctx.fail("reference", "expected a continuous target with an exact law (gaussian or gmm)", raw)
    return ScoreSpec(name=name, kind="score", score=ref, noised=noised, reference=reference, source=source,
                     text=text)


def _beside(ref: str, source: str) -> str:
    """A reference path relative to the target file's folder (as a YAML file's own references are);
    a shipped name, an absolute path and a target not from a file (the Python API) as given."""
    from pathlib import Path

    folder = Path(source).parent if not source.startswith("<") and Path(source).is_file() else None
    if folder is not None and not Path(ref).is_absolute() and (folder / ref).is_file():
        return str(folder / ref)
    return ref


def _inline_reference(text: str, source: str, reference) -> str:
    """The score file's text with its reference inline (its effective YAML, as the run file records
    it: re-reading the run never reads another file)."""
    import yaml

    from difflab import yamlio

    doc = yamlio.load(text, source)
    doc["reference"] = yamlio.load(reference.text, reference.source)
    return f"# {source}, its reference {reference.source} inline\n" + yaml.safe_dump(doc, sort_keys=False,
                                                                                     default_flow_style=None)


def build(spec: ScoreSpec):
    from difflab.targets import build_target
    from difflab.targets.perturbed import UserScore

    return UserScore(build_target(spec.reference), score_function(spec.score, spec.source), spec.noised, spec.score,
                     spec=spec)


SCORE_KIND = TargetKind("score", "Your own score function (a loaded plug-in's), judged against an exact reference.",
                        frozenset({"score", "noised", "reference"}), parse, build,
                        judged_by=lambda spec: spec.reference)
